"""Goal: operations behave: SIGHUP reopens the log file (rotation), /metrics is valid
Prometheus text (every sample parses, histograms are cumulative, +Inf equals _count)
and can be restricted with --metrics-auth, /healthz and /readyz answer. Method: a real
server with --log-file; the file is renamed and SIGHUP sent; metrics parsed line by
line."""
import os
import re
import signal
import time

from pcapi import TIMEOUT_S, Server, account, check, expect, transfer

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"]*")*)?\})? '
                    r'(-?[0-9.eE+-]+|\+Inf|NaN)$')


def parse_metrics(text):
    types, samples = {}, []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            check(kind in ("counter", "gauge", "histogram"), "metric type %r" % line)
            types[name] = kind
        elif line.startswith("# HELP "):
            continue
        else:
            m = SAMPLE.match(line)
            check(m is not None, "not a Prometheus sample line: %r" % line)
            samples.append((m.group(1), m.group(3) or "", float(m.group(5))))
    series = [(name, labels) for name, labels, _ in samples]
    repeated = sorted(set(s for s in series if series.count(s) > 1))
    check(not repeated, "a series appears more than once: %r" % repeated[:3])
    return types, samples


def check_histograms(types, samples):
    for name, kind in types.items():
        if kind != "histogram":
            continue
        buckets = [(labels, v) for n, labels, v in samples if n == name + "_bucket"]
        count = [v for n, _, v in samples if n == name + "_count"]
        check(buckets and count, "histogram %s has buckets and a count" % name)
        values = [v for _, v in buckets]
        check(values == sorted(values), "%s buckets are cumulative: %r" % (name, values))
        check('le="+Inf"' in buckets[-1][0] and buckets[-1][1] == count[0], "%s +Inf == count" % name)


def test_metrics(server):
    c = server.client()
    expect(c.post("/v1/accounts", {"accounts": [account("a"), account("b")]}), 200, what="accounts")
    expect(c.get("/v1/accounts"), 200, what="list: GET and POST of one route, both 200")
    for i in range(5):
        expect(c.post("/v1/transfers", transfer("t%d" % i, "a", "b", 10)), 201, what="transfer")
    expect(c.get("/v1/accounts/zz"), 404, what="a 404")
    r = expect(server.client(key="").get("/metrics"), 200, what="metrics")
    types, samples = parse_metrics(r.raw)
    check_histograms(types, samples)
    by_name = {}
    for n, labels, v in samples:
        by_name.setdefault(n, []).append((labels, v))
    check(by_name["paycore_transfers_committed_total"][0][1] == 5, "5 transfers committed")
    check(by_name["paycore_accounts_committed_total"][0][1] == 2, "2 accounts committed")
    requests = by_name["paycore_http_requests_total"]
    check(('method="POST",route="/v1/transfers",status="201"', 5.0) in requests, "201 x5 counted")
    check(('method="GET",route="/v1/accounts/{id}",status="404"', 1.0) in requests, "404 counted")
    check(('method="POST",route="/v1/accounts",status="200"', 1.0) in requests, "POST /v1/accounts counted")
    check(('method="GET",route="/v1/accounts",status="200"', 1.0) in requests, "GET /v1/accounts counted")
    check(types.get("paycore_writer_queue_depth") == "gauge", "queue depth gauge")
    check(by_name["paycore_build_info"][0][1] == 1, "build info")
    check_allocator(by_name["paycore_build_info"][0][0])
    promtool_check(r.raw)


def check_allocator(labels):
    """The malloc the server runs on is the one the build linked (CMake's PC_ALLOCATOR,
    given as PAYCORE_ALLOCATOR by CTest): tcmalloc in a Release build, the sanitizer's
    own under ASan/TSan. A link that lost tcmalloc (--as-needed, a missing package)
    shows here as allocator="glibc"."""
    expected = os.environ.get("PAYCORE_ALLOCATOR")
    found = re.search(r'allocator="([^"]*)"', labels)
    check(found is not None, "paycore_build_info has an allocator label: %s" % labels)
    if expected:
        check(found.group(1) == expected, "allocator %s, the build linked %s" % (found.group(1), expected))


def promtool_check(text):
    """`promtool check metrics` (Debian's prometheus package, installed by
    scripts/deps.sh): the output must lint clean. Risk metrics are linted by the risk
    tests' owners; the API's own must come out clean. A missing promtool fails."""
    import shutil
    import subprocess
    check(shutil.which("promtool") is not None,
          "promtool not found: install Debian's prometheus package (sh scripts/deps.sh, "
          "or apt-get install prometheus)")
    out = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                         timeout=30)
    problems = [l for l in (out.stdout + out.stderr).splitlines()
                if l.strip() and not l.startswith("paycore_risk_")]
    check(not problems, "promtool: %r" % problems)


def test_sighup(server):
    c = server.client()
    log_path = os.path.join(server.dir, "paycore.log")
    expect(c.get("/healthz"), 200, what="before rotation")
    # The access line is written after the response: wait for it before rotating.
    deadline = time.time() + TIMEOUT_S
    while '"route":"/healthz"' not in open(log_path).read() and time.time() < deadline:
        time.sleep(0.05)
    os.rename(log_path, log_path + ".1")
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + TIMEOUT_S
    while not os.path.exists(log_path) and time.time() < deadline:
        time.sleep(0.05)
    check(os.path.exists(log_path), "SIGHUP reopened the log file")
    expect(c.get("/readyz"), 200, what="after rotation")
    # its access line too comes after the response: wait for it (in either file)
    deadline = time.time() + TIMEOUT_S
    while ('"route":"/readyz"' not in open(log_path).read() + open(log_path + ".1").read()
           and time.time() < deadline):
        time.sleep(0.05)
    new = open(log_path).read()
    old = open(log_path + ".1").read()
    check('"route":"/readyz"' in new and '"route":"/readyz"' not in old, "new lines go to the new file")
    check('"route":"/healthz"' in old, "old lines stay in the old file")
    check(server.proc.poll() is None, "SIGHUP does not stop the server")


def test_request_timeout():
    """--request-timeout-ms 1: a full batch waits longer than that for the writer, so it
    is answered 503 request_timeout; its command still commits (the Idempotency-Key
    then replays the real result) and the server stays healthy."""
    import json
    server = Server()
    try:
        server.start()
        expect(server.client().post("/v1/accounts", {"accounts": [account("x"), account("y")]}), 200,
               what="accounts")
        server.stop()
        server.start(extra_args=["--request-timeout-ms", "1"])
        c = server.client()
        timed_out = None
        for attempt in range(6):
            batch = [transfer("to-%d-%d" % (attempt, i), "x", "y", 1) for i in range(8189)]
            body = json.dumps({"transfers": batch}).encode()
            r = c.post("/v1/transfers", raw=body, headers={"Idempotency-Key": "to-%d" % attempt})
            if r.status == 503:
                expect(r, 503, "request_timeout", "timed out")
                check(r.headers.get("retry-after") == "1", "Retry-After on request_timeout")
                timed_out = (attempt, body)
                break
            expect(r, 200, what="batch within the timeout")
        check(timed_out is not None, "no request_timeout in 6 full batches with a 1 ms timeout")
        attempt, body = timed_out
        deadline = time.time() + TIMEOUT_S
        replay = c.post("/v1/transfers", raw=body, headers={"Idempotency-Key": "to-%d" % attempt})
        while replay.status == 409 and time.time() < deadline:  # in progress: the batch still commits
            time.sleep(0.02)
            replay = c.post("/v1/transfers", raw=body, headers={"Idempotency-Key": "to-%d" % attempt})
        expect(replay, 200, what="the timed-out batch committed and replays")
        check(all(x["status"] == "created" for x in replay.json["results"]), "all created")
        expect(c.get("/v1/transfers/to-%d-8188" % attempt), 200, what="last transfer is there")
        expect(c.get("/healthz"), 200, what="healthy after timeouts")
        check(server.stop() == 0, "exit 0 after timeouts")
    finally:
        server.close()


def main():
    server = Server()
    try:
        log_path = os.path.join(server.dir, "paycore.log")
        server.extra_args = ["--log-file", log_path]
        server.start()
        # the server logs to the file: find the port there
        test_metrics(server)
        test_sighup(server)
        check(server.stop() == 0, "exit 0")
        server.extra_args = ["--metrics-auth"]
        server.start()
        expect(server.client(key="").get("/metrics"), 401, "unauthenticated", "metrics needs a key")
        expect(server.client().get("/metrics"), 200, what="metrics with a key")
        expect(server.client(key="").get("/healthz"), 200, what="healthz stays open")
    finally:
        server.close()
    test_request_timeout()
    print("api ops: ok")


if __name__ == "__main__":
    main()
