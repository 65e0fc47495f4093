"""bench/writer_callgrind.py PAYCORE [BASELINE_PAYCORE] [--seconds S] [--warm-seconds W]
[--bench BENCH_PAYMENTS] [--keep DIR]: the writer thread's ("paycore-writer") instructions
per payment command, counted by callgrind (stable under load, unlike wall-clock figures
on a shared machine).
Each binary serves the payments load of `bench_payments --profile S --hold` (the
server's own card simulator, 64 connections) under `valgrind --tool=callgrind
--separate-threads=yes --instr-atstart=no`: instrumentation starts once the server is
warm (server_pid=), the counts of the first W seconds are dumped apart (statements
prepared on first use, caches filling) and the rest is the figure. Only `paycore serve`
runs under valgrind (a wrapper script as PAYCORE_BIN); the simulator, `init` and the
load run natively, the same BENCH for every binary.
Under valgrind the server runs ~50x slower; a commit carried 15-25 commands in the runs
here. A command is one of a payment's writer commands (flow_cmd_in_tx: an attempt
before its channel call, a booking after it; a card payment authorized then captured
is four). The per-commit costs (COMMIT, a statement per table) are shared by the
commands of a batch, and how they interleave moves the figure: two runs of one binary
differed by up to 5 %. Compare at similar commands_per_commit (printed), over several
runs, or part by part.
Prints two lines per binary (the figure, then its parts: the inclusive instructions per
command of the rows' statements, the payments' objects' statements, the pending
transfers' updates, the WAL frames, the ledger, the events, the completions), the
baseline first, the ratio last:
  writer_callgrind binary=... commands=N commits=C commands_per_commit=... instructions_per_command=...
    commit_instructions_per_command=... flow_instructions_per_command=...
  writer_callgrind_parts binary=... rows_statements=... pay_object_statements=... ...
  writer_callgrind_ratio instructions_per_command=... baseline_instructions_per_command=... ratio=..."""
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading


def wrapper_write(work_dir, binary):
    path = os.path.join(work_dir, "paycore")
    with open(path, "w") as f:
        f.write('#!/bin/sh\nif [ "$1" = serve ]; then exec valgrind --tool=callgrind --instr-atstart=no '
                '--separate-threads=yes --callgrind-out-file=%s/cg.out "%s" "$@"; fi\nexec "%s" "$@"\n'
                % (work_dir, binary, binary))
    os.chmod(path, 0o755)
    return path


def control(pid, *args):
    subprocess.run(["callgrind_control", *args, pid], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def profile(bench, binary, seconds, warm_seconds, work_dir):
    """Runs the load; leaves part 1 (warm) and part 2 (measured) dumps in work_dir."""
    env = dict(os.environ, PAYCORE_BIN=wrapper_write(work_dir, binary))
    load = subprocess.Popen([bench, "--profile", str(seconds), "--hold"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    pid, warm = None, None
    for line in load.stdout:
        if line.startswith("server_pid="):
            pid = line.strip().split("=", 1)[1]
            control(pid, "--instr=on")
            warm = threading.Timer(warm_seconds, control, (pid, "--dump=warm"))
            warm.start()
        elif line.startswith("payments="):
            warm.join()
            control(pid, "--dump=measured")
            break
    load.stdin.close()
    if load.wait() != 0 or pid is None:
        raise SystemExit("writer_callgrind: bench_payments failed (%s)" % binary)


def total_of(path):
    with open(path, errors="replace") as f:
        match = re.search(r"^(?:summary|totals):\s*(\d+)", f.read(), re.M)
    return int(match.group(1)) if match else 0


def writer_dump(work_dir):
    """The measured part's dump of the ledger writer: the thread that ran payment commands
    in its batches (other threads have a writer_main of their own)."""
    paths = []
    for path in glob.glob(os.path.join(work_dir, "cg.out.2-*")):
        with open(path, errors="replace") as f:
            text = f.read()
            if re.search(r"^c?fn=\(\d+\) batch_run$", text, re.M) and re.search(r"^c?fn=\(\d+\) flow_cmd_in_tx$", text, re.M):
                paths.append(path)
    if not paths:
        raise SystemExit("writer_callgrind: no writer thread in the dumps of " + work_dir)
    return max(paths, key=total_of)


def calls_of(path, callee):
    """Calls of 'callee' from every call site in the dump, and the instructions they cost
    (inclusive): read from the "cfn=" / "calls=" lines, which callgrind writes for a
    call even where the callee's own code is not listed apart (a tail call)."""
    names, calls, cost = {}, 0, 0
    with open(path, errors="replace") as f:
        lines = f.read().split("\n")
    for i, line in enumerate(lines):
        found = re.match(r"(c?)fn=\((\d+)\)(?: (.*))?$", line)
        if found is None:
            continue
        if found.group(3) is not None:
            names[found.group(2)] = found.group(3) # the name is given once, then "(7)" alone
        if not found.group(1) or names.get(found.group(2)) != callee or not lines[i + 1].startswith("calls="):
            continue
        calls += int(lines[i + 1].split()[0].split("=")[1])
        cost += int(lines[i + 2].split()[-1])
    return calls, cost


# Parts of a command's instructions (inclusive, per command), as src/store/README.md
# ("Where the writer's instructions go") lays them out.
PARTS = (("rows_statements", "store_sqlite_rows_flush"), ("pay_object_statements", "store_sqlite_pay_rows_flush"),
         ("pending_updates", "pending_update_run"), ("wal_frames", "sqlite3WalFrames"),
         ("ledger_apply", "batch_apply"), ("events", "events_emit"), ("completions", "cmds_complete"))


def measure(bench, binary, seconds, warm_seconds, keep):
    work_dir = tempfile.mkdtemp(prefix="writer-callgrind-")
    try:
        profile(bench, binary, seconds, warm_seconds, work_dir)
        path = writer_dump(work_dir)
        commands, flow = calls_of(path, "flow_cmd_in_tx")
        commits, commit = calls_of(path, "store_tx_commit")
        if commands == 0 or commits == 0:
            kept = tempfile.mkdtemp(prefix="writer-callgrind-failed-")
            shutil.copy(path, kept)
            raise SystemExit("writer_callgrind: no payment commands measured in %s (%s): commands=%d commits=%d"
                             % (path, binary, commands, commits) + ", the dump kept in " + kept)
        total = total_of(path)
        print("writer_callgrind binary=%s commands=%d commits=%d commands_per_commit=%.1f "
              "instructions_per_command=%.0f commit_instructions_per_command=%.0f "
              "flow_instructions_per_command=%.0f"
              % (binary, commands, commits, commands / commits, total / commands, commit / commands,
                 flow / commands), flush=True)
        parts = " ".join("%s=%.0f" % (name, calls_of(path, function)[1] / commands) for name, function in PARTS)
        print("writer_callgrind_parts binary=%s %s" % (binary, parts), flush=True)
        if keep:
            os.makedirs(keep, exist_ok=True)
            shutil.copy(path, os.path.join(keep, os.path.basename(binary) + "." + os.path.basename(path)))
        return total / commands
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def main():
    args = sys.argv[1:]
    seconds, warm_seconds, keep, binaries = 45, 15, None, []
    bench = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "bench_payments")
    while args:
        arg = args.pop(0)
        if arg == "--seconds":
            seconds = int(args.pop(0))
        elif arg == "--warm-seconds":
            warm_seconds = int(args.pop(0))
        elif arg == "--bench":
            bench = args.pop(0)
        elif arg == "--keep":
            keep = args.pop(0)
        else:
            binaries.append(os.path.abspath(arg))
    if not binaries or len(binaries) > 2 or warm_seconds >= seconds or not os.path.exists(bench):
        raise SystemExit(__doc__)
    if len(binaries) == 1:
        measure(bench, binaries[0], seconds, warm_seconds, keep)
        return
    baseline = measure(bench, binaries[1], seconds, warm_seconds, keep)
    value = measure(bench, binaries[0], seconds, warm_seconds, keep)
    print("writer_callgrind_ratio instructions_per_command=%.0f baseline_instructions_per_command=%.0f ratio=%.4f"
          % (value, baseline, value / baseline))


main()
