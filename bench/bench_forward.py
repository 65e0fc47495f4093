"""bench/bench_forward.py BUILD full|quick: the cost of forwarding and of a standby's own
reads (docs/scaleout.md §7). Two throwaway PostgreSQL clusters as the shards of a set,
node A writing it, node B a standby forwarding to A and answering reads from the
shards itself, node C a standby forwarding reads too (--standby-forward-reads), on
loopback. Single transfers over HTTP within one shard, from 1 and 16 client threads,
sent to A itself (the baseline) and through B, in alternating rounds of the same run;
then account reads (GET /v1/accounts/{id}) and pages of an account's transfers (GET
/v1/accounts/{id}/transfers?limit=10) sent to A, to B (answered from the shards) and
to C (forwarded), interleaved in each round, each node first in one round of three. One key=value line per figure, ratio
last:
  forward threads=N per_s=... baseline=direct baseline_per_s=... ratio=...
  forward_read threads=N per_s=<B> baseline=direct baseline_per_s=<A> ratio=...
  forward_read_forwarded threads=N per_s=<C> baseline=direct baseline_per_s=<A> ratio=...
  forward_read_local threads=N per_s=<B> baseline=forwarded baseline_per_s=<C> ratio=...
  (forward_list, forward_list_forwarded, forward_list_local: the same for the pages)"""
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(HERE, "..", "build")
MODE = sys.argv[2] if len(sys.argv) > 2 else "quick"
os.environ["PAYCORE_BIN"] = os.path.join(BUILD, "paycore")
sys.path.insert(0, os.path.join(HERE, "..", "tests", "store"))
import pgcluster  # noqa: E402
import shardset  # noqa: E402
import test_shard_nodes as nodes  # noqa: E402
from pcapi import account, expect, transfer  # noqa: E402

SECONDS = 2 if MODE == "quick" else 5
ROUNDS = 1 if MODE == "quick" else 3


class Load:
    def __init__(self, ids):
        self.ids = ids
        self.seq = 0
        self.lock = threading.Lock()

    def next_id(self):
        with self.lock:
            self.seq += 1
            return "f%d" % self.seq

    def run(self, node, threads, reads=False):
        """Transfers acknowledged (or, with 'reads' a path format, reads answered) per
        second through 'node' in SECONDS."""
        done = [0]
        stop_at = time.time() + SECONDS

        def worker(k):
            client = node.client()
            while time.time() < stop_at:
                debit, credit = self.ids[k % len(self.ids)], self.ids[(k + 1) % len(self.ids)]
                if reads:
                    expect(client.get(reads % debit), 200, what="a read")
                else:
                    expect(client.post("/v1/transfers", transfer(self.next_id(), debit, credit, 1)), 201,
                           what="a transfer")
                with self.lock:
                    done[0] += 1
            client.close()
        workers = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return done[0] / SECONDS


def report(name, threads, figures):
    """The three lines of a read's figures {node: per_s} (A direct, B local, C forwarded)."""
    a, b, c = figures["A"], figures["B"], figures["C"]
    print("%s threads=%d per_s=%.0f baseline=direct baseline_per_s=%.0f ratio=%.2f" % (name, threads, b, a, b / a))
    print("%s_forwarded threads=%d per_s=%.0f baseline=direct baseline_per_s=%.0f ratio=%.2f"
          % (name, threads, c, a, c / a))
    print("%s_local threads=%d per_s=%.0f baseline=forwarded baseline_per_s=%.0f ratio=%.2f"
          % (name, threads, b, c, b / c))


def main():
    if not pgcluster.available():
        print("forward skipped=postgresql_missing")
        return
    s = shardset.ShardSet(2)
    a, b, c = nodes.Node(s, "A"), nodes.Node(s, "B"), nodes.Node(s, "C")
    try:
        s.init()
        a.db = s.db
        a.start(standby=False)
        for standby, extra in ((b, ()), (c, ("--standby-forward-reads",))):
            standby.copy_keys(a.db)
            standby.start(standby=True, wait_for="forwarding to the set's writer", extra=extra)
        client = a.client()
        ids = []
        for i in range(16):
            expect(client.post("/v1/accounts", account("b%d" % i)), 201, what="an account")
            ids.append("b%d" % i)
        client.close()
        load = Load([i for i in ids if s.shard_of(i) == 0])
        for threads in (1, 16):
            direct = forwarded = 0.0
            for _ in range(ROUNDS):
                direct += load.run(a, threads)
                forwarded += load.run(b, threads)
            print("forward threads=%d per_s=%.0f baseline=direct baseline_per_s=%.0f ratio=%.2f"
                  % (threads, forwarded / ROUNDS, direct / ROUNDS, forwarded / direct))
        for name, path in (("forward_read", "/v1/accounts/%s"), ("forward_list", "/v1/accounts/%s/transfers?limit=10")):
            for threads in (1, 16):
                figures = {"A": 0.0, "B": 0.0, "C": 0.0}
                for r in range(ROUNDS * 3):  # each node first, second and third in turn
                    order = (a, b, c)[r % 3:] + (a, b, c)[:r % 3]
                    for node in order:
                        figures[node.name] += load.run(node, threads, path) / (ROUNDS * 3)
                report(name, threads, figures)
    finally:
        a.close()
        b.close()
        c.close()
        s.close()


if __name__ == "__main__":
    main()
