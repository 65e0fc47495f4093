"""tests/store/pgcluster.py: a throwaway PostgreSQL 15 cluster for tests: initdb into a
temporary directory, the server listening on a Unix socket in that directory only (no
TCP), max_prepared_transactions > 0, fsync on; stopped and removed by stop(). Run as
root, the cluster's commands run as the 'postgres' user (initdb refuses root). The
binaries come from Debian's postgresql package (scripts/deps.sh). Not a test itself."""
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

PG_BIN = os.environ.get("PAYCORE_PG_BIN", "/usr/lib/postgresql/15/bin")
USER = "paycore"


def available():
    return os.path.exists(os.path.join(PG_BIN, "initdb")) and os.path.exists(os.path.join(PG_BIN, "pg_ctl"))


class Cluster:
    def __init__(self, timeout_s=120, settings=""):
        self.timeout_s = timeout_s
        self.settings = settings  # more -c options, e.g. "-c fsync=off" (a misconfigured server)
        self.dir = tempfile.mkdtemp(prefix="paycore-pg-")
        self.data = os.path.join(self.dir, "data")
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            shutil.chown(self.dir, "postgres")
        self.started = False
        self.run("initdb", "-D", self.data, "-A", "trust", "-U", USER, "--locale=C", "-E", "UTF8", "--no-sync")
        self.start()

    def run(self, tool, *args, check=True):
        argv = [os.path.join(PG_BIN, tool)] + list(args)
        if self.as_postgres:
            argv = ["runuser", "-u", "postgres", "--"] + argv
        out = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout_s)
        if check and out.returncode != 0:
            raise RuntimeError("%s failed (%d): %s %s" % (tool, out.returncode, out.stdout, out.stderr))
        return out

    def options(self):
        return ("-c listen_addresses='' -c unix_socket_directories='%s' -c max_prepared_transactions=8"
                " -c fsync=on -c max_connections=200 %s" % (self.dir, self.settings))

    def start(self):
        self.run("pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "server.log"), "-w", "-t",
                 str(self.timeout_s), "-o", self.options(), "start")
        self.started = True

    def crash_restart_command(self):
        """A shell command that crashes the server (immediate mode: no checkpoint, every
        session cut, recovery from the WAL at the next start) and starts it again."""
        argv = [os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-l", os.path.join(self.dir, "server.log"),
                "-m", "immediate", "-w", "-t", str(self.timeout_s), "-o", self.options(), "restart"]
        if self.as_postgres:
            argv = ["runuser", "-u", "postgres", "--"] + argv
        return " ".join(shlex.quote(a) for a in argv) + " >/dev/null"

    def stop(self, mode="fast"):
        if self.started:
            self.run("pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", str(self.timeout_s), "stop", check=False)
            self.started = False

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def createdb(self, name):
        self.run("createdb", "-h", self.dir, "-U", USER, name)
        return self.url(name)

    def sql(self, name, statement):
        out = self.run("psql", "-h", self.dir, "-U", USER, "-d", name, "-v", "ON_ERROR_STOP=1", "-qAtc", statement)
        return out.stdout.strip()

    def url(self, name):
        return "postgresql://%s@/%s?host=%s" % (USER, name, self.dir)

    def run_c_test(self, paycore_bin, name, env_extra, timeout_s=1800):
        """Runs the C test executable 'name' (beside the paycore binary, as the build puts
        it) with 'env_extra' added to the environment; returns the completed process, or
        None when the executable is not there."""
        path = os.path.join(os.path.dirname(os.path.abspath(paycore_bin)), name)
        if not os.path.exists(path):
            return None
        return subprocess.run([path], env=dict(os.environ, **env_extra), capture_output=True, text=True,
                              timeout=timeout_s)

    def run_c_test_passing(self, paycore_bin, name, env_extra, ran_text):
        """Runs the C test 'name' as run_c_test does and fails the calling test (pcapi's
        check) unless it exists, exits 0 and its output holds 'ran_text'."""
        from pcapi import check  # the calling test put tests/api on the path
        out = self.run_c_test(paycore_bin, name, env_extra)
        check(out is not None, "no %s beside %s: build the tests (make build)" % (name, paycore_bin))
        print(out.stdout[-2000:])
        check(out.returncode == 0, "%s on PostgreSQL: exit %d\n%s\n%s" % (
            name, out.returncode, out.stdout[-3000:], out.stderr[-6000:]))
        check(ran_text in out.stdout, "%s ran: %s" % (name, out.stdout[-500:]))

    def run_suites(self, suites, timeout_s=900):
        """Runs test scripts (paths relative to tests/) with PAYCORE_TEST_PG_HOST set, so
        that tests/api/pcapi.py gives each server a database of its own here; returns
        (suite, completed process) for each that failed."""
        env = dict(os.environ, PAYCORE_TEST_PG_HOST=self.dir)
        tests_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
        failed = []
        for suite in suites:
            out = subprocess.run([sys.executable, os.path.join(tests_dir, suite)], env=env, capture_output=True,
                                 text=True, timeout=timeout_s)
            if out.returncode != 0:
                failed.append((suite, out))
        return failed
