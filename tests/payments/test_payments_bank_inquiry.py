"""Goal: a payout, a withdrawal or a bank-transfer top-up whose bank callback never
arrives does not wait for ever: paycore's recovery asks the bank about every operation
still `processing` after --payments-bank-inquiry-ms, and the bank's status route
answers the transfer as it stands (settled, or returned with its code), which is
applied exactly as the callback would be: a settled payout is paid, a returned one is
reversed in the ledger once (the money back on the available balance or the wallet).
When the bank's callback finally gets through, it finds each operation final and
changes nothing.
Method: real `paycore serve`, real card and bank simulators. The bank's callbacks go
to a proxy in this test that answers 503 to each (the bank's deliveries fail for good)
until told to pass them on. Two payouts (one settles, one is returned R01), two
withdrawals (the same) and a bank top-up are made; after the bank decided them (its
record says so, and its callback attempts were refused), each is polled until final
(generous deadline, no timing asserted), with nothing passed on by the proxy: only
the inquiry can have ended them. Then the proxy passes the callbacks on: paycore
acknowledges each (the bank records delivery) and every operation, its ledger
transfers and every balance stay as they were. The ledger balances per currency after
every step, and `paycore verify` passes at the end."""
import http.server
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paylib import (BANK_OK, BANK_R01, BIN, TIMEOUT_S, Env, callback_url, card_payment, check,  # noqa: E402
                    expect, wait_for, wait_status)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../api"))
from pcapi import check_conserved  # noqa: E402

INQUIRY_MS = 1000


class CallbackProxy:
    """Stands between the bank and paycore's callback route: refuses (503) every
    delivery while 'dropping', else passes it on and records paycore's answer."""

    def __init__(self):
        self.dropping = True
        self.refused = 0
        self.answers = []
        self.target = None
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with proxy.lock:
                    dropping = proxy.dropping
                    if dropping:
                        proxy.refused += 1
                if dropping:
                    self.reply(503, b'{"error":{"code":"unavailable"}}')
                    return
                status, answer = proxy.forward(self.headers, body)
                with proxy.lock:
                    proxy.answers.append((status, answer))
                self.reply(status, answer)

            def reply(self, status, body):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def forward(self, headers, body):
        req = urllib.request.Request(self.target, data=body, method="POST")
        for name in ("Content-Type", "Sim-Signature", "Sim-Delivery-Attempt"):
            if headers.get(name) is not None:
                req.add_header(name, headers.get(name))
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except OSError as e:  # paycore restarting: the bank delivers again
            return 502, json.dumps({"error": str(e)}).encode()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class ProxiedEnv(Env):
    """Env whose bank channel calls back through 'proxy'."""

    def __init__(self, proxy, **kw):
        Env.__init__(self, channel_fields={"bank": {"callback_url": callback_url(proxy.port)}}, **kw)
        self.proxy = proxy

    def write_channels(self, port):
        Env.write_channels(self, port)
        self.proxy.target = callback_url(port)


def bank_transfers(env):
    """The bank's own record: reference -> (status, return code, callback attempts, delivered)."""
    rows = env.bank.rows("SELECT r.merchant_ref, t.status, t.return_code, t.callback_attempts,"
                         " t.callback_delivered_at_ms IS NOT NULL FROM records r JOIN transfers t ON t.id = r.id"
                         " WHERE r.kind = 'transfer'")
    return {r[0]: r[1:] for r in rows}


def balances(env, ids):
    out = {}
    for account_id in ids:
        a = expect(env.admin.get("/v1/accounts/" + account_id), 200, what="account " + account_id).json
        out[account_id] = (a["debits_posted"], a["credits_posted"], a["debits_pending"], a["credits_pending"])
    return out


def operations(m, payout_ids, payment_ids):
    ops = {i: expect(m.get("/v1/payouts/" + i), 200, what="payout " + i).json for i in payout_ids}
    ops.update({i: expect(m.get("/v1/payments/" + i), 200, what="payment " + i).json for i in payment_ids})
    return ops


def make_operations(env, m, wallet_id):
    made = {}
    for name, amount, bank in (("paid", 1000, BANK_OK), ("returned", 700, BANK_R01)):
        po = expect(m.post("/v1/payouts", {"amount": amount, "currency": "EUR", "bank_account": bank}), 201,
                    what="payout " + name).json
        check(po["status"] == "processing", "payout %s waits for the bank: %r" % (name, po))
        made["payout_" + name] = po["id"]
        check_conserved(env.admin, "after the payout " + name)
    for name, amount, bank in (("paid", 1200, BANK_OK), ("returned", 300, BANK_R01)):
        wd = expect(m.post("/v1/wallets/%s/withdrawals" % wallet_id, {"amount": amount, "owner_id": "C1",
                                                                     "bank_account": bank}), 201,
                    what="withdrawal " + name).json
        check(wd["status"] == "processing", "withdrawal %s waits for the bank: %r" % (name, wd))
        made["withdrawal_" + name] = wd["id"]
        check_conserved(env.admin, "after the withdrawal " + name)
    top = {"amount": 400, "currency": "EUR", "payment_method": {"type": "bank_transfer", "bank_account": BANK_OK},
           "payer": {"id": "C1", "country": "DE"}}
    t = expect(m.post("/v1/wallets/%s/top_ups" % wallet_id, top), 202, what="bank top-up").json
    made["top_up"] = t["id"]
    check_conserved(env.admin, "after the bank top-up")
    return made


def wait_bank_decided(env, made):
    """The bank decided every transfer and its callbacks were refused (none got through)."""
    def decided():
        record = bank_transfers(env)
        rows = [record.get(i) for i in made.values()]
        return rows if all(r and r[0] != "pending" and r[2] >= 1 for r in rows) else None
    rows = wait_for("the bank decided every transfer and tried its callback", decided)
    check(not any(r[3] for r in rows), "no callback was delivered while the proxy drops them: %r" % rows)


def check_final(env, m, made, wallet_id, before):
    payout_ids = [v for k, v in made.items() if k != "top_up"]
    ops = wait_for("every operation final through the status inquiry", lambda: (
        lambda o: o if all(o[i]["status"] in ("paid", "returned") for i in payout_ids)
        and o[made["top_up"]]["status"] == "captured" and not o[made["top_up"]]["pending_operation"] else None)(
        operations(m, payout_ids, [made["top_up"]])))
    with env.proxy.lock:
        check(env.proxy.answers == [], "no callback reached paycore: %r" % env.proxy.answers)
    record = bank_transfers(env)
    for name, op_id in made.items():
        want = "paid" if name.endswith("paid") else "returned" if name.endswith("returned") else "captured"
        check(ops[op_id]["status"] == want, "%s %s: %s, want %s" % (name, op_id, ops[op_id]["status"], want))
        bank_status = record[op_id][0]
        check(bank_status == ("returned" if want == "returned" else "settled"),
              "%s: the bank says %s, paycore %s" % (name, bank_status, want))
        if want == "returned":
            check(ops[op_id]["response_code"] == record[op_id][1] == "R01",
                  "%s: the return code as the callback gives it: %r" % (name, ops[op_id]))
    check_conserved(env.admin, "after the inquiries")
    after = balances(env, before.keys())
    mk = "mer:mk:EUR:available"
    check(after[mk][2] == 0, "no reserve left on the available balance: %r" % (after[mk],))
    paid_out = 1000
    check((after[mk][1] - after[mk][0]) == (before[mk][1] - before[mk][0]) - paid_out,
          "available fell by the paid payout only (the returned one came back once): %r -> %r" % (before[mk], after[mk]))
    transit = after["mer:mk:EUR:payouts"]
    check(transit[2] == transit[3] == 0 and transit[0] == transit[1] == paid_out,
          "payouts in transit: %d passed through, nothing pending: %r" % (paid_out, transit))
    wallet = expect(m.get("/v1/wallets/" + wallet_id), 200).json
    check(wallet["balance"]["available"] == 5000 - 1200 + 400,
          "wallet: 5000 - 1200 withdrawn (the returned 300 came back) + 400 topped up: %r" % wallet)
    return ops, after


def late_callbacks(env, m, made, ops, balances_then):
    with env.proxy.lock:
        env.proxy.dropping = False

    def delivered():
        record = bank_transfers(env)
        return record if all(record[i][3] for i in made.values()) else None
    wait_for("the bank's late callbacks delivered", delivered)
    with env.proxy.lock:
        answers = list(env.proxy.answers)
    acked = [json.loads(body or b"{}") for s, body in answers if s == 200]
    busy = [s for s, body in answers if s == 409 and b"payment_operation_in_progress" in body]
    check(len(acked) == len(made) and len(acked) + len(busy) == len(answers),
          "paycore acknowledged each late callback once (or asked for it again): %r" % answers)
    check(all(a.get("matched") is True for a in acked), "each late callback names its operation: %r" % answers)
    payout_ids = [v for k, v in made.items() if k != "top_up"]
    now = operations(m, payout_ids, [made["top_up"]])
    for op_id, op in ops.items():
        for field in ("status", "ledger_transfers", "version"):
            check(now[op_id].get(field) == op.get(field),
                  "%s: %s changed by a late callback: %r -> %r" % (op_id, field, op.get(field), now[op_id].get(field)))
    check(balances(env, balances_then.keys()) == balances_then, "no balance moved on the late callbacks")
    check_conserved(env.admin, "after the late callbacks")
    return len(answers)


def main():
    proxy = CallbackProxy()
    env = ProxiedEnv(proxy, bank_config={"settle_delay_ms": 100, "callback_retry_base_ms": 50,
                                         "callback_retry_max_ms": 300})
    try:
        env.start(["--payments-bank-inquiry-ms", str(INQUIRY_MS)])
        m = env.merchant("mk")
        funding = expect(m.post("/v1/payments", card_payment(100000, capture="automatic")), 201, what="funding").json
        check(funding["status"] == "captured", "funding payment captured: %r" % funding)
        w = expect(m.post("/v1/wallets", {"owner_id": "C1", "currency": "EUR"}), 201, what="wallet").json
        top = card_payment(5000, payer="C1")
        del top["capture_method"]
        t = expect(m.post("/v1/wallets/%s/top_ups" % w["id"], top), 201, what="card top-up").json
        check(t["status"] == "captured", "card top-up: %r" % t)
        check_conserved(env.admin, "after funding")
        before = balances(env, ["mer:mk:EUR:available", "mer:mk:EUR:payouts"])
        made = make_operations(env, m, w["id"])
        wait_bank_decided(env, made)
        ops, balances_then = check_final(env, m, made, w["id"], before)
        answered = late_callbacks(env, m, made, ops, balances_then)
        with proxy.lock:
            refused = proxy.refused
        code = env.stop()
        check(code == 0, "SIGTERM exits 0, got %d" % code)
        out = subprocess.run([BIN, "verify"] + env.server.store_location_args(), capture_output=True, text=True,
                             timeout=TIMEOUT_S * 3)
        check(out.returncode == 0, "paycore verify: %s %s" % (out.stdout[-500:], out.stderr[-500:]))
        print("bank inquiry: %d operations final without their callbacks (%d deliveries refused), %d late"
              " callbacks changed nothing: ok" % (len(made), refused, answered))
    finally:
        env.close()
        proxy.close()


if __name__ == "__main__":
    main()
