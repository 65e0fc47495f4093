"""Goal: a merchant key sees and acts on its own merchant's payments, refunds, wallets,
payouts and accounts only; anything of another merchant reads exactly as a missing
object: the same status and the same body, byte for byte (every id the body could
carry is the request's own), for reads and for every operation. Its own ledger
accounts are visible to it through the key's grants.
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
        env.stop()
    finally:
        env.close()
    print("payments tenancy: ok")


if __name__ == "__main__":
    main()
