"""Goal: a PostgreSQL database made by paycore's schema-version-11 binary
(tests/store/fixtures/v11-pg, made by `fixture_v8_pg.py make 11` with that binary)
migrates to the narrower transfer row of version 15: columns in the order of their
alignment and no batch_seq (a transfer's batch is the journal row whose timestamp range
holds it), and on to version 16: no row_hash (verify computes it). The rows are smaller, every read answers byte for byte what the v11 binary
answered, each on an index (sequential scans disabled, auto_explain), the ledger goes
on, a start after SIGKILL replays the transfers after the balance snapshot by their
timestamps alone (the balances as before), and `paycore verify` passes, then names a
transfer whose amount changed and one moved out of its batch's timestamp range.
Method: the fixture's pg_dump restored into a throwaway cluster (pgcluster.py) with
auto_explain, a real `paycore serve --store URL` over loopback, psql."""
import os
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "api"))
sys.path.insert(0, HERE)
import pcapi  # noqa: E402
import pgcluster  # noqa: E402
import test_pg_migrate_v8 as v8  # noqa: E402
from fixture_v8_pg import ACCOUNTS, unpack  # noqa: E402
from pcapi import check, expect  # noqa: E402

FIXTURE = os.path.join(HERE, "fixtures", "v11-pg")
DB = "v11"
# v15's order: 8-byte, 4-byte, then the texts (the nullable ones last); v16 drops row_hash
COLUMNS = ["timestamp", "amount", "timeout_s", "debit_no", "credit_no", "code", "flags", "pending_state", "id",
           "currency", "pending_id", "metadata"]
ROW_BYTES = "SELECT avg(pg_column_size(t.*))::int FROM transfers t WHERE metadata IS NULL AND pending_id IS NULL"


def check_row(cluster):
    columns = cluster.sql(DB, "SELECT attname FROM pg_attribute WHERE attrelid = 'transfers'::regclass"
                              " AND attnum > 0 AND NOT attisdropped ORDER BY attnum").split()
    check(columns == COLUMNS, "the transfer row's columns in alignment order, no batch_seq, no row_hash: %r"
          % columns)
    index = cluster.sql(DB, "SELECT indexdef FROM pg_indexes WHERE indexname = 'journal_timestamp_last'")
    check("(timestamp_last)" in index, "the journal's timestamp_last index: %r" % index)


def accounts_now(c):
    return [expect(c.get("/v1/accounts/" + a), 200).json for a in ACCOUNTS]


def replay_after_kill(server, cluster):
    """SIGKILL (no balance snapshot at stop): the start replays the transfers after the
    snapshot, found by timestamp alone; the balances are the same."""
    c = server.client()
    before = accounts_now(c)
    as_of = int(cluster.sql(DB, "SELECT value FROM paycore_meta WHERE key = 'accounts_as_of_seq'"))
    head = int(cluster.sql(DB, "SELECT max(seq) FROM journal"))
    check(as_of < head, "batches after the balance snapshot to replay (as of %d, head %d)" % (as_of, head))
    server.stop(signal.SIGKILL)
    server.start()
    after = accounts_now(server.client())
    check(after == before, "the balances after the replay: %r, want %r" % (after[:3], before[:3]))


def tampered(server, cluster, sql, name, undo):
    cluster.sql(DB, sql)
    out = v8.verify(server)
    cluster.sql(DB, undo)
    check(out.returncode != 0 and name in out.stdout + out.stderr,
          "verify names %s after %s: %s %s" % (name, sql, out.stdout[-500:], out.stderr[-500:]))


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
        check(cluster.sql(DB, "SELECT value FROM paycore_meta WHERE key = 'schema_version'") == "11",
              "the fixture is a version 11 database")
        bytes_before = int(cluster.sql(DB, ROW_BYTES))
        server.start()
        check("database migrated" in server.log(), "the start migrated: %s" % server.log_tail())
        check_row(cluster)
        bytes_after = int(cluster.sql(DB, ROW_BYTES))
        check(bytes_after <= bytes_before - 16, "a plain transfer's row: %d bytes, was %d" % (bytes_after,
                                                                                             bytes_before))
        v8.check_schema(cluster, DB)
        count = v8.check_reads(server, cluster, fixture["reads"])
        c = server.client()
        new = v8.go_on(c)
        v8.check_after(c, new)
        replay_after_kill(server, cluster)
        check(server.stop() == 0, "a clean stop")
        v8.check_account_rows(lambda q: cluster.sql(DB, q))
        out = v8.verify(server)
        check(out.returncode == 0, "paycore verify: %s %s" % (out.stdout[-500:], out.stderr[-500:]))
        tampered(server, cluster, "UPDATE transfers SET amount = amount + 1 WHERE id = 't-17'", "t-17",
                 "UPDATE transfers SET amount = amount - 1 WHERE id = 't-17'")
        # t-03 moved past its batch's last timestamp: it now counts in a later batch
        moved = "(SELECT j.timestamp_last FROM journal j, transfers t WHERE t.id = 't-03'" \
                " AND j.timestamp_last >= t.timestamp ORDER BY j.timestamp_last LIMIT 1)"
        stamp = cluster.sql(DB, "SELECT timestamp FROM transfers WHERE id = 't-03'")
        # its batch has one transfer fewer than the journal row says (no stored row hash names it: v16)
        tampered(server, cluster, "UPDATE transfers SET timestamp = %s + 1 WHERE id = 't-03'" % moved, "journal seq",
                 "UPDATE transfers SET timestamp = %s WHERE id = 't-03'" % stamp)
        check(v8.verify(server).returncode == 0, "verify passes again once the rows are put back")
        print("ok: %d reads the same after the migration to versions 15 and 16; a plain transfer row %d -> %d bytes"
              % (count, bytes_before, bytes_after))
    finally:
        server.close()
        cluster.close()


if __name__ == "__main__":
    main()
