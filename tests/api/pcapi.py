"""tests/api/pcapi.py: helpers for the API tests: a real `paycore serve` on a free
loopback port with a temporary database, and a small HTTP client (http.client).
Not a test itself (no test_ prefix). Every `paycore serve` started here serves on the
default, paycore's own HTTP engine; with PAYCORE_HTTP_MHD=1 in the environment (it
inherits the variable, the flag's) on libmicrohttpd (--http-mhd): ctest's api-mhd/
entries run the suites that way."""
import http.client
import json
import errno
import fcntl
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BIN = os.environ.get("PAYCORE_BIN", os.path.join(os.path.dirname(__file__), "../../build/paycore"))
SANITIZED = os.environ.get("PAYCORE_SANITIZED") == "1"
# The servers started here run on paycore's own HTTP engine (not libmicrohttpd): for
# the few checks of what only the engine does (a refused chunked body answered early).
HTTP_ENGINE = os.environ.get("PAYCORE_HTTP_MHD", "0") in ("", "0")
TIMEOUT_S = 60 if SANITIZED else 20
# A start waits longer: a server loads its idempotency index (or recovers) before it
# listens, and on a machine shared by many builds that alone has taken over 20 s.
START_TIMEOUT_S = 4 * TIMEOUT_S
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "WARNING: ThreadSanitizer", "ERROR: LeakSanitizer",
                     "runtime error:")


def fail(message):
    print("FAIL " + message, file=sys.stderr)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def missing_input(what, how):
    """An input the test needs is absent: under CI (env CI set) a failure; elsewhere
    exit 77, which CTest reports as "Skipped" (never "Passed"), saying how to provide it."""
    if os.environ.get("CI"):
        fail("missing input under CI: %s (%s)" % (what, how))
    print("MISSING INPUT (not run): %s; %s" % (what, how))
    sys.exit(77)


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Ports the helpers hand to servers that bind them later are drawn below the kernel's
# ephemeral range (32768-60999 on Debian): a port bind(0) returns is one the kernel may
# meanwhile give to another test's outgoing connection, and the server then fails to
# start (lost a CI run). Below that range only another helper's draw can take it.
PORT_LOW = 20000
PORT_HIGH = max(PORT_LOW + 1000, min(32000, _ephemeral_low() - 1))
# its own generator: a test that seeds the module's (PAYCORE_SEED replays) neither
# changes its sequence by drawing ports nor draws the same ports as another such test
_port_random = random.Random(os.urandom(16))
# A port handed out is not bound until its server starts, so a bind test alone lets the
# same port go twice: to two etcd members of one cluster (lost a CI run), or to two
# tests running side by side. So a port goes at most once in a process, and is claimed
# across processes by an exclusive lock on a file named after it, held until this
# process exits (the kernel drops it then, so a killed test leaves no stale claim).
PORT_CLAIM_DIR = os.path.join(tempfile.gettempdir(), "paycore-test-port-claims")
_ports_handed_out = set()
_port_claims = []


def _claim_port(port):
    """True if no other live test process holds `port`; this one then holds it."""
    os.makedirs(PORT_CLAIM_DIR, exist_ok=True)
    fd = os.open(os.path.join(PORT_CLAIM_DIR, str(port)), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    _port_claims.append(fd)
    return True


def free_port():
    """A loopback TCP port outside the ephemeral range that nothing is bound to now,
    never handed out before by this process nor held by another test process."""
    for _ in range(400):
        port = _port_random.randint(PORT_LOW, PORT_HIGH)
        if port in _ports_handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError as e:
                if e.errno != errno.EADDRINUSE:
                    raise
                continue
        if not _claim_port(port):
            continue
        _ports_handed_out.add(port)
        return port
    raise RuntimeError("no free loopback port in %d-%d" % (PORT_LOW, PORT_HIGH))


# PAYCORE_TEST_PG_HOST: run the servers on PostgreSQL, a new database each, on the
# cluster whose Unix socket is in that directory (tests/store/test_pg_store.py sets it).
PG_HOST = os.environ.get("PAYCORE_TEST_PG_HOST")
PG_BIN = os.environ.get("PAYCORE_PG_BIN", "/usr/lib/postgresql/15/bin")


def pg_database_new():
    """A new empty database on PG_HOST's cluster; its URL."""
    name = "t_%d_%d" % (os.getpid(), int(time.time() * 1e6) % 10**9)
    argv = [os.path.join(PG_BIN, "createdb"), "-h", PG_HOST, "-U", "paycore", name]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S)
    check(out.returncode == 0, "createdb: " + out.stderr)
    return "postgresql://paycore@/%s?host=%s" % (name, PG_HOST)


class Server:
    """One paycore database and (re)startable server process."""

    # the tests' webhook receivers listen on loopback, which paycore refuses by default
    webhook_args = ["--webhook-private-ok"]

    def __init__(self, demo=False, extra_args=None, webhook_private_ok=True):
        self.dir = tempfile.mkdtemp(prefix="paycore-api-")
        self.db = os.path.join(self.dir, "api.db")
        self.extra_args = extra_args or []
        if not webhook_private_ok:
            self.webhook_args = []
        self.proc = None
        self.port = None
        self.log_path = None
        self.starts = 0
        self.store_args = ["--store", pg_database_new()] if PG_HOST else []
        out = subprocess.run([BIN, "init", "--db", self.db] + self.store_args + (["--demo"] if demo else []),
                             capture_output=True, text=True, timeout=TIMEOUT_S)
        check(out.returncode == 0, "init failed: " + out.stderr)
        lines = out.stdout.splitlines()
        check(len(lines) == 1 and lines[0].startswith("admin_key="),
              "init must print exactly one admin_key= line, got %r" % out.stdout)
        self.admin_key = lines[0][len("admin_key="):]

    def start(self, extra_args=None):
        self.starts += 1
        self.log_path = os.path.join(self.dir, "serve-%d.log" % self.starts)
        log = open(self.log_path, "w")
        args = [BIN, "serve", "--db", self.db, "--listen", "127.0.0.1:0"] + self.store_args + self.webhook_args
        args += self.extra_args + (extra_args or [])
        watch = self.log_path
        if "--log-file" in args:
            watch = args[args.index("--log-file") + 1]
            if os.path.exists(watch):
                os.remove(watch)
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log)
        log.close()
        deadline = time.time() + START_TIMEOUT_S
        while time.time() < deadline:
            if self.proc.poll() is not None:
                fail("server exited early: " + open(self.log_path).read())
            if not os.path.exists(watch):
                time.sleep(0.02)
                continue
            for line in open(watch):
                m = re.search(r'"msg":"listening".*"port":(\d+)', line)
                if m:
                    self.port = int(m.group(1))
                    return self
            time.sleep(0.02)
        fail("server did not start")

    def stop(self, sig=signal.SIGTERM):
        if self.proc is None:
            return 0
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            fail("server did not stop on signal %d" % sig)
        self.proc = None
        self.check_sanitizers()
        if code < 0 and code != -sig:
            # died of another signal (an abort): what it said last names the cause
            print("server died of signal %d; its log ends:\n%s" % (-code, self.log_tail()), file=sys.stderr)
        return code

    def log_tail(self, lines=30):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError as e:
            return "(log unreadable: %s)" % e

    def check_sanitizers(self):
        """A sanitizer report in the server's log fails the test, whatever its exit code."""
        log = self.log()
        for marker in SANITIZER_MARKERS:
            check(marker not in log, "sanitizer report in the server log:\n" + log[-6000:])

    def log(self):
        return open(self.log_path).read() if self.log_path else ""

    def close(self):
        if self.proc is not None:
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def client(self, key=None):
        return Client(self.port, self.admin_key if key is None else key)

    def store_location_args(self):
        """The store for `paycore verify`: --store URL on PostgreSQL, else --db FILE."""
        return self.store_args if self.store_args else ["--db", self.db]


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.raw = body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def code(self):
        if isinstance(self.json, dict) and isinstance(self.json.get("error"), dict):
            return self.json["error"].get("code")
        return None

    def __repr__(self):
        return "%d %s" % (self.status, self.raw[:300])


class Client:
    def __init__(self, port, key):
        self.port = port
        self.key = key
        self.conn = None

    def request(self, method, path, body=None, headers=None, raw=None, content_type="application/json"):
        hdrs = {}
        if self.key:
            hdrs["Authorization"] = "Bearer " + self.key
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None and content_type:
            hdrs["Content-Type"] = content_type
        hdrs.update(headers or {})
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT_S)
            try:
                self.conn.request(method, path, body=data, headers=hdrs)
                resp = self.conn.getresponse()
                payload = resp.read().decode("utf-8", "replace")
                result = Response(resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), payload)
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                return result
            except (ConnectionError, http.client.HTTPException):
                self.close()
                if attempt == 1:
                    raise
        return None

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def expect(resp, status, code=None, what=""):
    check(resp.status == status, "%s: want %d, got %r" % (what, status, resp))
    if code is not None:
        check(resp.code() == code, "%s: want code %s, got %r" % (what, code, resp))
    check("x-request-id" in resp.headers, "%s: no X-Request-Id" % what)
    return resp


def account(id, currency="USD", **kw):
    body = {"id": id, "currency": currency, "code": 10}
    body.update(kw)
    return body


def transfer(id, debit, credit, amount, currency="USD", **kw):
    body = {"id": id, "debit_account_id": debit, "credit_account_id": credit, "amount": amount,
            "currency": currency, "code": 1}
    body.update(kw)
    return body


def all_accounts(client):
    """Every account, following has_more."""
    out, after = [], None
    for _ in range(10000):
        path = "/v1/accounts?limit=100" + ("&starting_after=" + after if after else "")
        resp = expect(client.get(path), 200, what="list accounts")
        out += resp.json["data"]
        if not resp.json["has_more"]:
            return out
        after = resp.json["data"][-1]["id"]
    fail("account listing did not end")


def close_random_part(rng, socks):
    """Closes a random part (half or more) of 'socks' at once, in random order, so that
    the descriptors a server frees come back mixed; returns those left open."""
    rng.shuffle(socks)
    keep = rng.randrange(0, len(socks) // 2)
    for s in socks[keep:]:
        s.close()
    return socks[:keep]


def check_conserved(client, what):
    """Per currency: sum of debits_posted == sum of credits_posted, pending too."""
    sums = {}
    for a in all_accounts(client):
        s = sums.setdefault(a["currency"], [0, 0, 0, 0])
        s[0] += a["debits_posted"]
        s[1] += a["credits_posted"]
        s[2] += a["debits_pending"]
        s[3] += a["credits_pending"]
    for currency, s in sums.items():
        check(s[0] == s[1], "%s: %s debits_posted %d != credits_posted %d" % (what, currency, s[0], s[1]))
        check(s[2] == s[3], "%s: %s debits_pending %d != credits_pending %d" % (what, currency, s[2], s[3]))
    return sums
