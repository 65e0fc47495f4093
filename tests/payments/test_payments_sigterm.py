"""Goal: a clean stop under payment load exits 0 and loses nothing. SIGTERM lands while
clients authorize, capture, refund and pay out against the real card and bank
simulators (calls in flight at the gateway, commands queued for the stage threads and
the writer, a background data-key rotation running in some cycles); every stop must
exit 0 (an abort in the stop order shows as a signal, and the server's last log lines
are printed). Afterwards every payment is in a final or resumable state, recovery
leaves no payment pending, every card still opens after the rotations, the ledger
balances per currency, the card simulator's record agrees with the payments (nothing
charged twice, no charge without a booking, no booking without a charge), the
merchant's available balance is captured - refunded - fees - payouts, and `paycore
verify` passes. Every payout reaches its final state (a bank callback refused
during a stop is delivered again), agrees with the bank's record, and nothing is left
in the payouts-in-transit account.
Method: PAYCORE_PAY_SIGTERM_ROUNDS cycles (default 4), each: start, load from 8
client threads, wait a random 0.2-1.2 s, maybe start a background rotation, SIGTERM."""
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paylib import Env, check, check_payment_ledger, expect, wait_for  # noqa: E402
from test_payments_crash import FINAL_OR_RESUMABLE, check_books, check_verify, load_cycles, settled  # noqa: E402


def main():
    rounds = int(os.environ.get("PAYCORE_PAY_SIGTERM_ROUNDS", "4"))
    seed = int(os.environ.get("PAYCORE_SEED", str(int(time.time()))))
    print("seed %d, %d stop cycles" % (seed, rounds))
    rng = random.Random(seed)
    faults = {"latency_p50_ms": 2, "latency_p99_ms": 30, "latency_max_ms": 100}
    env = Env(card_config={"seed": seed % 1000 + 1, "faults": faults}, inquiry_delay_ms=300)
    try:
        env.start()
        m = env.merchant("mk")

        def sigterm(env, cycle):
            if cycle % 2 == 1:
                expect(env.admin.post("/v1/admin/vault/rotate", {"data_key": True, "background": True}), 202,
                       what="background rotation")
            code = env.stop()
            check(code == 0, "cycle %d: SIGTERM under payment load exits 0, got %d" % (cycle, code))

        flows = load_cycles(env, m.key, rounds, seed, 8, lambda: rng.uniform(0.2, 1.2), sigterm)
        env.start()
        payments = wait_for("recovery resolved every pending operation, every payout final", lambda: settled(env))
        for p in payments:
            check(p["status"] in FINAL_OR_RESUMABLE, "%s is %s" % (p["id"], p["status"]))
            check_payment_ledger(env.admin, p, p["id"])
        charged, paid = check_books(env, payments, "mk", "after the stops")
        r = env.admin.get("/v1/accounts/mer:mk:EUR:payouts")
        check(r.status == 200 or (r.status == 404 and paid == 0), "payouts in transit: %r" % r)
        transit = r.json if r.status == 200 else {}
        check(transit.get("debits_pending", 0) == 0 and transit.get("credits_pending", 0) == 0 and
              transit.get("debits_posted", 0) == transit.get("credits_posted", 0) == paid,
              "payouts in transit empty, %d paid out: %r" % (paid, transit))
        # every card still opens: a refund of a captured card payment goes to its channel
        captured = [p for p in payments if p["status"] == "captured" and p["amount_captured"] > 1]
        if captured:
            r = env.client(m.key).post("/v1/payments/%s/refunds" % captured[0]["id"], {"amount": 1})
            check(r.status in (201, 202), "a refund after the rotations: %r" % r)
        check(flows > 0 and payments and charged > 0, "the load ran: %d flows, %d payments, %d charged"
              % (flows, len(payments), charged))
        check(env.stop() == 0, "the last stop exits 0")
        check_verify(env)
        print("%d stop cycles, %d flows, %d payments, %d charged: ok" % (rounds, flows, len(payments), charged))
    finally:
        env.close()


if __name__ == "__main__":
    main()
