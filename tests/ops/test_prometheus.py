"""Goal: the Prometheus and Grafana files in deploy/ work against the paycore that is
built: the scrape config and rules load (promtool check config / check rules), every
alert fires and stays quiet where it should (promtool test rules), and every metric an
alert or a Grafana query names is one a live paycore exposes, so a renamed metric
cannot leave a silent alert or an empty panel behind.
Method: promtool on the files; a real `paycore serve` with traffic, a risk decision
and a verification, scraped once; names compared.
Needs promtool (Debian's prometheus package, scripts/deps.sh): missing FAILS in CI."""
import json
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../api"))
from pcapi import TIMEOUT_S, Server, account, check, expect, transfer  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../..")
PROM = os.path.join(ROOT, "deploy/prometheus")
GRAFANA = os.path.join(ROOT, "deploy/grafana/paycore.json")
NAME = re.compile(r"\bpaycore_[a-z0-9_]+")


def need_promtool():
    if shutil.which("promtool"):
        return
    if os.environ.get("CI"):
        check(False, "promtool missing: scripts/deps.sh installs Debian's prometheus package")
    print("SKIPPED: needs promtool (apt-get install prometheus)", file=sys.stderr)
    sys.exit(77)


def promtool(*args):
    out = subprocess.run(["promtool"] + list(args), capture_output=True, text=True, timeout=120, cwd=PROM)
    check(out.returncode == 0, "promtool %s:\n%s%s" % (" ".join(args), out.stdout, out.stderr))
    return out.stdout


def live_scrape():
    server = Server()
    try:
        rules = os.path.join(server.dir, "risk.rules")
        open(rules, "w").write("amount_limit currency=USD max_minor=500\n")
        # --demo: the gateway runs (with the channel simulators), so its metrics are there;
        # a broker nobody listens on: paycore starts, and says it is not connected
        server.start(["--risk-rules", rules, "--risk-rules-only", "--demo",
                      "--events-amqp", "amqp://guest:guest@127.0.0.1:1/"])
        admin = server.client()
        # a webhook endpoint: the outbox's per-destination series
        expect(admin.post("/v1/webhook-endpoints", {"url": "http://127.0.0.1:1/hook", "events": ["*"]}), 201,
               what="webhook endpoint")
        # payments: one approved, one declined by the card (its decline code series)
        expect(admin.post("/v1/merchants", {"id": "m1", "name": "Shop", "country": "DE", "default_currency": "EUR",
                                            "currencies": ["EUR"], "pricing": {"default": {"bps": 290, "fixed_minor": 30}}}),
               201, what="merchant")
        for number, status in (("4242424242424242", "authorized"), ("4000000000000051", "declined")):
            body = {"merchant_id": "m1", "amount": 500, "currency": "EUR", "capture_method": "manual",
                    "payer": {"id": "P1", "country": "DE"},
                    "payment_method": {"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2030,
                                                                "cvc": "123"}}}
            paid = expect(admin.post("/v1/payments", body), 201, what="payment").json
            check(paid["status"] == status, "payment %s: %r" % (status, paid))
        expect(admin.post("/v1/accounts", {"accounts": [account("a"), account("b")]}), 200, what="accounts")
        expect(admin.post("/v1/transfers", transfer("t1", "a", "b", 5)), 201, what="transfer")
        decision = {"payer_id": "P", "payee_id": "M", "amount_minor": 900, "currency": "USD", "mcc": "5411",
                    "channel": "ecommerce", "country_payer": "DE", "country_merchant": "DE", "account_age_days": 9}
        expect(admin.post("/v1/risk/decisions", decision), 200, what="decision")
        expect(admin.post("/v1/verify", {}), 200, what="verify")
        return expect(admin.get("/metrics"), 200, what="scrape").raw
    finally:
        server.close()


def exposed_names(text):
    names = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            names.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return names


def rule_exprs():
    exprs, current = [], None
    for line in open(os.path.join(PROM, "rules/paycore.rules.yml")):
        m = re.match(r"^\s+expr:\s*(\|)?\s*(.*)$", line)
        if m:
            current = [m.group(2)] if m.group(2) else []
            exprs.append(current)
        elif current is not None and re.match(r"^\s{10,}\S", line):
            current.append(line.strip())
        else:
            current = None
    return [" ".join(e) for e in exprs]


def grafana_exprs():
    dash = json.load(open(GRAFANA))
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def main():
    need_promtool()
    promtool("check", "config", "prometheus.yml")
    promtool("check", "rules", "rules/paycore.rules.yml")
    out = promtool("test", "rules", "tests/paycore.rules.test.yml")
    check("SUCCESS" in out, "rule tests: %s" % out)
    text = live_scrape()
    lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    check(lint.returncode == 0, "promtool check metrics on a live scrape:\n%s%s" % (lint.stdout, lint.stderr))
    exposed = exposed_names(text)
    rules = rule_exprs()
    check(len(rules) == 12, "read %d alert expressions" % len(rules))
    alerts_tested = set(re.findall(r"alertname: (\w+)", open(os.path.join(PROM, "tests/paycore.rules.test.yml")).read()))
    alerts = set(re.findall(r"- alert: (\w+)", open(os.path.join(PROM, "rules/paycore.rules.yml")).read()))
    check(alerts == alerts_tested, "alerts without a unit test: %r" % sorted(alerts - alerts_tested))
    anchors = set(re.findall(r"runbook_url: docs/operations.md#(\S+)", open(os.path.join(PROM, "rules/paycore.rules.yml")).read()))
    headings = {h.strip().lower() for h in re.findall(r"^### (.+)$", open(os.path.join(ROOT, "docs/operations.md")).read(), re.M)}
    check(len(anchors) == len(alerts) and anchors <= headings, "runbook sections missing: %r" % sorted(anchors - headings))
    queries = grafana_exprs()
    check(len(queries) >= 28, "read %d Grafana queries" % len(queries))
    for where, exprs in (("alert", rules), ("Grafana", queries)):
        for expr in exprs:
            names = set(NAME.findall(expr))
            check(names or where == "alert", "%s query names no paycore metric: %s" % (where, expr))
            missing = names - exposed
            check(not missing, "%s query names metrics paycore does not expose %r: %s" % (where, sorted(missing), expr))
    print("%d alerts, %d Grafana queries checked against %d exposed series names" % (len(rules), len(queries), len(exposed)))
    print("4 passed, 0 failed")


if __name__ == "__main__":
    main()
