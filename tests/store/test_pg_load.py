"""Goal: a PostgreSQL writer's start finds the transfers committed after the balance
snapshot by the primary key's range (above the last timestamp of the snapshot's batch:
a transfer row names no batch since schema version 15), loads exactly the balances the transfers imply, and does not wait
without end for a staged transaction of an earlier writer: a session holding the
pipeline's lock past STORE_PIPELINE_LOCK_WAIT_MS (15 s) gets a refusal naming it, and
a holder that lets go in time lets the start go on.
Method: a throwaway PostgreSQL 15 cluster with auto_explain logging every statement's
plan. 80 batches of 200 transfers (past the snapshot every 64 batches), a few more
after it, ANALYZE (as autovacuum would), SIGKILL (so the start must replay), restart:
the server log's plan of the replay statement must be an index scan of transfers_pkey,
and the balances read back must be the model's. Then a psql session takes the
pipeline lock shared (as a staged part of a writer does) and serve is started: it must
exit 1 with store_in_use naming the session's backend pid; once more with the session
letting go after 3 s: it must start."""
import os
import re
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "api"))
import pgcluster  # noqa: E402
from pcapi import BIN, TIMEOUT_S, Client, account, check, expect, fail, missing_input, transfer  # noqa: E402

ACCOUNTS = ["ld%d" % i for i in range(8)]
BATCHES = 80
BATCH_TRANSFERS = 200
WRITER_KEY1, PIPELINE_KEY2 = 0x50594352, 0x50495045


def serve(db, url, log_path):
    log = open(log_path, "w")
    proc = subprocess.Popen([BIN, "serve", "--db", db, "--store", url, "--listen", "127.0.0.1:0", "--no-events"],
                            stdout=subprocess.DEVNULL, stderr=log)
    log.close()
    deadline = time.time() + TIMEOUT_S * 2
    while time.time() < deadline:
        m = re.search(r'"msg":"listening".*"port":(\d+)', open(log_path).read())
        if m:
            return proc, int(m.group(1))
        if proc.poll() is not None:
            fail("serve exited early: " + open(log_path).read())
        time.sleep(0.05)
    proc.kill()
    fail("serve did not start: " + open(log_path).read())


def load(client, model):
    n = 0
    for b in range(BATCHES + 3):
        batch = []
        for _ in range(BATCH_TRANSFERS):
            debit, credit = ACCOUNTS[n % len(ACCOUNTS)], ACCOUNTS[(n * 3 + 1) % len(ACCOUNTS)]
            amount = 1 + n % 7
            batch.append(transfer("ld-t%d" % n, debit, credit, amount))
            model[debit] -= amount
            model[credit] += amount
            n += 1
        r = expect(client.post("/v1/transfers", {"transfers": batch}), 200, what="batch %d" % b)
        check(all(x.get("status") == "created" for x in r.json["results"]), "batch %d created: %r" % (
            b, r.json["results"][:2]))


def replay_plans(cluster):
    log = open(os.path.join(cluster.dir, "server.log"), errors="replace").read()
    plans = []
    for block in log.split("duration:")[1:]:
        if "t.timestamp > $1 ORDER BY t.timestamp" in block:
            plans.append(block)
    return plans


def replay_uses_key_range(cluster, db, url, work):
    proc, port = serve(db, url, os.path.join(work, "serve-1.log"))
    client = Client(port, open(os.path.join(work, "key")).read().strip())
    model = dict((a, 0) for a in ACCOUNTS)
    for a in ACCOUNTS:
        expect(client.post("/v1/accounts", account(a)), 201, what="account " + a)
    load(client, model)
    client.close()
    as_of = int(cluster.sql("paycore", "SELECT value FROM paycore_meta WHERE key = 'accounts_as_of_seq'"))
    check(as_of > 0, "a balance snapshot was taken (accounts_as_of_seq %d)" % as_of)
    after = int(cluster.sql("paycore", "SELECT count(*) FROM transfers WHERE timestamp > (SELECT timestamp_last"
                                       " FROM journal WHERE seq <= %d AND timestamp_last > 0 ORDER BY seq DESC"
                                       " LIMIT 1)" % as_of))
    check(after > 0, "transfers after the snapshot to replay: %d" % after)
    cluster.sql("paycore", "ANALYZE transfers")
    proc.send_signal(signal.SIGKILL)
    proc.wait(TIMEOUT_S)
    before = len(replay_plans(cluster))
    proc, port = serve(db, url, os.path.join(work, "serve-2.log"))
    client = Client(port, open(os.path.join(work, "key")).read().strip())
    for a in ACCOUNTS:
        got = expect(client.get("/v1/accounts/" + a), 200, what="account " + a).json
        check(got["credits_posted"] - got["debits_posted"] == model[a], "%s after the replay: %r, want net %d" % (
            a, got, model[a]))
    client.close()
    proc.send_signal(signal.SIGTERM)
    check(proc.wait(TIMEOUT_S) == 0, "clean stop")
    plans = replay_plans(cluster)[before:]
    check(len(plans) == 1, "one replay statement's plan logged at the start, got %d" % len(plans))
    plan = plans[0][:plans[0].find("LOG:", 1) if "LOG:" in plans[0][1:] else None]
    # schema v9 joins accounts for the ids: the condition then names the table's alias
    check("Index Scan using transfers_pkey" in plan and re.search(r'Index Cond: \((t\.)?"timestamp" >', plan),
          "the replay walks a range of the primary key, not the whole table (or index):\n%s" % plan[:1500])


class LockHolder:
    """A psql session holding the pipeline's lock shared, as a staged part of a writer
    does, until release()."""

    def __init__(self, cluster):
        argv = [os.path.join(pgcluster.PG_BIN, "psql"), "-h", cluster.dir, "-U", pgcluster.USER, "-d", "paycore",
                "-qAt"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.proc.stdin.write("SELECT pg_advisory_lock_shared(%d, %d), pg_backend_pid();\n" % (
            WRITER_KEY1, PIPELINE_KEY2))
        self.proc.stdin.flush()
        self.pid = int(self.proc.stdout.readline().strip().split("|")[1])

    def release(self):
        self.proc.stdin.close()
        self.proc.wait(TIMEOUT_S)


def waiting_on_lock(cluster, proc, log_path):
    """Until serve's session waits for the advisory lock the holder has (pg_locks: not
    granted): the state asserted next, seen, not assumed after a pause."""
    deadline = time.time() + TIMEOUT_S * 3
    while int(cluster.sql("paycore", "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")) == 0:
        check(proc.poll() is None and time.time() < deadline,
              "serve never waited for the pipeline lock: " + open(log_path).read()[-1000:])
        time.sleep(0.05)


def pipeline_lock_bounded(cluster, db, url, work):
    holder = LockHolder(cluster)
    try:
        started = time.time()
        out = subprocess.run([BIN, "serve", "--db", db, "--store", url, "--listen", "127.0.0.1:0", "--no-events"],
                             capture_output=True, text=True, timeout=TIMEOUT_S * 4)
        waited_s = time.time() - started
    finally:
        holder.release()
    check(out.returncode == 1, "serve with the pipeline lock held must be refused (exit 1), got %d: %s" % (
        out.returncode, out.stderr[-2000:]))
    line = [x for x in out.stderr.splitlines() if "pipeline lock" in x]
    check(line and "store_in_use" in line[0] and ("backend pid %d" % holder.pid) in line[0],
          "one line naming the lock and its holder's pid %d: %s" % (holder.pid, out.stderr[-2000:]))
    check(waited_s >= 10, "it waited for the holder first (%.1f s)" % waited_s)
    holder = LockHolder(cluster)
    proc = None
    try:
        log_path = os.path.join(work, "serve-3.log")
        log = open(log_path, "w")
        proc = subprocess.Popen([BIN, "serve", "--db", db, "--store", url, "--listen", "127.0.0.1:0",
                                 "--no-events"], stdout=subprocess.DEVNULL, stderr=log)
        log.close()
        waiting_on_lock(cluster, proc, log_path)
        check(proc.poll() is None and "listening" not in open(log_path).read(),
              "serve waits while the pipeline lock is held: " + open(log_path).read()[-1000:])
    finally:
        holder.release()
    deadline = time.time() + TIMEOUT_S * 2
    while "listening" not in open(log_path).read() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    check("listening" in open(log_path).read(), "serve starts once the holder lets go: " + open(log_path).read())
    proc.send_signal(signal.SIGTERM)
    check(proc.wait(TIMEOUT_S) == 0, "clean stop")


def main():
    if not pgcluster.available():
        missing_input("PostgreSQL 15 (initdb, pg_ctl)", "scripts/deps.sh installs Debian's postgresql")
    cluster = pgcluster.Cluster(settings="-c shared_preload_libraries=auto_explain -c auto_explain.log_min_duration=0"
                                         " -c auto_explain.log_nested_statements=on")
    work = cluster.dir
    try:
        url = cluster.createdb("paycore")
        db = os.path.join(work, "node.db")
        out = subprocess.run([BIN, "init", "--db", db, "--store", url], capture_output=True, text=True,
                             timeout=TIMEOUT_S)
        check(out.returncode == 0, "init: " + out.stderr)
        open(os.path.join(work, "key"), "w").write(out.stdout.strip().split("=", 1)[1])
        replay_uses_key_range(cluster, db, url, work)
        pipeline_lock_bounded(cluster, db, url, work)
    finally:
        cluster.close()
    print("pg load: ok")


if __name__ == "__main__":
    main()
