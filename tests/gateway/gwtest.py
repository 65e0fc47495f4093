"""tests/gateway/gwtest.py: helpers for the gateway's script tests: simulator processes
(`paycore simulator <kind>`) and polling. Not a test itself (no test_ prefix)."""
import json
import os
import re
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../api"))
from pcapi import BIN, TIMEOUT_S, check, fail  # noqa: E402,F401

SIM_BIN = os.environ.get("PAYCORE_SIM_BIN", BIN)


class Sim:
    """One simulator process on a free loopback port."""

    def __init__(self, kind, workdir, extra_args=None, config=None):
        self.kind = kind
        args = [SIM_BIN, "simulator", kind, "--listen", "127.0.0.1:0", "--db", os.path.join(workdir, kind + ".db")]
        if config is not None:
            path = os.path.join(workdir, kind + ".config.json")
            with open(path, "w") as f:
                json.dump(config, f)
            args += ["--config", path]
        self.log_path = os.path.join(workdir, kind + ".log")
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args + (extra_args or []), stdout=subprocess.PIPE, stderr=log, text=True)
        log.close()
        line = self.proc.stdout.readline()
        m = re.match(r"listening=127\.0\.0\.1:(\d+)", line)
        check(m is not None, "simulator did not start: %r (needs `paycore simulator`; log %s)" % (line, self.log_path))
        self.url = "http://127.0.0.1:%s" % m.group(1)

    def call(self, method, path, body=None, headers=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def stop(self):
        self.proc.terminate()
        code = self.proc.wait(timeout=TIMEOUT_S)
        check(code == 0, "simulator %s exit %r (log %s)" % (self.kind, code, self.log_path))


def wait_for(what, predicate):
    """Polls 'predicate' (never a fixed sleep) until true; fails after TIMEOUT_S."""
    deadline = time.time() + TIMEOUT_S
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    fail("timed out waiting for " + what)
