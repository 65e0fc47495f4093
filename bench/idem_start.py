#!/usr/bin/env python3
"""bench/idem_start.py: how long `paycore serve` takes to start with many stored
Idempotency-Key replies, and the memory it holds once it serves.

One SQLite database is made with the baseline binary (`paycore init`), then REPLIES
stored replies are written into it with SQL while no server runs (the shape of a
payment's reply: a 37-byte reference body, 32-byte request hash, a UUID-like key,
spread over a few API keys); each binary gets its own copy (a newer binary may
migrate its copy: that first start is printed on its own and not counted). Then
the two binaries start in turn, baseline first, ROUNDS times each: the time from
exec to the "listening" log line, the CPU the process used until then (user +
system: less moved by the machine's load than wall time), and its resident memory
then (VmRSS) and at most (VmHWM). Each start ends with SIGTERM.

  python3 bench/idem_start.py [--new BIN] [--old BIN] [--replies N[,N...]] [--rounds R]

Prints per start `idem_start_run ...` and per count of replies one line
  idem_start replies=N start_s=.. cpu_s=.. rss_mb=.. baseline=old baseline_start_s=..
             baseline_cpu_s=.. baseline_rss_mb=.. ratio=.. cpu_ratio=..
(medians over the rounds; ratio = start_s / baseline_start_s, cpu_ratio likewise).
"""
import argparse
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
START_TIMEOUT_S = 900
KEYS = 4  # API keys the replies are spread over


def make_store(binary, directory, replies):
    """A fresh database made by 'binary' holding 'replies' stored replies; its path."""
    os.makedirs(directory, exist_ok=True)
    db = os.path.join(directory, "idem.db")
    out = subprocess.run([binary, "init", "--db", db], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        sys.exit("idem_start: init failed: " + out.stderr)
    conn = sqlite3.connect(db, timeout=60)
    key_ids = ["key_%016x" % (0x5eed0000 + i) for i in range(KEYS - 1)]
    key_ids.append(conn.execute("SELECT id FROM api_keys LIMIT 1").fetchone()[0])
    now_ns = time.time_ns()
    columns = [r[1] for r in conn.execute("PRAGMA table_info(idempotency_keys)")]

    def rows():
        for i in range(replies):
            key_id = key_ids[i % KEYS]
            key = "%08x-%04x-4%03x-8%03x-%012x" % (i * 2654435761 % 2**32, i % 65536, i % 4096, (i * 7) % 4096, i)
            body = "@payment:pay_%024x" % (0x0661 << 80 | i)
            row = {"key_id": key_id, "idempotency_key": key, "created_ns": now_ns + i,
                   "row_bytes": len(body) + len(key_id) + len(key) + 64, "status": 202,
                   "request_hash": (i.to_bytes(8, "little") * 4), "body": body}
            yield tuple(row[c] for c in columns if c != "seq")

    names = [c for c in columns if c != "seq"]
    conn.executemany("INSERT INTO idempotency_keys(%s) VALUES(%s)" % (", ".join(names), ", ".join("?" * len(names))),
                     rows())
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return db


def copy_store(db, directory):
    """The database and its key files, copied into 'directory'; the copy's path."""
    os.makedirs(directory, exist_ok=True)
    base = os.path.basename(db)
    for name in os.listdir(os.path.dirname(db)):
        if name.startswith(base):
            shutil.copy2(os.path.join(os.path.dirname(db), name), os.path.join(directory, name))
    return os.path.join(directory, base)


def proc_status(pid):
    fields = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def proc_cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def start_once(binary, db, log_path):
    """(start_s, cpu_s, rss_mb, hwm_mb) of one start, then SIGTERM."""
    log = open(log_path, "w")
    began = time.monotonic()
    proc = subprocess.Popen([binary, "serve", "--db", db, "--listen", "127.0.0.1:0"], stdout=subprocess.DEVNULL,
                            stderr=log)
    log.close()
    try:
        while True:
            if proc.poll() is not None:
                sys.exit("idem_start: the server exited: " + open(log_path).read()[-2000:])
            if time.monotonic() - began > START_TIMEOUT_S:
                sys.exit("idem_start: no start within %d s" % START_TIMEOUT_S)
            with open(log_path) as f:
                if re.search(r'"msg":"listening"', f.read()):
                    break
            time.sleep(0.01)
        start_s = time.monotonic() - began
        cpu_s = proc_cpu_s(proc.pid)
        status = proc_status(proc.pid)
        rss_mb = int(status["VmRSS"].split()[0]) / 1024
        hwm_mb = int(status["VmHWM"].split()[0]) / 1024
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return start_s, cpu_s, rss_mb, hwm_mb


def bench(old, new, replies, rounds, work):
    made = make_store(old, os.path.join(work, "made-%d" % replies), replies)
    dbs = {"old": copy_store(made, os.path.join(work, "old-%d" % replies)),
           "new": copy_store(made, os.path.join(work, "new-%d" % replies))}
    shutil.rmtree(os.path.dirname(made))
    binaries = {"old": old, "new": new}
    first = start_once(new, dbs["new"], os.path.join(work, "first.log"))
    print("idem_start_first replies=%d binary=new start_s=%.2f cpu_s=%.2f (a migration, if any, included)"
          % (replies, first[0], first[1]), flush=True)
    runs = {"old": [], "new": []}
    for r in range(rounds):
        for which in ("old", "new"):
            run = start_once(binaries[which], dbs[which], os.path.join(work, "%s-%d.log" % (which, r)))
            runs[which].append(run)
            print("idem_start_run replies=%d binary=%s round=%d start_s=%.2f cpu_s=%.2f rss_mb=%.1f hwm_mb=%.1f"
                  % (replies, which, r + 1, *run), flush=True)
    med = {w: [statistics.median(x[i] for x in runs[w]) for i in range(4)] for w in runs}
    print("idem_start replies=%d start_s=%.2f cpu_s=%.2f rss_mb=%.1f baseline=old baseline_start_s=%.2f"
          " baseline_cpu_s=%.2f baseline_rss_mb=%.1f ratio=%.3f cpu_ratio=%.3f"
          % (replies, med["new"][0], med["new"][1], med["new"][2], med["old"][0], med["old"][1], med["old"][2],
             med["new"][0] / med["old"][0], med["new"][1] / max(med["old"][1], 1e-9)), flush=True)
    for d in dbs.values():
        shutil.rmtree(os.path.dirname(d))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--new", default=os.path.join(HERE, "../build/paycore"))
    p.add_argument("--old", default=os.environ.get("PAYCORE_BASE_BIN", "/work/base/paycore"))
    p.add_argument("--replies", default="100000,1000000")
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="idem-start-")
    try:
        for n in (int(x) for x in args.replies.split(",")):
            bench(args.old, args.new, n, args.rounds, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
