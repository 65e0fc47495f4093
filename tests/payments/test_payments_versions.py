"""Goal: a payment is stored as one appended record per version (schema version 6): a
command appends the record of what it did and rewrites nothing; an operation entry that
did not change is a reference to the record that holds it whole; the payment's row keeps
its listing columns only (and, since version 9, the final answer of the request that
made it, whose Idempotency-Key reply names the payment and is written once). Any
version renders exactly as it was answered, also on a replay after a restart, and
payments written whole by schema version 5 stay readable and go on after the migration.
Method: a real server and simulators; a payment authorized, captured in part and then
captured in full, each with its Idempotency-Key; the SQLite file read directly after a
clean stop (rows and records); then the payment's row rewritten as version 5 wrote it
(its whole document in the row, no records table, user_version 5), the server started
again (migration), and the payment read, replayed, captured and verified."""
import json
import os
import sqlite3
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paylib import (BIN, TIMEOUT_S, Env, card_payment, check, check_payment_ledger, expect,  # noqa: E402
                    pay_records)


def records(db, payment_id):
    conn = sqlite3.connect(db)
    try:
        row = conn.execute("SELECT version, doc FROM pay_objects WHERE id = ?", (payment_id,)).fetchone()
    finally:
        conn.close()
    stored = pay_records(db, payment_id)
    check(all(r["stored"] == "packed" and r["stored_bytes"] < len(r["doc"]) for r in stored),
          "since schema version 16 each record is stored packed, smaller than its text: %r"
          % [(r["version"], r["stored"], r["stored_bytes"], len(r["doc"])) for r in stored])
    return row, [(r["version"], r["doc"]) for r in stored]


def check_records(env, payment_id, shown):
    row, versions = records(env.server.db, payment_id)
    check(row is not None and row[0] == shown["version"] and row[1] == "",
          "the row holds the listing columns only: %r" % (row,))
    check([v for v, _ in versions] == list(range(1, shown["version"] + 1)),
          "one record per version, appended in order: %r" % [v for v, _ in versions])
    last = json.loads(versions[-1][1])
    ops = last["operations"]
    check(len(ops) == len(shown["operations"]), "the last record lists every operation: %r" % ops)
    auth = ops[0]
    check(set(auth) == {"id", "$version"} and auth["id"] == shown["operations"][0]["id"] and
          auth["$version"] < shown["version"],
          "an unchanged operation is a reference, not a copy: %r" % auth)
    check(ops[-1] == shown["operations"][-1], "the operation the last command moved is whole: %r" % ops[-1])
    whole = len(json.dumps(shown, separators=(",", ":")))
    check(len(versions[-1][1]) < whole, "the last record (%d bytes) is smaller than the document (%d)"
          % (len(versions[-1][1]), whole))


def stored_reply(db, idempotency_key):
    conn = sqlite3.connect(db)
    try:
        row = conn.execute("SELECT body FROM idempotency_keys WHERE idempotency_key = ?", (idempotency_key,)).fetchone()
    finally:
        conn.close()
    return row[0] if row else None


def answer_kept(db, payment_id):
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT answer_version, answer_status FROM pay_objects WHERE id = ?",
                            (payment_id,)).fetchone()
    finally:
        conn.close()


def make_v5(db, payment_id, doc_text, replies):
    """The payment's row as schema version 5 wrote it: the whole document, no records,
    and the Idempotency-Key replies stored whole."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("UPDATE pay_objects SET doc = ? WHERE id = ?", (doc_text, payment_id))
        for key, body in replies.items():
            conn.execute("UPDATE idempotency_keys SET body = ? WHERE idempotency_key = ?", (body, key))
        conn.execute("DROP TABLE pay_versions")
        for column in ("answer_version", "answer_status"):  # version 9's
            conn.execute("ALTER TABLE pay_objects DROP COLUMN " + column)
        # version 10's: an event's first owner back into the owners table
        conn.execute("INSERT OR IGNORE INTO event_owners(owner, seq) SELECT owner, seq FROM events"
                     " WHERE owner IS NOT NULL")
        conn.execute("DROP INDEX IF EXISTS events_by_owner")  # before version 17
        conn.execute("ALTER TABLE events DROP COLUMN owner")
        conn.execute("DROP INDEX pay_objects_pending_op")  # version 11's
        conn.execute("ALTER TABLE pay_objects DROP COLUMN pending_op")
        conn.execute("PRAGMA user_version = 5")
        conn.commit()
    finally:
        conn.close()


def main():
    env = Env()
    try:
        env.start()
        m = env.merchant("m1")
        created = expect(m.post("/v1/payments", card_payment(1999), headers={"Idempotency-Key": "v-auth"}), 201)
        pid = created.json["id"]
        part = expect(m.post("/v1/payments/%s/capture" % pid, {"amount": 500},
                             headers={"Idempotency-Key": "v-cap1"}), 200)
        check(part.json["status"] == "partially_captured", "a partial capture: %r" % part.json)
        got = expect(m.get("/v1/payments/" + pid), 200)
        check(got.raw == part.raw, "GET renders the version the capture answered with, byte for byte")
        listed = expect(m.get("/v1/payments?limit=10"), 200).json["data"]
        check(listed == [got.json], "the listing renders it too: %r" % listed)
        replay = expect(m.post("/v1/payments", card_payment(1999), headers={"Idempotency-Key": "v-auth"}), 201)
        check(replay.raw == created.raw, "the authorization's replay answers its first answer byte for byte")
        env.stop()
        check_records(env, pid, got.json)

        ref = stored_reply(env.server.db, "v-cap1")
        check(ref == "@payment:%s:%d" % (pid, part.json["version"]),
              "the capture's stored reply is a reference to the version it answered with: %r" % ref)
        ref = stored_reply(env.server.db, "v-auth")
        check(ref == "@payment:%s" % pid, "the stored reply of the key that made the payment names it, written"
              " once with the payment's first command and not rewritten by its answer: %r" % ref)
        check(answer_kept(env.server.db, pid) == (created.json["version"], 201),
              "the payment's row keeps the version and status its creation answered with: %r"
              % (answer_kept(env.server.db, pid),))
        env.start()
        replay = expect(m.post("/v1/payments", card_payment(1999), headers={"Idempotency-Key": "v-auth"}), 201)
        check(replay.raw == created.raw, "after a restart the authorization's replay still answers its first"
              " answer byte for byte, not the payment as it stands (%s)" % got.json["status"])
        env.stop()
        make_v5(env.server.db, pid, got.raw, {"v-auth": created.raw, "v-cap1": part.raw})
        env.start()
        again = expect(m.get("/v1/payments/" + pid), 200)
        check(again.raw == got.raw, "a row written whole by version 5 reads as it was:\n%s\n%s"
              % (got.raw, again.raw))
        rest = expect(m.post("/v1/payments/%s/capture" % pid, {}, headers={"Idempotency-Key": "v-cap2"}), 200)
        check(rest.json["status"] == "captured" and rest.json["amount_captured"] == 1999 and
              rest.json["version"] == got.json["version"] + 2, "the migrated payment goes on: %r" % rest.json)
        check(expect(m.get("/v1/payments/" + pid), 200).raw == rest.raw, "its new version renders as answered")
        replay = expect(m.post("/v1/payments/%s/capture" % pid, {"amount": 500},
                               headers={"Idempotency-Key": "v-cap1"}), 200)
        check(replay.raw == part.raw, "a reply stored before the migration replays byte for byte")
        check_payment_ledger(env.admin, rest.json, "the migrated payment")
        env.stop()
        row, versions = records(env.server.db, pid)
        # two commands: the capture's attempt made durable, then its booking
        check(row[1] == "" and [v for v, _ in versions] == [rest.json["version"] - 1, rest.json["version"]],
              "after the migration the row is columns only and each new version has its record: %r"
              % ([v for v, _ in versions],))
        out = subprocess.run([BIN, "verify", "--db", env.server.db], capture_output=True, text=True,
                             timeout=TIMEOUT_S * 3)
        check(out.returncode == 0, "paycore verify: %s %s" % (out.stdout[-500:], out.stderr[-500:]))
    finally:
        env.close()
    print("payments versions: ok")


if __name__ == "__main__":
    main()
