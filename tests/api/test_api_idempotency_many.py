"""Goal: a server whose store holds many Idempotency-Key replies starts and keeps every
promise of every key: each stored reply replays byte for byte (marked as a replay), the
same key with other fields is 409 idempotency_key_reused, a new key runs; the index
and the room the replies take count them all (paycore_idempotency_index_keys,
paycore_idempotency_stored_bytes); --idempotency-max-bytes still holds after the start
(a new reply past it: 503 idempotency_storage_full, nothing stored). All of it after a
clean restart and after a SIGKILL (replies committed just before the kill included).
The SQLite store loads its map of the replies at their first use, from the same scan
that loads the API's index (src/store/sqlite_idem_rows.c): this is the start it makes.
Method: a real server on a SQLite file (or PostgreSQL under test_pg_store); KEYED
replies written into the stopped server's file with SQL, each with the request hash
paycore gives its request (BLAKE2b-256 of route, NUL, body) so that the request
replays it, plus FILLER replies of another API key to make the scan long (past many
of its stop checks); replies made over HTTP before and after each restart."""
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import time

from pcapi import BIN, PG_HOST, TIMEOUT_S, Server, account, check, expect, transfer

KEYED = 3000
FILLER = 40000
ROUTE = "/v1/transfers"


def keyed_body(i):
    return json.dumps(transfer("bulk-t%d" % i, "bank", "alice", 1 + i % 97), separators=(",", ":"))


def keyed_reply(i):
    return '{"id":"bulk-t%d","note":"stored before the start","n":%d}' % (i, i)


def request_hash(body):
    return hashlib.blake2b(ROUTE.encode() + b"\0" + body.encode(), digest_size=32).digest()


def row_bytes(key_id, key, body):
    return len(body.encode()) + len(key_id) + len(key) + 64


def stored_rows(server):
    """KEYED replayable replies of the admin key and FILLER replies of another key,
    created now (the purge keeps them)."""
    db = sqlite3.connect(server.db, timeout=TIMEOUT_S)
    try:
        key_id = db.execute("SELECT id FROM api_keys ORDER BY created_ns LIMIT 1").fetchone()[0]  # the admin key
        now_ns = time.time_ns()
        rows = []
        for i in range(KEYED):
            reply = keyed_reply(i)
            rows.append((key_id, "bulk-%05d" % i, request_hash(keyed_body(i)), 201, reply, now_ns + i,
                         row_bytes(key_id, "bulk-%05d" % i, reply)))
        other = "key_00000000f111e5"
        for i in range(FILLER):
            reply = '{"filler":%d}' % i
            key = "fill-%06d-%s" % (i, "x" * 24)
            rows.append((other, key, b"\1" * 32, 201, reply, now_ns + KEYED + i, row_bytes(other, key, reply)))
        db.executemany("INSERT INTO idempotency_keys(key_id, idempotency_key, request_hash, status, body, created_ns,"
                       " row_bytes) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        db.commit()
    finally:
        db.close()


def metrics(client):
    text = expect(client.get("/metrics"), 200, what="metrics").raw
    return dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("paycore_idempotency_"))


def post_raw(client, body, key):
    return client.request("POST", ROUTE, raw=body.encode(), headers={"Idempotency-Key": key})


def check_all(server, made, count, total, what):
    """Every stored reply replays byte for byte; other fields are refused; the index
    and the room count every row; a new key runs."""
    c = server.client()
    m = metrics(c)
    check(int(float(m["paycore_idempotency_index_keys"])) >= count and
          m['paycore_idempotency_index_state{state="indexed"}'] == "1",
          "%s: the index holds all %d stored keys: %r" % (what, count, m))
    check(int(float(m["paycore_idempotency_stored_bytes"])) == total,
          "%s: the stored replies' room is their rows' sum %d: %r" % (what, total, m))
    for i in range(KEYED):
        r = post_raw(c, keyed_body(i), "bulk-%05d" % i)
        check(r.status == 201 and r.raw == keyed_reply(i) and r.headers.get("idempotent-replayed") == "true",
              "%s: bulk-%05d replays as stored: %r" % (what, i, r))
        if i % 10 == 0:
            other = post_raw(c, keyed_body(i + 1), "bulk-%05d" % i)
            check(other.status == 409 and other.code() == "idempotency_key_reused",
                  "%s: bulk-%05d with other fields: %r" % (what, i, other))
    for key, (body, raw) in made.items():
        r = post_raw(c, body, key)
        check(r.status == 201 and r.raw == raw and r.headers.get("idempotent-replayed") == "true",
              "%s: %s replays as first answered: %r" % (what, key, r))
        other = post_raw(c, body.replace('"amount":', '"amount":1'), key)
        check(other.status == 409 and other.code() == "idempotency_key_reused",
              "%s: %s with other fields: %r" % (what, key, other))
    return c


def make(server, made, key, amount):
    """A new reply made over HTTP; kept to replay."""
    body = json.dumps(transfer("t-" + key[:20], "bank", "alice", amount), separators=(",", ":"))
    r = post_raw(server.client(), body, key)
    check(r.status == 201 and r.headers.get("idempotent-replayed") is None, "%s: a new key runs: %r" % (key, r))
    made[key] = (body, r.raw)


def stored_room(server):
    """(rows, room) of the stored replies, read from the file (the server may run)."""
    db = sqlite3.connect(server.db, timeout=TIMEOUT_S)
    try:
        return db.execute("SELECT count(*), sum(row_bytes) FROM idempotency_keys").fetchone()
    finally:
        db.close()


def over(client, key):
    """A new key's request when the replies fill the room: 503, nothing runs."""
    r = client.post(ROUTE, transfer("t-" + key, "bank", "alice", 4), headers={"Idempotency-Key": key})
    check(r.status == 503 and r.code() == "idempotency_storage_full", "%s past the room: %r" % (key, r))


def check_room(server, made, count, total):
    """--idempotency-max-bytes holds after a start, counted to the byte: the stored
    replies' room equal to the bound leaves none (a new reply: 503, a replay runs);
    one byte more lets one new reply in, then none."""
    server.start(["--idempotency-max-bytes", str(total)])
    c = server.client()
    over(c, "over-the-room")
    r = post_raw(c, made["http-1"][0], "http-1")
    check(r.status == 201 and r.raw == made["http-1"][1], "a replay needs no room: %r" % r)
    check(server.stop() == 0, "SIGTERM exits 0")
    check(stored_room(server) == (count, total), "nothing stored past the room")
    server.start(["--idempotency-max-bytes", str(total + 1)])
    c = server.client()
    make(server, made, "in-the-last-byte", 6)
    over(c, "over-the-room")
    m = metrics(c)
    check(int(float(m["paycore_idempotency_stored_bytes"])) == stored_room(server)[1] > total,
          "the one new reply counted: %r" % m)
    check(server.stop() == 0, "SIGTERM exits 0")


def main():
    if PG_HOST:
        print("SQLite only: the replies are written into the file")
        return
    server = Server()
    try:
        server.start()
        c = server.client()
        expect(c.post("/v1/accounts", account("bank")), 201)
        expect(c.post("/v1/accounts", account("alice")), 201)
        made = {}
        check(server.stop() == 0, "SIGTERM exits 0")
        stored_rows(server)
        server.start()
        for i in range(3):
            make(server, made, "http-%d" % i, 50 + i)
        make(server, made, "fill-000017-" + "x" * 24, 5)  # another API key's stored key: new for this one
        check_all(server, made, *stored_room(server), "first start")
        check(server.stop() == 0, "SIGTERM exits 0")
        server.start()
        check_all(server, made, *stored_room(server), "after a clean restart")
        make(server, made, "before-kill", 77)
        server.stop(signal.SIGKILL)
        server.start()
        count, total = stored_room(server)
        check_all(server, made, count, total, "after SIGKILL")
        check(server.stop() == 0, "SIGTERM exits 0")
        check_room(server, made, count, total)
        out = subprocess.run([BIN, "verify"] + server.store_location_args(), capture_output=True, text=True,
                             timeout=TIMEOUT_S * 3)
        check(out.returncode == 0, "paycore verify: %s %s" % (out.stdout[-500:], out.stderr[-500:]))
        print("%d stored replies: every one replays, other fields refused, the room holds; first start, clean"
              " restart, SIGKILL: ok" % count)
    finally:
        server.close()


if __name__ == "__main__":
    main()
