"""Goal: a database made by paycore's schema-version-7 binary (tests/payments/fixtures/v7
for SQLite, fixtures/v7-pg for PostgreSQL: fixture_v7.py) migrates to version 8 and
everything reads the same: every listing
(filters, both orders, every page), payment, refund, payout, wallet, event (all, a
merchant's, by type, by object) and Idempotency-Key replay answers byte for byte what
the v7 binary answered; a replay with other fields is still refused. Then the
migrated payments go on (captures, a refund, a cancel), new ones are written in the
version 8 layout (an operation's row without its document, no lookup for a card
attempt), a bank collection (whose callback finds its attempt by lookup) settles,
all of it survives a restart, the ledger agrees with every payment and `paycore
verify` passes.
Method: the fixture's files unpacked into a real server's and simulators' directories
(on PostgreSQL its pg_dump restored into a throwaway cluster), real processes, the
store read directly after clean stops."""
import contextlib
import gzip
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_v7 import FIXTURE, FIXTURE_PG, WINDOW_S, pcapi, pgcluster, snapshot, unpack  # noqa: E402
from paylib import BANK_OK, BIN, TIMEOUT_S, Env, card_payment, check, check_payment_ledger, expect  # noqa: E402

KEEP_S = ["--idempotency-retention-h", "87600", "--events-retention-s", "0"]  # the fixture's replies stay


class Store:
    """Reads the server's store directly: the SQLite file, or the restored database."""

    def __init__(self, env, cluster=None, name=None):
        self.env, self.cluster, self.name = env, cluster, name

    def rows(self, query, args=()):
        if self.cluster is None:
            conn = sqlite3.connect(self.env.server.db)
            try:
                return conn.execute(query, args).fetchall()
            finally:
                conn.close()
        for arg in args:
            query = query.replace("?", "'%s'" % arg.replace("'", "''"), 1)
        out = self.cluster.sql(self.name, query)
        return [tuple(line.split("|")) for line in out.splitlines()] if out else []

    def version(self):
        if self.cluster is None:
            return self.rows("PRAGMA user_version")[0][0]
        return int(self.rows("SELECT value FROM paycore_meta WHERE key = 'schema_version'")[0][0])

    def indexes(self):
        if self.cluster is None:
            return {r[0] for r in self.rows("SELECT name FROM sqlite_master WHERE type = 'index'")}
        return {r[0] for r in self.rows("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}


def env_from_fixture(fixture_dir, cluster=None):
    env = Env(extra_args=["--authorization-window-s", WINDOW_S] + KEEP_S)
    for sim in (env.card, env.bank):
        sim.stop()
    for name in os.listdir(env.server.dir):
        if name.startswith("api.db"):
            os.remove(os.path.join(env.server.dir, name))
    fixture = unpack(fixture_dir, env.server.dir, {"card": env.card.dir, "bank": env.bank.dir})
    for sim in (env.card, env.bank):
        sim.start()
        sim.url = "http://127.0.0.1:%d" % sim.port
    env.server.admin_key = fixture["keys"]["admin"]
    store = Store(env)
    if cluster is not None:
        dump = os.path.join(env.server.dir, "dump.sql")
        with gzip.open(os.path.join(fixture_dir, "dump.sql.gz"), "rt") as f, open(dump, "w") as out:
            out.write(f.read())
        os.chmod(env.server.dir, 0o755)
        os.chmod(dump, 0o644)  # psql runs as the cluster's user
        url = cluster.createdb("v7")
        cluster.run("psql", "-h", cluster.dir, "-U", pgcluster.USER, "-d", "v7", "-v", "ON_ERROR_STOP=1", "-q",
                    "-f", dump)
        env.server.store_args = ["--store", url]
        store = Store(env, cluster, "v7")
    return env, fixture, store


def check_reads_same(before, now):
    check(sorted(before) == sorted(now), "the same reads: missing %r, extra %r"
          % (sorted(set(before) - set(now))[:5], sorted(set(now) - set(before))[:5]))
    differ = [name for name in sorted(before) if before[name] != now[name]]
    for name in differ[:3]:
        print("v7: %r\nv8: %r" % (before[name], now[name]), file=sys.stderr)
    check(not differ, "%d of %d reads differ after the migration, first: %r" % (len(differ), len(before), differ[:5]))


def check_replays_same(env, keys, fixture):
    """Every Idempotency-Key the fixture replayed ("replay ..." reads) replays the same now
    (the other reads change as new payments are made)."""
    def replays(reads):
        return {name: read for name, read in reads.items() if name.startswith("replay ")}
    check_reads_same(replays(fixture["reads"]), replays(snapshot(env, keys)))


def check_schema(store):
    # SQLite's version 9: a payment's row keeps its final answer; PostgreSQL's version 9:
    # transfers name accounts by number, 10: account_transfers, 11: the payment's answer
    want = 9 if store.cluster is None else 11
    check(store.version() >= want, "migrated to version %d or later: %r" % (want, store.version()))
    indexes = store.indexes()
    unused = {"pay_objects_parent"} | ({"events_by_type", "events_by_object"} if store.cluster is None else set())
    check(not unused & indexes, "the unused indexes are dropped: %r" % (unused & indexes))
    check({"pay_objects_merchant", "pay_objects_kind", "pay_objects_pending"} <= indexes, "the listings' indexes")


def go_on(env, fixture):
    """Moves the migrated payments on and makes new ones; the payments touched."""
    m1 = env.client(fixture["keys"]["m1"])
    m2 = env.client(fixture["keys"]["m2"])
    ids = {key[len("replay "):]: status_body for key, status_body in fixture["reads"].items()
           if key.startswith("replay fx-") and not key.endswith("changed")}
    pid = {key: json.loads(body)["id"] for key, (status, body) in ids.items()}
    done = []
    c = expect(m1.post("/v1/payments/%s/capture" % pid["fx-auth"], {"amount": 400},
                       headers={"Idempotency-Key": "v8-cap-auth"}), 200, what="capture a migrated authorization")
    check(c.json["status"] == "partially_captured", "partial: %r" % c.json)
    again = expect(m1.post("/v1/payments/%s/capture" % pid["fx-auth"], {"amount": 400},
                           headers={"Idempotency-Key": "v8-cap-auth"}), 200, what="replay")
    check(again.raw == c.raw, "a new capture's replay answers byte for byte")
    expect(m1.post("/v1/payments/%s/capture" % pid["fx-auth"], {"amount": 401},
                   headers={"Idempotency-Key": "v8-cap-auth"}), 409, "idempotency_key_reused", "other fields")
    c = expect(m1.post("/v1/payments/%s/capture" % pid["fx-partial"], {}), 200, what="capture the rest").json
    check(c["status"] == "captured" and c["amount_captured"] == 2000, "the rest captured: %r" % c)
    r = expect(m1.post("/v1/payments/%s/refunds" % pid["fx-captured"], {}), 201, what="refund the rest").json
    check(r["status"] == "succeeded" and r["amount"] == 1200, "the rest refunded: %r" % r)
    got = expect(m1.get("/v1/refunds/" + r["id"]), 200).json
    check(got == r, "a new refund reads as answered: %r vs %r" % (got, r))
    x = expect(m2.post("/v1/payments/%s/cancel" % pid["fx-m2b"], None), 200, what="cancel a migrated one").json
    check(x["status"] == "canceled", "canceled: %r" % x)
    new = expect(m1.post("/v1/payments", card_payment(3000), headers={"Idempotency-Key": "v8-new"}), 201).json
    cap = expect(m1.post("/v1/payments/%s/capture" % new["id"], {}), 200).json
    check(cap["status"] == "captured", "a new payment captured: %r" % cap)
    bank = {"amount": 900, "currency": "EUR", "payment_method": {"type": "bank_transfer", "bank_account": BANK_OK},
            "payer": {"id": "P9", "country": "DE"}}
    b = expect(m1.post("/v1/payments", bank), 202, what="bank collection").json
    deadline = time.time() + TIMEOUT_S
    while m1.get("/v1/payments/" + b["id"]).json["status"] != "captured":
        check(time.time() < deadline, "the bank's callback found its attempt and settled it")
        time.sleep(0.05)
    done += [pid["fx-auth"], pid["fx-partial"], pid["fx-captured"], pid["fx-m2b"], new["id"], b["id"]]
    return done, new, r


def check_layout(store, new, refund):
    """A new card payment's steps have no rows (their payment's records hold them), a
    new refund's row holds no document; the migrated ones keep theirs; a card attempt
    has no lookup, a bank attempt has one."""
    rows = dict(store.rows("SELECT id, doc FROM pay_objects WHERE kind = 'op'"))
    steps = [op["id"] for op in new["operations"]]
    check(steps and not set(steps) & set(rows), "a card payment's steps have no rows: %r" % steps)
    check(rows[refund["id"]] == "", "a new refund's row is listing columns only: %r" % rows[refund["id"]][:40])
    check(any(doc != "" for doc in rows.values()), "the migrated ops keep their documents")
    keys = [a["idempotency_key"] for op in new["operations"] for a in op["attempts"]]
    found = store.rows("SELECT count(*) FROM pay_lookups WHERE name IN (%s)" % ",".join("?" * len(keys)),
                       ["attempt:" + k for k in keys])[0][0]
    check(int(found) == 0, "no lookup for a card attempt")
    check(int(store.rows("SELECT count(*) FROM pay_lookups WHERE name LIKE 'attempt:%'")[0][0]) > 0,
          "the bank attempts' lookups (the fixture's and the new one's)")


def run(fixture_dir, cluster=None):
    with migrated(fixture_dir, cluster) as (env, fixture, store):
        start_reads_same(env, fixture)
        done, new, refund = go_on(env, fixture)
        shown = {pid: expect(env.admin.get("/v1/payments/" + pid), 200).raw for pid in done}
        env.stop()
        check_schema(store)
        env.start()
        check_layout(store, expect(env.admin.get("/v1/payments/" + new["id"]), 200).json, refund)
        for pid in done:
            got = expect(env.admin.get("/v1/payments/" + pid), 200)
            check(got.raw == shown[pid], "%s reads the same after a restart" % pid)
            check_payment_ledger(env.admin, got.json, pid)
        m1 = env.client(fixture["keys"]["m1"])
        listed = expect(m1.get("/v1/payments?status=captured&limit=100"), 200).json["data"]
        check({new["id"], done[1]} <= {p["id"] for p in listed}, "the status filter finds old and new payments")
        env.stop()


@contextlib.contextmanager
def migrated(fixture_dir, cluster=None):
    """A migration test's frame: yields (env, fixture, store) with the fixture's server
    files under a new Env (env_from_fixture); once the body is done, the server stopped,
    `paycore verify` passes on the store; the Env is closed whatever happened."""
    env, fixture, store = env_from_fixture(fixture_dir, cluster)
    try:
        yield env, fixture, store
        check_verify(env)
    finally:
        env.close()


def start_reads_same(env, fixture):
    """Starts the server on the migrated store: every read of the fixture answers the same."""
    env.start()
    check_reads_same(fixture["reads"], snapshot(env, fixture["keys"]))


def restart_after_kill(env):
    """SIGKILL, then a start: what was acknowledged must be there after it."""
    env.stop(signal.SIGKILL)
    env.start()


def check_verify(env):
    """`paycore verify` passes on the stopped server's store."""
    out = subprocess.run([BIN, "verify"] + env.server.store_location_args(), capture_output=True, text=True,
                         timeout=TIMEOUT_S * 3)
    check(out.returncode == 0, "paycore verify: %s %s" % (out.stdout[-500:], out.stderr[-500:]))


def run_fixtures_of(version, run_fixture, fixture, fixture_pg):
    """run_sqlite_and_pg on the fixtures made by a paycore of SQLite schema 'version'
    (each missing one named with the command that makes it)."""
    for f in (fixture, fixture_pg):
        if not os.path.exists(os.path.join(f, "snapshot.json.gz")):
            pcapi.missing_input("the fixture " + f,
                                "PAYCORE_BIN=<paycore of SQLite schema %d> python3 tests/payments/fixture_v7.py"
                                " make-v%d (and make-v%d-pg)" % (version, version, version))
    run_sqlite_and_pg(run_fixture, fixture, fixture_pg)


def run_sqlite_and_pg(run_fixture, fixture, fixture_pg):
    """run_fixture(fixture) on SQLite, then run_fixture(fixture_pg, cluster) on a throwaway
    PostgreSQL cluster."""
    run_fixture(fixture)
    print("SQLite: ok")
    if not pgcluster.available():
        pcapi.missing_input("PostgreSQL 15 (initdb, pg_ctl in %s)" % pgcluster.PG_BIN,
                            "scripts/deps.sh installs Debian's postgresql; PAYCORE_PG_BIN names another bin dir")
    cluster = pgcluster.Cluster()
    try:
        run_fixture(fixture_pg, cluster)
    finally:
        cluster.close()
    print("PostgreSQL: ok")


def main():
    run_sqlite_and_pg(run, FIXTURE, FIXTURE_PG)


if __name__ == "__main__":
    main()
