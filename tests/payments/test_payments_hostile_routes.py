"""Goal: the routes a merchant key reaches beyond payments, accounts and transfers show
it its own objects and figures only, and another merchant's read exactly as missing
ones: events (list, one, redelivery of one), webhook endpoints (list, get, delete,
rotate-secret, enable, deliveries, redelivery to one), /v1/stats (its own key's and payments'
figures; no system sections), GET /v1/channels (no channel counters, health or URLs:
those are every merchant's traffic together, so B could subtract its own and read A's
volume) and /metrics under --metrics-auth (the whole server's: a merchant key is
refused, a read_only key reads it).
Method: two merchants with a key each on a real server and real simulators; merchant
A's objects are asked for with B's key and compared, status and body, with ids that
never existed."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paylib import Env, card_payment, check, expect, wait_for  # noqa: E402

HOOK = "http://127.0.0.1:9/hook"  # nothing listens: deliveries to it retry
MISSING_EVENT = "evt_0000000000000001"  # seqs are creation times: never this
MISSING_ENDPOINT = "we_00000000000000000000000000000000"
OPERATIONAL = ("url", "breaker", "success_rate", "success_rate_calls", "latency_ms", "in_flight", "attempts", "retries")


def same(foreign, missing, what):
    check(foreign.status == missing.status == 404 or (foreign.status == missing.status and foreign.status >= 400),
          "%s: refused: %r" % (what, foreign))
    check(foreign.status == missing.status and foreign.raw == missing.raw,
          "%s: foreign %r differs from missing %r" % (what, foreign, missing))


def events_of(env, payment_id):
    data = expect(env.admin.get("/v1/events?object_id=%s&limit=100" % payment_id), 200, what="events").json["data"]
    check(data, "payment %s made events" % payment_id)
    return [e["id"] for e in data]


def events(env, a, b, paid):
    mine = events_of(env, paid)
    for eid in mine:
        expect(a.get("/v1/events/" + eid), 200, what="A reads its own event")
        same(b.get("/v1/events/" + eid), b.get("/v1/events/" + MISSING_EVENT), "B GET A's event")
        same(b.post("/v1/events/%s/redeliver" % eid), b.post("/v1/events/%s/redeliver" % MISSING_EVENT),
             "B redelivers A's event")
    listed = expect(b.get("/v1/events?object_id=%s" % paid), 200, what="B lists A's payment's events").json
    check(listed["data"] == [], "B lists none of A's events: %r" % listed)
    listed = expect(b.get("/v1/events?limit=100"), 200, what="B lists events").json["data"]
    check(not set(e["id"] for e in listed) & set(mine), "B's list holds none of A's events")


def endpoints(a, b):
    ours = expect(a.post("/v1/webhook-endpoints", {"url": HOOK, "events": ["*"]}), 201, what="A's endpoint").json
    eid = ours["id"]
    for method, path, body in (("GET", "/v1/webhook-endpoints/%s", None),
                               ("GET", "/v1/webhook-endpoints/%s/deliveries", None),
                               ("POST", "/v1/webhook-endpoints/%s/rotate-secret", None),
                               ("POST", "/v1/webhook-endpoints/%s/enable", None),
                               ("DELETE", "/v1/webhook-endpoints/%s", None)):
        same(b.request(method, path % eid, body), b.request(method, path % MISSING_ENDPOINT, body),
             "B %s %s" % (method, path))
    same(b.post("/v1/events/redeliver", {"endpoint_id": eid, "since": 0}),
         b.post("/v1/events/redeliver", {"endpoint_id": MISSING_ENDPOINT, "since": 0}), "B redelivers to A's endpoint")
    listed = expect(b.get("/v1/webhook-endpoints"), 200, what="B's endpoints").json["data"]
    check(eid not in [e["id"] for e in listed], "B lists none of A's endpoints: %r" % listed)
    same(b.post("/v1/webhook-endpoints", {"url": HOOK, "events": ["*"], "merchant_id": a_key_id(a)}),
         b.post("/v1/webhook-endpoints", {"url": HOOK, "events": ["*"], "merchant_id": "key_nobody"}),
         "B makes an endpoint for A's key")
    after = expect(a.get("/v1/webhook-endpoints/" + eid), 200, what="A's endpoint still there").json
    check(after == {k: v for k, v in ours.items() if k != "secret"}, "A's endpoint unchanged: %r" % after)


def a_key_id(a):
    """A's key id: the merchant_id of an endpoint A's key made."""
    listed = expect(a.get("/v1/webhook-endpoints"), 200).json["data"]
    return listed[0]["merchant_id"]


def stats(a, c):
    """'c' is a merchant's key that has made no request yet."""
    own = expect(c.get("/v1/stats?window_s=60&history_s=0"), 200, what="C's stats").json
    check(own["scope"] == "merchant", "C's stats scope: %r" % own["scope"])
    for section in ("writer", "risk", "journal", "channels", "outbox"):
        check(section not in own, "C's stats have no %s section: %r" % (section, sorted(own)))
    theirs = expect(a.get("/v1/stats?window_s=60&history_s=0"), 200, what="A's stats").json
    check(theirs["api"]["requests_total"] > 0 and own["api"]["requests_total"] == 0,
          "the api figures are each key's own: A %r, C %r" % (theirs["api"], own["api"]))
    check(theirs["payments"]["created_total"] >= 1, "A's stats count A's payment: %r" % theirs["payments"])
    check(own.get("payments") is None or own["payments"]["created_total"] == 0,
          "C's payments figures are its own (it made none): %r" % own.get("payments"))


def channels(env, b):
    full = expect(env.admin.get("/v1/channels"), 200, what="admin channels").json
    check(full["channels"] and all("attempts" in ch and "url" in ch for ch in full["channels"]),
          "an admin sees the counters")
    shown = expect(b.get("/v1/channels"), 200, what="merchant channels").json
    check([ch["name"] for ch in shown["channels"]] == [ch["name"] for ch in full["channels"]], "the same channels")
    for ch in shown["channels"]:
        check(not set(OPERATIONAL) & set(ch), "a merchant sees no counters or URL: %r" % ch)
        check("eligibility" in ch and "kind" in ch, "a merchant sees what its payments may use: %r" % ch)
    check("config" not in shown and "routing" in shown, "no config counters: %r" % sorted(shown))


def metrics(env, b):
    expect(b.get("/metrics"), 403, "forbidden", "a merchant key on /metrics with --metrics-auth")
    reader = expect(env.admin.post("/v1/api-keys", {"scope": "read_only", "name": "scraper"}), 201).json["key"]
    text = expect(env.client(reader).get("/metrics"), 200, what="read_only on /metrics").raw
    check("paycore_" in text, "read_only reads the metrics")
    expect(env.client().get("/metrics"), 200, what="admin on /metrics")


def main():
    env = Env(extra_args=["--metrics-auth"])
    try:
        env.start()
        a = env.merchant("ma")
        b = env.merchant("mb")
        paid = expect(a.post("/v1/payments", card_payment(4321, capture="automatic")), 201, what="A's payment").json
        wait_for("A's events", lambda: len(events_of(env, paid["id"])) > 0)
        events(env, a, b, paid["id"])
        endpoints(a, b)
        stats(a, env.merchant("mc"))
        channels(env, b)
        metrics(env, b)
        env.stop()
    finally:
        env.close()
    print("payments hostile routes: events, endpoints, stats, channels, metrics: ok")


if __name__ == "__main__":
    main()
