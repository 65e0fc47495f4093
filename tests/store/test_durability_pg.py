"""Goal: the durability cases of tests/store/test_durability.c that are not SQLite
faults hold on the PostgreSQL store too: a batch without ledger rows takes no seq
(and a crash after it loses nothing), a failed COMMIT leaves none of its accounts,
a command's failing hook fails only its batch, a store whose commits keep failing is
retried with backoff (no spin), a database with signed checkpoints refuses a missing
or foreign signing key; a pipelined batch whose first or second part's COMMIT fails
leaves only what was answered; every stored Idempotency-Key reply is found exactly
(after rolled-back puts and purges, a committed purge, a restart); verify passes after each.
Method: a throwaway PostgreSQL 15 cluster (pgcluster.py); the C test makes a database
of its own per case there (PAYCORE_TEST_PG_HOST)."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "api"))
sys.path.insert(0, HERE)
import pcapi  # noqa: E402
import pgcluster  # noqa: E402
from pcapi import BIN  # noqa: E402


def main():
    if not pgcluster.available():
        pcapi.missing_input("PostgreSQL 15 (initdb, pg_ctl in %s)" % pgcluster.PG_BIN,
                            "scripts/deps.sh installs Debian's postgresql; PAYCORE_PG_BIN names another bin dir")
    cluster = pgcluster.Cluster()
    try:
        cluster.run_c_test_passing(BIN, "store_test_durability", {"PAYCORE_TEST_PG_HOST": cluster.dir},
                                   "9 passed, 0 failed")
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
