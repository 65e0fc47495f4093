"""Goal: a database made by the binary of SQLite schema version 12 (tests/payments/fixtures/v12:
fixture_v7.py make-v12), whose stored Idempotency-Key replies were a B-tree keyed by the key,
migrates to version 13 (the replies appended by seq, with no index by key: the store finds a
key's reply through memory) and no promise of a key changes: every read and every replay of the
old binary's keys answers byte for byte what it answered (the snapshot holds them, and a replay
with other fields, idempotency_key_reused); replies stored after the migration replay the same,
other fields are refused; all of it again after a clean restart and after a SIGKILL (a reply
committed just before the kill included); the migrated table holds one row per key, in the
order the old binary made them; `paycore verify` passes. SQLite only: the
PostgreSQL layout does not change (docs/scaleout.md).
Method: the fixture's files unpacked into a real server's and simulators' directories, real
processes, the file read directly after clean stops (test_payments_migrate_v7.py's helpers)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_v7 import FIXTURE_V12, creations, idem, migrate_test_main, raw, snapshot  # noqa: E402
from paylib import card_payment, check, check_payment_ledgers, expect  # noqa: E402
from test_payments_migrate_v7 import check_replays_same, migrated, restart_after_kill, start_reads_same  # noqa: E402


def replays_same(env, keys, stored):
    """Each (who, path, body, key, answer) of 'stored' replays byte for byte; the same
    key with other fields is refused."""
    for who, path, body, key, want in stored:
        client = env.client(keys[who])
        again = client.post(path, body, **idem(key))
        check(raw(again) == want, "%s replays as stored: %r vs %r" % (key, again.raw, want))
        check(again.headers.get("idempotent-replayed") == "true", "%s: marked as a replay" % key)
        other = dict(body or {}, description="other fields")
        expect(client.post(path, other, **idem(key)), 409, "idempotency_key_reused", "%s with other fields" % key)


def post_kept(env, keys, stored, who, path, body, key, status):
    r = expect(env.client(keys[who]).post(path, body, **idem(key)), status, what=key)
    stored.append((who, path, body, key, raw(r)))
    return r.json


def check_layout(store, fixture_keys):
    """Version 13: no index of idempotency_keys (none by key, none by age), one row per
    key, the old binary's replies first, in the order it made them."""
    check(store.version() >= 13, "schema version 13 or later: %r" % store.version())
    indexes = store.rows("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'idempotency_keys'")
    check(indexes == [], "no index of the replies: %r" % indexes)
    rows = store.rows("SELECT seq, key_id, idempotency_key, created_ns FROM idempotency_keys ORDER BY seq")
    pairs = [(r[1], r[2]) for r in rows]
    check(len(pairs) == len(set(pairs)), "one row per key: %d rows, %d keys" % (len(pairs), len(set(pairs))))
    created = [r[3] for r in rows]
    check(created == sorted(created), "seq order is creation order")
    stored_keys = {r[2] for r in rows}
    check(set(fixture_keys) <= stored_keys, "every key of the old binary is stored: missing %r"
          % sorted(set(fixture_keys) - stored_keys))


def run(fixture_dir):
    with migrated(fixture_dir) as (env, fixture, store):
        keys = fixture["keys"]
        fixture_keys = [key for _, _, _, key in creations(None, None)]
        start_reads_same(env, fixture)  # the old keys' replays among them
        stored = []
        made = post_kept(env, keys, stored, "m1", "/v1/payments", card_payment(1700), "v13-new", 201)
        post_kept(env, keys, stored, "m1", "/v1/payments/%s/capture" % made["id"], {"amount": 700}, "v13-cap", 200)
        replays_same(env, keys, stored)
        env.stop()
        check_layout(store, fixture_keys)
        env.start()
        check_replays_same(env, keys, fixture)
        replays_same(env, keys, stored)
        late = post_kept(env, keys, stored, "m2", "/v1/payments", card_payment(1900, capture="automatic"),
                         "v13-before-kill", 201)
        restart_after_kill(env)
        replays_same(env, keys, stored)
        check_replays_same(env, keys, fixture)
        check_payment_ledgers(env.admin, (made["id"], late["id"]))
        env.stop()
        check_layout(store, fixture_keys + ["v13-new", "v13-cap", "v13-before-kill"])


def main():
    migrate_test_main(FIXTURE_V12, 12, run)


if __name__ == "__main__":
    main()
