"""Goal: `paycore backup` copies a running server's database consistently and the copy
restores: a backup taken while load runs verifies (chain, signatures, every balance);
restoring it in place by the documented steps (docs/operations.md, "Restore") starts a
server whose journal head is the backup's; a backup taken after the load restores to
exactly the same balances and journal head as the original, and the restored node
goes on committing with the same signing key; restored on a fresh machine (an empty
directory) from the files `backup --with-key` wrote, a node whose vault holds keys and
which has a webhook endpoint starts and has its endpoint. Bad arguments change nothing.
Method: a real `paycore serve` under `paycore load`, backups with the CLI, restores by
copying files as an operator would, compared over HTTP."""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../api"))
from pcapi import BIN, TIMEOUT_S, Server, all_accounts, check, expect, transfer  # noqa: E402


def run(*args, timeout=TIMEOUT_S * 3):
    return subprocess.run([BIN] + list(args), capture_output=True, text=True, timeout=timeout)


def backup(db, out, *extra):
    r = run("backup", "--db", db, "--out", out, *extra)
    check(r.returncode == 0, "backup %s: %s %s" % (out, r.stdout, r.stderr))
    head = re.search(r"^verify ok batches=(\d+) .* head_hash=([0-9a-f]{64})$", r.stdout, re.M)
    check(head is not None, "backup prints the verify line: %r" % r.stdout)
    check(os.stat(out).st_mode & 0o777 == 0o600, "the copy is 0600")
    return int(head.group(1)), head.group(2)


def state(server):
    admin = server.client()
    v = expect(admin.post("/v1/verify", {}), 200, what="verify").json
    check(v["ok"] is True, "verify on the server: %r" % v)
    fields = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")
    balances = {a["id"]: tuple(a[f] for f in fields) for a in all_accounts(admin)}
    return v["batches"], v["head_hash"], balances


def restore(copy, db):
    """docs/operations.md, Restore: the server is stopped; derived and stale files go."""
    for suffix in ("-wal", "-shm", "-index", "-index-wal", "-index-shm", "-risk.db-wal", "-risk.db-shm", "-risk.features"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    shutil.copyfile(copy, db)
    for suffix in ("-risk.db", ".key.pub", ".key", ".vault-key", ".webhook-key", ".idkey", "-risk.db.id-key"):
        if os.path.exists(copy + suffix):
            shutil.copyfile(copy + suffix, db + suffix)
    for path in (db, db + "-risk.db", db + ".key", db + ".vault-key", db + ".webhook-key", db + ".idkey",
                 db + "-risk.db.id-key"):
        if os.path.exists(path):
            os.chmod(path, 0o600)


def test_fresh_machine(copy, admin_key, want):
    """The documented restore into an empty directory: only the backup's files."""
    fresh = Server()
    try:
        for name in os.listdir(fresh.dir):
            os.remove(os.path.join(fresh.dir, name))
        restore(copy, fresh.db)
        fresh.admin_key = admin_key
        fresh.start()
        batches, head, balances = state(fresh)
        check((batches, head, balances) == want, "a fresh-machine restore has the backup's head and balances")
        listed = expect(fresh.client().get("/v1/webhook-endpoints"), 200, what="endpoints").json["data"]
        check(len(listed) == 1 and listed[0]["url"] == "http://127.0.0.1:1/hook", "the endpoint is back: %r" % listed)
    finally:
        fresh.close()


def test_bad_arguments(server):
    r = run("backup", "--db", server.db, "--out", server.db)
    check(r.returncode == 2, "--out equal to --db is refused: %d" % r.returncode)
    r = run("backup", "--db", server.db)
    check(r.returncode == 2, "--out is required")
    missing = os.path.join(server.dir, "missing.db")
    r = run("backup", "--db", missing, "--out", os.path.join(server.dir, "x.db"))
    check(r.returncode == 1 and "store_open_failed" in r.stderr, "a missing database: %r" % r.stderr)
    check(not os.path.exists(os.path.join(server.dir, "x.db")), "nothing written for a failed backup")


def main():
    server = Server()
    try:
        server.start()
        test_bad_arguments(server)
        admin = server.client()
        # a webhook endpoint: its secret is sealed with <db>.webhook-key (the vault's key,
        # <db>.vault-key, wraps the card data keys made at the first start)
        expect(admin.post("/v1/webhook-endpoints", {"url": "http://127.0.0.1:1/hook", "events": ["transfer.posted"]}),
               201, what="webhook endpoint")
        load = subprocess.Popen([BIN, "load", "--url", "http://127.0.0.1:%d" % server.port, "--key", server.admin_key,
                                 "--concurrency", "8", "--duration-s", "600", "--accounts", "200"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + TIMEOUT_S
        while expect(admin.get("/v1/stats?history_s=0"), 200).json["writer"]["transfers_committed_total"] < 500:
            check(time.time() < deadline and load.poll() is None, "load did not start committing")
            time.sleep(0.05)
        under_load = os.path.join(server.dir, "under-load.db")
        batches1, head1 = backup(server.db, under_load)
        check(load.poll() is None, "the load still ran when the backup ended (an online copy)")
        load.send_signal(signal.SIGINT)  # the load runs until stopped: it still reports
        out, err = load.communicate(timeout=TIMEOUT_S * 3)
        check(load.returncode == 0, "load: %s %s" % (out, err))
        committed = int(re.search(r" transfers=(\d+)", out).group(1))
        check(batches1 < state(server)[0], "the first backup was taken while the load committed")

        idle = os.path.join(server.dir, "idle.db")
        batches2, head2 = backup(server.db, idle, "--with-key")
        batches0, head0, balances0 = state(server)
        check((batches2, head2) == (batches0, head0), "an idle backup has the server's head")
        check(len(balances0) == 200 and committed > 0, "the load's accounts are there")
        for suffix in (".key", ".vault-key", ".webhook-key", ".idkey", "-risk.db.id-key"):
            check(os.stat(idle + suffix).st_mode & 0o777 == 0o600, "--with-key copies %s, 0600" % suffix)
            check(open(idle + suffix, "rb").read() == open(server.db + suffix, "rb").read(), "%s copied" % suffix)
        check(not os.path.exists(under_load + ".vault-key"), "without --with-key no secret is copied")
        r = run("verify", "--db", under_load, "--pubkey", under_load + ".key.pub")
        check(r.returncode == 0 and head1 in r.stdout, "paycore verify on the copy: %s" % r.stdout)
        server.stop()
        test_fresh_machine(idle, server.admin_key, (batches0, head0, balances0))

        # restore the idle backup in place: same balances, same head, and the node goes on
        restore(idle, server.db)
        server.start()
        batches, head, balances = state(server)
        check((batches, head) == (batches0, head0), "restored head %s/%d, want %s/%d" % (head, batches, head0, batches0))
        check(balances == balances0, "restored balances equal the original's")
        some = sorted(balances0)[:2]
        expect(server.client().post("/v1/transfers", transfer("after-restore", some[0], some[1], 1)), 201, what="commit after restore")
        check(state(server)[0] > batches0, "the chain goes on after the restore (and verifies)")
        server.stop()

        # roll back to the backup taken under load: its head, verified
        restore(under_load, server.db)
        shutil.copyfile(idle + ".key", server.db + ".key")  # the signing key is kept apart (--with-key)
        server.start()
        batches, head, _ = state(server)
        check((batches, head) == (batches1, head1), "under-load restore head %s/%d, want %s/%d" % (head, batches, head1, batches1))
    finally:
        server.close()
    print("4 passed, 0 failed")


if __name__ == "__main__":
    main()
