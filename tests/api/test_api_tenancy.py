"""Goal: merchants are isolated as hostile tenants would test it, over real HTTP.
1. Race: merchant A's batch ends in a pending hold while merchant B posts or voids that
   hold at the same moment; over many rounds B never succeeds, and B's answer is byte
   for byte the answer to a post of a missing hold (so it never carries A's balances).
2. Leak: every answer B gets about A's objects (reads, list cursors, transfers naming
   A's accounts, post/void of A's holds open or resolved, batches) equals the answer
   about a missing object, status, headers and body, apart from the request id;
   creating an id A holds, account or transfer, answers id_taken whatever the fields,
   with nothing of A's object in it.
3. Lists: with more foreign accounts created before a merchant's second account than
   a filtered scan would ever look at, the merchant's GET /v1/accounts pages through
   exactly its own accounts, with has_more and cursors right.
Method: one real server; keys made through the API; threads started together by a
barrier for the race."""
import json
import random
import threading

from pcapi import SANITIZED, Server, account, check, expect, transfer

RACE_ROUNDS = 40 if SANITIZED else 100
FOREIGN_ACCOUNTS = 110000  # more than any bounded scan of all accounts would reach
BATCH_MAX = 8189


def make_key(admin, name, accounts=None):
    body = {"scope": "merchant", "name": name}
    if accounts is not None:
        body["accounts"] = accounts
    return expect(admin.post("/v1/api-keys", body), 201, what="key " + name).json["key"]


def comparable(resp):
    """Status, headers and body of a reply, apart from what differs per request."""
    headers = {k: v for k, v in resp.headers.items() if k not in ("x-request-id", "date")}
    return resp.status, sorted(headers.items()), resp.raw


def same_as_missing(foreign, missing, what):
    check(comparable(foreign) == comparable(missing),
          "%s: a foreign object must read exactly as a missing one:\n  foreign %r %r\n  missing %r %r"
          % (what, foreign, foreign.headers, missing, missing.headers))


# ---- 1. the race ----

def race_round(server, ka, kb, n):
    """A: a batch that ends in a pending hold; B, at the same moment: a post or a
    void of it, twice (at once and a moment later)."""
    hold = "hold-%d" % n
    batch = {"transfers": [transfer("r-%d-%d" % (n, i), "ra1", "ra2", 1) for i in range(20)] +
             [transfer(hold, "ra1", "ra2", 7, flags=["pending"])]}
    flag = "post_pending" if n % 2 == 0 else "void_pending"
    barrier = threading.Barrier(3)
    answers = {}

    def a_side():
        c = server.client(ka)
        barrier.wait()
        answers["a"] = c.post("/v1/transfers", batch)

    def b_side(attempt):
        c = server.client(kb)
        barrier.wait()
        if attempt == 1:
            c.get("/healthz")  # a moment later: after A's batch reached the writer, often
        answers[attempt] = c.post("/v1/transfers", {"id": "b-%d-%d" % (n, attempt), "pending_id": hold,
                                                    "flags": [flag]})

    threads = [threading.Thread(target=a_side)] + [threading.Thread(target=b_side, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        check(not t.is_alive(), "a client hung")
    ra = expect(answers["a"], 200, what="A's batch")
    check(all(x["status"] == "created" for x in ra.json["results"]), "A's batch: %r" % ra.json["results"][-1])
    cb = server.client(kb)
    for attempt in (0, 1):
        missing = cb.post("/v1/transfers", {"id": "m-%d-%d" % (n, attempt), "pending_id": "no-hold-%d" % n,
                                            "flags": [flag]})
        expect(missing, 422, "pending_transfer_not_found", "B on a missing hold")
        check(answers[attempt].status != 201, "round %d: B resolved A's hold: %r" % (n, answers[attempt]))
        same_as_missing(answers[attempt], missing, "round %d, B's %s of A's hold" % (n, flag))
    return hold


def test_race(server, admin, ka, kb):
    ca = server.client(ka)
    expect(ca.post("/v1/accounts", {"accounts": [account("ra1"), account("ra2")]}), 200, what="A's accounts")
    holds = [race_round(server, ka, kb, n) for n in range(RACE_ROUNDS)]
    for hold in holds:  # every hold is still A's to resolve, and open
        r = expect(admin.get("/v1/transfers/" + hold), 200, what="hold")
        check(r.json.get("pending_state") == "pending", "hold untouched: %r" % r)
    a1 = expect(ca.get("/v1/accounts/ra1"), 200, what="ra1").json
    check(a1["debits_pending"] == 7 * RACE_ROUNDS and a1["debits_posted"] == 20 * RACE_ROUNDS,
          "A's balances are A's doing alone: %r" % a1)
    r = expect(ca.post("/v1/transfers", {"id": "a-post", "pending_id": holds[0], "flags": ["post_pending"]}),
               201, what="A posts its own hold")
    check(r.json["debit_account_id"] == "ra1", "post reply as stored: %r" % r)


# ---- 2. the leak test ----

def leak_setup(admin, ca, cb):
    expect(admin.post("/v1/accounts", account("lk-bank")), 201, what="bank")
    expect(ca.post("/v1/accounts", {"accounts": [account("la1", flags=["history"]), account("la2")]}), 200,
           what="A's accounts")
    expect(cb.post("/v1/accounts", {"accounts": [account("lb1", flags=["history"]), account("lb2")]}), 200,
           what="B's accounts")
    expect(admin.post("/v1/transfers", transfer("lk-fund-a", "lk-bank", "la1", 1000)), 201, what="fund A")
    expect(admin.post("/v1/transfers", transfer("lk-fund-b", "lk-bank", "lb1", 1000)), 201, what="fund B")
    expect(ca.post("/v1/transfers", transfer("la-move", "la1", "la2", 10, metadata={"order": "o-1"})), 201,
           what="A moves")
    expect(cb.post("/v1/transfers", transfer("lb-move", "lb1", "lb2", 10)), 201, what="B moves")
    expect(ca.post("/v1/transfers", transfer("la-hold", "la1", "la2", 20, flags=["pending"], timeout_s=3600)),
           201, what="A's open hold")
    expect(ca.post("/v1/transfers", transfer("la-done", "la1", "la2", 30, flags=["pending"])), 201,
           what="A's hold to post")
    expect(ca.post("/v1/transfers", {"id": "la-done-post", "pending_id": "la-done", "flags": ["post_pending"]}),
           201, what="A posts")


def leak_reads(cb):
    pairs = [
        ("/v1/accounts/la1", "/v1/accounts/zz-none"),
        ("/v1/accounts/la1/transfers", "/v1/accounts/zz-none/transfers"),
        ("/v1/accounts/la1/balances", "/v1/accounts/zz-none/balances"),
        ("/v1/transfers/la-move", "/v1/transfers/zz-none"),
        ("/v1/transfers/la-hold", "/v1/transfers/zz-none"),
        ("/v1/accounts?starting_after=la1", "/v1/accounts?starting_after=zz-none"),
        ("/v1/accounts?starting_after=lk-bank", "/v1/accounts?starting_after=zz-none"),
        ("/v1/accounts/lb1/transfers?starting_after=la-move", "/v1/accounts/lb1/transfers?starting_after=zz-none"),
        ("/v1/accounts/lb1/balances?starting_after=la-move", "/v1/accounts/lb1/balances?starting_after=zz-none"),
        ("/v1/accounts/lb1/transfers?starting_after=la-hold&order=desc",
         "/v1/accounts/lb1/transfers?starting_after=zz-none&order=desc"),
    ]
    for foreign, missing in pairs:
        same_as_missing(cb.get(foreign), cb.get(missing), "GET " + foreign)


def leak_writes(cb):
    n = [0]

    def fresh(prefix):
        n[0] += 1
        return "%s-%04d" % (prefix, n[0])

    singles = [
        (lambda i: transfer(i, "la1", "lb1", 1), lambda i: transfer(i, "zz-none", "lb1", 1)),
        (lambda i: transfer(i, "lb1", "la2", 1), lambda i: transfer(i, "lb1", "zz-none", 1)),
        (lambda i: transfer(i, "la1", "la2", 1), lambda i: transfer(i, "zz-none", "zz-nada", 1)),
        (lambda i: transfer(i, "la1", "lb1", 1, flags=["pending"]),
         lambda i: transfer(i, "zz-none", "lb1", 1, flags=["pending"])),
    ]
    for flag in ("post_pending", "void_pending"):
        for hold in ("la-hold", "la-done", "la-move"):
            singles.append((lambda i, h=hold, f=flag: {"id": i, "pending_id": h, "flags": [f]},
                             lambda i, f=flag: {"id": i, "pending_id": "zz-none", "flags": [f]}))
        singles.append((lambda i, f=flag: {"id": i, "pending_id": "la-hold", "flags": [f], "amount": 5,
                                           "debit_account_id": "la1", "credit_account_id": "la2"},
                        lambda i, f=flag: {"id": i, "pending_id": "zz-none", "flags": [f], "amount": 5,
                                           "debit_account_id": "la1", "credit_account_id": "la2"}))
    for make_foreign, make_missing in singles:
        fid, mid = fresh("f"), fresh("m")
        foreign = cb.post("/v1/transfers", make_foreign(fid))
        missing = cb.post("/v1/transfers", make_missing(mid))
        check(foreign.status == 422, "refused: %r" % foreign)
        same_as_missing(foreign, missing, "POST transfer %s" % json.dumps(make_foreign("x")))
        # a refused id is burned alike: its retry answers alike
        same_as_missing(cb.post("/v1/transfers", make_foreign(fid)), cb.post("/v1/transfers", make_missing(mid)),
                        "retry of a refused id")
    for make_foreign, make_missing in singles:  # the same events inside a batch
        fid, mid = fresh("bf"), fresh("bm")
        foreign = cb.post("/v1/transfers", {"transfers": [transfer(fresh("ok"), "lb1", "lb2", 1), make_foreign(fid)]})
        missing = cb.post("/v1/transfers", {"transfers": [transfer(fresh("ok"), "lb1", "lb2", 1), make_missing(mid)]})
        expect(foreign, 200, what="batch")
        fr, mr = foreign.json["results"][1], missing.json["results"][1]
        check(fr["id"] == fid and mr["id"] == mid, "ids echoed")
        fr.pop("id"), mr.pop("id")
        check(fr == mr, "batch: foreign %r, missing %r" % (fr, mr))


def leak_ids(cb):
    """Ids A holds: one uniform answer whatever the fields, nothing of A's object."""
    variants = [account("la1"), account("la1", code=11), account("la1", flags=["history"]),
                account("la1", currency="EUR"), account("la1", metadata={"k": "v"}),
                account("la2"), account("la1", flags=["history"], code=10)]
    replies = [cb.post("/v1/accounts", v) for v in variants]
    for r in replies:
        expect(r, 422, "id_taken", "account id held by A")
        check(comparable(r) == comparable(replies[0]), "uniform: %r vs %r" % (r, replies[0]))
        check("timestamp" not in r.raw and "USD" not in r.raw and "la1" not in r.raw, "nothing told: %r" % r)
    r = expect(cb.post("/v1/accounts", {"accounts": variants}), 200, what="batch of held ids")
    check(all(x["status"] == "id_taken" and set(x) == {"index", "id", "status"} for x in r.json["results"]),
          "batch: uniform, no timestamp: %r" % r.json["results"])
    transfers = [transfer("la-move", "la1", "la2", 10, metadata={"order": "o-1"}),
                 transfer("la-move", "lb1", "lb2", 10), transfer("la-move", "lb1", "lb2", 11),
                 transfer("la-hold", "lb1", "lb2", 20, flags=["pending"], timeout_s=3600),
                 transfer("la-hold", "lb1", "lb2", 20, flags=["pending"], timeout_s=60),
                 {"id": "la-done-post", "pending_id": "la-done", "flags": ["post_pending"]},
                 {"id": "la-done-post", "pending_id": "lb-zz", "flags": ["void_pending"]}]
    replies = [cb.post("/v1/transfers", t) for t in transfers]
    for r in replies:
        expect(r, 422, "id_taken", "transfer id held by A")
        check(comparable(r) == comparable(replies[0]), "uniform: %r vs %r" % (r, replies[0]))
    r = expect(cb.post("/v1/transfers", {"transfers": transfers}), 200, what="batch of held transfer ids")
    check(all(x["status"] == "id_taken" and set(x) == {"index", "id", "status"} for x in r.json["results"]),
          "batch: uniform: %r" % r.json["results"])


def test_leaks(server, admin, ka, kb):
    ca, cb = server.client(ka), server.client(kb)
    leak_setup(admin, ca, cb)
    leak_reads(cb)
    leak_writes(cb)
    leak_ids(cb)
    la1 = expect(admin.get("/v1/accounts/la1"), 200, what="la1").json
    check(la1["debits_posted"] == 40 and la1["debits_pending"] == 20, "A's balances untouched: %r" % la1)
    expect(ca.get("/v1/transfers/la-hold"), 200, what="A's hold still A's")


# ---- 3. a merchant's list among many foreign accounts ----

def test_list(server, admin):
    kc = make_key(admin, "lister")
    cc = server.client(kc)
    expect(cc.post("/v1/accounts", account("mc-000")), 201, what="C's first account")
    for first in range(0, FOREIGN_ACCOUNTS, BATCH_MAX):
        count = min(BATCH_MAX, FOREIGN_ACCOUNTS - first)
        body = {"accounts": [account("fx-%06d" % (first + i)) for i in range(count)]}
        r = expect(admin.post("/v1/accounts", body), 200, what="foreign accounts")
        check(all(x["status"] == "created" for x in r.json["results"]), "foreign accounts created")
    own = ["mc-%03d" % i for i in range(25)]
    random.Random(7).shuffle(own)  # created in another order than their ids
    for account_id in own:
        if account_id != "mc-000":
            expect(cc.post("/v1/accounts", account(account_id)), 201, what="C's account")
    seen, after, pages = [], None, 0
    while True:
        path = "/v1/accounts?limit=10" + ("&starting_after=" + after if after else "")
        r = expect(cc.get(path), 200, what="C's page")
        ids = [a["id"] for a in r.json["data"]]
        pages += 1
        check(len(ids) == 10 or not r.json["has_more"], "full pages while has_more: %r" % r.json)
        seen += ids
        if not r.json["has_more"]:
            break
        check(pages < 10, "the list ends")
        after = ids[-1]
    check(seen == sorted(own), "C lists exactly its accounts, in id order: %r" % seen)
    check(pages == 3, "25 accounts in pages of 10: %d pages" % pages)
    r = expect(cc.get("/v1/accounts?limit=100"), 200, what="C, one page")
    check([a["id"] for a in r.json["data"]] == sorted(own) and r.json["has_more"] is False, "one page: %r" % r.json)
    r = expect(cc.get("/v1/accounts?limit=25"), 200, what="C, exactly 25")
    check(len(r.json["data"]) == 25 and r.json["has_more"] is False, "has_more false at the exact end")
    same_as_missing(cc.get("/v1/accounts?starting_after=fx-000001"), cc.get("/v1/accounts?starting_after=zz"),
                    "a foreign cursor")


def main():
    server = Server()
    try:
        server.start()
        admin = server.client()
        ka, kb = make_key(admin, "merchant-a"), make_key(admin, "merchant-b")
        test_race(server, admin, ka, kb)
        test_leaks(server, admin, ka, kb)
        test_list(server, admin)
    finally:
        server.close()
    print("api tenancy: ok")


if __name__ == "__main__":
    main()
