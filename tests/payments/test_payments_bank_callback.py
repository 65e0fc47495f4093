"""Goal: a bank's callback settles only what was sent to that bank. A signed bank
callback naming a card operation's attempt key (or a key nobody sent) is acknowledged
200 with "matched": false and its message (docs/payments.md, "Bank callbacks"), so the
bank stops delivering it, and changes nothing: the payment, every account, the events.
That holds even where the key has a lookup row, as every card attempt had in a
database made before schema v8, and for a card payment whose authorization is still
unresolved after a crash (applied as a bank collection, it would have been captured).
A real payout's repeated callback answers "matched": true and changes nothing either.
Method: real card and bank simulators; callbacks signed by hand with the channel's
secret. (1) an authorized card payment: its attempt key in a bank callback. (2) a card
payment in flight when paycore is SIGKILLed (once the card simulator's record shows its
request arrived, held by a long latency), its attempt given the lookup row a v7
database held, paycore restarted with a long recovery grace: the callback first, then
recovery resolves the payment as the card channel says. (3) a paid payout's callback
posted again."""
import hashlib
import hmac
import json
import os
import sqlite3
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paylib import BANK_OK, CALLBACK_SECRET, Env, card_payment, check, check_payment_ledger, expect, wait_for  # noqa
from test_payments_crash import all_payments  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../api"))
from pcapi import PG_HOST, check_conserved  # noqa: E402

UNMATCHED = "matches no operation sent on this channel; nothing changed"
CARD_LATENCY_MS = 8000


def callback(env, key, amount, transfer_id="bt_forged", status="settled"):
    body = json.dumps({"id": transfer_id, "idempotency_key": key, "status": status,
                       "return_code": None if status == "settled" else "R01", "amount": amount,
                       "currency": "EUR", "reference": None}).encode()
    t = int(time.time())
    mac = hmac.new(CALLBACK_SECRET.encode(), ("%d." % t).encode() + body, hashlib.sha256).hexdigest()
    anon = env.client("")
    return anon.request("POST", "/v1/channels/bank/callbacks", raw=body,
                        headers={"Sim-Signature": "t=%d,v1=%s" % (t, mac), "Content-Type": "application/json"})


def pages(client, path):
    out, after = [], None
    while True:
        sep = "&" if "?" in path else "?"
        page = expect(client.get(path + sep + "limit=100" + ("&starting_after=" + after if after else "")), 200,
                      what=path).json
        out += page["data"]
        if not page["has_more"]:
            return out
        after = page["data"][-1]["id"]


def snapshot(env, payment_id):
    """What a callback could change: the payment, every account, the events."""
    return {"payment": expect(env.admin.get("/v1/payments/" + payment_id), 200, what="payment").json,
            "accounts": pages(env.admin, "/v1/accounts"),
            "events": [e["id"] for e in pages(env.admin, "/v1/events")]}


def expect_unmatched(env, key, amount, what):
    r = expect(callback(env, key, amount), 200, what=what)
    check(r.json == {"received": True, "id": "bt_forged", "outcome": "approved", "matched": False,
                     "message": UNMATCHED}, "%s: answer %r" % (what, r.json))


def card_key(payment):
    op = payment["operations"][0]
    check(op["type"] == "authorize" and op["channel"] == "card", "a card authorization: %r" % op)
    return op["attempts"][-1]["idempotency_key"]


def final_card_payment(env, m):
    p = expect(m.post("/v1/payments", card_payment(2500)), 201, what="card payment").json
    check(p["status"] == "authorized", "authorized: %r" % p["status"])
    before = snapshot(env, p["id"])
    expect_unmatched(env, card_key(p), p["amount"], "a final card operation's key")
    expect_unmatched(env, "gwk_nobody_sent_this_key", p["amount"], "a key nobody sent")
    check(snapshot(env, p["id"]) == before, "the callbacks changed nothing")


def give_lookup(env, key, payment, op):
    """The lookup row every card attempt had in a database made before schema v8, and
    the row of its operation (a card payment's steps had rows of their own then)."""
    conn = sqlite3.connect(env.server.db, timeout=30)
    with conn:
        conn.execute("INSERT INTO pay_lookups(name, object_id, extra) VALUES (?, ?, NULL)",
                     ("attempt:" + key, op["id"]))
        conn.execute("INSERT OR IGNORE INTO pay_objects(id, kind, merchant_id, parent_id, status, created_ns,"
                     " updated_ns, version, doc) VALUES (?, 'op', ?, ?, 'pending', ?, ?, 1, '')",
                     (op["id"], payment["merchant_id"], payment["id"], payment["created"], payment["created"]))
    conn.close()


def post_quietly(client, path, body):
    try:
        client.post(path, body)
    except Exception:  # noqa: BLE001 - the server is killed under it
        pass


def unresolved_card_payment(env, m):
    status, _ = env.card.call("POST", "/v1/admin/faults", {"latency_p50_ms": CARD_LATENCY_MS, "latency_p99_ms":
                                                            CARD_LATENCY_MS, "latency_max_ms": CARD_LATENCY_MS})
    check(status == 200, "card latency set")
    threading.Thread(target=post_quietly, args=(m, "/v1/payments", card_payment(4000)), daemon=True).start()
    pending = wait_for("a card payment in flight", lambda: [p for p in all_payments(env.admin)
                                                            if p["pending_operation"]])
    p = pending[0]
    # The attempt is saved before its request is sent: killed in between, the channel
    # never hears of it. Killed once the channel has counted its arrival, it holds it.
    wait_for("the card channel's arrival of the authorization", lambda: env.card.rows(
        "SELECT count(*) FROM arrivals WHERE key = ?", (card_key(p),))[0][0] == 1)
    env.server.proc.kill()
    env.server.proc.wait()
    env.server.proc = None
    op = p["operations"][0]
    check(op["status"] == "pending", "its authorization is pending: %r" % op)
    give_lookup(env, card_key(p), p, op)
    env.start(["--payments-recovery-grace-ms", "3600000"])  # recovery leaves it alone
    before = snapshot(env, p["id"])
    check(before["payment"]["pending_operation"] == op["id"], "still unresolved after the restart")
    expect_unmatched(env, card_key(p), p["amount"], "an unresolved card operation's key (with its lookup)")
    check(snapshot(env, p["id"]) == before, "the callback changed nothing on the unresolved card payment")
    status, _ = env.card.call("POST", "/v1/admin/faults", {})
    check(status == 200, "card faults cleared")
    # before the usual grace applies again: the channel still holds the request
    wait_for("the card channel's authorization arrived", lambda: env.card.rows(
        "SELECT count(*) FROM records WHERE kind = 'authorization' AND merchant_ref = ?", (p["id"],))[0][0] == 1)
    env.stop()
    env.start()

    def resolved():
        expect(env.admin.post("/v1/admin/payments/recover", {}), 200, what="recovery pass")
        q = env.admin.get("/v1/payments/" + p["id"]).json
        return q if not q["pending_operation"] else None
    q = wait_for("recovery resolved the card payment", resolved)
    check(q["status"] == "authorized" and q["amount_captured"] == 0,
          "the card channel authorized it, nothing captured: %s captured %d" % (q["status"], q["amount_captured"]))
    check_payment_ledger(env.admin, q, q["id"])


def repeated_payout_callback(env, m):
    expect(m.post("/v1/payments", card_payment(9000, capture="automatic")), 201, what="funding")
    po = expect(m.post("/v1/payouts", {"amount": 700, "currency": "EUR", "bank_account": BANK_OK}), 201,
                what="payout").json
    wait_for("payout paid", lambda: env.admin.get("/v1/payouts/" + po["id"]).json["status"] == "paid")
    row = env.bank.rows("SELECT id, idempotency_key FROM transfers WHERE reference = ?", (po["id"],))
    check(len(row) == 1, "the bank has the payout once: %r" % row)
    before = env.admin.get("/v1/payouts/" + po["id"]).json
    accounts = pages(env.admin, "/v1/accounts")
    r = expect(callback(env, row[0][1], 700, transfer_id=row[0][0]), 200, what="the payout's callback again")
    check(r.json == {"received": True, "id": row[0][0], "outcome": "approved", "matched": True},
          "a repeated delivery: %r" % r.json)
    check(env.admin.get("/v1/payouts/" + po["id"]).json == before, "the payout unchanged")
    check(pages(env.admin, "/v1/accounts") == accounts, "no account changed")


def main():
    env = Env(card_timeout_ms=CARD_LATENCY_MS * 3)
    try:
        env.start()
        m = env.merchant("mk")
        final_card_payment(env, m)
        if PG_HOST is None:  # the v7 lookup row is written into the SQLite file directly
            unresolved_card_payment(env, m)
        repeated_payout_callback(env, m)
        logs = "".join(open(os.path.join(env.dir, f), errors="replace").read() for f in os.listdir(env.dir)
                       if f.startswith("serve-") and f.endswith(".log"))
        check("matches no operation" in logs, "the unmatched callbacks are logged")
        check_conserved(env.admin, "after the callbacks")
        print("bank callbacks naming card operations change nothing: ok")
    finally:
        env.close()


if __name__ == "__main__":
    main()
