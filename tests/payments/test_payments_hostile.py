"""Goal: hostile tenants and racing requests change nothing they should not. (1) An
Idempotency-Key belongs to the API key that sent it: two merchants using the same key
(one after the other, and both at once) each get their own payment and each replay
answers the sender's own; one key sent with two bodies at once makes one payment; one merchant's key sent with another merchant's payment id
(capture, cancel, refund) reads as a missing payment and leaves it untouched. (2) An
operation racing another on the same payment does at most what the state table and
the amounts allow: capture against cancel (one wins, the payment is captured or
canceled, never both), two partial captures whose sum passes the authorized amount,
two refunds whose sum passes the captured amount, a refund against a cancel of a
captured payment; every refusal is 409 payment_operation_in_progress /
payment_state_conflict or the amount's own 400 code. Afterwards every payment agrees
with its ledger transfers and with the card simulator's own record (nothing charged
twice, no charge without a booking), the ledger balances per currency and verify
passes.
Method: a real server and simulators; the racing requests are released together by a
barrier, ROUNDS times each (the simulator answers with a little latency so that the
first call is still at the channel when the second arrives)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paylib import Env, card_payment, check, check_payment_ledger, expect  # noqa: E402
from test_payments_concurrent import at_once  # noqa: E402
from test_payments_crash import all_payments, check_card_record  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../api"))
from pcapi import Client, check_conserved  # noqa: E402

ROUNDS = 6
BUSY = ("payment_operation_in_progress", "payment_state_conflict")


def twin(client):
    """Another connection with the client's key: a connection serves one thread."""
    return Client(client.port, client.key)


def keyed(client, path, body, key):
    return client.post(path, body, headers={"Idempotency-Key": key})


def payment(client, pid):
    return expect(client.get("/v1/payments/" + pid), 200, what="payment " + pid).json


def shared_keys(a, b):
    """One Idempotency-Key, two merchants: two payments, each replay its sender's."""
    first_a = expect(keyed(a, "/v1/payments", card_payment(700), "shared-1"), 201, what="A under shared-1")
    first_b = expect(keyed(b, "/v1/payments", card_payment(900), "shared-1"), 201, what="B under shared-1")
    check(first_a.json["id"] != first_b.json["id"] and first_b.json["merchant_id"] == "mb" and
          first_b.json["amount"] == 900, "B's key made B's own payment: %r" % first_b.json)
    again_a = expect(keyed(a, "/v1/payments", card_payment(700), "shared-1"), 201, what="A replayed")
    again_b = expect(keyed(b, "/v1/payments", card_payment(900), "shared-1"), 201, what="B replayed")
    check(again_a.raw == first_a.raw and again_b.raw == first_b.raw, "each replay answers its sender's own reply")
    # A's key on B's payment: missing, as a payment that never existed
    theirs = first_b.json["id"]
    missing = "pay_000000000000000000000000"
    for n, (path, body) in enumerate((("/v1/payments/%s/capture", {"amount": 100}), ("/v1/payments/%s/cancel", None),
                                      ("/v1/payments/%s/refunds", {"amount": 1}))):
        foreign = keyed(a, path % theirs, body, "foreign-%d" % n)
        absent = keyed(a, path % missing, body, "absent-%d" % n)
        check(foreign.status == 404 and foreign.code() == absent.code() == "payment_not_found",
              "%s of B's payment with A's key: %r (a missing one: %r)" % (path, foreign, absent))
    check(payment(b, theirs)["status"] == "authorized" and payment(b, theirs)["amount_captured"] == 0,
          "B's payment untouched")
    # both at once, ROUNDS keys
    for r in range(ROUNDS):
        key = "race-%d" % r
        answers = at_once(2, lambda i: keyed(twin((a, b)[i]), "/v1/payments", card_payment(300 + i), key))
        for i, resp in enumerate(answers):
            expect(resp, 201, what="%s under %s" % ("ab"[i], key))
            check(resp.json["merchant_id"] == ("ma", "mb")[i] and resp.json["amount"] == 300 + i,
                  "%s: each sender's own payment: %r" % (key, resp.json))
        check(answers[0].json["id"] != answers[1].json["id"], "%s: two payments" % key)
    # one key, one merchant, two bodies at once: one payment, the other refused
    for r in range(ROUNDS):
        key = "bodies-%d" % r
        answers = at_once(2, lambda i: keyed(twin(a), "/v1/payments", card_payment(400 + i), key))
        made = [x for x in answers if x.status == 201]
        check(len(made) == 1, "%s: one of two bodies made a payment: %r" % (key, answers))
        other = answers[1] if answers[0].status == 201 else answers[0]
        check(other.status == 409 and other.code() in ("idempotency_key_reused", "idempotency_key_in_progress"),
              "%s: the other body refused: %r" % (key, other))
    for client, merchant, count in ((a, "ma", 1 + 2 * ROUNDS), (b, "mb", 1 + ROUNDS)):
        listed = expect(client.get("/v1/payments?limit=100"), 200).json["data"]
        check(len(listed) == count and all(p["merchant_id"] == merchant for p in listed),
              "%s made one payment per key: %d, want %d" % (merchant, len(listed), count))


def race(m, amount, capture, first, second, what):
    """A payment, then 'first' and 'second' (path, body) at once: their answers and the
    payment as it ends."""
    p = expect(m.post("/v1/payments", card_payment(amount, capture=capture)), 201, what=what).json
    answers = at_once(2, lambda i: twin(m).post((first, second)[i][0] % p["id"], (first, second)[i][1]))
    return answers, payment(m, p["id"])


def refused(resp, codes, what):
    check(resp.status in (400, 409) and resp.code() in codes, "%s: refused with one of %s: %r" % (what, codes, resp))


def capture_or_cancel(m):
    for r in range(ROUNDS):
        (cap, can), p = race(m, 1000, "manual", ("/v1/payments/%s/capture", {}), ("/v1/payments/%s/cancel", None),
                             "capture/cancel %d" % r)
        check((cap.status == 200) != (can.status == 200), "round %d: exactly one of capture %r, cancel %r" %
              (r, cap, can))
        if cap.status == 200:
            refused(can, BUSY, "the cancel after the capture")
            check(p["status"] == "captured" and p["amount_captured"] == 1000, "captured: %r" % p)
        else:
            refused(cap, BUSY, "the capture after the cancel")
            check(p["status"] == "canceled" and p["amount_captured"] == 0, "canceled: %r" % p)


def two_past_amount(m, capture, route, made_status, too_much, field, status):
    """Two requests of 600 out of 1000 at once on 'route': one does it, the other is
    refused; the payment's 'field' is 600, its status 'status'."""
    for r in range(ROUNDS):
        (one, two), p = race(m, 1000, capture, (route, {"amount": 600}), (route, {"amount": 600}),
                             "%s %d" % (route, r))
        ok = [x for x in (one, two) if x.status == made_status]
        check(len(ok) == 1, "round %d: one %s of 600 out of 1000: %r %r" % (r, route, one, two))
        refused(two if one.status == made_status else one, BUSY + (too_much,), "the second " + route)
        check(p[field] == 600 and p["status"] == status, "%s 600 once: %r" % (route, p))


def refund_or_cancel(m):
    for r in range(ROUNDS):
        (ref, can), p = race(m, 1000, "automatic", ("/v1/payments/%s/refunds", {"amount": 1000}),
                             ("/v1/payments/%s/cancel", None), "refund/cancel %d" % r)
        refused(can, BUSY, "a cancel of a captured payment")
        check(ref.status in (201, 409), "the refund: %r" % ref)
        if ref.status == 201:
            check(p["status"] == "refunded" and p["amount_refunded"] == 1000, "refunded: %r" % p)
        else:
            refused(ref, BUSY, "the refund while the cancel looked")
            check(p["status"] == "captured" and p["amount_refunded"] == 0, "untouched: %r" % p)


def main():
    faults = {"latency_p50_ms": 5, "latency_p99_ms": 30, "latency_max_ms": 60}
    env = Env(card_config={"seed": 11, "faults": faults})
    try:
        env.start()
        a = env.merchant("ma")
        b = env.merchant("mb")
        shared_keys(a, b)
        capture_or_cancel(a)
        two_past_amount(a, "manual", "/v1/payments/%s/capture", 200, "capture_exceeds_authorized", "amount_captured",
                        "partially_captured")
        two_past_amount(b, "automatic", "/v1/payments/%s/refunds", 201, "refund_exceeds_captured", "amount_refunded",
                        "partially_refunded")
        refund_or_cancel(b)
        payments = all_payments(env.admin)
        for p in payments:
            check_payment_ledger(env.admin, p, p["id"])
        charged = check_card_record(env, payments)
        check_conserved(env.admin, "after the races")
        v = expect(env.admin.post("/v1/verify", None), 200, what="verify").json
        check(v.get("ok") is True, "verify: %r" % v)
        env.stop()
        print("payments hostile: shared keys, foreign ids and %d rounds of each race: ok (%d payments, %d charged)"
              % (ROUNDS, len(payments), charged))
    finally:
        env.close()


if __name__ == "__main__":
    main()
