"""Goal: a card top-up of a wallet checks who pays and asks the risk engine like any
card payment, so a stolen card cannot load someone's wallet unseen. Only the wallet's
owner may top it up: another payer is refused with 400 wallet_owner_mismatch (field
payer.id), a top-up naming no payer with field_missing, and nothing changes (no payment stored, no
ledger transfer). A payer the risk rules block is declined by risk with nothing
moved; a payer the rules send to review waits in the review queue with nothing moved,
and the review's approval loads the wallet (its decline cancels the top-up).
Method: a real server with real card and bank simulators; the wallet's balance is
read from the ledger after each step and the payments' amounts are compared
with their ledger transfers."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paylib import Env, card_payment, check, check_payment_ledger, expect, wait_status  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../api"))
from pcapi import check_conserved  # noqa: E402

CARD_TOP_UP = "5105105105105100"


def top_up_body(amount, payer):
    body = card_payment(amount, number=CARD_TOP_UP, payer=payer)
    del body["capture_method"]
    if payer is None:
        del body["payer"]
    return body


def wallet_available(m, wallet):
    return expect(m.get("/v1/wallets/" + wallet["id"]), 200, what="wallet").json["balance"]["available"]


def payments_count(m):
    return len(expect(m.get("/v1/payments?limit=100"), 200, what="list").json["data"])


def test_owner(env, m):
    w = expect(m.post("/v1/wallets", {"owner_id": "C9", "currency": "EUR"}), 201, what="wallet").json
    before = payments_count(m)
    for payer, code, field in (("C8", "wallet_owner_mismatch", "payer.id"), (None, "field_missing", "payer")):
        r = expect(m.post("/v1/wallets/%s/top_ups" % w["id"], top_up_body(900, payer)), 400, code,
                   "top-up by %r" % payer)
        check(r.json["error"].get("field") == field, "%r: the field is named: %r" % (payer, r.json))
    check(wallet_available(m, w) == 0, "refused top-ups load nothing")
    check(payments_count(m) == before, "refused top-ups store no payment")
    t = expect(m.post("/v1/wallets/%s/top_ups" % w["id"], top_up_body(900, "C9")), 201, what="owner's top-up").json
    check(t["status"] == "captured" and t["risk"]["decision_id"], "the owner's top-up is risk-scored: %r" % t)
    check(wallet_available(m, w) == 900, "the owner's top-up loads the wallet")
    check_payment_ledger(env.admin, t, "owner's top-up")


def test_risk(env, m):
    blocked = expect(m.post("/v1/wallets", {"owner_id": "P_DECLINE", "currency": "EUR"}), 201, what="wallet").json
    t = expect(m.post("/v1/wallets/%s/top_ups" % blocked["id"], top_up_body(700, "P_DECLINE")), 201,
               what="blocked payer's top-up").json
    check(t["status"] == "declined" and t["decline"]["source"] == "risk" and t["ledger_transfers"] == [],
          "risk declines the top-up, nothing moves: %r" % t)
    check(t["risk"]["reasons"][0]["code"] == "blocklist_payer", "the reason: %r" % t["risk"])
    check(not [o for o in t["operations"] if o["type"] == "authorize"], "no channel call: %r" % t["operations"])
    check(wallet_available(m, blocked) == 0, "a declined top-up loads nothing")

    watched = expect(m.post("/v1/wallets", {"owner_id": "P_REVIEW", "currency": "EUR"}), 201, what="wallet").json
    first = expect(m.post("/v1/wallets/%s/top_ups" % watched["id"], top_up_body(600, "P_REVIEW")), 201,
                   what="watched payer's top-up").json
    check(first["status"] == "in_review" and first["ledger_transfers"] == [], "review: %r" % first)
    check(wallet_available(m, watched) == 0, "nothing loaded while in review")
    expect(env.admin.post("/v1/risk/reviews/%d/approve" % first["risk"]["decision_id"], {}), 200, what="approve")
    done = wait_status(m, first["id"], ["captured", "failed", "declined"], "approved top-up")
    check(done["status"] == "captured" and done["purpose"] == "top_up", "approved: the top-up goes on: %r" % done)
    check(wallet_available(m, watched) == 600, "the approved top-up loads the wallet")
    check_payment_ledger(env.admin, done, "approved top-up")
    second = expect(m.post("/v1/wallets/%s/top_ups" % watched["id"], top_up_body(400, "P_REVIEW")), 201,
                    what="second watched top-up").json
    check(second["status"] == "in_review", "review again: %r" % second["status"])
    expect(env.admin.post("/v1/risk/reviews/%d/decline" % second["risk"]["decision_id"], {}), 200, what="decline")
    gone = wait_status(m, second["id"], ["canceled"], "declined review")
    check(gone["ledger_transfers"] == [], "a declined review moves nothing: %r" % gone)
    check(wallet_available(m, watched) == 600, "the declined top-up loads nothing")


def main():
    env = Env()
    try:
        env.start()
        m = env.merchant("m1")
        test_owner(env, m)
        test_risk(env, m)
        check_conserved(env.admin, "top-ups")
        env.stop()
        env.server.check_sanitizers()
    finally:
        env.close()
    print("payments top-ups: ok")


if __name__ == "__main__":
    main()
