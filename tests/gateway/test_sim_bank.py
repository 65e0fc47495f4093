"""Goal: the bank simulator accepts transfers as pending, decides them later (settled,
or returned R01/R02/R03), and calls back with a verifiable signature, retrying with
backoff until the receiver acknowledges, also across a restart. Method: a real
`paycore simulator bank` and a callback receiver (http.server) that fails its first
deliveries; signatures are verified with Python's hmac; state is read from the
simulator's SQLite record."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from simlib import Receiver, Sim, check, expect, expect_invalid, verify_signature, wait_until  # noqa: E402

CONFIG = {"settle_delay_ms": 50, "callback_retry_base_ms": 20, "callback_retry_max_ms": 200,
          "callback_timeout_ms": 5000}
DATA = {"accounts": [{"routing_number": "110000000", "account_number": "5550001", "balance": 1000},
                     {"routing_number": "110000000", "account_number": "5550002", "balance": 1000, "closed": True}]}


def transfer(c, key, url, account="000123456789", direction="credit", amount=1500, **kw):
    body = {"direction": direction, "amount": amount, "currency": "EUR", "callback_url": url,
            "account": {"routing_number": "110000000", "account_number": account}}
    body.update(kw)
    r = expect(c.post("/v1/transfers", body, key=key), 202, what="transfer " + key)
    check(r.json["status"] == "pending" and r.json["id"].startswith("bt_"), "pending: %r" % r)
    return r.json


def delivered(sim, transfer_id):
    rows = sim.rows("SELECT callback_delivered_at_ms FROM transfers WHERE id = ?", (transfer_id,))
    return rows and rows[0][0] is not None


def deliveries_for(receiver, transfer_id):
    with receiver.lock:
        return [(h, b) for h, b in receiver.deliveries if json.loads(b)["id"] == transfer_id]


def test_retried_until_acknowledged(sim, c):
    """A receiver that fails the first three deliveries gets a fourth, with the same
    body and a valid signature each time; the record counts the attempts."""
    receiver = Receiver(fail_first=3)
    try:
        t = transfer(c, "t-settle", receiver.url, reference="payout-1")
        wait_until(lambda: delivered(sim, t["id"]), "the callback to be acknowledged")
        got = deliveries_for(receiver, t["id"])
        check(len(got) == 4, "three failures then one success: %d deliveries" % len(got))
        bodies = set(b for _, b in got)
        check(len(bodies) == 1, "every attempt sends the same body")
        for n, (headers, body) in enumerate(got, 1):
            check(verify_signature(headers["Sim-Signature"], body, sim.secret), "signature of attempt %d" % n)
            check(not verify_signature(headers["Sim-Signature"], body + b" ", sim.secret), "tamper detected")
            check(not verify_signature(headers["Sim-Signature"], body, "other-secret"), "other secret refused")
            check(headers["Sim-Delivery-Attempt"] == str(n), "attempt header %r" % headers)
        event = json.loads(got[0][1])
        check(event == {"id": t["id"], "idempotency_key": "t-settle", "status": "settled", "return_code": None,
                        "amount": 1500, "currency": "EUR", "reference": "payout-1"}, "callback body %r" % event)
        row = sim.one("SELECT status, callback_attempts, callback_last_status FROM transfers WHERE id = ?",
                      (t["id"],))
        check(row == ("settled", 4, 200), "record: %r" % (row,))
        state = expect(c.get("/v1/transfers/" + t["id"]), 200).json
        check(state["status"] == "settled" and state["callback"] == {"attempts": 4, "delivered": True,
                                                                      "last_http_status": 200}, "GET %r" % state)
        settled = sim.one("SELECT status, settled_at_ms IS NOT NULL FROM records WHERE id = ?", (t["id"],))
        check(settled == ("settled", 1), "records row settled: %r" % (settled,))
    finally:
        receiver.close()


def test_return_codes(sim, c):
    """Account numbers ending 9901/9902/9903 return R01/R02/R03; listed accounts return
    naturally (debit above balance: R01, closed: R02) or settle and move their balance."""
    receiver = Receiver()
    try:
        cases = [("t-r01", "0009901", "credit", 100, "R01"), ("t-r02", "0009902", "debit", 100, "R02"),
                 ("t-r03", "0009903", "credit", 100, "R03"), ("t-n01", "5550001", "debit", 1001, "R01"),
                 ("t-n02", "5550002", "credit", 1, "R02"), ("t-ok", "5550001", "debit", 400, None)]
        ids = {}
        for key, account, direction, amount, _ in cases:
            ids[key] = transfer(c, key, receiver.url, account=account, direction=direction, amount=amount)["id"]
        for key, _, _, _, code in cases:
            wait_until(lambda: delivered(sim, ids[key]), "callback of " + key)
            body = json.loads(deliveries_for(receiver, ids[key])[0][1])
            want = "settled" if code is None else "returned"
            check(body["status"] == want and body["return_code"] == code, "%s: %r" % (key, body))
        check(sim.one("SELECT balance FROM bank_accounts WHERE account_number = '5550001'")[0] == 600,
              "a settled debit moves a listed balance (1000 - 400)")
        returned = sim.rows("SELECT count(*) FROM records WHERE status = 'returned' AND settled_at_ms IS NULL")[0][0]
        check(returned == 5, "returns never settle: %d" % returned)
    finally:
        receiver.close()


def test_bad_requests(sim, c):
    before = sim.one("SELECT count(*) FROM transfers")[0]
    good = {"direction": "credit", "amount": 1, "currency": "EUR", "callback_url": "http://127.0.0.1:1/x",
            "account": {"routing_number": "110000000", "account_number": "1234"}}
    cases = [(dict(good, direction="sideways"), "direction"), (dict(good, amount=0), "amount"),
             (dict(good, callback_url="ftp://x"), "callback_url"), (dict(good, callback_url=None), "callback_url"),
             (dict(good, account={"routing_number": "12", "account_number": "1234"}), "account.routing_number"),
             (dict(good, account={"routing_number": "110000000", "account_number": "12"}),
              "account.account_number"),
             (dict(good, account={"routing_number": "110000000", "account_number": "1234", "iban": "x"}),
              "account.iban"), (dict(good, account=None), "account")]
    for body, field in cases:
        expect_invalid(c.post("/v1/transfers", body, key="bad"), field, "%r" % body)
    check(sim.one("SELECT count(*) FROM transfers")[0] == before, "bad requests change nothing")
    expect(c.get("/v1/transfers/bt_none"), 404, "not_found")


def test_callbacks_survive_restart():
    """An undelivered callback is delivered after the simulator restarts."""
    receiver = Receiver(fail_first=10 ** 6)  # refuses everything for now
    sim = Sim("bank", config=dict(CONFIG, callback_retry_max_ms=50)).start()
    try:
        t = transfer(sim.client(), "t-restart", receiver.url)
        wait_until(lambda: receiver.count() >= 2, "two refused deliveries")
        check(sim.stop() == 0, "clean stop")
        check(not delivered(sim, t["id"]), "not acknowledged before the restart")
        receiver.fail_first = 0
        with receiver.lock:
            receiver.deliveries.clear()
        sim.start()
        wait_until(lambda: delivered(sim, t["id"]), "delivery after the restart")
    finally:
        sim.close()
        receiver.close()


def test_secret_required():
    sim = Sim("bank", args=[], secret=None)
    sim.args = [a for a in sim.args if a != "--callback-secret" and a != sim.secret]
    out = subprocess.run(sim.command(), capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in os.environ.items() if k != "PAYCORE_SIM_CALLBACK_SECRET"})
    check(out.returncode == 2 and "callback-secret" in out.stderr, "bank without a secret: %r" % out.stderr)
    sim.close()


def main():
    sim = Sim("bank", config=CONFIG, data=DATA).start()
    try:
        c = sim.client()
        test_retried_until_acknowledged(sim, c)
        test_return_codes(sim, c)
        test_bad_requests(sim, c)
    finally:
        sim.close()
    test_callbacks_survive_restart()
    test_secret_required()
    print("ok")


if __name__ == "__main__":
    main()
