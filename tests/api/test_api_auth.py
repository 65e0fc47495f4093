"""Goal: keys authenticate and scopes authorize exactly as pinned, and a merchant key
never reaches (or learns of) another merchant's accounts and transfers. Method: a
real server; admin, merchant and read_only keys made through the API; every route
called with every kind of key; merchant A probes merchant B's objects by id, list and
transfer; a revoked key fails, also after a restart; a rate-limited server answers 429
with Retry-After and recovers."""
import time

from pcapi import Server, account, check, expect, transfer


def make_key(admin, scope, name, accounts=None):
    body = {"scope": scope, "name": name}
    if accounts is not None:
        body["accounts"] = accounts
    r = expect(admin.post("/v1/api-keys", body), 201, what="create %s key" % scope)
    check(r.json["key"].startswith("pck_") and r.json["scope"] == scope, "key reply %r" % r)
    return r.json


def test_unauthenticated(server, admin):
    for key in ("", "pck_wrong", "x" * 300):
        c = server.client(key=key)
        c.key = key
        r = expect(c.get("/v1/accounts"), 401, "unauthenticated", "key %r" % key[:10])
        check(r.json["error"]["type"] == "authentication_error", "401 type")
    c = server.client()
    r = c.get("/v1/accounts", headers={"Authorization": "Basic " + server.admin_key})
    expect(r, 401, "unauthenticated", "not a bearer")


def setup_merchants(server, admin):
    a = make_key(admin, "merchant", "merchant-a")
    b = make_key(admin, "merchant", "merchant-b")
    ro = make_key(admin, "read_only", "auditor")
    ca, cb = server.client(a["key"]), server.client(b["key"])
    expect(admin.post("/v1/accounts", {"accounts": [account("bank"), account("bank2")]}), 200, what="banks")
    expect(ca.post("/v1/accounts", {"accounts": [account("a1"), account("a2")]}), 200, what="A accounts")
    expect(cb.post("/v1/accounts", account("b1")), 201, what="B account")
    expect(cb.post("/v1/accounts", account("b2")), 201, what="B account 2")
    expect(admin.post("/v1/transfers", transfer("fund-a", "bank", "a1", 500)), 201, what="fund a")
    expect(admin.post("/v1/transfers", transfer("fund-b", "bank", "b1", 700)), 201, what="fund b")
    expect(admin.post("/v1/transfers", transfer("bank-move", "bank", "bank2", 5)), 201, what="bank move")
    expect(ca.post("/v1/transfers", transfer("a-move", "a1", "a2", 100)), 201, what="A moves own")
    expect(cb.post("/v1/transfers", transfer("b-move", "b1", "b2", 50)), 201, what="B moves own")
    return a, b, ro, ca, cb


def test_isolation(server, admin, ca, cb):
    ids = sorted(x["id"] for x in expect(ca.get("/v1/accounts?limit=100"), 200, what="A list").json["data"])
    check(ids == ["a1", "a2"], "A sees only its accounts: %r" % ids)
    missing = expect(ca.get("/v1/accounts/zzz"), 404, "not_found", "A missing").json
    for path in ("/v1/accounts/b1", "/v1/accounts/b1/transfers", "/v1/accounts/b1/balances",
                 "/v1/transfers/b-move", "/v1/transfers/fund-b", "/v1/accounts/bank"):
        r = expect(ca.get(path), 404, "not_found", "A reaching " + path)
        check(r.json == missing, "a foreign object reads exactly as a missing one: %r" % r)
        check("b1" not in r.raw and "700" not in r.raw, "nothing leaked on " + path)
    r = expect(ca.post("/v1/transfers", transfer("steal", "b1", "a1", 10)), 422, "account_not_found", "A debit B")
    check(r.json["error"].get("field") == "debit_account_id", "field names the side")
    expect(ca.post("/v1/transfers", transfer("gift", "a1", "b1", 10)), 422, "account_not_found", "A credit B")
    # in a batch, a foreign account fails its event exactly as a missing one would
    r = expect(ca.post("/v1/transfers", {"transfers": [transfer("ok", "a1", "a2", 1), transfer("bad", "a2", "b2", 1)]}),
               200, what="A batch touching B")
    results = r.json["results"]
    check(results[0]["status"] == "created", "own event created: %r" % results)
    check(results[1] == {"index": 1, "id": "bad", "status": "account_not_found", "field": "credit_account_id"},
          "foreign event refused, side named: %r" % results[1])
    r = expect(ca.post("/v1/transfers", {"transfers": [transfer("ok2", "a1", "a2", 1), transfer("bad2", "a2", "zz", 1)]}),
               200, what="A batch touching a missing account")
    check(r.json["results"][1] == {"index": 1, "id": "bad2", "status": "account_not_found", "field": "credit_account_id"},
          "a missing account reads the same: %r" % r.json["results"][1])
    b1 = expect(admin.get("/v1/accounts/b1"), 200, what="admin sees b1").json
    check(b1["credits_posted"] == 700 and b1["debits_posted"] == 50, "B's balance untouched: %r" % b1)
    r = expect(ca.get("/v1/accounts/a1/transfers"), 200, what="A own transfers")
    check([t["id"] for t in r.json["data"]] == ["fund-a", "a-move", "ok", "ok2"], "A sees transfers touching its account")
    expect(ca.get("/v1/transfers/fund-a"), 200, what="A sees the funding transfer")


def test_grants(server, admin):
    c = make_key(admin, "merchant", "merchant-c", accounts=["b1"])
    cc = server.client(c["key"])
    ids = [x["id"] for x in expect(cc.get("/v1/accounts"), 200, what="C list").json["data"]]
    check(ids == ["b1"], "C sees its granted account: %r" % ids)
    expect(cc.get("/v1/accounts/b2"), 404, "not_found", "C not granted b2")
    r = expect(admin.post("/v1/api-keys", {"scope": "admin", "accounts": ["b1"]}), 400, "invalid_argument",
               "accounts only for merchants")
    expect(admin.post("/v1/api-keys", {"scope": "god"}), 400, "invalid_argument", "bad scope")
    expect(admin.post("/v1/api-keys", {"scope": "admin", "x": 1}), 400, "field_unknown", "unknown field")


def matrix_calls(throwaway_id):
    """(method, path, body, expected status for admin, merchant, read_only, no key)."""
    return [
        ("POST", "/v1/accounts", lambda s: account("m-" + s), (201, 201, 403, 401)),
        ("GET", "/v1/accounts", None, (200, 200, 200, 401)),
        ("GET", "/v1/accounts/bank", None, (200, 404, 200, 401)),
        ("GET", "/v1/accounts/bank/transfers", None, (200, 404, 200, 401)),
        ("GET", "/v1/accounts/bank/balances", None, (200, 404, 200, 401)),
        ("POST", "/v1/transfers", lambda s: transfer("t-" + s, "a1", "a2", 1), (201, 201, 403, 401)),
        ("GET", "/v1/transfers/bank-move", None, (200, 404, 200, 401)),
        ("POST", "/v1/verify", None, (200, 403, 403, 401)),
        ("POST", "/v1/api-keys", lambda s: {"scope": "read_only", "name": s}, (201, 403, 403, 401)),
        ("GET", "/v1/api-keys", None, (200, 403, 200, 401)),
        ("DELETE", "/v1/api-keys/" + throwaway_id, None, (200, 403, 403, 401)),
        ("GET", "/metrics", None, (200, 200, 200, 200)),
        ("GET", "/healthz", None, (200, 200, 200, 200)),
        ("GET", "/readyz", None, (200, 200, 200, 200)),
    ]


def test_matrix(server, admin, ca, ro):
    throwaway = make_key(admin, "read_only", "throwaway")
    clients = [("admin", admin), ("merchant", ca), ("read_only", server.client(ro["key"])),
               ("none", server.client(key=""))]
    for method, path, body_fn, expected in matrix_calls(throwaway["id"]):
        # merchant before admin so that the admin's DELETE comes last
        for index in (1, 2, 3, 0):
            who, client = clients[index]
            body = body_fn(who) if body_fn else None
            r = client.request(method, path, body=body)
            expect(r, expected[index], what="%s %s as %s" % (method, path, who))
            if expected[index] == 403:
                check(r.code() == "forbidden", "403 code forbidden")


def test_revocation(server, admin, a, ca):
    keys = expect(admin.get("/v1/api-keys?limit=100"), 200, what="list keys").json["data"]
    check(any(k["id"] == a["id"] for k in keys), "merchant key listed")
    check(all("key" not in k and "key_hash" not in k for k in keys), "no secret or hash in listings")
    r = expect(admin.delete("/v1/api-keys/" + a["id"]), 200, what="revoke A")
    check(r.json["revoked"] is True, "revoked reply %r" % r)
    expect(ca.get("/v1/accounts"), 401, "unauthenticated", "revoked key")
    expect(admin.delete("/v1/api-keys/key_nonexistent"), 404, "not_found", "revoke unknown")
    server.stop()
    server.start()
    expect(server.client(a["key"]).get("/v1/accounts"), 401, "unauthenticated", "revoked after restart")
    expect(server.client().get("/v1/accounts"), 200, what="admin after restart")


def test_rate_limit():
    # 1 token a second after a burst of 5: however slow the requests are (sanitizers,
    # load), at most 5 + elapsed seconds of them may pass, so the check holds at any speed.
    rate_per_s, burst = 1, 5
    server = Server(extra_args=["--rate-limit", str(rate_per_s), "--rate-burst", str(burst)])
    try:
        server.start()
        c = server.client()
        started = time.monotonic()
        statuses = [c.get("/v1/accounts") for _ in range(12)]
        elapsed_s = time.monotonic() - started
        passed = [r for r in statuses if r.status == 200]
        limited = [r for r in statuses if r.status == 429]
        allowed_max = burst + int(rate_per_s * elapsed_s) + 1
        check(len(passed) + len(limited) == len(statuses), "only 200 or 429: %r" % [r.status for r in statuses])
        check(len(passed) >= burst, "the burst passes: %r" % [r.status for r in statuses])
        check(len(passed) <= allowed_max,
              "429 after the burst: %d passed in %.2f s, at most %d allowed: %r"
              % (len(passed), elapsed_s, allowed_max, [r.status for r in statuses]))
        for r in limited:
            expect(r, 429, "rate_limited", "rate limited")
            check(int(r.headers.get("retry-after", "0")) >= 1, "Retry-After on 429")
        expect(c.get("/healthz"), 200, what="unauthenticated routes are not limited")
        time.sleep(1.3 / rate_per_s)
        expect(c.get("/v1/accounts"), 200, what="tokens refill")
    finally:
        server.close()


def main():
    server = Server()
    try:
        server.start()
        admin = server.client()
        test_unauthenticated(server, admin)
        a, b, ro, ca, cb = setup_merchants(server, admin)
        test_isolation(server, admin, ca, cb)
        test_grants(server, admin)
        test_matrix(server, admin, ca, ro)
        test_revocation(server, admin, a, ca)
    finally:
        server.close()
    test_rate_limit()
    print("api auth: ok")


if __name__ == "__main__":
    main()
