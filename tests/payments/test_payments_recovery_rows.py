"""Goal: a card payment's steps (authorization, capture) have no rows of their own, yet
one in flight when paycore is SIGKILLed is never lost: its payment's row names it
(pay_objects.pending_op, on SQLite read here directly: no op row), the recovery finds it
there after the restart, asks the card channel and books exactly what the channel did:
an authorization left in flight ends authorized, a capture left in flight ends
captured, each once (the ledger agrees, the channel holds each request once), and
afterwards no payment row names an operation in flight.
Method: a real card simulator made slow (its fault latency) so that each call is still
out when paycore is killed; a real server restarted with a short recovery grace and a
recovery pass asked for through the admin route; SQLite's file read after clean stops.
The same runs on PostgreSQL (tests/store/test_pg_store.py's suites) without the file
reads."""
import os
import sqlite3
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paylib import Env, card_payment, check, check_payment_ledger, expect, wait_for  # noqa: E402
from test_payments_crash import all_payments  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../api"))
from pcapi import PG_HOST  # noqa: E402

CARD_LATENCY_MS = 8000


def post_quietly(client, path, body):
    try:
        client.post(path, body)
    except Exception:  # noqa: BLE001 - the server is killed under it
        pass


def card_slow(env, on):
    faults = {"latency_p50_ms": CARD_LATENCY_MS, "latency_p99_ms": CARD_LATENCY_MS,
              "latency_max_ms": CARD_LATENCY_MS} if on else {}
    status, _ = env.card.call("POST", "/v1/admin/faults", faults)
    check(status == 200, "card faults set: %r" % faults)


def store_rows(env, query, args=()):
    conn = sqlite3.connect(env.server.db, timeout=30)
    try:
        return conn.execute(query, args).fetchall()
    finally:
        conn.close()


def card_arrivals(env):
    """Requests the card channel has counted on arrival (before its latency)."""
    return env.card.rows("SELECT count(*) FROM arrivals")[0][0]


def killed_in_flight(env, path, body, payment_id=None):
    """Posts 'path' while the card channel is slow and kills paycore once the payment
    shows its operation pending and the call reached the channel (a kill between the
    attempt's commit and its send would leave nothing at the channel to wait for);
    the payment as it was then."""
    card_slow(env, True)
    arrivals_before = card_arrivals(env)
    m = env.client(env.merchant_key)
    threading.Thread(target=post_quietly, args=(m, path, body), daemon=True).start()

    def in_flight():
        return [p for p in all_payments(env.admin)
                if p["pending_operation"] and (payment_id is None or p["id"] == payment_id)]
    wait_for("the card call reached the channel", lambda: card_arrivals(env) > arrivals_before)
    p = wait_for("a card operation in flight", in_flight)[0]
    env.server.proc.kill()
    env.server.proc.wait()
    env.server.proc = None
    return p


def check_named_by_payment(env, p):
    """No row of the op in flight: its payment's row names it."""
    if PG_HOST:
        return
    op_id = p["pending_operation"]
    check(store_rows(env, "SELECT count(*) FROM pay_objects WHERE id = ?", (op_id,))[0][0] == 0,
          "the card step %s has no row of its own" % op_id)
    named = store_rows(env, "SELECT pending_op FROM pay_objects WHERE id = ?", (p["id"],))
    check(named == [(op_id,)], "the payment's row names its step in flight: %r" % named)


def recovered(env, payment_id, attempts_kind, status_want):
    """Restarts paycore, lets the slow call land at the channel and the recovery resolve
    the payment; the payment resolved."""
    card_slow(env, False)
    wait_for("the card channel holds the %s" % attempts_kind, lambda: env.card.rows(
        "SELECT count(*) FROM records WHERE kind = ? AND merchant_ref = ?", (attempts_kind, payment_id))[0][0] == 1)
    env.start()

    def resolved():
        expect(env.admin.post("/v1/admin/payments/recover", {}), 200, what="recovery pass")
        q = env.admin.get("/v1/payments/" + payment_id).json
        return q if not q["pending_operation"] else None
    q = wait_for("recovery resolved %s" % payment_id, resolved)
    check(q["status"] == status_want, "resolved as the channel did: %s, want %s" % (q["status"], status_want))
    check_payment_ledger(env.admin, q, payment_id)
    return q


def main():
    env = Env()
    try:
        env.start()
        env.merchant_key = env.merchant("m1").key
        p = killed_in_flight(env, "/v1/payments", card_payment(4100))
        check_named_by_payment(env, p)
        q = recovered(env, p["id"], "authorization", "authorized")
        check(q["amount_captured"] == 0, "nothing captured: %r" % q)
        p = killed_in_flight(env, "/v1/payments/%s/capture" % q["id"], {}, q["id"])
        check(p["operations"][-1]["type"] == "capture", "a capture in flight: %r" % p["operations"][-1])
        check_named_by_payment(env, p)
        q = recovered(env, q["id"], "capture", "captured")
        check(q["amount_captured"] == 4100, "captured once, whole: %r" % q["amount_captured"])
        env.stop()
        if not PG_HOST:
            left = store_rows(env, "SELECT id, pending_op FROM pay_objects WHERE pending_op <> ''")
            check(left == [], "no payment row names an operation in flight afterwards: %r" % left)
        print("card steps without rows recovered: ok")
    finally:
        env.close()


if __name__ == "__main__":
    main()
