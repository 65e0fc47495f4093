"""Goal: a channel's answer that arrives while every stage thread sleeps is applied on
the gateway's own thread (its booking rendered and queued from there, no stage thread
woken for it), and such payments end exactly as the others: authorized, then captured,
each answer final and the ledger agreeing with the payment. Method: a real server and
simulators; payments one after another (so nothing else keeps a stage thread awake when
an answer comes), then /metrics' paycore_payments_stage_carried_total and each
payment's ledger transfers."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paylib import Env, card_payment, check, check_payment_ledgers, expect  # noqa: E402

PAYMENTS = 10


def carried(env):
    r = expect(env.client("").get("/metrics"), 200, what="metrics")
    for line in r.raw.splitlines():
        if line.startswith("paycore_payments_stage_carried_total "):
            return float(line.split(" ")[1])
    return None


def main():
    env = Env()
    try:
        env.start()
        m = env.merchant("m1")
        ids = []
        for i in range(PAYMENTS):
            p = expect(m.post("/v1/payments", card_payment(1000 + i, payer="P%d" % i),
                              headers={"Idempotency-Key": "carried-a-%d" % i}), 201, what="authorize").json
            check(p["status"] == "authorized", "authorized: %r" % p)
            c = expect(m.post("/v1/payments/%s/capture" % p["id"], {},
                              headers={"Idempotency-Key": "carried-c-%d" % i}), 200, what="capture").json
            check(c["status"] == "captured" and c["amount_captured"] == 1000 + i, "captured: %r" % c)
            ids.append(p["id"])
        count = carried(env)
        # two answers a payment; each found both stage threads asleep but for a rare
        # preemption of one between its last answer and its sleep
        check(count is not None and count >= PAYMENTS, "answers applied on the gateway's thread: %r" % count)
        check_payment_ledgers(env.admin, ids)
        env.stop()
    finally:
        env.close()
    print("payments carried on the gateway's thread: ok")


if __name__ == "__main__":
    main()
