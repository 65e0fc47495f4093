"""Goal: paycore on a Patroni cluster (synchronous_mode) follows a failover and loses
no acknowledged transfer, applying none twice.
Method: three etcd members and two PostgreSQL 15 nodes under Patroni on loopback
(hacluster.py); `paycore init` and `paycore serve` with a multi-host URL and
target_session_attrs=read-write, serve under a restart loop as under systemd's
Restart=always. Four clients send transfers, retrying each with the same id until a
definite answer (as documented). The primary is killed outright (SIGKILL to its
Patroni, postmaster and backends at once). paycore's writer connection breaks, the
store fails, the process exits and is restarted; it waits for Patroni to promote the
synchronous standby and serves from it. Then: the new primary is the other node,
transfers are acknowledged after the failover, every acknowledged transfer is there
with its fields (through the API and in the new primary's table), the transfers there
are exactly the ones sent (each at most once), every account's posted balances equal
what those transfers imply, and debits == credits per currency. Finally the killed
node rejoins as a replica (pg_rewind) and paycore still writes."""
import os
import sys
import shutil
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "api"))
sys.path.insert(0, HERE)
import hacluster  # noqa: E402
import haload  # noqa: E402
import pcapi  # noqa: E402
from pcapi import BIN, TIMEOUT_S, check  # noqa: E402

ACCOUNTS = ["a", "b", "c", "d"]
# A restarted paycore waits this long for Patroni to promote a primary (the leader
# key's TTL is hacluster.TTL_S): generous, so that a slow machine does not turn the
# wait into a crash loop.
STORE_WAIT_S = 180


def init_paycore(cluster, node_dir):
    db = os.path.join(node_dir, "node.db")
    out = subprocess.run([BIN, "init", "--db", db, "--store", cluster.url()], capture_output=True, text=True,
                         timeout=TIMEOUT_S * 3)
    check(out.returncode == 0, "paycore init on the Patroni cluster: " + out.stderr)
    return db, out.stdout.strip().split("=", 1)[1]


def create_accounts(port, key):
    for account_id in ACCOUNTS:
        nodes = haload.Nodes([port], key)
        got = haload.send_until_definite(nodes, "POST", "/v1/accounts", pcapi.account(account_id),
                                         time.time() + TIMEOUT_S * 3)
        nodes.close()
        check(got is not None and got[0] == haload.Outcome.APPLIED, "account %s: %r" % (account_id, got))


def sql_ids(cluster, node):
    return set(cluster.psql(node, "paycore", "SELECT id FROM transfers").split())


def failover(cluster, server, load):
    old = cluster.primary()
    check(old is not None, "a primary before the failover")
    load.wait_applied(60, TIMEOUT_S * 6, "before the failover")
    before = load.count()
    old.kill()
    new = cluster.wait_primary(not_node=old)
    check(new is not old, "Patroni promoted the other node")
    load.wait_applied(60, STORE_WAIT_S + TIMEOUT_S * 6, "on the new primary (%d acknowledged before)" % before)
    return old, new


def check_all(cluster, node, port, key, load, what):
    nodes = haload.Nodes([port], key)
    present = haload.check_transfers(nodes, load, what)
    in_table = sql_ids(cluster, node)
    check(set(load.applied) <= in_table, "%s: acknowledged transfers missing from %s's table: %r" % (
        what, node.name, sorted(set(load.applied) - in_table)[:10]))
    check(in_table == set(present), "%s: the table holds transfers nobody sent, or the API hides some: %r" % (
        what, sorted(in_table ^ set(present))[:10]))
    count = int(cluster.psql(node, "paycore", "SELECT count(*) FROM transfers"))
    check(count == len(in_table), "%s: %d rows for %d ids" % (what, count, len(in_table)))
    want = haload.expected_balances(dict((a, [0, 0]) for a in ACCOUNTS), present)
    haload.check_balances(nodes, want, what)
    nodes.close()
    return present


def main():
    missing = hacluster.tools_missing()
    if missing:
        pcapi.missing_input("Patroni, etcd and PostgreSQL 15 (%s)" % ", ".join(missing),
                            "scripts/deps.sh installs Debian's patroni, etcd-server and postgresql")
    cluster = hacluster.Cluster()
    node_dir = tempfile.mkdtemp(prefix="paycore-ha-node-")
    server = load = None
    try:
        db, key = init_paycore(cluster, node_dir)
        server = hacluster.Supervised(db, ["--store", cluster.url()], extra_args=["--store-wait-s", str(STORE_WAIT_S)])
        server.wait_ready(TIMEOUT_S * 3)
        create_accounts(server.port, key)
        load = haload.Transfers([server.port], key, ACCOUNTS, clients=4).start()
        old, new = failover(cluster, server, load)
        load.stop()
        exits = list(server.exits)
        check(exits and exits[0][0] == 1, "paycore exits 1 when its writer's connection breaks: %r" % exits)
        first_log = open(exits[0][1]).read()
        check("the database failed to write" in first_log, "the exit names the failed store:\n" + first_log[-3000:])
        check(len(exits) <= 5, "a restart loop, not one restart that waits for the election: %d exits\n%s" % (
            len(exits), server.logs()))
        present = check_all(cluster, new, server.port, key, load, "after the failover")
        old.start()  # the killed node rejoins as a replica (pg_rewind)
        cluster.wait_sync()
        load.start(prefix="after")
        load.wait_applied(20, TIMEOUT_S * 6, "with the old primary back as a replica")
        load.stop()
        check_all(cluster, cluster.primary(), server.port, key, load, "after the rejoin")
        report = server.sanitizer_reports()
        check(report is None, "sanitizer report: %s" % report)
        print("ha: %d transfers present after the failover, %d paycore restarts" % (len(present), len(exits)))
    except BaseException:
        if server is not None:
            print(server.logs(), file=sys.stderr)
        print(cluster.logs(), file=sys.stderr)
        raise
    finally:
        if load is not None:
            load.stop_event.set()
        if server is not None:
            server.stop()
        cluster.close()
        shutil.rmtree(node_dir, ignore_errors=True)
    print("ok")


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001
        pcapi.fail(repr(e))
