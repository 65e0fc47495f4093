"""Goal: a stop asked while `paycore serve` loads its index of stored Idempotency-Keys
from a store with many of them is not held up by the load: SIGTERM during the load
ends the scan within a few thousand rows, the server exits 0 without ever serving
("listening" is never logged; the log says after how many keys it stopped), and the
next start is whole: the index holds every stored key (paycore_idempotency_index_keys,
state indexed), the room the replies take is their rows' sum (paycore_idempotency_
stored_bytes), the replies made over HTTP replay byte for byte, a stored key with
other fields is 409 idempotency_key_reused, a new key runs; `paycore verify` passes.
Method: a real server on a SQLite file; 200,000 stored replies written into the file
with SQL while it is stopped (as many keys as a busy day's payments leave). The held
start runs with PAYCORE_TEST_IDEM_SCAN_HOLD_MS (the scan pauses after its first 4,096
rows for up to 10 minutes, asking every 10 ms whether to go on), so the SIGTERM, sent
once the process has logged, surely arrives during the start whatever the machine's
speed: a server that finishes its load before looking at the signal serves first."""
import os
import re
import signal
import sqlite3
import subprocess
import time

from pcapi import BIN, TIMEOUT_S, Server, account, check, expect, transfer

ROWS = 200000


def stored_rows(server):
    """Many stored replies of the admin key, created now (the purge keeps them)."""
    db = sqlite3.connect(server.db, timeout=TIMEOUT_S)
    try:
        key_id = db.execute("SELECT key_id FROM idempotency_keys LIMIT 1").fetchone()[0]
        now_ns = time.time_ns()
        body = '{"status":"stored"}'
        rows = [(key_id, "bulk-%07d" % i, b"\0" * 32, 201, body, now_ns + i,
                 len(body) + len(key_id) + len("bulk-%07d" % i) + 64) for i in range(ROWS)]
        db.executemany("INSERT INTO idempotency_keys(key_id, idempotency_key, request_hash, status, body, created_ns,"
                       " row_bytes) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        db.commit()
        count, total = db.execute("SELECT count(*), sum(row_bytes) FROM idempotency_keys").fetchone()
    finally:
        db.close()
    return key_id, count, total


def held_start_stopped(server, says=r"stopped after (\d+) keys, before serving", rows=ROWS):
    """SIGTERM during a start whose load is held: exits 0, never serves; the log 'says'
    after how many of the 'rows' keys it stopped (the regex's group)."""
    log_path = os.path.join(server.dir, "held.log")
    env = dict(os.environ, PAYCORE_TEST_IDEM_SCAN_HOLD_MS="600000")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([BIN, "serve", "--db", server.db, "--listen", "127.0.0.1:0"] + server.store_args,
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
    check(code == 0, "SIGTERM during the load: exit 0 well before the hold ends, got %r; log:\n%s" % (code, log[-3000:]))
    check('"msg":"listening"' not in log, "the server served before it looked at the stop:\n%s" % log[-3000:])
    m = re.search(says, log)
    check(m is not None and 4096 <= int(m.group(1)) < rows, "the load stopped part way: %s" % log[-3000:])
    check("cannot start" not in log and '"level":"error"' not in log, "a requested stop is no error:\n%s" % log)
    return int(m.group(1))


def metrics(client):
    text = expect(client.get("/metrics"), 200, what="metrics").raw
    text = text.decode() if isinstance(text, bytes) else text
    return dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("paycore_idempotency_"))


def main():
    server = Server()
    try:
        server.start()
        c = server.client()
        expect(c.post("/v1/accounts", account("bank", flags=["debits_must_not_exceed_credits"])), 201)
        expect(c.post("/v1/accounts", account("alice")), 201)
        expect(c.post("/v1/transfers", transfer("fund", "alice", "bank", 100000)), 201)
        firsts = {i: expect(c.post("/v1/transfers", transfer("t%d" % i, "bank", "alice", 10 + i),
                                   headers={"Idempotency-Key": "http-%d" % i}), 201) for i in range(3)}
        check(server.stop() == 0, "SIGTERM exits 0")
        key_id, count, total = stored_rows(server)
        stopped_after = held_start_stopped(server)
        server.start()
        c = server.client()
        m = metrics(c)
        check(int(float(m["paycore_idempotency_index_keys"])) == count and
              m['paycore_idempotency_index_state{state="indexed"}'] == "1",
              "the next start's index holds all %d stored keys: %r" % (count, m))
        check(int(float(m["paycore_idempotency_stored_bytes"])) == total,
              "the stored replies' room is their rows' sum %d: %r" % (total, m))
        for i, first in firsts.items():
            r = expect(c.post("/v1/transfers", transfer("t%d" % i, "bank", "alice", 10 + i),
                              headers={"Idempotency-Key": "http-%d" % i}), 201)
            check(r.headers.get("idempotent-replayed") == "true" and r.raw == first.raw, "http-%d replayed" % i)
        r = c.post("/v1/transfers", transfer("other", "bank", "alice", 5), headers={"Idempotency-Key": "bulk-0123456"})
        check(r.status == 409 and r.code() == "idempotency_key_reused", "a stored key with other fields: %r" % r)
        expect(c.post("/v1/transfers", transfer("new", "bank", "alice", 5), headers={"Idempotency-Key": "fresh"}), 201)
        check(server.stop() == 0, "SIGTERM exits 0")
        out = subprocess.run([BIN, "verify"] + server.store_location_args(), capture_output=True, text=True,
                             timeout=TIMEOUT_S * 3)
        check(out.returncode == 0, "paycore verify: %s %s" % (out.stdout[-500:], out.stderr[-500:]))
        print("idempotency load: SIGTERM stopped it after %d of %d keys, exit 0, never served; the next start"
              " holds them all: ok" % (stopped_after, count))
    finally:
        server.close()


if __name__ == "__main__":
    main()
