"""Goal: over HTTP, every request a payment's state does not allow is refused with 409
payment_state_conflict naming the current state and changes nothing, for every state a
payment can rest in and every request (confirm, capture, cancel, refund); and every
request the table allows is not refused as a conflict. GET /v1/payments filters by
status, creation time (from/to) and merchant, pages, and refuses a bad filter.
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


def list_filters(env, m, payments):
    """GET /v1/payments filters by status and creation time, pages, and refuses a bad
    filter with query_invalid."""
    for state, pid in payments.items():
        got = expect(m.get("/v1/payments?limit=100&status=" + state), 200).json["data"]
        check(pid in [p["id"] for p in got] and all(p["status"] == state for p in got),
              "status=%s lists only %s payments: %r" % (state, state, [p["status"] for p in got]))
    every = expect(m.get("/v1/payments?limit=100&order=asc"), 200).json["data"]
    created = [p["created"] for p in every]
    check(created == sorted(created), "ascending by creation")
    middle = created[len(created) // 2]
    window = expect(m.get("/v1/payments?limit=100&from=%d&to=%d" % (middle, created[-1])), 200).json["data"]
    check(window and all(middle <= p["created"] <= created[-1] for p in window), "from/to window")
    check(len(window) < len(every), "the window leaves out the earlier payments")
    page = expect(m.get("/v1/payments?limit=2&order=asc"), 200).json
    rest = expect(m.get("/v1/payments?limit=100&order=asc&starting_after=" + page["data"][-1]["id"]), 200).json
    check(page["has_more"] and [p["id"] for p in page["data"] + rest["data"]] == [p["id"] for p in every], "paging")
    mine = expect(m.get("/v1/payments?limit=100&merchant_id=m1"), 200).json["data"]
    check(len(mine) == len(every), "merchant_id filter: its own")
    for query, field in (("status=paid", "status"), ("from=yesterday", "from"), ("order=up", "order")):
        expect(m.get("/v1/payments?" + query), 400, "query_invalid", query)


def main():
    allowed = allowed_pairs()
    env = Env()
    refused = accepted = 0
    try:
        env.start()
        m = env.merchant("m1")
        payments = resting_payments(env, m)
        list_filters(env, m, payments)
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
