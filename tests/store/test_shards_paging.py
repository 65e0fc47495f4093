"""Goal: what docs/scaleout.md §6 ("What a reader sees across shards") says of a list
of accounts paged across shards holds: pages go shard by shard, each in creation
order; every account that existed at the first page is listed exactly once whatever
commits between pages; an account created meanwhile is listed when its shard's part
is still ahead of the cursor and not when it is behind (on one store it would be
listed at the end); each page shows the set at one instant, but two pages show it at
two: a transfer across shards between the reads of two pages appears on the later
page only (its credit on an account not listed yet, not its debit on one listed
before), so the pages' sums disagree by its amount; one page holding every account
balances.
Method: three databases of one throwaway PostgreSQL cluster as the shards
(shardset.py), ids chosen by the published placement hash (shardset.shard_of) so
that each shard holds three accounts; GET /v1/accounts?limit=2 paged by hand with a
transfer and two new accounts between two pages.

Then the cursor (next_cursor, passed back as cursor=): every page of one listing reads
as of its first page. Between pages of one listing, a transfer across shards from an
account already listed to one not listed yet (making new clearing accounts), a pending
transfer across shards posted in part, a local one voided, 70 local transfers on one
shard (so that its balance snapshot, written every 64 batches, passes the first page's
cut) and two new accounts (one behind the cursor, one ahead): the later pages show
none of it, page for page the accounts and balances of one page of every account read
just before the listing began, and the listing's sums balance; a new listing shows
all of it and balances too. A merchant key's listing likewise, and its cursor is
refused (400 list_cursor_invalid) to another merchant and to the admin key; a cursor
altered in any byte, made up, too long, empty or given with starting_after is
refused; a cursor continues the same listing after the node restarted.

A merchant's listing shows no grant made after its first page: the merchant's key was
made with an account id that did not exist yet, and between pages that account is
created and the merchant creates an account on each shard (each a grant with a new
account): the later pages list none of them, a new listing lists them all.

A cursor's age: a cursor minted by the test under the set's key (read from shard 0)
with the first page's time two hours ago, or two hours ahead, is refused (400
list_cursor_expired), one 59 minutes old continues the listing; the same bytes with
the time changed but the tag kept are list_cursor_invalid.

A listing right after a restart, every shard idle (no commit since its writer loaded),
reads its balances from memory as after a commit, not with the as-of statement (each
shard's statements logged: log_statement = all on its database); a shard that commits
after the first page makes the next pages read its part with the as-of statement."""
import hashlib
import os
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import shardset  # noqa: E402
import base64  # noqa: E402
import pcapi  # noqa: E402
from pcapi import account, check, expect, transfer  # noqa: E402


def page(c, after, limit):
    path = "/v1/accounts?limit=%d" % limit + ("&starting_after=" + after if after else "")
    r = expect(c.get(path), 200, what="a page of accounts").json
    return r["data"], r["has_more"]


def clients_only(accounts):
    """Clearing accounts (pc.clearing.*) are accounts of their shard and listed; the
    claims are about the clients' accounts."""
    return [a for a in accounts if not a["id"].startswith("pc.clearing.")]


def net(accounts):
    return sum(a["debits_posted"] - a["credits_posted"] for a in clients_only(accounts))


def scenario(s):
    s.init()
    s.start()
    c = s.client()
    on = [shardset.ids_on(k, 3, 3, "pa") for k in range(3)]
    for k in range(3):
        for account_id in on[k]:
            expect(c.post("/v1/accounts", account(account_id)), 201, what="account " + account_id)
    for k in range(3):
        check(sorted(on[k]) == sorted(a for a in on[k] if s.shard_of(a) == k),
              "the placement hash is paycore's: %r on shard %d" % (on[k], k))
    everyone = [a for k in range(3) for a in on[k]]
    first, more = page(c, None, 100)
    check([a["id"] for a in first] == everyone and not more,
          "one page: shard by shard, each in creation order: %r" % [a["id"] for a in first])
    listed, after = [], None
    while True:
        data, more = page(c, after, 2)
        listed += data
        after = data[-1]["id"]
        if s.shard_of(after) == 1:
            break
    check([a["id"] for a in listed] == on[0] + on[1][:1], "the first pages: %r" % [a["id"] for a in listed])
    new0, new2 = shardset.ids_on(0, 3, 1, "pn")[0], shardset.ids_on(2, 3, 1, "pm")[0]
    for account_id in (new0, new2):
        expect(c.post("/v1/accounts", account(account_id)), 201, what="account " + account_id)
    expect(c.post("/v1/transfers", transfer("pt", on[0][0], on[2][0], 10)), 201, what="across, between pages")
    while more:
        data, more = page(c, after, 2)
        listed += data
        after = data[-1]["id"] if data else after
    ids = [a["id"] for a in clients_only(listed)]
    check(ids == on[0] + on[1] + on[2] + [new2],
          "every account once, the new one behind the cursor (shard 0) left out, the one ahead (shard 2)"
          " listed: %r" % ids)
    by_id = {a["id"]: a for a in listed}
    check(by_id[on[0][0]]["debits_posted"] == 0 and by_id[on[2][0]]["credits_posted"] == 10,
          "the later page shows the transfer, the earlier one did not: %r %r" % (by_id[on[0][0]], by_id[on[2][0]]))
    check(net(listed) == -10, "two pages, two instants: their sums disagree by the transfer (%d)" % net(listed))
    whole, more = page(c, None, 100)
    check(len(clients_only(whole)) == len(everyone) + 2 and not more and net(whole) == 0,
          "one page of every account balances: %d accounts, net %d" % (len(whole), net(whole)))
    check(sum(a["debits_posted"] - a["credits_posted"] for a in whole) == 0, "the clearing accounts net to zero")
    c = by_cursor(s, c)
    merchants(s, c)
    cursor_age(s, c)
    idle_after_restart(s)
    check(s.stop() == 0, "clean stop")


BALANCES = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")


def sums(accounts):
    return [sum(a[f] for a in accounts) for f in BALANCES]


def balanced(accounts, what):
    """Over every account of one instant (clearing ones too), debits == credits, posted
    and pending."""
    d_pending, d_posted, c_pending, c_posted = sums(accounts)
    check(d_posted == c_posted and d_pending == c_pending,
          "%s: debits != credits: %r" % (what, sums(accounts)))


def listing(c, limit, first_path="/v1/accounts", between=None):
    """Every page of one listing, following next_cursor; between(page_no) runs after
    each page but the last."""
    r = expect(c.get("%s?limit=%d" % (first_path, limit)), 200, what="a first page").json
    pages = [r]
    while r["has_more"]:
        check("next_cursor" in r, "a page with has_more carries next_cursor: %r" % r)
        if between is not None:
            between(len(pages))
        r = expect(c.get("%s?limit=%d&cursor=%s" % (first_path, limit, r["next_cursor"])), 200,
                   what="a later page").json
        pages.append(r)
    check("next_cursor" not in r, "the last page has no next_cursor: %r" % r)
    return [a for p in pages for a in p["data"]]


def by_cursor(s, c):
    on = [shardset.ids_on(k, 3, 3, "cu") for k in range(3)]
    for k in range(3):
        for account_id in on[k]:
            expect(c.post("/v1/accounts", account(account_id)), 201, what="account " + account_id)
    expect(c.post("/v1/transfers", transfer("cu-t1", on[1][0], on[2][1], 50)), 201, what="across")
    expect(c.post("/v1/transfers", transfer("cu-h1", on[1][0], on[2][1], 40, flags=["pending"], timeout_s=3600)),
           201, what="a pending transfer across shards")
    expect(c.post("/v1/transfers", transfer("cu-h2", on[1][1], on[1][2], 7, flags=["pending"], timeout_s=3600)),
           201, what="a local pending transfer")
    before = expect(c.get("/v1/accounts?limit=100"), 200, what="one page of every account").json
    check(not before["has_more"], "one page holds every account")
    balanced(before["data"], "one page before the listing")
    new0, new2 = shardset.ids_on(0, 3, 1, "cn")[0], shardset.ids_on(2, 3, 1, "cm")[0]

    def between(page_no):
        if page_no != 1:
            return
        expect(c.post("/v1/accounts", account(new0)), 201, what="a new account behind the cursor")
        expect(c.post("/v1/accounts", account(new2)), 201, what="a new account ahead of the cursor")
        expect(c.post("/v1/transfers", transfer("cu-x", on[0][0], on[2][0], 10)), 201,
               what="across, from an account listed to one not listed yet")
        expect(c.post("/v1/transfers", {"id": "cu-p1", "pending_id": "cu-h1", "flags": ["post_pending"], "amount": 25}),
               201, what="a pending transfer across shards posted in part")
        expect(c.post("/v1/transfers", {"id": "cu-v2", "pending_id": "cu-h2", "flags": ["void_pending"]}), 201,
               what="a local pending transfer voided")
        for i in range(70):
            expect(c.post("/v1/transfers", transfer("cu-l%d" % i, on[2][1], on[2][2], 1)), 201,
                   what="local on shard 2, past a balance snapshot")

    listed = listing(c, 2, between=between)
    check([a["id"] for a in listed] == [a["id"] for a in before["data"]],
          "every page as of the first: the accounts of one page read before it, none added: %r"
          % [a["id"] for a in listed])
    check(listed == before["data"], "every page as of the first: each account's balances as then: %r"
          % [(a, b) for a, b in zip(listed, before["data"]) if a != b])
    balanced(listed, "one listing over many pages")
    after = expect(c.get("/v1/accounts?limit=100"), 200, what="one page after").json["data"]
    ids = [a["id"] for a in after]
    check(new0 in ids and new2 in ids and any(i.startswith("pc.clearing.0.2.") for i in ids),
          "a new listing shows the new accounts (and the new clearing accounts): %r" % ids)
    by_id = {a["id"]: a for a in after}
    check(by_id[on[0][0]]["debits_posted"] == 10 and by_id[on[2][0]]["credits_posted"] == 10
          and by_id[on[2][2]]["credits_posted"] == 70 and by_id[on[1][1]]["debits_pending"] == 0,
          "a new listing shows the transfers: %r" % [by_id[i] for i in (on[0][0], on[2][0], on[2][2], on[1][1])])
    balanced(after, "one page after the listing")
    check(listing(c, 2) == after, "a new listing in pages of two reads as one page of every account")
    return restart_continues(s, c, after)


def restart_continues(s, c, now):
    """A cursor continues its listing on the restarted node (its key is the set's)."""
    first = expect(c.get("/v1/accounts?limit=3"), 200, what="a first page").json
    check(s.stop() == 0, "clean stop")
    s.start()
    c = s.client()
    rest = listing_from(c, first["next_cursor"], 3)
    check(first["data"] + rest == now, "a listing continued after a restart")
    return c


def listing_from(c, cursor, limit):
    out = []
    while cursor is not None:
        r = expect(c.get("/v1/accounts?limit=%d&cursor=%s" % (limit, cursor)), 200, what="a later page").json
        out += r["data"]
        cursor = r.get("next_cursor")
    return out


def altered(cursor):
    """'cursor' with one byte of its content flipped (base64url, no padding)."""
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[len(raw) // 2] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


def merchants(s, c):
    later = shardset.ids_on(2, 3, 1, "pm1-later")[0]  # granted to the key before it exists
    key1 = expect(c.post("/v1/api-keys", {"scope": "merchant", "name": "pm1", "accounts": [later]}), 201,
                  what="merchant key").json["key"]
    key2 = expect(c.post("/v1/api-keys", {"scope": "merchant", "name": "pm2"}), 201, what="merchant key").json["key"]
    m1, m2 = pcapi.Client(s.port, key1), pcapi.Client(s.port, key2)
    mine = [shardset.ids_on(k, 3, 2, "pm1-") for k in range(3)]
    for k in range(3):
        for account_id in mine[k]:
            expect(m1.post("/v1/accounts", account(account_id)), 201, what="merchant account " + account_id)
    expect(m2.post("/v1/accounts", account("pm2-own")), 201, what="the other merchant's account")
    expect(m1.post("/v1/transfers", transfer("pm1-t", mine[0][0], mine[2][1], 5)), 201, what="merchant, across")
    before = expect(m1.get("/v1/accounts?limit=100"), 200, what="the merchant's accounts").json["data"]
    first = expect(m1.get("/v1/accounts?limit=2"), 200, what="the merchant's first page").json
    check(first["has_more"] and "next_cursor" in first, "a merchant's page has a cursor: %r" % first)
    cursor = first["next_cursor"]
    expect(m1.post("/v1/transfers", transfer("pm1-u", mine[0][1], mine[1][0], 3)), 201, what="between pages")
    expect(c.post("/v1/accounts", account(later)), 201, what="the account the key was granted before it existed")
    made = [shardset.ids_on(k, 3, 1, "pm1-new")[0] for k in range(3)]
    for account_id in made:
        expect(m1.post("/v1/accounts", account(account_id)), 201, what="a merchant's account between pages")
    for who, client in (("another merchant", m2), ("the admin key", c)):
        expect(client.get("/v1/accounts?limit=2&cursor=" + cursor), 400, "list_cursor_invalid",
               what="%s with the merchant's cursor" % who)
    bad = {"altered": altered(cursor), "made up": base64.urlsafe_b64encode(os.urandom(120)).decode().rstrip("="),
           "not base64": "!!!!", "cut short": cursor[:-4]}
    for what, text in bad.items():
        expect(m1.get("/v1/accounts?limit=2&cursor=" + text), 400, "list_cursor_invalid", what="a cursor " + what)
    for what, path in (("too long", "cursor=" + "A" * 400), ("empty", "cursor="),
                       ("with starting_after", "cursor=%s&starting_after=%s" % (cursor, mine[0][0]))):
        expect(m1.get("/v1/accounts?limit=2&" + path), 400, "query_invalid", what="a cursor " + what)
    rest = listing_from(m1, cursor, 2)
    check(first["data"] + rest == before, "the merchant's listing as of its first page: %r" % (first["data"] + rest))
    check(all(a["id"].startswith("pm1-") for a in rest), "only the merchant's own accounts")
    now = [a["id"] for a in expect(m1.get("/v1/accounts?limit=100"), 200, what="a new listing").json["data"]]
    check(later in now and all(a in now for a in made),
          "a new listing shows the accounts granted after the last one began: %r" % now)
    return key1


def cursor_fields(cursor):
    """A cursor's bytes (shard_cursor.c): version, kind, shard count, shard, id length,
    id, a seq per shard, the first page's time (ns, little-endian), then a 16-byte
    BLAKE2b tag over those bytes and the caller's key id."""
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    body, tag = raw[:-16], raw[-16:]
    return body[:-8], struct.unpack("<Q", body[-8:])[0], tag


def cursor_mint(set_key, owner, head, issued_ns):
    body = head + struct.pack("<Q", issued_ns)
    tag = hashlib.blake2b(body + owner.encode() + b"\0", key=set_key, digest_size=16).digest()
    return base64.urlsafe_b64encode(body + tag).decode().rstrip("=")


HOUR_NS = 3600 * 10**9


def cursor_age(s, c):
    """A cursor older than an hour (or as far ahead) is refused end to end; one younger
    continues the listing. Minted under the set's key, as the node would have."""
    made = expect(c.post("/v1/api-keys", {"scope": "merchant", "name": "age"}), 201, what="merchant key").json
    m = pcapi.Client(s.port, made["key"])
    for k in range(3):
        expect(m.post("/v1/accounts", account(shardset.ids_on(k, 3, 1, "age-")[0])), 201, what="an account")
    whole = expect(m.get("/v1/accounts?limit=100"), 200, what="the key's accounts").json["data"]
    first = expect(m.get("/v1/accounts?limit=1"), 200, what="a first page").json
    head, issued_ns, tag = cursor_fields(first["next_cursor"])
    set_key = bytes.fromhex(s.sql(0, "SELECT value FROM paycore_meta WHERE key = 'list_cursor_key'"))
    check(cursor_mint(set_key, made["id"], head, issued_ns) == first["next_cursor"],
          "the test mints cursors as the node does")
    check(abs(time.time_ns() - issued_ns) < HOUR_NS, "a cursor carries its first page's time: %d" % issued_ns)
    for what, at in (("two hours old", issued_ns - 2 * HOUR_NS), ("two hours ahead", issued_ns + 2 * HOUR_NS)):
        expect(m.get("/v1/accounts?limit=1&cursor=" + cursor_mint(set_key, made["id"], head, at)), 400,
               "list_cursor_expired", what="a cursor " + what)
    kept_tag = base64.urlsafe_b64encode(head + struct.pack("<Q", issued_ns - 2 * HOUR_NS) + tag).decode().rstrip("=")
    expect(m.get("/v1/accounts?limit=1&cursor=" + kept_tag), 400, "list_cursor_invalid",
           what="a cursor whose time was changed without its tag")
    young = cursor_mint(set_key, made["id"], head, issued_ns - 59 * 60 * 10**9)
    check(first["data"] + listing_from(m, young, 1) == whole, "a cursor 59 minutes old continues its listing")


AS_OF_SQL = "WITH m AS MATERIALIZED (SELECT value::bigint AS as_of"  # pg_read.c's as_of_balances_sql
PART_SQL = "batch_seq <= $3::bigint ORDER BY no"                       # a shard's part as of the cut


def server_log(s):
    with open(os.path.join(s.clusters[0].dir, "server.log"), errors="replace") as f:
        return f.read()


def idle_after_restart(s):
    """Each shard's writer loads its head: a listing before any commit reads balances
    from memory; a shard committing after the first page is read as of the cut."""
    for i, name in enumerate(s.names):
        s.sql(i, "ALTER DATABASE %s SET log_statement = 'all'" % name)
    check(s.stop() == 0, "clean stop")
    s.start()
    c = s.client()
    mark = len(server_log(s))
    whole = listing(c, 4)
    logged = server_log(s)[mark:]
    check(PART_SQL in logged, "the shards' statements are logged")
    check(AS_OF_SQL not in logged, "every shard idle since its load: the listing's balances from memory")
    local = shardset.ids_on(2, 3, 2, "cu")  # accounts of by_cursor on shard 2
    mark = len(server_log(s))

    def between(page_no):
        if page_no == 1:
            expect(c.post("/v1/transfers", transfer("idle-t", local[0], local[1], 1)), 201, what="on shard 2")

    check(listing(c, 4, between=between) == whole, "a listing as of its first page")
    check(AS_OF_SQL in server_log(s)[mark:], "shard 2 committed after the cut: its part read as of the cut")
    for i, name in enumerate(s.names):
        s.sql(i, "ALTER DATABASE %s RESET log_statement" % name)


def main():
    shardset.run(scenario, done="shards paging: ok")


if __name__ == "__main__":
    main()
