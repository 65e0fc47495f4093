"""Goal: a database made by the binary of SQLite schema version 8 (PostgreSQL 9)
(tests/payments/fixtures/v8 and v8-pg: fixture_v7.py make-v8, make-v8-pg) migrates to
the version where a payment's row keeps the final answer of the request that made it,
and everything reads the same: every listing, payment, refund, payout, wallet, event and
Idempotency-Key replay answers byte for byte what the old binary answered (its replies
were rewritten into references to the answered version: they stay as they are). Then
the migrated payments go on and new ones are made under keys: the reply of a new
payment's key names the payment and is written once, the payment's row keeps the
version and status it answered with, and every replay, old keys and new, answers byte
for byte its first answer, also after a restart, while the payment has moved on since.
The ledger agrees with every payment touched and `paycore verify` passes.
Method: the fixture's files unpacked into a real server's and simulators' directories
(on PostgreSQL its pg_dump restored into a throwaway cluster), real processes, the store
read directly after clean stops (test_payments_migrate_v7.py's helpers)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_v7 import FIXTURE_V8, FIXTURE_V8_PG, creations  # noqa: E402
from paylib import card_payment, check, check_payment_ledger, expect  # noqa: E402
from test_payments_migrate_v7 import go_on, migrated, run_fixtures_of, start_reads_same  # noqa: E402


def stored_reply(store, key):
    rows = store.rows("SELECT body FROM idempotency_keys WHERE idempotency_key = ?", (key,))
    return rows[0][0] if rows else None


def answer_kept(store, payment_id):
    rows = store.rows("SELECT answer_version, answer_status FROM pay_objects WHERE id = ?", (payment_id,))
    return tuple(int(v) for v in rows[0]) if rows else None


def new_under_keys(env, fixture):
    """A new payment and its partial capture, each under its key: the answers."""
    m1 = env.client(fixture["keys"]["m1"])
    made = expect(m1.post("/v1/payments", card_payment(2500), headers={"Idempotency-Key": "v9-new"}), 201)
    check(made.json["status"] == "authorized", "a new payment authorized: %r" % made.json)
    part = expect(m1.post("/v1/payments/%s/capture" % made.json["id"], {"amount": 1000},
                          headers={"Idempotency-Key": "v9-cap"}), 200)
    check(part.json["status"] == "partially_captured", "partly captured: %r" % part.json)
    return {"v9-new": (made, card_payment(2500), "/v1/payments"),
            "v9-cap": (part, {"amount": 1000}, "/v1/payments/%s/capture" % made.json["id"])}


def check_replays(env, fixture, answers, when):
    """Every new key replays its first answer."""
    m1 = env.client(fixture["keys"]["m1"])
    for key, (answer, body, path) in sorted(answers.items()):
        again = m1.post(path, body, headers={"Idempotency-Key": key})
        check(again.status == answer.status and again.raw == answer.raw,
              "%s: the replay of %s answers its first answer byte for byte (%d, %d): %r"
              % (when, key, again.status, answer.status, again))


def check_stored(store, answers):
    made = answers["v9-new"][0].json
    check(stored_reply(store, "v9-new") == "@payment:" + made["id"],
          "the new payment's key reply names it, written once: %r" % stored_reply(store, "v9-new"))
    check(answer_kept(store, made["id"]) == (made["version"], 201),
          "its row keeps the answered version and status: %r" % (answer_kept(store, made["id"]),))
    part = answers["v9-cap"][0].json
    check(stored_reply(store, "v9-cap") == "@payment:%s:%d" % (part["id"], part["version"]),
          "a capture's key reply names the version it answered with: %r" % stored_reply(store, "v9-cap"))


def check_migrated_rows(store, fixture):
    """The old binary's payments: no answer kept, their replies as the old binary wrote them."""
    for key in ("fx-auth", "fx-captured", "fx-3ds"):
        status, body = fixture["reads"]["replay " + key]
        ref = stored_reply(store, key)
        check(ref is not None and ref.startswith("@payment:"), "%s's reply is a reference: %r" % (key, ref))
        payment_id = ref.split(":")[1]
        check(answer_kept(store, payment_id) == (0, 0), "%s's row keeps no answer: the reply names its version"
              % key)


def run(fixture_dir, cluster=None):
    with migrated(fixture_dir, cluster) as (env, fixture, store):
        start_reads_same(env, fixture)
        done, new, _ = go_on(env, fixture)
        answers = new_under_keys(env, fixture)
        check_replays(env, fixture, answers, "running")
        m1 = env.client(fixture["keys"]["m1"])
        rest = expect(m1.post("/v1/payments/%s/capture" % answers["v9-new"][0].json["id"], {}), 200).json
        check(rest["status"] == "captured", "the new payment moved on: %r" % rest)
        done += [rest["id"]]
        shown = {pid: expect(env.admin.get("/v1/payments/" + pid), 200).raw for pid in done}
        env.stop()
        check_stored(store, answers)
        check_migrated_rows(store, fixture)
        env.start()
        check_replays(env, fixture, answers, "after a restart")
        for key in ("fx-auth", "fx-captured", "fx-3ds", "fx-review"):
            check_replay_old(env, fixture, key)
        for pid in done:
            got = expect(env.admin.get("/v1/payments/" + pid), 200)
            check(got.raw == shown[pid], "%s reads the same after a restart" % pid)
            check_payment_ledger(env.admin, got.json, pid)
        env.stop()


def check_replay_old(env, fixture, key):
    """A key of the old binary (its payment captured, refunded or cancelled since):
    the replay answers what the old binary answered."""
    for who, path, body, k in creations(None, None):
        if k != key:
            continue
        r = env.client(fixture["keys"][who]).post(path, body, headers={"Idempotency-Key": key})
        check([r.status, r.raw.decode() if isinstance(r.raw, bytes) else r.raw] == fixture["reads"]["replay " + key],
              "the old key %s replays byte for byte after the payment moved on" % key)


def main():
    run_fixtures_of(8, run, FIXTURE_V8, FIXTURE_V8_PG)


if __name__ == "__main__":
    main()
