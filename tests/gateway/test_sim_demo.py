"""Goal: `paycore serve --demo` runs the three channel simulators as child processes on
free loopback ports, each answering as its channel, and none outlives the server:
neither a clean stop (SIGTERM) nor a kill -9 of the server leaves one running.
Method: a real server with --demo; the simulators' URLs and pids come from its log
lines ("demo simulator"); their health is asked over HTTP; after the server is gone,
each pid must disappear (polled, never a fixed sleep)."""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from simlib import BIN, TIMEOUT_S, Client, auth_body, check, expect, need_binary, wait_until  # noqa: E402


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def start_server(directory, log_path):
    db = os.path.join(directory, "demo.db")
    if not os.path.exists(db):
        out = subprocess.run([BIN, "init", "--db", db, "--demo"], capture_output=True, text=True, timeout=TIMEOUT_S)
        check(out.returncode == 0, "init: " + out.stderr)
    log = open(log_path, "w")
    proc = subprocess.Popen([BIN, "serve", "--db", db, "--listen", "127.0.0.1:0", "--demo"],
                            stdout=subprocess.DEVNULL, stderr=log)
    log.close()

    def started():
        if proc.poll() is not None:
            check(False, "serve --demo exited: " + open(log_path).read())
        text = open(log_path).read()
        return '"msg":"listening"' in text and text

    text = wait_until(started, "serve --demo to listen")
    sims = {}
    for line in text.splitlines():
        if '"msg":"demo simulator"' in line:
            entry = json.loads(line)
            sims[entry["channel"]] = (entry["url"], entry["pid"])
    check(sorted(sims) == ["bank", "card", "wallet"], "three simulators logged: %r" % sims)
    return proc, sims, db


def check_simulators(sims):
    for channel, (url, pid) in sims.items():
        m = re.match(r"http://127\.0\.0\.1:(\d+)$", url)
        check(m is not None, "loopback URL: %r" % url)
        health = expect(Client(int(m.group(1))).get("/healthz"), 200).json
        check(health["channel"] == channel and alive(pid), "%s answers as itself: %r" % (channel, health))
    card = Client(int(sims["card"][0].rsplit(":", 1)[1]))
    check(expect(card.post("/v1/authorizations", auth_body(), key="demo-1"), 200).json["status"] == "approved",
          "the demo card simulator authorizes")


def main():
    need_binary()
    directory = tempfile.mkdtemp(prefix="paycore-demo-")
    try:
        proc, sims, db = start_server(directory, os.path.join(directory, "serve-1.log"))
        check_simulators(sims)
        check(os.path.exists(os.path.join(db + ".sims", "sim-card.db")), "records beside the database")
        proc.send_signal(signal.SIGTERM)
        check(proc.wait(timeout=TIMEOUT_S) == 0, "serve stops cleanly")
        for channel, (_, pid) in sims.items():
            check(not alive(pid), "%s stopped with the server" % channel)
        proc, sims, db = start_server(directory, os.path.join(directory, "serve-2.log"))
        check_simulators(sims)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=TIMEOUT_S)
        for channel, (_, pid) in sims.items():
            wait_until(lambda: not alive(pid), "the %s simulator to die with its killed server" % channel)
    finally:
        subprocess.run(["rm", "-rf", directory])
    print("ok")


if __name__ == "__main__":
    main()
