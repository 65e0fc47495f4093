"""Goal: `paycore serve --shards` over three PostgreSQL shards keeps one ledger's
semantics: transfers within a shard and across shards (real two-phase commit),
pending transfers posted and voided across shards, linked chains spanning shards all
or nothing, idempotent replays, refusals that change nothing; each shard's books
balance on their own (clearing accounts); no prepared transaction is left behind; the
start refuses a shard list that differs from the shard map (order, length), a shard
with max_prepared_transactions = 0 and an unreachable shard, each with one line.
Method: three throwaway clusters (shardset.py), init --shards, serve --shards over
loopback; a model of every balance checked after each step through the API, debits ==
credits over all accounts, after a clean stop each shard's own books by SQL, and
pg_prepared_xacts empty; SIGKILL and restart in between."""
import os
import signal
import subprocess
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import shardset  # noqa: E402
from shardset import pcapi  # noqa: E402
from pcapi import BIN, TIMEOUT_S, account, check, expect, transfer  # noqa: E402
from test_pg_store import Model  # noqa: E402


def refused(args, want_code, want_text, what):
    out = subprocess.run([BIN] + args, capture_output=True, text=True, timeout=TIMEOUT_S * 3)
    check(out.returncode != 0, "%s: must be refused at start, got exit 0" % what)
    lines = [line for line in out.stderr.splitlines() if want_text in line]
    check(lines, "%s: no line saying %r in:\n%s" % (what, want_text, out.stderr))
    check(want_code in out.stderr, "%s: want code %s in:\n%s" % (what, want_code, out.stderr))


def refusals(s):
    serve = ["serve", "--db", s.db, "--listen", "127.0.0.1:0", "--no-events", "--shards"]
    refused(serve + [s.shards_arg()], "store_not_paycore", "shard 0: the database is empty", "serve before init")
    s.init()
    refused(serve + [s.shards_arg([s.urls[1], s.urls[0], s.urls[2]])], "store_shard_map_mismatch",
            "another order", "the shard list in another order")
    refused(serve + [s.shards_arg(s.urls[:2])], "store_shard_map_mismatch", "set of 3 shards, --shards names 2",
            "a shorter shard list")
    refused(serve + [s.shards_arg(s.urls + [s.clusters[0].createdb("extra")])], "store_shard_map_mismatch",
            "set of 3 shards", "a longer shard list")
    down = s.urls[:2] + ["postgresql://paycore@127.0.0.1:1/shard?connect_timeout=5"]
    refused(serve + [s.shards_arg(down)], "store_open_failed", "shard 2: cannot connect", "an unreachable shard")
    refused(["init", "--db", s.db + "-again", "--shards", s.shards_arg()], "store_shard_map_mismatch",
            "already shard 0 of a set of 3", "init over a set")
    s.clusters[1].sql("shard", "ALTER SYSTEM SET max_prepared_transactions = 0")
    s.clusters[1].stop()
    s.clusters[1].run("pg_ctl", "-D", s.clusters[1].data, "-l", os.path.join(s.clusters[1].dir, "server.log"), "-w",
                      "-o", "-c listen_addresses='' -c unix_socket_directories='%s'" % s.clusters[1].dir, "start")
    s.clusters[1].started = True
    refused(serve + [s.shards_arg()], "store_two_phase_disabled", "shard 1 (", "max_prepared_transactions = 0")
    s.clusters[1].sql("shard", "ALTER SYSTEM RESET max_prepared_transactions")
    s.clusters[1].stop()
    s.clusters[1].start()


def place(s, client, model, count):
    """Accounts until every shard holds two; returns {shard: [ids]}."""
    by_shard = {}
    for i in range(count):
        account_id = "acct-%d" % i
        expect(client.post("/v1/accounts", account(account_id, flags=["debits_must_not_exceed_credits"])), 201,
               what="create " + account_id)
        model.add_account(account_id)
        by_shard.setdefault(s.shard_of(account_id), []).append(account_id)
    expect(client.post("/v1/accounts", account("bank")), 201, what="create bank")
    model.add_account("bank")
    check(len(by_shard) == 3 and all(len(v) >= 2 for v in by_shard.values()),
          "%d accounts should spread over the 3 shards: %r" % (count, by_shard))
    return by_shard


def cross_and_local(s, client, model, by_shard):
    a, a2 = by_shard[0][:2]
    b, b2 = by_shard[1][:2]
    c = by_shard[2][0]
    for who in (a, a2, b, b2, c):
        expect(client.post("/v1/transfers", transfer("fund-" + who, "bank", who, 1000)), 201, what="fund " + who)
        model.post("bank", who, 1000)
    expect(client.post("/v1/transfers", transfer("local-1", a, a2, 10)), 201, what="a local transfer")
    model.post(a, a2, 10)
    check(s.legs("local-1") == [0], "a local transfer has one row, on its shard: %r" % s.legs("local-1"))
    r = expect(client.post("/v1/transfers", transfer("cross-1", a, b, 25)), 201, what="a cross-shard transfer")
    model.post(a, b, 25)
    check(r.json["debit_account_id"] == a and r.json["credit_account_id"] == b, "the reply names A and B: %r" % r)
    check(sorted(s.legs("cross-1")) == [0, 1], "a cross transfer has a leg on each shard: %r" % s.legs("cross-1"))
    got = expect(client.get("/v1/transfers/cross-1"), 200, what="read cross-1").json
    check(got["debit_account_id"] == a and got["credit_account_id"] == b and got["amount"] == 25
          and got["timestamp"] == r.json["timestamp"], "cross-1 reads back as A -> B: %r" % got)
    again = expect(client.post("/v1/transfers", transfer("cross-1", a, b, 25)), 200, what="the same id again: exists")
    check(again.json["debit_account_id"] == a and again.json["credit_account_id"] == b,
          "the exists reply names A and B too, not a clearing account: %r" % again.json)
    expect(client.post("/v1/transfers", transfer("cross-1", a, b, 26)), 422, "exists_with_different_amount",
           what="the same id with another amount")
    # refused on the debit side: nothing anywhere, and the id is not spent on either shard
    expect(client.post("/v1/transfers", transfer("cross-over", a, c, 5000)), 422, "exceeds_credits",
           what="more than the debit account holds")
    check(s.legs("cross-over") == [], "a refused cross transfer leaves no row: %r" % s.legs("cross-over"))
    expect(client.post("/v1/transfers", transfer("cross-nobody", a, "nobody-" + c, 5)), 422, "account_not_found",
           what="an unknown credit account on another shard")
    model.check(client, "after local and cross transfers")
    return a, b, c


def mixed_batch(s, client, model, by_shard):
    """One request of local and cross-shard transfers: the local ones that depend on no
    cross one run as local batches, the rest in the global transaction, and every event
    gets the result it would get on one store, in order: a local transfer spending what
    a cross one before it credited is created, a local one after another local one on
    the same shard sees it, refusals refuse only their own event."""
    a, a2 = by_shard[0][:2]
    b, b2 = by_shard[1][:2]
    c, c2 = by_shard[2][:2]
    balance = {a: 965, b: 1025, b2: 1000, c: 1000, c2: 0}  # after cross_and_local
    check(balance[b] < 1100 < balance[b] + 100, "mix-3 needs mix-1's credit")
    batch = [transfer("mix-1", a, b, 100),        # across: b can now pay mix-3
             transfer("mix-2", c, c2, 50),        # local on shard 2, independent
             transfer("mix-3", b, b2, 1100),      # local on shard 1 after mix-1 on b
             transfer("mix-4", a2, a, 5000),      # local, more than a2 holds
             transfer("mix-5", c2, c, 2000),      # local, more than c2 holds
             transfer("mix-6", c2, c, 30),        # local, spends mix-2's credit
             transfer("mix-7", b2, c, 10)]        # across
    r = expect(client.post("/v1/transfers", {"transfers": batch}), 200, what="a batch of local and cross transfers")
    got = [e["status"] for e in r.json["results"]]
    want = ["created", "created", "created", "exceeds_credits", "exceeds_credits", "created", "created"]
    check(got == want, "each event's result as on one store: %r" % r.json)
    for t, status in zip(batch, got):
        if status == "created":
            model.post(t["debit_account_id"], t["credit_account_id"], t["amount"])
    check(sorted(s.legs("mix-1")) == [0, 1] and s.legs("mix-2") == [2] and s.legs("mix-3") == [1]
          and s.legs("mix-4") == [] and sorted(s.legs("mix-7")) == [1, 2], "the legs of a mixed batch")
    again = expect(client.post("/v1/transfers", {"transfers": batch}), 200, what="the mixed batch again")
    got = [e["status"] for e in again.json["results"]]
    refusals = ("exceeds_credits", "id_already_failed")  # a refusal spends its id on a shard
    check(got[:3] + got[5:] == ["exists"] * 5 and got[3] in refusals and got[4] in refusals,
          "the batch retried: each created one exists, each refused one stays refused: %r" % again.json)
    model.check(client, "after a mixed batch")


def pending_across(client, model, a, b, c):
    expect(client.post("/v1/transfers", transfer("hold-1", a, b, 40, flags=["pending"], timeout_s=3600)), 201,
           what="a pending cross transfer")
    model.hold("hold-1", a, b, 40)
    expect(client.post("/v1/transfers", transfer("hold-2", b, c, 30, flags=["pending"], timeout_s=3600)), 201,
           what="another")
    model.hold("hold-2", b, c, 30)
    model.check(client, "two holds across shards")
    expect(client.post("/v1/transfers", {"id": "post-1", "pending_id": "hold-1", "flags": ["post_pending"],
                                         "amount": 35}), 201, what="post hold-1 (35 of 40)")
    model.release("hold-1", 35)
    expect(client.post("/v1/transfers", {"id": "void-2", "pending_id": "hold-2", "flags": ["void_pending"]}), 201,
           what="void hold-2")
    model.release("hold-2", 0)
    expect(client.post("/v1/transfers", {"id": "post-2", "pending_id": "hold-2", "flags": ["post_pending"]}), 422,
           "pending_transfer_already_voided", what="post a voided hold")
    model.check(client, "after post and void across shards")


def linked_and_idempotent(s, client, model, by_shard, a, b, c):
    chain = {"transfers": [transfer("chain-1", a, b, 5, flags=["linked"]),
                           transfer("chain-2", b, c, 100000, flags=["linked"]),
                           transfer("chain-3", c, a, 1)]}
    r = expect(client.post("/v1/transfers", chain), 200, what="a linked chain with a failing event")
    got = [e["status"] for e in r.json["results"]]
    check(got == ["linked_event_failed", "exceeds_credits", "linked_event_failed"],
          "each event's result as on one store: %r" % r.json)
    check(all(s.legs("chain-%d" % i) == [] for i in (1, 2, 3)), "a failed chain spanning shards leaves nothing")
    model.check(client, "after a failed chain across shards")
    ok_chain = {"transfers": [transfer("okchain-1", a, b, 5, flags=["linked"]), transfer("okchain-2", b, c, 6)]}
    r = expect(client.post("/v1/transfers", ok_chain), 200, what="a linked chain across shards")
    check([e["status"] for e in r.json["results"]] == ["created", "created"], "both created: %r" % r.json)
    check(sorted(s.legs("okchain-1")) == sorted({s.shard_of(a), s.shard_of(b)}), "okchain-1 has its legs")
    model.post(a, b, 5)
    model.post(b, c, 6)
    headers = {"Idempotency-Key": "idem-cross-1"}
    first = expect(client.post("/v1/transfers", transfer("idem-1", b, c, 7), headers=headers), 201,
                   what="a cross transfer with an Idempotency-Key")
    model.post(b, c, 7)
    again = expect(client.post("/v1/transfers", transfer("idem-1", b, c, 7), headers=headers), 201,
                   what="its replay")
    check(again.json == first.json, "the replay answers the stored reply: %r vs %r" % (again.json, first.json))
    expect(client.post("/v1/transfers", transfer("idem-2", b, c, 8), headers=headers), 409,
           "idempotency_key_reused", what="the key with another body")
    headers = {"Idempotency-Key": "idem-local-1"}
    c2 = by_shard[2][1]
    check(s.shard_of(c2) == 2, "placement")
    expect(client.post("/v1/transfers", transfer("fund-c2", "bank", c2, 100)), 201, what="fund " + c2)
    model.post("bank", c2, 100)
    first = expect(client.post("/v1/transfers", transfer("idem-l", c2, c, 1), headers=headers), 201,
                   what="a local transfer on shard 2 with an Idempotency-Key")
    model.post(c2, c, 1)
    again = expect(client.post("/v1/transfers", transfer("idem-l", c2, c, 1), headers=headers), 201,
                   what="its replay (the reply is stored on the home shard)")
    check(again.json == first.json, "the local replay answers the stored reply")
    expect(client.post("/v1/accounts", account("pc.clearing.0.1.USD")), 422, "id_reserved",
           what="a client creating a clearing account's id")
    model.check(client, "after chains and idempotent requests")


def concurrent(s, client, model, by_shard):
    """Many clients at once, across and within shards, some with Idempotency-Keys: the
    coordinator runs commands waiting together as one global transaction; each keeps
    its own reply and its stored reply."""
    pairs = [(by_shard[i][k], by_shard[j][k]) for i in range(3) for j in range(3) for k in range(2) if i != j]
    pairs += [(by_shard[i][0], by_shard[i][1]) for i in range(3)]
    replies, lock = {}, threading.Lock()
    for who in sorted({p[0] for p in pairs}):
        expect(client.post("/v1/transfers", transfer("cfund-" + who, "bank", who, 2000)), 201, what="fund " + who)
        model.post("bank", who, 2000)

    def worker(w):
        c = s.client()
        for n in range(12):
            debit, credit = pairs[(w * 7 + n) % len(pairs)]
            tid = "conc-%d-%d" % (w, n)
            headers = {"Idempotency-Key": "ck-" + tid} if n % 3 == 0 else None
            r = c.post("/v1/transfers", transfer(tid, debit, credit, 1 + n), headers=headers)
            with lock:
                replies[tid] = (r, debit, credit, 1 + n, headers)
        c.close()
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT_S * 6)
    check(len(replies) == 96, "every concurrent request answered: %d" % len(replies))
    for tid, (r, debit, credit, amount, headers) in sorted(replies.items()):
        check(r.status == 201 and r.json["id"] == tid and r.json["amount"] == amount,
              "%s: its own reply: %r" % (tid, r))
        model.post(debit, credit, amount)
        if headers is not None:
            again = expect(client.post("/v1/transfers", transfer(tid, debit, credit, amount), headers=headers), 201,
                           what=tid + " replayed")
            check(again.json == r.json, "%s: the stored reply is its own" % tid)
    model.check(client, "after concurrent transfers")


def merchant(s, client, model):
    """A merchant's accounts and transfers within one shard and across shards work (a
    global transaction whose legs each shard's writer checks against the grants it
    holds); another merchant cannot reach its accounts, within one shard or across:
    refused as missing, nothing moves."""
    key = expect(client.post("/v1/api-keys", {"scope": "merchant", "name": "m1"}), 201, what="merchant key").json["key"]
    other = expect(client.post("/v1/api-keys", {"scope": "merchant", "name": "m2"}), 201, what="key 2").json["key"]
    m = pcapi.Client(s.port, key)
    placed = {}
    for i in range(12):
        account_id = "m1-%d" % i
        expect(m.post("/v1/accounts", account(account_id)), 201, what="merchant account " + account_id)
        model.add_account(account_id)
        placed.setdefault(s.shard_of(account_id), []).append(account_id)
    local = next(v for v in placed.values() if len(v) >= 2)
    expect(m.post("/v1/transfers", transfer("m1-local", local[0], local[1], 3)), 201, what="merchant, one shard")
    model.post(local[0], local[1], 3)
    shards = sorted(placed)
    x, y = placed[shards[0]][0], placed[shards[1]][0]
    expect(m.post("/v1/transfers", transfer("m1-cross", x, y, 3)), 201, what="merchant, across shards")
    model.post(x, y, 3)
    check(sorted(s.legs("m1-cross")) == [shards[0], shards[1]], "a merchant's transfer across shards has two legs")
    expect(m.get("/v1/transfers/m1-cross"), 200, what="the merchant reads its transfer across shards")
    expect(m.get("/v1/accounts/" + local[0]), 200, what="merchant reads its account on its shard")
    listed = [a["id"] for a in expect(m.get("/v1/accounts?limit=100"), 200, what="merchant lists").json["data"]]
    check(sorted(listed) == sorted(sum(placed.values(), [])), "a merchant lists its accounts on every shard: %r"
          % listed)
    o = pcapi.Client(s.port, other)
    expect(o.get("/v1/accounts/" + local[0]), 404, what="another merchant's account")
    expect(o.post("/v1/transfers", transfer("m2-steal", local[0], local[1], 1)), 422, "account_not_found",
           what="another merchant moving it")
    expect(o.get("/v1/transfers/m1-cross"), 404, what="another merchant reading the transfer across shards")
    own = "m2-own"
    expect(o.post("/v1/accounts", account(own)), 201, what="the other merchant's account")
    model.add_account(own)
    theirs = next(a for a in sum(placed.values(), []) if s.shard_of(a) != s.shard_of(own))
    for tid, debit, credit in (("m2-steal-cross", theirs, own), ("m2-push-cross", own, theirs)):
        r = expect(o.post("/v1/transfers", transfer(tid, debit, credit, 1)), 422, "account_not_found",
                   what="another merchant across shards (%s)" % tid)
        missing = expect(o.post("/v1/transfers", transfer(tid + "-x", debit if debit == own else "no-such",
                                                         credit if credit == own else "no-such", 1)), 422)
        check(r.json == missing.json, "a foreign account across shards reads as a missing one: %r vs %r"
              % (r.json, missing.json))
        check(s.legs(tid) == [], "a refused transfer across shards leaves no leg")
    m.close()
    o.close()
    model.check(client, "after merchants")


def at_rest(s, model, what):
    check(s.stop(signal.SIGTERM) == 0, "%s: a clean stop exits 0" % what)
    s.books_balance(what)
    check(s.prepared() == 0, "%s: no prepared transaction is left: %d" % (what, s.prepared()))
    client = s.start().client()
    model.check(client, what + ", restarted")
    metrics = client.get("/metrics").raw
    check("\npaycore_2pc_in_doubt 0\n" in metrics and "\npaycore_2pc_in_doubt_oldest_age_seconds 0\n" in metrics,
          "%s: /metrics shows nothing in doubt:\n%s" % (what, metrics[-1500:]))
    return client


def one_server(cluster):
    """Two shards that are databases of one server: prepared transactions' names are
    the server's, so each shard's leg needs a name of its own."""
    s = shardset.ShardSet(2, server=cluster)
    try:
        s.init()
        client = s.start().client()
        ids = []
        for i in range(12):
            expect(client.post("/v1/accounts", account("one-%d" % i)), 201, what="create")
            ids.append("one-%d" % i)
        a = next(i for i in ids if s.shard_of(i) == 0)
        b = next(i for i in ids if s.shard_of(i) == 1)
        for n in range(3):
            expect(client.post("/v1/transfers", transfer("one-x%d" % n, a, b, 5)), 201, what="across one server")
            check(sorted(s.legs("one-x%d" % n)) == [0, 1], "a leg in each database")
        client.close()
        check(s.stop() == 0, "a clean stop")
        s.books_balance("two shards on one server")
        check(s.prepared() == 0, "nothing prepared")
    finally:
        s.close()


def scenario(s):
    refusals(s)
    client = s.start().client()
    refused(["serve", "--db", s.db, "--listen", "127.0.0.1:0", "--no-events", "--shards", s.shards_arg()],
            "store_in_use", "another paycore writer", "a second node on a served set (before its recovery)")
    model = Model()
    by_shard = place(s, client, model, 12)
    a, b, c = cross_and_local(s, client, model, by_shard)
    mixed_batch(s, client, model, by_shard)
    client = at_rest(s, model, "after cross transfers")
    concurrent(s, client, model, by_shard)
    merchant(s, client, model)
    pending_across(client, model, a, b, c)
    linked_and_idempotent(s, client, model, by_shard, a, b, c)
    client.close()
    s.stop(signal.SIGKILL)
    client = s.start().client()
    model.check(client, "after SIGKILL")
    client.close()
    at_rest(s, model, "at the end").close()
    s.stop()
    one_server(s.clusters[0])


def main():
    shardset.run(scenario, one_server=False)


if __name__ == "__main__":
    main()
