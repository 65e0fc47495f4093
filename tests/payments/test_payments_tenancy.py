"""Goal: a merchant key sees and acts on its own merchant's payments, refunds, wallets,
payouts and accounts only; anything of another merchant reads exactly as a missing
object: the same status and the same body, byte for byte (every id the body could
carry is the request's own), for reads and for every operation. Its own ledger
accounts are visible to it through the key's grants, but money moves on the payments'
chart only through the payments: the key's own ledger transfers naming a chart account
(its available balance, its payouts in transit, a post or void of its payment's hold)
fail as naming a missing one, and it cannot make an account with a chart id
(id_reserved): otherwise it could credit its available balance from an account of its
own and pay that out, or squat another merchant's or the system's account ids.
Method: two merchants with a key each on a real server and real simulators; merchant
B's objects are requested with A's key and compared with requests for ids that never
existed."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paylib import BANK_OK, Env, card_payment, check, expect, wait_for  # noqa: E402


def same(a, b, what):
    check(a.status == b.status and a.raw == b.raw, "%s: foreign %r differs from missing %r" % (what, a, b))


def objects_of(m):
    p = expect(m.post("/v1/payments", card_payment(1000, capture="automatic")), 201, what="payment").json
    r = expect(m.post("/v1/payments/%s/refunds" % p["id"], {"amount": 100}), 201, what="refund").json
    w = expect(m.post("/v1/wallets", {"owner_id": "C1", "currency": "EUR"}), 201, what="wallet").json
    po = expect(m.post("/v1/payouts", {"amount": 50, "currency": "EUR", "bank_account": BANK_OK}), 201,
                what="payout").json
    wait_for("payout settles", lambda: m.get("/v1/payouts/" + po["id"]).json["status"] == "paid")
    a = expect(m.post("/v1/payments", card_payment(500)), 201, what="authorized").json
    return {"payment": p["id"], "refund": r["id"], "wallet": w["id"], "payout": po["id"], "authorized": a["id"]}


def ledger_api(env, a, mine):
    """The payments' chart is the merchant's to read, not to move money on or make: a
    transfer naming one of its accounts (out of or into its available balance, a post or
    void of its hold) fails as one naming a missing account; an account with a chart id
    is 422 id_reserved; nothing moves. Its own accounts work as ever."""
    books = {acc: expect(env.admin.get("/v1/accounts/" + acc), 200).json
             for acc in ("mer:ma:EUR:available", "mer:ma:EUR:pending", "mer:ma:EUR:payouts")}
    expect(a.post("/v1/accounts", {"accounts": [{"id": "ma-own", "currency": "EUR"},
                                                {"id": "ma-own2", "currency": "EUR"}]}), 200, what="own accounts")
    expect(a.post("/v1/transfers", {"id": "own-1", "debit_account_id": "ma-own", "credit_account_id": "ma-own2",
                                    "amount": 5, "currency": "EUR"}), 201, what="a transfer between its own accounts")
    for n, (debit, credit) in enumerate((("mer:ma:EUR:available", "ma-own"), ("ma-own", "mer:ma:EUR:available"),
                                         ("mer:ma:EUR:available", "mer:ma:EUR:payouts"))):
        field = "debit_account_id" if debit.startswith("mer:") else "credit_account_id"
        body = {"id": "chart-%d" % n, "debit_account_id": debit, "credit_account_id": credit, "amount": 100,
                "currency": "EUR"}
        r = a.post("/v1/transfers", body)
        missing = a.post("/v1/transfers", dict(body, id="chart-missing-%d" % n,
                                               **{field: "no-such-account"}))
        check(r.status == 422 and r.code() == "account_not_found" and r.json == missing.json,
              "%s -> %s by a merchant key: as a missing account: %r (missing: %r)" % (debit, credit, r, missing))
    hold = [t for t in expect(a.get("/v1/payments/" + mine["authorized"]), 200).json["ledger_transfers"]
            if t.endswith(":hold")]
    check(len(hold) == 1, "the authorized payment's hold: %r" % hold)
    for n, flag in enumerate(("void_pending", "post_pending")):
        r = a.post("/v1/transfers", {"id": "hold-%d" % n, "pending_id": hold[0], "flags": [flag]})
        missing = a.post("/v1/transfers", {"id": "hold-missing-%d" % n, "pending_id": "no-such-hold", "flags": [flag]})
        check(r.status == 422 and r.code() == "pending_transfer_not_found" and r.json == missing.json,
              "%s of its hold by a merchant key: as a missing one: %r (missing: %r)" % (flag, r, missing))
    for n, chart_id in enumerate(("mer:mc:EUR:available", "chn:card:USD:receivable", "sys:USD:fee_revenue",
                                  "wal:wal_x")):
        r = a.post("/v1/accounts", {"id": chart_id, "currency": "EUR"})
        check(r.status == 422 and r.code() == "id_reserved" and r.json["error"].get("field") == "id",
              "a chart account %s made by a merchant key: %r" % (chart_id, r))
        r = a.post("/v1/accounts", {"accounts": [{"id": "ma-other-%d" % n, "currency": "EUR"},
                                                 {"id": chart_id, "currency": "EUR"}]})
        check(r.status == 422 and r.code() == "id_reserved" and r.json["error"].get("field") == "accounts[1].id",
              "in a batch: %r" % r)
        expect(env.admin.get("/v1/accounts/" + chart_id), 404, what="nothing made: " + chart_id)
        expect(env.admin.get("/v1/accounts/ma-other-%d" % n), 404, what="nothing of the batch made")
    for acc, before in books.items():
        after = expect(env.admin.get("/v1/accounts/" + acc), 200).json
        check(after == before, "%s unchanged: %r -> %r" % (acc, before, after))
    expect(env.admin.post("/v1/merchants", {"id": "mc", "name": "Shop mc", "country": "DE", "default_currency": "EUR",
                                            "currencies": ["EUR"], "pricing": {"default": {"bps": 1,
                                                                                           "fixed_minor": 0}}}),
           201, what="a merchant whose chart id a key tried")


def main():
    env = Env()
    try:
        env.start()
        a = env.merchant("ma")
        b = env.merchant("mb")
        mine = objects_of(a)
        theirs = objects_of(b)
        missing = {"payment": "pay_000000000000000000000000", "refund": "re_000000000000000000000000",
                   "wallet": "wal_000000000000000000000000", "payout": "po_000000000000000000000000",
                   "authorized": "pay_000000000000000000000001"}
        reads = [("/v1/payments/%s", "payment"), ("/v1/refunds/%s", "refund"), ("/v1/wallets/%s", "wallet"),
                 ("/v1/payouts/%s", "payout")]
        for path, kind in reads:
            expect(a.get(path % mine[kind]), 200, what="own " + kind)
            same(a.get(path % theirs[kind]), a.get(path % missing[kind]), "GET " + kind)
        same(a.get("/v1/merchants/mb"), a.get("/v1/merchants/mz"), "GET merchant")
        expect(a.get("/v1/merchants/ma"), 200, what="own merchant")
        posts = [("/v1/payments/%s/capture", "authorized", {"amount": 10}),
                 ("/v1/payments/%s/cancel", "authorized", None),
                 ("/v1/payments/%s/confirm", "authorized", {"code": "123456"}),
                 ("/v1/payments/%s/refunds", "payment", {"amount": 1}),
                 ("/v1/wallets/%s/top_ups", "wallet", card_payment(100, payer="C1")),
                 ("/v1/wallets/%s/withdrawals", "wallet", {"amount": 1, "owner_id": "C1", "bank_account": BANK_OK})]
        for path, kind, body in posts:
            if "top_ups" in path:
                body = dict(body)
                del body["capture_method"]
            same(a.post(path % theirs[kind], body), a.post(path % missing[kind], body), "POST " + path)
        after = expect(b.get("/v1/payments/" + theirs["authorized"]), 200).json
        check(after["status"] == "authorized" and after["amount_captured"] == 0, "B's payment untouched: %r" % after)
        same(a.post("/v1/payments", card_payment(10, merchant_id="mb")),
             a.post("/v1/payments", card_payment(10, merchant_id="mz")), "pay as another merchant")
        same(a.post("/v1/payouts", {"merchant_id": "mb", "amount": 1, "currency": "EUR", "bank_account": BANK_OK}),
             a.post("/v1/payouts", {"merchant_id": "mz", "amount": 1, "currency": "EUR", "bank_account": BANK_OK}),
             "payout from another merchant")
        same(a.get("/v1/payments?merchant_id=mb"), a.get("/v1/payments?merchant_id=mz"), "list another's payments")
        listed = expect(a.get("/v1/payments?limit=100"), 200).json["data"]
        check(listed and all(p["merchant_id"] == "ma" for p in listed), "a merchant lists its own payments only")
        listed = expect(a.get("/v1/merchants"), 200).json["data"]
        check([m["id"] for m in listed] == ["ma"], "a merchant lists itself only: %r" % listed)
        # ledger accounts: its own through the key's grants, the other's as missing
        expect(a.get("/v1/accounts/mer:ma:EUR:available"), 200, what="own account")
        same(a.get("/v1/accounts/mer:mb:EUR:available"), a.get("/v1/accounts/mer:mz:EUR:available"),
             "another merchant's account")
        ledger_api(env, a, mine)
        env.stop()
    finally:
        env.close()
    print("payments tenancy: ok")


if __name__ == "__main__":
    main()
