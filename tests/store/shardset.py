"""tests/store/shardset.py: three throwaway PostgreSQL clusters as the shards of one
paycore set (pgcluster.py each), `paycore init --shards` and a restartable `paycore
serve --shards`, plus what the shard tests read straight from the shards (legs,
prepared transactions, each shard's books). Not a test itself."""
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "api"))
sys.path.insert(0, HERE)
import pcapi  # noqa: E402
import pgcluster  # noqa: E402
from pcapi import BIN, TIMEOUT_S, check, fail  # noqa: E402


def shard_of(account_id, count):
    """The shard paycore places 'account_id' on (docs/scaleout.md §6): SipHash-2-4 of
    the id under the key 'paycore-shards-1' (libsodium's), little-endian, mod count."""
    import ctypes
    import ctypes.util
    sodium = ctypes.CDLL(ctypes.util.find_library("sodium") or "libsodium.so.23")
    out = ctypes.create_string_buffer(8)
    data = account_id.encode()
    check(sodium.crypto_shorthash_siphash24(out, data, ctypes.c_ulonglong(len(data)), b"paycore-shards-1") == 0,
          "siphash24")
    return int.from_bytes(out.raw, "little") % count


def ids_on(shard, count, n, prefix):
    """'n' fresh ids that paycore places on 'shard' of 'count'."""
    out = []
    for i in range(100000):
        if len(out) == n:
            return out
        if shard_of("%s%d" % (prefix, i), count) == shard:
            out.append("%s%d" % (prefix, i))
    fail("no ids on shard %d" % shard)


def stop_process(proc, log, what, sig=signal.SIGTERM):
    """Ends a paycore process with 'sig' (a failure when it has not exited after
    TIMEOUT_S * 3: it is killed then) and checks that its log ('log()' reads it) holds
    no sanitizer report; returns its exit code."""
    proc.send_signal(sig)
    try:
        code = proc.wait(timeout=TIMEOUT_S * 3)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        fail("%s did not stop on signal %d" % (what, sig))
    for marker in pcapi.SANITIZER_MARKERS:
        check(marker not in log(), "%s: sanitizer report:\n%s" % (what, log()[-6000:]))
    return code


def run(body, count=3, one_server=True, done="ok", on_failure=None):
    """A shard test's main: PostgreSQL required; body(s) runs on a ShardSet of 'count'
    shards (databases of one throwaway cluster, s.clusters[0], when 'one_server'; else
    a cluster each); when it fails, what on_failure() says and the tail of the
    server's log go to stderr; everything is closed; 'done' is printed at the end."""
    require_postgres()
    cluster = pgcluster.Cluster() if one_server else None
    s = None
    try:
        s = ShardSet(count, server=cluster)
        body(s)
    except BaseException:  # fail() and check() exit
        if on_failure is not None:
            print(on_failure(), file=sys.stderr)
        if s is not None:
            print(s.log()[-4000:], file=sys.stderr)
        raise
    finally:
        if s is not None:
            s.close()
        if cluster is not None:
            cluster.close()
    print(done)


def require_postgres():
    if not pgcluster.available():
        pcapi.missing_input("PostgreSQL 15 (initdb, pg_ctl in %s)" % pgcluster.PG_BIN,
                            "scripts/deps.sh installs Debian's postgresql; PAYCORE_PG_BIN names another bin dir")


class ShardSet:
    """'count' shards, each on a cluster of its own; or, given 'server' (a cluster),
    'count' databases of that one server (its close() is the caller's)."""

    def __init__(self, count=3, server=None):
        self.clusters = []
        self.owned = server is None
        try:
            for i in range(count):
                self.clusters.append(pgcluster.Cluster() if server is None else server)
        except Exception:
            self.close()
            raise
        self.names = ["shard" if server is None else "shard%d" % i for i in range(count)]
        self.urls = [c.createdb(name) for c, name in zip(self.clusters, self.names)]
        self.dir = tempfile.mkdtemp(prefix="paycore-shards-")
        self.db = os.path.join(self.dir, "node.db")
        self.proc = None
        self.port = None
        self.starts = 0
        self.log_path = None
        self.admin_key = None

    def shards_arg(self, urls=None):
        return ",".join(urls if urls is not None else self.urls)

    def init(self):
        out = subprocess.run([BIN, "init", "--db", self.db, "--shards", self.shards_arg()], capture_output=True,
                             text=True, timeout=TIMEOUT_S * 3)
        check(out.returncode == 0, "init --shards failed: " + out.stderr)
        lines = out.stdout.splitlines()
        check(len(lines) == 1 and lines[0].startswith("admin_key="), "init prints one admin_key= line: %r" % out.stdout)
        self.admin_key = lines[0][len("admin_key="):]

    def start(self, env_extra=None, expect_listen=True, args=None):
        """'args' replace the default --no-events (the payments tests give channels,
        risk rules and events options)."""
        self.starts += 1
        self.log_path = os.path.join(self.dir, "serve-%d.log" % self.starts)
        env = dict(os.environ)
        env.pop("PAYCORE_2PC_FAULT", None)
        env.pop("PAYCORE_2PC_FAULT_ACTION", None)
        env.update(env_extra or {})
        with open(self.log_path, "w") as log:
            more = ["--no-events"] if args is None else list(args)
            listen = [] if any(a == "--listen" for a in more) else ["--listen", "127.0.0.1:0"]
            more += ["--webhook-private-ok"]  # the tests' webhook receivers listen on loopback
            self.proc = subprocess.Popen([BIN, "serve", "--db", self.db] + listen + more +
                                         ["--shards", self.shards_arg()], stdout=subprocess.DEVNULL, stderr=log,
                                         env=env)
        deadline = time.time() + TIMEOUT_S * 3
        while time.time() < deadline:
            if self.proc.poll() is not None:
                fail("serve --shards exited early (%d): %s" % (self.proc.returncode, self.log()[-4000:]))
            m = re.search(r'"msg":"listening".*"port":(\d+)', self.log())
            if m:
                self.port = int(m.group(1))
                return self
            time.sleep(0.05)
        fail("serve --shards did not start: " + self.log()[-4000:])

    def log(self):
        return open(self.log_path).read() if self.log_path else ""

    def client(self):
        return pcapi.Client(self.port, self.admin_key)

    def wait_exit(self, what):
        """The server must end by itself (a fault it injected, a failed shard)."""
        try:
            code = self.proc.wait(timeout=TIMEOUT_S * 3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            fail("%s: the server did not exit" % what)
        self.proc = None
        return code

    def stop(self, sig=signal.SIGTERM):
        if self.proc is None:
            return 0
        proc, self.proc = self.proc, None
        return stop_process(proc, self.log, "serve --shards", sig)

    def sql(self, shard, statement):
        return self.clusters[shard].sql(self.names[shard], statement)

    def shard_of(self, account_id):
        for i in range(len(self.clusters)):
            if self.sql(i, "SELECT count(*) FROM shard_accounts WHERE account_id = '%s'" % account_id) == "1":
                return i
        fail("account %s is on no shard's shard_accounts" % account_id)

    def placement(self):
        """account id -> shard, from each shard's shard_accounts."""
        out = {}
        for i in range(len(self.clusters)):
            for row in filter(None, self.sql(i, "SELECT account_id FROM shard_accounts").splitlines()):
                out[row] = i
        return out

    def legs(self, transfer_id):
        """Shards holding a transfer row with this id."""
        return [i for i in range(len(self.clusters))
                if self.sql(i, "SELECT count(*) FROM transfers WHERE id = '%s'" % transfer_id) == "1"]

    def prepared(self):
        return sum(int(self.sql(i, "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()"))
                   for i in range(len(self.clusters)))

    def books_balance(self, what):
        """Each shard's own accounts balance per currency (after a clean stop wrote the
        balance snapshot, the account rows are current)."""
        for i in range(len(self.clusters)):
            rows = self.sql(i, "SELECT currency, sum(debits_posted) - sum(credits_posted),"
                               " sum(debits_pending) - sum(credits_pending) FROM accounts GROUP BY currency")
            for row in filter(None, rows.splitlines()):
                currency, posted, pending = row.split("|")
                check(posted == "0" and pending == "0",
                      "%s: shard %d's books do not balance in %s: debits - credits posted %s, pending %s"
                      % (what, i, currency, posted, pending))

    def close(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        for c in self.clusters if self.owned else []:
            c.close()
