"""Goal: a global transaction (a transfer across shards, two-phase commit) is all or
nothing whatever step its coordinator dies at, and no prepared transaction is left
behind: SIGKILL after preparing on one shard, after preparing on both, after logging
the decision, after committing on one shard; a shard stopped while the coordinator
prepares; an orphan prepared transaction with no intent in the coordinator log; a
round carrying several transfers killed between its prepares and after its decision. While
a global transaction waits in doubt, /metrics shows it (paycore_2pc_in_doubt).
Method: three PostgreSQL clusters (shardset.py); serve --shards with the fault hook
(PAYCORE_2PC_FAULT names the step; PAYCORE_2PC_FAULT_ACTION=pause:<file> holds the
coordinator there until the test removes the file); after each fault the server is
restarted without it (recovery at start) and the test checks, straight on the shards,
that the transfer has a leg on both shards or on neither (decision logged: both;
otherwise neither), that pg_prepared_xacts is empty, and every balance against a model
through the API. PAYCORE_SHARD_FAULT_ROUNDS (make test-shards-faults) adds that many
rounds of random steps, shard pairs and Idempotency-Keys after the fixed ones."""
import os
import random
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import shardset  # noqa: E402
from shardset import pcapi  # noqa: E402
from pcapi import TIMEOUT_S, account, check, expect, fail, transfer  # noqa: E402
from test_pg_store import Model  # noqa: E402
from test_shard_nodes import LOCK_KEY1, Node, hold_lock  # noqa: E402

STEPS = {  # step: (prepared transactions left by the kill, committed after recovery)
    "after_prepare_one": (1, False),
    "after_prepare_all": (2, False),
    "after_decision": (2, True),
    "after_commit_one": (1, True),
}


def setup(s, model):
    client = s.start().client()
    expect(client.post("/v1/accounts", account("bank")), 201, what="bank")
    model.add_account("bank")
    by_shard = {}
    for i in range(24):
        account_id = "f-acct-%d" % i
        expect(client.post("/v1/accounts", account(account_id, flags=["debits_must_not_exceed_credits"])), 201,
               what="create " + account_id)
        model.add_account(account_id)
        by_shard.setdefault(s.shard_of(account_id), []).append(account_id)
        expect(client.post("/v1/transfers", transfer("fund-" + account_id, "bank", account_id, 100000)), 201,
               what="fund")
        model.post("bank", account_id, 100000)
    check(len(by_shard) == 3, "accounts on every shard: %r" % by_shard)
    client.close()
    return by_shard


def post_dying(s, body, headers=None):
    """The request whose coordinator dies: it gets no reply (or a 5xx)."""
    client = s.client()
    try:
        r = client.post("/v1/transfers", body, headers=headers)
        check(r.status >= 500, "a request whose coordinator died cannot succeed: %r" % r)
    except (OSError, pcapi.http.client.HTTPException):
        pass
    finally:
        client.close()


def kill_round(s, model, step, debit, credit, transfer_id, idem):
    s.stop(signal.SIGTERM)
    s.start({"PAYCORE_2PC_FAULT": step})
    headers = {"Idempotency-Key": "k-" + transfer_id} if idem else None
    post_dying(s, transfer(transfer_id, debit, credit, 7), headers)
    code = s.wait_exit("killed at " + step)
    check(code == -signal.SIGKILL, "%s: the fault hook kills the coordinator (exit %r)" % (step, code))
    left, committed = STEPS[step]
    involved = 3 if idem and s.shard_of(debit) != 0 and s.shard_of(credit) != 0 else 2
    if step == "after_prepare_all" or step == "after_decision":
        left = involved
    check(s.prepared() == left, "%s: %d prepared transactions while the coordinator is dead, found %d"
          % (step, left, s.prepared()))
    if step == "after_commit_one":
        no_half_through_a_standby(s)
    client = s.start().client()
    check(s.prepared() == 0, "%s: recovery at start left %d prepared transactions" % (step, s.prepared()))
    legs = s.legs(transfer_id)
    want = sorted({s.shard_of(debit), s.shard_of(credit)}) if committed else []
    check(sorted(legs) == want, "%s: all or nothing: legs on %r, want %r" % (step, legs, want))
    check("2pc recovery" in s.log(), "%s: the restart says what recovery did" % step)
    if committed:
        model.post(debit, credit, 7)
        got = expect(client.get("/v1/transfers/" + transfer_id), 200, what=step + ": read it").json
        check(got["debit_account_id"] == debit and got["credit_account_id"] == credit, "%s: %r" % (step, got))
    else:
        expect(client.get("/v1/transfers/" + transfer_id), 404, what=step + ": not there")
    # the client's retry with the same id: exists after a commit, created after an abort
    r = client.post("/v1/transfers", transfer(transfer_id, debit, credit, 7), headers=headers)
    check(r.status == (200 if committed and not idem else 201), "%s: the retry answers %r" % (step, r))
    if not committed:
        model.post(debit, credit, 7)
    model.check(client, "after " + step)
    client.close()


def batch_round(s, model, by_shard, step, n):
    """Several transfers across shards in one request: one global transaction (one
    round of two-phase commit) carries them all, so the coordinator killed at 'step'
    leaves all of them or none, and nothing prepared after the restart."""
    ones, twos = by_shard[1], by_shard[2]
    batch = [transfer("batch-%d-%d" % (n, i), ones[i] if i % 2 == 0 else twos[i], twos[i] if i % 2 == 0 else ones[i],
                      3 + i) for i in range(4)]
    ids = [t["id"] for t in batch]
    s.stop(signal.SIGTERM)
    s.start({"PAYCORE_2PC_FAULT": step})
    post_dying(s, {"transfers": batch})
    code = s.wait_exit("killed at " + step + " in a round of several")
    check(code == -signal.SIGKILL, "%s: the fault hook kills the coordinator (exit %r)" % (step, code))
    left, committed = STEPS[step]
    if step == "after_prepare_all" or step == "after_decision":
        left = 2
    check(s.prepared() == left, "%s, a round of several: %d prepared while the coordinator is dead, found %d"
          % (step, left, s.prepared()))
    client = s.start().client()
    check(s.prepared() == 0, "%s, a round of several: recovery left %d prepared" % (step, s.prepared()))
    want = [1, 2] if committed else []
    for transfer_id in ids:
        check(sorted(s.legs(transfer_id)) == want, "%s: all or nothing for the whole round: %s has legs on %r, want %r"
              % (step, transfer_id, s.legs(transfer_id), want))
    r = expect(client.post("/v1/transfers", {"transfers": batch}), 200, what=step + ": the batch retried")
    got = [e["status"] for e in r.json["results"]]
    check(got == ["exists" if committed else "created"] * 4, "%s: the retry of the round: %r" % (step, r.json))
    for t in batch:
        model.post(t["debit_account_id"], t["credit_account_id"], t["amount"])
    model.check(client, "after a round of several killed at " + step)
    client.close()


def no_half_through_a_standby(s):
    """The coordinator died between its COMMIT PREPAREDs: one shard holds the transfer's
    leg, the other has it prepared. A standby (the set's lock held meanwhile by another
    session, so that nobody recovers it) must not list the accounts in that state: it
    forwards the list (503, no writer), never a page whose clients' accounts do not net
    to zero (each shard's books balance, so only the clearing accounts show it)."""
    holder = hold_lock(s)
    node = Node(s, "S")
    try:
        node.start(standby=True, wait_for="forwarding to the set's writer")
        r = pcapi.Client(node.port, s.admin_key).get("/v1/accounts?limit=100")
        if r.status == 200:
            clients = [a for a in r.json["data"] if not a["id"].startswith("pc.clearing.")]
            net = sum(a["debits_posted"] - a["credits_posted"] for a in clients)
            check(net == 0, "a standby listed a global transaction committed on one shard only: net %d" % net)
        else:
            expect(r, 503, "shard_writer_unavailable", what="the list through a standby, half committed")
        check(node.stop() == 0, "the standby stops")
    finally:
        node.close()
        s.sql(0, "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted AND"
                 " classid = %d" % LOCK_KEY1)
        holder.wait(TIMEOUT_S)


def wait_file(path, what):
    deadline = time.time() + TIMEOUT_S * 3
    while not os.path.exists(path):
        if time.time() > deadline:
            fail("%s: the coordinator never reached its pause" % what)
        time.sleep(0.02)


def shard_stopped_round(s, model, by_shard):
    """Shard 2 stops while the coordinator prepares (shard 1 prepared, shard 2 next)."""
    debit, credit = by_shard[1][0], by_shard[2][0]
    pause = os.path.join(s.dir, "pause")
    s.stop(signal.SIGTERM)
    s.start({"PAYCORE_2PC_FAULT": "after_prepare_one", "PAYCORE_2PC_FAULT_ACTION": "pause:" + pause})
    worker = threading.Thread(target=post_dying, args=(s, transfer("stopped-1", debit, credit, 9)))
    worker.start()
    wait_file(pause, "shard stop")
    client = s.client()
    metrics = expect(client.get("/metrics"), 200, what="metrics in doubt").raw
    client.close()
    check("\npaycore_2pc_in_doubt 1\n" in metrics, "one global transaction in doubt:\n" + metrics[-1200:])
    check(s.prepared() == 1, "shard 1 prepared before the pause")
    s.clusters[2].stop("fast")
    os.remove(pause)
    worker.join(TIMEOUT_S * 3)
    check(not worker.is_alive(), "the request ends")
    # the global transaction aborted (shard 1's leg rolled back); the node may stay up
    # (shard 2's writer fails its next write) or stop (its store failed for good)
    check(s.sql(1, "SELECT count(*) FROM pg_prepared_xacts") == "0",
          "the abort rolled back shard 1's prepared leg while shard 2 is down")
    if s.proc.poll() is None:
        s.stop(signal.SIGTERM)
    else:
        s.wait_exit("a shard stopped during prepare")
    s.clusters[2].start()
    client = s.start().client()
    check(s.prepared() == 0, "no prepared transaction left after a shard stopped during prepare")
    check(s.legs("stopped-1") == [], "aborted on both shards: %r" % s.legs("stopped-1"))
    model.check(client, "after a shard stopped during prepare")
    client.close()


def orphan_round(s, model):
    s.stop(signal.SIGTERM)
    s.sql(1, "BEGIN; INSERT INTO paycore_meta VALUES('orphan_probe', '1');"
             " PREPARE TRANSACTION 'pc_00000000000000000000000000abcdef_1'")
    check(s.prepared() == 1, "the orphan is prepared")
    client = s.start().client()
    check(s.prepared() == 0, "an orphan prepared transaction (no intent) is rolled back at start")
    check(s.sql(1, "SELECT count(*) FROM paycore_meta WHERE key = 'orphan_probe'") == "0", "and its row is gone")
    model.check(client, "after the orphan")
    client.close()


def main():
    seed = int(os.environ.get("PAYCORE_SEED", str(int(time.time()))))
    rounds = int(os.environ.get("PAYCORE_SHARD_FAULT_ROUNDS", "0"))
    rng = random.Random(seed)

    def scenario(s):
        s.init()
        model = Model()
        by_shard = setup(s, model)
        n = 0
        for step in STEPS:
            n += 1
            kill_round(s, model, step, by_shard[1][n % 4], by_shard[2][n % 4], "kill-%d" % n, False)
        for step in ("after_prepare_one", "after_decision"):
            n += 1
            batch_round(s, model, by_shard, step, n)
        shard_stopped_round(s, model, by_shard)
        orphan_round(s, model)
        for _ in range(rounds):
            n += 1
            d, c = rng.sample([0, 1, 2], 2)
            kill_round(s, model, rng.choice(sorted(STEPS)), rng.choice(by_shard[d]), rng.choice(by_shard[c]),
                       "kill-%d" % n, rng.random() < 0.5)
        check(s.stop(signal.SIGTERM) == 0, "a clean stop at the end")
        s.books_balance("at the end")
        check(s.prepared() == 0, "nothing prepared at the end")

    shardset.run(scenario, one_server=False, on_failure=lambda: "seed %d (PAYCORE_SEED replays it)" % seed)


if __name__ == "__main__":
    main()
