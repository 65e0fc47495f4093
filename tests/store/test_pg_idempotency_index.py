"""Goal: the in-memory index of stored Idempotency-Keys stays exact on the PostgreSQL
store too: its load at start reads the stored keys from PostgreSQL a page at a time
(store/pg_api.c), and a payment's key is kept in the API's row there as on SQLite.
Method: a throwaway PostgreSQL 15 cluster (pgcluster.py); the API's and the payments'
index suites (replays after a clean restart, kill -9 and a kill during the channel
call, racing pairs, retention, the index bound) run unchanged with
PAYCORE_TEST_PG_HOST set (pcapi.py makes a database per server). Its own ctest entry,
beside test_pg_store.py, so that neither outgrows the test timeout."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "api"))
sys.path.insert(0, HERE)
import pcapi  # noqa: E402
import pgcluster  # noqa: E402

SUITES = ["api/test_api_idempotency_index.py", "payments/test_payments_idempotency_index.py"]


def main():
    if not pgcluster.available():
        pcapi.missing_input("PostgreSQL 15 (initdb, pg_ctl in %s)" % pgcluster.PG_BIN,
                            "scripts/deps.sh installs Debian's postgresql; PAYCORE_PG_BIN names another bin dir")
    cluster = pgcluster.Cluster()
    try:
        failed = cluster.run_suites(SUITES)
        for suite, out in failed:
            print("FAIL %s on PostgreSQL:\n%s\n%s" % (suite, out.stdout[-3000:], out.stderr[-6000:]))
        pcapi.check(not failed, "%d of %d suites failed on PostgreSQL" % (len(failed), len(SUITES)))
    finally:
        cluster.stop()
    print("idempotency index on PostgreSQL: ok (%d suites)" % len(SUITES))


if __name__ == "__main__":
    main()
