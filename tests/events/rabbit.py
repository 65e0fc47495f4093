"""tests/events/rabbit.py: a real RabbitMQ broker for the events tests and benchmark,
started from Debian's rabbitmq-server in a temporary directory and stopped after. It
never touches a system-wide broker or another test's: its own node name, its own AMQP
and Erlang distribution ports on loopback, its own epmd (on its own port: the system
epmd on 4369 is left alone), its own HOME (Erlang cookie), data and log directories,
no plugins. Restarting keeps the data directory (durable queues survive). Not a test
itself (no test_ prefix)."""
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "api"))
from pcapi import free_port  # noqa: E402

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
START_TIMEOUT_S = 180  # a cold start takes seconds; a loaded CI machine, more
START_ATTEMPTS = 5  # a port taken between our check and the broker's bind: new ports, again
# Ports come from pcapi.free_port, below the kernel's ephemeral range (seen in CI before:
# dist_port_already_used, a port from bind(0) taken by another test's connection).
PORT_CONFLICT_MARKS = ("already_used", "eaddrinuse", "address already in use",
                       "epmd", "duplicate_name")


def available():
    return os.access(SERVER, os.X_OK) and shutil.which("epmd") is not None


class RabbitMQ:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="paycore-rabbit-")
        for sub in ("home", "mnesia", "log"):
            os.mkdir(os.path.join(self.dir, sub))
        # the node name (and so the data directory) does not depend on the ports, which
        # may change between starts
        self.node = "paycore%d_%d@localhost" % (os.getpid(), random.randint(0, 1 << 30))
        self.epmd_ports = []
        self.port = free_port()
        self._pick_internal_ports()
        with open(os.path.join(self.dir, "enabled_plugins"), "w") as f:
            f.write("[].\n")
        self._write_conf()
        open(os.path.join(self.dir, "rabbitmq-env.conf"), "w").close()
        self.proc = None
        self.starts = 0
        self.clients_know_port = False

    def _pick_internal_ports(self):
        """Erlang distribution and epmd ports: only the broker itself uses them."""
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.epmd_ports.append(self.epmd_port)

    def _write_conf(self):
        with open(os.path.join(self.dir, "rabbitmq.conf"), "w") as f:
            f.write("listeners.tcp.default = 127.0.0.1:%d\n" % self.port)

    def env(self):
        env = dict(os.environ)
        env.update({
            "HOME": os.path.join(self.dir, "home"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_MNESIA_BASE": os.path.join(self.dir, "mnesia"),
            "RABBITMQ_LOG_BASE": os.path.join(self.dir, "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(self.dir, "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": os.path.join(self.dir, "rabbitmq"),
            "RABBITMQ_CONF_ENV_FILE": os.path.join(self.dir, "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": os.path.join(self.dir, "rabbitmq.pid"),
        })
        return env

    def amqp_url(self):
        self.clients_know_port = True
        return "amqp://guest:guest@127.0.0.1:%d/%%2f" % self.port

    def start(self):
        """Starts the broker; a start lost to a port taken meanwhile is tried again with
        new ports (the AMQP port only while no client has been given it)."""
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                return self._start_once()
            except RuntimeError as e:
                text = str(e).lower()
                if attempt == START_ATTEMPTS or not any(m in text for m in PORT_CONFLICT_MARKS):
                    raise
                self.proc = None
                self._pick_internal_ports()
                if not self.clients_know_port:
                    self.port = free_port()
                    self._write_conf()
                else:
                    time.sleep(1)  # our own AMQP port: wait for whoever holds it
        raise AssertionError("unreachable")

    def _start_once(self):
        self.starts += 1
        log = open(os.path.join(self.dir, "server-%d.log" % self.starts), "w")
        self.proc = subprocess.Popen([SERVER], env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()
        deadline = time.time() + START_TIMEOUT_S
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("rabbitmq-server exited: " + self.log())
            if self._accepts():
                return self
            time.sleep(0.2)
        raise RuntimeError("rabbitmq-server did not start: " + self.log())

    def _accepts(self):
        """The AMQP listener answers the protocol header with a connection.start."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(b"AMQP\x00\x00\x09\x01")
                return len(s.recv(8)) > 0
        except OSError:
            return False

    def stop(self, sig=signal.SIGTERM):
        """SIGTERM: a clean stop; SIGKILL: the broker dies with what it holds."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        # the Erlang VM may outlive the script for a moment: wait for the port to close
        deadline = time.time() + 60
        while self._accepts() and time.time() < deadline:
            time.sleep(0.1)
        self.proc = None

    def log(self):
        try:
            return open(os.path.join(self.dir, "server-%d.log" % self.starts)).read()[-3000:]
        except OSError:
            return ""

    def close(self):
        self.stop()
        # our own epmd (started by the VM on ERL_EPMD_PORT, outside our session), one per
        # epmd port a start attempt used
        for port in self.epmd_ports:
            subprocess.run(["epmd", "-port", str(port), "-kill"], env=self.env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)
