"""Goal: over HTTP, every request a payment's state does not allow is refused with 409
payment_state_conflict naming the current state and changes nothing, for every state a
payment can rest in and every request (confirm, capture, cancel, refund); and every
request the table allows is not refused as a conflict.
Method: the allowed pairs come from the one state table in the code (`paycore docs
payment-states`: a request maps to its event: confirm, capture, cancel, refund); a real
server and simulators put one payment in each resting state; each request is sent to
each; after a refusal the payment (status, version, amounts) and the ledger are as
before."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paylib import (BIN, CARD, CARD_3DS, CARD_DECLINE, Env, card_payment, check, expect,  # noqa: E402
                    wait_status)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../api"))
from pcapi import check_conserved  # noqa: E402

REQUESTS = {"confirm": ("confirm", {"code": "123456"}), "capture": ("capture", {"amount": 1}),
            "cancel": ("cancel", None), "refund": ("refunds", {"amount": 1})}


def allowed_pairs():
    out = subprocess.run([BIN, "docs", "payment-states"], capture_output=True, text=True, check=True).stdout
    pairs = set()
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[1] in REQUESTS:
            pairs.add((cells[0], cells[1]))
    check(len(pairs) >= 8, "the state table lists the requests' transitions: %r" % pairs)
    return pairs


def resting_payments(env, m):
    """One payment id per state a payment can rest in (expired: test_payments_flows)."""
    def pay(body):
        return expect(m.post("/v1/payments", body), 201, what="payment").json

    def post(pid, path, body, status=200):
        return expect(m.post("/v1/payments/%s/%s" % (pid, path), body), status, what=path).json

    out = {}
    out["requires_action"] = pay(card_payment(500, number=CARD_3DS))["id"]
    out["in_review"] = pay(card_payment(500, payer="P_REVIEW"))["id"]
    out["authorized"] = pay(card_payment(500))["id"]
    p = pay(card_payment(500))["id"]
    post(p, "capture", {"amount": 100})
    out["partially_captured"] = p
    out["captured"] = pay(card_payment(500, capture="automatic"))["id"]
    p = pay(card_payment(500, capture="automatic"))["id"]
    post(p, "refunds", {"amount": 100}, 201)
    out["partially_refunded"] = p
    p = pay(card_payment(500, capture="automatic"))["id"]
    post(p, "refunds", {}, 201)
    out["refunded"] = p
    p = pay(card_payment(500))["id"]
    post(p, "cancel", None)
    out["canceled"] = p
    out["declined"] = pay(card_payment(500, number=CARD_DECLINE))["id"]
    for state, pid in out.items():
        wait_status(m, pid, [state], "resting")
    return out


def view(m, pid):
    p = expect(m.get("/v1/payments/" + pid), 200).json
    return (p["status"], p["version"], p["amount_authorized"], p["amount_captured"], p["amount_refunded"],
            len(p["ledger_transfers"]))


def main():
    allowed = allowed_pairs()
    env = Env()
    refused = accepted = 0
    try:
        env.start()
        m = env.merchant("m1")
        payments = resting_payments(env, m)
        for state, pid in sorted(payments.items()):
            for event, (path, body) in sorted(REQUESTS.items()):
                if (state, event) in allowed:
                    continue
                before = view(m, pid)
                r = expect(m.post("/v1/payments/%s/%s" % (pid, path), body), 409, "payment_state_conflict",
                           "%s on %s" % (event, state))
                check(r.json["error"]["payment_status"] == state, "%s on %s: current state named: %r"
                      % (event, state, r.json))
                check(view(m, pid) == before, "%s on %s changed the payment" % (event, state))
                refused += 1
        # what the table allows is not a conflict (each on a fresh payment in that state)
        fresh = resting_payments(env, m)
        for state, event in sorted(allowed):
            if state not in fresh:
                continue
            path, body = REQUESTS[event]
            r = m.post("/v1/payments/%s/%s" % (fresh[state], path), body)
            check(r.status in (200, 201, 202), "%s on %s is allowed by the table: %r" % (event, state, r))
            accepted += 1
            fresh.pop(state)
        check(refused >= 25 and accepted >= 5, "refused %d, accepted %d" % (refused, accepted))
        check_conserved(env.admin, "matrix")
    finally:
        env.close()
    print("payments transitions matrix: ok (%d refused, %d allowed)" % (refused, accepted))


if __name__ == "__main__":
    main()
