"""Goal: a database made by the binary of SQLite schema version 13 (tests/payments/fixtures/v13:
fixture_v7.py make-v13), whose payments' version records repeat the fixed members (method, payer,
description, metadata, risk) and the routing in every version, migrates to version 14, where a
record names the earlier record that holds them whole ("$fixed", "$routing") instead, and no old
payment changes: every listing, payment, event and Idempotency-Key replay answers byte for byte
what the old binary answered. Old payments go on (a partial capture of an authorization, a
cancel) and new ones are made and captured; each reads back as it was answered (GET, replay, its
events' objects) after a clean restart and after a SIGKILL (a payment committed just before the
kill included); the records written after the migration name the parts, the old ones stay
whole; the ledger agrees with every payment touched and `paycore verify` passes. SQLite only:
PostgreSQL's version 17 is the same change of records and no table change.
Method: the fixture's files unpacked into a real server's and simulators' directories, real
processes, the file read directly after clean stops (test_payments_migrate_v7.py's helpers)."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_v7 import FIXTURE_V13, idem, migrate_test_main, raw  # noqa: E402
from paylib import card_payment, check, check_payment_ledgers, expect, pay_records  # noqa: E402
from test_payments_migrate_v7 import check_replays_same, migrated, restart_after_kill, start_reads_same  # noqa: E402


def fixture_ids(fixture):
    """The old binary's payment ids by the Idempotency-Key that made them."""
    return {key[len("replay "):]: json.loads(body)["id"] for key, (status, body) in fixture["reads"].items()
            if key.startswith("replay fx-") and not key.endswith("changed") and status in (200, 201, 202)}


def post_kept(env, keys, answers, who, path, body, key, status):
    """A request whose answer (a payment) is kept: it must read back byte for byte."""
    r = expect(env.client(keys[who]).post(path, body, **idem(key)), status, what=key)
    answers[key] = (who, path, body, raw(r))
    return r.json


def check_answers(env, keys, answers, latest):
    """Each kept answer replays byte for byte; each payment's latest answer is its GET,
    and the object of its last event."""
    for key, (who, path, body, want) in answers.items():
        again = env.client(keys[who]).post(path, body, **idem(key))
        check(raw(again) == want, "%s replays as answered: %r vs %r" % (key, again.raw, want))
    admin = env.client(keys["admin"])
    for pid, want in latest.items():
        got = raw(admin.get("/v1/payments/" + pid))
        check(got == [200, want[1]], "%s reads as last answered: %r vs %r" % (pid, got, want))
        events = expect(admin.get("/v1/events?object_id=%s&limit=100" % pid), 200).json["data"]
        check(events, "%s has events" % pid)
        for event in events:
            obj = event["data"]["object"]
            check(obj["id"] == pid and obj["version"] == event["object_seq"],
                  "%s: the event of version %r shows that version: %r" % (pid, event["object_seq"], obj["version"]))
        last = max(events, key=lambda e: e["object_seq"])["data"]["object"]
        check(last == json.loads(want[1]), "%s: its last event's object is the payment as answered" % pid)


def check_records(store, new_ids, old_ids):
    """Version 14: the records written after the migration name the fixed members and the
    routing held by an earlier record; the old binary's records hold them whole."""
    check(store.version() >= 14, "schema version 14 or later: %r" % store.version())
    for pid in new_ids:
        docs = dict((r["version"], r["doc"]) for r in pay_records(store.env.server.db, pid))
        check(len(docs) >= 3, "%s: its records: %r" % (pid, sorted(docs)))
        check('"payment_method":' in docs[1] and '"$fixed"' not in docs[1], "%s: version 1 holds them whole" % pid)
        for version, doc in docs.items():
            if version >= 2:
                check('"$fixed":1' in doc and '"payment_method":' not in doc,
                      "%s v%d names the fixed members of version 1: %s" % (pid, version, doc[:300]))
            if version >= 3:
                check('"$routing":2' in doc and '"routing":' not in doc,
                      "%s v%d names the routing of version 2: %s" % (pid, version, doc[:300]))
    for pid, before in old_ids.items():
        docs = dict((r["version"], r["doc"]) for r in pay_records(store.env.server.db, pid))
        for version, doc in docs.items():
            if version <= before:
                check('"$fixed"' not in doc and '"$routing"' not in doc, "%s v%d: the old record stays" % (pid, version))
            else:
                check('"$fixed":' in doc, "%s v%d: a record after the migration names the parts" % (pid, version))


def run(fixture_dir):
    with migrated(fixture_dir) as (env, fixture, store):
        keys = fixture["keys"]
        pid = fixture_ids(fixture)
        start_reads_same(env, fixture)
        old_versions = {pid[k]: json.loads(fixture["reads"]["payment " + pid[k]][1])["version"]
                        for k in ("fx-auth", "fx-m2b")}
        answers, latest = {}, {}
        cap = post_kept(env, keys, answers, "m1", "/v1/payments/%s/capture" % pid["fx-auth"], {"amount": 400},
                        "v14-cap-old", 200)
        check(cap["status"] == "partially_captured", "a migrated authorization partially captured: %r" % cap)
        latest[pid["fx-auth"]] = answers["v14-cap-old"][3]
        x = post_kept(env, keys, answers, "m2", "/v1/payments/%s/cancel" % pid["fx-m2b"], None, "v14-cancel-old",
                      200)
        check(x["status"] == "canceled", "a migrated authorization canceled: %r" % x)
        latest[pid["fx-m2b"]] = answers["v14-cancel-old"][3]
        made = post_kept(env, keys, answers, "m1", "/v1/payments", card_payment(1700, metadata={"order": "n-1"}),
                         "v14-new", 201)
        post_kept(env, keys, answers, "m1", "/v1/payments/%s/capture" % made["id"], {"amount": 700}, "v14-cap", 200)
        post_kept(env, keys, answers, "m1", "/v1/payments/%s/capture" % made["id"], {}, "v14-cap-rest", 200)
        latest[made["id"]] = answers["v14-cap-rest"][3]
        check_answers(env, keys, answers, latest)
        env.stop()
        check_records(store, [made["id"]], old_versions)
        env.start()
        check_answers(env, keys, answers, latest)
        auto = post_kept(env, keys, answers, "m2", "/v1/payments", card_payment(1900, capture="automatic"),
                         "v14-before-kill", 201)
        latest[auto["id"]] = answers["v14-before-kill"][3]
        restart_after_kill(env)
        check_answers(env, keys, answers, latest)
        check_replays_same(env, keys, fixture)
        admin = env.client(keys["admin"])
        check_payment_ledgers(admin, latest)
        env.stop()
        check_records(store, [made["id"]], old_versions)


def main():
    migrate_test_main(FIXTURE_V13, 13, run)


if __name__ == "__main__":
    main()
