"""Goal: a database made by the binary of SQLite schema version 14 (tests/payments/fixtures/v14:
fixture_v7.py make-v14), whose ledger events are stored whole, migrates to version 15, where a
transfer event is stored as a reference to its transfers ("@transfer:...", events.h) and rendered
when read, and no old read changes: every listing, payment, event and Idempotency-Key replay
answers byte for byte what the old binary answered. New payments' transfer events are stored as
references and read as the old binary rendered its own: the same members in the same order, the
object the transfer the event names (the pending one once resolved, with the state the event gave
it), a resolution's resolving transfer after it; each reads the same in a listing and alone, and
the same after a clean restart and after a SIGKILL; the old rows stay whole, and `paycore verify`
passes. SQLite only: PostgreSQL stores every event whole (a shard's rows are copied whole).
Method: the fixture's files unpacked into a real server's and simulators' directories, real
processes, the file read directly after clean stops (test_payments_migrate_v7.py's helpers)."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_v7 import FIXTURE_V14, idem, migrate_test_main  # noqa: E402
from paylib import all_pages, card_payment, check, expect  # noqa: E402
from test_payments_migrate_v7 import check_replays_same, migrated, restart_after_kill, start_reads_same  # noqa: E402

TRANSFER_TYPES = ("transfer.created", "transfer.posted", "transfer.voided", "transfer.expired")


def all_events(admin):
    """Every event as the admin lists it, in order."""
    return all_pages(admin, "/v1/events")


def shape(value):
    """Member names in order, nested, without the values: what a rendering decides."""
    if isinstance(value, dict):
        return [(k, shape(v)) for k, v in value.items() if k != "metadata"]
    return type(value).__name__


def check_new_transfer_events(admin, old_events, new_events):
    """A new transfer event has the shape the old binary gave the same type, names its
    transfers as the event's object_id says, and reads the same alone."""
    old_shapes = {}
    for e in old_events:
        old_shapes.setdefault((e["type"], e["data"]["object"].get("pending_state")), shape(e))
    seen = set()
    for e in new_events:
        if e["type"] not in TRANSFER_TYPES:
            continue
        obj = e["data"]["object"]
        key = (e["type"], obj.get("pending_state"))
        check(key in old_shapes, "an old event of the kind %r to compare with" % (key,))
        check(shape(e) == old_shapes[key], "%s has the old shape: %r vs %r" % (e["id"], shape(e), old_shapes[key]))
        check(obj["id"] == e["object_id"], "%s: its object is the transfer it names: %r" % (e["id"], obj))
        if e["type"] == "transfer.posted":
            resolving = e["data"]["resolving_transfer"]
            check(resolving["pending_id"] == obj["id"] and obj["pending_state"] == "posted",
                  "%s: the posted hold and its post: %r" % (e["id"], e["data"]))
        alone = expect(admin.get("/v1/events/" + e["id"]), 200).json
        check(alone == e, "%s reads the same alone: %r vs %r" % (e["id"], alone, e))
        seen.add(e["type"])
    check({"transfer.created", "transfer.posted"} <= seen, "new holds created and posted: %r" % sorted(seen))


def check_rows(store, old_seq_max):
    """Version 15: the new transfer events are references, the old binary's rows stay whole."""
    check(store.version() >= 15, "schema version 15 or later: %r" % store.version())
    rows = store.rows("SELECT seq, type, body FROM events")
    old = [(seq, t, body) for seq, t, body in rows if seq <= old_seq_max and t in TRANSFER_TYPES]
    new = [(seq, t, body) for seq, t, body in rows if seq > old_seq_max and t in TRANSFER_TYPES]
    check(old and all(body.startswith("{") for _, _, body in old), "the old transfer events stay whole")
    check(new and all(body.startswith("@transfer:") and len(body) < 128 for _, _, body in new),
          "the new transfer events are references: %r" % [b for _, _, b in new if not b.startswith("@transfer:")][:3])


def run(fixture_dir):
    with migrated(fixture_dir) as (env, fixture, store):
        keys = fixture["keys"]
        old_seq_max = max(seq for (seq,) in store.rows("SELECT seq FROM events"))
        start_reads_same(env, fixture)
        admin = env.client(keys["admin"])
        m1 = env.client(keys["m1"])
        old_events = all_events(admin)
        made = expect(m1.post("/v1/payments", card_payment(1700), **idem("v15-new")), 201).json
        expect(m1.post("/v1/payments/%s/capture" % made["id"], {"amount": 700}, **idem("v15-cap")), 200)
        expect(m1.post("/v1/payments/%s/capture" % made["id"], {}, **idem("v15-cap-rest")), 200)
        made2 = expect(m1.post("/v1/payments", card_payment(900), **idem("v15-void")), 201).json
        expect(m1.post("/v1/payments/%s/cancel" % made2["id"], None, **idem("v15-cancel")), 200)
        events = all_events(admin)
        check(events[:len(old_events)] == old_events, "the old events read as before")
        check_new_transfer_events(admin, old_events, events[len(old_events):])
        env.stop()
        check_rows(store, old_seq_max)
        env.start()
        check(all_events(env.client(keys["admin"])) == events, "the events read the same after a restart")
        auto = expect(m1.post("/v1/payments", card_payment(1900, capture="automatic"), **idem("v15-kill")), 201).json
        restart_after_kill(env)
        after_kill = all_events(env.client(keys["admin"]))
        check(after_kill[:len(events)] == events, "the events read the same after a SIGKILL")
        check(any(e["type"] == "transfer.posted" and e["data"]["resolving_transfer"]["id"] in
                  json.dumps(auto) for e in after_kill[len(events):]) or
              any(e["type"] == "transfer.created" for e in after_kill[len(events):]),
              "the payment committed before the kill has its transfer events")
        check_new_transfer_events(env.client(keys["admin"]), old_events, after_kill[len(old_events):])
        check_replays_same(env, keys, fixture)
        env.stop()


def main():
    migrate_test_main(FIXTURE_V14, 14, run)


if __name__ == "__main__":
    main()
