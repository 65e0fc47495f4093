"""Goal: a stop asked while `paycore serve` loads the payments' own Idempotency-Key
lookups (written for payments made before a payment's key lived in the API's reply
row) is not held up by them: SIGTERM during that load ends it within a few thousand
rows, the server exits 0 without ever serving ("listening" is never logged; the log
says after how many keys it stopped, and no error), and the next start is whole: the
index holds every stored key (paycore_idempotency_index_keys, state indexed), and
`paycore verify` passes.
Method: a real server on a SQLite file; 20,000 such lookups written into the file with
SQL while it is stopped. The held start runs with PAYCORE_TEST_IDEM_SCAN_HOLD_MS (a scan
pauses after its first 4,096 rows for up to 10 minutes, asking every 10 ms whether to
go on; the API's own stored replies are fewer, so the hold lands in the lookups' load),
so the SIGTERM, sent once the process has logged, surely arrives during that load: a
server that finished the load before looking at the signal serves first."""
import os
import sqlite3
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../api"))
from pcapi import BIN, PG_HOST, TIMEOUT_S, Server, check  # noqa: E402
from test_api_idempotency_load_stop import held_start_stopped, metrics  # noqa: E402

ROWS = 20000  # past the first check (4,096 rows), where the held scan stops


def stored_lookups(server):
    """Many lookups of keys payments were made under, in the old form."""
    db = sqlite3.connect(server.db, timeout=TIMEOUT_S)
    try:
        rows = [("idem:key_legacy:legacy-%07d" % i, "pay_legacy%07d" % i) for i in range(ROWS)]
        db.executemany("INSERT INTO pay_lookups(name, object_id) VALUES (?, ?)", rows)
        db.commit()
        replies = db.execute("SELECT count(*) FROM idempotency_keys").fetchone()[0]
    finally:
        db.close()
    return replies


def main():
    if PG_HOST:
        print("skipped: the lookups are written into a SQLite file (unset PAYCORE_TEST_PG_HOST)")
        sys.exit(77)
    server = Server()
    try:
        server.start()
        check(server.stop() == 0, "SIGTERM exits 0")
        replies = stored_lookups(server)
        stopped_after = held_start_stopped(server, r"payments' key lookups loaded: stopped after (\d+) keys, before"
                                           r" serving", ROWS)
        server.start()
        m = metrics(server.client())
        check(int(float(m["paycore_idempotency_index_keys"])) == ROWS + replies and
              m['paycore_idempotency_index_state{state="indexed"}'] == "1",
              "the next start's index holds the %d lookups' keys: %r" % (ROWS, m))
        check(server.stop() == 0, "SIGTERM exits 0")
        out = subprocess.run([BIN, "verify", "--db", server.db], capture_output=True, text=True,
                             timeout=TIMEOUT_S * 3)
        check(out.returncode == 0, "paycore verify: %s %s" % (out.stdout[-500:], out.stderr[-500:]))
        print("payments' key lookups: SIGTERM stopped their load after %d of %d keys, exit 0, never served; the"
              " next start holds them all: ok" % (stopped_after, ROWS))
    finally:
        server.close()


if __name__ == "__main__":
    main()
