"""Goal: a card payment whose body the API reads straight from its bytes (plain texts,
no metadata: api/codec_fast.c) ends exactly as the same payment sent in a body only the
full JSON path reads (an escaped character, a null member, an empty metadata object,
another member order and spacing): the same status, the same answer but for its ids,
times and risk decision's number, the same operations. And values the payments layer
refuses, in a plain body, get the full path's code and field.
Method: a real server and simulators; each pair is sent with payers of their own (the
risk rules see the same history), the answers compared after removing what is unique
to each payment; then plain bodies with one bad value each."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paylib import Env, card_payment, check, expect  # noqa: E402

UNIQUE = {"id", "created", "updated", "token", "decision_id", "expires_at", "transfer_id", "idempotency_key",
          "ledger_transfers", "channel_ref", "reserve_transfer_id", "routing"}


def comparable(value):
    """The answer less what each payment has of its own (ids (the payer's too), times)."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k not in UNIQUE}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def pair(m, plain, full_raw, what):
    """'plain' as JSON (the fast path) and 'full_raw' (bytes only the full path reads)."""
    a = m.post("/v1/payments", plain)
    b = m.request("POST", "/v1/payments", raw=full_raw)
    check(a.status == b.status, "%s: status %d plain, %d full (%r / %r)" % (what, a.status, b.status, a, b))
    ja, jb = comparable(a.json), comparable(b.json)
    check(ja == jb, "%s: plain %r\n full %r" % (what, ja, jb))
    return a.json, b.json


def equivalence(m):
    base = card_payment(1234, payer="PA1", description="Abc", capture="manual")
    full = json.dumps(card_payment(1234, payer="PB1", capture="manual")).replace(
        '"payer":', '"description": "\\u0041bc", "payer":')
    a, _ = pair(m, base, full.encode(), "escaped description")
    check(a["description"] == "Abc" and a["status"] == "authorized", "plain payment: %r" % a)
    with_null = card_payment(500, payer="PB2", capture="automatic")
    with_null["payer"]["device_id"] = None
    pair(m, card_payment(500, payer="PA2", capture="automatic"), json.dumps(with_null).encode(), "null member")
    empty_metadata = card_payment(700, payer="PB3", metadata={})
    pair(m, card_payment(700, payer="PA3"), json.dumps(empty_metadata).encode(), "empty metadata")
    spaced = json.dumps(card_payment(900, payer="PB4", description="x y"), indent=2, sort_keys=True)
    pair(m, card_payment(900, payer="PA4", description="x y"), spaced.encode(), "order and spacing")
    # a plain body sent with odd spacing and a reversed member order also takes the fast path
    plain_spaced = '  {"payer" : {"country":"DE" , "id":"PA5"},"payment_method":{"card":{"cvc":"123","exp_year":2030,' \
                   '"exp_month":12,"number":"4242424242424242"},"type":"card"},"capture_method":"manual",' \
                   '"currency":"EUR","amount":1500}\n'
    full5 = json.dumps(card_payment(1500, payer="PB5")).replace('"cvc": "123"', '"cvc": "\\u0031\\u00323"')
    a = expect(m.request("POST", "/v1/payments", raw=plain_spaced.encode()), 201, what="plain, spaced").json
    b = expect(m.request("POST", "/v1/payments", raw=full5.encode()), 201, what="escaped cvc").json
    ca, cb = comparable(a), comparable(b)
    check(ca == cb, "spaced plain %r\n escaped %r" % (ca, cb))
    capture = expect(m.post("/v1/payments/%s/capture" % a["id"], {}), 200, what="capture").json
    check(capture["status"] == "captured" and capture["amount_captured"] == 1500, "capture: %r" % capture)


def refusals(m):
    """Plain bodies the payments layer refuses: the full path's code and field."""
    cases = [
        (card_payment(0), "amount_out_of_range", "amount"),
        (card_payment(1000, currency="XYZ"), "currency_invalid", "currency"),
        (card_payment(1000, currency="USD"), "currency_not_accepted", "currency"),
        (card_payment(1000, capture="later"), "value_out_of_range", "capture_method"),
        (card_payment(1000, number="4242424242424241"), "card_number_invalid", "payment_method.card.number"),
        (card_payment(1000, payer="no spaces"), "id_invalid", "payer.id"),
        (card_payment(1000, merchant_id="m2"), "merchant_unknown", "merchant_id"),
        (card_payment(1000, extra="x"), "field_unknown", "extra"),
    ]
    expired = card_payment(1000)
    expired["payment_method"]["card"]["exp_year"] = 2020
    cases.append((expired, "card_expired", "payment_method.card.exp_year"))
    country = card_payment(1000)
    country["payer"]["country"] = "de"
    cases.append((country, "country_invalid", "payer.country"))
    ip = card_payment(1000)
    ip["payer"]["ip"] = "300.1.2.3"
    cases.append((ip, "field_type", "payer.ip"))
    for body, code, field in cases:
        r = m.post("/v1/payments", body)
        check(r.status in (400, 404, 422), "%s: %r" % (code, r))
        check(r.json["error"]["code"] == code, "%s: got %r" % (code, r.json))
        check(r.json["error"].get("field") == field, "%s: field %r, want %r" % (code, r.json["error"].get("field"),
                                                                             field))


def main():
    env = Env()
    try:
        env.start()
        m = env.merchant("m1")
        env.merchant("m2")
        equivalence(m)
        refusals(m)
        env.stop()
    finally:
        env.close()
    print("payments plain bodies: ok")


if __name__ == "__main__":
    main()
