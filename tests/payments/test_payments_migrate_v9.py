"""Goal: a database made by the binary of SQLite schema version 9 (PostgreSQL 11)
(tests/payments/fixtures/v9 and v9-pg: fixture_v7.py make-v9, make-v9-pg) migrates to
the version where an event's first owner is a column of its row (the owners table keeps
only the further owners), and every event reads the same: every listing (all, each
merchant key's, by type, by object, both orders, every page) and every event read by
id, by the admin and by each merchant key (its own, and another's as missing), answers
byte for byte what the old binary answered, with events of one, two and three owners
(m1 has a second key made midway; a ledger transfer from m1's balance to m2's). The
migrated rows hold their smallest owner on the row and no owners-table row repeats it.
Then the payments go on and new ones are made: a new event's first owner is on its row,
a second key of its merchant is in the owners table, each merchant key lists exactly
the events of its own accounts (the other merchant's are missing), also after a restart,
the ledger agrees with every payment touched and `paycore verify` passes.
Method: the fixture's files unpacked into a real server's and simulators' directories
(on PostgreSQL its pg_dump restored into a throwaway cluster), real processes, the store
read directly after clean stops (test_payments_migrate_v7.py's helpers)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_v7 import FIXTURE_V9, FIXTURE_V9_PG, pages, pcapi  # noqa: E402
from paylib import card_payment, check, check_payment_ledger, expect  # noqa: E402
from test_payments_migrate_v7 import go_on, migrated, run_fixtures_of, start_reads_same  # noqa: E402


def count(store, query, args=()):
    return int(store.rows(query, args)[0][0])


def check_owner_rows(store, when, smallest_first):
    """Every event's owners: one on its row (the smallest, for the migrated ones), the
    further ones in event_owners."""
    check(count(store, "SELECT count(*) FROM event_owners o JOIN events e ON e.seq = o.seq"
                       " WHERE e.owner IS NULL OR o.owner %s e.owner" % ("<=" if smallest_first else "=")) == 0,
          "%s: no owners-table row repeats (or, migrated, precedes) its event's own owner, none without one" % when)
    check(count(store, "SELECT count(*) FROM event_owners") > 0,
          "%s: the events of several owners keep their further owners" % when)
    check(count(store, "SELECT count(*) FROM events WHERE owner IS NOT NULL") > 0,
          "%s: events name their first owner on their row" % when)


def owners_of(store, object_id):
    """Each event of 'object_id': the set of its owners, row and table."""
    rows = store.rows("SELECT e.seq, e.owner, o.owner FROM events e LEFT JOIN event_owners o ON o.seq = e.seq"
                      " WHERE e.object_id = ?", (object_id,))
    found = {}
    for seq, first, further in rows:
        found.setdefault(str(seq), set()).update(v for v in (first, further) if v not in (None, ""))
    return found


def merchant_keys(store, merchant):
    rows = store.rows("SELECT key_id FROM account_grants WHERE account_id = ?", ("mer:%s:EUR:available" % merchant,))
    return {r[0] for r in rows}


def check_new_events(store, payment_id):
    """A new payment of m1 (two keys): each event has both of m1's keys as owners, one
    on its row; m2's keys none."""
    m1, m2 = merchant_keys(store, "m1"), merchant_keys(store, "m2")
    check(len(m1) == 2 and len(m2) == 1, "m1 has two keys, m2 one: %r %r" % (m1, m2))
    events = owners_of(store, payment_id)
    check(len(events) >= 2, "the new payment's events: %r" % events)
    check(all(owners == m1 for owners in events.values()), "each event of m1's payment is its two keys': %r" % events)
    firsts = store.rows("SELECT owner FROM events WHERE object_id = ?", (payment_id,))
    check(all(r[0] == min(m1) for r in firsts), "the first owner on the row: %r" % firsts)


def listing(client, path):
    reads = {}
    return set(pages(client, path, reads, "x", 25))


def check_isolation(env, keys, payment_id, transfer_id):
    """Each merchant key lists its own events: the new payment's for m1's keys only, the
    two merchants' transfer for all three; another's event reads as missing."""
    clients = {who: env.client(keys[who]) for who in ("m1", "m1b", "m2")}
    admin_all = listing(env.admin, "/v1/events")
    of_payment = listing(env.admin, "/v1/events?object_id=" + payment_id)
    of_transfer = listing(env.admin, "/v1/events?object_id=" + transfer_id)
    check(of_payment and len(of_transfer) == 1, "the admin lists them: %r %r" % (of_payment, of_transfer))
    seen = {who: listing(c, "/v1/events") for who, c in clients.items()}
    for who in ("m1", "m1b"):
        check(of_payment <= seen[who], "%s lists m1's new payment's events" % who)
        check(seen[who] <= admin_all, "%s lists only events that exist" % who)
    check(not of_payment & seen["m2"], "m2 lists none of m1's payment's events")
    for who in ("m1", "m1b", "m2"):
        check(of_transfer <= seen[who], "%s lists the transfer between m1 and m2" % who)
    check(seen["m1b"] <= seen["m1"], "m1's later key sees no more than m1's first")
    check(seen["m1"] - seen["m1b"], "events from before m1's second key are not its")
    for seq in of_payment:
        expect(clients["m2"].get("/v1/events/" + seq), 404, "not_found", "m2 reading m1's event")
        expect(clients["m1b"].get("/v1/events/" + seq), 200, what="m1's second key reading its event")
    desc = pages(clients["m1"], "/v1/events?order=desc", {}, "x", 7)
    check(desc == sorted(seen["m1"], reverse=True), "m1's listing pages in order, descending too")


def run(fixture_dir, cluster=None):
    with migrated(fixture_dir, cluster) as (env, fixture, store):
        keys = fixture["keys"]
        start_reads_same(env, fixture)
        env.stop()
        check_owner_rows(store, "migrated", True)
        env.start()
        done, new, _ = go_on(env, fixture)
        m1 = env.client(keys["m1"])
        later = expect(m1.post("/v1/payments", card_payment(1700)), 201).json
        captured = expect(m1.post("/v1/payments/%s/capture" % later["id"], {}), 200).json
        check(captured["status"] == "captured", "a new payment of m1 captured: %r" % captured)
        move = pcapi.transfer("v10-m1-m2", "mer:m1:EUR:available", "mer:m2:EUR:available", 5, "EUR")
        expect(env.admin.post("/v1/transfers", move), 201, what="a new transfer between two merchants")
        check_isolation(env, keys, later["id"], "v10-m1-m2")
        listed = {who: listing(env.client(keys[who]), "/v1/events") for who in ("m1", "m1b", "m2")}
        done += [later["id"]]
        env.stop()
        check_owner_rows(store, "after new events", False)
        check_new_events(store, later["id"])
        env.start()
        for who in ("m1", "m1b", "m2"):
            check(listing(env.client(keys[who]), "/v1/events") == listed[who], "%s lists the same after a restart"
                  % who)
        for pid in done:
            check_payment_ledger(env.admin, expect(env.admin.get("/v1/payments/" + pid), 200).json, pid)
        env.stop()


def main():
    run_fixtures_of(9, run, FIXTURE_V9, FIXTURE_V9_PG)


if __name__ == "__main__":
    main()
