"""Goal: stored Idempotency-Key replies live for the retention (24 h by default, at
least 24 h) and no longer: within it a retry replays, after it the key runs again, and
the rows are purged from the file in the background (also a backlog larger than one
purge chunk); their room is bounded in total and shared per key: a key's share bites
only once the room is short, the bounds are counted again from the file after a
restart, and past them only new stored replies are refused (503
idempotency_storage_full), while replays, reused keys (409), requests without a key
and keys within their share go on.
Method: a real server; time is moved with PAYCORE_TEST_CLOCK_OFFSET_S (the test clock
of the retention) across restarts instead of waiting a day; the rows are counted in
the database file itself."""
import os
import signal
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


BACKLOG_ROWS = 600  # more than two purge chunks (API_IDEM_PURGE_ROWS_MAX 256)


def test_purge_backlog(server):
    """More expired rows than one purge chunk: all go, in chunks, and the rows stored
    meanwhile (younger) stay."""
    admin = start_at(server, 100)
    wait_rows(server, 0, "the earlier replies, expired at 100 h, purged")
    for i in range(BACKLOG_ROWS):
        expect(post(admin, "/v1/accounts", account("bulk-%d" % i), "bulk-%d" % i), 201, what="bulk %d" % i)
    check(rows(server) == BACKLOG_ROWS, "%d replies stored" % BACKLOG_ROWS)
    server.stop()
    admin = start_at(server, 200)
    young = expect(post(admin, "/v1/accounts", account("young"), "young"), 201, what="a young reply")
    wait_rows(server, 1, "backlog purge")
    check(metric(server, "paycore_idempotency_purged_total") == BACKLOG_ROWS, "every expired row purged and counted")
    r = expect(post(admin, "/v1/accounts", account("young"), "young"), 201, what="the young reply")
    check(r.headers.get("idempotent-replayed") == "true" and r.raw == young.raw, "a reply within retention stays")
    server.stop()


def room_by_key(server):
    """{key_id: stored bytes} of the replies, read from the file."""
    db = sqlite3.connect("file:%s?mode=ro" % server.db, uri=True, timeout=30)
    try:
        return dict(db.execute("SELECT key_id, sum(row_bytes) FROM idempotency_keys GROUP BY key_id").fetchall())
    finally:
        db.close()


def fill_room(c, prefix):
    """Idempotent POSTs of one key until refused; the file's room (total, by key)
    before the last stored reply and at the refusal, and the count stored."""
    before = after = None
    for i in range(400):
        r = post(c, "/v1/accounts", account("%s-%d" % (prefix, i)), "%s-%d" % (prefix, i))
        if r.status == 503:
            expect(r, 503, "idempotency_storage_full", "room full")
            check(r.headers.get("retry-after") is not None, "Retry-After on idempotency_storage_full")
            check(r.json["error"].get("field") == "Idempotency-Key", "names the header")
            return before, after, i
        expect(r, 201, what="stored reply %s %d" % (prefix, i))
        before, after = after, room_by_key(server_of[0])
    check(False, "400 replies never filled the room")


server_of = []

TOTAL_B = 16 * 1024
SHORT_B = TOTAL_B * 3 // 4  # API_IDEM_ROOM_SHORT_PERCENT
SHARE_B = 8 * 1024


def test_room(server):
    """The total room is a hard bound; a key's share (--idempotency-key-max-bytes)
    bites only once the room is short (75 % full). A key past its share goes on while
    the room is not short (it used to be refused at its share), then is refused while
    a key within its share still stores, until the room is truly full."""
    server_of[:] = [server]
    limit = ["--idempotency-max-bytes", str(TOTAL_B), "--idempotency-key-max-bytes", str(SHARE_B)]
    admin = start_at(server, 300, limit)
    wait_rows(server, 0, "the earlier replies purged")
    made = expect(admin.post("/v1/api-keys", {"scope": "merchant", "name": "m"}), 201, what="merchant").json
    m = server.client(made["key"])
    before, after, stored = fill_room(m, "m")
    mine = after.get(made["id"], 0)
    check(mine >= SHORT_B > SHARE_B,
          "the key stored past its share (it used to be refused there) until the room was short: %d" % mine)
    check(sum(before.values()) < SHORT_B <= sum(after.values()),
          "refused right once the room was short: %r -> %r" % (before, after))
    expect(m.get("/v1/accounts/m-%d" % stored), 404, "not_found", "the refused request did nothing")
    r = expect(post(m, "/v1/accounts", account("m-0"), "m-0"), 201, what="replay while past its share")
    check(r.headers.get("idempotent-replayed") == "true", "replays still served")
    expect(post(m, "/v1/accounts", account("m-other"), "m-0"), 409, "idempotency_key_reused",
           "a reused key with another body while past its share")
    expect(m.post("/v1/accounts", account("m-plain")), 201, what="the same key without Idempotency-Key")
    # a key within its share stores on, up to the total: then the room is truly full
    before, after, _ = fill_room(admin, "adm")
    check(sum(before.values()) < TOTAL_B <= sum(after.values()),
          "another key stored until the room was full: %r -> %r" % (before, after))
    check(after.get(made["id"], 0) == mine, "nothing more of the refused key stored")
    expect(post(admin, "/v1/accounts", account("adm-0"), "adm-0"), 201, what="a replay in a full room")
    expect(post(admin, "/v1/accounts", account("adm-other"), "adm-0"), 409, "idempotency_key_reused",
           "a reused key with another body in a full room")
    # the room is counted again from the file at start, after a crash and after a clean
    # stop: both keys still refused, replays and reused keys answered as before
    for how in (signal.SIGKILL, signal.SIGTERM):
        server.stop(how)
        admin = start_at(server, 300, limit)
        m = server.client(made["key"])
        expect(post(m, "/v1/accounts", account("m-late"), "m-late"), 503,
               "idempotency_storage_full", "past its share in a short room after signal %d" % how)
        expect(post(admin, "/v1/accounts", account("adm-late"), "adm-late"), 503,
               "idempotency_storage_full", "a full room after signal %d" % how)
        r = expect(post(m, "/v1/accounts", account("m-1"), "m-1"), 201, what="a replay after signal %d" % how)
        check(r.headers.get("idempotent-replayed") == "true", "replayed after signal %d" % how)
        expect(post(m, "/v1/accounts", account("m-other"), "m-1"), 409, "idempotency_key_reused",
               "a reused key after signal %d" % how)
        check(room_by_key(server) == after, "nothing stored past the room")
    server.stop()
    # past the retention the purge frees the room
    start_at(server, 400, limit)
    wait_rows(server, 0, "purge frees the room")
    expect(post(server.client(made["key"]), "/v1/accounts", account("m-new"), "m-new"), 201, what="room again")
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
