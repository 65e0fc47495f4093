"""Goal: a store URL asking for a writable server (target_session_attrs=read-write, as
for Patroni) while none is writable (a primary being elected) makes `paycore serve`
wait and retry for --store-wait-s with one clear line, not exit at once into a
restart loop; the wait ends by connecting once a server is writable, by a clear
refusal when the bound passes, or by SIGTERM (exit 0). A URL without
target_session_attrs is tried once, as before; a bad bound is refused.
Method: a throwaway PostgreSQL 15 cluster (tests/store/pgcluster.py) made read-only
with default_transaction_read_only (libpq's read-write check refuses it, as it refuses
a standby), then writable again while paycore waits."""
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "api"))
sys.path.insert(0, os.path.join(HERE, "..", "store"))
import pcapi  # noqa: E402
import pgcluster  # noqa: E402
from pcapi import BIN, TIMEOUT_S, check, expect, fail  # noqa: E402

WAITING = '"msg":"store: waiting for a writable server"'


def set_read_only(cluster, on):
    cluster.run("psql", "-h", cluster.dir, "-U", pgcluster.USER, "-d", "postgres", "-v", "ON_ERROR_STOP=1",
                "-c", "SET default_transaction_read_only = off",
                "-c", "ALTER SYSTEM SET default_transaction_read_only = %s" % ("on" if on else "off"),
                "-c", "SELECT pg_reload_conf()")


def serve(db, url, log_path, wait_s):
    log = open(log_path, "w")
    proc = subprocess.Popen([BIN, "serve", "--db", db, "--store", url, "--listen", "127.0.0.1:0",
                             "--store-wait-s", str(wait_s)], stdout=subprocess.DEVNULL, stderr=log)
    log.close()
    return proc


def wait_for_line(proc, log_path, text, what):
    deadline = time.time() + TIMEOUT_S * 3
    while time.time() < deadline:
        log = open(log_path).read()
        if text in log:
            return log
        check(proc.poll() is None, "%s: exited %s early:\n%s" % (what, proc.returncode, log))
        time.sleep(0.05)
    fail("%s: no %r in:\n%s" % (what, text, open(log_path).read()))


def bound_passes(db, url, work):
    """--store-wait-s 2 against a read-only server: one waiting line, then one refusal."""
    log_path = os.path.join(work, "bound.log")
    proc = serve(db, url, log_path, 2)
    code = proc.wait(timeout=TIMEOUT_S * 3)
    log = open(log_path).read()
    check(code == 1, "no writable server within the bound: exit 1, got %d:\n%s" % (code, log))
    check(log.count(WAITING) == 1, "one waiting line, not one per retry:\n" + log)
    check("session is read-only" in log, "the waiting line gives libpq's reason:\n" + log)
    refusals = [line for line in log.splitlines() if "no writable server within 2 s (--store-wait-s)" in line]
    check(len(refusals) == 1 and "store_open_failed" in refusals[0], "one refusal line naming the bound:\n" + log)


def sigterm_ends_wait(db, url, work):
    log_path = os.path.join(work, "sigterm.log")
    proc = serve(db, url, log_path, 600)
    wait_for_line(proc, log_path, WAITING, "the wait before SIGTERM")
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=TIMEOUT_S * 2)
    check(code == 0, "SIGTERM while waiting for a writable server: exit 0, got %d:\n%s" % (
        code, open(log_path).read()))


def becomes_writable(cluster, db, url, key, work):
    """Waiting, then the server turns writable: paycore connects and serves."""
    log_path = os.path.join(work, "writable.log")
    proc = serve(db, url, log_path, 600)
    try:
        wait_for_line(proc, log_path, WAITING, "the wait for a writable server")
        time.sleep(1)  # a few retries while it is read-only (not a timing assertion)
        check(proc.poll() is None, "still waiting while no server is writable:\n" + open(log_path).read())
        set_read_only(cluster, False)
        log = wait_for_line(proc, log_path, '"msg":"listening"', "serving once the server is writable")
        check("store: connected to a writable server after" in log, "says when it connected:\n" + log)
        port = int(log.split('"port":')[1].split("}")[0])
        client = pcapi.Client(port, key)
        expect(client.post("/v1/accounts", pcapi.account("after-wait")), 201, what="a write after the wait")
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        check(proc.wait(timeout=TIMEOUT_S * 2) == 0, "clean stop:\n" + open(log_path).read())
    for marker in pcapi.SANITIZER_MARKERS:
        check(marker not in open(log_path).read(), "sanitizer report:\n" + open(log_path).read()[-6000:])


def one_attempt_without_target(db, work):
    """No target_session_attrs: an unreachable server is refused at once, no wait."""
    url = "postgresql://paycore@127.0.0.1:1/paycore?connect_timeout=5"
    out = subprocess.run([BIN, "serve", "--db", db, "--store", url, "--listen", "127.0.0.1:0",
                          "--store-wait-s", "600"], capture_output=True, text=True, timeout=TIMEOUT_S * 2)
    check(out.returncode == 1 and "cannot connect to" in out.stderr and WAITING not in out.stderr,
          "a plain URL is tried once: %d %s" % (out.returncode, out.stderr))


def bad_values(db, url):
    """A bound that is not a count of seconds, or over STORE_WRITABLE_WAIT_S_MAX, is refused."""
    for value in ("abc", "-1", "1.5", "3601"):
        out = subprocess.run([BIN, "serve", "--db", db, "--store", url, "--listen", "127.0.0.1:0",
                              "--store-wait-s", value], capture_output=True, text=True, timeout=TIMEOUT_S)
        check(out.returncode != 0 and "bad --store-wait-s '%s'" % value in out.stderr and WAITING not in out.stderr,
              "--store-wait-s %s: refused with one line: %d %s" % (value, out.returncode, out.stderr))


def main():
    if not pgcluster.available():
        pcapi.missing_input("PostgreSQL 15 (initdb, pg_ctl in %s)" % pgcluster.PG_BIN,
                            "scripts/deps.sh installs Debian's postgresql; PAYCORE_PG_BIN names another bin dir")
    cluster = pgcluster.Cluster()
    work = cluster.dir
    try:
        plain = cluster.createdb("paycore")
        db = os.path.join(work, "node.db")
        out = subprocess.run([BIN, "init", "--db", db, "--store", plain], capture_output=True, text=True,
                             timeout=TIMEOUT_S)
        check(out.returncode == 0, "init: " + out.stderr)
        key = out.stdout.strip().split("=", 1)[1]
        url = plain + "&target_session_attrs=read-write"
        set_read_only(cluster, True)
        bad_values(db, url)
        bound_passes(db, url, work)
        sigterm_ends_wait(db, url, work)
        becomes_writable(cluster, db, url, key, work)
        one_attempt_without_target(db, work)
    finally:
        cluster.close()
    print("ok")


if __name__ == "__main__":
    main()
