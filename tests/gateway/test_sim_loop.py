"""tests/gateway/test_sim_loop.py: one simulator serves every connection at once. Waiting
requests (a simulated latency, a held timeout) and slow or hostile clients (headers or
a body that trickle in, oversized headers) never hold the others: many connections
with a long latency all arrive while every one of them still waits, a
request held by a timeout does not stop others being answered, a stop closes the
held ones at once, and a request whose client left during its latency is still handled. Durable-before-answer across SIGKILL is test_sim_group.py's."""
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from simlib import TIMEOUT_S, Sim, auth_body, check, expect, wait_until  # noqa: E402

AUTH = "/v1/authorizations"
CONNECTIONS = 64
LATENCY_MS = 1000
LATENCY_MS_LONGEST = 600000  # SIM_LATENCY_MS_MAX (include/paycore/limits.h)
GONE_COUNT = 16


def post_all(sim, prefix, amount_base, timeout_s):
    """CONNECTIONS authorizations at once, each on its own connection (keys prefix-<i>);
    returns the threads and the list their answers land in."""
    answers = [None] * CONNECTIONS

    def one(i):
        client = sim.client(timeout_s=timeout_s)
        answers[i] = client.try_post(AUTH, auth_body(amount=amount_base + i), key="%s-%d" % (prefix, i))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(CONNECTIONS)]
    for t in threads:
        t.start()
    return threads, answers


def join_all(threads):
    for t in threads:
        t.join(TIMEOUT_S * 3)
        check(not t.is_alive(), "a request's client is still waiting")


def test_latency_concurrent():
    """CONNECTIONS requests, each with a latency, on their own connections. With a
    latency of LATENCY_MS each is answered once, after its latency, and applied once.
    Then with the longest latency (SIM_LATENCY_MS_MAX, ten minutes) every one of them
    arrives (the simulator records each arrival before its wait) while all still wait:
    a server that waited them out one after another would record the second only ten
    minutes after the first. A stop then closes every waiting one at once. No wall-clock
    bound: a slow machine only makes the arrivals come later."""
    config = {"faults": {"latency_p50_ms": LATENCY_MS, "latency_p99_ms": LATENCY_MS, "latency_max_ms": LATENCY_MS}}
    sim = Sim("card", config=config).start()
    try:
        t0 = time.monotonic()
        threads, answers = post_all(sim, "lat", 100, timeout_s=CONNECTIONS * LATENCY_MS / 1000.0 + TIMEOUT_S)
        join_all(threads)
        for i, answer in enumerate(answers):
            expect(answer, 200, what="request %d" % i)
            check(answer.json["status"] == "approved" and answer.json["amount"] == 100 + i, "%r" % answer)
        check(time.monotonic() - t0 >= LATENCY_MS / 1000.0, "the latency was waited")
        count = sim.one("SELECT count(*) FROM records WHERE idempotency_key LIKE 'lat-%'")[0]
        check(count == CONNECTIONS, "each applied once: %d" % count)

        longest = {"latency_p50_ms": LATENCY_MS_LONGEST, "latency_p99_ms": LATENCY_MS_LONGEST,
                   "latency_max_ms": LATENCY_MS_LONGEST}
        expect(sim.client().post("/v1/admin/faults", longest), 200, what="the longest latency")
        threads, answers = post_all(sim, "wait", 500, timeout_s=LATENCY_MS_LONGEST / 1000.0 + TIMEOUT_S)
        arrived_count = "SELECT count(*) FROM arrivals WHERE key LIKE 'wait-%'"
        wait_until(lambda: sim.one(arrived_count)[0] == CONNECTIONS, "every request arriving while all wait",
                   timeout_s=TIMEOUT_S * 3)
        check(all(answer is None for answer in answers), "none answered during its latency: %r" % answers)
        check(sim.stop() == 0, "stop")
        join_all(threads)
        for i, answer in enumerate(answers):
            check(isinstance(answer, str) and answer.startswith("closed"),
                  "request %d waiting its latency: closed unanswered by the stop, got %r" % (i, answer))
    finally:
        sim.close()


def raw_connection(sim, data):
    """A connection that sent 'data' (a server that refuses it may close it midway)."""
    s = socket.create_connection(("127.0.0.1", sim.port), timeout=TIMEOUT_S)
    try:
        s.sendall(data)
    except ConnectionError:
        pass
    return s


def read_status(s):
    """The status of the answer on a raw connection, or None when it closed unanswered."""
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except (ConnectionError, socket.timeout):
        pass
    return int(data.split(b" ")[1]) if data.startswith(b"HTTP/1.") else None


def test_slow_clients():
    """Clients that stop halfway through their headers or their body, and one whose
    headers are too large, leave the others served; the slow ones are answered once
    their request completes."""
    sim = Sim("card").start()
    try:
        body = b'{"amount":1,"currency":"EUR","card":{"number":"4242424242424242","exp_month":12,' \
               b'"exp_year":2099,"cvc":"123"}}'
        head = b"POST " + AUTH.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" \
               b"Idempotency-Key: slow-body\r\nContent-Length: %d\r\n\r\n" % len(body)
        slow_headers = [raw_connection(sim, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ") for _ in range(8)]
        slow_body = raw_connection(sim, head + body[:10])
        huge = raw_connection(sim, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n")
        huge_status = read_status(huge)
        check(huge_status is None or 400 <= huge_status < 500, "oversized headers refused: %r" % huge_status)
        c = sim.client()
        for i in range(20):
            expect(c.post(AUTH, auth_body(amount=10 + i), key="fast-%d" % i), 200, what="beside slow clients")
        expect(c.get("/healthz"), 200)
        slow_body.sendall(body[10:])
        check(read_status(slow_body) == 200, "the slow body is answered once complete")
        slow_headers[0].sendall(b"1\r\n\r\n")
        check(read_status(slow_headers[0]) == 200, "the slow headers are answered once complete")
        for s in slow_headers + [slow_body, huge]:
            s.close()
        check(sim.one("SELECT count(*) FROM records WHERE idempotency_key = 'slow-body'")[0] == 1, "slow applied")
    finally:
        sim.close()


def arrived(sim, key):
    return sim.rows("SELECT count FROM arrivals WHERE key = ?", (key,)) != []


def test_held_timeout_holds_no_other():
    """A request held by a simulated timeout (30 s) stays unanswered while others are
    answered; a stop closes it without waiting out the hold."""
    config = {"faults": {"timeout_rate": 1.0, "timeout_applied_ratio": 1.0, "timeout_hold_ms": 30000}}
    sim = Sim("card", config=config).start()
    try:
        held = {}

        def hold():
            held["answer"] = sim.client(timeout_s=120).try_post(AUTH, auth_body(amount=5), key="held")

        holder = threading.Thread(target=hold)
        holder.start()
        wait_until(lambda: arrived(sim, "held"), "the held request's arrival")
        c = sim.client()
        expect(c.get("/healthz"), 200)
        expect(c.post("/v1/admin/faults", {}), 200)
        expect(c.post(AUTH, auth_body(amount=6), key="beside"), 200, what="beside a held request")
        check(holder.is_alive(), "the held request is still held")
        check(sim.stop() == 0, "stop")
        holder.join(TIMEOUT_S)
        check(not holder.is_alive(), "the stop closed the held request")
        check(isinstance(held["answer"], str) and held["answer"].startswith("closed"),
              "held: closed unanswered %r" % (held["answer"],))
    finally:
        sim.close()


def auth_request(key, amount):
    """A whole authorization request as bytes, for a raw connection."""
    body = json.dumps(auth_body(amount=amount)).encode()
    return (b"POST " + AUTH.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Idempotency-Key: " + key.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)


def test_client_gone_during_latency():
    """A request whose client closes its connection during the simulated latency is
    handled all the same once the latency is over, whenever the close was read: right
    after the request (often read with it) or once its arrival was recorded. A channel
    applies what arrived; nobody hears the answer, a status inquiry finds it."""
    config = {"faults": {"latency_p50_ms": LATENCY_MS, "latency_p99_ms": LATENCY_MS, "latency_max_ms": LATENCY_MS}}
    sim = Sim("card", config=config).start()
    try:
        keys = []
        for i in range(GONE_COUNT):
            key = "gone-%d" % i
            s = raw_connection(sim, auth_request(key, 200 + i))
            if i % 2 == 1:
                wait_until(lambda: arrived(sim, key), "the arrival of " + key)
            s.close()
            keys.append(key)
        applied = "SELECT count(*) FROM records WHERE kind = 'authorization' AND idempotency_key LIKE 'gone-%'"
        wait_until(lambda: sim.one(applied)[0] >= GONE_COUNT, "every abandoned request handled")
        c = sim.client()
        for i, key in enumerate(keys):
            status = expect(c.get("/v1/status/" + key), 200, what="status of " + key).json
            check(status["found"] and status["response"]["status"] == "approved" and
                  status["response"]["amount"] == 200 + i, "%s: %r" % (key, status))
        check(sim.one(applied)[0] == GONE_COUNT, "each applied once")
    finally:
        sim.close()


def main():
    test_latency_concurrent()
    test_slow_clients()
    test_held_timeout_holds_no_other()
    test_client_gone_during_latency()
    print("ok")


if __name__ == "__main__":
    main()
