"""Goal: each simulator's daily settlement CSV lists exactly what it settled, in the
documented format, and each injected discrepancy kind makes the next report wrong in
exactly the recorded way, once. Method: real card, wallet and bank simulators; the
report is fetched over HTTP, parsed with Python's csv module and compared with the
simulator's own record; the file written under the report dir must equal it."""
import calendar
import csv
import io
import json
import os
import stat
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from simlib import CARD_OK, Receiver, Sim, auth_body, check, expect, expect_invalid, wait_until  # noqa: E402

HEADER = ["report_date", "channel", "record_id", "idempotency_key", "type", "amount", "currency", "merchant_ref",
          "settled_at"]


def settled_day(sim):
    """The UTC day of the first settled record (a run that crosses midnight stays right)."""
    first_ms = sim.one("SELECT min(settled_at_ms) FROM records")[0]
    return time.strftime("%Y-%m-%d", time.gmtime(first_ms / 1000))


def report(sim, date):
    r = expect(sim.client().get("/v1/reports/settlement?date=" + date), 200)
    check(r.headers["content-type"].startswith("text/csv"), "content type %r" % r.headers)
    rows = list(csv.reader(io.StringIO(r.raw, newline="")))
    check(rows[0] == HEADER, "header %r" % rows[0])
    path = os.path.join(sim.dir, "settlement-%s-%s.csv" % (sim.kind, date))
    with open(path, newline="") as f:
        check(f.read() == r.raw, "the file equals the answer")
    check(stat.S_IMODE(os.stat(path).st_mode) == 0o600, "report file mode")
    return [dict(zip(HEADER, row)) for row in rows[1:]], r.raw


def truth(sim, kinds, date):
    start_ms = calendar.timegm(time.strptime(date, "%Y-%m-%d")) * 1000
    return sim.rows("SELECT id, idempotency_key, kind, amount, currency, coalesce(merchant_ref, '') FROM records"
                    " WHERE settled_at_ms >= ? AND settled_at_ms < ? AND kind IN (%s) ORDER BY settled_at_ms, id" %
                    ",".join("'%s'" % k for k in kinds), (start_ms, start_ms + 86400000))


def card_activity(c):
    tricky = 'ref, with "quotes"\nand a newline'
    a = expect(c.post("/v1/authorizations", auth_body(CARD_OK, 1000, merchant_ref=tricky), key="s-a1"), 200).json
    path = "/v1/authorizations/%s" % a["id"]
    expect(c.post(path + "/captures", {"amount": 600}, key="s-c1"), 200)
    expect(c.post(path + "/captures", {"amount": 400}, key="s-c2"), 200)
    expect(c.post(path + "/captures", {"amount": 1}, key="s-c3"), 200)  # declined 61: not settled
    expect(c.post(path + "/refunds", {"amount": 250}, key="s-r1"), 200)
    expect(c.post("/v1/authorizations", auth_body(CARD_OK, 777, "USD", capture=True), key="s-a2"), 200)
    expect(c.post("/v1/authorizations", auth_body(CARD_OK, 5), key="s-a3"), 200)  # held only: not settled
    return tricky


def test_card_report():
    sim = Sim("card").start()
    try:
        c = sim.client()
        tricky = card_activity(c)
        date = settled_day(sim)
        rows, raw = report(sim, date)
        want = truth(sim, ("capture", "refund"), date)
        check(len(want) == 4, "three captures and a refund settled: %r" % want)
        got = [(r["record_id"], r["idempotency_key"], r["type"], int(r["amount"]), r["currency"], r["merchant_ref"])
               for r in rows]
        check(got == want, "report rows equal the record:\n%r\n%r" % (got, want))
        check(all(r["report_date"] == date and r["channel"] == "card" for r in rows), "date and channel columns")
        check(all(r["settled_at"].startswith(date + "T") and r["settled_at"].endswith("Z") and
                  len(r["settled_at"]) == 24 for r in rows), "settled_at format: %r" % rows[0]["settled_at"])
        check(rows[0]["merchant_ref"] == tricky and '"ref, with ""quotes""' in raw, "RFC 4180 quoting")
        again, raw_again = report(sim, date)
        check(raw_again == raw, "a report repeats")
        empty, _ = report(sim, "2001-01-01")
        check(empty == [], "a day without activity has a header only")
        expect_invalid(c.get("/v1/reports/settlement?date=2025-02-30"), "date")
        expect_invalid(c.get("/v1/reports/settlement"), "date")
        test_discrepancies(sim, c, date, rows)
    finally:
        sim.close()


def inject(c, date, kind, count=1):
    r = expect(c.post("/v1/admin/discrepancies", {"date": date, "kind": kind, "count": count}), 200).json
    check(r["kind"] == kind and r["consumed"] is False, "injected: %r" % r)
    return r["id"]


def detail(c, discrepancy_id):
    items = expect(c.get("/v1/admin/discrepancies"), 200).json["data"]
    return [d for d in items if d["id"] == discrepancy_id][0]


def test_discrepancies(sim, c, date, true_rows):
    """Each kind, once: the next report is wrong exactly as recorded, the one after is true."""
    ids = [r["record_id"] for r in true_rows]
    d = inject(c, date, "missing_row")
    rows, _ = report(sim, date)
    check([r["record_id"] for r in rows] == ids[1:], "missing_row drops the first row")
    info = detail(c, d)
    check(info["consumed"] and info["applied"] == 1 and info["rows"][0]["record_id"] == ids[0], "detail %r" % info)
    rows, _ = report(sim, date)
    check([r["record_id"] for r in rows] == ids, "consumed: the next report is true again")
    d = inject(c, date, "extra_row", 2)
    rows, _ = report(sim, date)
    check([r["record_id"] for r in rows[:len(ids)]] == ids and len(rows) == len(ids) + 2, "two extra rows")
    extra = rows[len(ids):]
    recorded = set(r[0] for r in sim.rows("SELECT id FROM records"))
    check(all(r["record_id"].startswith("x_") and r["record_id"] not in recorded and int(r["amount"]) > 0 and
              r["type"] == "capture" and r["idempotency_key"] == "" for r in extra), "extra rows: %r" % extra)
    check(sorted(x["record_id"] for x in detail(c, d)["rows"]) == sorted(r["record_id"] for r in extra),
          "extra rows recorded")
    d = inject(c, date, "amount_mismatch")
    rows, _ = report(sim, date)
    check(int(rows[0]["amount"]) == int(true_rows[0]["amount"]) + 1 and rows[1:] == true_rows[1:],
          "amount_mismatch: +1 on the first row only")
    row = detail(c, d)["rows"][0]
    check(row == {"record_id": ids[0], "field": "amount", "true": true_rows[0]["amount"],
                  "reported": str(int(true_rows[0]["amount"]) + 1)}, "detail %r" % row)
    inject(c, date, "currency_mismatch", 2)
    inject(c, date, "duplicate_row")
    rows, _ = report(sim, date)
    want_currency = ["USD" if r["currency"] == "EUR" else "EUR" for r in true_rows[:2]]
    check(rows[0] == rows[1] and rows[0]["record_id"] == ids[0], "duplicate_row after currency_mismatch: %r" % rows[:2])
    check(rows[0]["currency"] == want_currency[0] and rows[2]["currency"] == want_currency[1],
          "currency_mismatch on the first two rows: %r" % rows[:3])
    check(len(rows) == len(ids) + 1, "one row duplicated")
    stored = sim.rows("SELECT kind, consumed_at_ms IS NOT NULL, detail FROM discrepancies ORDER BY id")
    check(len(stored) == 5 and all(r[1] for r in stored), "every discrepancy recorded and consumed")
    check(json.loads(stored[-1][2])["applied"] == 1, "detail in the record")
    expect_invalid(c.post("/v1/admin/discrepancies", {"date": date, "kind": "wrong_kind"}), "kind")
    expect_invalid(c.post("/v1/admin/discrepancies", {"date": "yesterday", "kind": "extra_row"}), "date")
    expect_invalid(c.post("/v1/admin/discrepancies", {"date": date, "kind": "extra_row", "count": 0}), "count")


def test_wallet_and_bank_reports():
    wallet = Sim("wallet", data={"accounts": [{"id": "w_1", "currency": "EUR", "balance": 1000}]}).start()
    receiver = Receiver()
    bank = Sim("bank", config={"settle_delay_ms": 10}).start()
    try:
        w = wallet.client()
        p = expect(w.post("/v1/payments", {"wallet_id": "w_1", "amount": 300, "currency": "EUR"}, key="wp1"),
                   200).json
        expect(w.post("/v1/payments", {"wallet_id": "w_1", "amount": 3000, "currency": "EUR"}, key="wp2"), 200)
        expect(w.post("/v1/payments/%s/refunds" % p["id"], {"amount": 100}, key="wr1"), 200)
        rows, _ = report(wallet, settled_day(wallet))
        check([(r["type"], r["amount"]) for r in rows] == [("payment", "300"), ("refund", "100")],
              "wallet report: %r" % rows)
        b = bank.client()
        ids = []
        for key, account in (("bt1", "0001234"), ("bt2", "0009901"), ("bt3", "0005678")):
            body = {"direction": "credit" if key != "bt3" else "debit", "amount": 50, "currency": "EUR",
                    "callback_url": receiver.url, "account": {"routing_number": "110000000", "account_number": account}}
            ids.append(expect(b.post("/v1/transfers", body, key=key), 202).json["id"])
        wait_until(lambda: bank.rows("SELECT count(*) FROM transfers WHERE status != 'pending'")[0][0] == 3,
                   "the transfers to be decided")
        rows, _ = report(bank, settled_day(bank))
        got = sorted((r["record_id"], r["type"]) for r in rows)
        check(got == sorted([(ids[0], "credit"), (ids[2], "debit")]), "bank report: settled only: %r" % rows)
    finally:
        wallet.close()
        bank.close()
        receiver.close()


def main():
    test_card_report()
    test_wallet_and_bank_reports()
    print("ok")


if __name__ == "__main__":
    main()
