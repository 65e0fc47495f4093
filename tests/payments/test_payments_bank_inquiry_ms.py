"""Goal: `--payments-bank-inquiry-ms` decides when paycore asks the bank about a payout
whose callback never comes, and nothing else does:
- a bad value (abc, -5, 1.5, 0, past 7 days, a size suffix, empty; as the flag or as
  PAYCORE_PAYMENTS_BANK_INQUIRY_MS) is refused at start with exit 2 and exactly one
  line on stderr naming the flag, the value and the range, before anything is opened:
  the database's files are left byte for byte;
- at the largest value (7 days) a payout the bank settled, whose callbacks never get
  through, stays `processing` however many recovery passes run (POST
  /v1/admin/payments/recover);
- the same database restarted with a short interval: that payout is paid by the status
  inquiry, and a new payout too, never sooner than the interval after it was made
  (a lower bound, which the code guarantees; the upper one is a generous deadline);
  the ledger balances and the merchant's payouts account holds exactly the two payouts;
- the recovery's sweeps are served by their partial indexes on PostgreSQL too: the
  plans auto_explain logs for the statements of the 'processing' and 'pending' sweeps
  name pay_objects_processing and pay_objects_pending (sequential scans disabled, so
  the planner takes an index whenever one serves the statement).
Method: real `paycore serve` on SQLite, then on a throwaway PostgreSQL cluster
(pgcluster.py, auto_explain on), real card and bank simulators; the bank's callback_url
names a loopback port nobody listens on, so each delivery fails and the bank keeps
retrying. `paycore verify` passes after each run."""
import hashlib
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "store"))
from paylib import (BANK_OK, BIN, TIMEOUT_S, Env, callback_url, card_payment, check, expect, free_port,  # noqa: E402
                    wait_for)
import pcapi  # noqa: E402  (on the path through paylib)
import pgcluster  # noqa: E402
from pcapi import check_conserved  # noqa: E402

INQUIRY_MS = 1500
DAYS_7_MS = 604800000
BAD = ["abc", "-5", "1.5", "0", str(DAYS_7_MS + 1), "1m", ""]
EXPLAIN = ("-c shared_preload_libraries=auto_explain -c auto_explain.log_min_duration=0"
           " -c enable_seqscan=off")


def no_callback_env():
    """The bank's callbacks go to a loopback port nobody listens on."""
    return Env(channel_fields={"bank": {"callback_url": callback_url(free_port())}})


def files_digest(directory):
    out = {}
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


def bad_values(server):
    before = files_digest(server.dir)
    base = [BIN, "serve", "--db", server.db, "--listen", "127.0.0.1:0"] + server.store_args
    env = dict(os.environ)
    env.pop("PAYCORE_PAYMENTS_BANK_INQUIRY_MS", None)
    runs = [(base + ["--payments-bank-inquiry-ms", v], env, v) for v in BAD]
    runs += [(base, dict(env, PAYCORE_PAYMENTS_BANK_INQUIRY_MS=v), v) for v in ("abc", "0", str(DAYS_7_MS + 1))]
    for argv, run_env, value in runs:
        out = subprocess.run(argv, env=run_env, capture_output=True, text=True, timeout=TIMEOUT_S)
        want = ("paycore serve: bad --payments-bank-inquiry-ms '%s' (a whole number from 1 to %d)\n"
                % (value, DAYS_7_MS))
        check(out.returncode == 2 and out.stderr == want and out.stdout == "",
              "--payments-bank-inquiry-ms %r: want exit 2 and the one line %r, got %d %r %r"
              % (value, want, out.returncode, out.stdout, out.stderr))
    check(files_digest(server.dir) == before, "a refused start changed the database's files")
    return len(runs)


def bank_record(env, ref):
    rows = env.bank.rows("SELECT t.status, t.callback_attempts, t.callback_delivered_at_ms IS NOT NULL"
                         " FROM records r JOIN transfers t ON t.id = r.id WHERE r.kind = 'transfer'"
                         " AND r.merchant_ref = ?", (ref,))
    return rows[0] if rows else None


def payout(env, m, amount):
    made_at = time.time()
    po = expect(m.post("/v1/payouts", {"amount": amount, "currency": "EUR", "bank_account": BANK_OK}), 201,
                what="payout").json
    check(po["status"] == "processing", "the payout waits for the bank: %r" % po)
    wait_for("the bank settled %s and tried its callback" % po["id"], lambda: (
        lambda r: r is not None and r[0] == "settled" and r[1] >= 1)(bank_record(env, po["id"])))
    check(not bank_record(env, po["id"])[2], "no callback got through: %r" % (bank_record(env, po["id"]),))
    return po["id"], made_at


def status_of(m, payout_id):
    return expect(m.get("/v1/payouts/" + payout_id), 200).json["status"]


def stays_processing(env, m, payout_id):
    """--payments-bank-inquiry-ms at 7 days: recovery passes never ask about it."""
    for i in range(3):
        expect(env.admin.post("/v1/admin/payments/recover", {}), 200, what="recovery pass %d" % i)
        check(status_of(m, payout_id) == "processing", "pass %d: the payout must stay processing" % i)
    check("learned by status inquiry" not in env.server.log(), "no status inquiry at a 7-day interval")


def paid_by_inquiry(env, m, payout_id, made_at):
    wait_for("%s paid by the status inquiry" % payout_id, lambda: status_of(m, payout_id) == "paid")
    waited_s = time.time() - made_at
    check(waited_s >= INQUIRY_MS / 1000.0,
          "%s paid %.3f s after it was made: sooner than --payments-bank-inquiry-ms" % (payout_id, waited_s))
    check(any(payout_id in line and "learned by status inquiry" in line for line in env.server.log().splitlines()),
          "the log names the inquiry that settled %s" % payout_id)


def run(label):
    env = no_callback_env()
    try:
        refused = bad_values(env.server)
        env.start(["--payments-bank-inquiry-ms", str(DAYS_7_MS)])
        m = env.merchant("mk")
        funding = expect(m.post("/v1/payments", card_payment(100000, capture="automatic")), 201).json
        check(funding["status"] == "captured", "funding captured: %r" % funding)
        first, first_at = payout(env, m, 1000)
        stays_processing(env, m, first)
        check(env.stop() == 0, "SIGTERM exits 0")
        env.start(["--payments-bank-inquiry-ms", str(INQUIRY_MS)])
        paid_by_inquiry(env, m, first, first_at)
        second, second_at = payout(env, m, 700)
        paid_by_inquiry(env, m, second, second_at)
        check_conserved(env.admin, "after the inquiries")
        transit = expect(env.admin.get("/v1/accounts/mer:mk:EUR:payouts"), 200).json
        check(transit["debits_posted"] == transit["credits_posted"] == 1700 and transit["debits_pending"] == 0
              and transit["credits_pending"] == 0, "payouts in transit: the two payouts passed through: %r" % transit)
        check(env.stop() == 0, "SIGTERM exits 0")
        out = subprocess.run([BIN, "verify"] + env.server.store_location_args(), capture_output=True, text=True,
                             timeout=TIMEOUT_S * 3)
        check(out.returncode == 0, "paycore verify: %s %s" % (out.stdout[-500:], out.stderr[-500:]))
        print("%s: %d bad values refused with one line; a payout stayed processing at 7 days and was paid by"
              " the inquiry at %d ms, as was a new one: ok" % (label, refused, INQUIRY_MS))
    finally:
        env.close()


def sweep_plans(cluster):
    with open(os.path.join(cluster.dir, "server.log"), errors="replace") as f:
        plans = f.read().split("LOG:  duration: ")[1:]
    for status, index in (("processing", "pay_objects_processing"), ("pending", "pay_objects_pending")):
        sweeps = [p for p in plans if "FROM pay_objects" in p and "status = '%s'" % status in p]
        check(sweeps, "auto_explain logged the %s sweep's statement" % status)
        bad = [p for p in sweeps if index not in p or "Seq Scan" in p]
        check(not bad, "the %s sweep is not served by %s:\n%s" % (status, index, bad[0][:2000] if bad else ""))
        plan = [line.strip() for line in sweeps[0].splitlines() if "Index" in line or "Sort" in line]
        print("postgresql: %d plans of the %s sweep, each on %s; the first: %s" % (len(sweeps), status, index,
                                                                                  " | ".join(plan)))


def main():
    run("sqlite")
    if not pgcluster.available():
        pcapi.missing_input("PostgreSQL 15 (initdb, pg_ctl in %s)" % pgcluster.PG_BIN,
                            "scripts/deps.sh installs Debian's postgresql; PAYCORE_PG_BIN names another bin dir")
    cluster = pgcluster.Cluster(settings=EXPLAIN)
    try:
        pcapi.PG_HOST = cluster.dir
        run("postgresql")
        sweep_plans(cluster)
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
