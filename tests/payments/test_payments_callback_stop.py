"""Goal: a bank callback that a stop overtakes (the callback was taken by the payments
listener, then SIGTERM began before its operation could start) is answered 503
`shutting_down`, the code of a stopping server, so the bank delivers it again; not
503 `limit_reached`, which says the server is full. Once restarted, the next delivery
settles the payout and the ledger agrees.
Method: real paycore and bank simulator; the bank's callbacks pass through a proxy in
the test (test_payments_bank_inquiry.py) that first refuses them, so the payout waits
`processing`. paycore runs with PAYCORE_TEST_BANK_CALLBACK_HOLD_MS, which holds a
bank callback after its lookup: the proxy lets one through, and once paycore's log says
it holds it, SIGTERM is sent. The answer the proxy got for it is checked, then paycore
is restarted without the hold and the payout is polled until paid (generous deadline,
no timing asserted)."""
import json
import os
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paylib import BANK_OK, card_payment, check, expect, wait_for  # noqa: E402
from test_payments_bank_inquiry import CallbackProxy, ProxiedEnv  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../api"))
from pcapi import check_conserved  # noqa: E402

HOLD_MS = 3000
HOLD_LOG = "test hold of the bank callback"


def main():
    proxy = CallbackProxy()
    env = ProxiedEnv(proxy, bank_config={"settle_delay_ms": 100, "callback_retry_base_ms": 50,
                                         "callback_retry_max_ms": 200})
    try:
        os.environ["PAYCORE_TEST_BANK_CALLBACK_HOLD_MS"] = str(HOLD_MS)
        env.start()
        m = env.merchant("mk")
        funding = expect(m.post("/v1/payments", card_payment(50000, capture="automatic")), 201, what="funding").json
        check(funding["status"] == "captured", "funding captured: %r" % funding)
        po = expect(m.post("/v1/payouts", {"amount": 1500, "currency": "EUR", "bank_account": BANK_OK}), 201,
                    what="payout").json
        check(po["status"] == "processing", "payout waits for the bank: %r" % po)
        wait_for("the bank's callback refused once", lambda: proxy.refused >= 1)
        with proxy.lock:
            proxy.dropping = False
        wait_for("paycore holding the bank's callback", lambda: HOLD_LOG in env.server.log())
        stopper = threading.Thread(target=lambda: env.stop(signal.SIGTERM), daemon=True)
        stopper.start()
        wait_for("the held callback answered", lambda: len(proxy.answers) >= 1)
        stopper.join(60)
        with proxy.lock:
            status, body = proxy.answers[0]
            proxy.dropping = True  # nothing more reaches the stopped server meanwhile
        code = (json.loads(body or b"{}").get("error") or {}).get("code")
        check(status == 503 and code == "shutting_down",
              "a callback overtaken by a stop: 503 shutting_down (delivered again), got %d %r" % (status, body))
        del os.environ["PAYCORE_TEST_BANK_CALLBACK_HOLD_MS"]
        env.start()
        with proxy.lock:
            proxy.dropping = False
        paid = wait_for("the payout paid by the callback delivered again",
                        lambda: (lambda p: p if p.get("status") == "paid" else None)(
                            env.admin.get("/v1/payouts/" + po["id"]).json))
        check(paid["amount"] == 1500, "payout: %r" % paid)
        transit = expect(env.admin.get("/v1/accounts/mer:mk:EUR:payouts"), 200).json
        check(transit["debits_pending"] == transit["credits_pending"] == 0 and
              transit["debits_posted"] == transit["credits_posted"] == 1500, "in transit: %r" % transit)
        check_conserved(env.admin, "after the restart")
        print("a bank callback overtaken by a stop: 503 shutting_down, settled after the restart: ok")
    finally:
        os.environ.pop("PAYCORE_TEST_BANK_CALLBACK_HOLD_MS", None)
        env.close()
        proxy.close()


if __name__ == "__main__":
    main()
