"""tests/gateway/simlib.py: helpers for the channel simulator tests: a real
`paycore simulator <kind>` process on a free loopback port with a temporary record,
a small HTTP client (http.client), the record read with sqlite3, and a callback
receiver (http.server in a thread). Not a test itself (no test_ prefix)."""
import hashlib
import hmac
import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

BIN = os.environ.get("PAYCORE_BIN", os.path.join(os.path.dirname(__file__), "../../build/paycore"))
SANITIZED = os.environ.get("PAYCORE_SANITIZED") == "1"
TIMEOUT_S = 60 if SANITIZED else 20

CARD_OK = "4242424242424242"
CARD_3DS = "4000002760003184"
FORCING = {"00": "4000000000000002", "05": "4000000000000051", "14": "4000000000000143",
           "51": "4000000000000515", "54": "4000000000000549", "57": "4000000000000572",
           "61": "4000000000000614", "91": "4000000000000911", "96": "4000000000000960"}


def need_binary():
    """A test without its binary fails and says how to provide it."""
    if not os.access(BIN, os.X_OK):
        print("FAIL no paycore binary at %s: run through ctest (it sets PAYCORE_BIN) or set "
              "PAYCORE_BIN=/path/to/build/paycore" % BIN, file=sys.stderr)
        sys.exit(1)


def fail(message):
    print("FAIL " + message, file=sys.stderr)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def wait_until(predicate, what, timeout_s=TIMEOUT_S):
    """Polls 'predicate' until true; fails after timeout_s (never a timed assertion)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    fail("timed out waiting for " + what)


def luhn_complete(prefix):
    """prefix + the Luhn check digit."""
    total = 0
    for i, ch in enumerate(reversed(prefix)):
        digit = int(ch)
        if i % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return prefix + str((10 - total % 10) % 10)


def auth_body(number=CARD_OK, amount=1999, currency="EUR", **kw):
    body = {"amount": amount, "currency": currency,
            "card": {"number": number, "exp_month": 12, "exp_year": 2099, "cvc": "123"}}
    body.update(kw)
    return body


class Response:
    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers
        self.raw = raw
        try:
            self.json = json.loads(raw) if raw else None
        except ValueError:
            self.json = None

    def code(self):
        if isinstance(self.json, dict) and isinstance(self.json.get("error"), dict):
            return self.json["error"].get("code")
        return None

    def field(self):
        if isinstance(self.json, dict) and isinstance(self.json.get("error"), dict):
            return self.json["error"].get("field")
        return None

    def __repr__(self):
        return "%d %s" % (self.status, self.raw[:300])


class Sim:
    """One simulator process and its temporary directory (record, reports, config)."""

    def __init__(self, kind, config=None, data=None, args=None, directory=None, secret=None):
        self.kind = kind
        self.dir = directory or tempfile.mkdtemp(prefix="paycore-sim-")
        self.db = os.path.join(self.dir, "sim-%s.db" % kind)
        self.args = list(args or [])
        self.secret = secret
        self.proc = None
        self.port = None
        if config is not None:
            self.config_path = os.path.join(self.dir, "config.json")
            with open(self.config_path, "w") as f:
                json.dump(config, f)
            self.args += ["--config", self.config_path]
        if data is not None:
            self.data_path = os.path.join(self.dir, "data.json")
            with open(self.data_path, "w") as f:
                json.dump(data, f)
            self.args += ["--data", self.data_path]
        if kind == "bank" and secret is None and "--callback-secret" not in self.args:
            self.secret = "test-secret-" + kind
        if self.secret is not None:
            self.args += ["--callback-secret", self.secret]

    def command(self):
        need_binary()
        # the transport: the simulator's default (paycore's HTTP engine), or libmicrohttpd
        # when PAYCORE_SIM_HTTP_MHD=1 is in the environment (the ctest entries with .mhd)
        return [BIN, "simulator", self.kind, "--listen", "127.0.0.1:0", "--db", self.db] + self.args

    def start(self):
        self.log_path = os.path.join(self.dir, "sim.log")
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=log, text=True)
        log.close()
        line = self.proc.stdout.readline()
        if not line.startswith("listening=127.0.0.1:"):
            self.proc.wait(timeout=TIMEOUT_S)
            fail("simulator did not start: %r %s" % (line, open(self.log_path).read()))
        self.port = int(line.strip().rsplit(":", 1)[1])
        return self

    def stop(self, sig=signal.SIGTERM):
        if self.proc is None:
            return 0
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            fail("simulator did not stop on signal %d" % sig)
        self.proc.stdout.close()
        self.proc = None
        return code

    def close(self):
        """Stops the process (it must exit 0: a sanitizer finding fails the test) and
        removes its directory."""
        code = self.stop() if self.proc is not None else 0
        log = self.log() if os.path.exists(getattr(self, "log_path", "")) else ""
        shutil.rmtree(self.dir, ignore_errors=True)
        check(code == 0, "simulator exited %d: %s" % (code, log[-2000:]))
        check("Sanitizer" not in log and "runtime error" not in log, "sanitizer report: " + log[-4000:])

    def log(self):
        return open(self.log_path).read()

    def client(self, api_key=None, timeout_s=None):
        return Client(self.port, api_key, timeout_s)

    def rows(self, sql, params=()):
        """Reads the simulator's own record (the outside truth)."""
        conn = sqlite3.connect("file:%s?mode=ro" % self.db, uri=True, timeout=TIMEOUT_S)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def one(self, sql, params=()):
        rows = self.rows(sql, params)
        check(len(rows) == 1, "want one row for %s %r, got %r" % (sql, params, rows))
        return rows[0]


class Client:
    def __init__(self, port, api_key=None, timeout_s=None):
        self.port = port
        self.api_key = api_key
        self.timeout_s = timeout_s or TIMEOUT_S

    def request(self, method, path, body=None, key=None, raw=None, headers=None, timeout_s=None):
        """One request on a fresh connection; raises on a transport failure."""
        hdrs = {"Content-Type": "application/json"}
        if self.api_key:
            hdrs["Authorization"] = "Bearer " + self.api_key
        if key is not None:
            hdrs["Idempotency-Key"] = key
        hdrs.update(headers or {})
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s or self.timeout_s)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            payload = resp.read().decode("utf-8", "replace")
            return Response(resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), payload)
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, key=None, **kw):
        return self.request("POST", path, body=body, key=key, **kw)

    def try_post(self, path, body=None, key=None, timeout_s=None):
        """A POST whose transport may fail: returns a Response or the exception's class name."""
        try:
            return self.post(path, body, key=key, timeout_s=timeout_s)
        except (socket.timeout, TimeoutError):
            return "timeout"
        except (ConnectionError, http.client.HTTPException, OSError) as e:
            return "closed:" + type(e).__name__


def expect(resp, status, code=None, what=""):
    check(isinstance(resp, Response), "%s: transport failure %r" % (what, resp))
    check(resp.status == status, "%s: want HTTP %d, got %r" % (what, status, resp))
    if code is not None:
        check(resp.code() == code, "%s: want code %s, got %r" % (what, code, resp))
    return resp


def expect_invalid(resp, field, what=""):
    expect(resp, 400, "invalid_request", what)
    check(resp.field() == field, "%s: want field %r, got %r" % (what, field, resp))
    return resp


def verify_signature(header, body, secret):
    """True when a Sim-Signature header signs 'body' (bytes) with 'secret'."""
    parts = dict(p.split("=", 1) for p in header.split(","))
    mac = hmac.new(secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac, parts["v1"])


class Receiver:
    """A callback receiver: answers 'fail_first' deliveries with 500, then 200. Keeps
    every delivery (headers, body) for the test to check."""

    def __init__(self, fail_first=0):
        self.fail_first = fail_first
        self.deliveries = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.deliveries.append((dict(self.headers), body))
                    status = 500 if len(receiver.deliveries) <= receiver.fail_first else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d/callbacks" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def count(self):
        with self.lock:
            return len(self.deliveries)

    def close(self):
        self.server.shutdown()
        self.server.server_close()
