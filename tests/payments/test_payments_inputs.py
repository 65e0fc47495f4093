"""Goal: every bad input to the payments API is refused with its own stable code from
status.def and the field named, and changes nothing: no payment, no ledger account,
no balance, no transfer moves. A replayed Idempotency-Key with another body is 409.
Method: a real server with real simulators; a snapshot of every ledger account (with
its balances) and every payment before each refused request is compared with one
after it."""
import copy
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paylib import BANK_OK, Env, card_payment, check, expect  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../api"))
from pcapi import all_accounts  # noqa: E402


def snapshot(env):
    accounts = sorted((a["id"], a["debits_posted"], a["credits_posted"], a["debits_pending"], a["credits_pending"])
                      for a in all_accounts(env.admin))
    payments = expect(env.admin.get("/v1/payments?limit=100"), 200).json["data"]
    return accounts, sorted((p["id"], p["status"], p["version"]) for p in payments)


def refused(env, client, path, body, status, code, field, what, raw=None, headers=None):
    before = snapshot(env)
    if raw is not None:
        r = client.request("POST", path, raw=raw, headers=headers)
    else:
        r = client.post(path, body, headers=headers)
    expect(r, status, code, what)
    got = r.json["error"].get("field")
    check(got == field, "%s: field %r, want %r (%r)" % (what, got, field, r.json))
    check(snapshot(env) == before, "%s changed something" % what)


def with_(body, path, value):
    """A copy of 'body' with the dotted 'path' set to 'value' (None: deleted)."""
    out = copy.deepcopy(body)
    node = out
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[k]
    if value is None:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return out


def payments_inputs(env, m):
    good = card_payment(1000)
    cases = [
        ("amount", 19.99, "amount_not_integer", "amount"),
        ("amount", "1000", "amount_not_integer", "amount"),
        ("amount", 0, "amount_out_of_range", "amount"),
        ("amount", 1000000000000001, "amount_out_of_range", "amount"),
        ("amount", None, "field_missing", "amount"),
        ("currency", "EURO", "string_too_long", "currency"),
        ("currency", "XYZ", "currency_invalid", "currency"),
        ("currency", "USD", "currency_not_accepted", "currency"),
        ("capture_method", "later", "value_out_of_range", "capture_method"),
        ("payment_method.type", "crypto", "payment_method_unknown", "payment_method.type"),
        ("payment_method.card.number", "4242424242424241", "card_number_invalid", "payment_method.card.number"),
        ("payment_method.card.number", "42424242", "card_number_invalid", "payment_method.card.number"),
        ("payment_method.card.number", "4242x24242424242", "card_number_invalid", "payment_method.card.number"),
        ("payment_method.card.number", 4242424242424242, "field_type", "payment_method.card.number"),
        ("payment_method.card.exp_month", 13, "card_expiry_invalid", "payment_method.card.exp_month"),
        ("payment_method.card.exp_year", 2020, "card_expired", "payment_method.card.exp_year"),
        ("payment_method.card.cvc", "12", "card_cvc_invalid", "payment_method.card.cvc"),
        ("payment_method.card.cvc", "12345", "card_cvc_invalid", "payment_method.card.cvc"),
        ("payment_method.card.colour", "red", "field_unknown", "payment_method.card.colour"),
        ("payer", None, "field_missing", "payer"),
        ("payer.id", "no spaces", "id_invalid", "payer.id"),
        ("payer.country", "de", "country_invalid", "payer.country"),
        ("payer.ip", "300.1.2.3", "field_type", "payer.ip"),
        ("metadata", {"a": 1}, "metadata_invalid", "metadata"),
        ("description", "x" * 300, "string_too_long", "description"),
        ("surprise", 1, "field_unknown", "surprise"),
        ("merchant_id", "m2", "merchant_unknown", "merchant_id"),
    ]
    for path, value, code, field in cases:
        refused(env, m, "/v1/payments", with_(good, path, value), 400, code, field, "payments %s=%r" % (path, value))
    refused(env, env.admin, "/v1/payments", good, 400, "merchant_unknown", "merchant_id", "admin without merchant_id")
    refused(env, env.admin, "/v1/payments", dict(good, merchant_id="nope"), 400, "merchant_unknown", "merchant_id",
            "admin, unknown merchant")
    wallet = with_(good, "payment_method", {"type": "wallet", "wallet_id": "wal_nope"})
    refused(env, m, "/v1/payments", wallet, 400, "wallet_unknown", "payment_method.wallet_id", "unknown wallet")
    bank = with_(good, "payment_method", {"type": "bank_transfer", "bank_account": dict(BANK_OK, routing_number="1")})
    refused(env, m, "/v1/payments", bank, 400, "bank_account_invalid", "payment_method.bank_account.routing_number",
            "bad routing number")
    refused(env, m, "/v1/payments", None, 400, "json_invalid", None, "not JSON", raw=b"{\"amount\": ")
    refused(env, m, "/v1/payments", None, 400, "json_invalid", None, "not an object", raw=b"[1]")


def same_empty_bodies(env, client, path, status, code, what):
    """A capture's usual body "{}" (read without a JSON tree) answers as the same empty
    object spelled otherwise, and as no body at all: the same status and error body."""
    before = snapshot(env)
    answers = []
    for raw in (b"{}", b"{ }", b" {}", b"{}\n", b"{\n}", None):
        r = client.request("POST", path, raw=raw)
        expect(r, status, code, "%s, body %r" % (what, raw))
        answers.append(r.json)
    check(all(a == answers[0] for a in answers), "%s: answers differ: %r" % (what, answers))
    check(snapshot(env) == before, "%s changed something" % what)


def follow_up_inputs(env, m):
    p = expect(m.post("/v1/payments", card_payment(1000)), 201, what="payment").json
    base = "/v1/payments/%s/" % p["id"]
    refused(env, m, base + "capture", {"amount": 1001}, 400, "capture_exceeds_authorized", "amount", "capture > auth")
    refused(env, m, base + "capture", {"amount": 1.5}, 400, "amount_not_integer", "amount", "capture real")
    refused(env, m, base + "capture", {"amount": -3}, 400, "amount_out_of_range", "amount", "capture negative")
    refused(env, m, base + "capture", {"amount": 5, "now": True}, 400, "field_unknown", "now", "capture field")
    refused(env, m, base + "capture", {"final": "yes"}, 400, "field_type", "final", "capture final type")
    refused(env, m, "/v1/payments/pay_nope/capture", {}, 404, "payment_not_found", None, "capture unknown")
    refused(env, m, base + "confirm", {"code": "1"}, 409, "payment_state_conflict", None, "confirm authorized")
    expect(m.post(base + "capture", {}), 200, what="capture")
    same_empty_bodies(env, m, base + "capture", 409, "payment_state_conflict", "capture of a captured payment")
    same_empty_bodies(env, m, "/v1/payments/pay_nope/capture", 404, "payment_not_found", "capture unknown")
    for raw in (b"{}}", b"{", b"{}x", b"[]"):
        before = snapshot(env)
        r = m.request("POST", base + "capture", raw=raw)
        check(r.status == 400 and r.json["error"]["code"] in ("json_invalid", "json_not_object"),
              "capture body %r: %r %r" % (raw, r.status, r.json))
        check(snapshot(env) == before, "capture body %r changed something" % raw)
    refused(env, m, base + "refunds", {"amount": 1001}, 400, "refund_exceeds_captured", "amount", "refund > captured")
    refused(env, m, base + "refunds", {"amount": "1"}, 400, "amount_not_integer", "amount", "refund string")
    refused(env, m, base + "refunds", {"reason": 7}, 400, "field_type", "reason", "refund reason type")


def merchant_inputs(env):
    good = {"id": "mq", "name": "Q", "country": "DE", "default_currency": "EUR"}
    cases = [
        ("id", "x" * 33, "id_invalid", "id"),
        ("id", "has space", "id_invalid", "id"),
        ("country", "DEU", "country_invalid", "country"),
        ("default_currency", "EUX", "currency_invalid", "default_currency"),
        ("time_zone", "Mars/Olympus_Mons", "time_zone_invalid", "time_zone"),
        ("time_zone", "../../etc/passwd", "time_zone_invalid", "time_zone"),
        ("business_day_cutoff", "25:00", "business_day_cutoff_invalid", "business_day_cutoff"),
        ("pricing", {"default": {"bps": 10001}}, "pricing_invalid", "pricing.default.bps"),
        ("pricing", {"default": {"bps": 10, "fixed_minor": -1}}, "pricing_invalid", "pricing.default.fixed_minor"),
        ("pricing", {"default": {"bps": 10, "x": 1}}, "field_unknown", "pricing.default.x"),
        ("currencies", ["USD"], "currency_not_accepted", "default_currency"),
        ("currencies", ["EUR", "EUR"], "value_out_of_range", "currencies[1]"),
        ("webhook_urls", ["ftp://x"], "field_type", "webhook_urls[0]"),
        ("mcc", 10000, "value_out_of_range", "mcc"),
        ("name", None, "field_missing", "name"),
    ]
    for key, value, code, field in cases:
        refused(env, env.admin, "/v1/merchants", with_(good, key, value), 400, code, field, "merchant %s" % key)
    expect(env.admin.post("/v1/merchants", good), 201, what="merchant")
    again = expect(env.admin.post("/v1/merchants", good), 200, what="the same merchant again").json
    check(again["id"] == "mq", "idempotent: %r" % again)
    refused(env, env.admin, "/v1/merchants", dict(good, name="Other"), 409, "merchant_exists", "id", "another body")


def money_out_inputs(env, m):
    refused(env, m, "/v1/payouts", {"amount": 10, "currency": "EUR", "bank_account": {"routing_number": "110000000",
            "account_number": "12"}}, 400, "bank_account_invalid", "bank_account.account_number", "payout account")
    refused(env, m, "/v1/payouts", {"amount": 10 ** 9, "currency": "EUR", "bank_account": BANK_OK}, 422,
            "exceeds_credits", "amount", "payout above the balance")
    refused(env, m, "/v1/wallets", {"currency": "EUR"}, 400, "field_missing", "owner_id", "wallet owner")
    refused(env, m, "/v1/wallets", {"owner_id": "C1", "currency": "JPY"}, 400, "currency_not_accepted", "currency",
            "wallet currency")


def wallet_inputs(env, m):
    """Who pays is checked on every wallet path: a top-up, a wallet payment and a
    withdrawal by anyone but the owner; a top-up's own bad inputs."""
    w = expect(m.post("/v1/wallets", {"owner_id": "C1", "currency": "EUR"}), 201, what="wallet").json
    top = card_payment(100, payer="C2")
    del top["capture_method"]
    path = "/v1/wallets/%s/top_ups" % w["id"]
    refused(env, m, path, top, 400, "wallet_owner_mismatch", "payer.id", "top-up by another payer")
    refused(env, m, path, with_(top, "payer", None), 400, "field_missing", "payer", "top-up without a payer")
    own = with_(top, "payer.id", "C1")
    refused(env, m, path, dict(own, merchant_id="m1"), 400, "field_unknown", "merchant_id", "top-up merchant_id")
    refused(env, m, path, with_(own, "payment_method", {"type": "wallet", "wallet_id": w["id"]}), 400,
            "payment_method_unknown", "payment_method.type", "a wallet topping up a wallet")
    refused(env, m, "/v1/wallets/wal_nope/top_ups", own, 404, "wallet_not_found", None, "top-up of no wallet")
    pay = with_(card_payment(100, payer="C2"), "payment_method", {"type": "wallet", "wallet_id": w["id"]})
    refused(env, m, "/v1/payments", pay, 400, "wallet_owner_mismatch", "payer.id", "paying from another's wallet")
    refused(env, m, "/v1/wallets/%s/withdrawals" % w["id"], {"amount": 1, "owner_id": "C2", "bank_account": BANK_OK},
            400, "wallet_owner_mismatch", "owner_id", "withdrawing from another's wallet")


def overflow_inputs(env, m):
    """Amounts beyond int64 or beyond 10^15, in every amount field."""
    good = card_payment(1000)
    refused(env, m, "/v1/payments", None, 400, "amount_out_of_range", "amount", "amount beyond 64 bits",
            raw=json.dumps(good).replace('"amount": 1000', '"amount": 9223372036854775808').encode())
    refused(env, m, "/v1/payments", with_(good, "amount", 9223372036854775807), 400, "amount_out_of_range", "amount",
            "amount at int64 max")
    p = expect(m.post("/v1/payments", good), 201, what="payment").json
    base = "/v1/payments/%s/" % p["id"]
    refused(env, m, base + "capture", {"amount": 9223372036854775807}, 400, "amount_out_of_range", "amount",
            "capture at int64 max")
    refused(env, m, base + "capture", {"amount": 0}, 400, "amount_out_of_range", "amount", "capture of 0")
    expect(m.post(base + "capture", {}), 200, what="capture")
    refused(env, m, base + "refunds", {"amount": 9223372036854775807}, 400, "amount_out_of_range", "amount",
            "refund at int64 max")
    refused(env, m, base + "refunds", {"amount": 0}, 400, "amount_out_of_range", "amount", "refund of 0")


def idempotency(env, m):
    key = {"Idempotency-Key": "pay-1"}
    first = expect(m.post("/v1/payments", card_payment(1234), headers=key), 201, what="first").json
    again = m.post("/v1/payments", card_payment(1234), headers=key)
    expect(again, 201, what="replay")
    check(again.json["id"] == first["id"] and again.headers.get("idempotent-replayed") == "true",
          "the same answer, replayed: %r" % again.headers)
    refused(env, m, "/v1/payments", card_payment(4321), 409, "idempotency_key_reused", "Idempotency-Key",
            "the key with another body", headers=key)




def channel_currency():
    """A currency the merchant takes and no card channel does: 400, nothing stored (no
    payment, no risk decision, no vaulted card)."""
    env = Env(channel_fields={"card": {"eligibility": {"currencies": ["EUR"]}}})  # the merchant: EUR and USD
    try:
        env.start()
        m = env.merchant("m1", currencies=("EUR", "USD"))
        refused(env, m, "/v1/payments", card_payment(100, currency="USD"), 400, "currency_not_accepted", "currency",
                "a currency no channel takes")
        expect(m.post("/v1/payments", card_payment(100)), 201, what="EUR still goes")
        env.stop()
    finally:
        env.close()


def main():
    channel_currency()
    env = Env()
    try:
        env.start()
        m = env.merchant("m1")
        env.merchant("m2")
        payments_inputs(env, m)
        follow_up_inputs(env, m)
        merchant_inputs(env)
        money_out_inputs(env, m)
        wallet_inputs(env, m)
        overflow_inputs(env, m)
        idempotency(env, m)
        env.stop()
    finally:
        env.close()
    print("payments inputs: ok")


if __name__ == "__main__":
    main()
