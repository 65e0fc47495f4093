"""Goal: stored Idempotency-Key replies live for the retention (24 h by default, at
least 24 h) and no longer: within it a retry replays, after it the key runs again, and
the rows are purged from the file in the background (also a backlog larger than one
purge chunk); their room is bounded per key, the bound is counted again from the file
after a restart, and past it only new stored replies of that key are refused (503
idempotency_storage_full), while its replays, its requests without a key and other
keys go on.
Method: a real server; time is moved with PAYCORE_TEST_CLOCK_OFFSET_S (the test clock
of the retention) across restarts instead of waiting a day; the rows are counted in
the database file itself."""
import os
import sqlite3
import subprocess
import time

from pcapi import BIN, TIMEOUT_S, Server, account, check, expect, transfer

HOUR_S = 3600


def post(c, path, body, key):
    return c.post(path, body, headers={"Idempotency-Key": key})


def rows(server):
    db = sqlite3.connect("file:%s?mode=ro" % server.db, uri=True, timeout=30)
    try:
        return db.execute("SELECT count(*) FROM idempotency_keys").fetchone()[0]
    finally:
        db.close()


def metric(server, name):
    text = expect(server.client(key="").get("/metrics"), 200, what="metrics").raw
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def start_at(server, offset_h, extra=None):
    os.environ["PAYCORE_TEST_CLOCK_OFFSET_S"] = str(offset_h * HOUR_S)
    server.start(extra_args=extra or [])
    return server.client()


def wait_rows(server, want, what):
    deadline = time.time() + TIMEOUT_S * 3
    while rows(server) != want:
        check(time.time() < deadline, "%s: %d rows left, want %d" % (what, rows(server), want))
        time.sleep(0.05)


def test_retention(server):
    admin = start_at(server, 0)
    expect(admin.post("/v1/accounts", {"accounts": [account("a"), account("b")]}), 200, what="accounts")
    first = expect(post(admin, "/v1/transfers", transfer("t1", "a", "b", 5), "k1"), 201, what="first")
    check(rows(server) == 1, "one reply stored")
    stored_bytes = metric(server, "paycore_idempotency_stored_bytes")
    server.stop()
    # 23 h later: still replayed, byte for byte
    admin = start_at(server, 23)
    again = expect(post(admin, "/v1/transfers", transfer("t1", "a", "b", 5), "k1"), 201, what="replay at 23 h")
    check(again.headers.get("idempotent-replayed") == "true" and again.raw == first.raw, "replayed at 23 h")
    expect(post(admin, "/v1/transfers", transfer("t1", "a", "b", 6), "k1"), 409, "idempotency_key_reused",
           "another body at 23 h")
    server.stop()
    # 25 h later: purged from the file, and the key runs again
    admin = start_at(server, 25)
    wait_rows(server, 0, "purge after 25 h")
    check(stored_bytes > 0, "the stored reply took room: %r" % stored_bytes)
    check(metric(server, "paycore_idempotency_purged_total") == 1, "one row purged")
    check(metric(server, "paycore_idempotency_stored_bytes") == 0, "no room taken after the purge")
    r = expect(post(admin, "/v1/transfers", transfer("t2", "a", "b", 7), "k1"), 201, what="k1 runs again")
    check(r.headers.get("idempotent-replayed") is None and r.json["id"] == "t2", "a new execution")
    check(rows(server) == 1, "its new reply is stored")
    server.stop()
    # --idempotency-retention-h 48 keeps a reply of 25 h; below 24 is refused at start
    admin = start_at(server, 50, ["--idempotency-retention-h", "48"])
    r = expect(post(admin, "/v1/transfers", transfer("t2", "a", "b", 7), "k1"), 201, what="replay at 25 h of 48")
    check(r.headers.get("idempotent-replayed") == "true", "kept under a 48 h retention")
    server.stop()
    out = subprocess.run([BIN, "serve", "--db", server.db, "--listen", "127.0.0.1:0",
                          "--idempotency-retention-h", "23"], capture_output=True, text=True, timeout=TIMEOUT_S)
    check(out.returncode != 0 and "at least 24" in out.stderr, "retention below 24 h refused: %r" % out.stderr)


def test_purge_backlog(server):
    """More expired rows than one purge chunk (64): all go, in chunks."""
    admin = start_at(server, 100)
    wait_rows(server, 0, "the earlier replies, expired at 100 h, purged")
    for i in range(150):
        expect(post(admin, "/v1/accounts", account("bulk-%d" % i), "bulk-%d" % i), 201, what="bulk %d" % i)
    check(rows(server) == 150, "150 replies stored")
    server.stop()
    start_at(server, 200)
    wait_rows(server, 0, "backlog purge")
    check(metric(server, "paycore_idempotency_purged_total") == 150, "every row purged and counted")
    server.stop()


def fill_room(m):
    """Idempotent POSTs of a merchant key until its room is full; the count stored."""
    for i in range(200):
        r = post(m, "/v1/accounts", account("m-%d" % i), "m-%d" % i)
        if r.status == 503:
            expect(r, 503, "idempotency_storage_full", "room full")
            check(r.headers.get("retry-after") is not None, "Retry-After on idempotency_storage_full")
            check(r.json["error"].get("field") == "Idempotency-Key", "names the header")
            return i
        expect(r, 201, what="stored reply %d" % i)
    check(False, "200 replies never filled a 4 KiB room")


def test_room(server):
    limit = ["--idempotency-key-max-bytes", "4k"]
    admin = start_at(server, 300, limit)
    key = expect(admin.post("/v1/api-keys", {"scope": "merchant", "name": "m"}), 201, what="merchant").json["key"]
    m = server.client(key)
    stored = fill_room(m)
    check(stored >= 3, "a few replies fit in 4 KiB: %d" % stored)
    expect(m.get("/v1/accounts/m-%d" % stored), 404, "not_found", "the refused request did nothing")
    r = expect(post(m, "/v1/accounts", account("m-0"), "m-0"), 201, what="replay while full")
    check(r.headers.get("idempotent-replayed") == "true", "replays still served")
    expect(m.post("/v1/accounts", account("m-plain")), 201, what="the same key without Idempotency-Key")
    expect(post(admin, "/v1/accounts", account("adm-x"), "adm-x"), 201, what="another key's stored reply")
    server.stop()
    # the room is counted again from the file at start
    start_at(server, 300, limit)
    expect(post(server.client(key), "/v1/accounts", account("m-late"), "m-late"), 503,
           "idempotency_storage_full", "still full after a restart")
    server.stop()
    # past the retention the purge frees the room
    start_at(server, 400, limit)
    wait_rows(server, 0, "purge frees the room")
    expect(post(server.client(key), "/v1/accounts", account("m-new"), "m-new"), 201, what="room again")
    server.stop()


def main():
    server = Server()
    try:
        test_retention(server)
        test_purge_backlog(server)
        test_room(server)
    finally:
        os.environ.pop("PAYCORE_TEST_CLOCK_OFFSET_S", None)
        server.close()
    print("idempotency retention: ok")


if __name__ == "__main__":
    main()
