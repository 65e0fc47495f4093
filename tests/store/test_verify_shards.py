"""Goal: `paycore verify --shards` verifies a set of shards: every shard as `verify
--store` does (a tampered row is named with its shard), the list against the shard
map, each pair's clearing accounts mirroring each other (a shard restored from an
older copy, each of its own rows intact, is caught), and global transactions left
unfinished reported as in doubt (exit 3) until recovery ends them; and it passes on a
set that is serving cross-shard transfers meanwhile (its snapshots are taken inside
the read fence, so they agree on every global transaction), as POST /v1/verify on the
serving node does.
Method: three databases of one throwaway PostgreSQL cluster as the shards
(shardset.py), init/serve --shards, accounts on every shard, local and cross-shard
transfers, pending transfers posted, voided and left open; verify while four clients
send cross transfers; edits with psql on the stopped set (an amount, a shard swapped
for a copy taken earlier with CREATE DATABASE ... TEMPLATE), each undone after; the
coordinator killed after committing one leg (PAYCORE_2PC_FAULT=after_commit_one)."""
import signal
import subprocess
import sys
import os
import re
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import shardset  # noqa: E402
from shardset import pcapi  # noqa: E402
from pcapi import BIN, TIMEOUT_S, account, check, expect, transfer  # noqa: E402


def verify(s, *extra, urls=None):
    out = subprocess.run([BIN, "verify", "--shards", s.shards_arg(urls)] + list(extra), capture_output=True,
                         text=True, timeout=TIMEOUT_S * 6)
    return out.returncode, out.stdout.splitlines(), out.stderr


def verify_ok(s, what, *extra):
    code, lines, err = verify(s, *extra)
    check(code == 0 and lines and lines[-1].startswith("verify ok shards=3 "),
          "%s: verify --shards passes (exit %d): %r %s" % (what, code, lines, err))
    check([line.split(":")[0] for line in lines[:-1]] == ["shard 0", "shard 1", "shard 2"]
          and all(": verify ok batches=" in line for line in lines[:-1]), "%s: one ok line a shard: %r" % (what, lines))
    return lines


def verify_fails(s, what, want_code, *texts, urls=None):
    code, lines, err = verify(s, urls=urls)
    check(code == want_code, "%s: verify --shards exits %d, got %d: %r %s" % (what, want_code, code, lines, err))
    for text in texts:
        check(any(text in line for line in lines), "%s: no line says %r: %r" % (what, text, lines))
    print("%s: %s" % (what, lines[-1]))
    return lines


def setup(s):
    client = s.start().client()
    expect(client.post("/v1/accounts", account("bank")), 201, what="bank")
    by_shard = {}
    for i in range(15):
        account_id = "v-%d" % i
        expect(client.post("/v1/accounts", account(account_id)), 201, what="create " + account_id)
        by_shard.setdefault(s.shard_of(account_id), []).append(account_id)
        expect(client.post("/v1/transfers", transfer("fund-" + account_id, "bank", account_id, 10000)), 201,
               what="fund " + account_id)
    check(len(by_shard) == 3 and all(len(v) >= 2 for v in by_shard.values()), "accounts on every shard: %r"
          % by_shard)
    a, b, c = by_shard[0][0], by_shard[1][0], by_shard[2][0]
    expect(client.post("/v1/transfers", transfer("x-ab", a, b, 25)), 201, what="cross 0 -> 1")
    expect(client.post("/v1/transfers", transfer("x-cb", c, b, 30)), 201, what="cross 2 -> 1")
    expect(client.post("/v1/transfers", transfer("l-a", a, by_shard[0][1], 5)), 201, what="local on 0")
    for tid, debit, credit in (("h-open", a, c), ("h-post", b, a), ("h-void", c, a)):
        expect(client.post("/v1/transfers", transfer(tid, debit, credit, 40, flags=["pending"], timeout_s=3600)),
               201, what="pending " + tid)
    expect(client.post("/v1/transfers", {"id": "p-1", "pending_id": "h-post", "flags": ["post_pending"],
                                         "amount": 15}), 201, what="post h-post in part")
    expect(client.post("/v1/transfers", {"id": "v-1", "pending_id": "h-void", "flags": ["void_pending"]}), 201,
           what="void h-void")
    client.close()
    return by_shard


def while_serving(s, by_shard):
    """Verify three times while clients send transfers across shards."""
    stop = threading.Event()
    errors = []
    pairs = [(by_shard[i][k], by_shard[j][k]) for i in range(3) for j in range(3) for k in range(2) if i != j]

    def worker(w):
        c = s.client()
        n = 0
        while not stop.is_set():
            debit, credit = pairs[(w + n) % len(pairs)]
            r = c.post("/v1/transfers", transfer("live-%d-%d" % (w, n), debit, credit, 1))
            if r.status != 201:
                errors.append(repr(r))
            n += 1
        c.close()
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    try:
        for n in range(3):
            verify_ok(s, "verify %d while cross transfers commit" % n)
        c = s.client()
        got = expect(c.post("/v1/verify", {}), 200, what="POST /v1/verify on the serving set").json
        c.close()
        check(got["ok"] is True and got["shards"] == 3 and got["in_doubt"] == 0
              and got["report"].startswith("verify ok shards=3 "), "POST /v1/verify verifies the set: %r" % got)
    finally:
        stop.set()
        for t in threads:
            t.join(TIMEOUT_S * 3)
    check(not errors, "the load's transfers: %s" % errors[:3])


def usage(s):
    out = subprocess.run([BIN, "verify", "--shards", "not-a-url"], capture_output=True, text=True, timeout=TIMEOUT_S)
    check(out.returncode == 2 and "not a postgres:// URL" in out.stderr, "a bad list is a usage error: %r" % (out,))
    out = subprocess.run([BIN, "verify", "--shards", s.shards_arg(), "--store", s.urls[0]], capture_output=True,
                         text=True, timeout=TIMEOUT_S)
    check(out.returncode == 2, "--shards with --store is a usage error: %r" % (out,))
    verify_fails(s, "the list in another order", 1, "verify error: store_shard_map_mismatch: shard 0 (",
                 urls=[s.urls[1], s.urls[0], s.urls[2]])
    verify_fails(s, "a shorter list", 1, "store_shard_map_mismatch", urls=s.urls[:2])


def older_copy(s, cluster, by_shard):
    """Shard 1 swapped for a copy taken before more cross transfers: each shard's own
    rows verify, the clearing accounts do not mirror."""
    cluster.sql("postgres", "CREATE DATABASE shard1_old TEMPLATE shard1")
    client = s.start().client()
    a, b, c = by_shard[0][1], by_shard[1][1], by_shard[2][1]
    expect(client.post("/v1/transfers", transfer("x-later-1", a, b, 7)), 201, what="cross 0 -> 1 after the copy")
    expect(client.post("/v1/transfers", transfer("x-later-2", b, c, 3)), 201, what="cross 1 -> 2 after the copy")
    client.close()
    check(s.stop() == 0, "a clean stop")
    verify_ok(s, "after the later transfers")
    cluster.sql("postgres", "ALTER DATABASE shard1 RENAME TO shard1_new")
    cluster.sql("postgres", "ALTER DATABASE shard1_old RENAME TO shard1")
    lines = verify_fails(s, "shard 1 restored from an older copy", 1, "verify failed: clearing accounts disagree"
                         " between shard 0 and shard 1 in USD")
    check(all(": verify ok" in line for line in lines[:3]), "each shard's own rows still verify: %r" % lines)
    cluster.sql("postgres", "ALTER DATABASE shard1 RENAME TO shard1_old")
    cluster.sql("postgres", "ALTER DATABASE shard1_new RENAME TO shard1")
    cluster.sql("postgres", "DROP DATABASE shard1_old")
    verify_ok(s, "shard 1 back")


def names_batch_of(line, ts):
    """Whether 'line' names a batch's timestamps range 'A..B' holding 'ts'."""
    found = re.search(r"timestamps (\d+)\.\.(\d+)", line)
    return found is not None and int(found.group(1)) <= ts <= int(found.group(2))


def tampered(s):
    """A cross transfer's leg on shard 2 with another amount: shard 2 is named, and the
    batch holding the leg (rows carry no hash of their own: the batch's sealed content
    hash is what no longer matches)."""
    check(2 in s.legs("x-cb"), "x-cb has a leg on shard 2")
    leg_ts = int(s.sql(2, "SELECT timestamp FROM transfers WHERE id = 'x-cb'"))
    s.sql(2, "UPDATE transfers SET amount = amount + 1 WHERE id = 'x-cb'")
    lines = verify_fails(s, "a leg's amount edited on shard 2", 1, "verify failed: shard 2 (")
    check(any(line.startswith("shard 2: verify failed: ") and names_batch_of(line, leg_ts) for line in lines),
          "shard 2's line names the batch holding the transfer (timestamp %d): %r" % (leg_ts, lines))
    check(lines[0].startswith("shard 0: verify ok") and lines[1].startswith("shard 1: verify ok"),
          "the other shards verify: %r" % lines)
    s.sql(2, "UPDATE transfers SET amount = amount - 1 WHERE id = 'x-cb'")
    verify_ok(s, "the edit undone")


def in_doubt(s, by_shard):
    """The coordinator killed after committing one leg: the other is prepared, the
    decision logged: in doubt until a start's recovery commits it."""
    s.start({"PAYCORE_2PC_FAULT": "after_commit_one"})
    client = s.client()
    try:
        r = client.post("/v1/transfers", transfer("x-doubt", by_shard[0][0], by_shard[1][0], 9))
        check(r.status >= 500, "the request whose coordinator died: %r" % r)
    except (OSError, pcapi.http.client.HTTPException):
        pass
    client.close()
    check(s.wait_exit("killed after committing one leg") == -signal.SIGKILL, "the fault hook kills the coordinator")
    check(s.prepared() == 1, "one leg prepared, one committed: %d prepared" % s.prepared())
    verify_fails(s, "a global transaction left half committed", 3, "verify in doubt: 1 global transaction not"
                 " finished: gtid ", "decision commit, prepared on shards [")
    s.start()
    check(s.stop() == 0, "a clean stop after recovery")
    check(s.prepared() == 0, "recovery finished it")
    check(sorted(s.legs("x-doubt")) == [0, 1], "committed on both shards")
    verify_ok(s, "after recovery")


def scenario(s):
    s.init()
    by_shard = setup(s)
    while_serving(s, by_shard)
    check(s.stop() == 0, "a clean stop")
    lines = verify_ok(s, "at rest")
    check(" clearing_accounts=" in lines[-1] and " clearing_accounts=0 " not in lines[-1],
          "clearing accounts were checked: %r" % lines[-1])
    verify_ok(s, "with the node's public keys", "--db", s.db)
    usage(s)
    older_copy(s, s.clusters[0], by_shard)
    tampered(s)
    in_doubt(s, by_shard)


def main():
    shardset.run(scenario)


if __name__ == "__main__":
    main()
