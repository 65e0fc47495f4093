"""Goal: a pending transfer across shards expires in one global transaction: both legs
(A -> clearing on A's shard, clearing -> B on B's shard) expire together, in one
coordinator-logged transaction with one expiry id on both shards, never one leg
before the other; also when the deadline passes while paycore is stopped; a post
after the deadline is refused (pending_transfer_expired) and changes nothing; a local
pending transfer still expires by its own shard's writer; the set verifies after.
Method: three databases of one throwaway PostgreSQL cluster as the shards
(shardset.py); serve --shards; pending transfers with timeout_s 1-2 across shards and
within one; polled (no fixed sleeps) until the legs' pending_state is expired, then
checked straight on the shards: each leg expired, both expiry rows carry the same id
(the ledger's own per-shard expiry would give each shard its own timestamped id), the
coordinator log holds that global transaction (done, committed); balances through the
API against a model; `paycore verify --shards` at the end."""
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import shardset  # noqa: E402
from pcapi import BIN, TIMEOUT_S, account, check, expect, fail, transfer  # noqa: E402
from test_pg_store import Model  # noqa: E402

EXPIRED = "4"  # LEDGER_PENDING_EXPIRED in the transfers table


def wait_expired(s, transfer_id, shards, what):
    deadline = time.time() + TIMEOUT_S * 3
    while time.time() < deadline:
        states = [s.sql(i, "SELECT pending_state FROM transfers WHERE id = '%s'" % transfer_id) for i in shards]
        if all(state == EXPIRED for state in states):
            return
        time.sleep(0.1)
    fail("%s: %s did not expire on shards %r: %r" % (what, transfer_id, shards, states))


def expired_together(s, transfer_id, what):
    """Both legs expired by one global transaction."""
    legs = sorted(s.legs(transfer_id))
    check(len(legs) == 2, "%s: %s has two legs: %r" % (what, transfer_id, legs))
    wait_expired(s, transfer_id, legs, what)
    ids = [s.sql(i, "SELECT id FROM transfers WHERE pending_id = '%s'" % transfer_id) for i in legs]
    check(ids[0] == ids[1] and ids[0].startswith("~expiry-g"),
          "%s: one expiry, one id on both shards (a global transaction), got %r" % (what, ids))
    flags = [s.sql(i, "SELECT flags FROM transfers WHERE id = '%s'" % ids[0]) for i in legs]
    check(flags[0] == flags[1] == str(8 | 256), "%s: void_pending | expiry on both legs: %r" % (what, flags))
    logged = s.sql(0, "SELECT decision, done_ns IS NOT NULL FROM coordinator_log WHERE legs LIKE '%%\"%s\"%%'"
                   % ids[0])
    check(logged == "commit|t", "%s: the coordinator log holds the expiry, committed and done: %r" % (what, logged))


def scenario(s):
    s.init()
    client = s.start().client()
    model = Model()
    by_shard = {}
    for i in range(15):
        account_id = "e-%d" % i
        expect(client.post("/v1/accounts", account(account_id)), 201, what="create " + account_id)
        model.add_account(account_id)
        by_shard.setdefault(s.shard_of(account_id), []).append(account_id)
    check(len(by_shard[0]) >= 2 and by_shard.get(1) and by_shard.get(2), "accounts on every shard: %r" % by_shard)
    a, a2, b, c = by_shard[0][0], by_shard[0][1], by_shard[1][0], by_shard[2][0]

    # a cross hold and a local hold, both 1 s
    expect(client.post("/v1/transfers", transfer("x-hold", a, b, 40, flags=["pending"], timeout_s=1)), 201,
           what="a pending transfer across shards")
    expect(client.post("/v1/transfers", transfer("l-hold", a, a2, 10, flags=["pending"], timeout_s=1)), 201,
           what="a local pending transfer")
    expired_together(s, "x-hold", "while serving")
    wait_expired(s, "l-hold", [0], "the local hold")
    local_id = s.sql(0, "SELECT id FROM transfers WHERE pending_id = 'l-hold'")
    check(local_id.startswith("~expiry-") and not local_id.startswith("~expiry-g"),
          "a local hold expires by its shard's writer: %r" % local_id)
    got = expect(client.get("/v1/transfers/x-hold"), 200, what="read x-hold").json
    check(got.get("pending_state") == "expired" and got["debit_account_id"] == a and got["credit_account_id"] == b,
          "x-hold reads back expired, A -> B: %r" % got)
    expect(client.post("/v1/transfers", {"id": "x-post", "pending_id": "x-hold", "flags": ["post_pending"]}),
           422, "pending_transfer_expired", what="posting an expired cross hold")
    check(s.legs("x-post") == [], "the refused post left nothing")
    model.check(client, "after the expiries")

    # the deadline passes while paycore is stopped
    expect(client.post("/v1/transfers", transfer("x-hold-2", c, b, 25, flags=["pending"], timeout_s=2)), 201,
           what="a pending transfer across shards 2 -> 1")
    client.close()
    check(s.stop(signal.SIGTERM) == 0, "a clean stop")
    time.sleep(2.5)  # past the deadline while stopped: what is asserted does not depend on it
    client = s.start().client()
    expired_together(s, "x-hold-2", "past its deadline at the restart")
    model.check(client, "after the restart's expiry")

    # one that is posted in time stays posted
    expect(client.post("/v1/transfers", transfer("x-hold-3", b, c, 5, flags=["pending"], timeout_s=3600)), 201,
           what="a long hold")
    expect(client.post("/v1/transfers", {"id": "x-post-3", "pending_id": "x-hold-3",
                                         "flags": ["post_pending"]}), 201, what="posted in time")
    expect(client.post("/v1/accounts", account("bank")), 201, what="bank")
    model.add_account("bank")
    expect(client.post("/v1/transfers", transfer("fund-b", "bank", b, 100)), 201, what="fund b")
    model.post("bank", b, 100)
    model.post(b, c, 5)
    model.check(client, "after a post in time")
    client.close()
    check(s.stop() == 0, "a clean stop")
    check(s.prepared() == 0, "nothing prepared")
    s.books_balance("after the expiries")
    out = subprocess.run([BIN, "verify", "--shards", s.shards_arg()], capture_output=True, text=True,
                         timeout=TIMEOUT_S * 6)
    check(out.returncode == 0 and out.stdout.splitlines()[-1].startswith("verify ok shards=3"),
          "the set verifies: %s %s" % (out.stdout, out.stderr))


def main():
    shardset.run(scenario)


if __name__ == "__main__":
    main()
