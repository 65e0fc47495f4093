"""bench/bench_shard_events.py BUILD full|quick: the cost of the ledger's events on a
set of shards (docs/scaleout.md §6, "Events on a set"). Three databases of one
throwaway PostgreSQL cluster as the shards of a set; `paycore load --shards 3` over
HTTP (single transfers, 16 connections) at 0 % and 50 % cross-shard, against
`serve --shards --no-events` (the baseline) and with the outbox on, in alternating
rounds of the same run. With the outbox on, every shard writes its events (shards 1
and 2 into their own outbox, relayed to shard 0's) and every global transaction has
a leg on shard 0 that writes them. One key=value line per figure, ratio last:
  shard_events cross_pct=P per_s=... baseline=no_events baseline_per_s=... ratio=..."""
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(HERE, "..", "build")
MODE = sys.argv[2] if len(sys.argv) > 2 else "quick"
os.environ["PAYCORE_BIN"] = os.path.join(BUILD, "paycore")
sys.path.insert(0, os.path.join(HERE, "..", "tests", "store"))
import pgcluster  # noqa: E402
import shardset  # noqa: E402

SECONDS = 3 if MODE == "quick" else 8
ROUNDS = 1 if MODE == "quick" else 3


def load(s, cross_pct):
    out = subprocess.run([os.environ["PAYCORE_BIN"], "load", "--url", "http://127.0.0.1:%d" % s.port,
                          "--key", s.admin_key, "--concurrency", "16", "--duration-s", str(SECONDS),
                          "--accounts", "300", "--shards", "3", "--cross-pct", str(cross_pct)],
                         capture_output=True, text=True, timeout=SECONDS * 20 + 120)
    m = re.search(r"transfers_per_s=([0-9.]+)", out.stdout)
    if m is None:
        sys.exit("paycore load: %s %s" % (out.stdout, out.stderr))
    return float(m.group(1))


def main():
    shardset.require_postgres()
    cluster = pgcluster.Cluster()
    s = None
    try:
        s = shardset.ShardSet(3, server=cluster)
        s.init()
        rates = {}
        for _ in range(ROUNDS):
            for events in (False, True):
                s.start(args=None if not events else [])
                for cross_pct in (0, 50):
                    rates.setdefault((events, cross_pct), []).append(load(s, cross_pct))
                s.stop()
        for cross_pct in (0, 50):
            base = sorted(rates[(False, cross_pct)])[len(rates[(False, cross_pct)]) // 2]
            with_events = sorted(rates[(True, cross_pct)])[len(rates[(True, cross_pct)]) // 2]
            print("shard_events cross_pct=%d per_s=%.0f baseline=no_events baseline_per_s=%.0f ratio=%.3f"
                  % (cross_pct, with_events, base, with_events / base))
    finally:
        if s is not None:
            s.close()
        cluster.close()


if __name__ == "__main__":
    main()
