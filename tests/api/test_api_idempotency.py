"""Goal: an Idempotency-Key replays the stored status and body, refuses a different
body with 409, is scoped per API key, survives a restart and a kill -9, and bad keys
are 400. Method: a real server; the state changes between the first request and the
replay, so a re-execution would answer differently and fail the test."""
import signal

from pcapi import Server, account, check, expect, transfer


def post(c, path, body, key):
    return c.post(path, body, headers={"Idempotency-Key": key})


def test_replay(admin, other):
    expect(admin.post("/v1/accounts", {"accounts": [account("bank"), account("alice"),
                                                    account("bob", flags=["debits_must_not_exceed_credits"])]}),
           200, what="accounts")
    first = expect(post(admin, "/v1/transfers", transfer("t1", "bank", "alice", 100), "k-1"), 201, what="first")
    again = expect(post(admin, "/v1/transfers", transfer("t1", "bank", "alice", 100), "k-1"), 201, what="replay")
    check(again.raw == first.raw, "replay returns the stored body byte for byte")
    check(again.headers.get("idempotent-replayed") == "true", "replay is marked")
    plain = expect(admin.post("/v1/transfers", transfer("t1", "bank", "alice", 100)), 200, what="no key")
    check(plain.json["status"] == "exists", "without the key the ledger answers exists")
    r = expect(post(admin, "/v1/transfers", transfer("t1", "bank", "alice", 101), "k-1"), 409,
               "idempotency_key_reused", "different body")
    check(r.json["error"]["type"] == "idempotency_error", "409 type")
    # a refused event is stored too: funding bob later does not change the replay
    refused = expect(post(admin, "/v1/transfers", transfer("t2", "bob", "alice", 50), "k-2"), 422,
                     "exceeds_credits", "overdraw")
    expect(admin.post("/v1/transfers", transfer("fund-bob", "bank", "bob", 1000)), 201, what="fund bob")
    replay = expect(post(admin, "/v1/transfers", transfer("t2", "bob", "alice", 50), "k-2"), 422,
                    "exceeds_credits", "refusal replayed")
    check(replay.raw == refused.raw, "stored refusal replayed")
    # scoped per API key: the same key string under another API key is independent
    r = expect(post(other, "/v1/transfers", transfer("t3", "bank", "alice", 7), "k-1"), 201, what="other key")
    check(r.json["id"] == "t3", "other API key's own result")
    # accounts and API keys too; a key's secret is never replayed
    a1 = expect(post(admin, "/v1/accounts", account("carol"), "k-acc"), 201, what="account")
    a2 = expect(post(admin, "/v1/accounts", account("carol"), "k-acc"), 201, what="account replay")
    check(a1.raw == a2.raw, "account replay")
    k1 = expect(post(admin, "/v1/api-keys", {"scope": "read_only", "name": "r"}, "k-key"), 201, what="key")
    k2 = expect(post(admin, "/v1/api-keys", {"scope": "read_only", "name": "r"}, "k-key"), 201, what="key replay")
    check("key" in k1.json and "key" not in k2.json and k1.json["id"] == k2.json["id"],
          "the secret is shown once, never replayed: %r" % k2)
    return first


def test_invalid_keys(admin):
    expect(post(admin, "/v1/transfers", transfer("t9", "bank", "alice", 1), ""), 400,
           "idempotency_key_invalid", "empty key")
    expect(post(admin, "/v1/transfers", transfer("t9", "bank", "alice", 1), "x" * 256), 400,
           "idempotency_key_invalid", "256 chars")
    expect(admin.get("/v1/transfers/t9"), 404, "not_found", "refused: nothing written")
    expect(post(admin, "/v1/transfers", transfer("t9", "bank", "alice", 1), "y" * 255), 201, what="255 chars")


def test_concurrent(server):
    """The same key from 12 clients at once: one execution; the others replay it or get
    409 idempotency_key_in_progress; never a second execution."""
    import threading
    replies = []
    lock = threading.Lock()

    def worker(i):
        c = server.client()
        r = post(c, "/v1/transfers", transfer("t-race", "bank", "alice", 9), "k-race")
        with lock:
            replies.append(r)
        c.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    ok = [r for r in replies if r.status == 201]
    busy = [r for r in replies if r.status == 409]
    check(len(ok) + len(busy) == 12 and ok, "race replies: %r" % [r.status for r in replies])
    check(all(r.raw == ok[0].raw for r in ok), "every 201 is the same reply")
    check(all(r.code() == "idempotency_key_in_progress" for r in busy), "409 in progress")
    check(ok[0].json["status"] == "created", "the one execution created it")


def main():
    server = Server()
    try:
        server.start()
        admin = server.client()
        other_key = expect(admin.post("/v1/api-keys", {"scope": "admin", "name": "second"}), 201,
                           what="second admin").json["key"]
        first = test_replay(admin, server.client(other_key))
        test_invalid_keys(admin)
        test_concurrent(server)
        check(server.stop() == 0, "SIGTERM exits 0")
        server.start()
        admin = server.client()
        r = expect(post(admin, "/v1/transfers", transfer("t1", "bank", "alice", 100), "k-1"), 201,
                   what="replay after restart")
        check(r.raw == first.raw, "same body after restart")
        expect(post(admin, "/v1/transfers", transfer("t1", "bank", "alice", 5), "k-1"), 409,
               "idempotency_key_reused", "conflict after restart")
        crash = expect(post(admin, "/v1/transfers", transfer("t-crash", "bank", "alice", 3), "k-crash"), 201,
                       what="before kill")
        server.stop(signal.SIGKILL)
        server.start()
        r = expect(post(server.client(), "/v1/transfers", transfer("t-crash", "bank", "alice", 3), "k-crash"),
                   201, what="replay after kill -9")
        check(r.raw == crash.raw, "acknowledged reply survives kill -9")
    finally:
        server.close()
    print("api idempotency: ok")


if __name__ == "__main__":
    main()
