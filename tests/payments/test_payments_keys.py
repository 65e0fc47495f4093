"""Goal: `paycore keys rotate` replaces the card vault's key-encryption key while the
server serves, and afterwards only the new key opens the vault.
Method: a real server and simulators. Cards go in before the rotation (one waits in
3-D Secure, so its number must be decrypted later for the channel). Payments keep
flowing from other threads while `paycore keys rotate` runs twice; none may fail.
Then: the key file holds a new key (0600), no file holds the old one; a server given
the old key or a random one refuses to start (vault_key_mismatch); the server on the
new key file completes the waiting 3-D Secure payment (the card number decrypted) and
takes new cards. A rotation interrupted after its commit (old key in the file, the new
one in FILE.next) is finished at start; a stale FILE.next is removed. Last, every file
is searched for every card number used (the PAN grep)."""
import os
import re
import stat
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paylib import BIN, CARD, CARD_3DS, TIMEOUT_S, Env, card_payment, check, expect, fail, wait_for  # noqa: E402

LOAD_CARDS = ["5555555555554444", "4000000000000002", CARD]


def rotate(env):
    out = subprocess.run([BIN, "keys", "rotate", "--url", "http://127.0.0.1:%d" % env.port, "--key",
                          env.server.admin_key, "--json"], capture_output=True, text=True, timeout=TIMEOUT_S)
    check(out.returncode == 0, "keys rotate failed: %s %s" % (out.stdout, out.stderr))
    import json
    reply = json.loads(out.stdout)
    check(reply["keys_rewrapped"] == 2, "the data key and the fingerprint key re-wrapped: %r" % reply)
    check(reply["kek_id"] != reply["previous_kek_id"], "a new key: %r" % reply)
    return reply


def key_text(path):
    check(os.path.exists(path), "key file %s exists" % path)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    check(mode == 0o600, "key file %s is 0600, not %o" % (path, mode))
    return open(path).read()


def write_key(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, text.encode())
    os.close(fd)


def refuses(env, key_path, what):
    """A server started on 'key_path' must exit with vault_key_mismatch."""
    args = [BIN, "serve", "--db", env.server.db, "--listen", "127.0.0.1:0", "--channels", env.channels,
            "--risk-rules", env.rules, "--vault-key", key_path]
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        fail("%s: the server started (it must refuse the key)" % what)
    check(out.returncode != 0 and "vault_key_mismatch" in out.stderr,
          "%s: refused with vault_key_mismatch, got %d %s" % (what, out.returncode, out.stderr[-600:]))


class Load(threading.Thread):
    """Card payments (authorize + capture) until told to stop; every one must succeed."""

    def __init__(self, env, merchant_key, index):
        threading.Thread.__init__(self)
        self.client = env.client(merchant_key)
        self.index = index
        self.stop = threading.Event()
        self.done = 0
        self.errors = []

    def run(self):
        n = 0
        while not self.stop.is_set() or n < 3:
            number = LOAD_CARDS[(self.index + n) % len(LOAD_CARDS)]
            n += 1
            key = "load-%d-%d" % (self.index, n)
            r = self.client.post("/v1/payments", card_payment(100 + n, number=number, payer="PL%d" % self.index),
                                 headers={"Idempotency-Key": key})
            if r.status != 201 or r.json.get("status") != "authorized":
                self.errors.append("authorize %r" % r)
                continue
            c = self.client.post("/v1/payments/%s/capture" % r.json["id"], {}, headers={"Idempotency-Key": key + "c"})
            if c.status != 200 or c.json.get("status") != "captured":
                self.errors.append("capture %r" % c)
                continue
            self.done += 1


def main():
    env = Env()
    try:
        env.start()
        key_path = env.server.db + ".vault-key"
        first_key = key_text(key_path)
        m = env.merchant("m1")
        waiting = expect(m.post("/v1/payments", card_payment(700, number=CARD_3DS)), 201, what="3DS").json
        check(waiting["status"] == "requires_action", "3-D Secure waits: %r" % waiting)
        held = expect(m.post("/v1/payments", card_payment(800)), 201, what="authorize").json
        check(held["status"] == "authorized", "authorized before the rotation: %r" % held)

        loads = [Load(env, m.key, i) for i in range(3)]
        for load in loads:
            load.start()
        wait_for("payments flowing before the rotation", lambda: all(load.done > 0 for load in loads))
        first = rotate(env)
        second = rotate(env)
        for load in loads:
            load.stop.set()
        for load in loads:
            load.join()
        errors = [e for load in loads for e in load.errors]
        check(not errors, "payments during the rotation failed: %s" % errors[:3])
        check(sum(load.done for load in loads) >= 9, "payments ran during the rotation")
        check(second["previous_kek_id"] == first["kek_id"], "the second rotation starts from the first's key")

        new_key = key_text(key_path)
        check(new_key != first_key, "the key file holds a new key")
        check(not os.path.exists(key_path + ".next"), "no FILE.next left after a rotation")
        fresh = expect(m.post("/v1/payments", card_payment(900, capture="automatic")), 201, what="after").json
        check(fresh["status"] == "captured", "a card after the rotation, same process: %r" % fresh)
        env.stop()

        old_copy = os.path.join(env.dir, "old.vault-key")
        write_key(old_copy, first_key)
        refuses(env, old_copy, "the old key")
        write_key(old_copy, "ab" * 32 + "\n")
        refuses(env, old_copy, "a random key")
        os.remove(old_copy)
        old_hex = first_key.strip().encode()
        for name in os.listdir(env.dir):
            path = os.path.join(env.dir, name)
            if os.path.isfile(path):
                check(old_hex not in open(path, "rb").read(), "%s still holds the old key" % name)

        env.start()
        m = env.client(m.key)
        done = expect(m.post("/v1/payments/%s/confirm" % waiting["id"], {"code": "123456"}), 200,
                      what="confirm after restart").json
        check(done["status"] == "authorized", "the stored card opened with the new key: %r" % done)
        expect(m.post("/v1/payments/%s/capture" % held["id"], {}), 200, what="capture after restart")
        again = expect(m.post("/v1/payments", card_payment(901, capture="automatic")), 201, what="new card").json
        check(again["status"] == "captured", "new cards: %r" % again)
        check(again["payment_method"]["card"]["fingerprint"] == held["payment_method"]["card"]["fingerprint"],
              "the same card has the same fingerprint across the rotation (its key kept)")
        env.stop()

        # interrupted after the commit: the old key in the file, the new one in FILE.next
        write_key(key_path + ".next", new_key)
        write_key(key_path, first_key)
        env.start()
        check(key_text(key_path) == new_key, "the start finished the rotation (key file replaced)")
        check(not os.path.exists(key_path + ".next"), "FILE.next gone once adopted")
        expect(m.get("/v1/payments/" + waiting["id"]), 200)
        env.stop()
        # interrupted before the commit: FILE.next wraps nothing and is removed
        write_key(key_path + ".next", "cd" * 32 + "\n")
        env.start()
        check(key_text(key_path) == new_key and not os.path.exists(key_path + ".next"), "a stale FILE.next removed")
        env.stop()

        numbers = LOAD_CARDS + [CARD_3DS]
        for name in sorted(os.listdir(env.dir)):
            path = os.path.join(env.dir, name)
            if os.path.isfile(path):
                data = open(path, "rb").read()
                for number in numbers:
                    check(number.encode() not in data, "%s holds card number %s" % (name, number))
        check(re.search(r"key-encryption key rotated", env.server.log() + "".join(
            open(os.path.join(env.dir, f)).read() for f in os.listdir(env.dir) if f.startswith("serve-"))),
            "the rotation is logged")
    finally:
        env.close()
    print("payments keys rotate: ok (%d payments during two rotations)" % sum(load.done for load in loads))


if __name__ == "__main__":
    main()
