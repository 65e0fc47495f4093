"""Goal: after many random payment flows (card payments captured at once or in random
partial captures, cancels, random partial refunds, wallet payments and top-ups,
payouts), run from several clients at once, the ledger balances per currency, every
payment's amounts equal what its ledger transfers moved, each payment's fees equal the
hand rule on its totals (half-even: fee(captured) and fees x refunded / captured), and
each merchant's available balance equals captured - refunded - fees (net of fees given
back) - payouts.
Method: a real server with real card and bank simulators; a seeded random driver
(PAYCORE_SEED=<n> replays one, PAYCORE_PAY_FLOWS sets the count; `make test` runs a
short count) in 4 threads; then the books are closed and checked."""
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paylib import (BANK_OK, BANK_R01, CARD, Env, card_payment, check, check_payment_ledger, expect,  # noqa: E402
                    wait_for)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../api"))
from pcapi import all_accounts, check_conserved  # noqa: E402

PRICES = {"ra": {"default": {"bps": 290, "fixed_minor": 30}},
          "rb": {"default": {"bps": 175, "fixed_minor": 0}, "wallet": {"bps": 50, "fixed_minor": 5}},
          "rc": {"default": {"bps": 0, "fixed_minor": 0}}}


def half_even(n, d):
    q, r = divmod(n, d)
    if 2 * r > d or (2 * r == d and q % 2 == 1):
        q += 1
    return q


def fee_total(price, captured):
    return 0 if captured == 0 else half_even(captured * price["bps"], 10000) + price["fixed_minor"]


class Driver:
    def __init__(self, env, keys, rng, flows):
        self.env, self.keys, self.rng, self.flows = env, keys, rng, flows
        self.lock = threading.Lock()
        self.payments = []      # (merchant, id)
        self.payouts = []       # (merchant, id)
        self.errors = []

    def card_flow(self, m, mid, rng):
        amount = rng.randint(1, 50000)
        automatic = rng.random() < 0.4
        p = expect(m.post("/v1/payments", card_payment(amount, capture="automatic" if automatic else "manual")), 201,
                   what="payment").json
        if not automatic:
            roll = rng.random()
            if roll < 0.15:
                expect(m.post("/v1/payments/%s/cancel" % p["id"], None), 200, what="cancel")
            else:
                left = amount
                for _ in range(rng.randint(1, 3)):
                    if left == 0:
                        break
                    part = rng.randint(1, left)
                    final = rng.random() < 0.1
                    c = expect(m.post("/v1/payments/%s/capture" % p["id"], {"amount": part, "final": final}), 200,
                               what="capture").json
                    left = c["amount_capturable"]
                if left > 0 and rng.random() < 0.5:  # capture the rest: only then refunds are allowed
                    expect(m.post("/v1/payments/%s/capture" % p["id"], {}), 200, what="capture the rest")
        q = expect(m.get("/v1/payments/" + p["id"]), 200).json
        if q["status"] not in ("captured", "partially_refunded"):
            return p["id"]
        room = q["amount_captured"] - q["amount_refunded"]
        for _ in range(rng.randint(0, 2)):
            if room <= 0:
                break
            part = rng.randint(1, room)
            r = m.post("/v1/payments/%s/refunds" % p["id"], {"amount": part})
            if r.status == 201:
                room -= part
            else:  # the merchant's available balance may be short: the ledger refuses the reserve
                expect(r, 422, "exceeds_credits", "refund")
        return p["id"]

    def wallet_flow(self, m, mid, rng, wallet):
        top = card_payment(rng.randint(1, 30000), payer="C-" + mid)
        del top["capture_method"]
        expect(m.post("/v1/wallets/%s/top_ups" % wallet, top), 201, what="top up")
        body = card_payment(rng.randint(1, 40000))
        body["payment_method"] = {"type": "wallet", "wallet_id": wallet}
        body["payer"] = {"id": "C-" + mid, "country": "DE"}
        p = expect(m.post("/v1/payments", body), 201, what="wallet payment").json
        if p["status"] == "captured" and rng.random() < 0.5:
            r = m.post("/v1/payments/%s/refunds" % p["id"], {"amount": rng.randint(1, p["amount"])})
            check(r.status in (201, 422), "wallet refund: %r" % r)
        return p["id"]

    def payout_flow(self, m, mid, rng):
        bal = expect(m.get("/v1/merchants/" + mid), 200).json["balances"]["EUR"]["available"]
        if bal["posted"] + bal["pending"] <= 2:
            return None
        amount = rng.randint(1, max(1, (bal["posted"] + bal["pending"]) // 3))
        bank = BANK_R01 if rng.random() < 0.2 else BANK_OK
        r = m.post("/v1/payouts", {"amount": amount, "currency": "EUR", "bank_account": bank})
        if r.status == 422:
            expect(r, 422, "exceeds_credits", "payout")
            return None
        return expect(r, 201, what="payout").json["id"]

    def run_one(self, index):
        rng = random.Random(self.rng.random() + index)
        mid = rng.choice(sorted(self.keys))
        m = self.env.client(self.keys[mid]["key"])
        roll = rng.random()
        if roll < 0.65:
            pid = self.card_flow(m, mid, rng)
        elif roll < 0.85:
            pid = self.wallet_flow(m, mid, rng, self.keys[mid]["wallet"])
        else:
            po = self.payout_flow(m, mid, rng)
            if po:
                with self.lock:
                    self.payouts.append((mid, po))
            return
        with self.lock:
            self.payments.append((mid, pid))

    def thread(self, first, step):
        try:
            for i in range(first, self.flows, step):
                self.run_one(i)
        except SystemExit as e:
            self.errors.append("flow failed: %r" % e)


def merchant_books(env, keys, driver):
    for mid, info in keys.items():
        m = env.client(info["key"])
        captured = refunded = fees = 0
        after, seen = None, []
        while True:
            page = expect(m.get("/v1/payments?limit=100" + ("&starting_after=" + after if after else "")), 200).json
            seen += page["data"]
            if not page["has_more"]:
                break
            after = page["data"][-1]["id"]
        price = PRICES[mid]
        for p in seen:
            check_payment_ledger(env.admin, p, "payment " + p["id"])
            if p["purpose"] == "top_up":
                continue
            channel_price = price.get(p["channel"] or "", price["default"])
            want_fees = min(fee_total(channel_price, p["amount_captured"]), p["amount_captured"])
            check(p["fees"] == want_fees, "%s: fees %d, the rule says %d" % (p["id"], p["fees"], want_fees))
            if p["amount_refunded"]:
                want_back = half_even(p["fees"] * p["amount_refunded"], p["amount_captured"])
                check(p["fees_reversed"] == want_back,
                      "%s: fees given back %d, the rule says %d" % (p["id"], p["fees_reversed"], want_back))
            captured += p["amount_captured"]
            refunded += p["amount_refunded"]
            fees += p["fees"] - p["fees_reversed"]
        paid_out = 0
        for owner, po in driver.payouts:
            if owner != mid:
                continue
            status = expect(m.get("/v1/payouts/" + po), 200).json["status"]
            check(status in ("paid", "returned"), "payout %s settled: %s" % (po, status))
            if status == "paid":
                paid_out += expect(m.get("/v1/payouts/" + po), 200).json["amount"]
        a = expect(env.admin.get("/v1/accounts/mer:%s:EUR:available" % mid), 200).json
        balance = a["credits_posted"] - a["debits_posted"] - a["debits_pending"]
        check(balance == captured - refunded - fees - paid_out,
              "%s: available %d != captured %d - refunded %d - fees %d - payouts %d"
              % (mid, balance, captured, refunded, fees, paid_out))
        print("%s: %d payments, available %d = %d - %d - %d - %d" % (mid, len(seen), balance, captured, refunded,
                                                                     fees, paid_out))


def main():
    seed = int(os.environ.get("PAYCORE_SEED", str(int(time.time()))))
    flows = int(os.environ.get("PAYCORE_PAY_FLOWS", "160"))
    print("seed %d, %d flows" % (seed, flows))
    env = Env()
    try:
        env.start()
        keys = {}
        for mid, pricing in PRICES.items():
            key = env.merchant(mid, pricing=pricing)
            w = expect(key.post("/v1/wallets", {"owner_id": "C-" + mid, "currency": "EUR"}), 201).json
            keys[mid] = {"key": key.key, "wallet": w["id"]}
        driver = Driver(env, keys, random.Random(seed), flows)
        threads = [threading.Thread(target=driver.thread, args=(i, 4)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check(not driver.errors, "flows failed: %r" % driver.errors)
        for mid, po in driver.payouts:
            m = env.client(keys[mid]["key"])
            wait_for("payout %s settles" % po, lambda: m.get("/v1/payouts/" + po).json["status"] in ("paid", "returned"))
        sums = check_conserved(env.admin, "after the random flows")
        merchant_books(env, keys, driver)
        check(len(all_accounts(env.admin)) > 10 and sums, "the books were read")
        env.stop()
    finally:
        env.close()
    print("payments random: ok")


if __name__ == "__main__":
    main()
