"""Goal: the real binary starts only on a sound, writable database it alone writes,
says why when it does not, leaves no file behind after a failed start, keeps every
file it writes to its owner (0600), says not ready while it cannot commit, and stops
with a clear error (exit 1) when a COMMIT fails, losing nothing acknowledged.
Method: `paycore init` / `paycore serve` in temp dirs over loopback. Failed starts: a
port in use, a second server on the same file, a missing, truncated or foreign
file, a read-only directory (as an unprivileged user when the test runs as root), a
lost or foreign signing key; each must exit 1 naming its cause, and the directory
must hold exactly the files it held before. /readyz: another program holds the
file's write lock. A full disk: RLIMIT_FSIZE makes the WAL write fail at COMMIT."""
import os
import resource
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "api"))
from pcapi import BIN, TIMEOUT_S, Server, account, check, expect, fail, transfer  # noqa: E402

NOBODY = 65534
AS_ROOT = os.geteuid() == 0


def listing(directory):
    return sorted(os.listdir(directory))


def serve_fails(db, *extra, user=None, env=None):
    """Runs `paycore serve` that must fail to start; returns its stderr."""
    args = [BIN, "serve", "--db", db, "--listen", "127.0.0.1:0"] + list(extra)
    preexec = None
    if user is not None:
        def preexec():
            os.setgid(user)
            os.setuid(user)
    out = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT_S * 3, preexec_fn=preexec,
                         env=env)
    check(out.returncode == 1, "serve %s: exit %d, want 1: %s" % (extra, out.returncode, out.stderr[-2000:]))
    return out.stderr


def expect_refusal(db, code, cause, *extra, user=None):
    directory = os.path.dirname(db)
    before = listing(directory)
    err = serve_fails(db, *extra, user=user)
    check(code in err, "want %s in: %s" % (code, err[-1500:]))
    check(cause in err, "want %r in: %s" % (cause, err[-1500:]))
    check(listing(directory) == before, "a failed start (%s) left files: %r -> %r" % (code, before, listing(directory)))
    return err


def fresh_db(name="p.db"):
    directory = tempfile.mkdtemp(prefix="paycore-start-")
    db = os.path.join(directory, name)
    out = subprocess.run([BIN, "init", "--db", db], capture_output=True, text=True, timeout=TIMEOUT_S)
    check(out.returncode == 0, "init: " + out.stderr)
    return directory, db


def test_port_in_use():
    directory, db = fresh_db()
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        expect_refusal(db, "address_in_use", "127.0.0.1:%d: Address already in use" % port,
                       "--listen", "127.0.0.1:%d" % port)
    finally:
        taken.close()
        shutil.rmtree(directory)


def test_missing_truncated_foreign():
    directory = tempfile.mkdtemp(prefix="paycore-start-")
    try:
        db = os.path.join(directory, "none.db")
        expect_refusal(db, "store_open_failed", "no such database (run paycore init)")
        check(not os.path.exists(db), "serve created the missing database")
        _, good = fresh_db()
        shutil.copy(good, os.path.join(directory, "cut.db"))
        shutil.rmtree(os.path.dirname(good))
        cut = os.path.join(directory, "cut.db")
        with open(cut, "r+b") as f:
            f.truncate(os.path.getsize(cut) // 2)
        expect_refusal(cut, "store_corrupt", "truncated")
        with open(cut, "r+b") as f:
            f.truncate(60)
        expect_refusal(cut, "store_corrupt", "a truncated database")
        foreign = os.path.join(directory, "foreign.db")
        with open(foreign, "w") as f:
            f.write("just some text, long enough to be read as a header of something " * 4)
        expect_refusal(foreign, "store_not_paycore", "not a paycore database")
    finally:
        shutil.rmtree(directory)


def test_read_only_directory():
    directory, db = fresh_db()
    try:
        if AS_ROOT:
            os.chown(directory, NOBODY, NOBODY)
            for name in os.listdir(directory):
                os.chown(os.path.join(directory, name), NOBODY, NOBODY)
        os.chmod(directory, 0o500)
        expect_refusal(db, "store_read_only", "is not writable", user=NOBODY if AS_ROOT else None)
    finally:
        os.chmod(directory, 0o700)
        shutil.rmtree(directory)


def test_second_server():
    server = Server()
    try:
        server.start()
        err = expect_refusal(server.db, "store_in_use", "database in use by pid %d" % server.proc.pid)
        lines = [line for line in err.splitlines() if "database in use by pid" in line]
        check(len(lines) >= 1, "one clear line naming the pid: %r" % err)
        expect(server.client().get("/readyz"), 200, what="the first server still serves")
    finally:
        server.close()


def test_signing_key():
    server = Server()
    try:
        admin = server.start().client()
        expect(admin.post("/v1/accounts", {"accounts": [account("a"), account("b")]}), 200, what="accounts")
        for i in range(70):  # past the first signed journal checkpoint (64 batches)
            expect(admin.post("/v1/transfers", transfer("k%d" % i, "a", "b", 1)), 201, what="transfer")
        admin.close()
        check(server.stop() == 0, "clean stop")
        key = server.db + ".key"
        saved = os.path.join(server.dir, "saved.key")
        os.rename(key, saved)
        expect_refusal(server.db, "key_file_missing", "restore the key")
        check(not os.path.exists(key), "a new key was made")
        other = os.path.join(server.dir, "other.db")
        subprocess.run([BIN, "init", "--db", other], capture_output=True, timeout=TIMEOUT_S, check=True)
        shutil.copy(other + ".key", key)
        os.chmod(key, 0o600)
        expect_refusal(server.db, "key_mismatch", "does not match")
        os.replace(saved, key)
        admin = server.start().client()
        body = expect(admin.post("/v1/verify", {}), 200, what="verify").json
        check(body.get("ok") is True, "verify after the right key is back: %r" % body)
        admin.close()
    finally:
        server.close()


def mode_of(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def check_modes(directory, what):
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        want = 0o700 if os.path.isdir(path) else 0o600
        check(mode_of(path) == want, "%s: %s is %o, want %o" % (what, name, mode_of(path), want))


def test_file_modes():
    old_umask = os.umask(0o022)  # what a user typically has: paycore must not depend on it
    directory = tempfile.mkdtemp(prefix="paycore-modes-")
    proc = None
    try:
        db = os.path.join(directory, "run.db")
        run = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "run.sh")
        log = open(os.path.join(directory, "run.log"), "w")
        proc = subprocess.Popen(["sh", run, BIN, db, "127.0.0.1:0"], stdout=log, stderr=log)
        log.close()
        deadline = time.time() + TIMEOUT_S
        while time.time() < deadline and "listening" not in open(os.path.join(directory, "run.log")).read():
            check(proc.poll() is None, "make run's script exited: " + open(os.path.join(directory, "run.log")).read())
            time.sleep(0.05)
        os.chmod(os.path.join(directory, "run.log"), 0o600)  # the test's own file
        check(os.path.exists(db + ".first-start.txt"), "first-start file written")
        check_modes(directory, "while serving")
        for name in ("run.db-wal", "run.db-shm", "run.db-index", "run.db.lock", "run.db-risk.db", "run.db.key",
                     "run.db.key.pub"):
            check(os.path.exists(os.path.join(directory, name)), "%s exists while serving" % name)
        proc.send_signal(signal.SIGTERM)
        check(proc.wait(timeout=TIMEOUT_S) == 0, "clean stop")
        proc = None
        check_modes(directory, "after the stop")
        check(os.path.exists(db + "-risk.features"), "risk snapshot written at stop")
    finally:
        os.umask(old_umask)
        if proc is not None:
            proc.kill()
            proc.wait()
        shutil.rmtree(directory)


def wait_ready(client, want_status):
    deadline = time.time() + TIMEOUT_S * 3
    while time.time() < deadline:
        r = client.get("/readyz")
        if r.status == want_status:
            return r
        time.sleep(0.05)
    fail("/readyz did not become %d" % want_status)


def test_readyz_follows_commits():
    server = Server()
    try:
        admin = server.start().client()
        probe = server.client(key="")
        expect(admin.post("/v1/accounts", {"accounts": [account("a"), account("b")]}), 200, what="accounts")
        wait_ready(probe, 200)
        holder = sqlite3.connect(server.db, timeout=TIMEOUT_S, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another program takes the write lock
        r = admin.post("/v1/transfers", transfer("busy", "a", "b", 5))
        check(r.status == 503 and r.code() == "store_busy", "a write while locked: %r" % r)
        r = wait_ready(probe, 503)
        holder.execute("ROLLBACK")
        holder.close()
        wait_ready(probe, 200)  # the writer's probe found the file writable again
        expect(admin.post("/v1/transfers", transfer("busy", "a", "b", 5)), 201, what="the same id after")
        admin.close()
    finally:
        server.close()


def limit_file_size(limit_bytes):
    def preexec():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return preexec


def test_full_disk_at_commit():
    server = Server()
    try:
        server.start()
        server.stop()
        sizes = max(os.path.getsize(os.path.join(server.dir, n)) for n in os.listdir(server.dir))
        args = [BIN, "serve", "--db", server.db, "--listen", "127.0.0.1:0"]
        log_path = os.path.join(server.dir, "full.log")
        log = open(log_path, "w")
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log,
                                preexec_fn=limit_file_size(sizes + 2 * 1024 * 1024))
        log.close()
        port = None
        deadline = time.time() + TIMEOUT_S
        while port is None and time.time() < deadline:
            check(proc.poll() is None, "serve exited early: " + open(log_path).read())
            for line in open(log_path):
                if '"msg":"listening"' in line:
                    port = int(line.split('"port":')[1].split("}")[0].split(",")[0])
            time.sleep(0.02)
        server.port = port
        admin = server.client()
        expect(admin.post("/v1/accounts", {"accounts": [account("a"), account("b")]}), 200, what="accounts")
        acked, refused, n = 0, None, 0
        while refused is None and n < 2000:
            batch = {"transfers": [transfer("f%d-%d" % (n, i), "a", "b", 1, metadata={"pad": "x" * 200})
                                   for i in range(500)]}
            n += 1
            try:
                r = admin.post("/v1/transfers", batch)
            except (ConnectionError, OSError):
                break
            if r.status == 200:
                acked += sum(1 for x in r.json["results"] if x["status"] == "created")
            else:
                refused = r
        check(refused is not None and refused.code() == "store_failed",
              "the failed COMMIT answers store_failed: %r" % refused)
        admin.close()
        code = proc.wait(timeout=TIMEOUT_S * 3)
        text = open(log_path).read()
        check(code == 1, "a failed COMMIT stops the server with exit 1, got %d: %s" % (code, text[-2000:]))
        check("the database failed to write" in text, "the log says why: %s" % text[-2000:])
        admin = server.start().client()
        b = expect(admin.get("/v1/accounts/b"), 200, what="b after the restart").json
        check(b["credits_posted"] >= acked, "acknowledged %d, b holds %d" % (acked, b["credits_posted"]))
        body = expect(admin.post("/v1/verify", {}), 200, what="verify").json
        check(body.get("ok") is True, "verify after the full disk: %r" % body)
        admin.close()
    finally:
        server.close()


def main():
    test_port_in_use()
    test_missing_truncated_foreign()
    test_read_only_directory()
    test_second_server()
    test_signing_key()
    test_file_modes()
    test_readyz_follows_commits()
    test_full_disk_at_commit()
    print("test_start: ok")


if __name__ == "__main__":
    main()
