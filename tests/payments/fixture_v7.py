"""tests/payments/fixture_v7.py: a database of schema version 7 made by paycore's v7
binary, and the snapshot of everything it answered, for test_payments_migrate_v7.py.
Not a test itself (no test_ prefix).

The fixture (tests/payments/fixtures/v7/) holds the server's files (database, keys),
the two simulators' records (a capture or refund of a migrated payment reaches the
channel that holds its original) and snapshot.json: the status and exact body of
every read below, as the v7 binary answered them. It was made by

  PAYCORE_BIN=<a paycore of schema version 7> python3 tests/payments/fixture_v7.py make
  PAYCORE_BIN=<the same> python3 tests/payments/fixture_v7.py make-pg

The second makes fixtures/v7-pg: the same on PostgreSQL (a throwaway cluster), the
database kept as pg_dump's SQL. fixtures/v8 and fixtures/v8-pg (for
test_payments_migrate_v8.py) are the same requests on the binary of SQLite schema
version 8 (PostgreSQL 9), made by `make-v8` and `make-v8-pg`. fixtures/v9 and
fixtures/v9-pg (test_payments_migrate_v9.py; SQLite 9, PostgreSQL 11: `make-v9`,
`make-v9-pg`) add events of several owners: a second key of m1 made after the
requests above (later events of m1 have two owners), a payment made and captured
after it, and a ledger transfer from m1's balance to m2's (three owners); their
snapshot adds the events as each merchant key lists and reads them. fixtures/v12
(test_payments_migrate_v12.py; `make-v12`, SQLite only) is the v9 requests on the
binary of SQLite schema version 12, whose Idempotency-Key replies are keyed by their key.
fixtures/v13 (test_payments_migrate_v13.py; `make-v13`, SQLite only) is the same on the
binary of SQLite schema version 13, whose payment records repeat the fixed members and
the routing in every version.

Holds last ten years (--authorization-window-s) so that the authorized payments are
still capturable whenever the test runs; the test keeps replies and events as long."""
import gzip
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paylib import (BANK_OK, BIN, CARD_3DS, CARD_DECLINE, Env, card_payment, check,  # noqa: E402
                    expect, wait_for)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "store"))
import pcapi  # noqa: E402
import pgcluster  # noqa: E402

FIXTURE = os.path.join(HERE, "fixtures", "v7")
FIXTURE_PG = os.path.join(HERE, "fixtures", "v7-pg")
FIXTURE_V8 = os.path.join(HERE, "fixtures", "v8")
FIXTURE_V8_PG = os.path.join(HERE, "fixtures", "v8-pg")
FIXTURE_V9 = os.path.join(HERE, "fixtures", "v9")
FIXTURE_V9_PG = os.path.join(HERE, "fixtures", "v9-pg")
FIXTURE_V12 = os.path.join(HERE, "fixtures", "v12")
FIXTURE_V13 = os.path.join(HERE, "fixtures", "v13")
FIXTURE_V14 = os.path.join(HERE, "fixtures", "v14")
FIXTURE_V15 = os.path.join(HERE, "fixtures", "v15")
FIXTURE_V16 = os.path.join(HERE, "fixtures", "v16")
WINDOW_S = "315000000"  # ten years: the fixture's holds never expire under the test
SERVER_FILES = ("api.db", "api.db-index", "api.db.idkey", "api.db.key", "api.db.key.pub", "api.db.vault-key",
                "api.db.webhook-key")
LIST_PAGE = 3
EVENTS_PAGE = 25


def idem(key):
    return {"headers": {"Idempotency-Key": key}}


def creations(m1, m2):
    """The requests made on the v7 binary: (client name, method, path, body, key) each;
    replayed after the migration."""
    return [
        ("m1", "/v1/payments", card_payment(1000), "fx-auth"),
        ("m1", "/v1/payments", card_payment(2000), "fx-partial"),
        ("m1", "/v1/payments", card_payment(1500), "fx-captured"),
        ("m1", "/v1/payments", card_payment(800, capture="automatic"), "fx-refunded"),
        ("m1", "/v1/payments", card_payment(700), "fx-cancel"),
        ("m1", "/v1/payments", card_payment(400, number=CARD_DECLINE), "fx-decline"),
        ("m1", "/v1/payments", card_payment(600, payer="P_REVIEW"), "fx-review"),
        ("m1", "/v1/payments", card_payment(900, number=CARD_3DS), "fx-3ds"),
        ("m2", "/v1/payments", card_payment(1100, capture="automatic", metadata={"order": "o-1"}), "fx-m2a"),
        ("m2", "/v1/payments", card_payment(1200), "fx-m2b"),
    ]


def owners_add(env, clients, keys):
    """Events of several owners: a second key of m1, a payment after it, a transfer
    from m1's balance to m2's."""
    admin = env.server.client(keys["admin"])
    second = expect(admin.post("/v1/merchants/m1/keys", {"name": "key m1 second"}), 201).json["key"]
    keys["m1b"] = second
    m1 = clients["m1"]
    later = expect(m1.post("/v1/payments", card_payment(1300)), 201).json
    expect(m1.post("/v1/payments/%s/capture" % later["id"], {}), 200)
    move = pcapi.transfer("fx-m1-m2", "mer:m1:EUR:available", "mer:m2:EUR:available", 10, "EUR")
    expect(admin.post("/v1/transfers", move), 201, what="a transfer between two merchants")


def make(fixture, cluster=None, owners=False):
    """Runs on a v7 binary: every kind of object, then the snapshot and the files."""
    if cluster is not None:
        pcapi.PG_HOST = cluster.dir  # pcapi.Server makes its database there
    env = Env(extra_args=["--authorization-window-s", WINDOW_S])
    try:
        env.start()
        clients = {"m1": env.merchant("m1"), "m2": env.merchant("m2")}
        made = {}
        for who, path, body, key in creations(None, None):
            r = clients[who].post(path, body, **idem(key))
            check(r.status in (200, 201, 202), "%s: %r" % (key, r))
            made[key] = r.json["id"]
        m1 = clients["m1"]
        expect(m1.post("/v1/payments/%s/capture" % made["fx-partial"], {"amount": 500}, **idem("fx-cap-part")), 200)
        expect(m1.post("/v1/payments/%s/capture" % made["fx-captured"], {}, **idem("fx-cap-full")), 200)
        expect(m1.post("/v1/payments/%s/refunds" % made["fx-captured"], {"amount": 300}, **idem("fx-ref-part")), 201)
        expect(m1.post("/v1/payments/%s/refunds" % made["fx-refunded"], {}, **idem("fx-ref-full")), 201)
        expect(m1.post("/v1/payments/%s/cancel" % made["fx-cancel"], None, **idem("fx-cancel-1")), 200)
        wallet = expect(m1.post("/v1/wallets", {"owner_id": "C1", "currency": "EUR"}), 201).json
        top = card_payment(5000, payer="C1")
        del top["capture_method"]
        expect(m1.post("/v1/wallets/%s/top_ups" % wallet["id"], top, **idem("fx-top")), 201)
        pay = dict(card_payment(1200), payment_method={"type": "wallet", "wallet_id": wallet["id"]},
                   payer={"id": "C1", "country": "DE"})
        expect(m1.post("/v1/payments", pay, **idem("fx-wallet-pay")), 201)
        payout = expect(m1.post("/v1/payouts", {"amount": 100, "currency": "EUR", "bank_account": BANK_OK},
                                **idem("fx-payout")), 201).json
        wait_for("payout paid", lambda: m1.get("/v1/payouts/" + payout["id"]).json["status"] == "paid")
        bank = {"amount": 2000, "currency": "EUR", "payment_method": {"type": "bank_transfer", "bank_account": BANK_OK},
                "payer": {"id": "P9", "country": "DE"}}
        collection = expect(m1.post("/v1/payments", bank, **idem("fx-bank")), 202).json
        wait_for("collection captured",
                 lambda: m1.get("/v1/payments/" + collection["id"]).json["status"] == "captured")
        keys = {"admin": env.server.admin_key, "m1": clients["m1"].key, "m2": clients["m2"].key,
                "payout": payout["id"], "wallet": wallet["id"]}
        if owners:
            owners_add(env, clients, keys)
        snap = snapshot(env, keys)
        env.stop()
        write_fixture(fixture, env, keys, snap)
        if cluster is not None:
            name = env.server.store_args[1].split("@/", 1)[1].split("?")[0]
            dump = cluster.run("pg_dump", "-h", cluster.dir, "-U", pgcluster.USER, "--no-owner", name).stdout
            with gzip.open(os.path.join(fixture, "dump.sql.gz"), "wt") as f:
                f.write(dump)
    finally:
        env.close()


def write_fixture(fixture, env, keys, snap):
    if os.path.exists(fixture):
        shutil.rmtree(fixture)
    os.makedirs(fixture)
    files = [os.path.join(env.server.dir, name) for name in SERVER_FILES
             if os.path.exists(os.path.join(env.server.dir, name))]
    for sim in (env.card, env.bank):
        sim.stop()
        files.append(sim.db)
    for path in files:
        with open(path, "rb") as f, gzip.open(os.path.join(fixture, os.path.basename(path) + ".gz"), "wb") as out:
            out.write(f.read())
    with gzip.open(os.path.join(fixture, "snapshot.json.gz"), "wt") as f:
        json.dump({"keys": keys, "reads": snap}, f, indent=1, sort_keys=True)


def unpack(fixture, server_dir, sim_dirs):
    """The fixture's files into a server's directory and the simulators' (by kind);
    the snapshot."""
    for name in os.listdir(fixture):
        if not name.endswith(".gz") or name in ("snapshot.json.gz", "dump.sql.gz"):
            continue
        base = name[:-3]
        to = sim_dirs[base[4:-3]] if base.startswith("sim-") else server_dir
        with gzip.open(os.path.join(fixture, name), "rb") as f:
            data = f.read()
        fd = os.open(os.path.join(to, base), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
    with gzip.open(os.path.join(fixture, "snapshot.json.gz"), "rt") as f:
        return json.load(f)


def migrate_test_main(fixture, schema, run):
    """A migration test's main on SQLite: run(fixture) once the fixture is there, made
    by a paycore of 'schema' (a test skips without it)."""
    if not os.path.exists(os.path.join(fixture, "snapshot.json.gz")):
        target = "make-v%d" % schema
        pcapi.missing_input("the fixture " + fixture, "PAYCORE_BIN=<paycore of SQLite schema %d> python3"
                            " tests/payments/fixture_v7.py %s" % (schema, target))
    run(fixture)
    print("SQLite: ok")


def pages(client, path, reads, name, limit=LIST_PAGE):
    """Every page of a listing ('limit' a page): each body kept; the ids listed."""
    ids, after, n = [], None, 0
    while True:
        sep = "&" if "?" in path else "?"
        url = path + sep + "limit=%d" % limit + ("&starting_after=" + after if after else "")
        r = client.get(url)
        reads["%s page %d" % (name, n)] = [r.status, r.raw.decode() if isinstance(r.raw, bytes) else r.raw]
        check(r.status == 200, "%s: %r" % (url, r))
        data = r.json["data"]
        ids += [d["id"] for d in data]
        if not r.json["has_more"] or not data:
            return ids
        after, n = data[-1]["id"], n + 1


def raw(r):
    return [r.status, r.raw.decode() if isinstance(r.raw, bytes) else r.raw]


def snapshot(env, keys):
    """The status and exact body of every read: listings page by page (all, by merchant,
    by status, by creation window, both orders, each merchant's own), each payment,
    refund, payout and wallet, the events (all and each merchant's, by type and by
    object) and every Idempotency-Key replayed, and one replayed with other fields."""
    admin = env.server.client(keys["admin"])
    m = {who: env.server.client(keys[who]) for who in ("m1", "m2", "m1b") if who in keys}
    reads = {}
    ids = pages(admin, "/v1/payments", reads, "payments")
    pages(admin, "/v1/payments?order=desc", reads, "payments desc")
    pages(admin, "/v1/payments?merchant_id=m2", reads, "payments m2")
    for status in ("authorized", "captured", "partially_refunded", "declined", "in_review"):
        pages(admin, "/v1/payments?status=" + status, reads, "payments " + status)
    for who in ("m1", "m2"):
        pages(m[who], "/v1/payments", reads, "payments as " + who)
        pages(m[who], "/v1/payments?status=captured&order=desc", reads, "captured as " + who)
    created = sorted(json.loads(reads["payments page 0"][1])["data"][1:3], key=lambda p: p["created"])
    window = "/v1/payments?from=%d&to=%d" % (created[0]["created"], created[-1]["created"] + 1)
    pages(admin, window, reads, "payments window")
    for pid in ids:
        doc = admin.get("/v1/payments/" + pid)
        reads["payment " + pid] = raw(doc)
        for op in doc.json["operations"]:
            if op["type"] == "refund":
                reads["refund " + op["id"]] = raw(admin.get("/v1/refunds/" + op["id"]))
        owner = doc.json["merchant_id"]
        reads["payment %s as %s" % (pid, owner)] = raw(m[owner].get("/v1/payments/" + pid))
    events = pages(admin, "/v1/events", reads, "events", EVENTS_PAGE)
    pages(m["m2"], "/v1/events", reads, "events as m2", EVENTS_PAGE)
    pages(admin, "/v1/events?type=payment.captured", reads, "events captured", EVENTS_PAGE)
    pages(admin, "/v1/events?object_id=" + ids[0], reads, "events of " + ids[0])
    for seq in events[:: max(1, len(events) // 10)]:
        reads["event " + seq] = raw(admin.get("/v1/events/" + seq))
    if "m1b" in keys:  # the events of several owners, as each owner lists and reads them
        for who in ("m1", "m1b"):
            pages(m[who], "/v1/events", reads, "events as " + who, EVENTS_PAGE)
        pages(m["m1"], "/v1/events?order=desc&type=transfer.created", reads, "transfers as m1 desc", EVENTS_PAGE)
        for seq in events[-12:]:
            for who in ("m1", "m1b", "m2"):
                reads["event %s as %s" % (seq, who)] = raw(m[who].get("/v1/events/" + seq))
    reads["payout"] = raw(m["m1"].get("/v1/payouts/" + keys["payout"]))
    reads["wallet"] = raw(m["m1"].get("/v1/wallets/" + keys["wallet"]))
    reads["merchants"] = raw(admin.get("/v1/merchants"))
    for who, path, body, key in creations(None, None):
        reads["replay " + key] = raw(m[who].post(path, body, **idem(key)))
    changed = card_payment(1001)
    reads["replay fx-auth changed"] = raw(m["m1"].post("/v1/payments", changed, **idem("fx-auth")))
    return reads


if __name__ == "__main__":
    targets = {"make": (FIXTURE, False), "make-pg": (FIXTURE_PG, True), "make-v8": (FIXTURE_V8, False),
               "make-v8-pg": (FIXTURE_V8_PG, True), "make-v9": (FIXTURE_V9, False),
               "make-v9-pg": (FIXTURE_V9_PG, True), "make-v12": (FIXTURE_V12, False),
               "make-v13": (FIXTURE_V13, False), "make-v14": (FIXTURE_V14, False),
               "make-v15": (FIXTURE_V15, False), "make-v16": (FIXTURE_V16, False)}
    if len(sys.argv) != 2 or sys.argv[1] not in targets:
        sys.exit("usage: PAYCORE_BIN=<paycore of schema v7 (v8, v9)> python3 tests/payments/fixture_v7.py"
                 " make|make-pg|make-v8|make-v8-pg|make-v9|make-v9-pg|make-v12|make-v13|make-v14|make-v15|make-v16")
    print("making the fixture with", BIN)
    fixture, on_pg = targets[sys.argv[1]]
    several_owners = sys.argv[1].startswith("make-v9") or sys.argv[1] in ("make-v12", "make-v13", "make-v14", "make-v15",
                                                                             "make-v16")
    if not on_pg:
        make(fixture, owners=several_owners)
    else:
        pg = pgcluster.Cluster()
        try:
            make(fixture, pg, owners=several_owners)
        finally:
            pg.close()
