"""Goal: a PostgreSQL database made by paycore's schema-version-8 binary
(tests/store/fixtures/v8-pg, made by fixture_v8_pg.py) migrates to version 9, where a
transfer names its accounts by number, and on (version 10: account_transfers, a hash
index of ids; test_pg_migrate_v9.py), and every read answers byte for byte what the v8 binary
answered: each account, every page of every account's transfers (both orders, page
sizes 1 to 100, timestamp ranges), balance history, each transfer, burned and unknown
ids. Every statement of those reads is served by indexes: with sequential scans
disabled, the plans auto_explain logs for them hold no Seq Scan. Then the ledger goes
on from the migrated rows (the open pending transfer posted, replays of migrated
transfers answered "exists" with their original timestamps, new transfers listed
after the old ones), all of it survives a restart, and `paycore verify` passes; a
transfer row whose account number was changed by hand is then named by verify.
Method: the fixture's pg_dump restored into a throwaway cluster (pgcluster.py) started
with auto_explain, a real `paycore serve --store URL` over loopback, the database read
with psql."""
import gzip
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "api"))
sys.path.insert(0, HERE)
import pcapi  # noqa: E402
import pgcluster  # noqa: E402
from fixture_v8_pg import FIXTURE, snapshot, unpack  # noqa: E402
from pcapi import BIN, TIMEOUT_S, check, expect, transfer  # noqa: E402

# auto_explain logs every statement's plan; with sequential scans disabled the planner
# takes an index whenever one can serve the statement, so a Seq Scan in a read's plan
# means no index serves it (a tiny table is otherwise scanned whatever its indexes).
EXPLAIN = ("-c shared_preload_libraries=auto_explain -c auto_explain.log_min_duration=0"
           " -c auto_explain.log_nested_statements=on -c enable_seqscan=off")


def restore(cluster, server, fixture=FIXTURE, db="v8"):
    dump = os.path.join(server.dir, "dump.sql")
    with gzip.open(os.path.join(fixture, "dump.sql.gz"), "rt") as f, open(dump, "w") as out:
        out.write(f.read())
    os.chmod(server.dir, 0o755)
    os.chmod(dump, 0o644)  # psql runs as the cluster's user
    url = cluster.createdb(db)
    cluster.run("psql", "-h", cluster.dir, "-U", pgcluster.USER, "-d", db, "-v", "ON_ERROR_STOP=1", "-q",
                "-f", dump)
    os.remove(dump)
    return url


def check_schema(cluster, db="v8"):
    sql = lambda q: cluster.sql(db, q)  # noqa: E731
    check(int(sql("SELECT value FROM paycore_meta WHERE key = 'schema_version'")) >= 10, "migrated to version 10")
    columns = set(sql("SELECT column_name FROM information_schema.columns WHERE table_name = 'transfers'").split())
    check({"debit_no", "credit_no"} <= columns and not {"debit_account_id", "credit_account_id"} & columns,
          "transfers name their accounts by number: %r" % sorted(columns))
    numbered = sql("SELECT count(*) FROM transfers t JOIN accounts d ON d.no = t.debit_no"
                   " JOIN accounts c ON c.no = t.credit_no")
    check(numbered == sql("SELECT count(*) FROM transfers") and int(numbered) > 90,
          "every migrated transfer names two accounts: %s" % numbered)
    check_account_rows(sql)


def check_account_rows(sql):
    """Version 10: transfers' only indexes are the timestamp key, a hash of the id and the
    open pendings; account_transfers lists each transfer once under each of its accounts
    (version 16: the array holds the timestamps before the row's key, null when none)."""
    indexes = sql("SELECT indexname || ' ' || indexdef FROM pg_indexes WHERE tablename = 'transfers'"
                  " ORDER BY indexname").split("\n")
    check([i.split()[0] for i in indexes] == ["transfers_id", "transfers_open_pending", "transfers_pkey"]
          and "USING hash (id)" in indexes[0], "the transfers' indexes: %r" % indexes)
    listed = sql("SELECT account_no || ' ' || ts FROM account_transfers,"
                 " unnest(array_append(timestamps, timestamp_last)) AS ts ORDER BY 1")
    sides = sql("SELECT no || ' ' || ts FROM (SELECT debit_no AS no, timestamp AS ts FROM transfers UNION ALL"
                " SELECT credit_no, timestamp FROM transfers) AS s ORDER BY 1")
    check(listed == sides, "account_transfers lists every transfer's two accounts, nothing else")
    bad = sql("SELECT count(*) FROM account_transfers WHERE timestamps[cardinality(timestamps)] >= timestamp_last"
              " OR cardinality(timestamps) > 63 OR cardinality(timestamps) = 0"
              " OR timestamps <> ARRAY(SELECT unnest(timestamps) ORDER BY 1)")
    check(bad == "0", "rows of at most 64 ascending timestamps keyed by the last: %s bad" % bad)
    single = sql("SELECT count(*) FILTER (WHERE timestamps IS NULL) > 0 FROM account_transfers")
    check(single == "t", "a row of one timestamp has a null array (its key is the timestamp)")


def server_log(cluster):
    with open(os.path.join(cluster.dir, "server.log"), errors="replace") as f:
        return f.read()


def check_reads(server, cluster, want):
    """The v8 binary's answers, byte for byte, each statement on an index."""
    before = len(server_log(cluster))
    now = snapshot(server.client())
    plans = server_log(cluster)[before:]
    check(sorted(now) == sorted(want), "the same reads: missing %r, extra %r"
          % (sorted(set(want) - set(now))[:5], sorted(set(now) - set(want))[:5]))
    differ = [url for url in sorted(want) if want[url] != now[url]]
    for url in differ[:3]:
        print("v8: %r\nv9: %r" % (want[url], now[url]), file=sys.stderr)
    check(not differ, "%d of %d reads differ after the migration: %r" % (len(differ), len(want), differ[:5]))
    reads = [p for p in plans.split("LOG:  duration: ")[1:] if ledger_read(p)]
    check(len(reads) > len(want) and any("account_transfers_pkey" in p for p in reads)
          and any("transfers_id" in p for p in reads),
          "auto_explain logged the reads' plans (%d), the account rows' and ids' indexes among them" % len(reads))
    scans = [p for p in reads if "Seq Scan" in p]
    check(not scans, "%d reads without an index, the first:\n%s" % (len(scans), scans[0][:3000] if scans else ""))
    return len(now)


def ledger_read(plan):
    """A logged plan of a ledger read (not the writer's or a background job's)."""
    text = plan[plan.find("Query Text: ") + len("Query Text: "):].lstrip()
    return text.startswith(("SELECT", "WITH", "(SELECT")) and any(
        t in text.split("\n")[0] for t in ("transfers", "accounts", "balance_history"))


def go_on(c):
    """New batches on the migrated rows; the new transfers' ids."""
    r = expect(c.post("/v1/transfers", {"id": "h-open-end", "pending_id": "h-open", "flags": ["post_pending"]}),
               201, what="post the migrated open pending transfer")
    check(r.json["debit_account_id"] == "alice" and r.json["amount"] == 700, "the post inherits: %r" % r.json)
    old = expect(c.get("/v1/transfers/t-07"), 200).json
    check(old["metadata"] == {"n": "7"}, "t-07 has metadata: %r" % old)
    again = expect(c.post("/v1/transfers", transfer("t-07", old["debit_account_id"], old["credit_account_id"],
                                                    old["amount"], metadata=old["metadata"])), 200).json
    check(again["status"] == "exists" and again["timestamp"] == old["timestamp"], "a replay: %r" % again)
    expect(c.post("/v1/transfers", transfer("t-07", old["credit_account_id"], old["debit_account_id"],
                                            old["amount"])), 422, what="a replay with other accounts")
    new = ["v9-%d" % i for i in range(5)]
    expect(c.post("/v1/transfers", {"transfers": [transfer(t, "bank", "carol", 3) for t in new]}), 200)
    return ["h-open-end"] + new


def check_after(c, new):
    rows = expect(c.get("/v1/accounts/carol/transfers?order=desc&limit=5"), 200).json["data"]
    check([t["id"] for t in rows] == list(reversed(new[1:])), "carol's newest first: %r" % rows)
    history = expect(c.get("/v1/accounts/carol/balances?order=desc&limit=1"), 200).json["data"]
    check(history[0]["transfer_id"] == new[-1], "carol's history goes on: %r" % history)
    held = expect(c.get("/v1/transfers/h-open"), 200).json
    check(held["pending_state"] == "posted", "the migrated hold is posted: %r" % held)
    pcapi.check_conserved(c, "after the migration")


def verify(server):
    return subprocess.run([BIN, "verify"] + server.store_location_args(), capture_output=True, text=True,
                          timeout=TIMEOUT_S * 3)


def main():
    if not pgcluster.available():
        pcapi.missing_input("PostgreSQL 15 (initdb, pg_ctl in %s)" % pgcluster.PG_BIN,
                            "scripts/deps.sh installs Debian's postgresql; PAYCORE_PG_BIN names another bin dir")
    cluster = pgcluster.Cluster(settings=EXPLAIN)
    pcapi.PG_HOST = cluster.dir
    server = pcapi.Server()
    try:
        fixture = unpack(FIXTURE, server.dir)
        server.store_args = ["--store", restore(cluster, server)]
        server.admin_key = fixture["admin_key"]
        server.start()
        check("database migrated" in server.log(), "the start migrated: %s" % server.log_tail())
        check_schema(cluster)
        count = check_reads(server, cluster, fixture["reads"])
        c = server.client()
        new = go_on(c)
        check_after(c, new)
        check(server.stop() == 0, "a clean stop")
        server.start()
        check_after(server.client(), new)
        check(server.stop() == 0, "a clean stop")
        out = verify(server)
        check(out.returncode == 0, "paycore verify: %s %s" % (out.stdout[-500:], out.stderr[-500:]))
        cluster.sql("v8", "UPDATE transfers SET credit_no = debit_no WHERE id = 't-03'")
        out = verify(server)
        check(out.returncode != 0 and "t-03" in out.stdout + out.stderr,
              "verify names a transfer whose account number was changed: %s %s" % (out.stdout[-500:],
                                                                                   out.stderr[-500:]))
        print("ok: %d reads the same after the migration" % count)
    finally:
        server.close()
        cluster.close()


if __name__ == "__main__":
    main()
