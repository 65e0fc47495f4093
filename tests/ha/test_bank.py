"""Goal: the bank test in the manner of Jepsen's: under concurrent random transfers
and reads of all balances, while paycore nodes are killed (SIGKILL) or stopped cleanly
(SIGTERM) and restarted and the PostgreSQL primary is killed and restarted, every read
of all balances sums to the same total, no balance goes below its limit, every
acknowledged transfer is present (and no refused one), and the accounts' balances are
exactly what the transfers present imply.
Method: one paycore node on a SQLite file under a restart loop (hacluster.Supervised;
paycore faults only); then two paycore nodes on one PostgreSQL database, both `serve
--standby` under a restart loop (one holds the writer's lock, the other waits and takes
over), first on a plain PostgreSQL 15 cluster (tests/store/pgcluster.py; its primary killed
with SIGKILL to the postmaster and its backends, then restarted), then on the Patroni
pair (tests/ha/hacluster.py, synchronous_mode; its primary killed as a machine crash,
Patroni promotes the synchronous standby, the old node rejoins); then two paycore nodes
serving three shards, each a plain cluster of its own (`serve --shards --standby`
under a restart loop: one writes the set, the other forwards to it and takes the set
over when it dies; transfers between accounts on different shards are global
transactions), the events outbox on, with a random shard's server killed and restarted
besides paycore's kills (a page of accounts spanning shards must show each global
transaction on every shard or on none: the read fence, docs/scaleout.md §6); at the
end the home shard's outbox must hold one transfer.created event for each transfer
present and none for any other (local ones of the far shards come through the relay,
global ones in their home leg, whatever was killed meanwhile). BANK accounts with
debits_must_not_exceed_credits start with FUNDS each from a mint account; clients move
random amounts between them, retrying each transfer with the same id until a definite
answer; readers list every account (one page) and check the total and each limit.
PAYCORE_FAULT_ROUNDS sets the faults per cluster (make test: a short run; make
test-faults: the full one); PAYCORE_SEED replays one schedule; PAYCORE_BANK_STORES
(default "sqlite,plain,patroni,shards") picks the runs."""
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "api"))
sys.path.insert(0, os.path.join(HERE, "..", "store"))
sys.path.insert(0, HERE)
import hacluster  # noqa: E402
import haload  # noqa: E402
import pcapi  # noqa: E402
import pgcluster  # noqa: E402
from pcapi import BIN, TIMEOUT_S, check  # noqa: E402

BANK = ["acct%d" % i for i in range(6)]
FUNDS = 1000
TOTAL = FUNDS * len(BANK)
ROUNDS = int(os.environ.get("PAYCORE_FAULT_ROUNDS", "0"))  # 0: the short run below
SEED = int(os.environ.get("PAYCORE_SEED", str(int(time.time()))))
STORES = os.environ.get("PAYCORE_BANK_STORES", "sqlite,plain,patroni,shards").split(",")
STORE_WAIT_S = 180


class Readers:
    """Threads reading every account's balances in one request, over and over."""

    def __init__(self, ports, key, count=2):
        self.ports, self.key = ports, key
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.reads = 0
        self.violations = []
        self.threads = [threading.Thread(target=self.loop, daemon=True) for _ in range(count)]
        for t in self.threads:
            t.start()

    def loop(self):
        nodes = haload.Nodes(self.ports, self.key)
        try:
            while not self.stop_event.is_set():
                r = nodes.request("GET", "/v1/accounts?limit=100")
                if r is None or r.status != 200:
                    time.sleep(haload.RETRY_PAUSE_S)
                    continue
                self.check(r.json["data"])
        except Exception as e:  # noqa: BLE001
            with self.lock:
                self.violations.append("reader: %r" % e)
        finally:
            nodes.close()

    def check(self, accounts):
        bank = [a for a in accounts if a["id"] in BANK]
        problems = []
        if len(bank) != len(BANK):
            problems.append("a read of all balances lists %d of %d bank accounts" % (len(bank), len(BANK)))
        total = sum(a["credits_posted"] - a["debits_posted"] for a in bank)
        if total != TOTAL:
            problems.append("a read of all balances sums to %d, not %d: %r" % (
                total, TOTAL, [(a["id"], a["credits_posted"] - a["debits_posted"]) for a in bank]))
        for a in bank:
            if a["debits_posted"] + a["debits_pending"] > a["credits_posted"]:
                problems.append("%s below its limit: %r" % (a["id"], a))
        with self.lock:
            self.reads += 1
            self.violations += problems

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(haload.REQUEST_TIMEOUT_S * 3)
        check(not any(t.is_alive() for t in self.threads), "a reader did not stop")


class BankTransfers(haload.Transfers):
    """Transfers between the bank accounts; a refusal must be exceeds_credits, and an
    acknowledged transfer's answer must not show its debit account below its limit."""

    def body(self, tid, rng):
        return pcapi.transfer(tid, *rng.sample(BANK, 2), rng.randint(1, 300))

    def check_same(self, body, r):
        haload.Transfers.check_same(self, body, r)
        balances = (r.json or {}).get("balances", {}).get("debit_account")
        if balances and balances["debits_posted"] > balances["credits_posted"]:
            self.errors.append("%s: answered with its debit account below its limit: %r" % (body["id"], balances))


def fund(nodes):
    deadline = time.time() + TIMEOUT_S * 6
    for account_id in ["mint"] + BANK:
        flags = [] if account_id == "mint" else ["debits_must_not_exceed_credits"]
        got = haload.send_until_definite(nodes, "POST", "/v1/accounts", pcapi.account(account_id, flags=flags),
                                         deadline)
        check(got is not None and got[0] == haload.Outcome.APPLIED, "account %s: %r" % (account_id, got))
    for account_id in BANK:
        got = haload.send_until_definite(nodes, "POST", "/v1/transfers",
                                         pcapi.transfer("fund-" + account_id, "mint", account_id, FUNDS), deadline)
        check(got is not None and got[0] == haload.Outcome.APPLIED, "fund %s: %r" % (account_id, got))


def writer_of(servers):
    """The node serving now (the lock holder), waiting for one."""
    return hacluster.wait_for("a paycore node serving", lambda: next((s for s in servers if s.ready()), None),
                              STORE_WAIT_S + TIMEOUT_S * 3)


class Bank:
    """One run: two paycore nodes on 'url', the clients, the readers, the faults."""

    def __init__(self, store, work, name, kill_primary):
        """store: ["--store", URL] or ["--shards", URLS] (two nodes, both started as
        standbys: one takes the lock(s) and writes, the other waits; on a set it forwards
        meanwhile), or [] (the SQLite file, one node: its lock file admits one writer)."""
        self.name = name
        self.kill_primary = kill_primary
        db = os.path.join(work, name + ".db")
        out = subprocess.run([BIN, "init", "--db", db] + store, capture_output=True, text=True,
                             timeout=TIMEOUT_S * 3)
        check(out.returncode == 0, "%s: init: %s" % (name, out.stderr))
        self.key = out.stdout.strip().split("=", 1)[1]
        standby = store[:1] in (["--store"], ["--shards"])
        self.set = store[:1] == ["--shards"]
        args = ["--standby", "--store-wait-s", str(STORE_WAIT_S)] if standby else []
        self.servers = [hacluster.Supervised(db, store, name="%s-node%d" % (name, i), extra_args=args)
                        for i in range(2 if standby else 1)]
        self.ports = [s.port for s in self.servers]
        self.writer()
        nodes = haload.Nodes(self.ports, self.key)
        fund(nodes)
        nodes.close()
        self.load = BankTransfers(self.ports, self.key, BANK, clients=4, seed=SEED, prefix=name + "-t")
        self.readers = None
        self.faults = {}

    def writer(self):
        """The node writing now: on a set the one /healthz names the writer (a set's
        standby answers /readyz too, forwarding it), else the one ready."""
        if not self.set:
            return writer_of(self.servers)
        return hacluster.wait_for("a node writing the set", lambda: next(
            (s for s in self.servers if s.role() == "writer"), None), STORE_WAIT_S + TIMEOUT_S * 3)

    def run(self, schedule, rng):
        self.load.start()
        self.readers = Readers(self.ports, self.key)
        for fault in schedule:
            self.load.wait_applied(10, STORE_WAIT_S + TIMEOUT_S * 6, "%s: progress before %s" % (self.name, fault))
            self.faults[fault] = self.faults.get(fault, 0) + 1
            if fault == "primary":
                self.kill_primary()
            else:
                victim = self.writer() if rng.random() < 0.8 else rng.choice(self.servers)
                victim.signal(signal.SIGKILL if fault == "paycore-kill" else signal.SIGTERM)
        self.load.wait_applied(10, STORE_WAIT_S + TIMEOUT_S * 6, "%s: progress after the last fault" % self.name)
        self.load.stop()
        self.readers.stop()

    def check(self):
        with self.readers.lock:
            check(not self.readers.violations, "%s: %d violations, first: %s" % (
                self.name, len(self.readers.violations), "\n".join(self.readers.violations[:5])))
            check(self.readers.reads > 0, "%s: no read of all balances succeeded" % self.name)
        for tid, code in self.load.refused.items():  # a retry of a refused try: id_already_failed
            check(code in ("exceeds_credits", "id_already_failed"), "%s: %s refused with %s" % (self.name, tid, code))
        nodes = haload.Nodes(self.ports, self.key)
        writer = self.writer()
        nodes.at = self.servers.index(writer)
        nodes.next()
        nodes.next()  # back on the writer, with a fresh connection
        present = haload.check_transfers(nodes, self.load, self.name)
        initial = dict((a, [0, FUNDS]) for a in BANK)
        want = haload.expected_balances(initial, present)
        haload.check_balances(nodes, want, self.name)
        nodes.close()
        self.readers.check([dict(id=a, debits_posted=d, credits_posted=c, debits_pending=0)
                            for a, (d, c) in want.items()])
        check(not self.readers.violations, "%s: the transfers present break the bank: %s" % (
            self.name, self.readers.violations[:3]))
        print("bank %s: seed=%d faults=%r acknowledged=%d refused=%d present=%d reads=%d restarts=%d" % (
            self.name, SEED, self.faults, len(self.load.applied), len(self.load.refused), len(present),
            self.readers.reads, sum(len(s.exits) for s in self.servers)))
        return present

    def close(self):
        if self.readers is not None:
            self.readers.stop_event.set()
        self.load.stop_event.set()
        for s in self.servers:
            s.stop()
        for s in self.servers:
            report = s.sanitizer_reports()
            check(report is None, "sanitizer report: %s" % report)

    def logs(self):
        return "\n".join(s.logs() for s in self.servers)


def schedule_of(rng, rounds, kinds):
    """'rounds' faults: every kind at least once, the rest at random."""
    out = list(kinds) + [rng.choice(kinds) for _ in range(max(0, rounds - len(kinds)))]
    rng.shuffle(out)
    return out


def kill_plain_primary(cluster):
    def kill():
        postmaster = None
        try:
            postmaster = int(open(os.path.join(cluster.data, "postmaster.pid")).readline())
        except (OSError, ValueError):
            pcapi.fail("the plain cluster's postmaster.pid")
        pids = [postmaster] + hacluster.process_children(postmaster)
        for pid in pids:
            hacluster.kill_quietly(pid, signal.SIGSTOP)
        for pid in pids:
            hacluster.kill_quietly(pid)
        hacluster.wait_for("the killed postmaster to be gone", lambda: not os.path.exists("/proc/%d" % postmaster),
                           60)
        cluster.started = False
        time.sleep(0.5)  # paycore sees the server gone, not just a blip
        cluster.start()
    return kill


def kill_patroni_primary(cluster):
    def kill():
        old = cluster.primary() or cluster.wait_primary()
        old.kill()
        cluster.wait_primary(not_node=old)
        old.start()
        cluster.wait_sync()
    return kill


def kill_shard(clusters, rng):
    """A random shard's server killed (as the plain primary is) and restarted."""
    def kill():
        kill_plain_primary(rng.choice(clusters))()
    return kill


def outbox_transfers(home):
    """transfer.created events in the home shard's outbox: object id -> how many."""
    rows = home.sql("shard", "SELECT object_id, count(*) FROM events WHERE type = 'transfer.created'"
                             " GROUP BY object_id")
    return dict((line.split("|")[0], int(line.split("|")[1])) for line in rows.splitlines() if line)


def check_outbox(home, present, what):
    """Each transfer present has exactly one transfer.created event in the home outbox,
    and no other transfer has one. A far shard's local transfers arrive through the
    relay shortly after their commit: polled until every one is there."""
    want = set(present) | set("fund-" + a for a in BANK)
    deadline = time.time() + TIMEOUT_S * 6
    got = outbox_transfers(home)
    while not want <= set(got) and time.time() < deadline:
        time.sleep(0.5)
        got = outbox_transfers(home)
    missing = sorted(want - set(got))
    check(not missing, "%s: %d transfers present have no event in the outbox: %r" % (what, len(missing), missing[:6]))
    extra = sorted(set(got) - want)
    check(not extra, "%s: events of transfers not present: %r" % (what, extra[:6]))
    twice = sorted(t for t, n in got.items() if n != 1)
    check(not twice, "%s: transfers with more than one transfer.created event: %r" % (
        what, [(t, got[t]) for t in twice[:6]]))
    print("bank %s: outbox holds %d transfer events, one each" % (what, len(got)))


def bank_shards(work, rng):
    """The bank over three shards: transfers between accounts placed on different
    shards are global transactions (two-phase commit across clusters)."""
    clusters = []
    try:
        for _ in range(3):
            clusters.append(pgcluster.Cluster())
        urls = [c.createdb("shard") for c in clusters]
        run_bank(["--shards", ",".join(urls)], work, "shards", kill_shard(clusters, rng), ROUNDS or 4, rng,
                 lambda present: check_outbox(clusters[0], present, "shards"))
        placed = [int(c.sql("shard", "SELECT count(*) FROM shard_accounts WHERE account_id IN (%s)"
                            % ",".join("'%s'" % a for a in BANK))) for c in clusters]
        check(sum(placed) == len(BANK) and sum(1 for n in placed if n > 0) >= 2,
              "the bank accounts spread over the shards (so transfers crossed them): %r" % placed)
        left = [int(c.sql("shard", "SELECT count(*) FROM pg_prepared_xacts")) for c in clusters]
        check(left == [0, 0, 0], "no prepared transaction left after the clean stop: %r" % left)
    finally:
        for c in clusters:
            c.close()


def run_bank(store, work, name, kill, rounds, rng, check_present=None):
    """One bank run; check_present(transfers present at its end, id -> body) runs
    before the nodes stop."""
    bank = Bank(store, work, name, kill)
    try:
        kinds = ["paycore-kill", "paycore-term"] + (["primary"] if kill is not None else [])
        bank.run(schedule_of(rng, rounds, kinds), rng)
        present = bank.check()
        if check_present is not None:
            check_present(present)
    except BaseException:
        print(bank.logs(), file=sys.stderr)
        raise
    finally:
        bank.close()


def main():
    missing = hacluster.tools_missing()
    if missing:
        pcapi.missing_input("Patroni, etcd and PostgreSQL 15 (%s)" % ", ".join(missing),
                            "scripts/deps.sh installs Debian's patroni, etcd-server and postgresql")
    rng = random.Random(SEED)
    print("bank: seed %d (PAYCORE_SEED=%d replays the schedule)" % (SEED, SEED))
    work = tempfile.mkdtemp(prefix="paycore-bank-")
    try:
        if "sqlite" in STORES:
            run_bank([], work, "sqlite", None, ROUNDS or 4, rng)
        if "plain" in STORES:
            plain = pgcluster.Cluster()
            try:
                url = plain.createdb("paycore") + "&target_session_attrs=read-write"
                run_bank(["--store", url], work, "plain", kill_plain_primary(plain), ROUNDS or 5, rng)
            finally:
                plain.close()
        if "patroni" in STORES:
            cluster = hacluster.Cluster()
            try:
                run_bank(["--store", cluster.url()], work, "patroni", kill_patroni_primary(cluster), ROUNDS or 3,
                         rng)
            except BaseException:
                print(cluster.logs(), file=sys.stderr)
                raise
            finally:
                cluster.close()
        if "shards" in STORES:
            bank_shards(work, rng)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("ok")


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001
        pcapi.fail(repr(e))
