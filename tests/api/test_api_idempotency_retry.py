"""Goal: a client that has its answer may retry its Idempotency-Key at once, on any
connection, and gets the stored reply byte for byte: never 409
idempotency_key_in_progress from a request that has already answered. libmicrohttpd
runs a request's completion only after the reply's last byte was sent, and a thread
preempted right there (a loaded machine) used to keep the key "in progress" while the
client, answer in hand, retried on a new connection served by another thread.
Method: a real server with 2 HTTP threads and PAYCORE_TEST_COMPLETION_DELAY_MS, which
holds each completion back 1.5 s (the preemption made long); after each answered
request, four new connections held open at once (consecutive descriptors, spread over
both threads) replay its key. A transfer, a refused transfer and an account, each
replayed while the state has moved so a second execution would answer differently.
(A key whose request still runs answers 409: test_api_idempotency.py.)"""
import http.client
import os

from pcapi import Server, account, check, expect, transfer

DELAY_MS = 1500
REPLAYS = 4


def replays_at_once(server, key_secret, path, body, idem_key, first, what):
    clients = [server.client(key_secret) for _ in range(REPLAYS)]
    try:
        for c in clients:  # every connection open before any replay: they spread over the threads
            c.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            c.conn.connect()
        for i, c in enumerate(clients):
            again = c.post(path, body, headers={"Idempotency-Key": idem_key})
            check(again.status == first.status and again.raw == first.raw,
                  "%s: replay %d on a new connection answers the stored reply (%d, first %d): %r"
                  % (what, i, again.status, first.status, again))
            check(again.headers.get("idempotent-replayed") == "true", "%s: replay %d is marked" % (what, i))
    finally:
        for c in clients:
            c.close()


def main():
    os.environ["PAYCORE_TEST_COMPLETION_DELAY_MS"] = str(DELAY_MS)
    server = Server(extra_args=["--threads", "2"])
    try:
        server.start()
        admin = server.client()
        expect(admin.post("/v1/accounts", {"accounts": [account("bank"), account("alice"),
                                                        account("bob", flags=["debits_must_not_exceed_credits"])]}),
               200, what="accounts")
        body = transfer("t1", "bank", "alice", 100)
        first = expect(admin.post("/v1/transfers", body, headers={"Idempotency-Key": "k-t1"}), 201, what="transfer")
        replays_at_once(server, server.admin_key, "/v1/transfers", body, "k-t1", first, "transfer")

        refused_body = transfer("t2", "bob", "alice", 50)
        refused = expect(admin.post("/v1/transfers", refused_body, headers={"Idempotency-Key": "k-t2"}), 422,
                         "exceeds_credits", "overdraw")
        expect(admin.post("/v1/transfers", transfer("fund-bob", "bank", "bob", 1000)), 201, what="fund bob")
        replays_at_once(server, server.admin_key, "/v1/transfers", refused_body, "k-t2", refused, "refusal")

        made = expect(admin.post("/v1/accounts", account("carol"), headers={"Idempotency-Key": "k-acc"}), 201,
                      what="account")
        replays_at_once(server, server.admin_key, "/v1/accounts", account("carol"), "k-acc", made, "account")

        got = expect(admin.get("/v1/transfers/t1"), 200, what="t1")
        check(got.json["amount"] == 100, "t1 ran once: %r" % got.json)
        server.stop()
    finally:
        os.environ.pop("PAYCORE_TEST_COMPLETION_DELAY_MS", None)
        server.close()
    print("ok")


if __name__ == "__main__":
    main()
