"""tests/gateway/test_sim_group.py: the simulator commits its requests in groups. What a
group must never do: answer a request whose changes are not yet in the record (a
SIGKILL right after the answer would lose what the channel told), split one request's
changes (half of it kept), or let one request's refusal undo another's changes in the
same group. Concurrent clients make groups of many requests; the simulator is killed
with SIGKILL in the middle of the load, then its record is read and it is restarted on
the same record."""
import json
import os
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(__file__))
from simlib import (CARD_OK, Sim, auth_body, check, expect, fail, luhn_complete, wait_until)  # noqa: E402

AUTH = "/v1/authorizations"
CLIENTS = 16
KILLS = 4
OPENING_MINOR = 10 ** 9


class Load:
    """CLIENTS threads, each: authorize (a hold on a cardholder with a balance, or an
    unlimited card), capture it, and send a malformed capture in between (refused:
    nothing of it may stay); every answer kept by key."""

    def __init__(self, sim, holders, prefix):
        self.sim = sim
        self.prefix = prefix
        self.holders = holders
        self.lock = threading.Lock()
        self.answers = {}        # key -> (status, raw) of every answered operation
        self.auth_of = {}        # capture key -> authorization id
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.client, args=(i,), daemon=True) for i in range(CLIENTS)]

    def keep(self, key, resp):
        if hasattr(resp, "status"):
            with self.lock:
                self.answers[key] = (resp.status, resp.raw)
            return resp
        return None

    def client(self, index):
        c = self.sim.client(timeout_s=10)
        n = 0
        while not self.stop.is_set():
            n += 1
            number = self.holders[(index + n) % len(self.holders)] if n % 2 else CARD_OK
            key = "%s-%d-%d" % (self.prefix, index, n)
            auth = self.keep(key, c.try_post(AUTH, auth_body(number, 100 + n % 7), key=key))
            bad = c.try_post(AUTH, {"amount": "x"}, key="bad-" + key)
            if hasattr(bad, "status") and bad.status != 400:
                fail("a malformed request answered %r" % bad)
            if auth is None or auth.status != 200 or auth.json.get("status") != "approved":
                continue
            capture_key = "c" + key
            with self.lock:
                self.auth_of[capture_key] = auth.json["id"]
            self.keep(capture_key, c.try_post("%s/%s/captures" % (AUTH, auth.json["id"]), {"amount": 50},
                                              key=capture_key))

    def answered(self):
        with self.lock:
            return sum(1 for status, _ in self.answers.values() if status == 200)


def check_record(sim, answers):
    """Every answered operation is in the record exactly as answered; every request is
    in it whole or not at all; refusals left nothing."""
    stored = dict((k, (s, r)) for k, s, r in sim.rows("SELECT key, http_status, response FROM idempotency"))
    records = {}
    for key, kind, status, amount in sim.rows("SELECT idempotency_key, kind, status, amount FROM records"):
        records.setdefault(key, []).append((kind, status, amount))
    arrivals = dict(sim.rows("SELECT key, count FROM arrivals"))
    for key, (status, raw) in answers.items():
        if status != 200:
            continue
        check(key in stored, "answered %s is not in the record after SIGKILL" % key)
        check(stored[key] == (200, raw), "%s: the record holds another answer: %r" % (key, stored[key]))
        check(key in records, "answered %s has no row in records" % key)
        check(arrivals.get(key, 0) >= 1, "answered %s has no arrival count" % key)
    for key in stored:
        check(key in records, "%s: an answer recorded without its changes (half a request)" % key)
    for key in records:
        check(key in stored, "%s: changes recorded without their answer (half a request)" % key)
        check(len(records[key]) == 1, "%s applied %d times" % (key, len(records[key])))
    check(not any(k.startswith("bad-") for k in stored), "a refusal was recorded")
    for number, currency, balance, held in sim.rows("SELECT number, currency, balance, held FROM cardholders"):
        open_minor, captured_minor = sim.one(
            "SELECT coalesce(sum(amount - captured_total), 0), coalesce(sum(captured_total), 0) FROM authorizations"
            " WHERE card_number = ? AND currency = ? AND status = 'approved'", (number, currency))
        check(held == open_minor, "cardholder %s holds %d, its open authorizations %d" % (number, held, open_minor))
        check(balance == OPENING_MINOR - captured_minor,
              "cardholder %s balance %d, captured %d" % (number, balance, captured_minor))


def kill(sim):
    sim.proc.send_signal(signal.SIGKILL)
    sim.proc.wait()
    sim.proc.stdout.close()
    sim.proc = None


def test_sigkill_mid_load():
    """KILLS rounds on one record: load, SIGKILL mid-load (groups open, requests in
    flight), check the record, restart; answers of every round stay."""
    holders = [luhn_complete("41111111111%04d" % i) for i in range(4)]
    data = {"cards": [{"number": n, "currency": "EUR", "balance": OPENING_MINOR} for n in holders]}
    sim = Sim("card", data=data).start()
    answers = {}
    try:
        for round_number in range(KILLS):
            load = Load(sim, holders, "r%d" % round_number)
            for t in load.threads:
                t.start()
            wait_until(lambda: load.answered() >= 300, "300 answered operations")
            kill(sim)
            load.stop.set()
            for t in load.threads:
                t.join(timeout=30)
            answers.update(load.answers)
            check_record(sim, answers)
            sim.start()
        c = sim.client()
        for key, (status, raw) in sorted(answers.items())[:100]:
            if status == 200:
                again = expect(c.get("/v1/status/" + key), 200, what="status of " + key)
                check(again.json["found"] and again.json["response"] == json.loads(raw),
                      "%s after the restarts: %r" % (key, again))
    finally:
        sim.close()


def test_refusal_in_a_group():
    """Requests that fail inside a group (an over-capture, a capture of a missing
    authorization) leave nothing while the group's other requests commit."""
    sim = Sim("card").start()
    try:
        c = sim.client()
        auth = expect(c.post(AUTH, auth_body(CARD_OK, 500), key="base"), 200).json
        results = {}

        def worker(i):
            cc = sim.client()
            if i % 3 == 0:
                results[i] = cc.post("%s/%s/captures" % (AUTH, auth["id"]), {"amount": 10 ** 6}, key="over-%d" % i)
            elif i % 3 == 1:
                results[i] = cc.post("%s/auth_missing%d/captures" % (AUTH, i), {"amount": 1}, key="miss-%d" % i)
            else:
                results[i] = cc.post(AUTH, auth_body(CARD_OK, 100 + i), key="ok-%d" % i)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(48)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i, r in results.items():
            if i % 3 == 2:
                expect(r, 200, what="ok-%d" % i)
            elif i % 3 == 1:
                expect(r, 404, what="miss-%d" % i)
        keys = set(k for (k,) in sim.rows("SELECT idempotency_key FROM records"))
        check(all("ok-%d" % i in keys for i in range(2, 48, 3)), "every approved authorization is recorded")
        check(not any(k.startswith("miss-") for k in keys), "a capture of a missing authorization left a row")
        over = [r for i, r in results.items() if i % 3 == 0]
        for r in over:
            expect(r, 200, what="over-capture")
            check(r.json["status"] == "declined", "an over-capture is declined: %r" % r)
        captured = sim.one("SELECT captured_total FROM authorizations WHERE id = ?", (auth["id"],))[0]
        check(captured == 0, "declined captures moved nothing: %d" % captured)
    finally:
        sim.close()


def test_checkpoint_off_the_requests_path():
    """The worker checkpoints the record once the WAL passes its mark (32 MiB): the main
    file takes the pages while requests go on (without it only the WAL grows)."""
    sim = Sim("card").start()
    try:
        def checkpointed():
            return os.path.getsize(sim.db) > 256 * 1024

        def worker(i):
            c = sim.client()
            for n in range(3000):  # ~60 MiB of WAL at most: far past the mark
                if checkpointed():
                    return
                expect(c.post(AUTH, auth_body(CARD_OK, 100), key="w%d-%d" % (i, n)), 200)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wait_until(checkpointed, "the record's main file to take checkpointed pages")
    finally:
        sim.close()


if __name__ == "__main__":
    test_sigkill_mid_load()
    test_refusal_in_a_group()
    test_checkpoint_off_the_requests_path()
    print("ok")
