"""Goal: a payments POST whose Idempotency-Key has been used is never run again because
the in-memory index of stored keys (which spares a new key its store reads) answered
"new": the stored reply after a clean restart and after kill -9; a payment killed
between its first write and its answer (the channel call in flight) is found by its key
after the restart (the payment as it is now, never a second payment); two connections
racing with one new key make one payment; other fields under a used key are 409
idempotency_key_reused; and the same with an index bound far below the keys stored.
One row per key: the key's stored reply names the payment from its first write on
(no lookup of the payments' own beside it).
Method: a real server with real simulators (SQLite, or PostgreSQL with
PAYCORE_TEST_PG_HOST); the card simulator answers slowly where the test kills during
the call. Every check counts the merchant's payments: a wrong "new" makes another."""
import os
import signal
import sqlite3
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paylib import Env, card_payment, check, expect, wait_for  # noqa: E402


def post(m, path, body, key):
    return m.post(path, body, headers={"Idempotency-Key": key})


def payments(m):
    return expect(m.get("/v1/payments?limit=100"), 200).json["data"]


def replay(m, path, body, key, first, what):
    r = expect(post(m, path, body, key), first.status, what=what)
    check(r.headers.get("idempotent-replayed") == "true" and r.raw == first.raw,
          "%s: the stored reply, byte for byte:\n%s\n%s" % (what, first.raw, r.raw))
    other = dict(body, description="other fields") if path == "/v1/payments" else {"amount": 1}
    r = post(m, path, other, key)
    check(r.status == 409 and r.code() == "idempotency_key_reused", "%s: other fields refused: %r" % (what, r))


def made(m, count, prefix):
    """'count' payments, each authorized and captured under its own keys."""
    done = []
    for i in range(count):
        body = card_payment(100 + i)
        p = expect(post(m, "/v1/payments", body, "%s-pay-%d" % (prefix, i)), 201, what="payment %d" % i)
        path = "/v1/payments/%s/capture" % p.json["id"]
        c = expect(post(m, path, {"amount": 100 + i}, "%s-cap-%d" % (prefix, i)), 200, what="capture %d" % i)
        done.append((body, p, path, c))
    return done


def replay_made(m, done, prefix, what):
    for i, (body, p, path, c) in enumerate(done):
        replay(m, "/v1/payments", body, "%s-pay-%d" % (prefix, i), p, "%s: payment %d" % (what, i))
        replay(m, path, {"amount": 100 + i}, "%s-cap-%d" % (prefix, i), c, "%s: capture %d" % (what, i))


def restarts(env, m, extra):
    done = made(m, 6, "r")
    count = len(payments(m))
    env.stop()
    env.start(extra)
    replay_made(m, done, "r", "after a clean restart")
    killed = made(m, 4, "k")
    env.stop(signal.SIGKILL)
    env.start(extra)
    replay_made(m, done, "r", "after kill -9")
    replay_made(m, killed, "k", "after kill -9")
    check(len(payments(m)) == count + 4, "no payment made twice: %d" % len(payments(m)))


def race(env, m):
    before = len(payments(m))
    for n in range(12):
        body = card_payment(700 + n)
        barrier = threading.Barrier(2)
        replies = [None, None]

        def worker(slot):
            c = env.client(m.key)  # a connection each
            barrier.wait(timeout=60)
            replies[slot] = post(c, "/v1/payments", body, "race-%d" % n)
            c.close()

        threads = [threading.Thread(target=worker, args=(s,)) for s in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        ran = [r for r in replies if r is not None and r.status == 201 and r.headers.get("idempotent-replayed") is None]
        check(len(ran) == 1, "race %d: one execution: %r" % (n, replies))
        other = replies[1] if ran[0] is replies[0] else replies[0]
        check((other.status == 409 and other.code() == "idempotency_key_in_progress") or
              (other.headers.get("idempotent-replayed") == "true" and other.raw == ran[0].raw),
              "race %d: the second waits or replays: %r" % (n, other))
    check(len(payments(m)) == before + 12, "one payment per raced key: %d" % (len(payments(m)) - before))


def killed_in_flight(env, m, extra):
    """Killed while the channel call runs: the payment and its key were written, its
    answer was not. After the restart the key finds that payment."""
    env.stop()
    slow = {"seed": 7, "faults": {"latency_p50_ms": 2000, "latency_p99_ms": 2000, "latency_max_ms": 2000}}
    env.card.close()
    env.card = type(env.card)("card", config=slow)
    env.start(extra)
    before = {p["id"] for p in payments(m)}
    body = card_payment(4242)

    def doomed():
        try:
            post(env.client(m.key), "/v1/payments", body, "in-flight")
        except Exception:  # noqa: BLE001 - the server is killed under it
            pass

    thread = threading.Thread(target=doomed)
    thread.start()
    fresh = wait_for("the payment written before its channel call",
                     lambda: [p for p in payments(m) if p["id"] not in before])
    env.stop(signal.SIGKILL)
    thread.join(timeout=120)
    one_row_per_key(env, fresh[0]["id"])
    env.start(extra)
    r = post(m, "/v1/payments", body, "in-flight")
    check(r.status in (200, 202) and r.json["id"] == fresh[0]["id"],
          "the key finds the payment written before the kill: %r" % r)
    r = post(m, "/v1/payments", dict(body, amount=4243), "in-flight")
    check(r.status == 409 and r.code() == "idempotency_key_reused", "other fields refused: %r" % r)
    check(len(payments(m)) == len(before) + 1, "one payment for the key after the kill")


def one_row_per_key(env, payment_id):
    """The key's one row names the payment from its first write (SQLite: the file is
    read directly; PostgreSQL runs the same replays without this look inside)."""
    if env.server.store_args:
        return
    db = sqlite3.connect("file:%s?mode=ro" % env.server.db, uri=True, timeout=30)
    try:
        row = db.execute("SELECT body FROM idempotency_keys WHERE idempotency_key = 'in-flight'").fetchone()
        lookups = db.execute("SELECT count(*) FROM pay_lookups WHERE name LIKE 'idem:%'").fetchone()[0]
    finally:
        db.close()
    check(row is not None and row[0] == "@payment:" + payment_id,
          "before its answer the key's reply is the payment as it stands: %r" % (row,))
    check(lookups == 0, "no second row for a payment's key: %d idem: lookups" % lookups)


def run(extra, races):
    env = Env(extra_args=extra)
    try:
        env.start()
        m = env.merchant("m1")
        restarts(env, m, [])
        if races:
            race(env, m)
        killed_in_flight(env, m, [])
    finally:
        env.close()


def main():
    run([], True)
    run(["--idempotency-index-max-keys", "5"], False)  # far fewer than the keys stored
    print("payments idempotency index: ok")


if __name__ == "__main__":
    main()
