"""Goal: a bank's signed callbacks reach paycore (POST /v1/channels/{name}/callbacks):
a wrong signature, a stale one or an unknown channel is refused, so the bank keeps
delivering, and the same callback is acknowledged once the channel's secret is right;
settled and returned (R01) results are read through the bank's code table.
Method: a real bank simulator posting to a real server on loopback; the server's
channels file first holds a wrong callback_secret, then the right one (reloaded);
forged callbacks are posted by hand with Python's hmac."""
import hashlib
import hmac
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from simlib import Sim, check, wait_until  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../api"))
from pcapi import Server, expect  # noqa: E402

SECRET = "test-secret"


def channels_file(path, bank_url, secret):
    with open(path, "w") as f:
        json.dump({"channels": [{"name": "bank", "kind": "bank", "url": bank_url, "callback_secret": secret}]}, f)


def signed(body, secret, t=None):
    t = int(time.time()) if t is None else t
    mac = hmac.new(secret.encode(), ("%d." % t).encode() + body, hashlib.sha256).hexdigest()
    return {"Sim-Signature": "t=%d,v1=%s" % (t, mac)}


def transfer(bank, callback_url, account_number, key):
    resp = bank.client().post("/v1/transfers", {
        "direction": "credit", "amount": 2500, "currency": "EUR",
        "account": {"routing_number": "110000000", "account_number": account_number},
        "callback_url": callback_url, "reference": "payout-" + key}, key=key)
    check(resp.status == 202 and resp.json["status"] == "pending", "transfer: %r" % resp)
    return resp.json["id"]


def callback_state(bank, transfer_id):
    resp = bank.client().get("/v1/transfers/" + transfer_id)
    check(resp.status == 200, "GET transfer: %r" % resp)
    return resp.json


def main():
    server = Server()
    bank = Sim("bank", secret=SECRET,
               config={"settle_delay_ms": 20, "callback_retry_base_ms": 20, "callback_retry_max_ms": 200}).start()
    bank_url = "http://127.0.0.1:%d" % bank.port
    path = os.path.join(server.dir, "channels.json")
    try:
        channels_file(path, bank_url, "not-the-secret")
        server.start(["--channels", path])
        client = server.client()
        callback_url = "http://127.0.0.1:%d/v1/channels/bank/callbacks" % server.port

        # a wrong secret on paycore's side: refused, the bank keeps trying
        settled_id = transfer(bank, callback_url, "000123456789", "k-settled")
        wait_until(lambda: callback_state(bank, settled_id)["callback"]["attempts"] >= 3,
                   "repeated refused deliveries")
        state = callback_state(bank, settled_id)
        check(state["callback"]["delivered"] is False and state["callback"]["last_http_status"] == 400,
              "refused delivery: %r" % state)
        check("callback for channel bank refused: signature" in server.log(), "refusal logged")

        # the right secret: the same callback is acknowledged on its next delivery
        channels_file(path, bank_url, SECRET)
        expect(client.post("/v1/admin/reload"), 200, what="reload")
        wait_until(lambda: callback_state(bank, settled_id)["callback"]["delivered"], "delivery")
        wait_until(lambda: "transfer %s settled (approved)" % settled_id in server.log(), "settled logged")

        for suffix, code, outcome in [("9901", "R01", "soft_decline"), ("9902", "R02", "hard_decline"),
                                      ("9903", "R03", "hard_decline")]:
            returned_id = transfer(bank, callback_url, "00012345" + suffix, "k-returned-" + code)
            wait_until(lambda: callback_state(bank, returned_id)["callback"]["delivered"], "returned delivery")
            check("transfer %s %s (%s)" % (returned_id, code, outcome) in server.log(),
                  "%s read through the table" % code)

        # forged or stale callbacks by hand
        body = json.dumps({"id": "bt_forged", "idempotency_key": "k-f", "status": "settled", "return_code": None,
                           "amount": 1, "currency": "EUR", "reference": "x"}).encode()
        anon = server.client(key="")
        r = anon.request("POST", "/v1/channels/bank/callbacks", raw=body, headers=signed(body, "guess"))
        expect(r, 400, "gateway_callback_invalid", "wrong key")
        r = anon.request("POST", "/v1/channels/bank/callbacks", raw=body,
                         headers=signed(body, SECRET, int(time.time()) - 3600))
        expect(r, 400, "gateway_callback_invalid", "stale signature")
        r = anon.request("POST", "/v1/channels/bank/callbacks", raw=body)
        expect(r, 400, "gateway_callback_invalid", "no signature")
        r = anon.request("POST", "/v1/channels/nope/callbacks", raw=body, headers=signed(body, SECRET))
        expect(r, 404, "gateway_channel_unknown", "unknown channel")
        tampered = body.replace(b'"amount": 1', b'"amount": 9')
        r = anon.request("POST", "/v1/channels/bank/callbacks", raw=tampered, headers=signed(body, SECRET))
        expect(r, 400, "gateway_callback_invalid", "body changed after signing")
        r = anon.request("POST", "/v1/channels/bank/callbacks", raw=body, headers=signed(body, SECRET))
        expect(r, 200, what="a well-signed callback")
        check(r.json == {"received": True, "id": "bt_forged", "outcome": "approved", "matched": False,
                         "message": "matches no operation sent on this channel; nothing changed"},
              "answer: %r" % r.json)
        junk = b'{"id":"bt_x","status":"maybe"}'
        r = anon.request("POST", "/v1/channels/bank/callbacks", raw=junk, headers=signed(junk, SECRET))
        expect(r, 400, "gateway_callback_invalid", "a signed body that is no result")
        check(server.stop() == 0, "clean stop")
    finally:
        bank.close()
        server.close()
    print("gateway callbacks: ok")


if __name__ == "__main__":
    main()
