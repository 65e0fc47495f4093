"""Goal: never charged twice, never lost. paycore is killed with SIGKILL at random
moments while clients authorize, capture, refund and pay out against the real card and
bank simulators, then restarted, many times. Afterwards every payment is in a final or
resumable state with no operation left pending, the ledger agrees with each
simulator's own record (no charge without a booking, no booking without a charge,
nothing twice), every payment's amounts equal its ledger transfers, the merchant's
available balance equals captured - refunded - fees - payouts, the ledger balances per
currency and `paycore verify` passes.
Method: `make test` runs PAYCORE_PAY_CRASH_ROUNDS=4 kill cycles; `make
test-payments-crash` runs 60. Each kill lands after a random pause and after the
cycle's first flow has finished (however slow the machine: a cycle that only ever
kills half-done flows proves nothing about finished ones; none within
PROGRESS_TIMEOUT_S fails the test). The simulators answer with a little latency (so
calls are in flight when the kill lands); after the last kill the server restarts
and its recovery resolves what was left pending (status inquiries by the attempts'
keys, bank callbacks delivered again); the simulators' SQLite records are read
directly."""
import http.client
import os
import random
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paylib import BANK_OK, BANK_R01, BIN, TIMEOUT_S, Env, card_payment, check, check_payment_ledger, expect  # noqa
from paylib import all_pages, wait_for  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../api"))
from pcapi import START_TIMEOUT_S, check_conserved  # noqa: E402

# How long a cycle may go without one finished flow before the test fails: a flow is
# up to three requests, each through the gateway to a simulator, on a freshly
# (re)started server that may still be recovering, on a loaded sanitizer build.
PROGRESS_TIMEOUT_S = START_TIMEOUT_S

FINAL_OR_RESUMABLE = {"authorized", "partially_captured", "captured", "partially_refunded", "refunded", "canceled",
                      "declined", "failed", "expired", "requires_action", "in_review"}


class Load:
    """Client threads that run payment flows until the server goes away."""

    def __init__(self, port, key, seed):
        self.port, self.key, self.seed = port, key, seed
        self.stop = threading.Event()
        self.done = 0  # flows finished
        self.lock = threading.Lock()
        self.errors = []  # what ended a client before it was told to stop

    def request(self, conn, method, path, body=None):
        import json
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Authorization": "Bearer " + self.key,
                                                      "Content-Type": "application/json"})
        resp = conn.getresponse()
        text = resp.read()
        return resp.status, json.loads(text) if text else None

    def flow(self, conn, rng):
        amount = rng.randint(100, 20000)
        roll = rng.random()
        if roll < 0.1:
            bank = BANK_R01 if rng.random() < 0.3 else BANK_OK
            self.request(conn, "POST", "/v1/payouts", {"amount": rng.randint(1, 500), "currency": "EUR",
                                                       "bank_account": bank})
            return
        status, p = self.request(conn, "POST", "/v1/payments",
                                 card_payment(amount, capture="automatic" if roll < 0.5 else "manual"))
        if status not in (200, 201) or p.get("status") not in ("authorized", "captured"):
            return
        if p["status"] == "authorized":
            if rng.random() < 0.2:
                self.request(conn, "POST", "/v1/payments/%s/cancel" % p["id"])
                return
            status, p = self.request(conn, "POST", "/v1/payments/%s/capture" % p["id"], {})
            if status != 200:
                return
        if rng.random() < 0.4:
            self.request(conn, "POST", "/v1/payments/%s/refunds" % p["id"], {"amount": rng.randint(1, amount)})

    def run(self, index):
        rng = random.Random(self.seed * 100 + index)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT_S)
            while not self.stop.is_set():
                self.flow(conn, rng)
                with self.lock:
                    self.done += 1
        except (OSError, http.client.HTTPException, ValueError) as e:
            if not self.stop.is_set():
                with self.lock:
                    self.errors.append("client %d: %r" % (index, e))
            return  # the server was killed (or failed: wait_progress says so)

    def wait_progress(self, threads, flows, what):
        """Waits until 'flows' flows have finished; fails if every client ended
        first, or after PROGRESS_TIMEOUT_S."""
        deadline = time.time() + PROGRESS_TIMEOUT_S
        while self.done < flows:
            alive = any(t.is_alive() for t in threads)
            check(alive or self.done >= flows, "%s: every client ended after %d of %d flows: %s"
                  % (what, self.done, flows, "; ".join(self.errors[:4])))
            check(time.time() < deadline, "%s: %d of %d flows finished in %d s (errors: %s)"
                  % (what, self.done, flows, PROGRESS_TIMEOUT_S, "; ".join(self.errors[:4]) or "none"))
            time.sleep(0.02)


def all_payments(admin):
    return all_pages(admin, "/v1/payments")


def settled(env):
    """Recovery has resolved everything: no payment waits, no payout is in flight."""
    expect(env.admin.post("/v1/admin/payments/recover", {}), 200, what="recovery pass")
    payments = all_payments(env.admin)
    waiting = [p["id"] for p in payments if p["pending_operation"] or p["status"] == "created"]
    payouts = [r[0] for r in env.bank.rows("SELECT merchant_ref FROM records WHERE kind = 'transfer'")]
    open_payouts = [po for po in payouts if env.admin.get("/v1/payouts/" + po).json.get("status") == "processing"]
    return None if waiting or open_payouts else payments


def check_card_record(env, payments):
    by_id = {p["id"]: p for p in payments}
    rows = env.card.rows("SELECT r.merchant_ref, a.status, a.amount, a.captured_total, a.refunded_total"
                         " FROM records r JOIN authorizations a ON a.id = r.id WHERE r.kind = 'authorization'")
    charged = {}
    for ref, status, amount, captured, refunded in rows:
        if status not in ("approved", "voided"):
            continue
        check(ref not in charged, "payment %s was authorized twice at the channel" % ref)
        charged[ref] = (status, amount, captured, refunded)
        p = by_id.get(ref)
        check(p is not None, "charge without a booking: the channel approved %s, paycore has no such payment" % ref)
        check(p["amount_captured"] == captured, "%s: the channel captured %d, the ledger %d" % (ref, captured,
                                                                                             p["amount_captured"]))
        check(p["amount_refunded"] == refunded, "%s: the channel refunded %d, the ledger %d" % (ref, refunded,
                                                                                             p["amount_refunded"]))
        if status == "voided":
            check(p["status"] == "canceled", "%s: voided at the channel, %s in paycore" % (ref, p["status"]))
        elif captured == 0:
            check(p["status"] in ("authorized", "expired"), "%s: held at the channel, %s in paycore" % (ref, p["status"]))
    for p in payments:
        if p["amount_authorized"] > 0:
            check(p["id"] in charged, "booking without a charge: %s is %s, the channel approved nothing"
                  % (p["id"], p["status"]))
        else:
            check(p["id"] not in charged, "%s: the channel approved it, paycore says %s" % (p["id"], p["status"]))
    return len(charged)


def check_bank_record(env):
    rows = env.bank.rows("SELECT r.merchant_ref, t.status, r.amount FROM records r JOIN transfers t ON t.id = r.id"
                         " WHERE r.kind = 'transfer'")
    seen, paid = set(), 0
    for ref, status, amount in rows:
        check(ref not in seen, "payout %s sent to the bank twice" % ref)
        seen.add(ref)
        po = expect(env.admin.get("/v1/payouts/" + ref), 200, what="payout the bank knows").json
        want = {"settled": "paid", "returned": "returned"}.get(status)
        check(po["status"] == want, "payout %s: the bank says %s, paycore %s" % (ref, status, po["status"]))
        check(po["amount"] == amount, "payout %s amount" % ref)
        if want == "paid":
            paid += amount
    return paid


def check_books(env, payments, merchant_id, what):
    """The card and bank simulators' records agree with the payments; the ledger balances;
    the merchant's available balance is captured - refunded - fees - payouts. Returns
    the payments charged and the amount paid out."""
    charged = check_card_record(env, payments)
    paid_out = check_bank_record(env)
    check_conserved(env.admin, what)
    captured = sum(p["amount_captured"] for p in payments)
    refunded = sum(p["amount_refunded"] for p in payments)
    fees = sum(p["fees"] - p["fees_reversed"] for p in payments)
    a = expect(env.admin.get("/v1/accounts/mer:%s:EUR:available" % merchant_id), 200).json
    available = a["credits_posted"] - a["debits_posted"] - a["debits_pending"]
    check(a["debits_pending"] == 0, "%s: no reserve left pending: %r" % (what, a))
    check(available == captured - refunded - fees - paid_out,
          "%s: available %d != captured %d - refunded %d - fees %d - payouts %d"
          % (what, available, captured, refunded, fees, paid_out))
    return charged, paid_out


def check_verify(env):
    """`paycore verify` on the stopped server's store passes."""
    out = subprocess.run([BIN, "verify"] + env.server.store_location_args(), capture_output=True, text=True,
                         timeout=TIMEOUT_S * 3)
    check(out.returncode == 0, "paycore verify: %s %s" % (out.stdout[-500:], out.stderr[-500:]))


def load_cycles(env, key, rounds, seed, thread_count, pause_s, stop):
    """'rounds' times: (re)start, load from 'thread_count' clients, wait pause_s() seconds
    and for the cycle's first finished flow (a slow machine stretches the cycle rather
    than stopping before anything finished), stop(env, cycle) while they run. The flows
    they completed: at least one a cycle."""
    flows = 0
    for cycle in range(rounds):
        if cycle > 0:
            env.start()
        load = Load(env.port, key, seed + cycle)
        threads = [threading.Thread(target=load.run, args=(i,), daemon=True) for i in range(thread_count)]
        for t in threads:
            t.start()
        time.sleep(pause_s())
        load.wait_progress(threads, 1, "cycle %d before its stop" % cycle)
        stop(env, cycle)
        load.stop.set()
        for t in threads:
            t.join(TIMEOUT_S)
        flows += load.done
    return flows


def kill(env, cycle):
    env.server.proc.kill()
    env.server.proc.wait(timeout=TIMEOUT_S)
    env.server.proc = None


def main():
    rounds = int(os.environ.get("PAYCORE_PAY_CRASH_ROUNDS", "4"))
    seed = int(os.environ.get("PAYCORE_SEED", str(int(time.time()))))
    print("seed %d, %d kill cycles" % (seed, rounds))
    rng = random.Random(seed)
    faults = {"latency_p50_ms": 3, "latency_p99_ms": 40, "latency_max_ms": 200}
    env = Env(card_config={"seed": seed % 1000 + 1, "faults": faults}, inquiry_delay_ms=300)
    try:
        env.start()
        m = env.merchant("mk")
        flows = load_cycles(env, m.key, rounds, seed, 4, lambda: rng.uniform(0.3, 1.5), kill)
        env.start()
        payments = wait_for("recovery resolved every pending operation", lambda: settled(env))
        for p in payments:
            check(p["status"] in FINAL_OR_RESUMABLE, "%s is %s" % (p["id"], p["status"]))
            check_payment_ledger(env.admin, p, p["id"])
        charged, paid_out = check_books(env, payments, "mk", "after the kills")
        check(charged > 0 and flows >= rounds, "the load ran: %d flows, %d charges" % (flows, charged))
        env.stop()
        check_verify(env)
        print("%d cycles, %d flows, %d payments, %d charged, %d paid out: ok" % (rounds, flows, len(payments), charged,
                                                                            paid_out))
    finally:
        env.close()


if __name__ == "__main__":
    main()
