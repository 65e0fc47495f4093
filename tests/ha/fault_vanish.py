"""Goal: a PostgreSQL server that vanishes (power loss, a partition: no answer at all,
no reset) fails paycore's writer within the TCP user timeout and keepalives paycore
sets by default (limits.h STORE_PG_TCP_USER_TIMEOUT_MS), so that it exits and its
restart can find a new primary; without them the writer waits for the kernel's
retransmissions, about 15 minutes.
Method: a throwaway PostgreSQL 15 listening on a loopback TCP port, paycore serving on
it with a URL that sets no timeouts of its own; an iptables rule drops every packet to
and from that port while a transfer is sent; paycore must exit 1 (store_failed) within
VANISH_BOUND_S. Run by `make test-faults` only: it changes the host's firewall (one
rule on one loopback port, removed at the end), which make test leaves alone."""
import os
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "api"))
sys.path.insert(0, os.path.join(HERE, "..", "store"))
sys.path.insert(0, HERE)
import hacluster  # noqa: E402
import pcapi  # noqa: E402
import pgcluster  # noqa: E402
from pcapi import BIN, TIMEOUT_S, check  # noqa: E402

# STORE_PG_TCP_USER_TIMEOUT_MS (30 s) for the statement in flight, the keepalives of the
# idle connections, and room for a loaded machine; the old behaviour is ~15 minutes.
VANISH_BOUND_S = 180


class TcpCluster(pgcluster.Cluster):
    """pgcluster's cluster, also listening on a loopback TCP port."""

    def start(self):
        self.port = getattr(self, "port", None) or pcapi.free_port()
        options = ("-c listen_addresses=127.0.0.1 -c port=%d -c unix_socket_directories='%s'"
                   " -c max_prepared_transactions=8 -c fsync=on" % (self.port, self.dir))
        self.run("pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "server.log"), "-w", "-t",
                 str(self.timeout_s), "-o", options, "start")
        self.started = True

    def createdb(self, name):
        self.run("createdb", "-h", self.dir, "-p", str(self.port), "-U", pgcluster.USER, name)
        return "postgresql://%s@127.0.0.1:%d/%s" % (pgcluster.USER, self.port, name)


def iptables(action, port):
    for direction in ("--dport", "--sport"):
        subprocess.run(["iptables", action, "INPUT", "-i", "lo", "-p", "tcp", direction, str(port), "-j", "DROP"],
                       check=action == "-I", capture_output=True, timeout=30)


def send_one(port, key):
    """A transfer for the writer to send into the silence (its answer is lost)."""
    try:
        pcapi.Client(port, key).post("/v1/transfers", pcapi.transfer("t1", "a", "b", 5))
    except (ConnectionError, OSError):
        pass


def main():
    if not pgcluster.available() or shutil.which("iptables") is None or os.geteuid() != 0:
        pcapi.missing_input("PostgreSQL 15, iptables and root", "scripts/deps.sh installs postgresql; run as root")
    cluster = TcpCluster()
    try:
        url = cluster.createdb("paycore")
        db = os.path.join(cluster.dir, "node.db")
        out = subprocess.run([BIN, "init", "--db", db, "--store", url], capture_output=True, text=True,
                             timeout=TIMEOUT_S)
        check(out.returncode == 0, "init: " + out.stderr)
        key = out.stdout.strip().split("=", 1)[1]
        server = hacluster.Supervised(db, ["--store", url], name="vanish")
        server.RESTART_DELAY_S = 3600  # one run: its exit is what is measured
        server.wait_ready(TIMEOUT_S * 3)
        client = pcapi.Client(server.port, key)
        for account_id in ("a", "b"):
            pcapi.expect(client.post("/v1/accounts", pcapi.account(account_id)), 201, what=account_id)
        client.close()
        iptables("-I", cluster.port)
        try:
            started = time.time()
            threading.Thread(target=send_one, args=(server.port, key), daemon=True).start()
            hacluster.wait_for("paycore to give up on the vanished server", lambda: server.exits, VANISH_BOUND_S)
            elapsed_s = time.time() - started
        finally:
            iptables("-D", cluster.port)
        code, log_path = server.exits[0]
        log = open(log_path).read()
        check(code == 1 and "store_failed" in log, "exit 1 naming store_failed, got %d:\n%s" % (code, log[-3000:]))
        print("vanish: paycore's writer failed %.1f s after the server went silent" % elapsed_s)
        server.stop()
    finally:
        cluster.close()
    print("ok")


if __name__ == "__main__":
    main()
