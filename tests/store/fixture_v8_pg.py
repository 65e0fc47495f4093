"""tests/store/fixture_v8_pg.py: a PostgreSQL database of schema version 8 made by
paycore's v8 binary (transfers naming their accounts by text id), and everything that
binary answered about it, for test_pg_migrate_v8.py. Not a test itself (no test_
prefix).

The fixture (tests/store/fixtures/v8-pg/) holds the database as pg_dump's SQL
(dump.sql.gz), the server's own files (signing key, vault and webhook keys) and
snapshot.json.gz: the status and exact body of every read below, as the v8 binary
answered them. It was made by

  PAYCORE_BIN=<a paycore of PostgreSQL schema version 8> python3 tests/store/fixture_v8_pg.py make

and the same ledger made by a later version's binary (tests/store/fixtures/v<N>-pg, for
test_pg_migrate_v<N>.py) by

  PAYCORE_BIN=<a paycore of PostgreSQL schema version N> python3 tests/store/fixture_v8_pg.py make N

What it holds: accounts in two currencies (one with balance history), more than 64
batches (so that a balance snapshot was written and later transfers are replayed at
load), plain transfers, pending ones posted, voided and left open, a linked chain,
a failed chain and burned ids, metadata."""
import gzip
import json
import os
import random
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "api"))
sys.path.insert(0, HERE)
import pcapi  # noqa: E402
import pgcluster  # noqa: E402
from pcapi import account, check, expect, transfer  # noqa: E402

FIXTURE = os.path.join(HERE, "fixtures", "v8-pg")
ACCOUNTS = ["bank", "alice", "bob", "carol", "dave", "e-bank", "e-erin"]
USD = ["alice", "bob", "carol", "dave"]
PAGE_LIMITS = (1, 2, 3, 100)


def make_ledger(c):
    """The v8 binary's requests: one batch each, 90 batches and more."""
    for a in ACCOUNTS:
        currency = "EUR" if a.startswith("e-") else "USD"
        extra = {"flags": ["history"]} if a == "carol" else {}
        if a == "dave":
            extra = {"flags": ["debits_must_not_exceed_credits"]}
        expect(c.post("/v1/accounts", account(a, currency, **extra)), 201, what="account " + a)
    rng = random.Random(8)
    for a in USD:
        expect(c.post("/v1/transfers", transfer("fund-" + a, "bank", a, 100000)), 201)
    expect(c.post("/v1/transfers", transfer("fund-e", "e-bank", "e-erin", 5000, "EUR")), 201)
    for i in range(70):
        d, cr = rng.sample(USD, 2)
        extra = {"metadata": {"n": str(i)}} if i % 7 == 0 else {}
        expect(c.post("/v1/transfers", transfer("t-%02d" % i, d, cr, rng.randint(1, 500), **extra)), 201)
    for name, state in (("h-post", "post_pending"), ("h-void", "void_pending"), ("h-open", None)):
        expect(c.post("/v1/transfers", transfer(name, "alice", "bob", 700, flags=["pending"], timeout_s=315000000)),
               201)
        if state is not None:
            expect(c.post("/v1/transfers", {"id": name + "-end", "pending_id": name, "flags": [state],
                                            "amount": 300 if state == "post_pending" else 0}), 201)
    r = expect(c.post("/v1/transfers", {"transfers": [
        transfer("l-1", "carol", "dave", 11, flags=["linked"]), transfer("l-2", "dave", "carol", 5),
        transfer("f-1", "carol", "bob", 1, flags=["linked"]), transfer("f-2", "carol", "ghost", 1)]}), 200)
    check([x["status"] for x in r.json["results"]] == ["created", "created", "linked_event_failed",
                                                       "account_not_found"], "the batch %r" % r.json)
    expect(c.post("/v1/transfers", transfer("burned", "dave", "alice", 10 ** 9)), 422, "exceeds_credits")
    for i in range(10):
        expect(c.post("/v1/transfers", transfer("e-%d" % i, "e-erin", "e-bank", 10 + i, "EUR")), 201)


def raw(r):
    return [r.status, r.raw]


def pages(c, path, reads, limit):
    """Every page of a listing, each body kept; the rows listed."""
    rows, after, n = [], None, 0
    while True:
        sep = "&" if "?" in path else "?"
        url = path + sep + "limit=%d" % limit + ("&starting_after=" + after if after else "")
        r = c.get(url)
        reads[url] = raw(r)
        check(r.status == 200, "%s: %r" % (url, r))
        rows += r.json["data"]
        if not r.json["has_more"]:
            return rows
        key = "transfer_id" if "/balances" in path else "id"
        after, n = r.json["data"][-1][key], n + 1
        check(n < 500, "listing %s ends" % path)


def snapshot(c):
    """Every read of the ledger this fixture can answer: status and body."""
    reads = {}
    for a in ACCOUNTS + ["ghost"]:
        reads["/v1/accounts/" + a] = raw(c.get("/v1/accounts/" + a))
    for limit in PAGE_LIMITS:
        pages(c, "/v1/accounts", reads, limit)
    ids = set()
    for a in ACCOUNTS:
        for order in ("asc", "desc"):
            for limit in PAGE_LIMITS:
                rows = pages(c, "/v1/accounts/%s/transfers?order=%s" % (a, order), reads, limit)
                ids |= {t["id"] for t in rows}
        stamps = sorted(t["timestamp"] for t in rows)
        for lo, hi in ((0, len(stamps) // 2), (len(stamps) // 3, len(stamps) - 1), (1, 2)):
            if hi < len(stamps) and lo < hi:
                for order in ("asc", "desc"):
                    pages(c, "/v1/accounts/%s/transfers?from=%d&to=%d&order=%s" % (a, stamps[lo], stamps[hi],
                                                                                   order), reads, 2)
        for order in ("asc", "desc"):
            pages(c, "/v1/accounts/%s/balances?order=%s" % (a, order), reads, 3)
    for t in sorted(ids) + ["burned", "f-1", "f-2", "nothing"]:
        reads["/v1/transfers/" + t] = raw(c.get("/v1/transfers/" + t))
    return reads


def make(fixture, want_version="8"):
    cluster = pgcluster.Cluster()
    pcapi.PG_HOST = cluster.dir
    server = pcapi.Server()
    try:
        server.start()
        c = server.client()
        make_ledger(c)
        reads = snapshot(c)
        check(server.stop() == 0, "a clean stop")
        version = cluster.sql(server.store_args[1].split("@/", 1)[1].split("?")[0],
                              "SELECT value FROM paycore_meta WHERE key = 'schema_version'")
        check(version == want_version, "the binary writes schema version %s, not %s" % (want_version, version))
        if os.path.exists(fixture):
            shutil.rmtree(fixture)
        os.makedirs(fixture)
        for name in sorted(os.listdir(server.dir)):
            if name.startswith("api.db"):
                with open(os.path.join(server.dir, name), "rb") as f, \
                        gzip.open(os.path.join(fixture, name + ".gz"), "wb") as out:
                    out.write(f.read())
        name = server.store_args[1].split("@/", 1)[1].split("?")[0]
        dump = cluster.run("pg_dump", "-h", cluster.dir, "-U", pgcluster.USER, "--no-owner", name).stdout
        with gzip.open(os.path.join(fixture, "dump.sql.gz"), "wt") as f:
            f.write(dump)
        with gzip.open(os.path.join(fixture, "snapshot.json.gz"), "wt") as f:
            json.dump({"admin_key": server.admin_key, "reads": reads}, f, indent=1, sort_keys=True)
    finally:
        server.close()
        cluster.close()


def unpack(fixture, server_dir):
    """The fixture's server files into 'server_dir'; the snapshot."""
    for name in os.listdir(fixture):
        if not name.startswith("api.db"):
            continue
        with gzip.open(os.path.join(fixture, name), "rb") as f:
            data = f.read()
        fd = os.open(os.path.join(server_dir, name[:-3]), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
    with gzip.open(os.path.join(fixture, "snapshot.json.gz"), "rt") as f:
        return json.load(f)


if __name__ == "__main__":
    check(len(sys.argv) in (2, 3) and sys.argv[1] == "make",
          "usage: PAYCORE_BIN=<v8 paycore> fixture_v8_pg.py make [VERSION (8)]")
    version = sys.argv[2] if len(sys.argv) == 3 else "8"
    print("making the version %s fixture with" % version, pcapi.BIN)
    make(os.path.join(HERE, "fixtures", "v%s-pg" % version), version)
