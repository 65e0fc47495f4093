"""Goal: a stop asked while `paycore serve` loads the payments' own Idempotency-Key
lookups (written for payments made before a payment's key lived in the API's reply
row) is not held up by them: SIGTERM during that load ends it within a few thousand
rows, the server exits 0 without ever serving ("listening" is never logged; the log
says after how many keys it stopped, and no error), and the next start is whole: the
index holds every stored key (paycore_idempotency_index_keys, state indexed), and
`paycore verify` passes.
Method: a real server on a SQLite file; 200,000 such lookups written into the file with
SQL while it is stopped. The held start runs with PAYCORE_TEST_IDEM_SCAN_HOLD_MS (a scan
pauses after its first 4,096 rows for up to 10 minutes, asking every 10 ms whether to
go on; the API's own stored replies are fewer, so the hold lands in the lookups' load),
so the SIGTERM, sent once the process has logged, surely arrives during that load: a
server that finished the load before looking at the signal serves first."""
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../api"))
from pcapi import BIN, PG_HOST, TIMEOUT_S, Server, check, expect  # noqa: E402

ROWS = 200000


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


def held_start_stopped(server):
    """SIGTERM during a start whose lookups' load is held: exits 0, never serves."""
    log_path = os.path.join(server.dir, "held.log")
    env = dict(os.environ, PAYCORE_TEST_IDEM_SCAN_HOLD_MS="600000")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([BIN, "serve", "--db", server.db, "--listen", "127.0.0.1:0"],
                                stdout=subprocess.DEVNULL, stderr=log, env=env)
    deadline = time.time() + TIMEOUT_S
    while os.path.getsize(log_path) == 0 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=TIMEOUT_S * 3)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        code = None
    with open(log_path) as f:
        log = f.read()
    check(code == 0, "SIGTERM during the lookups' load: exit 0 well before the hold ends, got %r; log:\n%s"
          % (code, log[-3000:]))
    check('"msg":"listening"' not in log, "the server served before it looked at the stop:\n%s" % log[-3000:])
    m = re.search(r"payments' key lookups loaded: stopped after (\d+) keys, before serving", log)
    check(m is not None and 4096 <= int(m.group(1)) < ROWS, "the lookups' load stopped part way: %s" % log[-3000:])
    check("cannot start" not in log and '"level":"error"' not in log, "a requested stop is no error:\n%s" % log)
    return int(m.group(1))


def index_metrics(client):
    text = expect(client.get("/metrics"), 200, what="metrics").raw
    text = text.decode() if isinstance(text, bytes) else text
    return dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("paycore_idempotency_index"))


def main():
    if PG_HOST:
        print("skipped: the lookups are written into a SQLite file (unset PAYCORE_TEST_PG_HOST)")
        sys.exit(77)
    server = Server()
    try:
        server.start()
        check(server.stop() == 0, "SIGTERM exits 0")
        replies = stored_lookups(server)
        stopped_after = held_start_stopped(server)
        server.start()
        m = index_metrics(server.client())
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
