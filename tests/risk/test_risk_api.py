"""Goal: the risk routes decide, store, queue reviews and refuse bad input with stable
codes; reload keeps the old rules on a bad file; a missing model stops the server
unless --risk-rules-only; decisions and reviews survive a restart; decision ids tell
nothing of order or volume (consecutive ones go up and down over [2^52, 2^53)), and
keep working for feedback and reviews after a restart.
Method: a real `paycore serve` over loopback with a rules file, driven over HTTP."""
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "api"))
from pcapi import BIN, TIMEOUT_S, Server, check, expect  # noqa: E402

T0 = 1719300000


def auth(payer="P1", amount=1500, **kw):
    body = {"ts": T0, "payer_id": payer, "payee_id": "M1", "amount_minor": amount, "currency": "USD",
            "mcc": "5411", "channel": "ecommerce", "country_payer": "US", "country_merchant": "US",
            "device_id": "dev1", "ip_prefix": "10.2.3", "account_age_days": 300}
    body.update(kw)
    return body


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def opaque(decision_id):
    return isinstance(decision_id, int) and 2 ** 52 <= decision_id < 2 ** 53


def test_decisions(admin):
    d = expect(admin.post("/v1/risk/decisions", auth()), 200, what="plain").json
    check(d["outcome"] == "approve" and d["reasons"] == [] and d["score"] is None, "approve %r" % d)
    check(d["rules_only"] is True and opaque(d["decision_id"]), "rules-only decision %r" % d)
    d = expect(admin.post("/v1/risk/decisions", auth(payer="P-bad")), 200, what="blocked").json
    check(d["outcome"] == "decline", "blocked payer declined %r" % d)
    check(d["reasons"] == [{"code": "blocklist_payer", "action": "decline"}], "reason %r" % d)
    d = expect(admin.post("/v1/risk/decisions", auth(amount=500001)), 200, what="over limit").json
    check(d["outcome"] == "review" and d["reasons"][0]["code"] == "amount_limit", "review %r" % d)
    return d["decision_id"]


def test_reviews(server, admin, review_id):
    r = expect(admin.get("/v1/risk/reviews"), 200, what="open reviews").json
    check([x["decision_id"] for x in r["data"]] == [review_id] and r["has_more"] is False, "queue %r" % r)
    r = expect(admin.post("/v1/risk/reviews/%d/approve" % review_id, {}), 200, what="approve").json
    check(r["state"] == "approved" and r["decided_by"] != "" and r["decided_ts"] > 0, "decided %r" % r)
    expect(admin.post("/v1/risk/reviews/%d/decline" % review_id, {}), 409, "risk_review_already_decided",
           "decided twice")
    expect(admin.post("/v1/risk/reviews/999999/approve", {}), 404, "risk_review_not_found", "unknown review")
    expect(admin.post("/v1/risk/reviews/abc/approve", {}), 404, "risk_review_not_found", "bad id")
    merchant = expect(admin.post("/v1/api-keys", {"scope": "merchant", "name": "shop"}), 201, what="merchant key").json
    shop = server.client(merchant["key"])
    expect(shop.get("/v1/risk/reviews"), 403, "forbidden", "merchant reads reviews")
    expect(shop.post("/v1/risk/reviews/%d/decline" % review_id, {}), 403, "forbidden", "merchant decides")
    r = expect(admin.get("/v1/risk/reviews?state=approved"), 200, what="approved list").json
    check(len(r["data"]) == 1, "approved list %r" % r)
    expect(admin.get("/v1/risk/reviews?state=weird"), 400, "query_invalid", "bad state")
    expect(admin.get("/v1/risk/reviews?limit=0"), 400, "query_invalid", "bad limit")


def test_opaque_ids(admin):
    """Consecutive decisions: ids in no order and spread over the whole space (the
    decision numbers 1, 2, ... are no ids); each one takes feedback."""
    ids = [expect(admin.post("/v1/risk/decisions", auth(payer="PO%d" % i)), 200, what="decision %d" % i).json
           ["decision_id"] for i in range(40)]
    check(all(opaque(i) for i in ids) and len(set(ids)) == len(ids), "distinct opaque ids: %r" % ids[:5])
    ups = sum(1 for a, b in zip(ids, ids[1:]) if b > a)
    check(5 <= ups <= 34, "no order: %d of 39 steps go up: %r" % (ups, ids[:8]))
    check(max(ids) - min(ids) > 2 ** 50, "no density: %r" % ids[:8])
    for i in (ids[0], ids[-1]):
        expect(admin.post("/v1/risk/feedback", {"decision_id": i, "is_fraud": False}), 200, what="feedback %d" % i)
    for number in (1, 2, 3, 40):
        expect(admin.post("/v1/risk/feedback", {"decision_id": number, "is_fraud": True}), 404,
               "risk_decision_not_found", "a decision's number is no id")
    return ids[0]


def test_bad_inputs(admin, first_id):
    cases = [
        (auth(amount="15"), "amount_not_integer", "amount_minor"),
        (auth(amount=1.5), "amount_not_integer", "amount_minor"),
        (auth(amount=0), "amount_out_of_range", "amount_minor"),
        (auth(channel="pigeon"), "risk_channel_invalid", "channel"),
        (auth(mcc="54a1"), "value_out_of_range", "mcc"),
        (auth(currency="usd"), "currency_invalid", "currency"),
        (auth(payer="bad id!"), "id_invalid", "payer_id"),
        (auth(country_payer="USA"), "string_too_long", "country_payer"),
        (auth(extra=1), "field_unknown", "extra"),
        (auth(account_age_days=-1), "value_out_of_range", "account_age_days"),
    ]
    for body, code, field in cases:
        r = expect(admin.post("/v1/risk/decisions", body), 400, code, "bad %s" % field)
        check(r.json["error"].get("field") == field, "field for %s: %r" % (code, r.json))
    missing = auth()
    del missing["payer_id"]
    expect(admin.post("/v1/risk/decisions", missing), 400, "field_missing", "missing payer")
    expect(admin.request("POST", "/v1/risk/decisions", raw=b"{not json"), 400, "json_invalid", "not json")
    expect(admin.post("/v1/risk/feedback", {"decision_id": 1}), 400, "field_missing", "no is_fraud")
    expect(admin.post("/v1/risk/feedback", {"decision_id": 424242, "is_fraud": True}), 404,
           "risk_decision_not_found", "unknown decision")
    r = expect(admin.post("/v1/risk/feedback", {"decision_id": first_id, "is_fraud": True}), 200, what="feedback").json
    check(r["recorded"] is True, "feedback %r" % r)


def test_reload(server, admin, rules):
    write(rules, "block payer=P-bad\nthis is not a rule\n")
    r = expect(admin.post("/v1/admin/reload", {}), 400, "risk_rules_invalid", "bad rules")
    check("line 2" in r.json["error"]["message"], "line number in %r" % r.json)
    d = expect(admin.post("/v1/risk/decisions", auth(payer="P-bad")), 200, what="old rules").json
    check(d["outcome"] == "decline", "old rules kept %r" % d)
    write(rules, "block payer=P-new\n")
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + TIMEOUT_S
    while time.time() < deadline:
        d = expect(admin.post("/v1/risk/decisions", auth(payer="P-new")), 200, what="new rules").json
        if d["outcome"] == "decline":
            break
        time.sleep(0.05)
    check(d["outcome"] == "decline", "SIGHUP loaded the new rules")
    d = expect(admin.post("/v1/risk/decisions", auth(payer="P-bad")), 200, what="dropped rule").json
    check(d["outcome"] == "approve", "the old block is gone %r" % d)


def test_metrics_health(server, admin):
    h = expect(server.client().get("/healthz"), 200, what="healthz").json
    check(h["risk"] == "rules_only", "healthz shows rules-only: %r" % h)
    text = server.client().get("/metrics").raw
    for needle in ('paycore_risk_decisions_total{outcome="decline"}', 'paycore_risk_reasons_total{reason="blocklist_payer"}',
                   "paycore_risk_scoring_seconds_count", "paycore_risk_rules_only 1"):
        check(needle in text, "metrics have %s" % needle)
    if shutil.which("promtool") is not None:
        out = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
        problems = [l for l in (out.stdout + out.stderr).splitlines() if l.startswith("paycore_risk_")]
        check(not problems, "promtool on the risk metrics: %r" % problems)


def test_model_required(server):
    out = subprocess.run([BIN, "serve", "--db", server.db, "--listen", "127.0.0.1:0",
                          "--risk-model", "/nonexistent/model.json"], capture_output=True, text=True, timeout=30)
    check(out.returncode != 0 and "risk_model_missing" in out.stderr, "missing model refused: %r" % out.stderr[-300:])


def test_replay(server):
    csv = os.path.join(server.dir, "replay.csv")
    rows = ["txn_id,ts,payer_id,payee_id,amount_minor,currency,mcc,channel,country_payer,"
            "country_merchant,device_id,ip_prefix,account_age_days,is_fraud"]
    for i in range(5):
        payer = "P-new" if i == 4 else "P%d" % i
        rows.append("%d,%d,%s,M1,%d,EUR,5812,card_present,FR,FR,,,100,0" % (i + 1, T0 + i, payer, 1000 + i))
    write(csv, "\n".join(rows) + "\n")
    out = subprocess.run([BIN, "risk", "replay", "--data", csv, "--url", "http://127.0.0.1:%d" % server.port,
                          "--key", server.admin_key], capture_output=True, text=True, timeout=60)
    check(out.returncode == 0, "replay failed: %r" % out.stderr)
    line = out.stdout.strip()
    check(line.startswith("decisions=5 approve=4 review=0 decline=1 errors=0 "), "replay line %r" % line)
    check("throughput_per_s=" in line and "p99_ms=" in line, "replay line %r" % line)


def main():
    server = Server()
    rules = os.path.join(server.dir, "risk.rules")
    write(rules, "block payer=P-bad\namount_limit currency=USD max_minor=500000\n")
    try:
        test_model_required(server)
        server.start(["--risk-rules", rules, "--risk-rules-only"])
        admin = server.client(server.admin_key)
        review_id = test_decisions(admin)
        test_reviews(server, admin, review_id)
        test_bad_inputs(admin, test_opaque_ids(admin))
        test_metrics_health(server, admin)
        test_reload(server, admin, rules)
        test_replay(server)
        last = expect(admin.post("/v1/risk/decisions", auth()), 200, what="last").json["decision_id"]
        check(server.stop() == 0, "clean stop")
        server.start(["--risk-rules", rules, "--risk-model", "/nonexistent/model.json", "--risk-rules-only"])
        admin = server.client(server.admin_key)
        d = expect(admin.post("/v1/risk/decisions", auth()), 200, what="after restart").json
        check(opaque(d["decision_id"]) and d["decision_id"] != last, "a new id after restart: %r" % d)
        for i in (last, d["decision_id"]):
            expect(admin.post("/v1/risk/feedback", {"decision_id": i, "is_fraud": False}), 200,
                   what="feedback on %d after the restart" % i)
        expect(admin.post("/v1/risk/reviews/%d/decline" % review_id, {}), 409, "risk_review_already_decided",
               "decided review stays decided after restart")
        check(os.path.exists(server.db + "-risk.db") and os.path.exists(server.db + "-risk.features"),
              "decisions file and snapshot next to the ledger db")
    finally:
        server.close()
    print("risk api: ok")


if __name__ == "__main__":
    main()
