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
transfer and two new accounts between two pages."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import shardset  # noqa: E402
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
    check(s.stop() == 0, "clean stop")


def main():
    shardset.run(scenario, done="shards paging: ok")


if __name__ == "__main__":
    main()
