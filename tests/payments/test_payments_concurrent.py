"""Goal: payments stay exact when many run at once. A command's texts are rendered off the
gateway and writer threads (by stage threads, in whatever order they get to it): one
merchant's many concurrent payments, many concurrent operations on one payment id, and
one Idempotency-Key sent many times at once must still each do their effect exactly once,
answer every replay byte for byte as first answered, and agree with the ledger.
(Sanitizer builds also render every staged text again on the writer and assert it is
the same.)
Method: a real server and simulators. (1) 16 threads, each with its own connection,
run 4 payments of one merchant each: authorize, partial capture, final capture, partial
refund, every POST with its Idempotency-Key; then every POST is sent again, and its
answer must equal the first byte for byte; every payment agrees with its ledger
transfers and the merchant's available balance with the payments. (2) One payment:
rounds of 12 captures of 100 sent at once with distinct keys: each answer is 200 or
409 payment_operation_in_progress, the captured amount is exactly the sum of the 200s
(and the ledger's), and their replays (sent at once too) are byte for byte the first
answers. (3) One capture key sent by 12 threads at once: it captures once."""
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paylib import Env, card_payment, check, check_payment_ledger, expect  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../api"))
from pcapi import check_conserved  # noqa: E402

THREADS = 16
PAYMENTS_PER_THREAD = 4
BURST = 12


def at_once(count, work):
    """Runs work(i) on 'count' threads released together; returns their results in order."""
    barrier = threading.Barrier(count)
    results, errors = [None] * count, []

    def run(i):
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as e:  # noqa: B902 (SystemExit from check)
            errors.append("thread %d: %r" % (i, e))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(not errors, "threads failed: %r" % errors)
    return results


def one_payment_flow(env, key, thread, index, sent):
    """Authorize, capture in two parts, refund part; every POST recorded with its answer."""
    m = env.client(key)
    amount = 1000 + 37 * thread + index

    def post(path, body, idem, status):
        resp = expect(m.post(path, body, headers={"Idempotency-Key": idem}), status, what="%s %s" % (path, idem))
        sent.append((path, body, idem, resp.status, resp.raw))
        return resp.json

    tag = "c%d-%d" % (thread, index)
    p = post("/v1/payments", card_payment(amount, payer="P%d" % thread, metadata={"tag": tag}), tag + "-a", 201)
    check(p["status"] == "authorized", "%s authorized: %r" % (tag, p))
    pid = p["id"]
    post("/v1/payments/%s/capture" % pid, {"amount": amount // 2, "final": False}, tag + "-c1", 200)
    p = post("/v1/payments/%s/capture" % pid, {"amount": amount - amount // 2}, tag + "-c2", 200)
    check(p["status"] == "captured" and p["amount_captured"] == amount, "%s captured: %r" % (tag, p))
    post("/v1/payments/%s/refunds" % pid, {"amount": amount // 3}, tag + "-r", 201)
    m.close()
    return pid


def replay_all(env, key, sent):
    m = env.client(key)
    for path, body, idem, status, raw in sent:
        again = m.post(path, body, headers={"Idempotency-Key": idem})
        check(again.status == status and again.raw == raw,
              "replay of %s %s: want %d %r, got %r" % (path, idem, status, raw[:200], again))
    m.close()


def merchant_books(env, key, payment_ids):
    m = env.client(key)
    captured = refunded = fees = 0
    for pid in payment_ids:
        p = expect(m.get("/v1/payments/" + pid), 200).json
        check(not p.get("pending_operation"), "%s: nothing pending: %r" % (pid, p))
        check_payment_ledger(env.admin, p, "payment " + pid)
        captured += p["amount_captured"]
        refunded += p["amount_refunded"]
        fees += p["fees"] - p["fees_reversed"]
    a = expect(env.admin.get("/v1/accounts/mer:m1:EUR:available"), 200).json
    balance = a["credits_posted"] - a["debits_posted"] - a["debits_pending"]
    check(balance == captured - refunded - fees,
          "available %d != captured %d - refunded %d - fees %d" % (balance, captured, refunded, fees))
    m.close()


def many_payments(env, key):
    sent = [[] for _ in range(THREADS)]

    def work(t):
        return [one_payment_flow(env, key, t, i, sent[t]) for i in range(PAYMENTS_PER_THREAD)]

    ids = [pid for chunk in at_once(THREADS, work) for pid in chunk]
    check(len(set(ids)) == THREADS * PAYMENTS_PER_THREAD, "every payment its own id: %d" % len(set(ids)))
    at_once(THREADS, lambda t: replay_all(env, key, sent[t]))
    merchant_books(env, key, ids)
    return ids


def captures_on_one_payment(env, key):
    m = env.client(key)
    p = expect(m.post("/v1/payments", card_payment(5000), headers={"Idempotency-Key": "one-a"}), 201).json
    pid = p["id"]
    answers = []
    for rnd in range(3):
        def capture(i, rnd=rnd):
            c = env.client(key)
            idem = "one-c%d-%d" % (rnd, i)
            resp = c.post("/v1/payments/%s/capture" % pid, {"amount": 100, "final": False},
                          headers={"Idempotency-Key": idem})
            c.close()
            return idem, resp
        answers += at_once(BURST, capture)
    won = [(idem, resp) for idem, resp in answers if resp.status == 200]
    for idem, resp in answers:
        check(resp.status == 200 or (resp.status == 409 and resp.code() == "payment_operation_in_progress"),
              "capture %s: 200 or 409 payment_operation_in_progress, got %r" % (idem, resp))
    check(won, "at least one capture of each burst ran")
    p = expect(m.get("/v1/payments/" + pid), 200).json
    check(p["amount_captured"] == 100 * len(won),
          "captured %d, the 200s say %d" % (p["amount_captured"], 100 * len(won)))
    check_payment_ledger(env.admin, p, "the payment captured at once")

    def replay(i):
        idem, resp = won[i]
        c = env.client(key)
        again = c.post("/v1/payments/%s/capture" % pid, {"amount": 100, "final": False},
                       headers={"Idempotency-Key": idem})
        c.close()
        check(again.status == 200 and again.raw == resp.raw, "replay of %s: %r" % (idem, again))

    at_once(len(won), replay)
    check(expect(m.get("/v1/payments/" + pid), 200).json["amount_captured"] == 100 * len(won),
          "the replays captured nothing")
    m.close()
    return pid, len(won)


def one_key_at_once(env, key, pid, captured_before):
    def capture(i):
        c = env.client(key)
        resp = c.post("/v1/payments/%s/capture" % pid, {"amount": 250, "final": False},
                      headers={"Idempotency-Key": "same-key"})
        c.close()
        return resp

    answers = at_once(BURST, capture)
    ok = [r for r in answers if r.status == 200]
    for r in answers:
        check(r.status == 200 or (r.status == 409 and r.code() in ("idempotency_key_in_progress",
                                                                    "payment_operation_in_progress")),
              "one key sent at once: %r" % r)
    check(all(r.raw == ok[0].raw for r in ok), "every 200 of one key is the same answer")
    m = env.client(key)
    p = expect(m.get("/v1/payments/" + pid), 200).json
    if not ok:  # every copy met another in flight: the key's one run answers now
        again = expect(m.post("/v1/payments/%s/capture" % pid, {"amount": 250, "final": False},
                              headers={"Idempotency-Key": "same-key"}), 200)
        p = expect(m.get("/v1/payments/" + pid), 200).json
        check(p["amount_captured"] == again.json["amount_captured"], "the key's answer is the payment")
    check(p["amount_captured"] == 100 * captured_before + 250,
          "one key sent %d times at once captured %d, want %d" % (BURST, p["amount_captured"] - 100 * captured_before,
                                                                  250))
    check_payment_ledger(env.admin, p, "one key at once")
    m.close()


def main():
    env = Env()
    try:
        env.start()
        key = env.merchant("m1").key
        ids = many_payments(env, key)
        pid, won = captures_on_one_payment(env, key)
        one_key_at_once(env, key, pid, won)
        check_conserved(env.admin, "after the concurrent payments")
        print("%d payments at once, %d captures of one payment won, replays byte for byte" % (len(ids), won))
    finally:
        env.close()


if __name__ == "__main__":
    main()
