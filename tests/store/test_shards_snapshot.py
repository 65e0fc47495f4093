"""Goal: a global transaction left prepared by a killed coordinator, whose batch on a
shard was also that shard's balance snapshot (every 64th batch writes the account rows
and accounts_as_of_seq), is committed by recovery at the next start and counted once:
the balances after the restart are exactly what the transfers imply. (The store read
accounts_as_of_seq when it opened, before recovery committed the snapshot batch, and
replayed every transfer since the older snapshot over the newer rows: each balance
counted twice.)
Method: two throwaway clusters as the shards; after a clean stop (a snapshot), transfers
within shard 0 one at a time
until shard 0's journal head is one short of a snapshot batch; then a transfer across
the shards with PAYCORE_2PC_FAULT=after_decision (the coordinator kills its own
process once the decision is logged, both legs still prepared); restart: recovery
commits both legs; every balance read through the API against a model, debits ==
credits, each shard's books balance after a clean stop, nothing prepared."""
import os
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import shardset  # noqa: E402
from pcapi import account, check, expect, transfer  # noqa: E402
from test_pg_store import Model  # noqa: E402

SNAPSHOT_BATCHES = 64  # PG_BALANCE_SNAPSHOT_BATCHES (src/store/pg_tx.c)


def head(s, shard):
    return int(s.sql(shard, "SELECT coalesce(max(seq), 0) FROM journal"))


def scenario(s):
    s.init()
    client = s.start().client()
    model = Model()
    by_shard = {}
    for n in range(10):
        expect(client.post("/v1/accounts", account("s-%d" % n)), 201, what="create")
        model.add_account("s-%d" % n)
        by_shard.setdefault(s.shard_of("s-%d" % n), []).append("s-%d" % n)
    check(len(by_shard[0]) >= 2 and by_shard[1], "placement: %r" % by_shard)
    a, a2, b = by_shard[0][0], by_shard[0][1], by_shard[1][0]
    expect(client.post("/v1/transfers", transfer("first-cross", a, b, 1)), 201, what="a first cross transfer")
    model.post(a, b, 1)  # its clearing accounts exist from now on
    client.close()
    check(s.stop() == 0, "a clean stop (it writes a balance snapshot)")
    s.start(env_extra={"PAYCORE_2PC_FAULT": "after_decision"})
    client = s.client()
    as_of = int(s.sql(0, "SELECT value FROM paycore_meta WHERE key = 'accounts_as_of_seq'"))
    n = 0
    while head(s, 0) < as_of + SNAPSHOT_BATCHES - 1:
        expect(client.post("/v1/transfers", transfer("fill-%d" % n, a2, a, 1)), 201, what="a local transfer")
        model.post(a2, a, 1)
        n += 1
    check(head(s, 0) == as_of + SNAPSHOT_BATCHES - 1, "shard 0 one batch short of a snapshot: %d" % head(s, 0))
    model.check(client, "before the cross transfer")
    try:
        client.post("/v1/transfers", transfer("snap-cross", a, b, 7))
    except OSError:
        pass  # the coordinator killed its process: no answer
    check(s.wait_exit("the coordinator after the decision") == -signal.SIGKILL, "killed by its fault hook")
    check(s.prepared() == 2, "both legs prepared: %d" % s.prepared())
    model.post(a, b, 7)  # the decision was commit: recovery must finish it
    client = s.start().client()
    check(sorted(s.legs("snap-cross")) == [0, 1], "recovery committed both legs")
    check(int(s.sql(0, "SELECT value FROM paycore_meta WHERE key = 'accounts_as_of_seq'")) ==
          as_of + SNAPSHOT_BATCHES, "the committed leg on shard 0 was its balance snapshot batch")
    model.check(client, "after recovery committed a snapshot batch")
    expect(client.post("/v1/transfers", transfer("after", a, b, 2)), 201, what="a transfer after")
    model.post(a, b, 2)
    model.check(client, "after one more transfer")
    client.close()
    check(s.stop() == 0, "a clean stop")
    s.books_balance("at the end")
    check(s.prepared() == 0, "nothing prepared")


def main():
    shardset.run(scenario, count=2, one_server=False)


if __name__ == "__main__":
    main()
