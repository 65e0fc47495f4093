"""Goal: a merchant cannot hide another merchant's transfer, reach its pending hold or
defeat its idempotent retries by choosing ids whose hashes collide. Method: a real
server and two merchant keys. The attacker builds, for each of the victim's
(predictable) ids, 20 ids whose 64-bit pc_hash64 equals the victim id's: that hash is
unkeyed and invertible, so they are solved for directly (below), as anyone could. The
attacker creates them on its own accounts first; then the victim creates a transfer
and a pending hold under those ids. Every reader must still find the victim's
transfer, the victim's retry must answer exists (no second transfer), the attacker's
void of the victim's hold must be refused as if the hold did not exist, balances must
be exact, and after a restart (lookups from the index file) the same; `paycore
verify` must pass. With the ids' index keyed by the unkeyed hash and a lookup
inspecting at most 16 candidates, the victim's transfer read as 404, its retry
created it twice (verify: "id appears twice") and the attacker voided its hold."""
import random
import subprocess

from pcapi import BIN, TIMEOUT_S, Server, account, check, expect, transfer

MASK = (1 << 64) - 1
FNV_PRIME = 0x100000001B3
FNV_PRIME_INVERSE = pow(FNV_PRIME, -1, 1 << 64)
ID_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-"
COLLIDERS = 20  # more than any fixed candidate cap a lookup might have


def hash_state(data):
    """pc_hash64 (src/core/core.c) before its final mix."""
    h = 0xCBF29CE484222325 ^ len(data)
    i = 0
    while len(data) - i >= 8:
        h = ((h ^ int.from_bytes(data[i:i + 8], "little")) * FNV_PRIME) & MASK
        h ^= h >> 29
        i += 8
    for byte in data[i:]:
        h = ((h ^ byte) * FNV_PRIME) & MASK
    return h


def pc_hash64(data):
    h = hash_state(data)
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & MASK
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & MASK
    h ^= h >> 33
    return h


def unshift29(y):
    """Inverse of x ^ (x >> 29) on 64 bits."""
    return y ^ (y >> 29) ^ (y >> 58)


def colliding_ids(target, count, prefix):
    """'count' 24-byte ids with pc_hash64(id) == pc_hash64(target): the first word is
    the prefix, the second drawn at random from id characters, the third solved from
    the target's state; kept when the third's bytes are all id characters too (about
    1 draw in 50,000)."""
    goal = (unshift29(hash_state(target.encode())) * FNV_PRIME_INVERSE) & MASK
    allowed = [b in ID_CHARS for b in range(256)]
    head = prefix.encode()[:8].ljust(8, b"x")
    h0 = (((0xCBF29CE484222325 ^ 24) ^ int.from_bytes(head, "little")) * FNV_PRIME) & MASK
    h0 ^= h0 >> 29
    pairs = [ID_CHARS[i % 64] | (ID_CHARS[i // 64] << 8) for i in range(4096)]  # two id characters
    lanes = [[p << (16 * lane) for p in pairs] for lane in range(4)]
    rng = random.Random(target)
    found = []
    while len(found) < count:
        r = rng.getrandbits(48)
        word = lanes[0][r & 4095] | lanes[1][(r >> 12) & 4095] | lanes[2][(r >> 24) & 4095] | lanes[3][r >> 36]
        h1 = ((h0 ^ word) * FNV_PRIME) & MASK
        tail = h1 ^ (h1 >> 29) ^ goal
        if not allowed[tail & 0xFF] or not allowed[(tail >> 8) & 0xFF]:
            continue
        tail_bytes = tail.to_bytes(8, "little")
        if all(allowed[b] for b in tail_bytes):
            found.append((head + word.to_bytes(8, "little") + tail_bytes).decode())
    for c in found:
        check(pc_hash64(c.encode()) == pc_hash64(target.encode()), "collision %s" % c)
    return found


def make_merchant(admin, name):
    r = expect(admin.post("/v1/api-keys", {"scope": "merchant", "name": name}), 201, what="key " + name)
    return r.json["key"]


def balances(admin, account_id):
    return expect(admin.get("/v1/accounts/" + account_id), 200, what="account " + account_id).json


def setup(server, admin):
    attacker = server.client(make_merchant(admin, "attacker"))
    victim = server.client(make_merchant(admin, "victim"))
    expect(admin.post("/v1/accounts", account("bank")), 201, what="bank")
    expect(attacker.post("/v1/accounts", {"accounts": [account("m1"), account("m2")]}), 200, what="attacker accounts")
    expect(victim.post("/v1/accounts", {"accounts": [account("v1"), account("v2")]}), 200, what="victim accounts")
    expect(admin.post("/v1/transfers", transfer("fund-m1", "bank", "m1", 1000)), 201, what="fund m1")
    expect(admin.post("/v1/transfers", transfer("fund-v1", "bank", "v1", 1000)), 201, what="fund v1")
    return attacker, victim


def plant(attacker, target, prefix):
    """The attacker's transfers under ids colliding with 'target', on its own accounts."""
    ids = colliding_ids(target, COLLIDERS, prefix)
    body = {"transfers": [transfer(i, "m1", "m2", 1) for i in ids]}
    r = expect(attacker.post("/v1/transfers", body), 200, what="colliding ids")
    check(all(x["status"] == "created" for x in r.json["results"]), "colliders created: %r" % r)
    return ids


def check_found(clients, transfer_id, what):
    for name, client in clients:
        r = expect(client.get("/v1/transfers/" + transfer_id), 200, what="%s reads %s (%s)" % (name, transfer_id, what))
        check(r.json["id"] == transfer_id, "the transfer read is %s: %r" % (transfer_id, r))


def attack(server, admin, attacker, victim, colliders):
    payment = transfer("order-1001", "v1", "v2", 100)
    expect(victim.post("/v1/transfers", payment), 201, what="victim's payment")
    hold = transfer("hold-2002", "v1", "v2", 50, flags=["pending"], timeout_s=3600)
    expect(victim.post("/v1/transfers", hold), 201, what="victim's hold")
    check_found([("admin", admin), ("victim", victim)], "order-1001", "after colliders")
    check_found([("admin", admin), ("victim", victim)], "hold-2002", "after colliders")
    r = expect(victim.post("/v1/transfers", payment), 200, what="victim's idempotent retry")
    check(r.json["status"] == "exists", "the retry finds the payment: %r" % r)
    void = {"id": "m-void-1", "pending_id": "hold-2002", "flags": ["void_pending"]}
    r = attacker.post("/v1/transfers", void)
    check(r.status in (404, 422) and r.code() == "pending_transfer_not_found",
          "the attacker's void of a foreign hold is refused as missing: %r" % r)


def check_state(server, admin, victim, colliders, what):
    check_found([("admin", admin), ("victim", victim)], "order-1001", what)
    r = expect(admin.get("/v1/transfers/hold-2002"), 200, what="hold " + what)
    check(r.json["pending_state"] == "pending", "the victim's hold is still pending %s: %r" % (what, r))
    v2 = balances(admin, "v2")
    check(v2["credits_posted"] == 100 and v2["credits_pending"] == 50, "v2 %s: %r" % (what, v2))
    v1 = balances(admin, "v1")
    check(v1["debits_posted"] == 100 and v1["debits_pending"] == 50, "v1 %s: %r" % (what, v1))
    m2 = balances(admin, "m2")
    check(m2["credits_posted"] == len(colliders), "m2 %s: %r" % (what, m2))
    for cid in colliders[:3] + colliders[-3:]:
        check_found([("admin", admin)], cid, what)


def verify(server):
    out = subprocess.run([BIN, "verify"] + server.store_location_args(), capture_output=True, text=True,
                         timeout=TIMEOUT_S * 6)
    check(out.returncode == 0, "verify: %s %s" % (out.stdout, out.stderr))


def main():
    server = Server()
    try:
        server.start()
        admin = server.client()
        attacker, victim = setup(server, admin)
        colliders = plant(attacker, "order-1001", "m-order") + plant(attacker, "hold-2002", "m-hold")
        attack(server, admin, attacker, victim, colliders)
        check_state(server, admin, victim, colliders, "live")
        check(server.stop() == 0, "clean stop")
        server.start()
        admin, victim = server.client(), server.client(victim.key)
        check_state(server, admin, victim, colliders, "after a restart")
        r = expect(victim.post("/v1/transfers", transfer("order-1001", "v1", "v2", 100)), 200, what="retry after restart")
        check(r.json["status"] == "exists", "the retry after a restart finds the payment: %r" % r)
        check(server.stop() == 0, "clean stop")
        verify(server)
    finally:
        server.close()
    print("test_api_adversarial_ids: ok")


if __name__ == "__main__":
    main()
