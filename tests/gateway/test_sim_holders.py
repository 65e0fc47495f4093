#!/usr/bin/env python3
"""Goal: a card cardholder's balance and holds are derived from its authorizations'
rows (docs/channels.md, "The simulator's record"): requests never rewrite the
cardholder's row, yet 51 (insufficient funds) happens exactly when the old running
totals said, across clean stops and SIGKILLs, and a record of an older version keeps
its balances and holds. Method: random authorizations (holds and sales), partial and
full captures, voids, refunds and 3-D Secure completions across a few cardholders with
small balances, each answer and the view `cardholders` checked against a model after
every request; the simulator stopped or killed every few requests. With
PAYCORE_SIM_OLD_BIN (a version 3 simulator's binary) the first part runs on it and the
rest on this one."""
import os
import random
import signal
import sqlite3
import sys

sys.path.insert(0, os.path.dirname(__file__))
from simlib import CARD_OK, Sim, auth_body, check, expect, luhn_complete, need_binary  # noqa: E402
from test_sim_record import V1_SCHEMA, V2_CHANGES  # noqa: E402

AUTH = "/v1/authorizations"
CARD_3DS = luhn_complete("400000276000111")
HOLDER_A = luhn_complete("411111111111500")
HOLDER_B = luhn_complete("411111111111600")
HOLDER_NEW = luhn_complete("411111111111700")  # not in --data: the config's defaults
LIMIT_MINOR = 2500
CONFIG = {"card_balance_minor": 3000, "card_amount_limit_minor": 2000, "challenge_code": "123456"}
DATA = {"cards": [{"number": HOLDER_A, "currency": "EUR", "balance": 4000, "amount_limit": LIMIT_MINOR},
                  {"number": HOLDER_A, "currency": "USD", "balance": 1500, "amount_limit": LIMIT_MINOR},
                  {"number": HOLDER_B, "currency": "EUR", "balance": 2500, "amount_limit": LIMIT_MINOR},
                  {"number": CARD_3DS, "currency": "EUR", "balance": 3000, "amount_limit": LIMIT_MINOR}]}
OLD_BIN = os.environ.get("PAYCORE_SIM_OLD_BIN")


class CardSim(Sim):
    """A card simulator run by a binary of choice (None: this build's)."""

    def __init__(self, binary=None, **kw):
        super().__init__("card", config=CONFIG, data=DATA, **kw)
        self.binary = binary

    def command(self):
        command = super().command()
        if self.binary:
            command[0] = self.binary
        return command


class Model:
    """What the cardholders and authorizations must be, request by request."""

    def __init__(self):
        self.holders = {(e["number"], e["currency"]): [e["balance"], 0, e["amount_limit"]] for e in DATA["cards"]}
        self.auths = {}  # id -> {holder, amount, status, captured, refunded}

    def holder(self, number, currency):
        if number == CARD_OK:
            return None
        key = (number, currency)
        if key not in self.holders:
            self.holders[key] = [CONFIG["card_balance_minor"], 0, CONFIG["card_amount_limit_minor"]]
        return self.holders[key]

    def authorize_code(self, number, currency, amount, challenged=False):
        h = self.holder(number, currency)
        limit = h[2] if h else CONFIG["card_amount_limit_minor"]
        if amount > limit:
            return "61"
        if challenged:
            return "1A"
        return "51" if h and amount > h[0] - h[1] else "00"

    def approve(self, auth_id, number, currency, amount, sale):
        h = self.holder(number, currency)
        self.auths[auth_id] = {"holder": h, "amount": amount, "status": "approved",
                               "captured": amount if sale else 0, "refunded": 0}
        if h:
            if sale:
                h[0] -= amount
            else:
                h[1] += amount

    def capture_code(self, a, amount):
        if a["status"] != "approved":
            return "57"
        return "61" if amount > a["amount"] - a["captured"] else "00"

    def refund_code(self, a, amount):
        return "61" if amount > a["captured"] - a["refunded"] else "00"

    def void_code(self, a):
        return "57" if a["status"] != "approved" or a["captured"] > 0 else "00"


class Run:
    """The random requests against one simulator record, restarted as told."""

    def __init__(self, sim, model, rng, unlimited_row=None):
        self.sim, self.model, self.rng = sim, model, rng
        self.unlimited_row = unlimited_row  # the unlimited card's row, never moved (None: it has none)
        self.client = sim.client()
        self.n = 0

    def key(self, what):
        self.n += 1
        return "%s-%d" % (what, self.n)

    def amount_near(self, edge):
        """An amount at, just past or under an edge (at least 1)."""
        choice = self.rng.random()
        if choice < 0.3:
            return max(edge, 1)
        if choice < 0.55:
            return max(edge + 1, 1)
        return self.rng.randint(1, max(edge, 1))

    def authorize(self):
        m = self.model
        number, currency = self.rng.choice(list(m.holders) + [(HOLDER_NEW, "EUR"), (CARD_OK, "EUR")])
        if number == CARD_3DS:
            return self.challenge()
        h = m.holder(number, currency)
        amount = self.amount_near(h[0] - h[1] if h else 500) if self.rng.random() < 0.9 else LIMIT_MINOR + 1
        sale = self.rng.random() < 0.25
        want = m.authorize_code(number, currency, amount)
        body = auth_body(number, amount=amount, currency=currency)
        body["card"]["exp_year"] = 2099
        if sale:
            body["capture"] = True
        r = expect(self.client.post(AUTH, body, key=self.key("auth")), 200).json
        check(r["response_code"] == want, "authorize %s %s %d: want %s, got %r" % (number, currency, amount, want, r))
        if want == "00":
            m.approve(r["id"], number, currency, amount, sale)
        return "authorize %s" % want

    def challenge(self):
        """A 3-D Secure authorization, then its completion: the balance decides then."""
        m = self.model
        h = m.holder(CARD_3DS, "EUR")
        amount = self.amount_near(h[0] - h[1])
        body = auth_body(CARD_3DS, amount=amount)
        body["card"]["exp_year"] = 2099
        r = expect(self.client.post(AUTH, body, key=self.key("3ds")), 200).json
        want = m.authorize_code(CARD_3DS, "EUR", amount, challenged=True)
        check(r["response_code"] == want, "3-D Secure authorize: want %s, got %r" % (want, r))
        if want != "1A":
            return "challenge %s" % want
        want = m.authorize_code(CARD_3DS, "EUR", amount)
        done = expect(self.client.post("/v1/challenges/%s/complete" % r["challenge_id"], {"code": "123456"},
                                       key=self.key("3ds-done")), 200).json
        check(done["response_code"] == want, "challenge completed: want %s, got %r" % (want, done))
        if want == "00":
            m.approve(r["id"], CARD_3DS, "EUR", amount, False)
        return "challenge %s" % want

    def operation(self):
        """A capture, refund or void on a known authorization."""
        m = self.model
        if not m.auths:
            return self.authorize()
        auth_id = self.rng.choice(sorted(m.auths))
        a = m.auths[auth_id]
        kind = self.rng.choice(("capture", "capture", "refund", "void"))
        path = "%s/%s/%s" % (AUTH, auth_id, {"capture": "captures", "refund": "refunds", "void": "void"}[kind])
        if kind == "void":
            want = m.void_code(a)
            r = expect(self.client.post(path, {}, key=self.key(kind)), 200).json
        else:
            edge = a["amount"] - a["captured"] if kind == "capture" else a["captured"] - a["refunded"]
            amount = self.amount_near(edge)
            want = m.capture_code(a, amount) if kind == "capture" else m.refund_code(a, amount)
            r = expect(self.client.post(path, {"amount": amount}, key=self.key(kind)), 200).json
        check(r["response_code"] == want, "%s of %r: want %s, got %r" % (kind, a, want, r))
        if want == "00":
            self.apply(kind, a, amount if kind != "void" else 0)
        return "%s %s" % (kind, want)

    @staticmethod
    def apply(kind, a, amount):
        h = a["holder"]
        if kind == "capture":
            a["captured"] += amount
        elif kind == "refund":
            a["refunded"] += amount
        else:
            a["status"] = "voided"
        if h is None:
            return
        if kind == "capture":
            h[0] -= amount
            h[1] -= amount
        elif kind == "refund":
            h[0] += amount
        else:
            h[1] -= a["amount"]

    def check_holders(self, what):
        got = {(n, c): (b, held) for n, c, b, held in self.sim.rows("SELECT number, currency, balance, held"
                                                                    " FROM cardholders")}
        want = {k: (h[0], h[1]) for k, h in self.model.holders.items()}
        if self.unlimited_row is not None:
            want[(CARD_OK, "EUR")] = self.unlimited_row
        check(got == want, "after %s: cardholders %r, the model %r" % (what, got, want))

    def restart(self, binary):
        sig = self.rng.choice((signal.SIGKILL, signal.SIGTERM))
        code = self.sim.stop(sig)
        check(code == 0 or sig == signal.SIGKILL, "clean stop: %r" % code)
        self.sim.binary = binary
        self.sim.start()
        self.client = self.sim.client()
        self.check_holders("a restart after signal %d" % sig)

    def steps(self, count, binary):
        """'count' random requests, restarting every few on 'binary'."""
        seen = set()
        for i in range(count):
            what = self.authorize() if self.rng.random() < 0.5 else self.operation()
            seen.add(what)
            self.check_holders(what)
            if i % 12 == 11:
                self.restart(binary)
        return seen


def openings(sim):
    return {(n, c): (b, h) for n, c, b, h in sim.rows("SELECT number, currency, opening_balance, opening_held"
                                                      " FROM cardholder_openings")}


def test_random_sequences(seed):
    """Random requests with restarts; a cardholder's row keeps what it started with."""
    sim = CardSim(OLD_BIN).start()
    try:
        run = Run(sim, Model(), random.Random(seed))
        seen = run.steps(48, OLD_BIN) if OLD_BIN else set()
        if OLD_BIN:  # this build takes the older record over
            run.restart(None)
        seen |= run.steps(120, None)
        for what in ("authorize 00", "authorize 51", "capture 00", "capture 61", "refund 00", "void 00",
                     "challenge 00"):
            check(what in seen, "the sequence had a %s: %r" % (what, sorted(seen)))
        if not OLD_BIN:
            want = {(e["number"], e["currency"]): (e["balance"], 0) for e in DATA["cards"]}
            want[(HOLDER_NEW, "EUR")] = (CONFIG["card_balance_minor"], 0)
            check(openings(sim) == want, "requests leave the cardholders' rows: %r" % openings(sim))
    finally:
        sim.close()


OLD_CARDHOLDERS = [  # number, currency, balance, held as version 2 kept them (running totals)
    (HOLDER_A, "EUR", 4000 - 300 - 400, 1000 + 300),
    (HOLDER_B, "EUR", 2500, 50),       # a hold no row explains: kept as it was
    (CARD_OK, "EUR", 999, 0),          # an unlimited card with a row: nothing moves it
]
OLD_AUTHS = [  # suffix, number, status, amount, captured, refunded, capture_requested
    ("a" * 24, HOLDER_A, "approved", 1000, 0, 0, 0),
    ("b" * 24, HOLDER_A, "approved", 800, 500, 200, 0),
    ("c" * 24, HOLDER_A, "voided", 700, 0, 0, 0),
    ("d" * 24, HOLDER_A, "declined", 9000, 0, 0, 0),
    ("e" * 24, HOLDER_A, "approved", 400, 400, 0, 1),
    ("f" * 24, CARD_OK, "approved", 600, 100, 0, 0),
]


def v2_card_record(path):
    """A version 2 record whose cardholders hold running totals of its authorizations."""
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA + V2_CHANGES)
    for n, (suffix, number, status, amount, captured, refunded, sale) in enumerate(OLD_AUTHS):
        auth_id = "auth_" + suffix
        db.execute("INSERT INTO authorizations(id, card_number, status, response_code, amount, currency,"
                   " captured_total, refunded_total, capture_requested, idempotency_key)"
                   " VALUES (?, ?, ?, ?, ?, 'EUR', ?, ?, ?, ?)",
                   (auth_id, number, status, "51" if status == "declined" else "00", amount, captured, refunded,
                    sale, "old-%d" % n))
        db.execute("INSERT INTO records(id, kind, idempotency_key, status, response_code, amount, currency,"
                   " created_at_ms) VALUES (?, 'authorization', ?, ?, '00', ?, 'EUR', ?)",
                   (auth_id, "old-%d" % n, status, amount, 1000 + n))
    db.executemany("INSERT INTO cardholders(number, currency, balance, held, amount_limit) VALUES (?, ?, ?, ?, ?)",
                   [row + (LIMIT_MINOR,) for row in OLD_CARDHOLDERS])
    db.commit()
    db.close()


def test_migrated(seed):
    """An older record's stored balances and holds are what the new one derives; its
    authorizations go on moving them (captures, refunds, voids), as the model says."""
    sim = CardSim()
    v2_card_record(sim.db)
    sim.start()
    try:
        check(sim.one("SELECT value FROM meta WHERE name = 'schema_version'")[0] == "4", "migrated to version 4")
        old = {(n, c): (b, h) for n, c, b, h in OLD_CARDHOLDERS}
        got = {(n, c): (b, h) for n, c, b, h in sim.rows("SELECT number, currency, balance, held FROM cardholders")
               if (n, c) in old}
        check(got == old, "migrated cardholders %r, stored %r" % (got, old))
        model = Model()  # --data adds the cardholders the record lacked
        for n, c, b, h in OLD_CARDHOLDERS:
            if n != CARD_OK:
                model.holders[(n, c)] = [b, h, LIMIT_MINOR]
        for suffix, number, status, amount, captured, refunded, _ in OLD_AUTHS:
            if status != "declined":
                model.auths["auth_" + suffix] = {"holder": model.holder(number, "EUR"), "amount": amount,
                                                 "status": status, "captured": captured, "refunded": refunded}
        run = Run(sim, model, random.Random(seed), unlimited_row=(999, 0))
        run.check_holders("the migration")
        run.steps(36, None)
    finally:
        sim.close()


def main():
    need_binary()
    seed = int(os.environ.get("PAYCORE_TEST_SEED", "20261202"))
    print("seed=%d" % seed)
    test_random_sequences(seed)
    test_migrated(seed + 1)
    print("ok")


if __name__ == "__main__":
    main()
