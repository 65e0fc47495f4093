"""Goal: every change of a payment, refund, payout or wallet withdrawal writes its event
with the change (one event per stored version: object_seq gap-free and equal to the
object's version), the type names the state reached, the last event carries the object
exactly as GET shows it, the events reach a merchant's webhook endpoint signed and in
order per object, and a merchant key sees (lists, reads, receives) only its own.
Method: a real server with real card and bank simulator processes (tests/payments
paylib) and real HTTP receivers (receiver.py); two merchants each with a key and an
endpoint, an admin endpoint for every event; card payments (manual capture, partial
capture, refund, cancel, channel decline, risk decline, 3-D Secure), a payout, a
wallet with a withdrawal; then the event lists, the deliveries and the objects are
compared. Then a payment load SIGKILLed mid-way (tests/payments' crash load): after the
restart and recovery every payment and refund still has exactly one event per stored
version, and the receiver got them all."""
import os
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../payments"))
sys.path.insert(0, HERE)
from paylib import BANK_OK, CARD_3DS, CARD_DECLINE, TIMEOUT_S, Env, card_payment, wait_for  # noqa: E402
from test_payments_crash import Load, settled  # noqa: E402
from receiver import (Receiver, all_events, check, check_order_per_object, expect,  # noqa: E402
                      signature_valid)

PAYMENTS_TYPES = ["payment.*", "refund.*", "payout.*", "withdrawal.*"]


def endpoint(client, url, events):
    r = expect(client.post("/v1/webhook-endpoints", {"url": url, "events": events}), 201, what="endpoint")
    return r.json


def pay(m, body, status=201):
    return expect(m.post("/v1/payments", body), status, what="payment").json


def flows(env, m):
    """The objects one merchant makes, with the state-named event types (".updated"
    left out) each must have, in order."""
    out = {}
    p = pay(m, card_payment(1000))
    expect(m.post("/v1/payments/%s/capture" % p["id"], {"amount": 400}), 200, what="partial capture")
    expect(m.post("/v1/payments/%s/capture" % p["id"], {"amount": 600}), 200, what="the rest")
    r = expect(m.post("/v1/payments/%s/refunds" % p["id"], {"amount": 100}), 201, what="refund").json
    out[p["id"]] = ["payment.created", "payment.authorized", "payment.partially_captured", "payment.captured",
                    "payment.partially_refunded"]
    out[r["id"]] = ["refund.pending", "refund.succeeded"]
    c = pay(m, card_payment(300))
    expect(m.post("/v1/payments/%s/cancel" % c["id"], None), 200, what="cancel")
    out[c["id"]] = ["payment.created", "payment.authorized", "payment.canceled"]
    d = pay(m, card_payment(200, number=CARD_DECLINE))
    out[d["id"]] = ["payment.created", "payment.declined"]
    k = pay(m, card_payment(250, payer="P_DECLINE"))
    out[k["id"]] = ["payment.declined"]  # risk said no before anything was stored
    t = pay(m, card_payment(800, number=CARD_3DS, capture="automatic"))
    expect(m.post("/v1/payments/%s/confirm" % t["id"], {"code": "123456"}), 200, what="3-D Secure")
    out[t["id"]] = ["payment.created", "payment.requires_action", "payment.captured"]
    po = expect(m.post("/v1/payouts", {"amount": 50, "currency": "EUR", "bank_account": BANK_OK}), 201,
                what="payout").json
    wait_for("payout paid", lambda: m.get("/v1/payouts/" + po["id"]).json["status"] == "paid")
    out[po["id"]] = ["payout.pending", "payout.processing", "payout.paid"]
    w = expect(m.post("/v1/wallets", {"owner_id": "C1", "currency": "EUR"}), 201, what="wallet").json
    top = card_payment(500, payer="C1")
    del top["capture_method"]
    tp = expect(m.post("/v1/wallets/%s/top_ups" % w["id"], top), 201, what="top up").json
    out[tp["id"]] = ["payment.created", "payment.captured"]
    wd = expect(m.post("/v1/wallets/%s/withdrawals" % w["id"], {"amount": 200, "owner_id": "C1",
                                                               "bank_account": BANK_OK}), 201, what="withdraw").json
    wait_for("withdrawal paid", lambda: m.get("/v1/payouts/" + wd["id"]).json["status"] == "paid")
    out[wd["id"]] = ["withdrawal.pending", "withdrawal.processing", "withdrawal.paid"]
    return out


def current(m, object_id):
    """The object as GET shows it now."""
    for path in ("/v1/payments/", "/v1/refunds/", "/v1/payouts/"):
        r = m.get(path + object_id)
        if r.status == 200:
            return r.json
    check(False, "no object %s" % object_id)


def check_objects(m, events, expected, what):
    by_object = {}
    for e in events:
        by_object.setdefault(e["object_id"], []).append(e)
    for object_id, types in expected.items():
        mine = by_object.get(object_id, [])
        seqs = [e["object_seq"] for e in mine]
        check(seqs == list(range(1, len(mine) + 1)), "%s %s: object_seq gap-free from 1: %r" % (what, object_id, seqs))
        named = [e["type"] for e in mine if not e["type"].endswith(".updated")]
        check(named == types, "%s %s: events %r, expected %r" % (what, object_id, named, types))
        now = current(m, object_id)
        check(now["version"] == len(mine), "%s %s: one event per version: version %d, %d events"
              % (what, object_id, now["version"], len(mine)))
        check(mine[-1]["data"]["object"] == now, "%s %s: the last event carries the object as GET shows it"
              % (what, object_id))
        check(mine[-1]["type"].split(".", 1)[1] in (now["status"], "updated"), "%s %s: last type %s, status %s"
              % (what, object_id, mine[-1]["type"], now["status"]))


def check_deliveries(rx, ep, listed, what, relist=None):
    """Everything 'listed' since the endpoint was made (and nothing else) reached 'rx',
    signed, in order per object. 'relist' (optional) lists again: events written after
    'listed' was taken (a recovery pass still finishing) must be in it, and are checked too."""
    secret = ep["secret"]
    listed = [e for e in listed if e["created"] > ep["created"]]
    rx.wait_acked([e["id"] for e in listed], what)
    ids = set(e["id"] for e in listed)
    if relist is not None and rx.acked_ids() - ids:
        listed = [e for e in relist() if e["created"] > ep["created"]]
        ids = set(e["id"] for e in listed)
        rx.wait_acked([e["id"] for e in listed], what)
    attempts = rx.snapshot()
    check(rx.acked_ids() == ids, "%s: delivered exactly the listed events (%d extra)" % (what, len(rx.acked_ids() - ids)))
    by_id = {e["id"]: e for e in listed}
    for a in attempts:
        check(signature_valid(secret, a.headers["Paycore-Signature"], a.body), "%s: signature verifies" % what)
        check(a.event == by_id[a.event["id"]], "%s: the delivered event is the listed one" % what)
    check_order_per_object(attempts, what)


def check_tenancy(a, b, theirs_events, mine_events):
    mine_ids = set(e["object_id"] for e in mine_events)
    check(not (mine_ids & set(e["object_id"] for e in theirs_events)), "no object in both merchants' lists")
    foreign = theirs_events[0]["id"]
    never = "evt_" + "0" * 16
    x, y = a.get("/v1/events/" + foreign), a.get("/v1/events/" + never)
    check(x.status == 404 and x.raw == y.raw, "another merchant's event reads as missing: %r vs %r" % (x, y))
    expect(b.get("/v1/events/" + foreign), 200, what="own event")
    obj = theirs_events[0]["object_id"]
    check(expect(a.get("/v1/events?object_id=" + obj), 200).json["data"] == [], "filter by a foreign object: nothing")
    own = expect(b.get("/v1/events?limit=100&object_id=" + obj), 200).json["data"]
    check(own and all(e["object_id"] == obj for e in own), "filter by object id")
    typed = all_events(a, "&type=payment.captured")
    check(typed and all(e["type"] == "payment.captured" and e["object_id"] in mine_ids for e in typed),
          "filter by type, own only: %r" % [e["object_id"] for e in typed])


def test_kill():
    env = Env(extra_args=["--events-retry-base-ms", "100"])
    try:
        env.start()
        m = env.merchant("mk")
        rx = Receiver()
        ep = endpoint(env.admin, rx.url(), ["*"])
        load = Load(env.port, m.key, 9)
        threads = [threading.Thread(target=load.run, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        wait_for("payments under way", lambda: load.done >= 20)
        env.server.proc.kill()
        env.server.proc.wait(timeout=TIMEOUT_S)
        env.server.proc = None
        load.stop.set()
        for t in threads:
            t.join(TIMEOUT_S)
        env.start()
        payments = wait_for("recovery resolved every pending operation", lambda: settled(env))
        events = all_events(env.admin)
        expected = {}
        for p in payments:
            expected[p["id"]] = None
            for op in p["operations"]:
                if op["type"] == "refund":
                    expected[op["id"]] = None
        check(len(expected) > 20, "a load before the kill: %d objects" % len(expected))
        by_object = {}
        for e in events:
            by_object.setdefault(e["object_id"], []).append(e)
        for object_id in expected:
            mine = by_object.get(object_id, [])
            seqs = [e["object_seq"] for e in mine]
            now = current(env.admin, object_id)
            check(seqs == list(range(1, now["version"] + 1)), "after the kill %s: events %r for version %d"
                  % (object_id, seqs, now["version"]))
            check(mine[-1]["data"]["object"] == now, "after the kill %s: the last event is the object" % object_id)
        check_deliveries(rx, ep, events, "after the kill", relist=lambda: all_events(env.admin))
        rx.stop()
        env.stop()
    finally:
        env.close()


def main():
    env = Env(extra_args=["--events-retry-base-ms", "100"])
    try:
        env.start()
        a, b = env.merchant("ma"), env.merchant("mb")
        rx_a, rx_b, rx_all = Receiver(), Receiver(), Receiver()
        ep_a = endpoint(a, rx_a.url(), PAYMENTS_TYPES)
        ep_b = endpoint(b, rx_b.url(), ["*"])
        ep_all = endpoint(env.admin, rx_all.url(), ["*"])
        check(ep_a["events"] == PAYMENTS_TYPES, "the endpoint keeps its patterns: %r" % ep_a)
        expected_a, expected_b = flows(env, a), flows(env, b)
        events_a = [e for e in all_events(a) if e["object_id"] in expected_a]
        events_b = [e for e in all_events(b) if e["object_id"] in expected_b]
        check_objects(a, events_a, expected_a, "merchant a")
        check_objects(b, events_b, expected_b, "merchant b")
        # the ledger's own events of those payments reach the merchant too (its accounts)
        everything_a = all_events(a)
        check(any(e["type"] == "transfer.created" for e in everything_a), "a merchant sees its payments' transfers")
        check_tenancy(a, b, events_b, events_a)
        check_tenancy(b, a, events_a, events_b)
        # endpoints: a's (payments' types only), b's (all of b's), the admin's (all)
        payments_a = [e for e in everything_a if e["type"].split(".")[0] in ("payment", "refund", "payout",
                                                                           "withdrawal")]
        check_deliveries(rx_a, ep_a, payments_a, "merchant a's endpoint")
        check_deliveries(rx_b, ep_b, all_events(b), "merchant b's endpoint")
        check_deliveries(rx_all, ep_all, all_events(env.admin), "the admin's endpoint")
        for rx in (rx_a, rx_b, rx_all):
            rx.stop()
        env.stop()
        env.server.check_sanitizers()
    finally:
        env.close()
    test_kill()
    print("payments events: ok")


if __name__ == "__main__":
    main()
