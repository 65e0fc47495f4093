"""Goal: a request's path and Idempotency-Key are read alike whether the request keeps
them in itself or in memory of their own (request.c: paths up to 63 bytes and the first
48 bytes of its arena are kept in the request). Method: a real server; accounts whose
ids put the path of GET /v1/accounts/{id} on both sides of 63/64 bytes, each read back
by id; Idempotency-Keys of 46 to 50 bytes and of 255 that differ only in their last
byte, each replayed byte for byte and none taken for another.
Under the sanitizers (make test-sanitize) any overrun of the request's own room fails."""
from pcapi import Server, account, check, expect, transfer

PATH_PREFIX = "/v1/accounts/"


def test_paths(admin):
    ids = ["p" * n for n in range(47, 56)]  # paths of 60 to 68 bytes
    expect(admin.post("/v1/accounts", {"accounts": [account(i) for i in ids]}), 200, what="accounts")
    for i in ids:
        r = expect(admin.get(PATH_PREFIX + i), 200, what="path of %d bytes" % len(PATH_PREFIX + i))
        check(r.json["id"] == i, "account read by a path of %d bytes" % len(PATH_PREFIX + i))
        missing = i[:-1] + "q"
        expect(admin.get(PATH_PREFIX + missing), 404, "not_found", "missing id of %d bytes" % len(i))
    long_id = "x" * 64
    expect(admin.post("/v1/accounts", account(long_id)), 201, what="longest id")
    r = expect(admin.get(PATH_PREFIX + long_id), 200, what="path of 77 bytes")
    check(r.json["id"] == long_id, "longest id read back")


def test_keys(admin):
    expect(admin.post("/v1/accounts", {"accounts": [account("bank"), account("alice")]}), 200, what="accounts")
    lengths = [46, 47, 48, 49, 50, 255]
    firsts = {}
    for n in lengths:
        for last in "ab":
            key = "k" * (n - 1) + last
            tid = "t-%d-%s" % (n, last)
            first = expect(admin.post("/v1/transfers", transfer(tid, "bank", "alice", n),
                                      headers={"Idempotency-Key": key}), 201, what="key of %d bytes" % n)
            check(first.json["id"] == tid, "key of %d bytes ran its own request" % n)
            firsts[key] = first
    for key, first in firsts.items():
        n = len(key)
        tid = "t-%d-%s" % (n, key[-1])
        again = expect(admin.post("/v1/transfers", transfer(tid, "bank", "alice", n),
                                  headers={"Idempotency-Key": key}), 201, what="replay of %d bytes" % n)
        check(again.raw == first.raw, "key of %d bytes replays its own body" % n)
        check(again.headers.get("idempotent-replayed") == "true", "replay of %d bytes is marked" % n)
        expect(admin.post("/v1/transfers", transfer(tid + "-other", "bank", "alice", n),
                          headers={"Idempotency-Key": key}), 409, "idempotency_key_reused",
               "key of %d bytes with another body" % n)


def main():
    server = Server().start()
    try:
        admin = server.client()
        test_paths(admin)
        test_keys(admin)
        admin.close()
        check(server.stop() == 0, "clean stop")
    finally:
        server.close()
    print("ok")


if __name__ == "__main__":
    main()
