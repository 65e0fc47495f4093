"""Goal: Idempotency-Key works on every payments POST: the same key and body again
answers the stored reply byte for byte and does nothing twice; the same key with another
body is 409 idempotency_key_reused. The replies of payments (answered after their
channel call, stored in the transaction that makes them final) count against the
idempotency room: once it is full (--idempotency-max-bytes) a new key is refused with
503 idempotency_storage_full, while replays and requests without a key still run, and
the count survives a restart.
Method: a real server and simulators; every POST route sent twice with one key; the
effect (a payment's amounts, a wallet's balance, the merchant's balance, the number of
refunds/payouts) is read after each. Then a server with a small room per key."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paylib import BANK_OK, CARD_3DS, Env, balance, card_payment, check, expect, wait_for  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../api"))
from pcapi import check_conserved  # noqa: E402

AVAILABLE = "mer:m1:EUR:available"


def twice(client, path, body, key, status, what):
    """POSTs twice with one Idempotency-Key: the second answer is the first, byte for byte
    (a new API key's secret excepted: it is shown once and never stored)."""
    headers = {"Idempotency-Key": key}
    first = expect(client.post(path, body, headers=headers), status, what=what)
    again = expect(client.post(path, body, headers=headers), status, what=what + " replayed")
    if path.endswith("/keys"):
        shown = dict(first.json)
        check(shown.pop("key", None) is not None and "key" not in again.json and again.json == shown,
              "%s: the replay is the key without its secret: %r" % (what, again.json))
    else:
        check(again.raw == first.raw, "%s: the replay answers the stored reply:\n%s\n%s" % (what, first.raw,
                                                                                          again.raw))
    other = dict(body or {}, description="another body") if path == "/v1/payments" else {"amount": 7}
    if path.endswith("/cancel") or path.endswith("/confirm") or path.endswith("/keys"):
        other = {"surprise": 1}
    r = client.post(path, other, headers=headers)
    check(r.status == 409 and r.code() == "idempotency_key_reused", "%s: another body under the key: %r" % (what, r))
    return first.json


def payment(m, pid):
    return expect(m.get("/v1/payments/" + pid), 200).json


def every_post(env):
    admin = env.admin
    twice(admin, "/v1/merchants", {"id": "m1", "name": "Shop", "country": "DE", "default_currency": "EUR",
                                   "currencies": ["EUR"], "pricing": {"default": {"bps": 290, "fixed_minor": 30}}},
          "merchant-1", 201, "create merchant")
    key = twice(admin, "/v1/merchants/m1/keys", {"name": "k"}, "mkey-1", 201, "merchant key")
    check("key" in key, "the first answer holds the secret: %r" % key)
    m = env.client(key["key"])
    p = twice(m, "/v1/payments", card_payment(1000), "pay-1", 201, "payment")
    check(len([x for x in expect(m.get("/v1/payments?limit=100"), 200).json["data"]]) == 1, "one payment made")
    c = twice(m, "/v1/payments/%s/capture" % p["id"], {"amount": 1000}, "cap-1", 200, "capture")
    check(payment(m, p["id"])["amount_captured"] == 1000 == c["amount_captured"], "captured once")
    r = twice(m, "/v1/payments/%s/refunds" % p["id"], {"amount": 100}, "ref-1", 201, "refund")
    check(payment(m, p["id"])["amount_refunded"] == 100 and r["amount"] == 100, "refunded once")
    q = expect(m.post("/v1/payments", card_payment(500)), 201).json
    twice(m, "/v1/payments/%s/cancel" % q["id"], None, "can-1", 200, "cancel")
    s = expect(m.post("/v1/payments", card_payment(600, number=CARD_3DS)), 201).json
    d = twice(m, "/v1/payments/%s/confirm" % s["id"], {"code": "123456"}, "conf-1", 200, "confirm")
    check(d["status"] == "authorized", "3DS confirmed once: %r" % d)
    w = twice(m, "/v1/wallets", {"owner_id": "C1", "currency": "EUR"}, "wal-1", 201, "wallet")
    top = card_payment(3000, payer="C1")
    del top["capture_method"]
    twice(m, "/v1/wallets/%s/top_ups" % w["id"], top, "top-1", 201, "top up")
    check(expect(m.get("/v1/wallets/" + w["id"]), 200).json["balance"]["available"] == 3000, "topped up once")
    wd = twice(m, "/v1/wallets/%s/withdrawals" % w["id"], {"amount": 1000, "owner_id": "C1", "bank_account": BANK_OK},
               "wd-1", 201, "withdrawal")
    wait_for("withdrawal paid", lambda: m.get("/v1/payouts/" + wd["id"]).json["status"] == "paid")
    check(expect(m.get("/v1/wallets/" + w["id"]), 200).json["balance"]["available"] == 2000, "withdrawn once")
    before = balance(admin, AVAILABLE)
    po = twice(m, "/v1/payouts", {"amount": 50, "currency": "EUR", "bank_account": BANK_OK}, "po-1", 201, "payout")
    wait_for("payout paid", lambda: m.get("/v1/payouts/" + po["id"]).json["status"] == "paid")
    check(balance(admin, AVAILABLE) == before - 50, "paid out once")
    check_conserved(admin, "every POST twice")


def room(env_dir_args):
    """A small room: deferred payment replies fill it."""
    env = Env(extra_args=env_dir_args)
    try:
        env.start()
        m = env.merchant("m1")
        stored = []
        refused = None
        for i in range(40):
            r = m.post("/v1/payments", card_payment(100 + i), headers={"Idempotency-Key": "room-%d" % i})
            if r.status == 503:
                refused = r
                break
            expect(r, 201, what="payment %d" % i)
            stored.append(("room-%d" % i, r.raw, 100 + i))
        check(refused is not None and refused.code() == "idempotency_storage_full",
              "the payments' stored replies filled the key's room: %d stored, then %r" % (len(stored), refused))
        check(2 <= len(stored) < 40, "a few payments fit in 2k: %d" % len(stored))
        key, raw, amount = stored[0]
        again = expect(m.post("/v1/payments", card_payment(amount), headers={"Idempotency-Key": key}), 201,
                       what="a replay past the bound")
        check(again.raw == raw, "replays still answer")
        expect(m.post("/v1/payments", card_payment(5)), 201, what="no key: still runs")
        env.stop()
        env.start()
        r = m.post("/v1/payments", card_payment(6), headers={"Idempotency-Key": "after-restart"})
        check(r.status == 503 and r.code() == "idempotency_storage_full", "the room is counted again at start: %r" % r)
    finally:
        env.close()
    return len(stored)


def main():
    env = Env()
    try:
        env.start()
        every_post(env)
    finally:
        env.close()
    # a payment's stored reply is a reference to its version (a hundred bytes or so)
    fitted = room(["--idempotency-max-bytes", "2k"])
    print("payments idempotency: ok (every POST replayed; %d payment replies filled a 2k room)" % fitted)


if __name__ == "__main__":
    main()
