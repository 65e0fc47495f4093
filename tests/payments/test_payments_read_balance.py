"""Goal: a client that has seen a payment's new state sees the balances that go with it:
a wallet read right after its withdrawal shows `returned` holds the money again, and a
merchant's available balance read right after a payout shows `returned` too. (Payments
are read from the database, balances from the shadow the writer publishes just after
COMMIT: a read in between once showed the old balance.)
Method: a real server (SQLite, or PostgreSQL with PAYCORE_TEST_PG_HOST) with real card
and bank simulators; PAYCORE_TEST_SHADOW_PUBLISH_DELAY_MS makes the writer wait 150 ms
between each COMMIT and publishing its balances, so the window is wide and every read
below falls into it unless balance reads wait for what the database shows. A tight
poll of the withdrawal (payout) until it reads `returned`, then at once the wallet's
(merchant's) balance: it must be the returned one, several times over."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from paylib import BANK_R01, TIMEOUT_S, Env, card_payment, check, expect  # noqa: E402
import time  # noqa: E402

ROUNDS = 3


def poll_status(client, path, status):
    """GETs 'path' back to back (no sleep: the first read that shows 'status' counts)
    until its status is 'status'."""
    deadline = time.time() + 6 * TIMEOUT_S
    while time.time() < deadline:
        r = expect(client.get(path), 200, what="poll " + path)
        if r.json["status"] == status:
            return r.json
    check(False, "%s never reached %s" % (path, status))


def wallet_rounds(m):
    w = expect(m.post("/v1/wallets", {"owner_id": "C1", "currency": "EUR"}), 201, what="wallet").json
    top = card_payment(5000, payer="C1")
    del top["capture_method"]
    expect(m.post("/v1/wallets/%s/top_ups" % w["id"], top), 201, what="top up")
    for i in range(ROUNDS):
        before = expect(m.get("/v1/wallets/" + w["id"]), 200).json["balance"]["available"]
        wd = expect(m.post("/v1/wallets/%s/withdrawals" % w["id"], {"amount": 100 + i, "owner_id": "C1",
                                                                   "bank_account": BANK_R01}), 201,
                    what="withdraw").json
        poll_status(m, "/v1/payouts/" + wd["id"], "returned")
        now = expect(m.get("/v1/wallets/" + w["id"]), 200).json["balance"]["available"]
        check(now == before, "round %d: withdrawal returned, the wallet read right after holds %d, want %d"
              % (i, now, before))


def payout_rounds(m, admin, merchant_id):
    expect(m.post("/v1/payments", card_payment(9000, capture="automatic")), 201, what="funds")
    account = "mer:%s:EUR:available" % merchant_id

    def available():
        a = expect(admin.get("/v1/accounts/" + account), 200, what="merchant account").json
        return a["credits_posted"] - a["debits_posted"] - a["debits_pending"]
    for i in range(ROUNDS):
        before = available()
        po = expect(m.post("/v1/payouts", {"amount": 200 + i, "currency": "EUR", "bank_account": BANK_R01}), 201,
                    what="payout").json
        poll_status(m, "/v1/payouts/" + po["id"], "returned")
        now = available()
        check(now == before, "round %d: payout returned, the available balance read right after is %d, want %d"
              % (i, now, before))


def main():
    os.environ["PAYCORE_TEST_SHADOW_PUBLISH_DELAY_MS"] = "150"
    env = Env()
    try:
        env.start()
        m = env.merchant("mread")
        wallet_rounds(m)
        payout_rounds(m, env.admin, "mread")
        env.stop()
        env.server.check_sanitizers()
    finally:
        env.close()
    print("balances read after a returned payout or withdrawal: ok")


if __name__ == "__main__":
    main()
