"""Goal: on `serve --shards` every ledger event of every shard reaches the home
shard's outbox, GET /v1/events and the webhook endpoints exactly once: accounts and
transfers local to shard 1 or 2 (relayed from that shard's own outbox), transfers
across shards as ONE event naming both real accounts (not the clearing accounts),
a pending transfer across shards and its post, a merchant key seeing the events of
its far accounts; the outbox order keeps each shard's commit order (docs/scaleout.md
§6, "Events on a set"); a SIGKILL between PREPARE and the decision (aborted: no
event) and after the decision (committed by recovery: one event), a SIGKILL while
the relay is behind and clean restarts neither lose nor repeat an event; the far
shards' own outbox rows are deleted once relayed.
Method: three databases of one throwaway PostgreSQL cluster as the shards
(shardset.py), serve --shards with the events outbox on, a real webhook receiver
(tests/events/receiver.py). Requests are made one after another, so the order the
client saw is each shard's commit order; placement is read from each shard's
shard_accounts. Old code: the far shards' events are missing and a transfer across
shards reads clearing -> B."""
import http.client
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "events"))
import shardset  # noqa: E402
from pcapi import TIMEOUT_S, account, check, expect, fail, transfer  # noqa: E402
from receiver import Receiver, all_events, check_order_per_object  # noqa: E402


class Expect:
    """What the client did, in order: (type, object_id, shards it touched, debit, credit)."""

    def __init__(self, s, client):
        self.s, self.c = s, client
        self.events = []
        self.place = {}

    def account(self, account_id):
        expect(self.c.post("/v1/accounts", account(account_id)), 201, what="account " + account_id)
        self.place[account_id] = self.s.placement()[account_id]
        self.events.append(("account.created", account_id, {self.place[account_id]}, None, None))

    def transfer(self, transfer_id, debit, credit, amount, **kw):
        expect(self.c.post("/v1/transfers", transfer(transfer_id, debit, credit, amount, **kw)), 201,
               what="transfer " + transfer_id)
        self.events.append(("transfer.created", transfer_id, {self.place[debit], self.place[credit]}, debit, credit))

    def resolve(self, transfer_id, pending_id, flag, kind):
        created = [e for e in self.events if e[1] == pending_id][0]
        body = {"id": transfer_id, "pending_id": pending_id, "flags": [flag]}
        expect(self.c.post("/v1/transfers", body), 201, what="%s %s" % (flag, pending_id))
        self.events.append((kind, pending_id, created[2], created[3], created[4]))


def ledger_events(events):
    """The ledger's events, the clearing accounts' own account.created left out."""
    return [e for e in events if not (e["type"] == "account.created" and e["object_id"].startswith("pc.clearing."))]


def wait_all(c, want, what):
    """Polls GET /v1/events until every expected (type, object) is listed (the far
    shards' events arrive through the relay, shortly after their commit)."""
    keys = set((t, o) for t, o, _, _, _ in want)
    deadline = time.time() + TIMEOUT_S * 3
    while True:
        events = ledger_events(all_events(c))
        missing = keys - set((e["type"], e["object_id"]) for e in events)
        if not missing:
            return events
        if time.time() > deadline:
            fail("%s: events never listed: %r" % (what, sorted(missing)[:6]))
        time.sleep(0.1)


def check_events(events, want, what):
    """Exactly once each; a transfer names its real accounts; each shard's events in
    the order the client made them."""
    seen = {}
    for n, e in enumerate(events):
        key = (e["type"], e["object_id"])
        check(key not in seen, "%s: %r listed twice (positions %d and %d)" % (what, key, seen.get(key, -1), n))
        seen[key] = n
        obj = e["data"]["object"]
        if e["type"].startswith("transfer."):
            check(not obj["debit_account_id"].startswith("pc.clearing.") and
                  not obj["credit_account_id"].startswith("pc.clearing."),
                  "%s: %s %s names a clearing account: %r" % (what, e["type"], e["object_id"], obj))
        if "resolving_transfer" in e["data"]:
            r = e["data"]["resolving_transfer"]
            check((r["debit_account_id"], r["credit_account_id"]) == (obj["debit_account_id"], obj["credit_account_id"]),
                  "%s: %s resolves with %r" % (what, e["object_id"], r))
    for t, o, _, debit, credit in want:
        if debit is not None:
            obj = events[seen[(t, o)]]["data"]["object"]
            check((obj["debit_account_id"], obj["credit_account_id"]) == (debit, credit),
                  "%s: %s %s reads %s -> %s, want %s -> %s" % (what, t, o, obj["debit_account_id"],
                                                             obj["credit_account_id"], debit, credit))
    for shard in range(3):
        mine = [seen[(t, o)] for t, o, shards, _, _ in want if shard in shards]
        check(mine == sorted(mine), "%s: shard %d's events out of its commit order: %r" % (what, shard, [
            (t, o) for t, o, shards, _, _ in want if shard in shards]))


def killed(s, x, step, transfer_id, debit, credit, committed):
    """A transfer across shards (neither on the home shard) with the node SIGKILLed at
    'step' of its global transaction; a local far transfer just before it."""
    check(s.stop() == 0, "clean stop before " + step)
    s.start(args=[], env_extra={"PAYCORE_2PC_FAULT": step})
    x.c = s.client()
    x.transfer("local-" + transfer_id, x.far[2][0], x.far[2][1], 3)
    try:
        r = x.c.post("/v1/transfers", transfer(transfer_id, debit, credit, 9))
        fail("%s: answered %r instead of the node dying" % (step, r))
    except (OSError, http.client.HTTPException):
        pass
    code = s.wait_exit(step)
    check(code == -signal.SIGKILL, "%s: killed by its fault (exit %r)" % (step, code))
    s.start(args=[])
    x.c = s.client()
    check(s.prepared() == 0, "%s: nothing left prepared" % step)
    check(len(s.legs(transfer_id)) == (2 if committed else 0), "%s: legs %r" % (step, s.legs(transfer_id)))
    if committed:
        x.events.append(("transfer.created", transfer_id, {x.place[debit], x.place[credit]}, debit, credit))


def scenario(s):
    rx = Receiver()
    try:
        s.init()
        s.start(args=[])
        c = s.client()
        ep = expect(c.post("/v1/webhook-endpoints", {"url": rx.url(), "events": ["*"]}), 201, what="endpoint").json
        x = Expect(s, c)
        for i in range(48):
            x.account("ev%d" % i)
            on = {k: [a for a, p in x.place.items() if p == k] for k in range(3)}
            if all(len(v) >= 3 for v in on.values()):
                break
        check(all(len(v) >= 3 for v in on.values()), "three accounts on every shard: %r" % on)
        x.far = on
        a0, a1, a2 = on[0], on[1], on[2]
        x.transfer("l1", a1[0], a1[1], 100)                       # local to shard 1
        x.transfer("l2", a2[0], a2[1], 200)                       # local to shard 2
        x.transfer("x12", a1[0], a2[0], 30)                       # across, no home leg of its own
        x.transfer("x01", a0[0], a1[1], 40)                       # across, with the home shard
        x.transfer("p20", a2[1], a0[1], 50, flags=["pending"])    # pending across
        x.resolve("p20-post", "p20", "post_pending", "transfer.posted")
        x.transfer("p11", a1[1], a1[2], 60, flags=["pending"])    # pending local to shard 1
        x.resolve("p11-void", "p11", "void_pending", "transfer.voided")
        key = expect(c.post("/v1/api-keys", {"scope": "merchant", "name": "m", "accounts": [a1[2], a2[2]]}), 201,
                     what="a merchant key granted far accounts").json
        x.transfer("k12", a1[2], a2[2], 7)                        # the key's accounts, across
        x.transfer("k1", a1[2], a1[0], 8)                         # one of them, local to shard 1
        events = wait_all(c, x.events, "after the flows")
        check_events(events, x.events, "after the flows")
        m = shardset.pcapi.Client(s.port, key["key"])
        theirs = set((e["type"], e["object_id"]) for e in all_events(m))
        check(theirs == {("transfer.created", "k12"), ("transfer.created", "k1")},
              "the merchant key sees the events of its far accounts since its grants, and no other: %r"
              % sorted(theirs))

        killed(s, x, "after_prepare_all", "kx1", a1[0], a2[1], committed=False)
        killed(s, x, "after_decision", "kx2", a2[1], a1[0], committed=True)
        c = x.c
        events = wait_all(c, x.events, "after the kills")
        check_events(events, x.events, "after the kills")
        check(("transfer.created", "kx1") not in set((e["type"], e["object_id"]) for e in events),
              "no event of the aborted transfer")

        for n in range(20):  # the relay behind: SIGKILL with far events not copied yet
            far = a1 if n % 2 else a2
            x.transfer("burst-%d" % n, far[n % 3], far[(n + 1) % 3], 1)
        s.stop(signal.SIGKILL)
        s.start(args=[])
        x.c = c = s.client()
        events = wait_all(c, x.events, "after a SIGKILL with the relay behind")
        check_events(events, x.events, "after a SIGKILL with the relay behind")

        check(s.stop() == 0, "clean stop")
        s.start(args=[])
        x.c = c = s.client()
        x.transfer("after-restart", a1[1], a1[0], 5)  # relayed after everything shard 1 held
        events = wait_all(c, x.events, "after a clean restart")
        check_events(events, x.events, "after a clean restart")
        listed = [e["id"] for e in all_events(c) if e["created"] > ep["created"]]
        rx.wait_acked(listed, "webhooks")
        check(rx.acked_ids() == set(listed), "the receiver got exactly the listed events: %d extra"
              % len(rx.acked_ids() - set(listed)))
        check_order_per_object(rx.snapshot(), "webhooks")
        for shard in (1, 2):
            deadline = time.time() + TIMEOUT_S * 3
            while int(s.sql(shard, "SELECT count(*) FROM events")) > 1:
                check(time.time() < deadline, "shard %d's relayed rows were never deleted" % shard)
                time.sleep(0.1)
        check(s.stop() == 0, "clean stop")
    finally:
        rx.stop()


def main():
    shardset.run(scenario, done="shards events: ok")


if __name__ == "__main__":
    main()
