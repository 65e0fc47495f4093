"""Goal: a PostgreSQL database made by paycore's schema-version-9 binary
(tests/store/fixtures/v9-pg, made by `fixture_v8_pg.py make 9` with that binary)
migrates to version 10, where an account's transfers are listed by account_transfers
(one row per account and batch, at most 64 timestamps) instead of two (account, time)
B-tree entries per transfer, and ids by a hash index instead of a unique B-tree; every
read answers byte for byte what the v9 binary answered (each account, every page of
every account's transfers in both orders and timestamp ranges, balance history, each
transfer, burned and unknown ids), each on an index (no Seq Scan with sequential scans
disabled, auto_explain). Then the ledger goes on: an account with more than 64
transfers in one batch (several rows for one batch) pages in both orders exactly as
the transfers were made, a restart changes nothing, account_transfers still lists
every transfer once under each of its accounts, and `paycore verify` passes; a
repeated transfer id (the hash index does not refuse one) and a transfer taken out of
its account's list are each named by verify.
Method: the fixture's pg_dump restored into a throwaway cluster (pgcluster.py) with
auto_explain, a real `paycore serve --store URL` over loopback, psql."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "api"))
sys.path.insert(0, HERE)
import pcapi  # noqa: E402
import pgcluster  # noqa: E402
import test_pg_migrate_v8 as v8  # noqa: E402
from fixture_v8_pg import unpack  # noqa: E402
from pcapi import check, expect, transfer  # noqa: E402

FIXTURE = os.path.join(HERE, "fixtures", "v9-pg")
DB = "v9"
BIG = 150  # transfers of one account in one batch: three rows of account_transfers


def go_on_big(c):
    """One batch in which carol takes part BIG times, both sides; the ids in order."""
    ids = ["big-%03d" % i for i in range(BIG)]
    batch = [transfer(t, "bank", "carol", 2) if i % 3 else transfer(t, "carol", "bob", 1) for i, t in enumerate(ids)]
    r = expect(c.post("/v1/transfers", {"transfers": batch}), 200, what="a batch of %d" % BIG)
    check(all(x["status"] == "created" for x in r.json["results"]), "the batch: %r" % r.json["results"][:3])
    return ids


def listing(c, path):
    rows, after = [], None
    while True:
        r = expect(c.get(path + ("&starting_after=" + after if after else "")), 200).json
        rows += [t["id"] for t in r["data"]]
        if not r["has_more"]:
            return rows
        after = r["data"][-1]["id"]


def check_big(c, cluster, ids, before):
    rows = cluster.sql(DB, "SELECT count(*) FROM account_transfers WHERE account_no = (SELECT no FROM accounts"
                           " WHERE id = 'carol') AND timestamp_last >= (SELECT timestamp FROM transfers"
                           " WHERE id = 'big-000')")
    check(rows == "3", "carol's %d transfers of one batch are in 3 rows, not %s" % (BIG, rows))
    for limit in (1, 7, 64, 65, 100):
        asc = listing(c, "/v1/accounts/carol/transfers?order=asc&limit=%d" % limit)
        check(asc == before + ids, "carol's transfers ascending, pages of %d" % limit)
        desc = listing(c, "/v1/accounts/carol/transfers?order=desc&limit=%d" % limit)
        check(desc == list(reversed(before + ids)), "carol's transfers descending, pages of %d" % limit)
    stamps = [expect(c.get("/v1/transfers/" + t), 200).json["timestamp"] for t in (ids[10], ids[120])]
    for order in ("asc", "desc"):
        got = listing(c, "/v1/accounts/carol/transfers?from=%d&to=%d&order=%s&limit=9" % (stamps[0], stamps[1],
                                                                                          order))
        want = ids[10:120] if order == "asc" else list(reversed(ids[10:120]))
        check(got == want, "a range across the batch's rows, %s: %r" % (order, got[:3]))


def main():
    if not pgcluster.available():
        pcapi.missing_input("PostgreSQL 15 (initdb, pg_ctl in %s)" % pgcluster.PG_BIN,
                            "scripts/deps.sh installs Debian's postgresql; PAYCORE_PG_BIN names another bin dir")
    cluster = pgcluster.Cluster(settings=v8.EXPLAIN)
    pcapi.PG_HOST = cluster.dir
    server = pcapi.Server()
    try:
        fixture = unpack(FIXTURE, server.dir)
        server.store_args = ["--store", v8.restore(cluster, server, FIXTURE, DB)]
        server.admin_key = fixture["admin_key"]
        check(cluster.sql(DB, "SELECT value FROM paycore_meta WHERE key = 'schema_version'") == "9",
              "the fixture is a version 9 database")
        server.start()
        check("database migrated" in server.log(), "the start migrated: %s" % server.log_tail())
        v8.check_schema(cluster, DB)
        count = v8.check_reads(server, cluster, fixture["reads"])
        c = server.client()
        before = listing(c, "/v1/accounts/carol/transfers?order=asc&limit=100")
        new = v8.go_on(c)
        v8.check_after(c, new)
        before = listing(c, "/v1/accounts/carol/transfers?order=asc&limit=100")
        ids = go_on_big(c)
        check_big(c, cluster, ids, before)
        check(server.stop() == 0, "a clean stop")
        server.start()
        check_big(server.client(), cluster, ids, before)
        check(server.stop() == 0, "a clean stop")
        v8.check_account_rows(lambda q: cluster.sql(DB, q))
        out = v8.verify(server)
        check(out.returncode == 0, "paycore verify: %s %s" % (out.stdout[-500:], out.stderr[-500:]))
        columns = "id, debit_no, credit_no, amount, currency, code, flags, pending_id, timeout_s, metadata," \
                  " pending_state"
        cluster.sql(DB, "INSERT INTO transfers(timestamp, %s) SELECT timestamp + 1, %s FROM transfers"
                        " WHERE id = 't-03'" % (columns, columns))
        out = v8.verify(server)
        check(out.returncode != 0 and "t-03" in out.stdout + out.stderr,
              "verify names a repeated transfer id: %s %s" % (out.stdout[-500:], out.stderr[-500:]))
        cluster.sql(DB, "DELETE FROM transfers WHERE id = 't-03' AND timestamp = (SELECT max(timestamp) FROM transfers"
                        " WHERE id = 't-03')")
        check(v8.verify(server).returncode == 0, "verify passes again without the repeated id")
        # t-05 off its debit account's list: out of the array (v16: the timestamps before
        # the key), or as the key: the row's next-lower timestamp becomes it, or no row
        cluster.sql(DB, "UPDATE account_transfers e SET timestamps = array_remove(e.timestamps, t.timestamp) FROM"
                        " transfers t WHERE t.id = 't-05' AND e.account_no = t.debit_no"
                        " AND t.timestamp = ANY(e.timestamps)")
        cluster.sql(DB, "UPDATE account_transfers e SET timestamp_last = e.timestamps[cardinality(e.timestamps)],"
                        " timestamps = nullif(trim_array(e.timestamps, 1), '{}') FROM transfers t WHERE t.id = 't-05'"
                        " AND e.account_no = t.debit_no AND e.timestamp_last = t.timestamp AND e.timestamps IS NOT NULL")
        cluster.sql(DB, "DELETE FROM account_transfers e USING transfers t WHERE t.id = 't-05'"
                        " AND e.account_no = t.debit_no AND e.timestamp_last = t.timestamp AND e.timestamps IS NULL")
        out = v8.verify(server)
        check(out.returncode != 0 and "t-05" in out.stdout + out.stderr and "list of transfers" in out.stdout,
              "verify names a transfer missing from its account's list: %s %s" % (out.stdout[-500:],
                                                                                  out.stderr[-500:]))
        print("ok: %d reads the same after the migration to version 10" % count)
    finally:
        server.close()
        cluster.close()


if __name__ == "__main__":
    main()
