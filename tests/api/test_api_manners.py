"""Goal: what a new user meets answers as documented.
- `from`/`to` beyond int64 or `to=0` on the transfers and balances lists are 400
  query_invalid naming the parameter, not a wrapped or unbounded range.
- The Authorization scheme is case-insensitive (`bearer <key>`, RFC 7235).
- Post and void replies carry the transfer as stored (accounts, currency, code), equal
  to a GET of it; so does an idempotent repeat of either.
- Every created transfer of a batch carries the amount moved and both accounts'
  balances after that event, exactly as a single transfer's reply does; checked
  against a running model of the accounts, through plain, pending, post, void and
  linked events in one batch.
- account_not_found names the side (debit_account_id / credit_account_id) for every
  key, in single replies and in batch results.
Method: one real server over loopback; admin and merchant keys."""
from pcapi import Server, account, check, expect, transfer

INT64_MAX = 2 ** 63 - 1


def test_time_ranges(c):
    expect(c.post("/v1/accounts", {"accounts": [account("r1", flags=["history"]), account("r2")]}), 200,
           what="accounts")
    expect(c.post("/v1/transfers", transfer("r-t1", "r1", "r2", 5)), 201, what="a transfer")
    for route in ("/v1/accounts/r1/transfers", "/v1/accounts/r1/balances"):
        for query, field in (("from=%d" % (INT64_MAX + 1), "from"), ("from=%d" % (2 ** 64 - 1), "from"),
                             ("to=0", "to"), ("to=%d" % (INT64_MAX + 1), "to"), ("to=%d" % (2 ** 64), "to"),
                             ("from=-1", "from"), ("to=00", "to")):
            r = expect(c.get(route + "?" + query), 400, "query_invalid", route + "?" + query)
            check(r.json["error"].get("field") == field, "names %s: %r" % (field, r))
        r = expect(c.get(route + "?from=0&to=%d" % INT64_MAX), 200, what=route + " full range")
        check(len(r.json["data"]) == 1, "the whole range holds the transfer: %r" % r)
        r = expect(c.get(route + "?from=1&to=2"), 200, what=route + " empty range")
        check(r.json["data"] == [], "an early range is empty: %r" % r)


def test_bearer_case(server):
    for scheme in ("bearer", "BEARER", "Bearer", "bEaReR"):
        c = server.client(key="")
        r = c.get("/v1/accounts", headers={"Authorization": scheme + " " + server.admin_key})
        expect(r, 200, what="scheme %r" % scheme)
    c = server.client(key="")
    expect(c.get("/v1/accounts", headers={"Authorization": "bearer  " + server.admin_key}), 200,
           what="spaces after the scheme")
    for header in ("Bearer" + server.admin_key, "Basic " + server.admin_key, "bearer", "Bearer ",
                   "Bearerx " + server.admin_key):
        expect(c.get("/v1/accounts", headers={"Authorization": header}), 401, "unauthenticated", repr(header[:12]))


def same_transfer(reply, stored, what):
    for name in ("id", "debit_account_id", "credit_account_id", "amount", "currency", "code", "flags",
                 "pending_id", "timestamp", "metadata"):
        check(reply.get(name) == stored.get(name), "%s: %s %r, GET says %r" % (what, name, reply.get(name),
                                                                              stored.get(name)))


def test_resolution_replies(admin, merchant):
    expect(merchant.post("/v1/accounts", {"accounts": [account("p1"), account("p2")]}), 200, what="accounts")
    for flag, who, client in (("post_pending", "admin", admin), ("void_pending", "admin", admin),
                              ("post_pending", "merchant", merchant), ("void_pending", "merchant", merchant)):
        hold, resolve = "h-%s-%s" % (flag, who), "x-%s-%s" % (flag, who)
        expect(client.post("/v1/transfers", transfer(hold, "p1", "p2", 40, code=9, flags=["pending"])), 201,
               what="hold")
        body = {"id": resolve, "pending_id": hold, "flags": [flag]}
        if flag == "post_pending":
            body["amount"] = 25
        r = expect(client.post("/v1/transfers", body), 201, what=flag)
        stored = expect(admin.get("/v1/transfers/" + resolve), 200, what="GET " + resolve).json
        check(r.json["debit_account_id"] == "p1" and r.json["credit_account_id"] == "p2" and
              r.json["currency"] == "USD" and r.json["code"] == 9, "%s reply as stored: %r" % (flag, r.json))
        same_transfer(r.json, stored, flag + " reply")
        again = expect(client.post("/v1/transfers", body), 200, what=flag + " repeated")
        check(again.json["status"] == "exists", "exists: %r" % again)
        same_transfer(again.json, stored, flag + " repeated")


class Model:
    """Balances of accounts as the ledger should have them."""

    def __init__(self):
        self.accounts = {}
        self.holds = {}

    def get(self, account_id):
        return self.accounts.setdefault(account_id, {"debits_pending": 0, "debits_posted": 0,
                                                     "credits_pending": 0, "credits_posted": 0})

    def apply(self, event):
        flags = event.get("flags", [])
        if "post_pending" in flags or "void_pending" in flags:
            debit, credit, held = self.holds.pop(event["pending_id"])
            self.get(debit)["debits_pending"] -= held
            self.get(credit)["credits_pending"] -= held
            moved = (event.get("amount") or held) if "post_pending" in flags else held
            if "post_pending" in flags:
                self.get(debit)["debits_posted"] += moved
                self.get(credit)["credits_posted"] += moved
            return debit, credit, moved
        debit, credit, amount = event["debit_account_id"], event["credit_account_id"], event["amount"]
        kind = "pending" if "pending" in flags else "posted"
        self.get(debit)["debits_" + kind] += amount
        self.get(credit)["credits_" + kind] += amount
        if kind == "pending":
            self.holds[event["id"]] = (debit, credit, amount)
        return debit, credit, amount


def test_batch_balances(admin):
    expect(admin.post("/v1/accounts", {"accounts": [account("bb1"), account("bb2"), account("bb3")]}), 200,
           what="accounts")
    model = Model()
    one = expect(admin.post("/v1/transfers", transfer("bb-0", "bb1", "bb2", 3)), 201, what="single").json
    model.apply(transfer("bb-0", "bb1", "bb2", 3))
    events = [transfer("bb-1", "bb1", "bb2", 10), transfer("bb-2", "bb2", "bb3", 4),
              transfer("bb-h1", "bb3", "bb1", 7, flags=["pending"]),
              transfer("bb-h2", "bb1", "bb3", 9, flags=["pending"]),
              {"id": "bb-p1", "pending_id": "bb-h1", "flags": ["post_pending"], "amount": 5},
              {"id": "bb-v2", "pending_id": "bb-h2", "flags": ["void_pending"]},
              transfer("bb-l1", "bb2", "bb1", 2, flags=["linked"]), transfer("bb-l2", "bb1", "bb3", 1),
              transfer("bb-x", "bb1", "nope", 1), transfer("bb-3", "bb3", "bb2", 6)]
    r = expect(admin.post("/v1/transfers", {"transfers": events}), 200, what="batch")
    for event, result in zip(events, r.json["results"]):
        if event["id"] == "bb-x":
            check(result == {"index": 8, "id": "bb-x", "status": "account_not_found",
                             "field": "credit_account_id"}, "refused event: %r" % result)
            continue
        check(result["status"] == "created", "created: %r" % result)
        debit, credit, moved = model.apply(event)
        want = {"debit_account": dict(model.get(debit)), "credit_account": dict(model.get(credit))}
        check(result.get("balances") == want, "%s: balances %r, want %r" % (event["id"], result.get("balances"),
                                                                          want))
        check(result.get("amount") == moved, "%s: amount %r, want %r" % (event["id"], result.get("amount"), moved))
    check(set(one["balances"]) == set(r.json["results"][0]["balances"]), "same shape as a single transfer's")
    for name in ("bb1", "bb2", "bb3"):
        got = expect(admin.get("/v1/accounts/" + name), 200, what=name).json
        check({k: got[k] for k in model.get(name)} == model.get(name), "%s as modelled: %r" % (name, got))


def test_account_side(admin, merchant):
    expect(admin.post("/v1/accounts", account("s1")), 201, what="account")
    expect(merchant.post("/v1/accounts", account("ms1")), 201, what="merchant account")
    for client, own in ((admin, "s1"), (merchant, "ms1")):
        for n, (debit, credit, field) in enumerate(((own, "zz-none", "credit_account_id"),
                                                    ("zz-none", own, "debit_account_id"),
                                                    ("zz-none", "zz-nada", "debit_account_id"))):
            tid = "side-%s-%d" % (own, n)
            r = expect(client.post("/v1/transfers", transfer(tid, debit, credit, 1)), 422, "account_not_found", tid)
            check(r.json["error"].get("field") == field, "%s names %s: %r" % (tid, field, r))
            r = expect(client.post("/v1/transfers", {"transfers": [transfer(tid + "-b", debit, credit, 1)]}), 200,
                       what=tid + " in a batch")
            check(r.json["results"][0].get("field") == field, "batch names %s: %r" % (field, r))


def main():
    server = Server()
    try:
        server.start()
        admin = server.client()
        key = expect(admin.post("/v1/api-keys", {"scope": "merchant", "name": "m"}), 201, what="merchant").json["key"]
        merchant = server.client(key)
        test_time_ranges(admin)
        test_bearer_case(server)
        test_resolution_replies(admin, merchant)
        test_batch_balances(admin)
        test_account_side(admin, merchant)
    finally:
        server.close()
    print("api manners: ok")


if __name__ == "__main__":
    main()
