"""Goal: a database made by the binary of SQLite schema version 15 (tests/payments/fixtures/v15:
fixture_v7.py make-v15), whose payment records are JSON text, migrates to version 16, where a
record is stored packed (zstd with a dictionary, src/store/sqlite_pay_pack.c), and no old read
changes: every listing, payment, event and Idempotency-Key replay answers byte for byte what the
old binary answered, and every version of every old payment (each as its events show it) reads
as its record held it. Old payments go on (a partial capture, a cancel) and new ones are made,
captured in parts and refunded; each answer reads back byte for byte (GET, replay, its events'
objects) after a clean restart and after a SIGKILL (a payment committed just before the kill
included); the old records stay text, the new ones are packed and a fraction of their text,
and each unpacks to the version the API shows; the ledger agrees with every payment touched and
`paycore verify` passes. SQLite only: PostgreSQL keeps its records as text.
Method: the fixture's files unpacked into a real server's and simulators' directories, real
processes, the file read directly after clean stops (the records through tests' pay_records,
which unpacks them with the store's code)."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_v7 import FIXTURE_V15, idem, migrate_test_main, raw  # noqa: E402
from paylib import all_pages, card_payment, check, check_payment_ledgers, expect, pay_records  # noqa: E402
from test_payments_migrate_v13 import post_kept  # noqa: E402
from test_payments_migrate_v7 import check_replays_same, migrated, restart_after_kill, start_reads_same  # noqa: E402


def payment_events(admin):
    """Every payment event's object by (payment id, version)."""
    shown = {}
    for e in all_pages(admin, "/v1/events"):
        obj = e["data"]["object"]
        if obj.get("object") == "payment":
            shown[(obj["id"], obj["version"])] = obj
    return shown


def check_answers(env, keys, answers, latest):
    """Each kept answer replays byte for byte; each payment's latest answer is its GET."""
    for key, (who, path, body, want) in answers.items():
        again = env.client(keys[who]).post(path, body, **idem(key))
        check(raw(again) == want, "%s replays as answered: %r vs %r" % (key, again.raw, want))
    admin = env.client(keys["admin"])
    for pid, want in latest.items():
        got = raw(admin.get("/v1/payments/" + pid))
        check(got == [200, want], "%s reads as last answered: %r vs %r" % (pid, got, want))


def check_records(db, old_seq_max, shown):
    """The old records stay text, the new ones are packed; a version's record holds what
    its event shows (the members a record names elsewhere aside)."""
    records = pay_records(db)
    old = [r for r in records if r["seq"] <= old_seq_max]
    new = [r for r in records if r["seq"] > old_seq_max]
    check(old and all(r["stored"] == "text" for r in old), "the old binary's records stay text")
    check(new and all(r["stored"] == "packed" for r in new),
          "the new records are packed: %r" % [(r["object_id"], r["version"]) for r in new if r["stored"] != "packed"])
    text_bytes = sum(len(r["doc"]) for r in new)
    packed_bytes = sum(r["stored_bytes"] for r in new)
    check(3 * packed_bytes < text_bytes, "packed records take a fraction of their text: %d of %d bytes"
          % (packed_bytes, text_bytes))
    for r in records:
        record = json.loads(r["doc"])
        obj = shown.get((r["object_id"], r["version"]))
        check(obj is not None, "%s v%d has its event" % (r["object_id"], r["version"]))
        for name in ("status", "amount_captured", "amount_refunded", "updated", "version"):
            check(record[name] == obj[name], "%s v%d: the record's %s is its event's: %r vs %r"
                  % (r["object_id"], r["version"], name, record[name], obj[name]))


def run(fixture_dir):
    with migrated(fixture_dir) as (env, fixture, store):
        keys = fixture["keys"]
        pid = {json.loads(body)["id"]: key for key, (status, body) in fixture["reads"].items()
               if key.startswith("replay fx-") and not key.endswith("changed") and status in (200, 201, 202)}
        by_key = {key[len("replay "):]: p for p, key in pid.items()}
        old_seq_max = max(seq for (seq,) in store.rows("SELECT seq FROM pay_versions"))
        start_reads_same(env, fixture)
        admin = env.client(keys["admin"])
        old_shown = payment_events(admin)
        answers, latest = {}, {}
        cap = post_kept(env, keys, answers, "m1", "/v1/payments/%s/capture" % by_key["fx-auth"], {"amount": 400},
                        "v16-cap-old", 200)
        check(cap["status"] == "partially_captured", "a migrated authorization partially captured: %r" % cap)
        latest[by_key["fx-auth"]] = answers["v16-cap-old"][3][1]
        x = post_kept(env, keys, answers, "m2", "/v1/payments/%s/cancel" % by_key["fx-m2b"], None, "v16-cancel-old",
                      200)
        check(x["status"] == "canceled", "a migrated authorization canceled: %r" % x)
        latest[by_key["fx-m2b"]] = answers["v16-cancel-old"][3][1]
        made = post_kept(env, keys, answers, "m1", "/v1/payments", card_payment(1700, metadata={"order": "n-1"}),
                         "v16-new", 201)
        post_kept(env, keys, answers, "m1", "/v1/payments/%s/capture" % made["id"], {"amount": 700}, "v16-cap", 200)
        post_kept(env, keys, answers, "m1", "/v1/payments/%s/capture" % made["id"], {}, "v16-cap-rest", 200)
        expect(env.client(keys["m1"]).post("/v1/payments/%s/refunds" % made["id"], {"amount": 300},
                                           **idem("v16-refund")), 201)
        latest[made["id"]] = raw(admin.get("/v1/payments/" + made["id"]))[1]
        check_answers(env, keys, answers, latest)
        shown = payment_events(admin)
        check(all(shown.get(k) == v for k, v in old_shown.items()), "the old payments' events read as before")
        env.stop()
        check_records(env.server.db, old_seq_max, shown)
        env.start()
        check_answers(env, keys, answers, latest)
        check(payment_events(env.client(keys["admin"])) == shown, "every version reads the same after a restart")
        auto = post_kept(env, keys, answers, "m2", "/v1/payments", card_payment(1900, capture="automatic"),
                         "v16-before-kill", 201)
        latest[auto["id"]] = answers["v16-before-kill"][3][1]
        restart_after_kill(env)
        check_answers(env, keys, answers, latest)
        check_replays_same(env, keys, fixture)
        admin = env.client(keys["admin"])
        after_kill = payment_events(admin)
        check(all(after_kill.get(k) == v for k, v in shown.items()), "every version reads the same after a SIGKILL")
        check_payment_ledgers(admin, latest)
        env.stop()
        check_records(env.server.db, old_seq_max, after_kill)
        check(store.version() == 17, "schema version 17 (16, then owner spans): %r" % store.version())


def main():
    migrate_test_main(FIXTURE_V15, 15, run)


if __name__ == "__main__":
    main()
