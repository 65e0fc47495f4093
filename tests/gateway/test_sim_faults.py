"""Goal: the simulators' faults are real and repeatable: a seed gives the same outcome
per request whatever the arrival order; errors, timeouts (applied or not, told apart by
the status inquiry), garbage answers of every mode, outages and latency behave as
docs/channels.md says; bad fault configs are refused with the field or the line.
Method: real simulator processes; faults set by config file or POST /v1/admin/faults;
the simulator's debug log line for a held timeout is the sync point (never a sleep)."""
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from simlib import CARD_OK, Sim, auth_body, check, expect, expect_invalid, wait_until  # noqa: E402

AUTH = "/v1/authorizations"
CHAOS = {"error_rate": 0.2, "garbage_rate": 0.4,
         "garbage_modes": ["invalid_json", "unknown_code", "wrong_amount", "http_500", "close"]}


def outcome(resp):
    """What a client saw, comparable across runs."""
    if isinstance(resp, str):
        return resp
    return (resp.status, resp.raw)


def run_chaos(seed, keys, threads):
    """Sends one authorization per key (split over 'threads' threads) to a fresh card
    simulator; returns {key: outcome} and the record's {key: answer}."""
    sim = Sim("card", config={"seed": seed, "faults": CHAOS}).start()
    try:
        c = sim.client()
        results = {}

        def worker(part):
            for key in part:
                amount = 100 + int(key.split("-")[1])
                results[key] = outcome(c.try_post(AUTH, auth_body(CARD_OK, amount), key=key))

        parts = [keys[i::threads] for i in range(threads)]
        workers = [threading.Thread(target=worker, args=(p,)) for p in parts]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        recorded = dict(sim.rows("SELECT key, response FROM idempotency"))
        return results, recorded
    finally:
        sim.close()


def test_determinism():
    """Two runs with one seed give the same outcome per key, one in order, one
    concurrent in reverse order; another seed gives other outcomes."""
    keys = ["det-%d" % i for i in range(150)]
    first, first_record = run_chaos(7, keys, 1)
    second, second_record = run_chaos(7, list(reversed(keys)), 4)
    check(first == second, "same seed, other order: outcomes differ: %r" % [
        (k, first[k], second[k]) for k in keys if first[k] != second[k]][:3])
    check(first_record == second_record, "same seed: the records differ")
    kinds = set()
    for key, value in first.items():
        if isinstance(value, str):
            kinds.add("closed")
        elif value[0] == 500:
            kinds.add("http_500")
        else:
            try:
                answer = json.loads(value[1])
            except ValueError:
                kinds.add("invalid_json")
                continue
            wrong = answer["amount"] != 100 + int(key.split("-")[1])
            kinds.add("wrong_amount" if wrong else {"00": "ok", "96": "error"}.get(answer["response_code"],
                                                                                   answer["response_code"]))
    for kind in ("ok", "error", "Z9", "wrong_amount", "invalid_json", "http_500", "closed"):
        check(kind in kinds, "the chaos run shows %s (saw %r)" % (kind, kinds))
    other, _ = run_chaos(8, keys, 1)
    check(other != first, "another seed gives other outcomes")


def held_timeout_logged(sim, key):
    return ("simulated timeout for key %s " % key) in sim.log()


def test_timeouts():
    """A timeout holds the request past the client's timeout and closes it; the status
    inquiry tells an applied one (found) from one never applied (404); a retry with
    the same key then replays the first, or applies the second for the first time."""
    config = {"faults": {"timeout_rate": 1.0, "timeout_applied_ratio": 1.0, "timeout_hold_ms": 2000}}
    sim = Sim("card", config=config, args=["--log-level", "debug"]).start()
    try:
        c = sim.client()
        seen = c.try_post(AUTH, auth_body(amount=111), key="to-applied", timeout_s=0.3)
        check(seen == "timeout", "held past the client's timeout: %r" % (seen,))
        wait_until(lambda: held_timeout_logged(sim, "to-applied"), "the applied timeout")
        s = expect(c.get("/v1/status/to-applied"), 200).json
        check(s["found"] and s["response"]["status"] == "approved", "applied: found %r" % s)
        expect(c.post("/v1/admin/faults", {"timeout_rate": 1.0, "timeout_applied_ratio": 0.0,
                                           "timeout_hold_ms": 2000}), 200)
        seen = c.try_post(AUTH, auth_body(amount=222), key="to-lost", timeout_s=0.3)
        check(seen == "timeout", "held: %r" % (seen,))
        wait_until(lambda: held_timeout_logged(sim, "to-lost"), "the unapplied timeout")
        expect(c.get("/v1/status/to-lost"), 404)
        check(sim.rows("SELECT id FROM records WHERE idempotency_key = 'to-lost'") == [], "nothing applied")
        expect(c.post("/v1/admin/faults", {}), 200)
        replay = expect(c.post(AUTH, auth_body(amount=111), key="to-applied"), 200)
        check(replay.headers.get("idempotent-replayed") == "true" and replay.json == s["response"],
              "the retry of an applied timeout replays it: %r" % replay)
        fresh = expect(c.post(AUTH, auth_body(amount=222), key="to-lost"), 200)
        check("idempotent-replayed" not in fresh.headers and fresh.json["status"] == "approved",
              "the retry of an unapplied timeout applies now: %r" % fresh)
        counts = dict(sim.rows("SELECT idempotency_key, count(*) FROM records GROUP BY idempotency_key"))
        check(counts == {"to-applied": 1, "to-lost": 1}, "each applied exactly once: %r" % counts)
        arrivals = dict(sim.rows("SELECT key, count FROM arrivals"))
        check(arrivals == {"to-applied": 2, "to-lost": 2}, "arrivals counted: %r" % arrivals)
        t0 = time.time()
        check(sim.stop() == 0, "stop")
        check(time.time() - t0 < 30, "stop does not wait for a held request")
    finally:
        sim.close()


def test_errors():
    """error_rate: the card answers 96 (recorded, nothing moved); the wallet answers 503
    system_malfunction (not recorded: the status inquiry says never applied)."""
    card = Sim("card", config={"faults": {"error_rate": 1.0}}).start()
    wallet = Sim("wallet", config={"faults": {"error_rate": 1.0}},
                 data={"accounts": [{"id": "w_1", "currency": "EUR", "balance": 100}]}).start()
    try:
        r = expect(card.client().post(AUTH, auth_body(), key="e1"), 200).json
        check(r["status"] == "declined" and r["response_code"] == "96", "card malfunction: %r" % r)
        check(expect(card.client().get("/v1/status/e1"), 200).json["response"] == r, "recorded 96")
        w = wallet.client()
        pay = {"wallet_id": "w_1", "amount": 10, "currency": "EUR"}
        expect(w.post("/v1/payments", pay, key="e2"), 503, "system_malfunction")
        expect(w.get("/v1/status/e2"), 404)
        expect_invalid(w.post("/v1/payments", dict(pay, amount=0), key="e3"), "amount", "validation comes first")
        expect(w.post("/v1/admin/faults", {}), 200)
        ok = expect(w.post("/v1/payments", pay, key="e2"), 200).json
        check(ok["status"] == "approved" and ok["balance_after"] == 90, "after the fault: applied once %r" % ok)
    finally:
        card.close()
        wallet.close()


def test_garbage():
    """Each garbage mode reaches the client; the record keeps the true answer (applied)
    or nothing (garbage_applied_ratio 0)."""
    sim = Sim("card").start()
    try:
        c = sim.client()
        for mode in ("invalid_json", "unknown_code", "wrong_amount", "http_500", "close"):
            expect(c.post("/v1/admin/faults", {"garbage_rate": 1.0, "garbage_modes": [mode]}), 200)
            key = "g-" + mode
            seen = c.try_post(AUTH, auth_body(amount=500), key=key)
            truth = expect(c.get("/v1/status/" + key), 200, what=mode).json["response"]
            check(truth["response_code"] == "00" and truth["amount"] == 500, "%s: true answer %r" % (mode, truth))
            if mode == "close":
                check(isinstance(seen, str) and seen.startswith("closed"), "close: %r" % (seen,))
                continue
            check(not isinstance(seen, str), "%s: an answer came: %r" % (mode, seen))
            if mode == "invalid_json":
                check(seen.status == 200 and seen.json is None, "invalid JSON: %r" % seen)
            elif mode == "http_500":
                check(seen.status == 500 and seen.json is None, "500 garbage: %r" % seen)
            elif mode == "unknown_code":
                check(seen.json["response_code"] == "Z9" and seen.json["id"] == truth["id"], "Z9: %r" % seen)
            else:
                check(seen.json["amount"] == 501 and seen.json["response_code"] == "00", "amount+1: %r" % seen)
        expect(c.post("/v1/admin/faults", {"garbage_rate": 1.0, "garbage_modes": ["http_500"],
                                           "garbage_applied_ratio": 0}), 200)
        expect(c.post(AUTH, auth_body(amount=600), key="g-lost"), 500)
        expect(c.get("/v1/status/g-lost"), 404)
        invalid = c.post(AUTH, dict(auth_body(), amount=-1), key="g-invalid")
        expect_invalid(invalid, "amount", "a refusal is never garbled")
    finally:
        sim.close()


def test_outages_and_latency():
    """An outage answers 503 unavailable (status inquiries too) or closes connections,
    applies nothing, and spares /healthz and /v1/admin; latency waits at least p50
    when p50 == p99."""
    sim = Sim("card").start()
    try:
        c = sim.client()
        expect(c.post("/v1/admin/faults", {"outages": [{"start_ms": 0, "duration_ms": 600000}]}), 200)
        expect(c.post(AUTH, auth_body(), key="o1"), 503, "unavailable")
        expect(c.get("/v1/status/o1"), 503, "unavailable")
        check(expect(c.get("/healthz"), 200).json["outage"] is True, "healthz reports the outage")
        expect(c.get("/v1/admin/faults"), 200)
        expect(c.post("/v1/admin/faults", {"outages": [{"start_ms": 0, "duration_ms": 600000}],
                                           "outage_mode": "close"}), 200)
        seen = c.try_post(AUTH, auth_body(), key="o2")
        check(isinstance(seen, str) and seen.startswith("closed"), "outage close: %r" % (seen,))
        expect(c.post("/v1/admin/faults", {"outages": [{"start_ms": 600000, "duration_ms": 1000,
                                                        "period_ms": 5000}]}), 200)
        check(expect(c.get("/healthz"), 200).json["outage"] is False, "a later window is not now")
        faults = expect(c.get("/v1/admin/faults"), 200).json
        check(faults["outages"] == [{"start_ms": 600000, "duration_ms": 1000, "period_ms": 5000}], "%r" % faults)
        check(sim.rows("SELECT key FROM idempotency") == [], "an outage applies nothing")
        expect(c.post("/v1/admin/faults", {"latency_p50_ms": 150, "latency_p99_ms": 150}), 200)
        t0 = time.monotonic()
        expect(c.post(AUTH, auth_body(), key="o3"), 200)
        check(time.monotonic() - t0 >= 0.15, "the latency was waited")
        check(expect(c.get("/v1/admin/faults"), 200).json["latency_p50_ms"] == 150, "GET faults")
    finally:
        sim.close()


def test_bad_fault_configs():
    sim = Sim("card").start()
    try:
        c = sim.client()
        cases = [({"error_rate": 1.5}, "error_rate"), ({"error_rate": "x"}, "error_rate"),
                 ({"latency_p50_ms": 100, "latency_p99_ms": 50}, "latency_p99_ms"), ({"nope": 1}, "nope"),
                 ({"garbage_modes": ["bogus"]}, "garbage_modes"), ({"outage_mode": "sometimes"}, "outage_mode"),
                 ({"outages": [{"start_ms": 0}]}, "outages"),
                 ({"outages": [{"start_ms": 0, "duration_ms": 10, "period_ms": 5}]}, "outages"),
                 ({"timeout_hold_ms": 0}, "timeout_hold_ms")]
        for body, field in cases:
            expect_invalid(c.post("/v1/admin/faults", body), field, "%r" % body)
        check(expect(c.get("/v1/admin/faults"), 200).json["error_rate"] == 0, "a refused config changes nothing")
    finally:
        sim.close()
    for text, needle in (('{"seed": 1,\n "faults": {"error_rate": 2}}', "error_rate"),
                         ('{"seed": 1,\n\n "bogus": 1}', "bogus"), ('{"seed": 1,\n\n "faults": }', "line 3")):
        bad = Sim("card")
        path = os.path.join(bad.dir, "bad.json")
        with open(path, "w") as f:
            f.write(text)
        out = subprocess.run(bad.command() + ["--config", path], capture_output=True, text=True, timeout=60)
        check(out.returncode == 2 and needle in out.stderr, "config %r: %r" % (text, out.stderr))
        bad.close()


def main():
    test_determinism()
    test_timeouts()
    test_errors()
    test_garbage()
    test_outages_and_latency()
    test_bad_fault_configs()
    print("ok")


if __name__ == "__main__":
    main()
