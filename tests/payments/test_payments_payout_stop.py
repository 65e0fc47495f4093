"""Goal: a bank callback that arrives while `paycore serve` stops is never lost. During
a clean stop (SIGTERM) the server keeps answering HTTP while running payments end; a
callback that lands then must be refused (503, the bank delivers it again), not
acknowledged and dropped, or its payout stays `processing` for ever. After the
restart every payout reaches its final state (paid or returned, as the bank decided)
within the bound docs/payments.md states, and the ledger agrees: nothing is left in
the merchant's payouts-in-transit account.
Method: the bank settles 2.5 s after a payout; six payouts (four settle, two are
returned R01) are made, then a card payment whose channel answers after 8 s is
started and SIGTERM sent while it is in flight, so the stop waits for it while the
bank's callbacks arrive. Restart, poll every payout until final (generous deadline,
no timing asserted), then compare each with the bank's record and the ledger."""
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paylib import BANK_OK, BANK_R01, Env, card_payment, check, expect, wait_for  # noqa: E402
from test_payments_crash import all_payments, check_bank_record  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../api"))
from pcapi import check_conserved  # noqa: E402

SETTLE_DELAY_MS = 2500
CARD_LATENCY_MS = 8000
FINAL = ("paid", "returned")


def fund(env, m, amount):
    p = expect(m.post("/v1/payments", card_payment(amount, capture="automatic")), 201, what="funding payment").json
    check(p["status"] == "captured", "funding payment captured: %r" % p)
    return p


def slow_payment(env, m, out):
    """A card payment whose channel answers after CARD_LATENCY_MS (its answer, or the
    connection closed by the stop: either is fine)."""
    try:
        out.append(m.post("/v1/payments", card_payment(500, capture="automatic")))
    except Exception as e:  # noqa: BLE001 - the server stopped under it
        out.append(e)


def payouts_final(env, ids):
    payouts = [env.admin.get("/v1/payouts/" + i).json for i in ids]
    return payouts if all(p.get("status") in FINAL for p in payouts) else None


def main():
    env = Env(bank_config={"settle_delay_ms": SETTLE_DELAY_MS, "callback_retry_base_ms": 50,
                           "callback_retry_max_ms": 500},
              card_timeout_ms=CARD_LATENCY_MS * 3)
    try:
        env.start()
        m = env.merchant("mk")
        funding = fund(env, m, 100000)
        slow = {"latency_p50_ms": CARD_LATENCY_MS, "latency_p99_ms": CARD_LATENCY_MS,
                "latency_max_ms": CARD_LATENCY_MS}
        status, _ = env.card.call("POST", "/v1/admin/faults", slow)
        check(status == 200, "card faults set: %d" % status)
        ids = []
        for i in range(6):
            bank = BANK_R01 if i % 3 == 2 else BANK_OK
            po = expect(m.post("/v1/payouts", {"amount": 1000 + i, "currency": "EUR", "bank_account": bank}), 201,
                        what="payout %d" % i).json
            check(po["status"] == "processing", "payout %d waits for the bank: %r" % (i, po))
            ids.append(po["id"])
        answers = []
        thread = threading.Thread(target=slow_payment, args=(env, m, answers), daemon=True)
        thread.start()
        wait_for("the slow card payment's attempt persisted (its call in flight)",
                 lambda: any(p["pending_operation"] for p in all_payments(env.admin)))
        code = env.stop()
        check(code == 0, "SIGTERM while a card call is in flight exits 0, got %d" % code)
        thread.join(60)
        check(answers, "the slow payment got an answer or its connection closed")
        status, _ = env.card.call("POST", "/v1/admin/faults", {})
        check(status == 200, "card faults cleared: %d" % status)

        env.start()
        payouts = wait_for("every payout paid or returned after the restart", lambda: payouts_final(env, ids))
        by_status = sorted(p["status"] for p in payouts)
        check(by_status == ["paid"] * 4 + ["returned"] * 2, "payouts: %r" % by_status)
        paid = check_bank_record(env)
        check(paid == sum(p["amount"] for p in payouts if p["status"] == "paid"), "paid %d per the bank" % paid)
        transit = expect(env.admin.get("/v1/accounts/mer:mk:EUR:payouts"), 200, what="payouts in transit").json
        check(transit["debits_pending"] == 0 and transit["credits_pending"] == 0,
              "nothing left pending in transit: %r" % transit)
        check(transit["debits_posted"] == transit["credits_posted"] == paid,
              "payouts in transit empty, %d passed through: %r" % (paid, transit))
        a = expect(env.admin.get("/v1/accounts/mer:mk:EUR:available"), 200).json
        payments = [p for p in all_payments(env.admin) if p["amount_captured"] > 0]
        captured = sum(p["amount_captured"] for p in payments)
        fees = sum(p["fees"] for p in payments)
        check(a["debits_pending"] == 0, "no reserve left on the available balance: %r" % a)
        check(a["credits_posted"] - a["debits_posted"] == captured - fees - paid,
              "available %d != captured %d - fees %d - paid out %d" % (a["credits_posted"] - a["debits_posted"],
                                                                       captured, fees, paid))
        check(funding["id"] in [p["id"] for p in payments], "the funding payment is there")
        check_conserved(env.admin, "after the stop and restart")
        print("6 payouts final after a stop with callbacks in flight: ok (paid out %d)" % paid)
    finally:
        env.close()


if __name__ == "__main__":
    main()
