"""tests/events/receiver.py: a real webhook receiver for the events tests: an HTTP
server on a free loopback port, in a thread of the test, that answers each delivery as
the test's policy says (2xx, an error status, a delay, no answer until the client gives
up), records every attempt, verifies signatures with Python's own hmac, and can be
stopped (connections refused) and started again on the same port. Also the helpers
the events tests share. Not a test itself (no test_ prefix)."""
import errno
import hashlib
import hmac
import http.server
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "api"))
from pcapi import TIMEOUT_S, check, expect, fail, free_port  # noqa: E402,F401


def signature_valid(secret, header, body, tolerance_s=300, now=None):
    """The receiver's side of Paycore-Signature, written from the spec alone."""
    parts = [p.strip() for p in header.split(",")]
    t = [p[2:] for p in parts if p.startswith("t=")]
    v1 = [p[3:] for p in parts if p.startswith("v1=")]
    if len(t) != 1 or not v1:
        return False
    expected = hmac.new(secret.encode(), t[0].encode() + b"." + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, v) for v in v1):
        return False
    return abs((now or time.time()) - int(t[0])) <= tolerance_s


class Attempt:
    def __init__(self, arrived, headers, body, status):
        self.at = arrived                 # when the request arrived
        self.answered = time.monotonic()  # when the answer was made
        self.headers = headers
        self.body = body
        self.status = status          # what the receiver answered (0: no answer)
        self.event = json.loads(body)

    @property
    def acked(self):
        return 200 <= self.status < 300


class Receiver:
    """policy(event, attempt_number) -> int status, or ("sleep", seconds, status)."""

    def __init__(self, policy=None):
        self.policy = policy or (lambda event, n: 200)
        self.lock = threading.Lock()
        self.attempts = []
        self.arrivals = {}  # event id -> attempts arrived so far (appended only when answered)
        self.server = None
        self.thread = None
        self.port = free_port()
        self.port_given = False  # once a URL names the port, a restart keeps it
        self.start()

    def url(self, path="/hook"):
        self.port_given = True
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def start(self):
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                arrived = time.monotonic()
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                event = json.loads(body)
                with receiver.lock:  # numbered on arrival: a slow answer may finish after a later retry's
                    n = receiver.arrivals[event["id"]] = receiver.arrivals.get(event["id"], 0) + 1
                answer = receiver.policy(event, n)
                status = answer
                if isinstance(answer, tuple):
                    _, seconds, status = answer
                    time.sleep(seconds)
                with receiver.lock:
                    receiver.attempts.append(Attempt(arrived, dict(self.headers), body, status))
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # paycore gave up waiting: a timeout, as intended

            def log_message(self, *args):
                pass

        self.server = self.listen(Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def listen(self, handler):
        """A port taken since it was drawn (another helper's draw) is drawn again while
        no URL names it; once one does, it is waited for."""
        deadline = time.time() + TIMEOUT_S
        while True:
            try:
                return QuietServer(("127.0.0.1", self.port), handler)
            except OSError as e:
                if e.errno != errno.EADDRINUSE or time.time() > deadline:
                    raise
                if self.port_given:
                    time.sleep(0.1)
                else:
                    self.port = free_port()

    def stop(self):
        """Connections are refused until start()."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def snapshot(self):
        with self.lock:
            return list(self.attempts)

    def acked_ids(self):
        return set(a.event["id"] for a in self.snapshot() if a.acked)

    def wait_acked(self, ids, what, timeout_s=None):
        """Polls until every id in 'ids' was acknowledged at least once."""
        deadline = time.time() + (timeout_s or 6 * TIMEOUT_S)
        while time.time() < deadline:
            missing = set(ids) - self.acked_ids()
            if not missing:
                return
            time.sleep(0.05)
        fail("%s: %d events never acknowledged, e.g. %r" % (what, len(missing), sorted(missing)[:3]))


class QuietServer(http.server.ThreadingHTTPServer):
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # connections paycore drops (a timeout, a SIGKILL) are part of the tests


def all_events(client, query=""):
    """Every event the client may see, oldest first, following has_more."""
    out, after = [], None
    for _ in range(100000):
        path = "/v1/events?limit=100" + query + ("&starting_after=" + after if after else "")
        r = expect(client.get(path), 200, what="list events")
        out += r.json["data"]
        if not r.json["has_more"]:
            return out
        after = r.json["data"][-1]["id"]
    fail("event listing did not end")


def wait_for(condition, what, timeout_s=None):
    deadline = time.time() + (timeout_s or 6 * TIMEOUT_S)
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    fail("timed out waiting for " + what)


def check_order_per_object(attempts, what):
    """No attempt of an object's event before every earlier event of that object was
    acknowledged (or, for dead letters, given up: not the case in these tests)."""
    acked_at = {}
    for a in attempts:
        if a.acked:
            key = (a.event["object_id"], a.event["object_seq"])
            acked_at.setdefault(key, a.answered)
    for a in attempts:
        obj, seq = a.event["object_id"], a.event["object_seq"]
        for earlier in range(1, seq):
            t = acked_at.get((obj, earlier))
            check(t is not None and t <= a.at,
                  "%s: %s seq %d attempted before seq %d was acknowledged" % (what, obj, seq, earlier))


def metric(server, name, labels):
    r = expect(server.client(key="").get("/metrics"), 200, what="metrics")
    for line in r.raw.splitlines():
        if line.startswith(name + "{") and all(l in line for l in labels):
            return float(line.rsplit(" ", 1)[1])
    return None
