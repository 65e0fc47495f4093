"""tests/ha/hacluster.py: a throwaway high-availability PostgreSQL 15 on loopback for
tests: three etcd members (Debian's etcd-server, Raft) and two PostgreSQL nodes under
Patroni (Debian's patroni) with synchronous_mode, each with its own ports and data
directory in one temporary directory; and `paycore serve` under a restart loop like
systemd's Restart=always (Supervised). Run as root, Patroni and PostgreSQL run as the
'postgres' user (initdb refuses root). Not a test itself."""
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "api"))
import pcapi  # noqa: E402
from pcapi import free_port  # noqa: E402

PG_BIN = os.environ.get("PAYCORE_PG_BIN", "/usr/lib/postgresql/15/bin")
USER = "paycore"
SCOPE = "paycore-ha"
# Patroni's leader key lives TTL_S after its holder's last renewal: a failover takes
# about that long. loop_wait + 2 * retry_timeout must stay below it.
TTL_S, LOOP_WAIT_S, RETRY_TIMEOUT_S = 10, 1, 4
# Waits scale with pcapi.TIMEOUT_S (20 s, 60 s under the sanitizers) like every test's:
# one HTTP probe (a waiting standby answers nothing, so it is short), a process's stop,
# a cluster's start.
HTTP_TIMEOUT_S = pcapi.TIMEOUT_S / 10
STOP_TIMEOUT_S = pcapi.TIMEOUT_S
CLUSTER_TIMEOUT_S = pcapi.TIMEOUT_S * 9


def tools_missing():
    """The commands this harness needs that are not installed (empty when all are)."""
    wanted = [os.path.join(PG_BIN, "initdb"), os.path.join(PG_BIN, "psql"), "etcd", "patroni"]
    return [tool for tool in wanted if shutil.which(tool) is None]


def wait_for(what, predicate, timeout_s):
    """Polls 'predicate' until it returns something true; fails naming 'what'."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pcapi.fail("timed out after %.0f s waiting for %s" % (timeout_s, what))


def http_json(url, timeout_s=HTTP_TIMEOUT_S):
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return json.loads(resp.read())
    except Exception:  # noqa: BLE001 (refused, 503 of a replica, half-started)
        return None


def process_children(pid):
    """Every process whose parent is 'pid' (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(entry))
    return out


def kill_quietly(pid, sig=signal.SIGKILL):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


class Etcd:
    """Three etcd members on loopback, one Raft cluster."""

    def __init__(self, base, members=3):
        self.base = base
        self.names = ["etcd%d" % i for i in range(members)]
        self.client_ports = [free_port() for _ in self.names]
        self.peer_ports = [free_port() for _ in self.names]
        self.procs = []
        initial = ",".join("%s=http://127.0.0.1:%d" % (n, p) for n, p in zip(self.names, self.peer_ports))
        for name, client, peer in zip(self.names, self.client_ports, self.peer_ports):
            data = os.path.join(base, name)
            log = open(os.path.join(base, name + ".log"), "w")
            argv = ["etcd", "--name", name, "--data-dir", data,
                    "--listen-client-urls", "http://127.0.0.1:%d" % client,
                    "--advertise-client-urls", "http://127.0.0.1:%d" % client,
                    "--listen-peer-urls", "http://127.0.0.1:%d" % peer,
                    "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % peer,
                    "--initial-cluster", initial, "--initial-cluster-state", "new",
                    "--initial-cluster-token", "paycore-test-%d" % os.getpid()]
            self.procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))
            log.close()
        wait_for("etcd to elect a leader", self.healthy, pcapi.TIMEOUT_S * 3)

    def healthy(self):
        for proc, port in zip(self.procs, self.client_ports):
            if proc.poll() is not None:
                pcapi.fail("etcd exited %s:\n%s" % (proc.returncode, self.logs()))
            health = http_json("http://127.0.0.1:%d/health" % port)
            if not health or health.get("health") != "true":
                return False
        return True

    def hosts(self):
        return ",".join("127.0.0.1:%d" % p for p in self.client_ports)

    def logs(self):
        return "\n".join(open(os.path.join(self.base, n + ".log")).read()[-2000:] for n in self.names)

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class PatroniNode:
    """One PostgreSQL node under Patroni. kill() is a machine crash: SIGKILL to Patroni,
    the postmaster and every backend at once."""

    def __init__(self, base, name, etcd_hosts):
        self.name = name
        self.dir = os.path.join(base, name)
        os.mkdir(self.dir, 0o700)
        self.data = os.path.join(self.dir, "data")
        self.pg_port = free_port()
        self.rest_port = free_port()
        self.proc = None
        self.starts = 0
        self.config = os.path.join(self.dir, "patroni.yml")
        with open(self.config, "w") as f:
            json.dump(self.settings(etcd_hosts), f, indent=1)  # YAML reads JSON

    def settings(self, etcd_hosts):
        parameters = {"max_prepared_transactions": 8, "max_connections": 200, "wal_log_hints": "on",
                      "synchronous_commit": "on", "fsync": "on", "wal_keep_size": "256MB",
                      "max_wal_senders": 8, "max_replication_slots": 8, "hot_standby": "on"}
        return {
            "scope": SCOPE, "name": self.name,
            "log": {"level": "INFO"},
            "restapi": {"listen": "127.0.0.1:%d" % self.rest_port, "connect_address": "127.0.0.1:%d" % self.rest_port},
            "etcd3": {"hosts": etcd_hosts},
            "bootstrap": {
                "dcs": {"ttl": TTL_S, "loop_wait": LOOP_WAIT_S, "retry_timeout": RETRY_TIMEOUT_S,
                        "maximum_lag_on_failover": 1 << 30, "synchronous_mode": True,
                        "postgresql": {"use_pg_rewind": True, "use_slots": True, "parameters": parameters}},
                "initdb": [{"encoding": "UTF8"}, {"locale": "C"}, "data-checksums"],
                "pg_hba": ["local all all trust", "host replication replicator 127.0.0.1/32 trust",
                           "host all all 127.0.0.1/32 trust"],
            },
            "postgresql": {
                "listen": "127.0.0.1:%d" % self.pg_port, "connect_address": "127.0.0.1:%d" % self.pg_port,
                "data_dir": self.data, "bin_dir": PG_BIN, "pgpass": os.path.join(self.dir, "pgpass"),
                "authentication": {"superuser": {"username": USER, "password": "paycore-test"},
                                   "replication": {"username": "replicator", "password": "paycore-test"},
                                   "rewind": {"username": USER, "password": "paycore-test"}},
                "parameters": {"unix_socket_directories": self.dir},
            },
            "watchdog": {"mode": "off"},
            "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
        }

    def start(self):
        self.starts += 1
        log = open(os.path.join(self.dir, "patroni-%d.log" % self.starts), "w")
        kwargs = {}
        if os.geteuid() == 0:
            kwargs = {"user": "postgres", "group": "postgres", "extra_groups": []}
        env = dict(os.environ, HOME=self.dir)
        self.proc = subprocess.Popen(["patroni", self.config], stdout=log, stderr=subprocess.STDOUT, env=env,
                                     cwd=self.dir, **kwargs)
        log.close()

    def status(self):
        """Patroni's view of this node ({"role": "master"|"replica", ...}) or None."""
        return http_json("http://127.0.0.1:%d/patroni" % self.rest_port)

    def role(self):
        status = self.status()
        if not status or status.get("state") != "running":
            return None
        return "primary" if status.get("role") in ("master", "primary") else status.get("role")

    def postmaster_pid(self):
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                return int(f.readline().strip())
        except (OSError, ValueError):
            return None

    def kill(self):
        """SIGKILL to Patroni and to the postmaster and its children, all at once."""
        pids = []
        if self.proc is not None and self.proc.poll() is None:
            pids.append(self.proc.pid)
        postmaster = self.postmaster_pid()
        if postmaster is not None and os.path.exists("/proc/%d" % postmaster):
            pids += [postmaster] + process_children(postmaster)
        for pid in pids:
            kill_quietly(pid, signal.SIGSTOP)  # none of them acts on the others' deaths
        for pid in pids:
            kill_quietly(pid)
        if self.proc is not None:
            self.proc.wait()
            self.proc = None
        wait_for("%s's postgres to be gone" % self.name,
                 lambda: postmaster is None or not os.path.exists("/proc/%d" % postmaster), pcapi.TIMEOUT_S * 1.5)

    def stop(self):
        """A clean stop: Patroni stops PostgreSQL (fast) and hands over the leader key."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S * 3)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None
        postmaster = self.postmaster_pid()
        if postmaster is not None and os.path.exists("/proc/%d" % postmaster):
            kill_quietly(postmaster, signal.SIGQUIT)

    def logs(self):
        out = []
        for n in range(1, self.starts + 1):
            out.append(open(os.path.join(self.dir, "patroni-%d.log" % n)).read()[-3000:])
        return "\n".join(out)


class Cluster:
    """Three etcd members and two Patroni nodes (synchronous_mode) on loopback."""

    def __init__(self, nodes=2, timeout_s=CLUSTER_TIMEOUT_S):
        self.timeout_s = timeout_s
        self.dir = tempfile.mkdtemp(prefix="paycore-ha-")
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self.etcd = None
        self.nodes = []
        try:
            self.etcd = Etcd(self.dir)
            self.nodes = [PatroniNode(self.dir, "pg%d" % i, self.etcd.hosts()) for i in range(nodes)]
            if os.geteuid() == 0:
                for node in self.nodes:
                    shutil.chown(node.dir, "postgres", "postgres")
            self.nodes[0].start()
            wait_for("the first node to bootstrap as primary", lambda: self.nodes[0].role() == "primary", timeout_s)
            for node in self.nodes[1:]:
                node.start()
            self.wait_sync()
            self.psql(self.primary(), "postgres", "CREATE DATABASE paycore")
        except BaseException:
            print(self.logs(), file=sys.stderr)
            self.close()
            raise

    def members(self):
        """Patroni's /cluster from any node that answers: [{"name", "role", "state", ...}]."""
        for node in self.nodes:
            if node.proc is None:
                continue
            cluster = http_json("http://127.0.0.1:%d/cluster" % node.rest_port)
            if cluster and "members" in cluster:
                return cluster["members"]
        return []

    def primary(self):
        """The node that is primary now (running, by its own Patroni), or None."""
        for node in self.nodes:
            if node.proc is not None and node.role() == "primary":
                return node
        return None

    def wait_primary(self, not_node=None):
        return wait_for("a primary" + (" other than %s" % not_node.name if not_node else ""),
                        lambda: (lambda p: p if p is not None and p is not not_node else None)(self.primary()),
                        self.timeout_s)

    def wait_sync(self):
        """Until a primary runs with a synchronous standby streaming (Patroni's /sync key
        set): only then is a COMMIT on two nodes before it returns."""
        def synced():
            roles = dict((m["name"], (m.get("role"), m.get("state"))) for m in self.members())
            primary = self.primary()
            return primary is not None and any(r == "sync_standby" and s in ("running", "streaming")
                                               for r, s in roles.values())
        wait_for("a synchronous standby", synced, self.timeout_s)

    def url(self, database="paycore", extra=""):
        hosts = ",".join("127.0.0.1:%d" % node.pg_port for node in self.nodes)
        return "postgresql://%s@%s/%s?target_session_attrs=read-write&connect_timeout=3%s" % (USER, hosts, database,
                                                                                               extra)

    def psql(self, node, database, statement):
        argv = [os.path.join(PG_BIN, "psql"), "-h", "127.0.0.1", "-p", str(node.pg_port), "-U", USER, "-d", database,
                "-v", "ON_ERROR_STOP=1", "-qAtc", statement]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=pcapi.TIMEOUT_S * 3)
        if out.returncode != 0:
            raise RuntimeError("psql on %s: %s" % (node.name, out.stderr))
        return out.stdout.strip()

    def logs(self):
        text = [node.name + ":\n" + node.logs() for node in self.nodes if node.starts]
        if self.etcd is not None:
            text.append("etcd:\n" + self.etcd.logs())
        return "\n".join(text)

    def close(self):
        for node in self.nodes:
            node.stop()
        if self.etcd is not None:
            self.etcd.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Supervised:
    """`paycore serve` restarted whenever it exits, after RESTART_DELAY_S (systemd's
    Restart=always with RestartSec), on one fixed loopback port, until stop()."""

    RESTART_DELAY_S = 0.5

    def __init__(self, db, store_args, name="node", extra_args=None, port=None):
        """store_args: ["--store", URL], ["--shards", "URL0,URL1"], or [] (the SQLite file)."""
        self.db = db
        self.store_args = list(store_args)
        self.name = name
        self.extra_args = extra_args or []
        self.port = port or free_port()
        self.dir = os.path.dirname(db)
        self.proc = None
        self.exits = []       # (exit code, log path) of every exit so far
        self.log_paths = []
        self.stopping = False
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def argv(self):
        return ([pcapi.BIN, "serve", "--db", self.db, "--listen", "127.0.0.1:%d" % self.port] + self.store_args +
                self.extra_args)

    def loop(self):
        while True:
            with self.lock:
                if self.stopping:
                    return
                path = os.path.join(self.dir, "%s-serve-%d.log" % (self.name, len(self.log_paths) + 1))
                self.log_paths.append(path)
                log = open(path, "w")
                self.proc = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL, stderr=log)
                log.close()
                proc = self.proc
            code = proc.wait()
            with self.lock:
                self.exits.append((code, path))
                self.proc = None
                if self.stopping:
                    return
            if self.stopped.wait(self.RESTART_DELAY_S):
                return

    def signal(self, sig):
        """Sends 'sig' to the running process, if any; its exit restarts it."""
        with self.lock:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(sig)
                return True
        return False

    def ready(self):
        """True when the current process answers /readyz with 200 (a waiting standby
        answers nothing: a short timeout)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT_S)
        try:
            conn.request("GET", "/readyz")
            return conn.getresponse().status == 200
        except (ConnectionError, OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def role(self):
        """The role /healthz names ("writer", "standby"), or None (not answering)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT_S)
        try:
            conn.request("GET", "/healthz")
            r = conn.getresponse()
            return json.loads(r.read() or b"{}").get("role") if r.status == 200 else None
        except (ConnectionError, OSError, http.client.HTTPException, ValueError):
            return None
        finally:
            conn.close()

    def wait_ready(self, timeout_s):
        wait_for("%s to serve on port %d" % (self.name, self.port), self.ready, timeout_s)

    def stop(self):
        with self.lock:
            self.stopping = True
            proc = self.proc
        self.stopped.set()
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        self.thread.join(pcapi.TIMEOUT_S * 3)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def logs(self, last=3):
        return "\n".join("== %s\n%s" % (p, open(p).read()[-3000:]) for p in self.log_paths[-last:])

    def sanitizer_reports(self):
        for path in self.log_paths:
            text = open(path).read()
            for marker in pcapi.SANITIZER_MARKERS:
                if marker in text:
                    return "%s:\n%s" % (path, text[-6000:])
        return None
