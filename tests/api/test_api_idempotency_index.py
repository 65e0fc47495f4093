"""Goal: the in-memory index of stored Idempotency-Keys (a request whose key it does not
hold reads nothing from the store) never answers "new" for a key that has a stored
reply: after a clean restart and after kill -9 (the index is loaded from the file), for
two connections racing with one key (the second sees the first's reply or 409
idempotency_key_in_progress, never a second execution), after the retention's purge
(the key runs again, and its new reply is replayed), and at its memory bound
(--idempotency-index-max-keys: past it every key is read from the store), and that
it recovers from its bound without a restart: once the purge took the rows away, it is
rebuilt from the store in the background and answers from memory again, as /metrics
says (paycore_idempotency_index_*: keys, bound, state, lookups read from the store).
Method: a real server (SQLite, or PostgreSQL with PAYCORE_TEST_PG_HOST). Every key
names a transfer with a fixed id, so a wrong "new" runs the transfer a second time and
the ledger answers 200 "exists" (or 409 transfer_exists_* for other fields) instead of
the stored 201 marked Idempotent-Replayed: each check below fails on such an answer.
The recovery: 30 keys past a bound of 8 (overflowed: every lookup reads the store, and
every replay is still right); restarted 25 h later (test clock), the stored rows are
more than the bound at start (overflowed again) until the purge took them: the index is
then rebuilt (polled in /metrics, no timing asserted), holds the new keys, answers new
ones without the store, replays them, and overflows again past its bound."""
import os
import signal
import threading
import time

from pcapi import TIMEOUT_S, Server, account, check, expect, transfer

HOUR_S = 3600


def post(c, key, tid, amount):
    return c.post("/v1/transfers", transfer(tid, "bank", "alice", amount), headers={"Idempotency-Key": key})


def replayed(c, key, tid, amount, first, what):
    r = expect(post(c, key, tid, amount), 201, what=what)
    check(r.headers.get("idempotent-replayed") == "true" and r.raw == first.raw,
          "%s: the stored reply, byte for byte: %r" % (what, r.raw))


def store_keys(c, prefix, count):
    return {i: expect(post(c, "%s-%d" % (prefix, i), "%s-t%d" % (prefix, i), 10 + i), 201,
                      what="%s %d" % (prefix, i)) for i in range(count)}


def replay_all(c, prefix, firsts, what):
    for i, first in firsts.items():
        replayed(c, "%s-%d" % (prefix, i), "%s-t%d" % (prefix, i), 10 + i, first, "%s %s-%d" % (what, prefix, i))
        r = post(c, "%s-%d" % (prefix, i), "%s-t%d" % (prefix, i), 99)
        check(r.status == 409 and r.code() == "idempotency_key_reused",
              "%s: other fields under %s-%d are refused: %r" % (what, prefix, i, r))


def start(server, offset_h=0, extra=None):
    os.environ["PAYCORE_TEST_CLOCK_OFFSET_S"] = str(offset_h * HOUR_S)
    server.start(extra_args=extra or [])
    return server.client()


def test_restarts(server):
    admin = start(server)
    expect(admin.post("/v1/accounts", {"accounts": [account("bank"), account("alice")]}), 200, what="accounts")
    firsts = store_keys(admin, "r", 20)
    replay_all(admin, "r", firsts, "running")
    check(server.stop() == 0, "SIGTERM exits 0")
    admin = start(server)
    replay_all(admin, "r", firsts, "after a clean restart")
    kills = store_keys(admin, "k", 20)  # acknowledged, then the process dies
    server.stop(signal.SIGKILL)
    admin = start(server)
    replay_all(admin, "r", firsts, "after kill -9")
    replay_all(admin, "k", kills, "after kill -9")
    server.stop()


def race_pair(server, n):
    """One new key on two connections at once."""
    barrier = threading.Barrier(2)
    replies = [None, None]

    def worker(slot):
        c = server.client()
        barrier.wait(timeout=60)
        replies[slot] = post(c, "race-%d" % n, "race-t%d" % n, 5)
        c.close()

    threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return replies


def test_races(server):
    start(server)
    counts = {"replayed": 0, "in_progress": 0}
    for n in range(40):
        a, b = race_pair(server, n)
        check(a is not None and b is not None, "pair %d answered" % n)
        ran = [r for r in (a, b) if r.status == 201 and r.headers.get("idempotent-replayed") is None]
        check(len(ran) == 1 and ran[0].json["status"] == "created", "pair %d: one execution: %r %r" % (n, a, b))
        other = b if ran[0] is a else a
        if other.status == 409:
            check(other.code() == "idempotency_key_in_progress", "pair %d: 409 in progress: %r" % (n, other))
            counts["in_progress"] += 1
        else:
            check(other.status == 201 and other.headers.get("idempotent-replayed") == "true"
                  and other.raw == ran[0].raw, "pair %d: the second replays the first: %r" % (n, other))
            counts["replayed"] += 1
    server.stop()
    return counts


def test_retention(server):
    """Past the retention a key runs again (docs: an expired reply is no reply); once its
    old row is purged, the new reply must still be found."""
    admin = start(server, 25)
    # the purge runs at start: wait until it took the earlier rows away
    expect(post(admin, "old-1", "old-t1", 3), 201, what="stored at 25 h")
    server.stop()
    admin = start(server, 50)
    again = expect(post(admin, "old-1", "old-t1b", 4), 201, what="old-1 past the retention")
    check(again.headers.get("idempotent-replayed") is None and again.json["id"] == "old-t1b",
          "past the retention the key runs again: %r" % again.raw)
    for _ in range(3):  # the purge of the old rows (idle server: it ran at start) kept the new row
        replayed(admin, "old-1", "old-t1b", 4, again, "the new reply of old-1")
    server.stop()
    admin = start(server, 50)
    replayed(admin, "old-1", "old-t1b", 4, again, "the new reply of old-1 after a restart")
    server.stop()


def test_bound(server):
    """An index of 8 keys: stored keys past it are found in the store, before and after
    a restart (which finds more rows than the bound); new keys still run."""
    admin = start(server, 50, ["--idempotency-index-max-keys", "8"])
    firsts = store_keys(admin, "b", 30)
    replay_all(admin, "b", firsts, "past the bound")
    server.stop()
    admin = start(server, 50, ["--idempotency-index-max-keys", "8"])
    replay_all(admin, "b", firsts, "past the bound after a restart")
    fresh = expect(post(admin, "b-new", "b-tnew", 1), 201, what="a new key past the bound")
    check(fresh.headers.get("idempotent-replayed") is None and fresh.json["status"] == "created", "it ran")
    replayed(admin, "b-new", "b-tnew", 1, fresh, "the new key past the bound")
    server.stop()


def metrics(server):
    """name{labels} -> value, for the index's series."""
    text = expect(server.client(key="").get("/metrics"), 200, what="metrics").raw
    if isinstance(text, bytes):
        text = text.decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("paycore_idempotency_index_"):
            name, value = line.rsplit(" ", 1)
            out[name[len("paycore_idempotency_index_"):]] = float(value)
    return out


def state(m):
    return [s for s in ("indexed", "overflowed", "rebuilding") if m.get('state{state="%s"}' % s) == 1]


def wait_metrics(server, what, predicate):
    deadline = time.time() + TIMEOUT_S * 3
    while True:
        m = metrics(server)
        if predicate(m):
            return m
        check(time.time() < deadline, "%s: %r" % (what, m))
        time.sleep(0.05)


def test_recovery(server):
    bound = ["--idempotency-index-max-keys", "8"]
    admin = start(server, 100, bound)
    m = metrics(server)
    check(m.get("keys_max") == 8, "the bound in /metrics: %r" % m)
    firsts = store_keys(admin, "rc", 30)
    m = metrics(server)
    check(state(m) == ["overflowed"] and m["overflows_total"] >= 1, "30 keys past a bound of 8: %r" % m)
    reads = m['store_reads_total{reason="not_indexed"}']
    replay_all(admin, "rc", firsts, "overflowed")
    m = metrics(server)
    check(m['store_reads_total{reason="not_indexed"}'] >= reads + 60,
          "overflowed, each lookup read the store: %r" % m)
    server.stop()
    admin = start(server, 125, bound)  # every row is past the retention: the purge takes them
    m = wait_metrics(server, "rebuilt from the store once the purge took the rows",
                     lambda m: state(m) == ["indexed"] and m['rebuilds_total{result="indexed"}'] >= 1)
    check(m["keys"] == 0 and m["overflows_total"] >= 1, "rebuilt, nothing stored: %r" % m)
    fresh = store_keys(admin, "rn", 5)
    m = metrics(server)
    check(state(m) == ["indexed"] and m["keys"] == 5, "the new keys are indexed: %r" % m)
    check(m['store_reads_total{reason="not_indexed"}'] == 0, "new keys read nothing from the store: %r" % m)
    held = m['store_reads_total{reason="held"}']
    replay_all(admin, "rn", fresh, "after the rebuild")
    m = metrics(server)
    check(m['store_reads_total{reason="held"}'] == held + 10, "each replay found its key held: %r" % m)
    again = expect(post(admin, "rc-0", "rc-t0-again", 7), 201, what="rc-0 past the retention")
    check(again.headers.get("idempotent-replayed") is None, "past the retention rc-0 ran again: %r" % again.raw)
    more = store_keys(admin, "ro", 6)
    m = metrics(server)
    check(state(m) == ["overflowed"], "past the bound again: %r" % m)
    replay_all(admin, "rn", fresh, "overflowed again")
    replay_all(admin, "ro", more, "overflowed again")
    server.stop()


def main():
    server = Server()
    try:
        test_restarts(server)
        counts = test_races(server)
        test_retention(server)
        test_bound(server)
        test_recovery(server)
    finally:
        server.close()
    print("api idempotency index: ok (race pairs: %(replayed)d replayed, %(in_progress)d in progress)" % counts)


if __name__ == "__main__":
    main()
