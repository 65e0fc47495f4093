"""Goal: a burst of connections past its limit never hangs a standby's forwarder, which
holds at most API_CONNECTIONS_MAX of them and closes the rest at once.
libmicrohttpd 0.9.75 hands a connection added from our accept thread to a worker whose
count it read without a lock; a worker that then finds itself at its share of the
connection limit returns with its cleanup mutex held and hangs at its next pass, with
every connection it serves. The forwarder's 64 workers each had a share of 4096: a
burst past that many reached it. The accept loop keeps the count itself and starts MHD
with a limit no worker reaches (src/api/accept.c), as for the API's own daemons
(tests/api/test_api_conn_burst.py).
Method: a set of one shard (shardset.py), node A writing it and node B a standby (its
forwarder on its listen address, no per-address limit); rounds in which fresh
connections bring those held to a random count past the limit, a /healthz request on
each (answered by the forwarder itself), then a random part of them closed at once. Each
connection either answers 200 or is closed by B, none stays unanswered; the first
round, on a fresh forwarder, holds exactly the limit; after the rounds B still answers
and forwards a write to A."""
import os
import random
import re
import resource
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import shardset  # noqa: E402
from shardset import pcapi  # noqa: E402
from pcapi import account, check, expect, fail  # noqa: E402
from test_shard_nodes import Node  # noqa: E402

ROUNDS = 4
PAST_MAX = 600     # each round ends up to this many connections past the limit
WAIT_S = 120.0     # generous: a hang shows as no answer at all, load only slows it
REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n"


def connections_max():
    """API_CONNECTIONS_MAX, read from include/paycore/limits.h."""
    with open(os.path.join(HERE, "..", "..", "include", "paycore", "limits.h")) as f:
        m = re.search(r"#define API_CONNECTIONS_MAX (\d+)", f.read())
    check(m is not None, "API_CONNECTIONS_MAX in limits.h")
    return int(m.group(1))


def descriptors_for(count):
    """This process and the servers it starts need 'count' descriptors and some."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = count + 1024
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            fail("this test holds %d connections: raise the hard limit on open files (ulimit -Hn %d, want %d)"
                 % (count, hard, want))
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def answer_of(sock):
    """'ok' (200), 'closed' (B closed it: refused past the limit) or a failure: an
    answer that is not 200, or none within WAIT_S (a hung worker)."""
    try:
        sock.sendall(REQUEST)
    except (BrokenPipeError, ConnectionResetError):
        return "closed"
    data = b""
    sock.settimeout(WAIT_S)
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        return "closed"
    except socket.timeout:
        fail("a connection got no answer and was not closed within %.0f s (a hung worker?)" % WAIT_S)
    if data == b"":
        return "closed"
    check(data.startswith(b"HTTP/1.1 200"), "a connection of the burst answered 200: %r" % data[:60])
    return "ok"


def connect(port):
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
    except socket.timeout:
        fail("a connection to the forwarder was not accepted within %.0f s" % WAIT_S)


def burst_round(port, held, target, first, limit):
    """Opens connections until 'target' are held, asks on each; returns those still open."""
    held += [connect(port) for _ in range(max(0, target - len(held)))]
    outcomes = [answer_of(s) for s in held]
    answered = outcomes.count("ok")
    print("round: held %d, answered %d, closed by the forwarder %d" % (len(held), answered, outcomes.count("closed")))
    check(answered <= limit, "the forwarder holds at most %d connections: %d answered" % (limit, answered))
    if first:
        check(answered == limit, "a fresh forwarder holds exactly its %d connections: %d answered" % (limit, answered))
    open_ones = [s for s, outcome in zip(held, outcomes) if outcome == "ok"]
    for s, outcome in zip(held, outcomes):
        if outcome != "ok":
            s.close()
    return open_ones


def still_answers(b):
    """Once the closes are seen, B answers a fresh connection (a hung worker would not)."""
    deadline = time.time() + WAIT_S
    while True:
        s = connect(b.port)
        outcome = answer_of(s)
        s.close()
        if outcome == "ok":
            return
        check(time.time() < deadline, "the forwarder answers again once the connections closed")
        time.sleep(0.2)


def body(s, rng):
    limit = connections_max()
    descriptors_for(limit + PAST_MAX)
    s.init()
    s.start()
    b = Node(s, "B")
    try:
        b.copy_keys(s.db)
        b.start(standby=True, wait_for="forwarding to the set's writer",
                extra=["--connections-per-ip-max", "0", "--timeout-s", "600"])
        held = []
        for i in range(ROUNDS):
            held = burst_round(b.port, held, limit + rng.randrange(1, PAST_MAX), i == 0, limit)
            held = pcapi.close_random_part(rng, held)
        for sock in held:
            sock.close()
        still_answers(b)
        client = pcapi.Client(b.port, s.admin_key)
        expect(client.post("/v1/accounts", account("after-burst")), 201,
               what="a write forwarded to the writer after the bursts")
        client.close()
        check(b.stop() == 0, "the standby stops cleanly after the bursts")
    except BaseException:
        print("--- node B:\n%s" % b.log()[-3000:], file=sys.stderr)
        raise
    finally:
        b.close()
    check(s.stop() == 0, "the writer stops cleanly")


def main():
    seed = int(os.environ.get("PAYCORE_SEED", random.randrange(1 << 30)))
    print("seed %d (PAYCORE_SEED=<n> replays it)" % seed)
    rng = random.Random(seed)
    shardset.run(lambda s: body(s, rng), count=1, done="forward conn burst: ok")


if __name__ == "__main__":
    main()
