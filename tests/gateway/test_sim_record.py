#!/usr/bin/env python3
"""The card simulator's record, version 4 (docs/channels.md, "The simulator's record"):
rows appended in arrival order, authorizations found by id and answers by key through
the connection's in-memory maps (rebuilt at every start), a key's first recorded
arrival counted by its idempotency row (the view `arrivals` still says how many times
each key arrived); a version 1 record (tables keyed by id, every arrival in
`arrivals`) and a version 2 one (answers keyed by key) migrated at start with nothing
lost: their authorizations are captured and voided by id, their answers replayed and
their arrival counts go on; a record newer than the simulator refused; answers and
authorizations kept across a kill."""
import os
import signal
import sqlite3
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from simlib import CARD_3DS, Sim, auth_body, check, expect, need_binary, wait_until  # noqa: E402

AUTH = "/v1/authorizations"

# The version 1 schema as it was shipped (the tables this test fills by hand).
V1_SCHEMA = """
CREATE TABLE meta(name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE idempotency(key TEXT PRIMARY KEY, operation TEXT NOT NULL, request_sha256 TEXT NOT NULL,
  http_status INTEGER NOT NULL, response TEXT NOT NULL, created_at_ms INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE arrivals(key TEXT PRIMARY KEY, count INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE records(id TEXT PRIMARY KEY, kind TEXT NOT NULL, parent_id TEXT, idempotency_key TEXT NOT NULL,
  status TEXT NOT NULL, response_code TEXT NOT NULL, amount INTEGER NOT NULL, currency TEXT NOT NULL,
  merchant_ref TEXT, created_at_ms INTEGER NOT NULL, settled_at_ms INTEGER) WITHOUT ROWID;
CREATE INDEX records_settled ON records(settled_at_ms) WHERE settled_at_ms IS NOT NULL;
CREATE INDEX records_parent ON records(parent_id) WHERE parent_id IS NOT NULL;
CREATE TABLE authorizations(id TEXT PRIMARY KEY, card_number TEXT NOT NULL, status TEXT NOT NULL,
  response_code TEXT NOT NULL, amount INTEGER NOT NULL, currency TEXT NOT NULL,
  captured_total INTEGER NOT NULL DEFAULT 0, refunded_total INTEGER NOT NULL DEFAULT 0, challenge_id TEXT,
  challenge_state TEXT, capture_requested INTEGER NOT NULL DEFAULT 0, merchant_ref TEXT,
  idempotency_key TEXT NOT NULL) WITHOUT ROWID;
CREATE UNIQUE INDEX authorizations_challenge ON authorizations(challenge_id) WHERE challenge_id IS NOT NULL;
CREATE TABLE cardholders(number TEXT NOT NULL, currency TEXT NOT NULL, balance INTEGER NOT NULL,
  held INTEGER NOT NULL DEFAULT 0, amount_limit INTEGER NOT NULL, PRIMARY KEY(number, currency)) WITHOUT ROWID;
INSERT INTO meta VALUES ('channel', 'card'), ('schema_version', '1');
"""

OLD_ANSWER = ('{"id":"auth_%s","status":"approved","response_code":"00","message":"approved",'
              '"amount":%d,"currency":"EUR","approval_code":"ABC123"}')


def old_authorization(db, suffix, amount, key, created_at_ms):
    """An approved authorization auth_<suffix> with its record and answer, written as
    versions 1 and 2 both did (only their tables' keys differ)."""
    auth_id = "auth_" + suffix
    db.execute("INSERT INTO authorizations(id, card_number, status, response_code, amount, currency,"
               " idempotency_key) VALUES (?, '4242424242424242', 'approved', '00', ?, 'EUR', ?)",
               (auth_id, amount, key))
    db.execute("INSERT INTO records(id, kind, idempotency_key, status, response_code, amount, currency,"
               " created_at_ms) VALUES (?, 'authorization', ?, 'approved', '00', ?, 'EUR', ?)",
               (auth_id, key, amount, created_at_ms))
    db.execute("INSERT INTO idempotency VALUES (?, 'authorize', ?, 200, ?, ?)",
               (key, "0" * 64, OLD_ANSWER % (suffix, amount), created_at_ms))


def v1_record(path):
    """A version 1 record: two approved authorizations (one per id below) with their
    records and answers, and a key that arrived twice."""
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    for n, (suffix, amount) in enumerate((("0" * 24, 1500), ("1" * 24, 800))):
        key = "old-auth-%d" % n
        old_authorization(db, suffix, amount, key, 1000 + n)
        db.execute("INSERT INTO arrivals VALUES (?, 1)", (key,))
    db.execute("INSERT INTO arrivals VALUES ('old-retried', 2)")
    db.commit()
    db.close()


def started_on(write_record):
    """A card simulator started on a record an older version wrote ('write_record' makes
    it at the path given); the start migrated it to version 4."""
    sim = Sim("card")
    write_record(sim.db)
    sim.start()
    check(sim.one("SELECT value FROM meta WHERE name = 'schema_version'")[0] == "4", "migrated to version 4")
    return sim


def test_migrated():
    sim = started_on(v1_record)
    try:
        arrivals = dict(sim.rows("SELECT key, count FROM arrivals"))
        check(arrivals == {"old-auth-0": 1, "old-auth-1": 1, "old-retried": 2}, "arrivals kept: %r" % arrivals)
        c = sim.client()
        old = expect(c.get("/v1/status/old-auth-0"), 200).json
        check(old["response"]["id"] == "auth_" + "0" * 24, "an old answer is found: %r" % old)
        cap = expect(c.post(AUTH + "/auth_" + "0" * 24 + "/captures", {"amount": 1500}, key="new-cap"), 200).json
        check(cap["status"] == "approved" and cap["captured_total"] == 1500, "an old authorization captured: %r" % cap)
        void = expect(c.post(AUTH + "/auth_" + "1" * 24 + "/void", {}, key="new-void"), 200).json
        check(void["status"] == "approved", "an old authorization voided: %r" % void)
        check(sim.one("SELECT status FROM records WHERE id = ?", ("auth_" + "1" * 24,))[0] == "voided",
              "the void reached the old authorization's record")
        check(sim.one("SELECT captured_total FROM authorizations WHERE id = ?", ("auth_" + "0" * 24,))[0] == 1500,
              "the capture reached the old authorization's row")
        check(sim.rows("SELECT name FROM sqlite_schema WHERE name LIKE '%_v1' OR name LIKE '%_v2'") == [],
              "nothing of versions 1 and 2 left")
    finally:
        sim.close()


# What version 2 changed in version 1's tables (records and authorizations appended,
# arrivals a view over arrival_counts and idempotency); idempotency kept as it was.
V2_CHANGES = """
DROP TABLE arrivals;
CREATE TABLE arrival_counts(key TEXT PRIMARY KEY, count INTEGER NOT NULL) WITHOUT ROWID;
CREATE VIEW arrivals(key, count) AS SELECT key, count FROM arrival_counts
  UNION ALL SELECT i.key, 1 FROM idempotency i WHERE NOT EXISTS (SELECT 1 FROM arrival_counts a WHERE a.key = i.key);
DROP INDEX records_parent; DROP INDEX records_settled; DROP TABLE records;
CREATE TABLE records(id TEXT NOT NULL, kind TEXT NOT NULL, parent_id TEXT, idempotency_key TEXT NOT NULL,
  status TEXT NOT NULL, response_code TEXT NOT NULL, amount INTEGER NOT NULL, currency TEXT NOT NULL,
  merchant_ref TEXT, created_at_ms INTEGER NOT NULL, settled_at_ms INTEGER);
CREATE INDEX records_settled ON records(settled_at_ms) WHERE settled_at_ms IS NOT NULL;
CREATE INDEX records_refunds ON records(parent_id) WHERE kind = 'refund';
CREATE UNIQUE INDEX records_payments ON records(id) WHERE kind = 'payment';
CREATE UNIQUE INDEX records_transfers ON records(id) WHERE kind = 'transfer';
DROP INDEX authorizations_challenge; DROP TABLE authorizations;
CREATE TABLE authorizations(id TEXT NOT NULL, card_number TEXT NOT NULL, status TEXT NOT NULL,
  response_code TEXT NOT NULL, amount INTEGER NOT NULL, currency TEXT NOT NULL,
  captured_total INTEGER NOT NULL DEFAULT 0, refunded_total INTEGER NOT NULL DEFAULT 0, challenge_id TEXT,
  challenge_state TEXT, capture_requested INTEGER NOT NULL DEFAULT 0, merchant_ref TEXT,
  idempotency_key TEXT NOT NULL);
CREATE UNIQUE INDEX authorizations_challenge ON authorizations(challenge_id) WHERE challenge_id IS NOT NULL;
UPDATE meta SET value = '2' WHERE name = 'schema_version';
"""


def v2_record(path):
    """A version 2 record: three approved authorizations with their records and
    answers (written out of key order), and a key that arrived three times."""
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA + V2_CHANGES)
    for n, (suffix, amount) in enumerate((("2" * 24, 1200), ("3" * 24, 900), ("4" * 24, 300))):
        key = "v2-auth-%d" % (2 - n)
        old_authorization(db, suffix, amount, key, 2000 + n)
    db.execute("INSERT INTO arrival_counts VALUES ('v2-auth-1', 3)")
    db.commit()
    db.close()


def test_migrated_v2():
    sim = started_on(v2_record)
    try:
        keys = [k for (k,) in sim.rows("SELECT key FROM idempotency ORDER BY rowid")]
        check(keys == ["v2-auth-2", "v2-auth-1", "v2-auth-0"], "answers appended in time order: %r" % keys)
        arrivals = dict(sim.rows("SELECT key, count FROM arrivals"))
        check(arrivals == {"v2-auth-0": 1, "v2-auth-1": 3, "v2-auth-2": 1}, "arrivals kept: %r" % arrivals)
        c = sim.client()
        for n, suffix in ((2, "2" * 24), (1, "3" * 24), (0, "4" * 24)):
            old = expect(c.get("/v1/status/v2-auth-%d" % n), 200).json
            check(old["found"] and old["response"]["id"] == "auth_" + suffix, "an old answer is found: %r" % old)
        # A repeat of an old key with another request is refused: the old hash is kept.
        expect(c.post(AUTH, auth_body(amount=5), key="v2-auth-0"), 409, "idempotency_key_reused")
        check(sim.one("SELECT count FROM arrivals WHERE key = 'v2-auth-0'")[0] == 2, "the repeat counted")
        cap = expect(c.post(AUTH + "/auth_" + "2" * 24 + "/captures", {"amount": 1200}, key="v2-cap"), 200).json
        check(cap["captured_total"] == 1200, "an old authorization captured: %r" % cap)
        again = expect(c.post(AUTH + "/auth_" + "2" * 24 + "/captures", {"amount": 1200}, key="v2-cap"), 200)
        check(again.headers.get("idempotent-replayed") == "true" and again.json == cap, "a new answer replays")
        check(sim.rows("SELECT name FROM sqlite_schema WHERE name LIKE '%_v2'") == [], "nothing of version 2 left")
    finally:
        sim.close()


def test_newer_refused():
    """A record written by a newer simulator (its tables may mean something else) is
    refused at start with the versions named, and left as it was."""
    sim = Sim("card").start()
    try:
        expect(sim.client().post(AUTH, auth_body(amount=100), key="n-auth"), 200)
        check(sim.stop() == 0, "clean stop")
        db = sqlite3.connect(sim.db)
        db.execute("UPDATE meta SET value = '5' WHERE name = 'schema_version'")
        db.commit()
        db.close()
        proc = subprocess.run(sim.command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              timeout=60)
        check(proc.returncode != 0, "a newer record refused: %r" % proc.returncode)
        check("version 5, newer than this simulator's 4" in proc.stderr, "the versions named: %r" % proc.stderr)
        db = sqlite3.connect(sim.db)
        check(db.execute("SELECT key FROM idempotency").fetchall() == [("n-auth",)], "the record left as it was")
        db.close()
    finally:
        sim.close()


def test_answers_after_kill():
    """Answers and authorizations committed before a SIGKILL are there after it: a
    repeat replays the first answer, the inquiry finds it, the authorization captures;
    a key never answered is new."""
    sim = Sim("card").start()
    try:
        c = sim.client()
        auths = [expect(c.post(AUTH, auth_body(amount=100 + i), key="kill-%02d" % i), 200).json for i in range(40)]
        check(sim.stop(signal.SIGKILL) == -signal.SIGKILL, "killed")
        sim.start()
        c = sim.client()
        for i in (0, 17, 39):
            again = expect(c.post(AUTH, auth_body(amount=100 + i), key="kill-%02d" % i), 200)
            check(again.headers.get("idempotent-replayed") == "true" and again.json == auths[i],
                  "answer %d replayed after the kill: %r" % (i, again))
            status = expect(c.get("/v1/status/kill-%02d" % i), 200).json
            check(status["response"] == auths[i], "answer %d found by the inquiry: %r" % (i, status))
        cap = expect(c.post(AUTH + "/" + auths[5]["id"] + "/captures", {"amount": 105}, key="kill-cap"), 200).json
        check(cap["captured_total"] == 105, "captured after the kill: %r" % cap)
        expect(c.get("/v1/status/kill-new"), 404)
        fresh = expect(c.post(AUTH, auth_body(amount=7), key="kill-new"), 200)
        check(fresh.headers.get("idempotent-replayed") is None, "a new key is applied: %r" % fresh)
        check(sim.one("SELECT count(*) FROM idempotency")[0] == 42, "one answer per key")
    finally:
        sim.close()


def test_counts_and_map():
    """A first recorded arrival writes no arrival_counts row yet counts 1; a repeat
    counts 2; an authorization made before a restart is found by id after it."""
    sim = Sim("card").start()
    try:
        c = sim.client()
        auth = expect(c.post(AUTH, auth_body(amount=900), key="k-first"), 200).json
        check(sim.rows("SELECT count FROM arrival_counts WHERE key = 'k-first'") == [],
              "the idempotency row is the first arrival's count")
        check(sim.one("SELECT count FROM arrivals WHERE key = 'k-first'")[0] == 1, "first arrival counted")
        expect(c.post(AUTH, auth_body(amount=900), key="k-first"), 200)
        check(sim.one("SELECT count FROM arrivals WHERE key = 'k-first'")[0] == 2, "a repeat counted")
        expect(c.post(AUTH, {"amount": "x"}, key="k-refused"), 400)
        check(sim.one("SELECT count FROM arrivals WHERE key = 'k-refused'")[0] == 1, "a refused arrival counted")
        check(sim.stop() == 0, "clean stop")
        sim.start()
        c = sim.client()
        cap = expect(c.post(AUTH + "/" + auth["id"] + "/captures", {"amount": 900}, key="k-cap"), 200).json
        check(cap["status"] == "approved" and cap["captured_total"] == 900, "found by id after a restart: %r" % cap)
        expect(c.post(AUTH, auth_body(amount=900), key="k-first"), 200)
        check(sim.one("SELECT count FROM arrivals WHERE key = 'k-first'")[0] == 3, "counts go on after a restart")
        expect(c.post(AUTH + "/auth_" + "f" * 24 + "/captures", {"amount": 1}, key="k-none"), 404, "not_found")
    finally:
        sim.close()


def test_wal_written_ahead():
    """The worker starts writing the WAL to the disk after each SIM_WAL_WRITEBACK_KIB
    (1 MiB) of it, so that the checkpoint's fsync of the WAL finds little left (every
    fsync on the disk queues behind it): GET /healthz counts the writebacks started, one
    at least once a MiB of frames was appended, more as it grows; answers stay exact."""
    sim = Sim("card").start()
    try:
        c = sim.client()
        check(expect(c.get("/healthz"), 200).json["wal_writebacks"] == 0, "no writeback before any write")
        appended = 0
        i = 0
        while appended < 3 * 1024 * 1024:  # each request its own commit: a few pages
            expect(c.post(AUTH, auth_body(amount=100 + i), key="wb-%05d" % i), 200)
            appended = max(appended, os.path.getsize(sim.db + "-wal"))
            i += 1
        first = wait_until(lambda: expect(c.get("/healthz"), 200).json["wal_writebacks"], "a WAL writeback")
        for j in range(i, i + 400):
            expect(c.post(AUTH, auth_body(amount=100 + j), key="wb-%05d" % j), 200)
        wait_until(lambda: expect(c.get("/healthz"), 200).json["wal_writebacks"] > first, "a later writeback")
        again = expect(c.post(AUTH, auth_body(amount=100), key="wb-00000"), 200)
        check(again.headers.get("idempotent-replayed") == "true", "the first answer replayed: %r" % again)
        check(sim.one("SELECT count(*) FROM idempotency")[0] == i + 400, "one answer per key")
    finally:
        sim.close()


def clone_authorizations(path, source_id, count):
    """Copies of one authorization (and its record), with ids auth_c<23 hex>, written
    while the simulator is stopped: a record larger than the map's first slots."""
    db = sqlite3.connect(path)
    for i in range(count):
        new_id = "auth_c%023x" % i
        db.execute("INSERT INTO authorizations(id, card_number, status, response_code, amount, currency,"
                   " capture_requested, idempotency_key) SELECT ?, card_number, status, response_code, amount,"
                   " currency, 0, 'clone-' || ? FROM authorizations WHERE id = ?", (new_id, i, source_id))
        db.execute("INSERT INTO records(id, kind, idempotency_key, status, response_code, amount, currency,"
                   " created_at_ms) SELECT ?, kind, 'clone-' || ?, status, response_code, amount, currency,"
                   " created_at_ms FROM records WHERE id = ?", (new_id, i, source_id))
    db.commit()
    db.close()


def test_map_after_restart():
    """The map of authorizations is read whole at start (more than its first slots),
    each entry naming its own rows: captures, a void and a challenge's completion after
    a restart reach the right rows; every key is known again (a repeat replays)."""
    sim = Sim("card").start()
    try:
        c = sim.client()
        auth = expect(c.post(AUTH, auth_body(amount=700), key="m-auth"), 200).json
        challenged = expect(c.post(AUTH, auth_body(CARD_3DS, amount=400), key="m-3ds"), 200).json
        check(challenged["status"] == "challenge_required", "challenged: %r" % challenged)
        check(sim.stop() == 0, "clean stop")
        clone_authorizations(sim.db, auth["id"], 1500)
        sim.start()
        c = sim.client()
        for i, key in ((0, "m-c0"), (777, "m-c777"), (1499, "m-c1499")):
            cap = expect(c.post(AUTH + "/auth_c%023x/captures" % i, {"amount": 700}, key=key), 200).json
            check(cap["status"] == "approved" and cap["captured_total"] == 700, "clone %d captured: %r" % (i, cap))
            check(sim.one("SELECT captured_total FROM authorizations WHERE id = ?", ("auth_c%023x" % i,))[0] == 700,
                  "the capture of clone %d reached its row" % i)
        void = expect(c.post(AUTH + "/" + auth["id"] + "/void", {}, key="m-void"), 200).json
        check(void["status"] == "approved", "the original voided: %r" % void)
        check(sim.one("SELECT status FROM records WHERE id = ? AND kind = 'authorization'", (auth["id"],))[0] ==
              "voided", "the void reached the original's record row")
        check(sim.one("SELECT count(*) FROM records WHERE status = 'voided'")[0] == 1, "no clone voided")
        done = expect(c.post("/v1/challenges/%s/complete" % challenged["challenge_id"], {"code": "123456"},
                             key="m-3ds-done"), 200).json
        check(done["status"] == "approved" and done["id"] == challenged["id"], "challenge completed: %r" % done)
        check(sim.one("SELECT status FROM records WHERE id = ? AND kind = 'authorization'", (challenged["id"],))[0] ==
              "approved", "the completion reached the challenged authorization's record row")
        again = expect(c.post(AUTH, auth_body(amount=700), key="m-auth"), 200)
        check(again.headers.get("idempotent-replayed") == "true" and again.json == auth,
              "a key from before the restart replays: %r" % again)
        check("keys not indexed" not in sim.log() and "map of authorizations" not in sim.log(),
              "the record was read whole at start: %s" % sim.log()[-2000:])
    finally:
        sim.close()


def clone_out_of_order(path, source_id, count):
    """Copies of one authorization with ids auth_o<23 hex>: the authorizations' rows
    appended in one order, their records' in the reverse, so the two tables' rowid
    orders disagree (as a version 1 record's migration left them)."""
    db = sqlite3.connect(path)
    for i in range(count):
        db.execute("INSERT INTO authorizations(id, card_number, status, response_code, amount, currency,"
                   " capture_requested, idempotency_key) SELECT ?, card_number, status, response_code, amount,"
                   " currency, 0, 'ooo-' || ? FROM authorizations WHERE id = ?", ("auth_o%023x" % i, i, source_id))
    for i in reversed(range(count)):
        db.execute("INSERT INTO records(id, kind, idempotency_key, status, response_code, amount, currency,"
                   " created_at_ms) SELECT ?, kind, 'ooo-' || ?, status, response_code, amount, currency,"
                   " created_at_ms FROM records WHERE id = ?", ("auth_o%023x" % i, i, source_id))
    db.commit()
    db.close()


def test_map_out_of_order():
    """Authorizations whose rows and records' rows are not in the same order are
    paired by id at start: a void after a restart reaches its own record row, and a
    capture its own authorization row."""
    sim = Sim("card").start()
    try:
        c = sim.client()
        auth = expect(c.post(AUTH, auth_body(amount=500), key="o-auth"), 200).json
        check(sim.stop() == 0, "clean stop")
        clone_out_of_order(sim.db, auth["id"], 300)
        sim.start()
        c = sim.client()
        for i in (0, 150, 299):
            clone_id = "auth_o%023x" % i
            void = expect(c.post(AUTH + "/" + clone_id + "/void", {}, key="o-void%d" % i), 200).json
            check(void["status"] == "approved" and void["authorization_id"] == clone_id, "voided: %r" % void)
            check(sim.one("SELECT status FROM records WHERE id = ? AND kind = 'authorization'", (clone_id,))[0] ==
                  "voided", "the void of clone %d reached its own record row" % i)
        check(sim.one("SELECT count(*) FROM records WHERE status = 'voided'")[0] == 3, "no other record voided")
        cap = expect(c.post(AUTH + "/auth_o%023x/captures" % 7, {"amount": 500}, key="o-cap"), 200).json
        check(cap["status"] == "approved" and cap["captured_total"] == 500, "clone 7 captured: %r" % cap)
        check(sim.one("SELECT captured_total FROM authorizations WHERE id = ?", ("auth_o%023x" % 7,))[0] == 500,
              "the capture reached its row")
        check("map of authorizations" not in sim.log(), "the map was loaded: %s" % sim.log()[-2000:])
    finally:
        sim.close()


def page_size(path):
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA page_size").fetchone()[0]
    finally:
        db.close()


def four_kib_record(path):
    """An empty file of 4 KiB pages in WAL mode, as simulators before 1 KiB pages made."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA page_size=4096")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS meta(name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.commit()
    db.close()


def test_page_sizes():
    """A new record has 1 KiB pages (a request's rewritten cardholder leaf is a smaller
    WAL frame); a record of 4 KiB pages keeps them, and serves and restarts as before."""
    sim = Sim("card").start()
    try:
        expect(sim.client().post(AUTH, auth_body(amount=100), key="p-new"), 200)
        check(page_size(sim.db) == 1024, "a new record's pages: %d" % page_size(sim.db))
    finally:
        sim.close()
    sim = Sim("card")
    four_kib_record(sim.db)
    sim.start()
    try:
        c = sim.client()
        sale = expect(c.post(AUTH, auth_body(amount=300, capture=True), key="p-sale"), 200).json
        auth = expect(c.post(AUTH, auth_body(amount=200), key="p-auth"), 200).json
        check(sim.stop() == 0, "clean stop")
        sim.start()
        c = sim.client()
        cap = expect(c.post(AUTH + "/" + auth["id"] + "/captures", {"amount": 200}, key="p-cap"), 200).json
        check(cap["captured_total"] == 200, "captured after the restart: %r" % cap)
        check(expect(c.get(AUTH + "/" + sale["id"]), 200).json["captured_total"] == 300, "the sale captured")
        check(page_size(sim.db) == 4096, "an existing record keeps its pages: %d" % page_size(sim.db))
    finally:
        sim.close()


def main():
    need_binary()
    test_migrated()
    test_migrated_v2()
    test_newer_refused()
    test_answers_after_kill()
    test_counts_and_map()
    test_map_after_restart()
    test_map_out_of_order()
    test_page_sizes()
    test_wal_written_ahead()
    print("ok")


if __name__ == "__main__":
    main()
