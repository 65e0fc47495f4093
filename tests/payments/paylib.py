"""tests/payments/paylib.py: helpers for the payments tests: a real `paycore serve`
with real card and bank simulator processes on loopback ports, a risk rules file, a
merchant and its key, and checks of payments against the ledger. Not a test itself
(no test_ prefix)."""
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../api"))
sys.path.insert(0, os.path.join(HERE, "../gateway"))
from pcapi import BIN, TIMEOUT_S, Server, check, expect, fail, free_port  # noqa: E402,F401
import simlib  # noqa: E402

RULES = """# payments tests: these payers are declined or sent to review by rule
block payer=P_DECLINE
block payer=P_REVIEW action=review reason=watchlist
"""

CARD = "4242424242424242"          # approved, unlimited balance
CARD_3DS = "4000002760003184"      # the simulator's 3-D Secure range
CARD_DECLINE = "4000000000000051"  # 05 do not honour
BANK_OK = {"routing_number": "110000000", "account_number": "000123456789"}
BANK_R01 = {"routing_number": "110000000", "account_number": "00012349901"}
CALLBACK_SECRET = "whsec-paytest"


def pay_records(db, object_id=None):
    """The payment records of a SQLite file, each unpacked by the store's own code (since
    schema version 16 a record is stored packed): dicts of seq, object_id, version,
    stored ("text" or "packed"), stored_bytes and doc (the record's text), in seq order."""
    tool = os.environ.get("PAYCORE_PAY_RECORDS") or os.path.join(os.path.dirname(BIN), "pay_records")
    args = [tool, db] + ([object_id] if object_id is not None else [])
    out = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT_S)
    check(out.returncode == 0, "pay_records %s: %s" % (db, out.stderr[-500:]))
    return [json.loads(line) for line in out.stdout.splitlines()]


def wait_for(what, predicate):
    """Polls 'predicate' (never a fixed sleep) until true; fails after TIMEOUT_S."""
    return simlib.wait_until(predicate, what, TIMEOUT_S)


class Sim(simlib.Sim):
    """A simulator process in its own directory (its record is the channel's, not
    paycore's), with a JSON call helper."""

    def __init__(self, kind, config=None, secret=None):
        simlib.Sim.__init__(self, kind, config=config, secret=secret)
        self.start()
        self.url = "http://127.0.0.1:%d" % self.port

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")


def callback_url(port):
    """The bank channel's callback route on a server listening on 'port'."""
    return "http://127.0.0.1:%d/v1/channels/bank/callbacks" % port


class Env:
    """One database, the simulators and a server that can be restarted (or killed).
    'channel_fields' ({kind: {field: value}}) overrides fields of the channel of that
    kind in the channels file (the bank's callback_url, a timeout, an eligibility)."""

    def __init__(self, card_config=None, bank_config=None, extra_args=None, inquiry_delay_ms=200,
                 card_timeout_ms=5000, channel_fields=None):
        self.server = Server()
        self.dir = self.server.dir
        self.card = Sim("card", config=card_config or {"seed": 7})
        self.bank = Sim("bank", secret=CALLBACK_SECRET,
                        config=bank_config or {"settle_delay_ms": 100, "callback_retry_base_ms": 50,
                                               "callback_retry_max_ms": 500})
        self.rules = os.path.join(self.dir, "risk.rules")
        with open(self.rules, "w") as f:
            f.write(RULES)
        self.channels = os.path.join(self.dir, "channels.json")
        self.extra_args = extra_args or []
        self.inquiry_delay_ms = inquiry_delay_ms
        self.card_timeout_ms = card_timeout_ms
        self.channel_fields = channel_fields or {}
        self.port = None
        self.admin = None

    def write_channels(self, port):
        config = {
            "channels": [
                {"name": "card", "kind": "card", "url": self.card.url, "timeout_ms": self.card_timeout_ms,
                 "connect_timeout_ms": 1000},
                {"name": "bank", "kind": "bank", "url": self.bank.url, "callback_secret": CALLBACK_SECRET,
                 "callback_url": callback_url(port)},
            ],
            "status_inquiry": {"delay_ms": self.inquiry_delay_ms, "attempts": 3, "interval_ms": 200},
        }
        for channel in config["channels"]:
            channel.update(self.channel_fields.get(channel["kind"], {}))
        with open(self.channels, "w") as f:
            json.dump(config, f)

    def start(self, more_args=None):
        for attempt in range(5):
            port = self.port or free_port()
            self.write_channels(port)
            args = ["--listen", "127.0.0.1:%d" % port, "--channels", self.channels, "--risk-rules", self.rules,
                    "--payments-recovery-ms", "200", "--payments-recovery-grace-ms", "1000"]
            self.server.extra_args = []
            try:
                self.server.start(args + self.extra_args + (more_args or []))
            except SystemExit:
                if "address_in_use" in self.server.log() and attempt < 4 and self.port is None:
                    continue
                raise
            self.port = port
            self.admin = self.server.client()
            return self
        fail("no free port for the server")

    def stop(self, sig=None):
        import signal
        return self.server.stop(sig or signal.SIGTERM)

    def close(self):
        try:
            self.server.close()
        finally:
            for sim in (self.card, self.bank):
                sim.close()

    def client(self, key=None):
        return self.server.client(key)

    def merchant(self, merchant_id, currencies=("EUR",), pricing=None, **kw):
        body = {"id": merchant_id, "name": "Shop " + merchant_id, "country": "DE",
                "default_currency": currencies[0], "currencies": list(currencies),
                "pricing": pricing or {"default": {"bps": 290, "fixed_minor": 30}}}
        body.update(kw)
        expect(self.admin.post("/v1/merchants", body), 201, what="create merchant " + merchant_id)
        resp = expect(self.admin.post("/v1/merchants/%s/keys" % merchant_id, {"name": "key " + merchant_id}), 201,
                      what="merchant key")
        return self.client(resp.json["key"])


def card_payment(amount, currency="EUR", capture="manual", number=CARD, payer="P1", merchant_id=None, **kw):
    body = {"amount": amount, "currency": currency, "capture_method": capture,
            "payment_method": {"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2030,
                                                        "cvc": "123"}},
            "payer": {"id": payer, "country": "DE"}}
    if merchant_id is not None:
        body["merchant_id"] = merchant_id
    body.update(kw)
    return body


def account(client, account_id):
    return expect(client.get("/v1/accounts/" + account_id), 200, what="account " + account_id).json


def balance(client, account_id):
    """credits - debits, posted (credit-normal accounts)."""
    a = account(client, account_id)
    return a["credits_posted"] - a["debits_posted"]


def transfer(client, transfer_id):
    return expect(client.get("/v1/transfers/" + transfer_id), 200, what="transfer " + transfer_id).json


def all_pages(client, path):
    """Every item of a listing ('path' without a query), page by page: limit 100, starting_after."""
    out, after = [], None
    while True:
        page = expect(client.get(path + "?limit=100" + ("&starting_after=" + after if after else "")), 200).json
        out += page["data"]
        if not page["has_more"]:
            return out
        after = page["data"][-1]["id"]


def ledger_amounts(admin, payment):
    """A payment's authorized / captured / refunded / fees as its ledger transfers say,
    read by each transfer's role (its id's suffix, docs/accounting.md)."""
    out = {"authorized": 0, "captured": 0, "refunded": 0, "fees": 0, "fees_reversed": 0}
    for tid in payment["ledger_transfers"]:
        t = transfer(admin, tid)
        role = tid.rsplit(":", 1)[1]
        if role == "hold":
            out["authorized"] += t["amount"]
        elif role == "post" and (t.get("pending_id") or "").rsplit(":", 1)[-1] in ("hold", "rehold"):
            out["captured"] += t["amount"]
        elif role == "capture":
            out["captured"] += t["amount"]
        elif role == "pay":
            out["authorized"] += t["amount"]
            out["captured"] += t["amount"]
        elif role == "fee":
            out["fees"] += t["amount"]
        elif role == "refund":
            out["refunded"] += t["amount"]
        elif role == "fee_back":
            out["fees_reversed"] += t["amount"]
    return out


def check_payment_ledger(admin, payment, what):
    """The payment's own amounts equal what its ledger transfers moved."""
    amounts = ledger_amounts(admin, payment)
    check(amounts["captured"] == payment["amount_captured"],
          "%s: captured %d in the ledger, %d in the payment" % (what, amounts["captured"], payment["amount_captured"]))
    check(amounts["refunded"] == payment["amount_refunded"],
          "%s: refunded %d vs %d" % (what, amounts["refunded"], payment["amount_refunded"]))
    check(amounts["fees"] == payment["fees"], "%s: fees %d vs %d" % (what, amounts["fees"], payment["fees"]))
    check(amounts["fees_reversed"] == payment["fees_reversed"],
          "%s: fees reversed %d vs %d" % (what, amounts["fees_reversed"], payment["fees_reversed"]))
    if payment["payment_method"]["type"] == "card" and payment["amount_authorized"] > 0:
        check(amounts["authorized"] == payment["amount_authorized"],
              "%s: authorized %d vs %d" % (what, amounts["authorized"], payment["amount_authorized"]))


def check_payment_ledgers(admin, payment_ids):
    """check_payment_ledger for each payment, as it reads now."""
    for pid in payment_ids:
        check_payment_ledger(admin, expect(admin.get("/v1/payments/" + pid), 200).json, pid)


def wait_status(client, payment_id, statuses, what=""):
    def probe():
        p = client.get("/v1/payments/" + payment_id).json
        return p if p and p.get("status") in statuses and not p.get("pending_operation") else None
    return wait_for("%s payment %s in %s" % (what, payment_id, statuses), probe)
