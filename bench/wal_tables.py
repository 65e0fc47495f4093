#!/usr/bin/env python3
"""bench/wal_tables.py: which tables and indexes the payments load writes, from the WAL.

Runs `bench_payments --profile --hold`, holds a read transaction on the server's database so
that the WAL is not restarted, waits for the load to end, then reads the WAL frames written
meanwhile and names each frame's page by its B-tree (SQLite's dbstat). Prints one
line per B-tree (WAL frames per payment, share) and a total, then for a few checkpoint
intervals (frames written between two checkpoints) the database pages a checkpoint
copies per payment: each distinct page of an interval once (a pread from the WAL and
a pwrite into the database file each).

  python3 bench/wal_tables.py [BUILD_DIR] [SECONDS]
  PAYCORE_BIN=/path/to/paycore picks the server (as bench_payments does).
"""
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile

WAL_HEADER = 32
FRAME_HEADER = 24


def wal_frames(path):
    """(page_no, commit) of each valid frame of the WAL's current generation."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < WAL_HEADER:
        return []
    page_size = struct.unpack(">I", data[8:12])[0]
    salt = data[16:24]
    frames = []
    at = WAL_HEADER
    while at + FRAME_HEADER + page_size <= len(data):
        page_no, db_size = struct.unpack(">II", data[at:at + 8])
        if data[at + 8:at + 16] != salt:
            break
        frames.append((page_no, db_size != 0))
        at += FRAME_HEADER + page_size
    return frames


CHECKPOINT_INTERVALS_FRAMES = (1024, 4096, 16384, 65536)


def pages_copied(frames, interval_frames):
    """Distinct pages over consecutive intervals of interval_frames frames, summed."""
    copied = 0
    for start in range(0, len(frames), interval_frames):
        copied += len({page_no for page_no, _ in frames[start:start + interval_frames]})
    return copied


def payments_count(db):
    return db.execute("SELECT count(*) FROM pay_objects WHERE kind = 'payment'").fetchone()[0]


def read_until(bench, prefix):
    """The value of the bench's first stdout line starting with 'prefix', or None at its end."""
    for line in bench.stdout:
        if line.startswith(prefix):
            return int(line[len(prefix):].split()[0])
    return None


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 8.0
    # --hold: the bench keeps its server and files once the load is over until its stdin
    # closes, so the copy waits for the load's end, not for a guessed margin
    bench = subprocess.Popen([os.path.join(build, "bench_payments"), "--profile", str(seconds), "--hold"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pid = read_until(bench, "server_pid=")
    if pid is None:
        sys.exit("wal_tables: the bench did not start a server")
    argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    path = argv[argv.index(b"--db") + 1].decode()
    reader = sqlite3.connect(path, isolation_level=None, timeout=30)
    reader.execute("BEGIN")
    p0 = payments_count(reader)  # the read transaction holds the WAL from here on
    f0 = len(wal_frames(path + "-wal"))
    if read_until(bench, "payments=") is None:
        sys.exit("wal_tables: the bench ended before its load did")
    out = tempfile.mkdtemp(prefix="wal-tables-")
    shutil.copy(path + "-wal", os.path.join(out, "db-wal"))
    shutil.copy(path, os.path.join(out, "db"))
    shutil.copy(os.path.join(out, "db-wal"), os.path.join(out, "frames.wal"))  # opening "db" consumes db-wal
    frames = wal_frames(os.path.join(out, "frames.wal"))[f0:]
    reader.execute("COMMIT")
    reader.close()
    bench.stdin.close()
    bench.wait()
    copy = sqlite3.connect(os.path.join(out, "db"))
    p1 = payments_count(copy)
    owner = dict(copy.execute("SELECT pageno, name FROM dbstat"))
    copy.close()
    if os.environ.get("WAL_TABLES_KEEP"):
        print(f"wal_copy dir={out}")
    else:
        shutil.rmtree(out)
    payments = max(p1 - p0, 1)
    by_name = {}
    for page_no, _ in frames:
        name = owner.get(page_no, "(free or new)")
        by_name[name] = by_name.get(name, 0) + 1
    commits = sum(1 for _, c in frames if c)
    for name, n in sorted(by_name.items(), key=lambda kv: -kv[1]):
        print(f"wal_table name={name} frames_per_payment={n / payments:.2f} share={n / len(frames):.3f}")
    print(f"wal_total payments={payments} frames={len(frames)} frames_per_payment={len(frames) / payments:.2f}"
          f" commits={commits} payments_per_commit={payments / max(commits, 1):.2f}")
    for interval in CHECKPOINT_INTERVALS_FRAMES:
        if interval > len(frames):
            break
        print(f"wal_checkpoint interval_frames={interval}"
              f" pages_copied_per_payment={pages_copied(frames, interval) / payments:.2f}")


if __name__ == "__main__":
    main()
