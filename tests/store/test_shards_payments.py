"""Goal: the whole product runs on `paycore serve --shards`: merchants, card payments
(authorize, partial capture, refund, cancel), payouts, wallets (top-up by card,
payment from the wallet, withdrawals paid and returned), the card vault and the events outbox, with the ledger
sharded; a wallet on another shard than the home shard pays through a global
transaction; a merchant key's command spanning shards runs when its grants hold on
every shard involved (and is refused as missing when they do not), and a key's grants
reach the shard holding each account; every step keeps each shard's books and the
set's books balanced; a SIGKILL in the middle of a cross-shard wallet payment (at
each step of two-phase commit) and a SIGKILL under a payment load end all or nothing
after the restart, with every event delivered.
Method: three throwaway PostgreSQL clusters (shardset.py), real card and bank
simulator processes (tests/payments paylib), a real webhook receiver
(tests/events/receiver.py); after every step every account is read through the API
and debits == credits checked per currency for each shard (placement read from each
shard's shard_accounts) and for the whole set, pending amounts included; payments'
amounts are compared with their ledger transfers; after each clean stop no prepared
transaction is left and each shard's stored books balance (SQL)."""
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "payments"))
sys.path.insert(0, os.path.join(HERE, "..", "events"))
import shardset  # noqa: E402
from shardset import pcapi  # noqa: E402
from pcapi import TIMEOUT_S, check, expect  # noqa: E402
import paylib  # noqa: E402
from paylib import BANK_OK, BANK_R01, CALLBACK_SECRET, Sim, card_payment, check_payment_ledger, wait_for  # noqa: E402
from receiver import Receiver, all_events, check_order_per_object  # noqa: E402
import test_payments_crash  # noqa: E402
from test_payments_crash import Load, all_payments  # noqa: E402


class PayShards:
    """A set of shards served with payments: channels, risk rules, events on."""

    def __init__(self, count):
        self.s = shardset.ShardSet(count)
        self.card = Sim("card", config={"seed": 7})
        self.bank = Sim("bank", secret=CALLBACK_SECRET,
                        config={"settle_delay_ms": 100, "callback_retry_base_ms": 50, "callback_retry_max_ms": 500})
        self.env = paylib.Env.__new__(paylib.Env)  # its channels file writer only
        self.env.card, self.env.bank = self.card, self.bank
        self.env.channels = os.path.join(self.s.dir, "channels.json")
        self.env.card_timeout_ms, self.env.inquiry_delay_ms = 5000, 200
        self.env.channel_fields = {}
        self.rules = os.path.join(self.s.dir, "risk.rules")
        with open(self.rules, "w") as f:
            f.write(paylib.RULES)
        self.port = None
        self.admin = None

    def start(self, env_extra=None):
        self.port = self.port or paylib.free_port()
        self.env.write_channels(self.port)
        self.s.start(env_extra=env_extra, args=[
            "--listen", "127.0.0.1:%d" % self.port, "--channels", self.env.channels, "--risk-rules", self.rules,
            "--payments-recovery-ms", "200", "--payments-recovery-grace-ms", "1000", "--events-retry-base-ms", "100"]
            + pcapi.Server.webhook_args)
        check(self.s.port == self.port, "listening on the port the bank calls back")
        self.admin = self.s.client()
        return self

    def client(self, key):
        return pcapi.Client(self.port, key)

    def close(self):
        try:
            self.s.close()
        finally:
            self.card.close()
            self.bank.close()


# ---- the books ----

def global_commits(client):
    """paycore_2pc_global_total{outcome="commit"} from /metrics."""
    text = expect(client.get("/metrics"), 200, what="metrics").raw
    for line in text.splitlines():
        if line.startswith('paycore_2pc_global_total{outcome="commit"}'):
            return int(line.split()[-1])
    check(False, "no paycore_2pc_global_total in /metrics")


def all_accounts(client):
    out, after = [], None
    while True:
        r = expect(client.get("/v1/accounts?limit=100" + ("&starting_after=" + after if after else "")), 200,
                   what="list accounts")
        out += r.json["data"]
        if not r.json["has_more"]:
            return out
        after = r.json["data"][-1]["id"]


def check_books(p, what):
    """Per currency, debits == credits (posted and pending) on each shard and over the set."""
    where = p.s.placement()
    sums = {}
    accounts = all_accounts(p.admin)
    by_id = {a["id"]: a for a in accounts}
    for a in accounts:
        if not a["id"].startswith("pc.clearing."):
            continue
        _, _, me, peer, currency = a["id"].split(".")
        mirror = by_id.get("pc.clearing.%s.%s.%s" % (peer, me, currency))
        check(mirror is not None, "%s: %s has no mirror" % (what, a["id"]))
        for mine, theirs in (("debits", "credits"), ("credits", "debits")):
            for state in ("posted", "pending"):
                check(a["%s_%s" % (mine, state)] == mirror["%s_%s" % (theirs, state)],
                      "%s: %s %s %s %d, its mirror's %s %d" % (what, a["id"], mine, state, a["%s_%s" % (mine, state)],
                                                            theirs, mirror["%s_%s" % (theirs, state)]))
    for a in accounts:
        check(a["id"] in where, "%s: account %s is in no shard's shard_accounts" % (what, a["id"]))
        for scope in (where[a["id"]], "set"):
            d = sums.setdefault((scope, a["currency"]), [0, 0, 0, 0])
            d[0] += a["debits_posted"]
            d[1] += a["credits_posted"]
            d[2] += a["debits_pending"]
            d[3] += a["credits_pending"]
    check(sums, "%s: no accounts" % what)
    for (scope, currency), (dp, cp, dn, cn) in sorted(sums.items(), key=str):
        check(dp == cp and dn == cn, "%s: shard %s's books in %s: debits %d / credits %d posted, %d / %d pending"
              % (what, scope, currency, dp, cp, dn, cn))


def check_stopped(p, what):
    check(p.s.prepared() == 0, "%s: no prepared transaction left" % what)
    p.s.books_balance(what)


def misplaced(p):
    """A payments' account (placed on the home shard) found on another shard, as an
    older paycore could have placed it through the ledger API: the start is refused
    with one line naming the shard and the account."""
    p.s.sql(1, "INSERT INTO shard_accounts(account_id, shard_index, shard_count) VALUES ('mer:old:EUR:available', 1, %d)"
            % len(p.s.clusters))
    out = subprocess.run([pcapi.BIN, "serve", "--db", p.s.db, "--listen", "127.0.0.1:0", "--no-events", "--shards",
                          p.s.shards_arg()], capture_output=True, text=True, timeout=TIMEOUT_S * 3)
    check(out.returncode != 0, "a misplaced payments account must refuse the start")
    check("shard 1 (" in out.stderr and "'mer:old:EUR:available'" in out.stderr and
          "store_shard_map_mismatch" in out.stderr, "the refusal names the shard and the account:\n" + out.stderr)
    p.s.sql(1, "DELETE FROM shard_accounts WHERE account_id = 'mer:old:EUR:available'")


# ---- the steps ----

def merchant(p, merchant_id):
    body = {"id": merchant_id, "name": "Shop " + merchant_id, "country": "DE", "default_currency": "EUR",
            "currencies": ["EUR"], "pricing": {"default": {"bps": 290, "fixed_minor": 30}}}
    expect(p.admin.post("/v1/merchants", body), 201, what="create merchant " + merchant_id)
    r = expect(p.admin.post("/v1/merchants/%s/keys" % merchant_id, {"name": "key"}), 201, what="merchant key")
    return p.client(r.json["key"])


def available(p, merchant_id):
    a = expect(p.admin.get("/v1/accounts/mer:%s:EUR:available" % merchant_id), 200, what="available").json
    return a["credits_posted"] - a["debits_posted"]


def card_flows(p, m, merchant_id):
    """Authorize, partial capture, the rest, refund, cancel, payout; the books after each."""
    where = p.s.placement()
    for suffix in ("available", "pending", "refunds", "payouts"):
        check(where.get("mer:%s:EUR:%s" % (merchant_id, suffix)) == 0, "a merchant's accounts live on the home shard")
    pay = expect(m.post("/v1/payments", card_payment(10000)), 201, what="authorize").json
    check(pay["status"] == "authorized", "authorized: %r" % pay)
    check_books(p, "authorized")
    expect(m.post("/v1/payments/%s/capture" % pay["id"], {"amount": 6000}), 200, what="partial capture")
    check_books(p, "partial capture")
    pay = expect(m.post("/v1/payments/%s/capture" % pay["id"], {"amount": 4000}), 200, what="capture the rest").json
    check(pay["status"] == "captured", "captured: %r" % pay["status"])
    check_books(p, "captured")
    expect(m.post("/v1/payments/%s/refunds" % pay["id"], {"amount": 2500}), 201, what="refund")
    pay = wait_for("refund booked", lambda: (lambda q: q if q["amount_refunded"] == 2500 else None)(
        m.get("/v1/payments/" + pay["id"]).json))
    check_payment_ledger(p.admin, pay, "card payment")
    check_books(p, "refund")
    check(available(p, merchant_id) == 10000 - 2500 - (320 - 80), "available = captured - refunded - fees: %d"
          % available(p, merchant_id))
    c = expect(m.post("/v1/payments", card_payment(300)), 201, what="authorize to cancel").json
    expect(m.post("/v1/payments/%s/cancel" % c["id"], None), 200, what="cancel")
    check_books(p, "cancel")
    po = expect(m.post("/v1/payouts", {"amount": 5000, "currency": "EUR", "bank_account": BANK_OK}), 201,
                what="payout").json
    wait_for("payout paid", lambda: m.get("/v1/payouts/" + po["id"]).json["status"] == "paid")
    check_books(p, "payout")
    check(available(p, merchant_id) == 2260, "available after the payout: %d" % available(p, merchant_id))
    return [pay["id"], c["id"], po["id"]]


def wallet_on(p, m, shard, owner):
    """A wallet whose account lives on 'shard' (ids are the server's: make until one does)."""
    for _ in range(64):
        w = expect(m.post("/v1/wallets", {"owner_id": owner, "currency": "EUR"}), 201, what="wallet").json
        if p.s.placement().get(w["account_id"]) == shard:
            return w
    check(False, "no wallet landed on shard %d in 64 tries" % shard)


def wallet_flows(p, m, merchant_id):
    """A wallet on the home shard and one on another: top up by card, pay the merchant,
    an overdraft declined, a withdrawal paid and one returned; the far wallet's
    payment is a global transaction, its withdrawal's reserve too (posted or voided by
    the bank's callback)."""
    out = []
    for shard, owner in ((0, "C0"), (len(p.s.clusters) - 1, "C2")):
        before_available = available(p, merchant_id)
        w = wallet_on(p, m, shard, owner)
        top = card_payment(5000, payer=owner)
        del top["capture_method"]
        tp = expect(m.post("/v1/wallets/%s/top_ups" % w["id"], top), 201, what="top up").json
        check(tp["status"] == "captured", "top-up captured: %r" % tp["status"])
        check_books(p, "top-up of the wallet on shard %d" % shard)
        wal = expect(p.admin.get("/v1/accounts/" + w["account_id"]), 200).json
        check(wal["credits_posted"] - wal["debits_posted"] == 5000, "the wallet holds the top-up: %r %r %r" % (wal, tp, [p.s.sql(i, "select t.id, t.flags, t.amount, t.pending_id from transfers t join accounts c on c.no = t.credit_no where c.id = '%s'" % w["account_id"]) for i in range(3)]))
        committed = global_commits(p.admin)
        body = {"amount": 1200, "currency": "EUR", "payment_method": {"type": "wallet", "wallet_id": w["id"]},
                "payer": {"id": owner, "country": "DE"}}
        wp = expect(m.post("/v1/payments", body), 201, what="wallet payment").json
        check(wp["status"] == "captured", "wallet payment captured: %r" % wp)
        crossed = global_commits(p.admin) - committed
        check((crossed > 0) == (shard != 0), "wallet on shard %d: %d global transactions" % (shard, crossed))
        check_books(p, "wallet payment from shard %d" % shard)
        check_payment_ledger(p.admin, wp, "wallet payment")
        over = dict(body, amount=999999)
        d = expect(m.post("/v1/payments", over), 201, what="wallet overdraft").json
        check(d["status"] == "declined", "an overdraft is declined: %r" % d)
        check_books(p, "overdraft refused on shard %d" % shard)
        wal = expect(p.admin.get("/v1/accounts/" + w["account_id"]), 200).json
        check(wal["credits_posted"] - wal["debits_posted"] == 3800, "the wallet paid 1200: %r" % wal)
        fee = 35 + 30  # half_even(1200 * 290 / 10000) = 35, + 30 fixed
        check(available(p, merchant_id) - before_available == 1200 - fee, "the merchant got 1200 less the fee")
        # withdrawals: a reserve across shards, posted (settled) or voided (returned) by
        # the bank's callback naming no accounts
        wd = expect(m.post("/v1/wallets/%s/withdrawals" % w["id"], {"amount": 800, "owner_id": owner,
                                                                   "bank_account": BANK_OK}), 201, what="withdraw").json
        wait_for("withdrawal paid", lambda: m.get("/v1/payouts/" + wd["id"]).json["status"] == "paid")
        check_books(p, "withdrawal from shard %d" % shard)
        wr = expect(m.post("/v1/wallets/%s/withdrawals" % w["id"], {"amount": 500, "owner_id": owner,
                                                                   "bank_account": BANK_R01}), 201, what="withdraw").json
        wait_for("withdrawal returned", lambda: m.get("/v1/payouts/" + wr["id"]).json["status"] == "returned")
        check_books(p, "returned withdrawal from shard %d" % shard)
        wal = expect(p.admin.get("/v1/accounts/" + w["account_id"]), 200).json
        check(wal["credits_posted"] - wal["debits_posted"] == 3000 and wal["debits_pending"] == 0,
              "the wallet after a paid and a returned withdrawal: %r" % wal)
        out += [tp["id"], wp["id"], d["id"]]
    return out


def grants_across(p):
    """A key granted accounts on every shard: each grant is written on the account's
    shard, and the key moves money between them (global transactions); a foreign
    account stays out of reach; the books balance after each step."""
    made = {}
    for i in range(64):
        account_id = "g-%d" % i
        expect(p.admin.post("/v1/accounts", pcapi.account(account_id, currency="EUR")), 201, what="account")
        made.setdefault(p.s.placement()[account_id], []).append(account_id)
        if len(made) == len(p.s.clusters) and all(len(v) >= 2 for v in made.values()):
            break
    check(len(made) == len(p.s.clusters), "accounts on every shard: %r" % made)
    granted = [v[0] for _, v in sorted(made.items())]
    foreign = made[len(p.s.clusters) - 1][1]
    r = expect(p.admin.post("/v1/api-keys", {"scope": "merchant", "name": "g", "accounts": granted}), 201,
               what="key with grants on every shard").json
    key_id = r["id"]
    for shard, account_id in enumerate(granted):
        for i in range(len(p.s.clusters)):
            rows = p.s.sql(i, "SELECT count(*) FROM account_grants WHERE key_id = '%s' AND account_id = '%s'"
                           % (key_id, account_id))
            check(rows == ("1" if i == shard else "0"), "the grant of %s (shard %d) on shard %d: %s rows"
                  % (account_id, shard, i, rows))
    g = p.client(r["key"])
    for n, (debit, credit) in enumerate(zip(granted, granted[1:] + granted[:1])):
        expect(g.post("/v1/transfers", pcapi.transfer("g-t%d" % n, debit, credit, 5, currency="EUR")), 201,
               what="the key across shards %s -> %s" % (debit, credit))
        check(len(p.s.legs("g-t%d" % n)) == 2, "two legs")
        check_books(p, "the key's transfer %d" % n)
    pend = pcapi.transfer("g-pend", granted[0], granted[-1], 7, currency="EUR", flags=["pending"])
    expect(g.post("/v1/transfers", pend), 201, what="the key's pending transfer across shards")
    check_books(p, "pending across shards")
    post = {"id": "g-post", "pending_id": "g-pend", "flags": ["post_pending"], "amount": 7}
    expect(g.post("/v1/transfers", post), 201, what="the key posts it naming no accounts")
    check_books(p, "posted across shards")
    before = expect(p.admin.get("/v1/accounts/" + foreign), 200).json
    refused = expect(g.post("/v1/transfers", pcapi.transfer("g-steal", foreign, granted[0], 1, currency="EUR")), 422,
                     "account_not_found", what="a foreign account on another shard")
    missing = expect(g.post("/v1/transfers", pcapi.transfer("g-steal2", "no-such", granted[0], 1, currency="EUR")),
                     422, "account_not_found", what="a missing account")
    check(refused.json == missing.json, "foreign reads as missing: %r vs %r" % (refused.json, missing.json))
    check(p.s.legs("g-steal") == [], "nothing of the refused transfer on any shard")
    check(expect(p.admin.get("/v1/accounts/" + foreign), 200).json == before, "the foreign account is unchanged")
    check_books(p, "after the refusals")


def payment_ids(ids):
    return [i for i in ids if i.startswith("pay_")]


def ledger_events_complete(p, what):
    """Every account of every shard has exactly one account.created event (a far
    shard's arrive through the relay, shortly after their commit: polled), and no
    transfer's event names a clearing account; returns every event."""
    accounts = [a["id"] for a in all_accounts(p.admin)]

    def complete():
        events = all_events(p.admin)
        created = set(e["object_id"] for e in events if e["type"] == "account.created")
        return events if all(a in created for a in accounts) else None
    events = wait_for("%s: every account's account.created listed" % what, complete)
    created = [e["object_id"] for e in events if e["type"] == "account.created"]
    where = p.s.placement()
    for a in accounts:
        check(created.count(a) == 1, "%s: account %s (shard %d) has %d account.created events"
              % (what, a, where.get(a, -1), created.count(a)))
    for e in events:
        if e["type"].startswith("transfer."):
            o = e["data"]["object"]
            check("pc.clearing." not in o["debit_account_id"] + o["credit_account_id"],
                  "%s: %s %s names a clearing account: %r" % (what, e["type"], e["object_id"], o))
    return events


def check_events(p, rx, ep, objects, what):
    """Every event listed since the endpoint was made reached the receiver, in order per
    object; each payment's events are gap-free and the last is the payment as GET shows it."""
    events = ledger_events_complete(p, what)
    by_object = {}
    for e in events:
        by_object.setdefault(e["object_id"], []).append(e)
    for object_id in payment_ids(objects):
        now = expect(p.admin.get("/v1/payments/" + object_id), 200).json
        mine = by_object.get(object_id, [])
        seqs = [e["object_seq"] for e in mine]
        check(seqs == list(range(1, now["version"] + 1)), "%s %s: events %r for version %d"
              % (what, object_id, seqs, now["version"]))
        check(mine[-1]["data"]["object"] == now, "%s %s: the last event is the payment" % (what, object_id))
    listed = [e for e in events if e["created"] > ep["created"]]
    rx.wait_acked([e["id"] for e in listed], what)
    check_order_per_object(rx.snapshot(), what)
    return events


# ---- SIGKILL ----

def far_wallet(p, m, owner, amount):
    """A wallet on the last shard (never the home shard), topped up by card."""
    w = wallet_on(p, m, len(p.s.clusters) - 1, owner)
    top = card_payment(amount, payer=owner)
    del top["capture_method"]
    expect(m.post("/v1/wallets/%s/top_ups" % w["id"], top), 201, what="top up")
    return w


def from_wallet(payment, w):
    method = payment.get("payment_method") or {}
    return method.get("type") == "wallet" and method.get("wallet_id") == w["id"]


def wallet_balance(p, w):
    a = expect(p.admin.get("/v1/accounts/" + w["account_id"]), 200).json
    return a["credits_posted"] - a["debits_posted"]


def wallet_pay_body(w, owner, amount):
    return {"amount": amount, "currency": "EUR", "payment_method": {"type": "wallet", "wallet_id": w["id"]},
            "payer": {"id": owner, "country": "DE"}}


def killed_in_two_phase(p, m, merchant_id):
    """A wallet payment from the far shard, the node SIGKILLed at each step of its
    global transaction: after the restart it is all or nothing (the wallet, the
    merchant and the payment rows agree), nothing is left prepared, and the client's
    retry with the same Idempotency-Key ends it exactly once."""
    w = far_wallet(p, m, "CK", 10000)
    paid = 0
    for n, step in enumerate(("after_intent", "after_prepare_one", "after_prepare_all", "after_decision",
                              "after_commit_one")):
        check(p.s.stop() == 0, "clean stop before %s" % step)
        p.start(env_extra={"PAYCORE_2PC_FAULT": step})
        m = p.client(m.key)
        idem = {"Idempotency-Key": "kill-%d" % n}
        try:
            r = m.post("/v1/payments", wallet_pay_body(w, "CK", 100 + n), headers=idem)
            check(False, "%s: the payment answered %r instead of the node dying" % (step, r))
        except (OSError, http.client.HTTPException):
            pass
        code = p.s.wait_exit(step)
        check(code == -signal.SIGKILL, "%s: killed by its fault (exit %r)" % (step, code))
        p.start()
        m = p.client(m.key)
        committed = step in ("after_decision", "after_commit_one")
        check(p.s.prepared() == 0, "%s: recovery left nothing prepared" % step)
        check(wallet_balance(p, w) == 10000 - paid - (100 + n if committed else 0),
              "%s: the wallet was debited %s" % (step, "once" if committed else "not at all"))
        rows = [x for x in all_payments(p.admin) if x["amount"] == 100 + n and from_wallet(x, w)]
        check(len(rows) == (1 if committed else 0), "%s: %d payment rows, the ledger says %s"
              % (step, len(rows), "committed" if committed else "aborted"))
        check_books(p, "after the kill %s" % step)
        again = expect(m.post("/v1/payments", wallet_pay_body(w, "CK", 100 + n), headers=idem), 201,
                       what="%s: the client's retry" % step).json
        check(again["status"] == "captured", "%s: the retry ends captured: %r" % (step, again["status"]))
        paid += 100 + n
        check(wallet_balance(p, w) == 10000 - paid, "%s: debited exactly once after the retry" % step)
        check_payment_ledger(p.admin, again, "%s: the payment" % step)
        check_books(p, "after the retry of %s" % step)
    return m


class WalletLoad:
    """Wallet payments from a wallet on another shard (global transactions), until
    the server goes away; what was acknowledged is kept."""

    def __init__(self, port, key, wallet, owner):
        self.port, self.key, self.wallet, self.owner = port, key, wallet, owner
        self.stop = threading.Event()
        self.acked = []

    def run(self):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT_S)
            while not self.stop.is_set():
                body = json.dumps(wallet_pay_body(self.wallet, self.owner, random.randint(1, 50))).encode()
                conn.request("POST", "/v1/payments", body=body, headers={"Authorization": "Bearer " + self.key,
                                                                         "Content-Type": "application/json"})
                resp = conn.getresponse()
                reply = json.loads(resp.read() or b"null")
                if resp.status == 201 and reply["status"] == "captured":
                    self.acked.append(reply["id"])
        except (OSError, http.client.HTTPException, ValueError):
            return


def killed_under_load(p, m, merchant_id, rx, ep):
    """Card flows (home shard) and wallet payments from the far shard at once, the node
    SIGKILLed twice: after the restart and the payments' recovery every acknowledged
    payment is there, every payment agrees with its ledger transfers and the card
    channel's record, the wallet lost exactly what its captured payments say, the books
    balance, every event is delivered."""
    w = far_wallet(p, m, "CL", 1000000)
    for cycle in range(2):
        load = Load(p.port, m.key, 17 + cycle)
        wl = WalletLoad(p.port, m.key, w, "CL")
        threads = [threading.Thread(target=load.run, args=(i,)) for i in range(3)]
        threads.append(threading.Thread(target=wl.run))
        for t in threads:
            t.start()
        wait_for("payments under way", lambda: load.done >= 10 and len(wl.acked) >= 5)
        p.s.proc.kill()
        p.s.proc.wait(timeout=TIMEOUT_S)
        p.s.proc = None
        load.stop.set()
        wl.stop.set()
        for t in threads:
            t.join(TIMEOUT_S)
        p.start()
        shim = type("Shim", (), {"admin": p.admin, "bank": p.bank, "card": p.card})()
        payments = wait_for("recovery resolved every pending operation", lambda: test_payments_crash.settled(shim))
        by_id = {x["id"]: x for x in payments}
        for pid in wl.acked:
            check(pid in by_id and by_id[pid]["status"] == "captured", "acknowledged wallet payment %s is there" % pid)
        for x in payments:
            check_payment_ledger(p.admin, x, x["id"])
        test_payments_crash.check_card_record(shim, [x for x in payments
                                                     if (x.get("payment_method") or {}).get("type") == "card"])
        spent = sum(x["amount_captured"] - x["amount_refunded"] for x in payments if from_wallet(x, w))
        check(wallet_balance(p, w) == 1000000 - spent, "cycle %d: the wallet lost %d, its payments say %d"
              % (cycle, 1000000 - wallet_balance(p, w), spent))
        check_books(p, "after the kill under load %d" % cycle)
        check(p.s.prepared() == 0, "nothing left prepared after the recovery")
        check_events(p, rx, ep, [x["id"] for x in payments], "after the kill under load %d" % cycle)


def main():
    shardset.require_postgres()
    p = PayShards(3)
    try:
        p.s.init()
        misplaced(p)
        p.start()
        rx = Receiver()
        ep = expect(p.admin.post("/v1/webhook-endpoints", {"url": rx.url(), "events": ["*"]}), 201,
                    what="endpoint").json
        m = merchant(p, "m1")
        objects = card_flows(p, m, "m1")
        objects += wallet_flows(p, m, "m1")
        grants_across(p)
        check_events(p, rx, ep, objects, "after the flows")
        m = killed_in_two_phase(p, m, "m1")
        killed_under_load(p, m, "m1", rx, ep)
        check(p.s.stop() == 0, "clean stop")
        check_stopped(p, "after the flows")
        p.start()
        check_books(p, "after the restart")
        check_events(p, rx, ep, objects, "after the restart")
        rx.stop()
        check(p.s.stop() == 0, "clean stop")
        check_stopped(p, "the end")
    finally:
        p.close()
    print("shards payments: ok")


if __name__ == "__main__":
    main()
