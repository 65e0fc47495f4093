"""Goal: `paycore keys rotate --data-key` re-encrypts every stored card under a new
data key while the server serves, in batches, every card opening throughout, and
retires the old data key only once no card is under it.
Method: a real server and simulators. More cards than one batch holds wait in the
risk review queue (their numbers stay in the vault until a review approves them and
the number is decrypted for the channel); some reviews are approved before the
rotation. Card payments keep flowing from other threads while the rotation runs; none
may fail. The rotation's answer names the old key as retired, none remaining, every
stored card re-encrypted in more than one batch. A second rotation re-encrypts exactly
every card again and retires exactly the first rotation's key (so no card was left
under the old key, on either store backend); on SQLite the database itself is read:
no card or key row names the old key. A rotation killed (SIGKILL) at a random moment
leaves every card under a stored key, and the next rotation finishes the work. Then every waiting card still charges: the
reviews are approved (half before a restart, half after it, when only the stored
keys exist) and each payment is authorized at the card simulator with the right last
4. Last, no file in the data directory (main, WAL, index, logs) holds any card number
used. A malformed rotation request is refused (field named) and changes nothing."""
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paylib import BIN, TIMEOUT_S, Env, card_payment, check, expect, wait_for, wait_status  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../api"))
from pcapi import PG_HOST  # noqa: E402

BATCH_CARDS = 256  # VAULT_REENCRYPT_BATCH_CARDS
WAITING = BATCH_CARDS + 44


def card_number(rng):
    """A Luhn-valid 16-digit number outside the simulator's forcing and 3-D Secure ranges."""
    digits = [5, 2] + [rng.randrange(10) for _ in range(13)]
    total = 0
    for i, d in enumerate(reversed(digits)):  # the check digit goes to the right: double every other from here
        d = d * 2 if i % 2 == 0 else d
        total += d - 9 if d > 9 else d
    return "".join(map(str, digits)) + str((10 - total % 10) % 10)


def rotate(env):
    out = subprocess.run([BIN, "keys", "rotate", "--data-key", "--url", "http://127.0.0.1:%d" % env.port, "--key",
                          env.server.admin_key, "--json"], capture_output=True, text=True, timeout=10 * TIMEOUT_S)
    check(out.returncode == 0, "keys rotate --data-key failed: %s %s" % (out.stdout, out.stderr))
    done = json.loads(out.stdout)
    check(done["state"] == "succeeded" and done["error"] is None and done["finished_at_ms"] >= done["started_at_ms"],
          "the command followed the background rotation to its end: %r" % done)
    status = env.admin.get("/v1/admin/vault/rotation").json
    check(status == done, "GET /v1/admin/vault/rotation shows the same rotation: %r vs %r" % (status, done))
    return done


def parallel(env, key, items, fn, threads=4):
    """fn(merchant client, admin client, item) for every item on a few threads, each
    with its own connections; the results in order."""
    results = [None] * len(items)
    errors = []

    def work(k):
        m, admin = env.client(key), env.client()
        try:
            for i in range(k, len(items), threads):
                results[i] = fn(m, admin, items[i])
        except SystemExit as e:  # check() failing in a thread
            errors.append(str(e))
    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    check(not errors, "; ".join(errors[:3]))
    return results


class Load(threading.Thread):
    """New cards charged (authorize with automatic capture) until told to stop."""

    def __init__(self, env, key, index, rng_seed):
        threading.Thread.__init__(self)
        self.client = env.client(key)
        self.index = index
        self.rng = random.Random(rng_seed)
        self.stop = threading.Event()
        self.numbers = []
        self.errors = []

    def run(self):
        while not self.stop.is_set() or len(self.numbers) < 3:
            number = card_number(self.rng)
            self.numbers.append(number)
            r = self.client.post("/v1/payments", card_payment(100, number=number, capture="automatic",
                                                              payer="PL%d" % self.index))
            if r.status != 201 or r.json.get("status") != "captured":
                self.errors.append("%r" % r)


def sqlite_key_ids(db):
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    try:
        cards = dict(con.execute("SELECT data_key_id, count(*) FROM vault_cards GROUP BY data_key_id").fetchall())
        keys = [row[0] for row in con.execute("SELECT id FROM vault_keys WHERE kind = 'data'")]
    finally:
        con.close()
    return cards, keys


def approve(env, m, admin, p):
    expect(admin.post("/v1/risk/reviews/%d/approve" % p["risk"]["decision_id"], {}), 200, what="approve")
    done = wait_status(m, p["id"], ["authorized", "failed", "declined"], "review approved")
    check(done["status"] == "authorized", "the stored card charged: %r" % done)
    status, auth = env.card.call("GET", "/v1/authorizations/" + done["channel_ref"])
    check(status == 200 and auth["status"] == "approved" and auth["amount"] == p["amount"],
          "the simulator holds the authorization: %r" % auth)
    return done


def killed_rotation(env, rng, stored, key_before):
    """SIGKILL during a rotation (on SQLite once its new key is stored, else at a random
    moment: before, between or after its batches):
    after the restart every card still has its key, and one more rotation finishes the
    work. Passes wherever the kill lands; says where it landed."""
    admin = env.client()

    def post():
        try:
            admin.request("POST", "/v1/admin/vault/rotate", {"data_key": True})
        except Exception:  # noqa: BLE001 (the server dies under the request)
            pass
    caller = threading.Thread(target=post)
    caller.start()
    if PG_HOST:
        time.sleep(rng.uniform(0, 0.2))  # the kill's moment, chosen at random
    else:  # as soon as the new key is stored: most likely between batches
        while caller.is_alive() and len(sqlite_key_ids(env.server.db)[1]) < 2:
            pass
    env.stop(signal.SIGKILL)
    caller.join()
    env.start()
    left = None
    if not PG_HOST:
        cards, keys = sqlite_key_ids(env.server.db)
        check(0 < len(keys) <= 2 and set(cards) <= set(keys) and (key_before in keys or len(keys) == 1),
              "after the kill every card's key is stored, the old one until no card is under it: cards %r"
              " keys %r" % (cards, keys))
        left = keys
    done = rotate(env)
    check(done["data_keys_remaining"] == 0 and done["cards_reencrypted"] == stored,
          "the rotation after the kill re-encrypts every card (%d): %r" % (stored, done))
    if left is not None:
        check(sorted(done["data_keys_retired"]) == sorted(left), "it retires every key left: %r vs %r"
              % (done["data_keys_retired"], left))
        check(sqlite_key_ids(env.server.db) == ({done["data_key_id"]: stored}, [done["data_key_id"]]),
              "one data key left, every card under it")
        return "killed with %d data key(s) stored" % len(left)
    return "killed"


def main():
    rng = random.Random(int.from_bytes(os.urandom(4), "little"))
    env = Env()
    numbers = []
    try:
        env.start()
        m = env.merchant("m1")
        waiting_numbers = [card_number(rng) for _ in range(WAITING)]
        numbers += waiting_numbers

        def review(m, admin, number):
            p = expect(m.post("/v1/payments", card_payment(500, number=number, payer="P_REVIEW")), 201,
                       what="card into review").json
            check(p["status"] == "in_review", "waits in review: %r" % p["status"])
            check(p["payment_method"]["card"]["last4"] == number[-4:], "last 4 kept")
            return p
        waiting = parallel(env, m.key, waiting_numbers, review)
        approve(env, m, env.admin, waiting.pop())
        if not PG_HOST:
            cards, keys = sqlite_key_ids(env.server.db)
            check(len(cards) == 1 and len(keys) == 1 and list(cards) == keys, "one data key before: %r %r"
                  % (cards, keys))
        stored_before = WAITING
        for body, code, field in (({"data_key": "yes"}, "field_type", "data_key"),
                                  ({"data_key": True, "now": 1}, "field_unknown", "now"),
                                  ({"data_key": True, "background": 1}, "field_type", "background"),
                                  ({"background": True}, "invalid_argument", "background")):
            r = expect(env.admin.post("/v1/admin/vault/rotate", body), 400, code, "rotate %r" % body)
            check(r.json["error"].get("field") == field, "the field is named: %r" % r.json)
        expect(m.post("/v1/admin/vault/rotate", {"data_key": True}), 403, what="a merchant key may not rotate")
        expect(m.get("/v1/admin/vault/rotation"), 403, what="a merchant key may not see the rotation")
        idle = expect(env.admin.get("/v1/admin/vault/rotation"), 200, what="rotation status").json
        check(idle["state"] == "idle" and idle["error"] is None, "no rotation since the start: %r" % idle)
        if not PG_HOST:
            check(sqlite_key_ids(env.server.db) == (cards, keys), "refused rotations changed nothing")

        loads = [Load(env, m.key, i, rng.random()) for i in range(2)]
        for load in loads:
            load.start()
        wait_for("payments flowing before the rotation", lambda: all(len(load.numbers) > 1 for load in loads))
        first = rotate(env)
        for load in loads:
            load.stop.set()
        for load in loads:
            load.join()
            numbers += load.numbers
        errors = [e for load in loads for e in load.errors]
        check(not errors, "payments during the data-key rotation failed: %s" % errors[:3])
        check(len(first["data_keys_retired"]) == 1 and first["data_keys_remaining"] == 0,
              "the old data key retired, none left: %r" % first)
        old_key = first["data_keys_retired"][0]
        check(old_key != first["data_key_id"], "a new data key: %r" % first)
        check(first["cards_reencrypted"] >= stored_before and first["batches"] >= 2,
              "every stored card re-encrypted, in batches of %d: %r" % (BATCH_CARDS, first))
        if not PG_HOST:
            cards, keys = sqlite_key_ids(env.server.db)
            check(list(cards) == [first["data_key_id"]] and keys == [first["data_key_id"]],
                  "no card or key row names the old key %s: cards %r keys %r" % (old_key, cards, keys))

        stored = stored_before + sum(len(load.numbers) for load in loads)
        second = rotate(env)
        check(second["data_keys_retired"] == [first["data_key_id"]] and second["data_keys_remaining"] == 0,
              "the second rotation retires exactly the first's key: %r" % second)
        check(second["cards_reencrypted"] == stored,
              "every card (%d) was under the first rotation's key: %r" % (stored, second))

        where = killed_rotation(env, rng, stored, second["data_key_id"])
        m = env.client(m.key)

        half = len(waiting) // 2
        parallel(env, m.key, waiting[:half], lambda m, admin, p: approve(env, m, admin, p))
        env.stop()
        env.start()
        m = env.client(m.key)
        parallel(env, m.key, waiting[half:], lambda m, admin, p: approve(env, m, admin, p))
        again = expect(m.post("/v1/payments", card_payment(300, number=waiting_numbers[0], capture="automatic")),
                       201, what="a known card again").json
        check(again["status"] == "captured", "a known card charges after restart: %r" % again)
        check(again["payment_method"]["card"]["fingerprint"] == waiting[0]["payment_method"]["card"]["fingerprint"],
              "the fingerprint key was kept: the same card is recognised")
        env.stop()

        for name in sorted(os.listdir(env.dir)):
            path = os.path.join(env.dir, name)
            if os.path.isfile(path):
                data = open(path, "rb").read()
                for number in numbers:
                    check(number.encode() not in data, "%s holds card number %s" % (name, number))
        env.server.check_sanitizers()
    finally:
        env.close()
    print("payments data-key rotation: ok (%d cards re-encrypted, %d batches; %s)"
          % (first["cards_reencrypted"], first["batches"], where))


if __name__ == "__main__":
    main()
