"""bench/sim_callgrind.py PAYCORE [BASELINE_PAYCORE] [--pairs N] [--connections C]: the card
simulator's instructions per authorize + capture pair, counted by callgrind (stable
under load, unlike wall-clock figures on a shared machine).
Each binary serves `paycore simulator card` under `valgrind --tool=callgrind` twice:
SHORT pairs, then SHORT + N pairs (authorize then capture of the same amount, each
with its Idempotency-Key, the gateway's body shapes, cards drawn from a pool of 5000
Luhn-valid numbers with a balance above anything spent, on C keep-alive connections);
the difference over N is the cost of a pair without start-up and stop. C > 1 lets
the record's group commits carry several requests, as under load (the count then
moves a little with how requests interleave); C = 1 is exact to the instruction.
Note: valgrind hides SHA-NI, so SHA-256 (the request hash) is counted at its software
cost (~3x the hardware path's time on this machine).
Prints one line per binary, the baseline first and the ratio last:
  sim_callgrind binary=... pairs=N connections=C instructions_per_pair=...
  sim_callgrind_ratio instructions_per_pair=... baseline_instructions_per_pair=... ratio=..."""
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "gateway"))
from simlib import luhn_complete  # noqa: E402

SHORT_PAIRS = 200
CARD_POOL = 5000


def start(binary, work_dir, profile_path):
    config = os.path.join(work_dir, "card.json")
    with open(config, "w") as f:
        f.write('{"card_balance_minor":900000000000}')
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + profile_path, binary, "simulator", "card",
               "--listen", "127.0.0.1:0", "--db", os.path.join(work_dir, "card.db"), "--config", config,
               "--log-level", "warn"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=open(os.path.join(work_dir, "log"), "w"),
                               text=True)
    for line in process.stdout:
        if line.startswith("listening="):
            return process, int(line.strip().rsplit(":", 1)[1])
    raise SystemExit("sim_callgrind: the simulator did not start (see %s/log)" % work_dir)


def call(connection, path, body, key):
    connection.request("POST", path, body, {"Idempotency-Key": key, "Content-Type": "application/json"})
    response = connection.getresponse()
    answer = json.loads(response.read())
    if response.status != 200 or answer.get("response_code") != "00":
        raise SystemExit("sim_callgrind: %s answered %d %s" % (path, response.status, answer))
    return answer


def drive(port, pairs, connections):
    rng = random.Random(7)
    cards = [luhn_complete("4" + "".join(str(rng.randrange(10)) for _ in range(14))) for _ in range(CARD_POOL)]

    def worker(index):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        draws = random.Random(index)
        for i in range(index, pairs, connections):
            amount = draws.randrange(100, 100000)
            body = ('{"amount":%d,"currency":"EUR","card":{"number":"%s","exp_month":12,"exp_year":2030,'
                    '"cvc":"123"},"merchant_ref":"pay_%08d","capture":false}'
                    % (amount, cards[draws.randrange(CARD_POOL)], i))
            auth = call(connection, "/v1/authorizations", body, "k-auth-%d" % i)
            call(connection, "/v1/authorizations/%s/captures" % auth["id"], '{"amount":%d}' % amount, "k-cap-%d" % i)
        connection.close()

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def instructions(binary, pairs, connections):
    work_dir = tempfile.mkdtemp(prefix="sim-callgrind-")
    try:
        profile = os.path.join(work_dir, "callgrind.out")
        process, port = start(binary, work_dir, profile)
        drive(port, pairs, connections)
        process.terminate()
        process.wait()
        with open(profile) as f:
            for line in f:
                if line.startswith("summary:") or line.startswith("totals:"):
                    return int(line.split()[1])
        raise SystemExit("sim_callgrind: no totals in " + profile)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def per_pair(binary, pairs, connections):
    short = instructions(binary, SHORT_PAIRS, connections)
    long = instructions(binary, SHORT_PAIRS + pairs, connections)
    value = (long - short) / pairs
    print("sim_callgrind binary=%s pairs=%d connections=%d instructions_per_pair=%.0f" %
          (binary, pairs, connections, value), flush=True)
    return value


def main():
    args = sys.argv[1:]
    pairs, connections, binaries = 1000, 1, []
    while args:
        arg = args.pop(0)
        if arg == "--pairs":
            pairs = int(args.pop(0))
        elif arg == "--connections":
            connections = int(args.pop(0))
        else:
            binaries.append(os.path.abspath(arg))
    if not binaries or len(binaries) > 2 or pairs < 1 or connections < 1:
        raise SystemExit(__doc__)
    if len(binaries) == 1:
        per_pair(binaries[0], pairs, connections)
        return
    baseline = per_pair(binaries[1], pairs, connections)
    value = per_pair(binaries[0], pairs, connections)
    print("sim_callgrind_ratio instructions_per_pair=%.0f baseline_instructions_per_pair=%.0f ratio=%.4f" %
          (value, baseline, value / baseline))


main()
