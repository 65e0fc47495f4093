"""Goal: a clean stop (SIGTERM) while every HTTP worker is busy never aborts. The
server stops taking connections before it drains; libmicrohttpd's own way to do that
(MHD_quiesce_daemon, libmicrohttpd 0.9.75) races its busy epoll workers, which take
the listen socket out of their epoll sets themselves, and the loser's EPOLL_CTL_DEL
fails with ENOENT: MHD aborts the process ("Failed to remove listen FD from epoll
set", exit by SIGABRT), seen about once in a hundred stops under load.
Method: the server runs with tests/api/epoll_del_delay.c preloaded (built here with
cc), which delays every EPOLL_CTL_DEL the main thread makes by 100 ms, so that a busy
worker always wins that race if there is one; clients keep every worker busy with
transfers on keep-alive connections while SIGTERM lands, several times. Every stop
must exit 0 and every acknowledged transfer must be there after the restart. (The
server's accept loop is its own, api/accept.c: stopping it calls nothing in MHD.)"""
import os
import shutil
import subprocess
import tempfile
import threading
import time

from pcapi import SANITIZED, TIMEOUT_S, Server, account, check, check_conserved, expect, missing_input, transfer

HERE = os.path.dirname(os.path.abspath(__file__))
CYCLES = 4
CLIENTS = 16


def build_shim(directory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        missing_input("a C compiler (cc)", "install gcc: the test builds its LD_PRELOAD shim")
    out = os.path.join(directory, "epoll_del_delay.so")
    r = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", out, os.path.join(HERE, "epoll_del_delay.c"), "-ldl"],
                       capture_output=True, text=True, timeout=TIMEOUT_S)
    check(r.returncode == 0, "building the shim: %s" % r.stderr)
    return out


def preload(shim):
    os.environ["LD_PRELOAD"] = shim
    if SANITIZED:  # ASan wants its runtime first in the list; the shim only forwards a call
        os.environ["ASAN_OPTIONS"] = os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"


def load(server, acked, lock, stop):
    def worker(index):
        c = server.client()
        n = 0
        while not stop.is_set():
            n += 1
            tid = "r-%d-%d-%d" % (server.starts, index, n)
            try:
                r = c.post("/v1/transfers", transfer(tid, "bank", "acc", 1))
            except Exception:  # noqa: BLE001 - the server went away
                return
            if r.status == 201:
                with lock:
                    acked.append(tid)
            elif r.status != 503:
                return
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    return threads


def main():
    tmp = tempfile.mkdtemp(prefix="paycore-stop-race-")
    server = Server(extra_args=["--threads", "4"])
    try:
        preload(build_shim(tmp))
        acked, lock = [], threading.Lock()
        server.start()
        expect(server.client().post("/v1/accounts", {"accounts": [account("bank"), account("acc")]}), 200,
               what="accounts")
        for cycle in range(CYCLES):
            if cycle > 0:
                server.start()
            stop = threading.Event()
            before = len(acked)
            threads = load(server, acked, lock, stop)
            deadline = time.time() + TIMEOUT_S
            while len(acked) < before + 50 and time.time() < deadline:
                time.sleep(0.01)
            check(len(acked) >= before + 50, "cycle %d: the load is running" % cycle)
            code = server.stop()
            stop.set()
            for t in threads:
                t.join(TIMEOUT_S)
            check(code == 0, "cycle %d: SIGTERM with every worker busy exits 0, got %d:\n%s"
                  % (cycle, code, server.log_tail(5)))
        server.start()
        admin = server.client()
        for tid in acked:
            expect(admin.get("/v1/transfers/" + tid), 200, what="acknowledged %s after the stops" % tid)
        check_conserved(admin, "after the stops")
        print("%d stops with busy workers: ok (%d acknowledged)" % (CYCLES, len(acked)))
    finally:
        server.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
