"""Goal: the crash test (tests/store/test_crash.c) holds on the PostgreSQL store too:
nothing acknowledged is lost and nothing unacknowledged is half there whenever the
writer is SIGKILLed, stopped, or loses its server, and `verify` (on PostgreSQL: one
REPEATABLE READ snapshot) passes after every cycle.
Method: a throwaway PostgreSQL 15 cluster (pgcluster.py) and an empty database; the
C test runs its cycles against it (PAYCORE_TEST_STORE_URL), crashing and restarting
the server itself (PAYCORE_TEST_PG_RESTART: pg_ctl restart -m immediate) in the cycle
where SQLite fails an fsync. PAYCORE_CRASH_ROUNDS sets the cycles (6 here: each kind
at least once; `make test-long` runs more); PAYCORE_SEED replays a run."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "api"))
sys.path.insert(0, HERE)
import pcapi  # noqa: E402
import pgcluster  # noqa: E402
from pcapi import BIN  # noqa: E402

ROUNDS_DEFAULT = 6


def main():
    if not pgcluster.available():
        pcapi.missing_input("PostgreSQL 15 (initdb, pg_ctl in %s)" % pgcluster.PG_BIN,
                            "scripts/deps.sh installs Debian's postgresql; PAYCORE_PG_BIN names another bin dir")
    cluster = pgcluster.Cluster()
    try:
        env = {"PAYCORE_TEST_STORE_URL": cluster.createdb("crash"),
               "PAYCORE_TEST_PG_RESTART": cluster.crash_restart_command(),
               "PAYCORE_CRASH_ROUNDS": os.environ.get("PAYCORE_CRASH_ROUNDS", str(ROUNDS_DEFAULT))}
        cluster.run_c_test_passing(BIN, "store_test_crash", env, " passed, 0 failed")
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
