"""Goal: a channel's answer that arrives while every stage thread sleeps is applied on
the gateway's own thread (its booking rendered and queued from there, no stage thread
woken for it), and such payments end exactly as the others: authorized, then captured,
each answer final and the ledger agreeing with the payment. Method: a real server and
simulators; payments one after another (so nothing else keeps a stage thread awake when
an answer comes), the card simulator answering after a fixed ANSWER_LATENCY_MS (time
for the stage thread that sent the call to fall asleep), until PAYMENTS answers were
carried (/metrics' paycore_payments_stage_carried_total): PAYMENTS payments at least,
PAYMENTS_MAX at most. On a loaded machine a stage thread preempted before its sleep
sees some answers itself, which a fixed count of payments took for a failure; none
ever carried still fails the test. Then each payment's ledger transfers."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paylib import Env, card_payment, check, check_payment_ledgers, expect  # noqa: E402

PAYMENTS = 10
PAYMENTS_MAX = 6 * PAYMENTS
ANSWER_LATENCY_MS = 20


def carried(env):
    r = expect(env.client("").get("/metrics"), 200, what="metrics")
    for line in r.raw.splitlines():
        if line.startswith("paycore_payments_stage_carried_total "):
            return float(line.split(" ")[1])
    return None


def main():
    latency = {"latency_p50_ms": ANSWER_LATENCY_MS, "latency_p99_ms": ANSWER_LATENCY_MS,
               "latency_max_ms": ANSWER_LATENCY_MS}
    env = Env(card_config={"seed": 7, "faults": latency})
    try:
        env.start()
        m = env.merchant("m1")
        ids = []
        count = None
        for i in range(PAYMENTS_MAX):
            p = expect(m.post("/v1/payments", card_payment(1000 + i, payer="P%d" % i),
                              headers={"Idempotency-Key": "carried-a-%d" % i}), 201, what="authorize").json
            check(p["status"] == "authorized", "authorized: %r" % p)
            c = expect(m.post("/v1/payments/%s/capture" % p["id"], {},
                              headers={"Idempotency-Key": "carried-c-%d" % i}), 200, what="capture").json
            check(c["status"] == "captured" and c["amount_captured"] == 1000 + i, "captured: %r" % c)
            ids.append(p["id"])
            count = carried(env)
            if len(ids) >= PAYMENTS and (count is None or count >= PAYMENTS):
                break
        # two answers a payment; each finds both stage threads asleep but for a
        # preemption of one between its last answer and its sleep
        check(count is not None and count >= PAYMENTS, "answers applied on the gateway's thread: %r of %d payments"
              % (count, len(ids)))
        check_payment_ledgers(env.admin, ids)
        env.stop()
    finally:
        env.close()
    print("%d answers of %d payments carried on the gateway's thread: ok" % (count, len(ids)))


if __name__ == "__main__":
    main()
