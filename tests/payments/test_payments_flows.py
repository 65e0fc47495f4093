"""Goal: every legal transition of a payment happens and books exactly what
docs/accounting.md says, and every illegal one is refused with 409
payment_state_conflict naming the current state, changing nothing. Partial captures
and refunds at the edges (1 minor unit, the whole amount, several partials) add up;
fees follow the hand-computed half-even values; risk decline and review (approve and
decline through the review queue); 3-D Secure (right and wrong code); cancel; expiry
of an uncaptured hold (the ledger's own timeout, the channel told); wallets (pay,
overdraft refused as a decline, top up by card and by bank transfer, withdraw, a
returned withdrawal); payouts (settled, returned, larger than the balance).
Method: a real server with real card and bank simulator processes over loopback; after
every step the payment's amounts are compared with its ledger transfers and the ledger
is checked to balance per currency."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paylib import (BANK_OK, BANK_R01, CARD, CARD_3DS, CARD_DECLINE, Env, balance, card_payment,  # noqa: E402
                    check, check_payment_ledger, expect, transfer, wait_for, wait_status)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../api"))
from pcapi import check_conserved  # noqa: E402

AVAILABLE = "mer:m1:EUR:available"


def pay(m, body, status=201, what="payment"):
    return expect(m.post("/v1/payments", body), status, what=what).json


def get(m, pid):
    return expect(m.get("/v1/payments/" + pid), 200, what="get " + pid).json


def conflict(m, path, body, state, what):
    r = expect(m.post(path, body), 409, "payment_state_conflict", what)
    check(r.json["error"]["payment_status"] == state, "%s: current state named: %r" % (what, r.json))


def settled(env, m, p, what):
    check_payment_ledger(env.admin, get(m, p["id"]), what)
    check_conserved(env.admin, what)


def test_capture_edges(env, m):
    # authorize 1000, capture 1, then 998, then the last 1: three partials
    p = pay(m, card_payment(1000))
    check(p["status"] == "authorized" and p["amount_capturable"] == 1000, "authorized: %r" % p)
    hold = transfer(env.admin, p["hold"]["transfer_id"])
    check(hold["flags"] == ["pending"] and hold["amount"] == 1000, "the hold is a pending transfer: %r" % hold)
    conflict(m, "/v1/payments/%s/refunds" % p["id"], {}, "authorized", "refund before capture")
    expect(m.post("/v1/payments/%s/capture" % p["id"], {"amount": 1001}), 400, "capture_exceeds_authorized",
           "capture above the authorization")
    c = expect(m.post("/v1/payments/%s/capture" % p["id"], {"amount": 1}), 200, what="capture 1").json
    check(c["status"] == "partially_captured" and c["amount_captured"] == 1 and c["amount_capturable"] == 999,
          "after 1: %r" % c)
    c = expect(m.post("/v1/payments/%s/capture" % p["id"], {"amount": 998}), 200, what="capture 998").json
    check(c["status"] == "partially_captured" and c["amount_capturable"] == 1, "after 999: %r" % c)
    expect(m.post("/v1/payments/%s/capture" % p["id"], {"amount": 2}), 400, "capture_exceeds_authorized", "2 > 1")
    c = expect(m.post("/v1/payments/%s/capture" % p["id"], {"amount": 1}), 200, what="last unit").json
    check(c["status"] == "captured" and c["amount_captured"] == 1000 and c["hold"] is None, "captured: %r" % c)
    # fees: 2.9 % + 30 on 1000 = 29 + 30 = 59, whatever the split (1: 0+30 -> 30; 999: 29 -> 59)
    check(c["fees"] == 59, "partial captures' fees add up to the whole's: %r" % c["fees"])
    conflict(m, "/v1/payments/%s/capture" % p["id"], {}, "captured", "capture of a captured payment")
    conflict(m, "/v1/payments/%s/cancel" % p["id"], None, "captured", "cancel of a captured payment")
    settled(env, m, p, "capture edges")
    return p["id"]


def test_refund_edges(env, m, pid):
    before = balance(env.admin, AVAILABLE)
    r = expect(m.post("/v1/payments/%s/refunds" % pid, {"amount": 1}), 201, what="refund 1").json
    check(r["status"] == "succeeded" and r["fee_reversed"] == 0, "refund of 1: fee back half_even(59/1000)=0: %r" % r)
    check(get(m, pid)["status"] == "partially_refunded", "partially refunded")
    expect(m.post("/v1/payments/%s/refunds" % pid, {"amount": 1000}), 400, "refund_exceeds_captured",
           "refund above what is left")
    r = expect(m.post("/v1/payments/%s/refunds" % pid, {"amount": 499}), 201, what="refund 499").json
    check(r["fee_reversed"] == 30, "half_even(59*500/1000=29.5) = 30 cumulative: %r" % r["fee_reversed"])
    r = expect(m.post("/v1/payments/%s/refunds" % pid, {}), 201, what="refund the rest").json
    check(r["amount"] == 500 and r["fee_reversed"] == 29, "the rest gives back the last 29: %r" % r)
    p = get(m, pid)
    check(p["status"] == "refunded" and p["amount_refunded"] == 1000 and p["fees_reversed"] == 59, "refunded: %r" % p)
    check(balance(env.admin, AVAILABLE) == before - 1000 + 59, "available lost the refunds, got the fees back")
    conflict(m, "/v1/payments/%s/refunds" % pid, {"amount": 1}, "refunded", "refund of a refunded payment")
    expect(m.get("/v1/refunds/" + r["id"]), 200, what="get refund")
    settled(env, m, {"id": pid}, "refund edges")


def test_automatic_and_fees(env, m):
    # 12345 at 290 bps = 358.005 -> 358 (+30) ; 250 at 290 bps = 7.25 -> 7 ; 50 bps on 100 = 0.5 -> 0 (even)
    p = pay(m, card_payment(12345, capture="automatic"))
    check(p["status"] == "captured" and p["fees"] == 388, "automatic capture, fee 358+30: %r" % p)
    settled(env, m, p, "automatic")
    p = pay(m, card_payment(250, capture="automatic"))
    check(p["fees"] == 37, "fee 7+30: %r" % p["fees"])


def test_cancel_and_expiry(env, m):
    p = pay(m, card_payment(700))
    c = expect(m.post("/v1/payments/%s/cancel" % p["id"], None), 200, what="cancel").json
    check(c["status"] == "canceled" and c["hold"] is None, "canceled: %r" % c)
    hold = transfer(env.admin, p["hold"]["transfer_id"])
    check(hold["pending_state"] == "voided", "the hold is voided in the ledger: %r" % hold)
    conflict(m, "/v1/payments/%s/capture" % p["id"], {}, "canceled", "capture of a canceled payment")
    conflict(m, "/v1/payments/%s/cancel" % p["id"], None, "canceled", "cancel twice")
    settled(env, m, p, "cancel")


def test_expiry(env):
    """A short authorization window: the ledger's timeout voids the hold, the payment
    expires and the channel gets a void."""
    e = Env(extra_args=["--authorization-window-s", "2"])
    try:
        e.start()
        m = e.merchant("mx")
        p = pay(m, card_payment(300))
        q = wait_status(m, p["id"], ["expired"], "expiry")
        check(q["hold"] is None, "no hold left: %r" % q)
        hold = transfer(e.admin, p["hold"]["transfer_id"])
        check(hold["pending_state"] == "expired", "the ledger expired the hold: %r" % hold)
        voids = [o for o in wait_for("the channel told", lambda: [o for o in get(m, p["id"])["operations"]
                                                                   if o["type"] == "void" and o["status"] != "pending"])]
        check(voids[0]["status"] == "succeeded", "the channel voided its authorization: %r" % voids)
        status, auth = e.card.call("GET", "/v1/authorizations/" + p["channel_ref"])
        check(auth["status"] == "voided", "the simulator's record says voided: %r" % auth)
        # the void's flow may still hold the payment for a moment after its commit
        # shows (it ends on a stage thread): "in progress, retry later" until it ends
        wait_for("the void's flow ends", lambda: m.post("/v1/payments/%s/capture" % p["id"], {}).code() !=
                 "payment_operation_in_progress")
        conflict(m, "/v1/payments/%s/capture" % p["id"], {}, "expired", "capture after expiry")
        check_conserved(e.admin, "expiry")
    finally:
        e.close()


def test_risk(env, m):
    p = pay(m, card_payment(500, payer="P_DECLINE"))
    check(p["status"] == "declined" and p["decline"]["source"] == "risk" and p["ledger_transfers"] == [],
          "risk decline moves nothing and says why: %r" % p)
    check(p["risk"]["reasons"][0]["code"] == "blocklist_payer", "the reason: %r" % p["risk"])
    r = pay(m, card_payment(500, payer="P_REVIEW"))
    check(r["status"] == "in_review" and r["ledger_transfers"] == [], "review: %r" % r)
    conflict(m, "/v1/payments/%s/capture" % r["id"], {}, "in_review", "capture in review")
    did = r["risk"]["decision_id"]
    expect(env.admin.post("/v1/risk/reviews/%d/approve" % did, {}), 200, what="approve review")
    a = wait_status(m, r["id"], ["authorized"], "review approved")
    check(a["amount_authorized"] == 500, "resumed and authorized: %r" % a)
    d = pay(m, card_payment(600, payer="P_REVIEW"))
    expect(env.admin.post("/v1/risk/reviews/%d/decline" % d["risk"]["decision_id"], {}), 200, what="decline review")
    wait_status(m, d["id"], ["canceled"], "review declined")
    x = pay(m, card_payment(650, payer="P_REVIEW"))
    c = expect(m.post("/v1/payments/%s/cancel" % x["id"], None), 200, what="cancel in review").json
    check(c["status"] == "canceled", "canceled from review: %r" % c)


def test_three_d_secure(env, m):
    p = pay(m, card_payment(800, number=CARD_3DS))
    check(p["status"] == "requires_action" and p["next_action"]["type"] == "three_d_secure", "3DS: %r" % p)
    conflict(m, "/v1/payments/%s/capture" % p["id"], {}, "requires_action", "capture before 3DS")
    c = expect(m.post("/v1/payments/%s/confirm" % p["id"], {"code": "123456"}), 200, what="confirm").json
    check(c["status"] == "authorized" and c["amount_authorized"] == 800, "3DS passed: %r" % c)
    conflict(m, "/v1/payments/%s/confirm" % p["id"], {"code": "123456"}, "authorized", "confirm twice")
    w = pay(m, card_payment(800, number=CARD_3DS))
    c = expect(m.post("/v1/payments/%s/confirm" % w["id"], {"code": "000000"}), 200, what="wrong code").json
    check(c["status"] == "declined" and c["decline"]["code"] == "05", "wrong code declines: %r" % c)
    # risk review + a card enrolled in 3-D Secure: steps up instead of queueing
    s = pay(m, card_payment(900, number=CARD_3DS, payer="P_REVIEW"))
    check(s["status"] == "requires_action", "review steps up: %r" % s)
    check(p["payment_method"]["card"]["three_d_secure"], "enrolled")
    settled(env, m, p, "3ds")


def test_channel_decline(env, m):
    p = pay(m, card_payment(400, number=CARD_DECLINE))
    check(p["status"] == "declined" and p["decline"]["code"] == "05" and p["decline"]["source"] == "channel",
          "channel decline: %r" % p)
    check(p["ledger_transfers"] == [], "a decline books nothing")


def test_wallets(env, m):
    w = expect(m.post("/v1/wallets", {"owner_id": "C1", "currency": "EUR"}), 201, what="wallet").json
    empty = card_payment(100)
    empty["payment_method"] = {"type": "wallet", "wallet_id": w["id"]}
    empty["payer"] = {"id": "C1", "country": "DE"}
    p = pay(m, empty)
    check(p["status"] == "declined" and p["decline"]["code"] == "exceeds_credits" and p["decline"]["source"] == "ledger",
          "an overdraft is the ledger's refusal, answered as a decline: %r" % p)
    # top up by card: 5000 into the wallet
    top = card_payment(5000, payer="C1")
    del top["capture_method"]
    t = expect(m.post("/v1/wallets/%s/top_ups" % w["id"], top), 201, what="top up").json
    check(t["status"] == "captured" and t["purpose"] == "top_up", "top-up: %r" % t)
    check(expect(m.get("/v1/wallets/" + w["id"]), 200).json["balance"]["available"] == 5000, "wallet holds 5000")
    # pay 1200 from it: instant
    body = dict(empty, amount=1200)
    p = pay(m, body)
    check(p["status"] == "captured" and p["fees"] == 35 + 30, "wallet payment captured, fees 34.8->35 + 30: %r" % p)
    wrong = dict(body, payer={"id": "C2", "country": "DE"})
    expect(m.post("/v1/payments", wrong), 400, "wallet_owner_mismatch", "someone else's wallet")
    r = expect(m.post("/v1/payments/%s/refunds" % p["id"], {"amount": 200}), 201, what="wallet refund").json
    check(r["status"] == "succeeded", "refund to the wallet: %r" % r)
    check(expect(m.get("/v1/wallets/" + w["id"]), 200).json["balance"]["available"] == 4000, "5000-1200+200")
    # withdraw 1000 to a bank account: pending until the bank settles
    wd = expect(m.post("/v1/wallets/%s/withdrawals" % w["id"], {"amount": 1000, "owner_id": "C1",
                                                               "bank_account": BANK_OK}), 201, what="withdraw").json
    check(wd["status"] == "processing", "withdrawal waits for the bank: %r" % wd)
    wait_for("withdrawal paid", lambda: m.get("/v1/payouts/" + wd["id"]).json["status"] == "paid")
    check(expect(m.get("/v1/wallets/" + w["id"]), 200).json["balance"]["available"] == 3000, "4000-1000")
    # a returned withdrawal puts the money back
    wr = expect(m.post("/v1/wallets/%s/withdrawals" % w["id"], {"amount": 500, "owner_id": "C1",
                                                               "bank_account": BANK_R01}), 201, what="withdraw").json
    wait_for("withdrawal returned", lambda: m.get("/v1/payouts/" + wr["id"]).json["status"] == "returned")
    check(expect(m.get("/v1/wallets/" + w["id"]), 200).json["balance"]["available"] == 3000, "returned: back to 3000")
    expect(m.post("/v1/wallets/%s/withdrawals" % w["id"], {"amount": 3001, "owner_id": "C1", "bank_account": BANK_OK}),
           422, "exceeds_credits", "withdrawing more than the wallet holds")
    # top up by bank transfer: booked when the bank settles
    bt = {"amount": 700, "currency": "EUR", "payment_method": {"type": "bank_transfer", "bank_account": BANK_OK},
          "payer": {"id": "C1", "country": "DE"}}
    t = expect(m.post("/v1/wallets/%s/top_ups" % w["id"], bt), 202, what="bank top-up").json
    wait_status(m, t["id"], ["captured"], "bank top-up")
    check(expect(m.get("/v1/wallets/" + w["id"]), 200).json["balance"]["available"] == 3700, "+700")
    check_conserved(env.admin, "wallets")


def test_payouts(env, m):
    avail = balance(env.admin, AVAILABLE)
    check(avail > 600, "some balance to pay out: %d" % avail)
    body = {"amount": 500, "currency": "EUR", "bank_account": BANK_OK}
    po = expect(m.post("/v1/payouts", body), 201, what="payout").json
    wait_for("payout paid", lambda: m.get("/v1/payouts/" + po["id"]).json["status"] == "paid")
    check(balance(env.admin, AVAILABLE) == avail - 500, "the payout left the available balance")
    ret = expect(m.post("/v1/payouts", dict(body, bank_account=BANK_R01)), 201, what="payout to be returned").json
    wait_for("payout returned", lambda: m.get("/v1/payouts/" + ret["id"]).json["status"] == "returned")
    check(balance(env.admin, AVAILABLE) == avail - 500, "a returned payout is reversed")
    big = dict(body, amount=avail)
    expect(m.post("/v1/payouts", big), 422, "exceeds_credits", "a payout above the available balance")
    check_conserved(env.admin, "payouts")


def test_bank_collection(env, m):
    body = {"amount": 2000, "currency": "EUR", "payment_method": {"type": "bank_transfer", "bank_account": BANK_OK},
            "payer": {"id": "P9", "country": "DE"}}
    p = expect(m.post("/v1/payments", body), 202, what="bank collection").json
    check(p["status"] == "created" and p["pending_operation"], "waits for the bank: %r" % p)
    q = wait_status(m, p["id"], ["captured"], "collection settled")
    check(q["amount_captured"] == 2000 and q["fees"] == 58 + 30, "booked at settlement: %r" % q)
    r = expect(m.post("/v1/payments", dict(body, payment_method={"type": "bank_transfer", "bank_account": BANK_R01})),
               202, what="collection to be returned").json
    q = wait_status(m, r["id"], ["declined"], "collection returned")
    check(q["decline"]["code"] == "R01" and q["ledger_transfers"] == [], "returned: nothing booked: %r" % q)


def main():
    env = Env()
    try:
        env.start()
        m = env.merchant("m1")
        pid = test_capture_edges(env, m)
        test_refund_edges(env, m, pid)
        test_automatic_and_fees(env, m)
        test_cancel_and_expiry(env, m)
        test_risk(env, m)
        test_three_d_secure(env, m)
        test_channel_decline(env, m)
        test_wallets(env, m)
        test_bank_collection(env, m)
        test_payouts(env, m)
        env.stop()
        env.server.check_sanitizers()
    finally:
        env.close()
    test_expiry(None)
    print("payment flows: ok")


if __name__ == "__main__":
    main()
