"""Goal: `paycore verify --store URL` verifies a PostgreSQL store as `paycore verify
--db FILE` verifies a SQLite file: the same report line for the same history, ok on
an intact store (also while the writer commits, and through POST /v1/verify), and a
hand edit named with exit 1: a transfer's amount, a deleted transfer row, a journal
row's hash, a checkpoint's signature, an account's balance, a pending transfer's
state; a database that is not paycore's and a server that is not there are refused
(exit 1, "verify error: <code>"); usage errors exit 2.
Method: a throwaway PostgreSQL 15 cluster (pgcluster.py). The same sequence of
requests (accounts with and without history, 150 transfers, pending post/void, a
burned id, more than 128 batches so that two checkpoints are signed) goes to a server
on SQLite and to one on PostgreSQL, one request at a time; both verify lines must
agree but for head_hash (timestamps differ). Each tamper case copies the stopped
store's database (CREATE DATABASE ... TEMPLATE), edits the copy with psql and runs
the binary on it. Then verify runs three times, and POST /v1/verify once, while a
client keeps committing transfers; serve --verify-interval-s 1 verifies it in the
background (two runs, none failed). Last, the suites in SUITES (those that call
verify) run on this cluster unchanged."""
import os
import re
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "api"))
sys.path.insert(0, HERE)
import pcapi  # noqa: E402
import pgcluster  # noqa: E402
from pcapi import BIN, TIMEOUT_S, account, check, expect, transfer  # noqa: E402

# Suites that call `paycore verify` or POST /v1/verify, relative to tests/: they run on
# PostgreSQL here (with PAYCORE_TEST_PG_HOST, as test_pg_store.py runs the others).
SUITES = ["api/test_api_routes.py", "api/test_api_concurrency.py", "api/test_api_auth.py",
          "api/test_api_adversarial_ids.py", "store/test_restart_scenario.py", "payments/test_payments_crash.py"]

LINE = re.compile(r"^verify ok batches=\d+ transfers=\d+ accounts=\d+ checkpoints=\d+ failures=\d+"
                  r" pending_open=\d+ head_hash=[0-9a-f]{64}$")


def history(client):
    """The same requests on either backend, one at a time (one batch each)."""
    for account_id, flags in (("a", []), ("b", []), ("h", ["history"]), ("capped", ["debits_must_not_exceed_credits"])):
        expect(client.post("/v1/accounts", account(account_id, flags=flags)), 201, what="account " + account_id)
    expect(client.post("/v1/accounts", account("e", currency="EUR")), 201, what="account e")
    expect(client.post("/v1/accounts", account("f", currency="EUR")), 201, what="account f")
    for i in range(1, 151):
        credit = "h" if i % 3 == 0 else "b"
        body = transfer("t-%d" % i, "a", credit, 100 + i, metadata={"n": str(i)} if i % 2 else None)
        if body["metadata"] is None:
            del body["metadata"]
        expect(client.post("/v1/transfers", body), 201, what="t-%d" % i)
    expect(client.post("/v1/transfers", transfer("eur-1", "e", "f", 5, currency="EUR")), 201, what="eur-1")
    for hold in ("p-open", "p-post", "p-void"):
        expect(client.post("/v1/transfers", transfer(hold, "a", "b", 70, flags=["pending"], timeout_s=3600)), 201,
               what=hold)
    expect(client.post("/v1/transfers", {"id": "post-1", "pending_id": "p-post", "amount": 50,
                                         "flags": ["post_pending"]}), 201, what="post p-post")
    expect(client.post("/v1/transfers", {"id": "void-1", "pending_id": "p-void", "flags": ["void_pending"]}), 201,
           what="void p-void")
    expect(client.post("/v1/transfers", transfer("burned-1", "capped", "a", 10)), 422, "exceeds_credits",
           what="burned-1")


def verify(*args):
    out = subprocess.run([BIN, "verify"] + list(args), capture_output=True, text=True, timeout=TIMEOUT_S * 6)
    return out.returncode, out.stdout.strip(), out.stderr.strip()


def without_head(line):
    return line.split(" head_hash=")[0]


def same_report(sqlite_server, pg_server):
    """Both backends' verify lines for the same history agree but for head_hash."""
    rc_file, line_file, err_file = verify("--db", sqlite_server.db, "--pubkey", sqlite_server.db + ".key.pub")
    rc_pg, line_pg, err_pg = verify("--store", pg_server.store_args[1], "--pubkey", pg_server.db + ".key.pub")
    check(rc_file == 0 and LINE.match(line_file), "verify on SQLite: %d %r %r" % (rc_file, line_file, err_file))
    check(rc_pg == 0 and LINE.match(line_pg), "verify on PostgreSQL: %d %r %r" % (rc_pg, line_pg, err_pg))
    check(without_head(line_file) == without_head(line_pg),
          "the same history verifies alike:\n  sqlite:   %s\n  postgres: %s" % (line_file, line_pg))
    check("checkpoints=2 " in line_pg and "failures=1 " in line_pg and "pending_open=1 " in line_pg,
          "the history signs two checkpoints, burns one id, leaves one hold open: %s" % line_pg)
    return line_pg


def live_verify(server):
    """verify reads one snapshot while the writer keeps committing."""
    client = server.client()
    stop = threading.Event()
    errors = []

    def load():
        c = server.client()
        i = 0
        while not stop.is_set():
            i += 1
            r = c.post("/v1/transfers", transfer("live-%d" % i, "a", "h" if i % 2 else "b", 1))
            if r.status != 201:
                errors.append(r)
                return
        c.close()

    thread = threading.Thread(target=load)
    thread.start()
    try:
        for round_no in range(3):
            rc, line, err = verify("--store", server.store_args[1])
            check(rc == 0 and LINE.match(line), "verify during load, round %d: %d %r %r" % (round_no, rc, line, err))
        report = expect(client.post("/v1/verify"), 200, what="POST /v1/verify during load").json
        check(report["ok"] is True and report["checkpoints"] >= 2, "POST /v1/verify on PostgreSQL: %r" % report)
    finally:
        stop.set()
        thread.join(TIMEOUT_S)
    check(not errors, "load during verify: %r" % errors[:1])
    client.close()


def periodic_verify(server):
    """serve --verify-interval-s verifies the PostgreSQL store in the background."""
    server.stop()
    client = server.start(["--verify-interval-s", "1"]).client()
    pattern = re.compile(r'^paycore_journal_verify_runs_total\{result="(ok|failed|error)"\} (\d+)$', re.M)
    runs = {}
    deadline = time.time() + TIMEOUT_S * 6
    while time.time() < deadline and runs.get("ok", 0) < 2:
        runs = {kind: int(count) for kind, count in pattern.findall(expect(client.get("/metrics"), 200).raw)}
        check(runs.get("failed", 0) == 0 and runs.get("error", 0) == 0, "periodic verify on PostgreSQL: %r" % runs)
        time.sleep(0.2)
    check(runs.get("ok", 0) >= 2, "two periodic verifications of the PostgreSQL store: %r" % runs)
    client.close()


def tamper_cases(cluster, source, pubkey):
    """Each edit on a copy of the stopped store; verify must name it and exit 1."""
    cases = [
        # no stored row hash (schema v16): the changed row shows in its batch's content hash
        ("UPDATE transfers SET amount = amount + 1 WHERE id = 't-17'", "journal seq", "content_hash mismatch"),
        ("DELETE FROM transfers WHERE id = 't-50'", "journal seq", "transfer_count 1, rows 0"),
        ("UPDATE journal SET hash = decode(repeat('ab', 32), 'hex') WHERE seq = 40", "journal seq 40",
         "hash mismatch"),
        ("UPDATE journal_checkpoints SET signature = decode(repeat('cd', 64), 'hex') WHERE seq = 64",
         "checkpoint seq 64", "signature invalid"),
        ("UPDATE accounts SET credits_posted = credits_posted + 100 WHERE id = 'b'", "account b", "credits_posted"),
        ("UPDATE transfers SET pending_state = 2 WHERE id = 'p-open'", "transfer p-open", "pending_state posted"),
        ("DELETE FROM balance_history WHERE transfer_id = 't-3'", "transfer t-3 (", "balance_history rows"),
        ("UPDATE transfers SET code = -1 WHERE id = 't-9'", "transfer t-9", "malformed row"),
        ("ALTER TABLE transfers ALTER COLUMN amount TYPE numeric", "transfer t-1", "malformed row"),
    ]
    for number, (sql, want1, want2) in enumerate(cases):
        copy = "tampered_%d" % number
        cluster.sql("postgres", "CREATE DATABASE %s TEMPLATE %s" % (copy, source))
        cluster.sql(copy, sql)
        rc, line, err = verify("--store", cluster.url(copy), "--pubkey", pubkey)
        check(rc == 1 and line.startswith("verify failed: ") and want1 in line and want2 in line,
              "%s: want exit 1 naming %r and %r, got %d %r %r" % (sql, want1, want2, rc, line, err))
        cluster.sql("postgres", "DROP DATABASE %s" % copy)
    rc, line, _ = verify("--store", cluster.url(source), "--pubkey", pubkey + ".missing")
    check(rc == 1 and "not_found" in line, "a missing --pubkey: %d %r" % (rc, line))


def refusals(cluster):
    cluster.sql("postgres", "CREATE DATABASE foreign_db")
    cluster.sql("foreign_db", "CREATE TABLE orders(id integer)")
    rc, line, _ = verify("--store", cluster.url("foreign_db"))
    check(rc == 1 and line.startswith("verify error: store_not_paycore: "), "a foreign database: %d %r" % (rc, line))
    rc, line, _ = verify("--store", "postgresql://paycore@/nothing?host=%s/nowhere" % cluster.dir)
    check(rc == 1 and line.startswith("verify error: store_open_failed: cannot connect"),
          "no server there: %d %r" % (rc, line))
    rc, _, err = verify("--store", "/tmp/a-file.db")
    check(rc == 2 and "--store takes a postgres:// URL" in err, "--store with a file: %d %r" % (rc, err))
    rc, _, err = verify()
    check(rc == 2 and "--db FILE or --store URL is required" in err, "no store: %d %r" % (rc, err))


def main():
    if not pgcluster.available():
        pcapi.missing_input("PostgreSQL 15 (initdb, pg_ctl in %s)" % pgcluster.PG_BIN,
                            "scripts/deps.sh installs Debian's postgresql; PAYCORE_PG_BIN names another bin dir")
    cluster = pgcluster.Cluster()
    servers = []
    try:
        file_server = pcapi.Server()
        servers.append(file_server)
        pcapi.PG_HOST = cluster.dir
        pg_server = pcapi.Server()
        servers.append(pg_server)
        for server in (file_server, pg_server):
            client = server.start().client()
            history(client)
            client.close()
            server.stop()
        same_report(file_server, pg_server)
        source = pg_server.store_args[1].split("@/", 1)[1].split("?")[0]
        tamper_cases(cluster, source, pg_server.db + ".key.pub")
        refusals(cluster)
        pg_server.start()
        live_verify(pg_server)
        periodic_verify(pg_server)
        for suite, out in cluster.run_suites(SUITES):
            pcapi.fail("%s on PostgreSQL: exit %d\n%s\n%s" % (suite, out.returncode, out.stdout[-3000:],
                                                              out.stderr[-6000:]))
    finally:
        for server in servers:
            server.close()
        cluster.close()


if __name__ == "__main__":
    main()
