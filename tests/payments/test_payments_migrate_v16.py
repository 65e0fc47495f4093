"""Goal: a database made by the binary of SQLite schema version 16 (tests/payments/fixtures/v16:
fixture_v7.py make-v16), whose merchants' events are found through an index by owner
(events_by_owner), migrates to version 17, where they are found through spans of seqs
(event_owner_spans, one row per owner and run of its events) and that index is gone, and no
old read changes: every listing, payment, event and Idempotency-Key replay answers byte for
byte what the old binary answered, among them each merchant key's events (several owners:
m1's two keys, m2, a transfer between them), listed and read one by one. Each merchant's events
paged at other sizes and in both orders are the old listing's, page after page; a payment made
after the migration is listed for its merchant and no other; after a clean restart every
spanned event is its owner's and every owner's event is in exactly one of its spans, and
`paycore verify` passes. SQLite only: PostgreSQL keeps its index.
Method: the fixture's files unpacked into a real server's and simulators' directories, real
processes, the file read directly after clean stops."""
import json
import os
import sqlite3
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_v7 import FIXTURE_V16, migrate_test_main  # noqa: E402
from paylib import card_payment, check, expect  # noqa: E402
from test_payments_migrate_v7 import migrated, start_reads_same  # noqa: E402

MERCHANT_KEYS = ("m1", "m1b", "m2")


def old_listing(reads, name):
    """The event ids the old binary listed under 'name' ("events as m1"), its pages joined."""
    ids, n = [], 0
    while "%s page %d" % (name, n) in reads:
        status, body = reads["%s page %d" % (name, n)]
        check(status == 200, "%s page %d: %r" % (name, n, status))
        ids += [e["id"] for e in json.loads(body)["data"]]
        n += 1
    return ids


def paged(client, limit, descending):
    """A merchant's events, 'limit' a page, following has_more."""
    ids, after = [], None
    while True:
        url = "/v1/events?limit=%d" % limit + ("&order=desc" if descending else "")
        page = expect(client.get(url + ("&starting_after=" + after if after else "")), 200).json
        ids += [e["id"] for e in page["data"]]
        check(len(page["data"]) <= limit, "a page of at most %d: %d" % (limit, len(page["data"])))
        if not page["has_more"]:
            return ids
        check(page["data"], "has_more with an empty page")
        after = page["data"][-1]["id"]


def check_paging(env, keys, expected):
    for who in MERCHANT_KEYS:
        client = env.client(keys[who])
        for limit in (1, 2, 5, 9, 100):
            check(paged(client, limit, False) == expected[who], "%s's events, %d a page" % (who, limit))
            check(paged(client, limit, True) == expected[who][::-1], "%s's events desc, %d a page" % (who, limit))


def check_spans(db):
    """The index by owner is gone; every owner's event lies in exactly one span of its
    owner, each span's ends are events of its owner, one owner's spans do not overlap."""
    conn = sqlite3.connect(db)
    try:
        names = [n for (n,) in conn.execute("SELECT name FROM sqlite_schema WHERE tbl_name = 'events'")]
        check("events_by_owner" not in names, "no index by owner: %r" % names)
        owner_of = dict(conn.execute("SELECT seq, owner FROM events"))
        spans = conn.execute("SELECT owner, first_seq, last_seq FROM event_owner_spans ORDER BY owner, first_seq").fetchall()
        check(spans, "spans were built")
        covered = {}
        last_end = {}
        for owner, first, last in spans:
            check(owner_of.get(first) == owner and owner_of.get(last) == owner, "span %r ends at its owner's" % ((owner, first, last),))
            check(first > last_end.get(owner, 0), "one owner's spans do not overlap: %r" % ((owner, first, last),))
            last_end[owner] = last
            for seq, o in owner_of.items():
                if first <= seq <= last and o == owner:
                    covered[seq] = covered.get(seq, 0) + 1
        owned = {seq for seq, o in owner_of.items() if o is not None}
        check(set(covered) == owned and all(n == 1 for n in covered.values()),
              "every owned event in one span: %d owned, %d covered" % (len(owned), len(covered)))
    finally:
        conn.close()


def run(fixture_dir):
    with migrated(fixture_dir) as (env, fixture, store):
        keys = fixture["keys"]
        reads = fixture["reads"]
        expected = {who: old_listing(reads, "events as " + who) for who in MERCHANT_KEYS}
        check(all(expected.values()), "the fixture lists each merchant key's events")
        start_reads_same(env, fixture)
        check_paging(env, keys, expected)
        made = expect(env.client(keys["m2"]).post("/v1/payments", card_payment(1500),
                                                  headers={"Idempotency-Key": "v17-new"}), 201).json
        env.stop()
        check_spans(env.server.db)
        env.start()
        m2_events = [e for e in paged(env.client(keys["m2"]), 100, False) if e not in expected["m2"]]
        check(m2_events, "the new payment's events are listed for m2")
        objects = set()
        for e in m2_events:
            objects.add(expect(env.client(keys["m2"]).get("/v1/events/" + e), 200).json["data"]["object"]["id"])
            expect(env.client(keys["m1"]).get("/v1/events/" + e), 404)
        check(made["id"] in objects, "m2's new events are its payment's: %r" % sorted(objects))
        for who in ("m1", "m1b"):
            check(paged(env.client(keys[who]), 7, False) == expected[who], "%s sees none of m2's new events" % who)
        env.stop()
        check_spans(env.server.db)
        check(store.version() == 17, "schema version 17: %r" % store.version())


def main():
    migrate_test_main(FIXTURE_V16, 16, run)


if __name__ == "__main__":
    main()
