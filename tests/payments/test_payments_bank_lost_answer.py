"""Goal: when the bank's answer to a transfer is lost (the POST times out), the gateway's
status inquiry by the attempt's key decides, whatever the bank did meanwhile:
- it settled the payout: the payout is paid at once (201, "paid", the ledger's reserve
  posted through payouts in transit), the same answer replayed byte for byte under the
  request's Idempotency-Key;
- it returned it (R01): the payout is "returned", its reserve voided (the merchant's
  available balance as before), 201 with the return code;
- it never received it (the status route answers not found): nothing was applied, so
  with no other bank channel the payout fails at once, its reserve released; the bank
  holds no transfer for it;
- a bank-transfer top-up the bank settled: captured into the wallet at once; one it
  returned: declined, the wallet unchanged.
Before, the inquiry took only "pending" as an answer: a settled or returned transfer
read as a bad answer, and the operation stayed pending until recovery asked again.
Method: real `paycore serve`, real card and bank simulators. The bank simulator's
faults hold every transfer's answer past the channel's timeout (applied first, or not
at all), it decides a transfer as soon as it is accepted (settle_delay_ms 0), and its
callbacks go to a port nobody listens on, so only the inquiry can tell paycore. The
ledger balances after every step; `paycore verify` passes at the end."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paylib import (BANK_OK, BANK_R01, BIN, TIMEOUT_S, Env, callback_url, card_payment, check, expect,  # noqa: E402
                    free_port)
from pcapi import check_conserved  # noqa: E402

HOLD_MS = 3000      # the bank holds its answer this long
TIMEOUT_MS = 800    # the bank channel's timeout
INQUIRY_MS = 1500   # the gateway's first status inquiry after a lost answer


def lost_answer_env(**kw):
    """The bank channel times out before the bank answers; its callbacks go nowhere."""
    bank = {"timeout_ms": TIMEOUT_MS, "connect_timeout_ms": TIMEOUT_MS, "callback_url": callback_url(free_port())}
    return Env(channel_fields={"bank": bank}, **kw)


def faults(env, applied):
    status, body = env.bank.call("POST", "/v1/admin/faults", {"timeout_rate": 1.0, "timeout_applied_ratio": applied,
                                                             "timeout_hold_ms": HOLD_MS})
    check(status == 200, "bank faults: %d %r" % (status, body))


def amounts(env, account_id):
    a = expect(env.admin.get("/v1/accounts/" + account_id), 200).json
    return (a["debits_posted"], a["credits_posted"], a["debits_pending"], a["credits_pending"])


def bank_transfers(env, ref):
    return env.bank.rows("SELECT t.status, t.return_code FROM records r JOIN transfers t ON t.id = r.id"
                         " WHERE r.kind = 'transfer' AND r.merchant_ref = ?", (ref,))


AVAILABLE, TRANSIT = "mer:mk:EUR:available", "mer:mk:EUR:payouts"


def settled(env, m):
    faults(env, 1.0)
    before = {a: amounts(env, a) for a in (AVAILABLE, TRANSIT)}
    body = {"amount": 1000, "currency": "EUR", "bank_account": BANK_OK}
    r = expect(m.post("/v1/payouts", body, headers={"Idempotency-Key": "lost-settled"}), 201, what="payout settled")
    po = r.json
    check(po["status"] == "paid" and po["response_code"] == "settled",
          "the inquiry's settled answer pays the payout at once: %r" % po)
    check(bank_transfers(env, po["id"]) == [("settled", None)], "the bank settled it: %r" % bank_transfers(env, po["id"]))
    again = m.post("/v1/payouts", body, headers={"Idempotency-Key": "lost-settled"})
    check(again.status == 201 and again.raw == r.raw, "the replay answers the same bytes: %r" % again)
    after = {a: amounts(env, a) for a in (AVAILABLE, TRANSIT)}
    check(after[AVAILABLE][0] - before[AVAILABLE][0] == 1000 and after[AVAILABLE][2] == 0,
          "available: 1000 posted out, no reserve left: %r -> %r" % (before[AVAILABLE], after[AVAILABLE]))
    check(after[TRANSIT][0] - before[TRANSIT][0] == 1000 and after[TRANSIT][1] - before[TRANSIT][1] == 1000,
          "payouts in transit: 1000 in and out to the bank: %r -> %r" % (before[TRANSIT], after[TRANSIT]))
    check(expect(m.get("/v1/payouts/" + po["id"]), 200).json["status"] == "paid", "GET: paid")
    check_conserved(env.admin, "after the settled payout")


def returned(env, m):
    faults(env, 1.0)
    before = amounts(env, AVAILABLE)
    po = expect(m.post("/v1/payouts", {"amount": 700, "currency": "EUR", "bank_account": BANK_R01}), 201,
                what="payout returned").json
    check(po["status"] == "returned" and po["response_code"] == "R01",
          "the inquiry's returned answer returns the payout at once: %r" % po)
    check(bank_transfers(env, po["id"]) == [("returned", "R01")], "the bank returned it")
    after = amounts(env, AVAILABLE)
    check(after[0] == before[0] and after[1] == before[1] and after[2] == 0,
          "available: the reserve voided, nothing posted: %r -> %r" % (before, after))
    check_conserved(env.admin, "after the returned payout")


def not_found(env, m):
    faults(env, 0.0)
    before = amounts(env, AVAILABLE)
    r = m.post("/v1/payouts", {"amount": 300, "currency": "EUR", "bank_account": BANK_OK})
    check(r.status >= 400 and r.code() != "internal", "a payout the bank never received fails: %r" % r)
    listed = env.bank.rows("SELECT count(*) FROM transfers")[0][0]
    check(listed == 2, "the bank holds the two payouts before it, none for this one: %d" % listed)
    after = amounts(env, AVAILABLE)
    check(after[0] == before[0] and after[2] == 0, "its reserve released: %r -> %r" % (before, after))
    check_conserved(env.admin, "after the payout never received")
    return r.code(), listed


def top_ups(env, m, wallet_id):
    faults(env, 1.0)
    top = {"amount": 400, "currency": "EUR", "payment_method": {"type": "bank_transfer", "bank_account": BANK_OK},
           "payer": {"id": "C1", "country": "DE"}}
    t = expect(m.post("/v1/wallets/%s/top_ups" % wallet_id, top), 201, what="bank top-up settled").json
    check(t["status"] == "captured" and not t["pending_operation"], "a settled top-up is captured: %r" % t)
    check(t.get("routing") is not None, "the top-up keeps its routing decision: %r" % t)
    top["payment_method"]["bank_account"] = BANK_R01
    t = expect(m.post("/v1/wallets/%s/top_ups" % wallet_id, top), 201, what="bank top-up returned").json
    check(t["status"] == "declined" and not t["pending_operation"], "a returned top-up is declined: %r" % t)
    wallet = expect(m.get("/v1/wallets/" + wallet_id), 200).json
    check(wallet["balance"]["available"] == 400, "the wallet holds the settled top-up only: %r" % wallet)
    check_conserved(env.admin, "after the bank top-ups")


def main():
    env = lost_answer_env(bank_config={"settle_delay_ms": 0, "callback_retry_base_ms": 50,
                                     "callback_retry_max_ms": 500}, inquiry_delay_ms=INQUIRY_MS)
    try:
        env.start()
        m = env.merchant("mk")
        funding = expect(m.post("/v1/payments", card_payment(100000, capture="automatic")), 201).json
        check(funding["status"] == "captured", "funding captured: %r" % funding)
        w = expect(m.post("/v1/wallets", {"owner_id": "C1", "currency": "EUR"}), 201, what="wallet").json
        settled(env, m)
        returned(env, m)
        code, transfers = not_found(env, m)
        top_ups(env, m, w["id"])
        check(env.stop() == 0, "SIGTERM exits 0")
        out = subprocess.run([BIN, "verify"] + env.server.store_location_args(), capture_output=True, text=True,
                             timeout=TIMEOUT_S * 3)
        check(out.returncode == 0, "paycore verify: %s %s" % (out.stdout[-500:], out.stderr[-500:]))
        print("lost bank answers: settled paid, returned returned, never received failed (%s, the bank holds %d"
              " transfers), bank top-ups captured and declined: ok" % (code, transfers))
    finally:
        env.close()


if __name__ == "__main__":
    main()
