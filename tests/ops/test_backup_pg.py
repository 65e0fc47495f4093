"""Goal: `paycore backup --store URL` copies a running PostgreSQL store consistently and
the copy restores by the documented steps (docs/operations.md, "Backup and restore on
PostgreSQL"): a dump taken while `paycore load` commits holds exactly the journal head
it printed (one snapshot for every table), restores with pg_restore into a new
database, `paycore verify --store` passes on it (chain, signatures, every balance) and
paycore starts on it with balances that conserve money; a dump taken at
rest restores into a fresh database and a fresh node directory (the `--with-key`
files) with the original's balances and journal head, its webhook endpoint, and goes
on committing under the same signing key (the chain continues from the head, and
verifies). The
dump is pg_dump's custom format (pg_restore --list reads it), 0600, and no password
reaches a command line; `--verify-into` restores it into an empty database and verifies
it there in the same command. Bad arguments, a database that is not paycore's and a
--verify-into database that is not empty change nothing.
Method: a throwaway PostgreSQL 15 cluster (tests/store/pgcluster.py), a real `paycore
serve --store URL` under `paycore load`, pg_restore into new databases, compared over
HTTP and with SQL on the journal table."""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "api"))
sys.path.insert(0, os.path.join(HERE, "..", "store"))
import pcapi  # noqa: E402
import pgcluster  # noqa: E402
from pcapi import BIN, TIMEOUT_S, all_accounts, check, check_conserved, expect, transfer  # noqa: E402

NODE_FILES = ("-risk.db", ".key.pub", ".key", ".vault-key", ".webhook-key", "-risk.db.id-key")


def run(*args, env=None):
    return subprocess.run([BIN] + list(args), capture_output=True, text=True, timeout=TIMEOUT_S * 3, env=env)


def db_name(url):
    return re.match(r"postgresql://[^/]*/([^?]+)", url).group(1)


def backup(server, out, *extra):
    """paycore backup of a PostgreSQL store: the printed head, checked against the dump."""
    r = run("backup", "--db", server.db, "--out", out, *server.store_args, *extra)
    check(r.returncode == 0, "backup %s: %s %s" % (out, r.stdout, r.stderr))
    m = re.search(r"^backup ok out=\S+ format=pg_dump_custom bytes=(\d+) elapsed_ms=\d+ head_seq=(\d+) "
                  r"head_hash=([0-9a-f]{64})$", r.stdout, re.M)
    check(m is not None, "backup prints its line: %r" % r.stdout)
    check(os.stat(out).st_mode & 0o777 == 0o600 and os.path.getsize(out) == int(m.group(1)), "the dump is 0600")
    check(not os.path.exists(out + ".tmp"), "no temporary file left")
    listed = subprocess.run([os.path.join(pgcluster.PG_BIN, "pg_restore"), "--list", out], capture_output=True,
                            text=True, timeout=TIMEOUT_S)
    check(listed.returncode == 0 and "TABLE DATA public journal" in listed.stdout, "pg_restore reads the dump")
    if "--verify-into" in extra:
        check(re.search(r"^verify ok batches=\d+ .*head_hash=%s$" % m.group(3), r.stdout, re.M) is not None,
              "--verify-into: the restored copy verifies with the dump's head: %r" % r.stdout)
    return int(m.group(2)), m.group(3)


def journal_head(cluster, name):
    row = cluster.sql(name, "SELECT seq || ' ' || encode(hash, 'hex') FROM journal ORDER BY seq DESC LIMIT 1")
    seq, hash_hex = row.split()
    return int(seq), hash_hex


def restore_database(cluster, dump, name):
    """docs/operations.md: a new database, pg_restore in one transaction."""
    url = cluster.createdb(name)
    r = subprocess.run([os.path.join(pgcluster.PG_BIN, "pg_restore"), "--exit-on-error", "--single-transaction",
                        "--no-owner", "--dbname", url, dump], capture_output=True, text=True, timeout=TIMEOUT_S * 3)
    check(r.returncode == 0, "pg_restore %s: %s" % (dump, r.stderr))
    return url


def restore_node(copy, node_db, secrets_from):
    """The node's own files into an empty directory; the secrets from a --with-key copy."""
    for suffix in NODE_FILES:
        source = copy + suffix if os.path.exists(copy + suffix) else secrets_from + suffix
        if os.path.exists(source):
            shutil.copyfile(source, node_db + suffix)
            os.chmod(node_db + suffix, 0o600 if suffix != ".key.pub" else 0o644)


def verify(server, head):
    """paycore verify on a restored database: chain, signatures, every balance."""
    r = run("verify", *server.store_args, "--pubkey", server.db + ".key.pub")
    check(r.returncode == 0 and r.stdout.startswith("verify ok ") and "head_hash=" + head in r.stdout,
          "paycore verify on the restored copy (head %s): %s %s" % (head, r.stdout, r.stderr))


class RestoredServer(pcapi.Server):
    """A server on a restored database and node directory (no paycore init)."""

    def __init__(self, store_url, admin_key):
        self.dir = tempfile.mkdtemp(prefix="paycore-restored-")
        self.db = os.path.join(self.dir, "node.db")
        self.extra_args, self.proc, self.port, self.log_path, self.starts = [], None, None, None, 0
        self.store_args = ["--store", store_url]
        self.admin_key = admin_key


def restored_server(cluster, dump, name, copy, secrets_from, admin_key, servers, head):
    """The documented restore: database, node files, paycore verify, then start."""
    server = RestoredServer(restore_database(cluster, dump, name), admin_key)
    servers.append(server)
    restore_node(copy, server.db, secrets_from)
    verify(server, head)
    return server.start()


def balances(client):
    fields = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")
    return {a["id"]: tuple(a[f] for f in fields) for a in all_accounts(client)}


def test_bad_arguments(cluster, server, work):
    out = os.path.join(work, "bad.dump")
    r = run("backup", "--db", server.db, "--out", out, "--store", "/tmp/not-a-url")
    check(r.returncode == 2 and "postgres://" in r.stderr, "--store given a file: %d %r" % (r.returncode, r.stderr))
    foreign = cluster.createdb("foreign")
    cluster.sql("foreign", "CREATE TABLE orders(id int)")
    r = run("backup", "--db", server.db, "--out", out, "--store", foreign)
    check(r.returncode == 1 and "store_not_paycore" in r.stderr, "a database not paycore's: %r" % r.stderr)
    r = run("backup", "--db", server.db, "--out", out, *server.store_args, "--pg-bin", os.path.join(work, "nothing"))
    check(r.returncode == 1 and "store_read_failed" in r.stderr and "pg_dump" in r.stderr,
          "pg_dump not found: %r" % r.stderr)
    check(not os.path.exists(out) and not os.path.exists(out + ".tmp"), "nothing written for a failed backup")
    r = run("backup", "--db", server.db, "--out", out, "--verify-into", foreign)
    check(r.returncode == 2 and "--verify-into" in r.stderr, "--verify-into without --store: %r" % r.stderr)
    r = run("backup", "--db", server.db, "--out", out, *server.store_args, "--verify-into", foreign)
    check(r.returncode == 1 and "is not empty" in r.stderr, "--verify-into a database with tables: %r" % r.stderr)
    check(cluster.sql("foreign", "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == "1",
          "a refused --verify-into leaves the database as it was")


def test_password_not_on_command_line(cluster, server, work):
    """A URL with a password: pg_dump gets it in PGPASSWORD; a fake pg_dump records both."""
    fake = os.path.join(work, "fakebin")
    os.mkdir(fake)
    record = os.path.join(work, "argv.txt")
    with open(os.path.join(fake, "pg_dump"), "w") as f:
        f.write("#!/bin/sh\nprintf '%%s\\n' \"$*\" \"PGPASSWORD=$PGPASSWORD\" > %s\nexit 3\n" % record)
    os.chmod(os.path.join(fake, "pg_dump"), 0o755)
    url = server.store_args[1].replace("postgresql://paycore@", "postgresql://paycore:s3cr%27t@")
    r = run("backup", "--db", server.db, "--out", os.path.join(work, "pw.dump"), "--store", url, "--pg-bin", fake)
    check(r.returncode == 1 and "exited 3" in r.stderr, "the fake pg_dump ran and failed: %r" % r.stderr)
    argv, env = open(record).read().splitlines()
    check("s3cr" not in argv and "--format=custom" in argv and "--snapshot=" in argv, "argv: %r" % argv)
    check(env == "PGPASSWORD=s3cr't", "the password in the environment: %r" % env)


# The load runs until the test has its dump and stops it (SIGINT): a fixed short run
# could end before a slow machine's dump did.
LOAD_LONGEST_S = 600


def load_until_committing(server, admin):
    load = subprocess.Popen([BIN, "load", "--url", "http://127.0.0.1:%d" % server.port, "--key", server.admin_key,
                             "--concurrency", "8", "--duration-s", str(LOAD_LONGEST_S), "--accounts", "200"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + TIMEOUT_S
    while expect(admin.get("/v1/stats?history_s=0"), 200).json["writer"]["transfers_committed_total"] < 300:
        check(time.time() < deadline and load.poll() is None, "load did not start committing")
        time.sleep(0.05)
    return load


def main():
    if not pgcluster.available():
        pcapi.missing_input("PostgreSQL 15 (initdb, pg_ctl, pg_dump, pg_restore in %s)" % pgcluster.PG_BIN,
                            "scripts/deps.sh installs Debian's postgresql; PAYCORE_PG_BIN names another bin dir")
    cluster = pgcluster.Cluster()
    pcapi.PG_HOST = cluster.dir
    work = tempfile.mkdtemp(prefix="paycore-pgbackup-")
    servers = []
    try:
        server = pcapi.Server()
        servers.append(server)
        name = db_name(server.store_args[1])
        admin = server.start().client()
        test_bad_arguments(cluster, server, work)
        test_password_not_on_command_line(cluster, server, work)
        expect(admin.post("/v1/webhook-endpoints", {"url": "http://127.0.0.1:1/hook", "events": ["transfer.posted"]}),
               201, what="webhook endpoint")

        load = load_until_committing(server, admin)
        under_load = os.path.join(work, "under-load.dump")
        # pg_dump from PATH (Debian's wrapper) here, from --pg-bin below
        seq1, head1 = backup(server, under_load)
        check(load.poll() is None, "the load still ran when the dump ended (an online copy)")
        load.send_signal(signal.SIGINT)  # load stops early on SIGINT and still reports
        out, err = load.communicate(timeout=TIMEOUT_S * 3)
        check(load.returncode == 0, "load: %s %s" % (out, err))
        check(journal_head(cluster, name)[0] > seq1, "the writer committed after the dump's snapshot")

        idle = os.path.join(work, "idle.dump")
        seq2, head2 = backup(server, idle, "--with-key", "--pg-bin", pgcluster.PG_BIN,
                             "--verify-into", cluster.createdb("verified_idle"))
        check((seq2, head2) == journal_head(cluster, name), "an idle dump holds the database's head")
        want = balances(admin)
        check(len(want) == 200, "the load's accounts are there")
        for suffix in (".key", ".vault-key", ".webhook-key", "-risk.db.id-key"):
            check(os.stat(idle + suffix).st_mode & 0o777 == 0o600, "--with-key copies %s, 0600" % suffix)
        check(not os.path.exists(under_load + ".vault-key"), "without --with-key no secret is copied")
        admin.close()
        server.stop()

        # the dump taken under load: exactly its printed head, and money conserved
        first = restored_server(cluster, under_load, "restored_under_load", under_load, idle, server.admin_key, servers,
                                head1)
        check(journal_head(cluster, "restored_under_load") == (seq1, head1), "the under-load dump's head")
        check_conserved(first.client(), "restored under-load dump")
        first.stop()

        # the dump at rest, on a fresh node from the --with-key files: the same ledger
        fresh = restored_server(cluster, idle, "restored_idle", idle, idle, server.admin_key, servers, head2)
        client = fresh.client()
        check(journal_head(cluster, "restored_idle") == (seq2, head2), "the idle dump's head")
        check(balances(client) == want, "restored balances equal the original's")
        listed = expect(client.get("/v1/webhook-endpoints"), 200, what="endpoints").json["data"]
        check(len(listed) == 1 and listed[0]["url"] == "http://127.0.0.1:1/hook", "the endpoint is back: %r" % listed)
        some = sorted(want)[:2]
        expect(client.post("/v1/transfers", transfer("after-restore", some[0], some[1], 1)), 201,
               what="commit after restore")
        seq3, _ = journal_head(cluster, "restored_idle")
        prev = cluster.sql("restored_idle", "SELECT encode(prev_hash, 'hex') FROM journal WHERE seq = %d" % (seq2 + 1))
        check(seq3 > seq2 and prev == head2, "the chain goes on from the restored head")
        client.close()
        fresh.stop()
        verify(fresh, journal_head(cluster, "restored_idle")[1])
    except Exception:
        for s in servers:
            if s.log_path:
                print(s.log()[-3000:], file=sys.stderr)
        raise
    finally:
        for s in servers:
            s.close()
        cluster.close()
        shutil.rmtree(work, ignore_errors=True)
    print("5 passed, 0 failed")


if __name__ == "__main__":
    main()
