"""bench/pay_callgrind.py BENCH_PAYMENTS PAYCORE [BASELINE_PAYCORE] [--seconds S]: the server's
instructions per payment (authorize + capture over HTTP), per thread kind, counted by
callgrind (stable under load, unlike wall-clock figures on a shared machine).
bench_payments --profile S --hold drives the server (PAYCORE_BIN is a wrapper that runs
`paycore serve` under `valgrind --tool=callgrind --instr-atstart=no
--separate-threads=yes`, every other command as it is): instrumentation is switched on once
the server is warm ("server_pid=" printed; callgrind_control -i on) and dumped once
the load is over ("payments=" printed), so the counts cover that slice's payments. Each
thread's dump is named by a function only it runs (stage, gateway, http workers,
writer, ...).
The payments are those the server captured while counting (calls of
pay_payment_capture in the dumps), not the bench's own count (which includes those
before counting began). Under valgrind the server's threads run one at a time, so
batches are smaller and work moves between threads (an answer applied on the gateway
thread while the stage threads sleep): compare binaries in this setup only, and the
sum of the request path's threads (http + stage + gateway) more than any one of them.
Callgrind counts each iteration of a rep-prefixed string instruction (memset and
memcpy of large blocks) as one instruction: a zeroed 6 KB struct counts as about 6,000.
PAY_CALLGRIND_KEEP=DIR keeps the dumps there (for callgrind_annotate).
Prints one line per binary and thread kind, the baseline first, then the ratio:
  pay_callgrind binary=... payments=N thread=stage instructions_per_payment=...
  pay_callgrind_ratio thread=stage instructions_per_payment=... baseline=... ratio=..."""
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

# a thread's kind, by the first of these functions its dump holds
KINDS = [("stage", "stage_main"), ("gateway", "gw_http_finished_run"), ("http", "input_process"),
         ("writer", "batch_run"), ("checkpointer", "checkpointer_main"), ("recovery", "recovery_main")]
# called once per payment (its capture): the payments the counts cover, counted by the
# server itself (the bench's count includes those before collection was switched on)
PAYMENT_MARK = "pay_payment_capture"
WRAPPER = """#!/bin/sh
if [ "$1" = serve ]; then
  exec valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes \\
    --callgrind-out-file=%(out)s/callgrind.out.%%p %(binary)s "$@"
fi
exec %(binary)s "$@"
"""


def thread_read(path):
    """The thread's kind (by the first of KINDS' functions its dump holds) and the calls
    it made to PAYMENT_MARK."""
    names, costs, fn, callee, marks = {}, {}, None, None, 0
    with open(path) as f:
        for line in f:
            if line.startswith("fn="):
                m = re.match(r"fn=\((\d+)\)(?: (.*))?", line.strip())
                if m.group(2):
                    names[m.group(1)] = m.group(2)
                fn = names.get(m.group(1), "?")
            elif line.startswith("cfn="):
                m = re.match(r"cfn=\((\d+)\)(?: (.*))?", line.strip())
                if m.group(2):
                    names[m.group(1)] = m.group(2)
                callee = names.get(m.group(1), "?")
            elif line.startswith("calls="):
                if callee == PAYMENT_MARK:
                    marks += int(line[6:].split()[0])
                next(f, None)  # the call's inclusive cost, not the function's own
            elif line[:1].isdigit() or line[:1] in "+-*":
                parts = line.split()
                if len(parts) >= 2 and fn is not None:
                    costs[fn] = costs.get(fn, 0) + int(parts[1])
    seen = set(names.values())
    for kind, marker in KINDS:
        if marker in seen:
            return kind, marks
    top = max(costs, key=costs.get) if costs else "?"
    return "other(%s)" % top, marks


def totals(path):
    with open(path) as f:
        for line in f:
            if line.startswith("totals:") or line.startswith("summary:"):
                return int(line.split()[1])
    return 0


def measure(bench, binary, seconds):
    work = tempfile.mkdtemp(prefix="pay-callgrind-")
    try:
        wrapper = os.path.join(work, "paycore")
        with open(wrapper, "w") as f:
            f.write(WRAPPER % {"out": work, "binary": binary})
        os.chmod(wrapper, 0o755)
        env = dict(os.environ, PAYCORE_BIN=wrapper, TMPDIR=work)
        process = subprocess.Popen([bench, "--profile", str(seconds), "--hold"], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True, env=env)
        pid, payments = None, None
        for line in process.stdout:
            if line.startswith("server_pid="):
                pid = line.strip().split("=")[1]
                subprocess.run(["callgrind_control", "-i", "on", pid], check=True, stdout=subprocess.DEVNULL, env=env)
            elif line.startswith("payments="):
                payments = int(line.split()[0].split("=")[1])
                subprocess.run(["callgrind_control", "-d", pid], check=True, stdout=subprocess.DEVNULL, env=env)
                break
        if pid is None or payments is None:
            raise SystemExit("pay_callgrind: the bench did not run (%s)" % binary)
        time.sleep(1)
        process.stdin.close()
        process.wait()
        paths = sorted(glob.glob(os.path.join(work, "callgrind.out.%s.1-*" % pid)))
        keep = os.environ.get("PAY_CALLGRIND_KEEP")
        if keep:
            shutil.copytree(work, os.path.join(keep, os.path.basename(work)),
                            ignore=shutil.ignore_patterns("paycore-bench-*", "vgdb-*"))
        by_kind, counted = {}, 0
        for path in paths:
            kind, marks = thread_read(path)
            counted += marks
            if kind.startswith("other"):
                kind = "other"
            by_kind[kind] = by_kind.get(kind, 0) + totals(path)
        by_kind["all"] = sum(by_kind.values())
        by_kind["request_path"] = sum(by_kind.get(k, 0) for k in ("http", "stage", "gateway"))
        if counted == 0:
            raise SystemExit("pay_callgrind: no payment captured while counting (%s)" % binary)
        print("pay_callgrind binary=%s payments=%d bench_payments=%d" % (binary, counted, payments), flush=True)
        payments = counted
        for kind in sorted(by_kind):
            print("pay_callgrind binary=%s payments=%d thread=%s instructions_per_payment=%.0f" %
                  (binary, payments, kind, by_kind[kind] / payments), flush=True)
        return {k: v / payments for k, v in by_kind.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    args = sys.argv[1:]
    seconds, positional = 60, []
    while args:
        arg = args.pop(0)
        if arg == "--seconds":
            seconds = float(args.pop(0))
        else:
            positional.append(os.path.abspath(arg))
    if len(positional) not in (2, 3):
        raise SystemExit(__doc__)
    bench, binaries = positional[0], positional[1:]
    if len(binaries) == 1:
        measure(bench, binaries[0], seconds)
        return
    baseline = measure(bench, binaries[1], seconds)
    value = measure(bench, binaries[0], seconds)
    for kind in sorted(value):
        if kind in baseline and baseline[kind] > 0:
            print("pay_callgrind_ratio thread=%s instructions_per_payment=%.0f baseline=%.0f ratio=%.4f" %
                  (kind, value[kind], baseline[kind], value[kind] / baseline[kind]))


main()
