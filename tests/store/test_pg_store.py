"""Goal: paycore on the PostgreSQL store keeps the ledger's semantics across clean
stops and crashes, refuses misconfiguration at start with one clear line, and the
selected API, events and payments suites pass on it unchanged.
Method: a throwaway PostgreSQL 15 cluster (pgcluster.py: initdb in a temp dir, Unix
socket only, max_prepared_transactions > 0), `paycore init --store URL`, `paycore serve
--store URL` over loopback. Drive accounts, transfers, pending post/void, idempotent
replays and bad inputs against a model of the balances, checking the model and
debits == credits per currency after every step; stop with SIGTERM and SIGKILL (the
second during a concurrent load) and check every acknowledged transfer and the model
after each restart; a standby (serve --standby) takes over when the writer is killed,
with every acknowledged transfer; ids stored before a start answer as stored (exists,
id_already_failed) after it. Start errors: a URL that does not parse, a server not reachable,
an empty database, a database of another program, another schema version, a second
writer, a server with fsync or synchronous_commit off. Then the API, events and payments suites listed in SUITES run with
PAYCORE_TEST_PG_HOST set (pcapi.py makes a database per server)."""
import os
import re
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "api"))
sys.path.insert(0, HERE)
import pcapi  # noqa: E402
import pgcluster  # noqa: E402
from pcapi import BIN, TIMEOUT_S, account, check, expect, fail, transfer  # noqa: E402

# Suites that run unchanged on PostgreSQL, relative to tests/ (those that call verify run
# in test_pg_verify.py, beside this one).
SUITES = ["api/test_api_idempotency.py", "api/test_api_tenancy.py", "api/test_api_manners.py",
          "api/test_api_shutdown.py", "api/test_cli.py", "events/test_events_api.py",
          "events/test_webhook_lifecycle.py", "events/test_webhook_delivery.py",
          "payments/test_payments_flows.py", "payments/test_payments_inputs.py",
          "payments/test_payments_tenancy.py", "payments/test_payments_channels.py",
          "payments/test_payments_data_key.py", "payments/test_payments_top_ups.py",
          "events/test_events_refs.py", "payments/test_payments_read_balance.py",
          "api/test_api_idempotency_index.py", "payments/test_payments_idempotency_index.py",
          "payments/test_payments_recovery_rows.py"]


class Model:
    """Balances the clients' acknowledged requests imply, per account."""

    def __init__(self):
        self.posted = {}   # id -> [debits_posted, credits_posted]
        self.pending = {}  # id -> [debits_pending, credits_pending]
        self.holds = {}    # pending transfer id -> (debit, credit, amount)

    def add_account(self, account_id):
        self.posted[account_id] = [0, 0]
        self.pending[account_id] = [0, 0]

    def post(self, debit, credit, amount):
        self.posted[debit][0] += amount
        self.posted[credit][1] += amount

    def hold(self, transfer_id, debit, credit, amount):
        self.pending[debit][0] += amount
        self.pending[credit][1] += amount
        self.holds[transfer_id] = (debit, credit, amount)

    def release(self, transfer_id, posted_amount):
        debit, credit, amount = self.holds.pop(transfer_id)
        self.pending[debit][0] -= amount
        self.pending[credit][1] -= amount
        if posted_amount:
            self.post(debit, credit, posted_amount)

    def check(self, client, what):
        for account_id in self.posted:
            a = expect(client.get("/v1/accounts/" + account_id), 200, what="%s: get %s" % (what, account_id)).json
            got = (a["debits_posted"], a["credits_posted"], a["debits_pending"], a["credits_pending"])
            want = tuple(self.posted[account_id] + self.pending[account_id])
            check(got == want, "%s: %s balances %r, the model says %r" % (what, account_id, got, want))
        pcapi.check_conserved(client, what)


def serve_fails(args, want_code, want_text, what):
    """`paycore serve` (or init) must exit non-zero and name the cause in one line."""
    out = subprocess.run([BIN] + args + ["--listen", "127.0.0.1:0"] if args[0] == "serve" else [BIN] + args,
                         capture_output=True, text=True, timeout=TIMEOUT_S * 2)
    check(out.returncode != 0, "%s: must be refused at start, got exit 0: %s" % (what, out.stderr))
    no_sanitizer_report(out.stderr, what)
    lines = [line for line in out.stderr.splitlines() if want_text in line]
    check(lines, "%s: no line naming the cause (%r) in:\n%s" % (what, want_text, out.stderr))
    check(want_code in out.stderr, "%s: want code %s in:\n%s" % (what, want_code, out.stderr))


def misconfiguration(cluster, node_db):
    serve_fails(["serve", "--db", node_db, "--store", "postgresql://paycore@[::1/x"], "store_open_failed",
                "does not parse", "a URL that does not parse")
    serve_fails(["serve", "--db", node_db, "--store", "postgresql://paycore@127.0.0.1:1/paycore?connect_timeout=5"],
                "store_open_failed", "cannot connect to", "a server not reachable")
    serve_fails(["serve", "--db", node_db, "--store", "/tmp/not-a-url"], "", "wants a postgres:// URL",
                "--store given a file")
    empty = cluster.createdb("empty")
    serve_fails(["serve", "--db", node_db, "--store", empty], "store_not_paycore", "run paycore init --store",
                "an empty database")
    foreign = cluster.createdb("foreign")
    cluster.sql("foreign", "CREATE TABLE orders(id int)")
    serve_fails(["serve", "--db", node_db, "--store", foreign], "store_not_paycore", "not paycore's",
                "a database of another program")
    serve_fails(["init", "--db", node_db, "--store", foreign], "store_not_paycore", "not paycore's",
                "init on a database of another program")
    check(cluster.sql("foreign", "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == "1",
          "a refused init must not touch a foreign database")
    newer = cluster.createdb("newer")
    out = subprocess.run([BIN, "init", "--db", node_db + "-newer", "--store", newer], capture_output=True, text=True,
                         timeout=TIMEOUT_S)
    check(out.returncode == 0, "init newer: " + out.stderr)
    cluster.sql("newer", "UPDATE paycore_meta SET value = '99' WHERE key = 'schema_version'")
    serve_fails(["serve", "--db", node_db + "-newer", "--store", newer], "store_version_unsupported",
                "schema version 99 is newer", "a database of a newer schema version")
    not_durable(cluster, node_db)


def not_durable(cluster, node_db):
    """A server under which an acknowledged COMMIT could be lost is refused, by init and serve."""
    lax = cluster.createdb("lax")
    cluster.sql("postgres", "ALTER DATABASE lax SET synchronous_commit = off")
    serve_fails(["init", "--db", node_db + "-lax", "--store", lax], "store_not_durable", "synchronous_commit is off",
                "init on a database with synchronous_commit off")
    check(cluster.sql("lax", "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == "0",
          "a refused init must create nothing")
    cluster.sql("postgres", "ALTER DATABASE lax SET synchronous_commit = local")
    out = subprocess.run([BIN, "init", "--db", node_db + "-lax", "--store", lax], capture_output=True, text=True,
                         timeout=TIMEOUT_S)
    check(out.returncode == 0, "synchronous_commit = local flushes the WAL: init must work: " + out.stderr)
    cluster.sql("postgres", "ALTER DATABASE lax SET synchronous_commit = off")
    serve_fails(["serve", "--db", node_db + "-lax", "--store", lax], "store_not_durable", "synchronous_commit is off",
                "serve on a database with synchronous_commit off")
    lax_server = pgcluster.Cluster(settings="-c fsync=off")
    try:
        serve_fails(["init", "--db", node_db + "-nofsync", "--store", lax_server.createdb("paycore")],
                    "store_not_durable", "fsync = off", "init on a server with fsync off")
    finally:
        lax_server.close()


def bad_inputs(client, model):
    """Each bad input gets its code and changes nothing (the model is checked after)."""
    cases = [
        (transfer("bad1", "a", "b", 1.5), 400, "amount_not_integer"),
        (transfer("bad2", "a", "b", "10"), 400, "amount_not_integer"),
        (transfer("bad3", "a", "nobody", 10), 422, "account_not_found"),
        (transfer("bad4", "a", "eur", 10), 422, "currency_mismatch"),
        (transfer("t1", "a", "b", 999), 422, "exists_with_different_amount"),
        (transfer("bad5", "a", "a", 10), 422, "accounts_must_be_different"),
    ]
    for body, status, code in cases:
        r = client.post("/v1/transfers", body)
        check(r.code() == code, "bad input %r: want %s, got %r" % (body, code, r))
        check(r.status == status, "bad input %r: want HTTP %d, got %r" % (body, status, r))
    expect(client.post("/v1/transfers", raw=b"{not json"), 400, "json_invalid", what="malformed JSON")
    expect(client.post("/v1/transfers", transfer("over", "capped", "b", 1000)), 422, "exceeds_credits",
           what="overdraw of a capped account")
    model.check(client, "after bad inputs")


def ledger_round(client, model):
    for account_id in ("a", "b", "capped"):
        flags = ["debits_must_not_exceed_credits"] if account_id == "capped" else []
        expect(client.post("/v1/accounts", account(account_id, flags=flags)), 201, what="account " + account_id)
        model.add_account(account_id)
    expect(client.post("/v1/accounts", account("eur", currency="EUR")), 201, what="account eur")
    model.add_account("eur")
    expect(client.post("/v1/transfers", transfer("t1", "a", "b", 100)), 201, what="t1")
    model.post("a", "b", 100)
    replay = expect(client.post("/v1/transfers", transfer("t1", "a", "b", 100)), 200, what="t1 again")
    check(replay.json.get("status") == "exists", "a replayed id answers exists: %r" % replay)
    idem = {"Idempotency-Key": "pg-idem-1"}
    first = expect(client.post("/v1/transfers", transfer("t2", "b", "a", 30), headers=idem), 201, what="t2")
    model.post("b", "a", 30)
    again = client.post("/v1/transfers", transfer("t2", "b", "a", 30), headers=idem)
    check(again.status == 201 and again.raw == first.raw, "idempotent replay returns the stored reply: %r" % again)
    expect(client.post("/v1/transfers", transfer("t2x", "b", "a", 31), headers=idem), 409, "idempotency_key_reused",
           what="the key with another body")
    expect(client.post("/v1/transfers", transfer("hold1", "a", "b", 70, flags=["pending"], timeout_s=3600)), 201,
           what="hold1")
    model.hold("hold1", "a", "b", 70)
    expect(client.post("/v1/transfers", {"id": "cap1", "pending_id": "hold1", "amount": 50, "flags": ["post_pending"]}),
           201, what="post hold1 partially")
    model.release("hold1", 50)
    expect(client.post("/v1/transfers", transfer("hold2", "a", "b", 40, flags=["pending"], timeout_s=3600)), 201,
           what="hold2")
    model.hold("hold2", "a", "b", 40)
    expect(client.post("/v1/transfers", {"id": "void2", "pending_id": "hold2", "flags": ["void_pending"]}), 201,
           what="void hold2")
    model.release("hold2", 0)
    expect(client.post("/v1/transfers", {"id": "void2b", "pending_id": "hold2", "flags": ["void_pending"]}), 422,
           "pending_transfer_already_voided", what="void hold2 twice")
    expect(client.post("/v1/transfers", transfer("hold3", "a", "b", 25, flags=["pending"], timeout_s=3600)), 201,
           what="hold3 (open across restarts)")
    model.hold("hold3", "a", "b", 25)
    expect(client.post("/v1/transfers", transfer("fund", "a", "capped", 60, metadata={"note": "tab\there \\ ok"})),
           201, what="fund capped (metadata with a tab and a backslash)")
    model.post("a", "capped", 60)
    got = expect(client.get("/v1/transfers/fund"), 200, what="get fund").json
    check(got["metadata"] == {"note": "tab\there \\ ok"}, "metadata round trip: %r" % got)
    model.check(client, "after the ledger round")
    report = expect(client.post("/v1/verify"), 200, what="verify of the PostgreSQL store").json
    check(report["ok"] is True and report["transfers"] >= 7, "POST /v1/verify on PostgreSQL: %r" % report)
    bad_inputs(client, model)


def load(port, key, prefix, count, acked, errors):
    client = pcapi.Client(port, key)
    try:
        for i in range(count):
            tid = "%s-%d" % (prefix, i)
            r = client.post("/v1/transfers", transfer(tid, "a", "b", 1 + i % 7))
            if r.status == 201:
                acked.append((tid, 1 + i % 7))
    except (ConnectionError, OSError):
        pass  # the server was killed under us
    except Exception as e:  # noqa: BLE001
        errors.append(repr(e))
    finally:
        client.close()


def crash_round(server, model, round_no):
    """Concurrent load, SIGKILL, restart: every acknowledged transfer is there; an
    unacknowledged one is there or not, and the model follows what is there."""
    acked, errors, threads = [], [], []
    for n in range(4):
        t = threading.Thread(target=load, args=(server.port, server.admin_key, "r%d-load%d" % (round_no, n), 400, acked,
                                                errors))
        t.start()
        threads.append(t)
    while len(acked) < 40 and any(t.is_alive() for t in threads):
        threading.Event().wait(0.01)
    server.stop(signal.SIGKILL)
    for t in threads:
        t.join(TIMEOUT_S)
    check(not errors, "load errors: %r" % errors)
    client = server.start().client()
    acked_ids = set(tid for tid, _ in acked)
    for tid, amount in acked:
        expect(client.get("/v1/transfers/" + tid), 200, what="acknowledged %s after SIGKILL" % tid)
        model.post("a", "b", amount)
    for n in range(4):  # the unacknowledged ones that committed count too
        for i in range(400):
            tid = "r%d-load%d-%d" % (round_no, n, i)
            if tid in acked_ids:
                continue
            r = client.get("/v1/transfers/" + tid)
            if r.status == 200:
                model.post("a", "b", r.json["amount"])
    model.check(client, "after SIGKILL under load")
    return client


def standby_start(server):
    """A second `paycore serve --standby` on the same store: it waits for the writer's
    lock. Returns (process, log path) once it says so."""
    log_path = os.path.join(server.dir, "standby-%d.log" % len(os.listdir(server.dir)))
    log = open(log_path, "w")
    proc = subprocess.Popen([BIN, "serve", "--db", server.db, "--listen", "127.0.0.1:0", "--standby"] +
                            server.store_args, stdout=subprocess.DEVNULL, stderr=log)
    log.close()
    wait_for_line(proc, log_path, "standby: another writer holds", "the standby to wait")
    return proc, log_path


def wait_for_line(proc, log_path, text, what):
    deadline = time.time() + TIMEOUT_S * 3
    while time.time() < deadline:
        log = open(log_path).read()
        if text in log:
            return log
        check(proc.poll() is None, "%s: exited %s early:\n%s" % (what, proc.returncode, log))
        time.sleep(0.05)
    fail("%s: no %r in:\n%s" % (what, text, open(log_path).read()))


def standby_round(server, model):
    """A standby takes over when the writer dies, with every acknowledged transfer; a
    standby stopped while it waits exits 0."""
    proc, log_path = standby_start(server)
    client = server.client()
    expect(client.post("/v1/transfers", transfer("before-failover", "a", "b", 9)), 201, what="before the failover")
    model.post("a", "b", 9)
    client.close()
    check(proc.poll() is None, "the standby keeps waiting while the writer lives")
    server.stop(signal.SIGKILL)
    log = wait_for_line(proc, log_path, '"msg":"listening"', "the standby to take over")
    check("standby: took the writer's lock" in log, "the standby says it took the lock:\n" + log)
    port = int(re.search(r'"msg":"listening".*"port":(\d+)', log).group(1))
    client = pcapi.Client(port, server.admin_key)
    expect(client.get("/v1/transfers/before-failover"), 200, what="acknowledged before the failover")
    expect(client.post("/v1/transfers", transfer("after-failover", "b", "a", 4)), 201, what="on the new writer")
    model.post("b", "a", 4)
    model.check(client, "after the failover")
    waiting, waiting_log = standby_start(server)  # a standby of the new writer
    waiting.send_signal(signal.SIGTERM)
    check(waiting.wait(timeout=TIMEOUT_S) == 0, "a waiting standby stopped by SIGTERM exits 0:\n" +
          open(waiting_log).read())
    client.close()
    proc.send_signal(signal.SIGTERM)
    check(proc.wait(timeout=TIMEOUT_S) == 0, "the new writer stops cleanly")
    for path in (log_path, waiting_log):
        no_sanitizer_report(open(path).read(), path)


def no_sanitizer_report(text, what):
    for marker in pcapi.SANITIZER_MARKERS:
        check(marker not in text, "sanitizer report in %s:\n%s" % (what, text[-6000:]))


def suites(cluster):
    for suite, out in cluster.run_suites(SUITES):
        fail("%s on PostgreSQL: exit %d\n%s\n%s" % (suite, out.returncode, out.stdout[-3000:], out.stderr[-6000:]))


def main():
    if not pgcluster.available():
        pcapi.missing_input("PostgreSQL 15 (initdb, pg_ctl in %s)" % pgcluster.PG_BIN,
                            "scripts/deps.sh installs Debian's postgresql; PAYCORE_PG_BIN names another bin dir")
    cluster = pgcluster.Cluster()
    pcapi.PG_HOST = cluster.dir
    server = None
    try:
        server = pcapi.Server()
        misconfiguration(cluster, server.db)
        model = Model()
        client = server.start().client()
        ledger_round(client, model)
        second = subprocess.run([BIN, "serve", "--db", server.db, "--listen", "127.0.0.1:0"] + server.store_args,
                                capture_output=True, text=True, timeout=TIMEOUT_S)
        check(second.returncode != 0 and "store_in_use" in second.stderr and "another paycore writer" in second.stderr,
              "a second writer must be refused: %d %s" % (second.returncode, second.stderr))
        client.close()
        check(server.stop(signal.SIGTERM) == 0, "clean stop exits 0")
        client = server.start().client()
        model.check(client, "after a clean stop and restart")
        # the ids written before the start are known to the writer's id filter (loaded at start)
        replay = expect(client.post("/v1/transfers", transfer("t1", "a", "b", 100)), 200, what="t1 after the restart")
        check(replay.json.get("status") == "exists", "a stored id answers exists after a restart: %r" % replay)
        expect(client.post("/v1/transfers", transfer("over", "a", "b", 1)), 422, "id_already_failed",
               what="a burned id after the restart")
        expect(client.post("/v1/transfers", {"id": "cap3", "pending_id": "hold3", "flags": ["post_pending"]}), 201,
               what="post hold3 after the restart")
        model.release("hold3", 25)
        client.close()
        server.stop(signal.SIGKILL)
        client = server.start().client()
        model.check(client, "after SIGKILL at rest")
        client.close()
        for round_no in range(2):
            client = crash_round(server, model, round_no)
            client.close()
        standby_round(server, model)
        client = server.start().client()
        model.check(client, "after the last restart")
        client.close()
        server.stop(signal.SIGTERM)
        suites(cluster)
    except Exception:
        if server is not None and server.log_path:
            print(server.log()[-4000:], file=sys.stderr)
        raise
    finally:
        if server is not None:
            server.close()
        cluster.close()
    print("ok")


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001
        fail(repr(e))
