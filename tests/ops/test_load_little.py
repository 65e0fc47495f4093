"""Goal: `paycore load` measures what it claims: in closed and open loop its time-average
number of requests in flight equals throughput x mean time in flight (Little's law)
within its stated tolerance, it reports the offered rate (open loop: the --rate asked
for), and its counts agree with the server's (every transfer it counted committed).
With --payments it drives card sales instead (POST /v1/payments) and its count equals
the payments the server created and captured. Bad --rate / --arrivals / --payments
values are refused as usage errors. With --get it GETs a path (the HTTP stack's floor):
it counts the server's answers, an error status counts as an error, and it creates no
accounts.
In open loop its arrivals keep the schedule of --rate: never ahead of it, and the run
lasts no longer than the schedule plus its slowest request's latency.
Method: a real `paycore serve`; `paycore load` runs bounded by a count (a duration far
beyond it only bounds a hang), so no check depends on how fast the machine is."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../api"))
from pcapi import BIN, SANITIZED, TIMEOUT_S, Server, check, expect  # noqa: E402


def load(server, *args, key=None):
    r = subprocess.run([BIN, "load", "--url", "http://127.0.0.1:%d" % server.port, "--key", key or server.admin_key,
                        "--accounts", "100"] + list(args), capture_output=True, text=True, timeout=TIMEOUT_S * 6)
    line = r.stdout.strip()
    check(line.startswith("load "), "one load line: %r %r" % (r.stdout, r.stderr))
    fields = dict(kv.split("=", 1) for kv in line.split()[1:])
    return r.returncode, fields, r.stderr


def check_little(f, what):
    x = float(f["requests_per_s"])
    little = float(f["little_in_flight"])
    sampled = float(f["mean_in_flight"])
    check(f["little_ok"] == "1" and float(f["little_error"]) <= float(f["little_tolerance"]) == 0.05,
          "%s: Little's law: sampled %s vs X*W %s (error %s)" % (what, sampled, little, f["little_error"]))
    check(abs(sampled - little) <= 0.05 * little + 1e-9, "%s: the printed figures agree with little_ok" % what)
    check(x > 0 and float(f["mean_latency_ms"]) > 0, "%s: throughput and latency %r" % (what, f))


# Runs are bounded by a count, never by a duration: how many requests fit in a time is
# the machine's load, not a result. A duration far beyond the run only bounds a hang.
RUN_BOUND_S = str(TIMEOUT_S * 3)
# 400 a connection: a late start of the client's threads is a small part of the run
CLOSED_REQUESTS = 3200
# below what a sanitized server sustains on a busy machine, so the check runs in the
# regime it is for (an overloaded run only grows its queue)
OPEN_RATE_PER_S = 100 if SANITIZED else 400
# fewer than 1000, so p999_ms is the slowest request's latency; the N-th of N Poisson
# arrivals at rate R comes at N/R +- sqrt(N)/R: 5 % here at most, and the workers'
# arrivals come from fixed seeds
OPEN_REQUESTS = 4 * OPEN_RATE_PER_S if SANITIZED else 2 * OPEN_RATE_PER_S
# after its last answer the tool waits for its next arrival (a Poisson gap: at most a
# few of a worker's mean gap) and joins its threads: this is the run's end beyond the
# schedule and the slowest latency, with room for a descheduled client
OPEN_END_SLACK_S = 1.0


def closed_loop(server):
    """8 connections, each sending its next request when the last is answered, until
    CLOSED_REQUESTS are done: exactly that many, every one a committed transfer."""
    rc, closed, err = load(server, "--concurrency", "8", "--count", str(CLOSED_REQUESTS), "--duration-s", RUN_BOUND_S)
    print("closed loop: " + " ".join("%s=%s" % kv for kv in closed.items()))
    check(rc == 0, "closed loop: %s" % err)
    check(closed["loop"] == "closed" and closed["requests"] == str(CLOSED_REQUESTS) and
          closed["transfers"] == closed["requests"] and closed["errors"] == "0", "closed %r" % closed)
    # 8 connections are (almost) always busy: the integral and the sampler, which reads
    # the count from another thread, both see 8
    for name in ("mean_in_flight", "mean_in_flight_sampled"):
        check(abs(float(closed[name]) - 8) < 1.0, "closed loop keeps its 8 connections busy: %s=%s" % (name, closed[name]))
    check_little(closed, "closed loop")
    return closed


def open_loop(server):
    """Poisson arrivals at --rate until --count: every arrival is sent and answered, none
    before its time on the schedule, and the schedule is the rate asked for: the run
    lasts as long as OPEN_REQUESTS arrivals take, plus at most the slowest request's
    latency (counted from its arrival) and the tool's own end."""
    rate = OPEN_RATE_PER_S
    rc, opened, err = load(server, "--concurrency", "16", "--rate", str(rate), "--count", str(OPEN_REQUESTS),
                           "--duration-s", RUN_BOUND_S, "--arrivals", "poisson")
    print("open loop: " + " ".join("%s=%s" % kv for kv in opened.items()))
    check(rc == 0, "open loop: %s" % err)
    check(opened["loop"] == "open" and opened["offered_per_s"] == str(rate), "open %r" % opened)
    check(opened["requests"] == str(OPEN_REQUESTS) and opened["transfers"] == opened["requests"],
          "every one of the %d arrivals answered: %r" % (OPEN_REQUESTS, opened))
    schedule_s = OPEN_REQUESTS / rate
    elapsed_s = float(opened["elapsed_s"])
    check(elapsed_s >= 0.8 * schedule_s, "no faster than %d/s: %d arrivals in %.3f s" % (rate, OPEN_REQUESTS, elapsed_s))
    beyond_schedule_s = elapsed_s - float(opened["p999_ms"]) / 1e3
    check(beyond_schedule_s <= 1.2 * schedule_s + OPEN_END_SLACK_S,
          "no slower than %d/s: %d arrivals took %.3f s, %.3f s without the slowest latency" %
          (rate, OPEN_REQUESTS, elapsed_s, beyond_schedule_s))
    check_little(opened, "open loop")
    return opened


MERCHANT = {"id": "m1", "name": "Shop", "country": "DE", "default_currency": "USD", "currencies": ["USD"],
            "pricing": {"default": {"bps": 290, "fixed_minor": 30}}}


def payments_load():
    """--payments: card sales against the demo's card channel, counted by the server."""
    server = Server()
    try:
        admin = server.start(["--demo"]).client()
        expect(admin.post("/v1/merchants", MERCHANT), 201, what="merchant")
        rc, sold, err = load(server, "--payments", "m1", "--concurrency", "4", "--count", "40")
        check(rc == 0 and sold["kind"] == "payments" and sold["errors"] == "0", "payments load: %r %s" % (sold, err))
        check(sold["requests"] == "40" and sold["transfers"] == "40", "40 sales counted: %r" % sold)
        check_little(sold, "payments closed loop")
        payments = expect(admin.get("/v1/stats?history_s=0"), 200).json["payments"]
        check(payments["created_total"] == 40 and payments["states"]["captured"] == 40,
              "the server created and captured the 40 sales: %r" % payments)
        for bad in (["--payments", ""], ["--payments", "m1", "--batch", "2"], ["--payments", 'm"1']):
            rc = subprocess.run([BIN, "load"] + bad, capture_output=True, timeout=TIMEOUT_S).returncode
            check(rc == 2, "%r is a usage error, got %d" % (bad, rc))
    finally:
        server.close()


def main():
    payments_load()
    server = Server()
    try:
        server.start()
        rc, short, err = load(server, "--concurrency", "2", "--count", "20")
        check(rc == 0 and short["little_ok"] == "1", "a short run keeps its books too: %r %s" % (short, err))
        closed, opened = closed_loop(server), open_loop(server)
        stats = expect(server.client().get("/v1/stats?history_s=0"), 200).json
        committed = int(short["transfers"]) + int(closed["transfers"]) + int(opened["transfers"])
        check(stats["writer"]["transfers_committed_total"] == committed,
              "load counted %d, the server committed %d" % (committed, stats["writer"]["transfers_committed_total"]))
        # no channel here: sales answer 201 but fail; the load must not count them as sold
        expect(server.client().post("/v1/merchants", MERCHANT), 201, what="merchant")
        rc, failed, err = load(server, "--payments", "m1", "--concurrency", "2", "--count", "10")
        check(rc == 1 and failed["errors"] == "10" and failed["transfers"] == "0" and "failed" in err,
              "sales that failed are errors: %r %s" % (failed, err))
        last_account = expect(server.client().get("/v1/accounts?limit=1"), 200).json["data"][0]["id"]
        rc, got, err = load(server, "--get", "/healthz", "--concurrency", "4", "--count", "50")
        check(rc == 0 and got["kind"] == "get" and got["requests"] == "50" and got["errors"] == "0",
              "--get /healthz: 50 answers: %r %s" % (got, err))
        check_little(got, "get closed loop")
        metrics = server.client().get("/metrics").raw
        healthz = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                      if line.startswith("paycore_http_requests_total") and 'route="/healthz"' in line)
        check(healthz >= 50, "the server answered the 50 GETs (metrics say %s)" % healthz)
        rc, missing, err = load(server, "--get", "/no-such-route", "--concurrency", "2", "--count", "6")
        check(rc == 1 and missing["errors"] == "6" and missing["kind"] == "get", "404s are errors: %r %s" % (missing, err))
        check(expect(server.client().get("/v1/accounts?limit=1"), 200).json["data"][0]["id"] == last_account,
              "--get created no accounts")
        for bad in (["--rate", "0"], ["--rate", "x"], ["--rate", "10", "--arrivals", "bursty"], ["--get", "healthz"],
                    ["--get", "/healthz", "--payments", "m1"], ["--get", "/healthz", "--batch", "2"]):
            rc = subprocess.run([BIN, "load"] + bad, capture_output=True, timeout=TIMEOUT_S).returncode
            check(rc == 2, "%r is a usage error, got %d" % (bad, rc))
    finally:
        server.close()
    print("5 passed, 0 failed")


if __name__ == "__main__":
    main()
