"""Goal: the wallet simulator approves or declines instantly by balance, frozen state,
account and currency, bounds refunds by the payment, applies each key once, and
refuses bad requests with the field. Method: a real `paycore simulator wallet` with a
--data file, driven over HTTP; balances are checked in its SQLite record."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from simlib import Sim, check, expect, expect_invalid  # noqa: E402

DATA = {"accounts": [{"id": "w_1", "currency": "EUR", "balance": 10000, "frozen": False},
                     {"id": "w_frozen", "currency": "EUR", "balance": 10000, "frozen": True},
                     {"id": "w_usd", "currency": "USD", "balance": 10000}]}


def balance(sim, wallet_id):
    return sim.one("SELECT balance FROM wallet_accounts WHERE id = ?", (wallet_id,))[0]


def pay(c, key, wallet_id="w_1", amount=1000, currency="EUR", **kw):
    body = {"wallet_id": wallet_id, "amount": amount, "currency": currency}
    body.update(kw)
    return expect(c.post("/v1/payments", body, key=key), 200, what="payment " + key)


def test_payments(sim, c):
    """Every response code, and the balance moves only on approval."""
    ok = pay(c, "p1", amount=2500, merchant_ref="order-9").json
    check(ok["status"] == "approved" and ok["response_code"] == "approved" and ok["balance_after"] == 7500 and
          ok["id"].startswith("wp_") and ok["wallet_id"] == "w_1", "approved: %r" % ok)
    check(balance(sim, "w_1") == 7500, "debited")
    cases = [("p2", dict(amount=7501), "insufficient_balance"), ("p3", dict(wallet_id="w_frozen"), "account_frozen"),
             ("p4", dict(wallet_id="w_none"), "account_not_found"), ("p5", dict(wallet_id="w_usd"), "currency_mismatch")]
    for key, kw, code in cases:
        r = pay(c, key, **kw).json
        check(r["status"] == "declined" and r["response_code"] == code and "balance_after" not in r,
              "%s: want %s, got %r" % (key, code, r))
    check(balance(sim, "w_1") == 7500 and balance(sim, "w_frozen") == 10000, "declines move nothing")
    exact = pay(c, "p6", amount=7500).json
    check(exact["status"] == "approved" and exact["balance_after"] == 0, "the whole balance: %r" % exact)
    again = expect(c.post("/v1/payments", {"wallet_id": "w_1", "amount": 7500, "currency": "EUR"}, key="p6"), 200)
    check(again.json == exact and again.headers.get("idempotent-replayed") == "true", "replay: %r" % again)
    check(balance(sim, "w_1") == 0, "a replay applies nothing")
    expect(c.post("/v1/payments", {"wallet_id": "w_1", "amount": 7499, "currency": "EUR"}, key="p6"), 409,
           "idempotency_key_reused")
    s = expect(c.get("/v1/status/p1"), 200).json
    check(s["operation"] == "payment" and s["response"] == ok, "status inquiry: %r" % s)
    got = expect(c.get("/v1/payments/" + ok["id"]), 200).json
    check(got["amount"] == 2500 and got["refunded_total"] == 0 and got["merchant_ref"] == "order-9", "GET: %r" % got)
    acct = expect(c.get("/v1/accounts/w_frozen"), 200).json
    check(acct == {"id": "w_frozen", "currency": "EUR", "balance": 10000, "frozen": True}, "account: %r" % acct)
    expect(c.get("/v1/accounts/w_none"), 404, "not_found")
    return ok


def test_refunds(sim, c, payment):
    """Refunds credit the wallet and are bounded by what is left of the payment."""
    path = "/v1/payments/%s/refunds" % payment["id"]
    r = expect(c.post(path, {"amount": 1000}, key="r1"), 200).json
    check(r["status"] == "approved" and r["refunded_total"] == 1000 and r["balance_after"] == 1000 and
          r["payment_id"] == payment["id"] and r["id"].startswith("wr_"), "refund: %r" % r)
    over = expect(c.post(path, {"amount": 1501}, key="r2"), 200).json
    check(over["status"] == "declined" and over["response_code"] == "exceeds_refundable" and
          over["refunded_total"] == 1000, "above the payment: %r" % over)
    expect(c.post(path, {"amount": 1500}, key="r3"), 200)
    check(balance(sim, "w_1") == 2500, "refunded in full")
    declined = pay(c, "p7", wallet_id="w_frozen").json
    no = expect(c.post("/v1/payments/%s/refunds" % declined["id"], {"amount": 1}, key="r4"), 200).json
    check(no["response_code"] == "exceeds_refundable", "refund of a declined payment: %r" % no)
    expect(c.post("/v1/payments/wp_none/refunds", {"amount": 1}, key="r5"), 404, "not_found")
    expect_invalid(c.post(path, {"amount": 1, "currency": "USD"}, key="r6"), "currency")


def test_bad_requests(sim, c):
    before = sim.one("SELECT count(*) FROM records")[0]
    good = {"wallet_id": "w_1", "amount": 1, "currency": "EUR"}
    cases = [(dict(good, amount=1.5), "amount"), (dict(good, amount=None), "amount"), (dict(good, wallet_id=""),
             "wallet_id"), (dict(good, wallet_id="a b"), "wallet_id"), (dict(good, currency=3), "currency"),
             (dict(good, note="x"), "note"), ({"amount": 1, "currency": "EUR"}, "wallet_id")]
    for body, field in cases:
        expect_invalid(c.post("/v1/payments", body, key="bad"), field, "%r" % body)
    expect(c.post("/v1/payments", good), 400, "idempotency_key_missing")
    expect_invalid(c.post("/v1/admin/accounts", {"id": "w_2", "currency": "EUR", "balance": -5}), "balance")
    expect_invalid(c.post("/v1/admin/accounts", {"id": "w_2", "currency": "EUR", "balance": 5, "frozen": 1}),
                   "frozen")
    check(sim.one("SELECT count(*) FROM records")[0] == before, "bad requests change nothing")
    acct = expect(c.post("/v1/admin/accounts", {"id": "w_1", "currency": "EUR", "balance": 5, "frozen": True}),
                  200).json
    check(acct["frozen"] is True and balance(sim, "w_1") == 5, "admin replaces an account")


def main():
    sim = Sim("wallet", data=DATA).start()
    try:
        c = sim.client()
        payment = test_payments(sim, c)
        test_refunds(sim, c, payment)
        test_bad_requests(sim, c)
        # a restart does not reload the data file over the record's balances
        check(sim.stop() == 0, "clean stop")
        sim.start()
        check(balance(sim, "w_1") == 5, "the record wins over --data after the first start")
    finally:
        sim.close()
    print("ok")


if __name__ == "__main__":
    main()
