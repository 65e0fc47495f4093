"""Goal: every route answers its pinned shape, and every bad request gets its own
status and code and changes nothing. Method: a real server on a free loopback port
with a temporary database; raw bodies for the malformed cases; balances and listings
compared before and after each refused request."""
import http.client
import json
import socket

from pcapi import (Server, account, check, check_conserved, expect, transfer, TIMEOUT_S)


def raw_request(port, data, read_bytes=65536):
    """Sends raw bytes on a new connection; returns the reply's first line and body."""
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        chunks = b""
        while len(chunks) < read_bytes:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks += chunk
            if b"\r\n\r\n" in chunks:
                head, _, rest = chunks.partition(b"\r\n\r\n")
                length = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
                if length and len(rest) >= int(length[0].split(b":")[1]):
                    break
        return chunks.decode("utf-8", "replace")
    finally:
        s.close()


def test_accounts(c):
    r = expect(c.post("/v1/accounts", account("alice", flags=["debits_must_not_exceed_credits", "history"],
                                               metadata={"owner": "u-17"})), 201, what="create alice")
    for field in ("id", "currency", "code", "flags", "debits_pending", "debits_posted", "credits_pending",
                  "credits_posted", "metadata", "timestamp"):
        check(field in r.json, "account reply lacks %s: %r" % (field, r))
    check(r.json["flags"] == ["debits_must_not_exceed_credits", "history"], "flags echo: %r" % r)
    check(r.json["metadata"] == {"owner": "u-17"}, "metadata echo")
    check(r.json["status"] == "created", "status created")
    r = expect(c.post("/v1/accounts", account("alice", flags=["debits_must_not_exceed_credits", "history"],
                                              metadata={"owner": "u-17"})), 200, what="same account again")
    check(r.json["status"] == "exists" and "credits_posted" not in r.json, "exists: no made-up balances %r" % r)
    alice = dict(flags=["debits_must_not_exceed_credits", "history"], metadata={"owner": "u-17"})
    r = expect(c.post("/v1/accounts", account("alice", code=11, **alice)), 422, "exists_with_different_code",
               "alice code")
    check(r.json["error"]["type"] == "ledger_error", "ledger_error type")
    r = expect(c.post("/v1/accounts", {"accounts": [account("bob"), account("bank"), account("alice", code=99, **alice),
                                                    account("eur", "EUR"), account("jpy", "JPY")]}),
               200, what="account batch")
    statuses = [x["status"] for x in r.json["results"]]
    check(statuses == ["created", "created", "exists_with_different_code", "created", "created"],
          "batch statuses %r" % statuses)
    check([x["index"] for x in r.json["results"]] == [0, 1, 2, 3, 4], "batch indices")
    r = expect(c.get("/v1/accounts/alice"), 200, what="get alice")
    check(r.json["id"] == "alice" and r.json["metadata"] == {"owner": "u-17"}, "get alice body %r" % r)
    expect(c.get("/v1/accounts/nobody"), 404, "not_found", "missing account")
    r = expect(c.get("/v1/accounts?limit=2"), 200, what="list")
    check(len(r.json["data"]) == 2 and r.json["has_more"] is True, "list page 1 %r" % r)
    r2 = expect(c.get("/v1/accounts?limit=100&starting_after=" + r.json["data"][-1]["id"]), 200, what="page 2")
    ids = [a["id"] for a in r.json["data"] + r2.json["data"]]
    check(sorted(ids) == sorted(["alice", "bob", "bank", "eur", "jpy"]) and len(set(ids)) == 5, "pages %r" % ids)
    check(r2.json["has_more"] is False, "last page has_more false")


def test_transfers(c):
    r = expect(c.post("/v1/transfers", transfer("fund", "bank", "alice", 10000)), 201, what="fund")
    check(r.json["status"] == "created" and r.json["amount"] == 10000, "created body %r" % r)
    bal = r.json["balances"]
    check(bal["debit_account"]["debits_posted"] == 10000 and bal["credit_account"]["credits_posted"] == 10000,
          "balances after fund %r" % bal)
    r = expect(c.post("/v1/transfers", transfer("fund", "bank", "alice", 10000)), 200, what="same transfer")
    check(r.json["status"] == "exists", "exists status")
    expect(c.post("/v1/transfers", transfer("fund", "bank", "alice", 10001)), 422,
           "exists_with_different_amount", "different amount")
    expect(c.post("/v1/transfers", transfer("over", "alice", "bob", 10001)), 422, "exceeds_credits", "overdraw")
    expect(c.post("/v1/transfers", transfer("over", "alice", "bob", 1)), 422, "id_already_failed", "burned id")
    expect(c.post("/v1/transfers", transfer("x1", "alice", "ghost", 1)), 422, "account_not_found", "ghost")
    expect(c.post("/v1/transfers", transfer("x2", "alice", "eur", 1)), 422, "currency_mismatch", "currency")
    # two-phase: hold, partial post, then void refused
    expect(c.post("/v1/transfers", transfer("hold", "alice", "bob", 3000, flags=["pending"], timeout_s=3600)),
           201, what="pending")
    r = expect(c.post("/v1/transfers", {"id": "cap", "pending_id": "hold", "flags": ["post_pending"],
                                        "amount": 1000}), 201, what="post part")
    check(r.json["amount"] == 1000, "posted amount %r" % r)
    expect(c.post("/v1/transfers", {"id": "void1", "pending_id": "hold", "flags": ["void_pending"],
                                     "amount": -5}), 422, "pending_transfer_already_posted",
           "void after post (its amount is ignored)")
    r = expect(c.get("/v1/transfers/hold"), 200, what="get hold")
    check(r.json["pending_state"] == "posted" and r.json["flags"] == ["pending"], "hold state %r" % r)
    expect(c.get("/v1/transfers/nothing"), 404, "not_found", "missing transfer")
    # a batch with a linked chain failing in the middle
    r = expect(c.post("/v1/transfers", {"transfers": [
        transfer("b1", "alice", "bob", 10, flags=["linked"]),
        transfer("b2", "alice", "ghost", 10),
        transfer("b3", "alice", "bob", 20)]}), 200, what="batch")
    st = [x["status"] for x in r.json["results"]]
    check(st == ["linked_event_failed", "account_not_found", "created"], "batch statuses %r" % st)
    check("timestamp" in r.json["results"][2], "created batch entry has a timestamp")
    # lists on an account
    r = expect(c.get("/v1/accounts/alice/transfers?limit=100"), 200, what="alice transfers")
    ids = [t["id"] for t in r.json["data"]]
    check(ids == ["fund", "hold", "cap", "b3"], "alice transfers asc %r" % ids)
    stamps = [t["timestamp"] for t in r.json["data"]]
    check(stamps == sorted(stamps) and len(set(stamps)) == len(stamps), "timestamps strictly increase")
    r = expect(c.get("/v1/accounts/alice/transfers?order=desc&limit=2"), 200, what="desc")
    check([t["id"] for t in r.json["data"]] == ["b3", "cap"] and r.json["has_more"], "desc page %r" % r)
    r = expect(c.get("/v1/accounts/alice/transfers?from=%d&to=%d" % (stamps[1], stamps[3])), 200, what="range")
    check([t["id"] for t in r.json["data"]] == ["hold", "cap"], "from inclusive, to exclusive %r" % r)
    r = expect(c.get("/v1/accounts/alice/balances?limit=100"), 200, what="history")
    rows = r.json["data"]
    check([h["transfer_id"] for h in rows] == ["fund", "hold", "cap", "b3"], "history rows %r" % rows)
    check(rows[0]["credits_posted"] == 10000 and rows[1]["debits_pending"] == 3000, "history balances %r" % rows)
    check(set(rows[0]) == {"transfer_id", "timestamp", "debits_pending", "debits_posted", "credits_pending",
                           "credits_posted"}, "history fields %r" % rows[0])
    expect(c.get("/v1/accounts/ghost/transfers"), 404, "not_found", "transfers of missing account")
    expect(c.get("/v1/accounts/ghost/balances"), 404, "not_found", "history of missing account")
    check_conserved(c, "after transfers")


def invalid_bodies():
    """(body bytes, code, field) that must all be 400 and change nothing."""
    good = transfer("bad", "alice", "bob", 5)

    def with_(**kw):
        body = dict(good)
        body.update(kw)
        return json.dumps(body).encode()

    deep = b'{"id":"bad","metadata":' + b'{"a":' * 40 + b'"x"' + b'}' * 40 + b'}'
    return [
        (b'{"id": "bad",', "json_invalid", None),
        (b'[1,2,3]', "json_invalid", None),
        (b'{"id":"a","id":"b"}', "json_invalid", None),
        (deep, "nesting_too_deep", None),
        (b'[' * 30000 + b']' * 30000, "nesting_too_deep", None),
        (with_(amount=12.5), "amount_not_integer", "amount"),
        (with_(amount=1e2), "amount_not_integer", "amount"),
        (with_(amount="100"), "amount_not_integer", "amount"),
        (with_(amount=-5), "amount_out_of_range", "amount"),
        (with_(amount=0), "amount_out_of_range", "amount"),
        (json.dumps(good).replace('"amount": 5', '"amount": 9223372036854775808').encode(),
         "amount_out_of_range", "amount"),
        (json.dumps(good).replace('"amount": 5', '"amount": 99999999999999999999999999999').encode(),
         "amount_out_of_range", "amount"),
        (with_(code=70000), "value_out_of_range", "code"),
        (with_(code="1"), "field_type", "code"),
        (with_(colour="red"), "field_unknown", "colour"),
        (with_(flags=["pending", "sideways"]), "flag_unknown", "flags[1]"),
        (with_(flags=["expiry"]), "flag_unknown", "flags[0]"),
        (with_(flags="pending"), "field_type", "flags"),
        (with_(currency="XXY"), "currency_invalid", "currency"),
        (with_(id="has space"), "id_invalid", "id"),
        (with_(id="x" * 65), "id_invalid", "id"),
        (with_(debit_account_id="a/b"), "debit_account_id_invalid", "debit_account_id"),
        (with_(id=5), "field_type", "id"),
        (with_(metadata={"k": 5}), "metadata_invalid", "metadata"),
        (with_(metadata={"k": "v" * 300}), "metadata_too_large", "metadata"),
        (with_(metadata=dict(("k%d" % i, "v") for i in range(17))), "metadata_too_large", "metadata"),
        (json.dumps({k: v for k, v in good.items() if k != "amount"}).encode(), "field_missing", "amount"),
        (b'{"id":"bad\xff\xfe","debit_account_id":"alice"}', "string_not_utf8", None),
        (json.dumps({"transfers": []}).encode(), "batch_empty", "transfers"),
        (json.dumps({"transfers": [transfer("ok1", "alice", "bob", 1), dict(good, amount=1.5)]}).encode(),
         "amount_not_integer", "transfers[1].amount"),
        (json.dumps({"transfers": [good], "extra": 1}).encode(), "field_unknown", "extra"),
    ]


def test_invalid(c, port):
    before = c.get("/v1/accounts?limit=100").raw
    for body, code, field in invalid_bodies():
        r = c.post("/v1/transfers", raw=body)
        expect(r, 400, code, "body %r" % body[:80])
        check(r.json["error"]["type"] == "invalid_request", "type invalid_request for %s" % code)
        if field is not None:
            check(r.json["error"].get("field") == field, "field %s for %s: %r" % (field, code, r))
    r = c.post("/v1/accounts", raw=json.dumps(account("acc-bad", flags=["nope"])).encode())
    expect(r, 400, "flag_unknown", "account flag")
    expect(c.post("/v1/accounts", raw=b""), 400, "json_invalid", "empty body")
    expect(c.post("/v1/accounts", raw=b'{"id":"q","currency":"USD"}', content_type="text/plain"), 415,
           "unsupported_media_type", "415")
    expect(c.get("/v1/nowhere"), 404, "route_not_found", "404 route")
    expect(c.request("PUT", "/v1/accounts"), 405, "method_not_allowed", "405")
    expect(c.get("/v1/accounts?limit=0"), 400, "query_invalid", "limit 0")
    expect(c.get("/v1/accounts?limit=101"), 400, "query_invalid", "limit 101")
    expect(c.get("/v1/accounts?colour=red"), 400, "query_invalid", "unknown query")
    expect(c.get("/v1/accounts/alice/transfers?order=sideways"), 400, "query_invalid", "order")
    expect(c.get("/v1/accounts/alice/transfers?from=-1"), 400, "query_invalid", "from")
    # 413: announced too large, refused before the body is sent
    reply = raw_request(port, b"POST /v1/transfers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                        c.key.encode() + b"\r\nContent-Type: application/json\r\nContent-Length: 99999999\r\n\r\n")
    check(reply.startswith("HTTP/1.1 413") and "body_too_large" in reply, "413 before body: %r" % reply[:200])
    # 413: chunked, counted while reading (server runs with --body-max 64k)
    chunk = b"x" * 60000
    data = (b"POST /v1/transfers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + c.key.encode() +
            b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(3):
        data += b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    data += b"0\r\n\r\n"
    reply = raw_request(port, data)
    check(reply.startswith("HTTP/1.1 413") and "body_too_large" in reply, "413 chunked: %r" % reply[:200])
    after = c.get("/v1/accounts?limit=100").raw
    check(before == after, "refused requests changed nothing")
    expect(c.get("/v1/transfers/bad"), 404, "not_found", "no bad transfer")


def test_ops(c, server):
    r = c.get("/healthz")
    expect(r, 200, what="healthz")
    expect(c.get("/readyz"), 200, what="readyz")
    r = c.get("/metrics")
    expect(r, 200, what="metrics")
    check(r.headers["content-type"].startswith("text/plain"), "metrics content type")
    for name in ("paycore_http_requests_total{", "paycore_http_request_duration_seconds_bucket",
                 "paycore_transfers_committed_total", "paycore_accounts_committed_total",
                 "paycore_writer_batch_size_bucket", "paycore_commit_duration_seconds_bucket",
                 "paycore_writer_queue_depth", "paycore_build_info"):
        check(name in r.raw, "metrics lack %s" % name)
    committed = [l for l in r.raw.splitlines() if l.startswith("paycore_transfers_committed_total ")]
    check(committed and int(committed[0].split()[1]) >= 4, "transfers committed counted: %r" % committed)
    check('route="/v1/transfers",status="400"' in r.raw, "400s counted by route")
    r = expect(c.post("/v1/verify"), 200, what="verify")
    check(r.json["ok"] is True and r.json["transfers"] >= 4, "verify report %r" % r)
    log = server.log()
    check('"msg":"request"' in log and '"request_id":"req_' in log, "JSON access log lines")
    check(c.key not in log, "the key never reaches the log")
    for line in log.splitlines():
        json.loads(line)  # every line is one JSON object


def main():
    server = Server(extra_args=["--body-max", "64k"])
    try:
        server.start()
        c = server.client()
        test_accounts(c)
        test_transfers(c)
        test_invalid(c, server.port)
        # a full 8189 batch is accepted at the default body limit
        server.stop()
        server.start(extra_args=["--body-max", "4m"])
        c = server.client()
        batch = [transfer("big-%d" % i, "bank", "bob", 1) for i in range(8190)]
        expect(c.post("/v1/transfers", {"transfers": batch}), 400, "batch_too_large", "8190 events")
        batch.pop()
        r = expect(c.post("/v1/transfers", {"transfers": batch}), 200, what="8189 batch")
        check(all(x["status"] == "created" for x in r.json["results"]), "8189 created")
        check_conserved(c, "after big batch")
        test_ops(c, server)
        check(server.stop() == 0, "SIGTERM exits 0")
    finally:
        server.close()
    print("api routes: ok")


if __name__ == "__main__":
    main()
