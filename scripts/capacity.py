#!/usr/bin/env python3
"""scripts/capacity.py: paycore's queueing model (docs/capacity.md), stdlib only.

A request's response time is three parts:
  - CPU: `cores` cores serve the CPU work of requests as an M/M/c queue with mean
    service time `service_ms` (per request and core: cores / saturation throughput);
  - group commit: the writer commits a batch in `commit_ms` (mostly fsync, nearly
    constant); a request waits for the commit that includes it: `commit_ms` when the
    writer is idle at its arrival, plus on average half a commit (the one running)
    when it is busy; the writer is busy a fraction min(1, rate x commit_ms) of the time
    (commits run back to back once batches form);
  - a fixed delay `delay_ms` that uses neither (loopback, the client, a payment
    channel's answer);
  - `commits` commit waits one after another per request (a transfer: 1; a card sale:
    2, its pending record before the channel call and its outcome after): the writer is
    then busy min(1, rate x commits x commit_ms) and each wait is as above.
For an arrival rate it gives the utilisation, the probability of waiting for a core
(Erlang C), the mean wait, the mean response time, and its 99th percentile: exact for
the M/M/c part (a mixture of Exp(mu) and Exp(c*mu - lambda) + Exp(mu)), plus the
longest commit wait (a full running commit and its own) and the fixed delay.

  capacity.py --service-ms S --commit-ms K --delay-ms D --cores C --rate R [--commits N]   one line
  capacity.py --service-ms S --commit-ms K --delay-ms D --cores C1,C2 --table RATES   markdown
"""
import argparse
import math
import sys


def erlang_c(c, a):
    """Probability that an arrival waits in M/M/c with offered load a = lambda * S."""
    if a >= c:
        return 1.0
    term, total = 1.0, 1.0
    for k in range(1, c):
        term *= a / k
        total += term
    last = term * a / c / (1.0 - a / c)
    return last / (total + last)


def tail(t, mu, theta, p_wait):
    """P(response > t): no wait (1 - p_wait): Exp(mu); a wait: Exp(theta) + Exp(mu)."""
    direct = math.exp(-mu * t)
    if abs(theta - mu) < 1e-12 * mu:
        waited = (1.0 + mu * t) * math.exp(-mu * t)
    else:
        waited = (theta * math.exp(-mu * t) - mu * math.exp(-theta * t)) / (theta - mu)
    return (1.0 - p_wait) * direct + p_wait * waited


def mmc(rate_per_s, service_ms, cores, delay_ms=0.0, commit_ms=0.0, commits=1.0):
    s = service_ms / 1000.0
    mu = 1.0 / s
    a = rate_per_s * s
    rho = a / cores
    if rho >= 1.0:
        return {"utilisation": rho, "p_wait": 1.0, "wait_ms": math.inf, "writer_busy": 1.0, "mean_ms": math.inf,
                "p99_ms": math.inf}
    p_wait = erlang_c(cores, a)
    theta = cores * mu - rate_per_s
    wait_s = p_wait / theta
    lo, hi = 0.0, 1.0
    while tail(hi, mu, theta, p_wait) > 0.01:
        hi *= 2.0
    for _ in range(100):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if tail(mid, mu, theta, p_wait) > 0.01 else (lo, mid)
    writer_busy = min(1.0, rate_per_s * commits * commit_ms / 1000.0)
    commit_wait_ms = commits * commit_ms * (1.0 + writer_busy / 2.0)
    return {"utilisation": rho, "p_wait": p_wait, "wait_ms": wait_s * 1000.0, "writer_busy": writer_busy,
            "mean_ms": delay_ms + commit_wait_ms + (wait_s + s) * 1000.0,
            "p99_ms": delay_ms + commits * commit_ms * (1.0 + writer_busy) + hi * 1000.0}


def fmt(x):
    return "∞" if math.isinf(x) else ("%.3g" % x)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--service-ms", type=float, required=True)
    p.add_argument("--delay-ms", type=float, default=0.0)
    p.add_argument("--commit-ms", type=float, default=0.0)
    p.add_argument("--commits", type=float, default=1.0, help="commit waits per request (a card sale: 2)")
    p.add_argument("--cores", default="2")
    p.add_argument("--rate", type=float)
    p.add_argument("--table")
    args = p.parse_args()
    cores = [int(c) for c in args.cores.split(",")]
    if args.rate is not None:
        m = mmc(args.rate, args.service_ms, cores[0], args.delay_ms, args.commit_ms, args.commits)
        print("model=mmc cores=%d rate_per_s=%.0f service_ms=%.4f commit_ms=%.4f delay_ms=%.4f utilisation=%.3f "
              "p_wait=%.3f writer_busy=%.3f wait_ms=%.4f mean_ms=%.4f p99_ms=%.4f commits=%.3g"
              % (cores[0], args.rate, args.service_ms, args.commit_ms, args.delay_ms, m["utilisation"], m["p_wait"],
                 m["writer_busy"], m["wait_ms"], m["mean_ms"], m["p99_ms"], args.commits))
        return 0
    rates = [float(r) for r in args.table.split(",")]
    print("| peak rate /s | cores | utilisation | P(wait) | mean wait ms | mean response ms | p99 response ms |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for rate in rates:
        for c in cores:
            m = mmc(rate, args.service_ms, c, args.delay_ms, args.commit_ms, args.commits)
            print("| %.0f | %d | %s | %s | %s | %s | %s |" % (rate, c, fmt(m["utilisation"]), fmt(m["p_wait"]),
                                                               fmt(m["wait_ms"]), fmt(m["mean_ms"]), fmt(m["p99_ms"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
