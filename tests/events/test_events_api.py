"""Goal: the events API pages and filters like the ledger lists, refuses bad input with
the field named and changes nothing, and isolates merchants: a merchant key sees only
the events of its own accounts and only its own endpoints, and a foreign event or
endpoint reads exactly as a missing one (byte for byte apart from the request id).
Method: a real server; two merchant keys and an admin; every route with own, foreign
and missing ids; a merchant's endpoint on a real receiver gets only its events; bad
endpoint URLs (scheme, length, unresolvable host) and event types are refused."""
import os
import re

from receiver import Receiver, all_events, check, expect, wait_for
from pcapi import Server, account, transfer


def make_key(admin, name):
    r = expect(admin.post("/v1/api-keys", {"scope": "merchant", "name": name}), 201, what="key " + name)
    return r.json


def same_as_missing(foreign, missing, what):
    check(foreign.status == missing.status, "%s: status %d vs %d" % (what, foreign.status, missing.status))
    check(foreign.raw == missing.raw, "%s: a foreign object reads as a missing one: %r vs %r"
          % (what, foreign.raw, missing.raw))


def test_paging_and_filters(admin):
    expect(admin.post("/v1/accounts", {"accounts": [account("pa"), account("pb")]}), 200, what="accounts")
    for i in range(7):
        expect(admin.post("/v1/transfers", transfer("pt%d" % i, "pa", "pb", 1 + i)), 201, what="transfer")
    events = all_events(admin)
    ids = [e["id"] for e in events]
    check(ids == sorted(ids) and len(set(ids)) == len(ids), "unique ids in time order")
    r = expect(admin.get("/v1/events?limit=3"), 200, what="page 1").json
    check([e["id"] for e in r["data"]] == ids[:3] and r["has_more"], "first page")
    r = expect(admin.get("/v1/events?limit=3&starting_after=" + ids[2]), 200, what="page 2").json
    check([e["id"] for e in r["data"]] == ids[3:6], "second page")
    r = expect(admin.get("/v1/events?limit=100&order=desc"), 200, what="desc").json
    check([e["id"] for e in r["data"]] == ids[::-1], "newest first")
    r = expect(admin.get("/v1/events?limit=2&order=desc&starting_after=" + ids[-1]), 200, what="desc page").json
    check([e["id"] for e in r["data"]] == ids[-2:-4:-1], "desc paging")
    r = expect(admin.get("/v1/events?type=account.created&limit=100"), 200, what="by type").json
    check([e["object_id"] for e in r["data"]] == ["pa", "pb"], "type filter")
    by_object = expect(admin.get("/v1/events?object_id=pt3"), 200, what="by object").json
    check(len(by_object["data"]) == 1 and by_object["data"][0]["data"]["object"]["amount"] == 4, "object filter")
    created = [e["created"] for e in events]
    r = expect(admin.get("/v1/events?limit=100&from=%d&to=%d" % (created[2], created[5])), 200, what="range").json
    check([e["id"] for e in r["data"]] == ids[2:5], "from inclusive, to exclusive")
    one = expect(admin.get("/v1/events/" + ids[4]), 200, what="one").json
    check(one == events[4], "GET one equals the listed one")
    # the event's object is the API's object (rendered apart: a drift would show here)
    t = expect(admin.get("/v1/transfers/pt3"), 200, what="transfer").json
    check(by_object["data"][0]["data"]["object"] == t, "transfer.created carries GET /v1/transfers/pt3: %r vs %r"
          % (by_object["data"][0]["data"]["object"], t))
    a = expect(admin.get("/v1/accounts/pa"), 200, what="account").json
    created = [e for e in events if e["object_id"] == "pa"][0]["data"]["object"]
    balances = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")
    check(all(created[k] == 0 for k in balances), "account.created shows the account as created (zero balances)")
    check(dict(created, **{k: a[k] for k in balances}) == a, "account.created carries GET /v1/accounts/pa: %r vs %r"
          % (created, a))
    for bad in ("limit=0", "limit=101", "limit=x", "starting_after=pt1", "type=transfer.deleted", "object_id=a%20b",
                "order=up", "from=-1", "nope=1"):
        r = expect(admin.get("/v1/events?" + bad), 400, "query_invalid", bad)
        if bad != "nope=1":
            check(r.json["error"].get("field") == bad.split("=")[0], "field named for %s: %r" % (bad, r.json))
    expect(admin.get("/v1/events/evt_zzz"), 404, "not_found", "bad id")
    expect(admin.get("/v1/events/evt_00000000000000ff"), 404, "not_found", "missing id")


def test_endpoint_validation(admin):
    def refused(body, code, field):
        r = expect(admin.post("/v1/webhook-endpoints", body), 400, code, "%r" % body)
        check(r.json["error"].get("field") == field, "field %s named: %r" % (field, r.json))

    refused({"url": "ftp://127.0.0.1/x", "events": ["*"]}, "url_invalid", "url")
    refused({"url": "not a url", "events": ["*"]}, "url_invalid", "url")
    refused({"url": "http://", "events": ["*"]}, "url_invalid", "url")
    refused({"url": "http://127.0.0.1/" + "x" * 2040, "events": ["*"]}, "url_invalid", "url")
    refused({"url": "http://no-such-host.invalid/hook", "events": ["*"]}, "url_unresolvable", "url")
    refused({"url": 5, "events": ["*"]}, "field_type", "url")
    refused({"events": ["*"]}, "field_missing", "url")
    refused({"url": "http://127.0.0.1:9/x", "events": []}, "event_type_unknown", "events")
    refused({"url": "http://127.0.0.1:9/x", "events": ["transfer.deleted"]}, "event_type_unknown", "events[0]")
    refused({"url": "http://127.0.0.1:9/x", "events": ["*", 3]}, "field_type", "events[1]")
    refused({"url": "http://127.0.0.1:9/x", "events": ["payment.*", "nothing.*"]}, "event_type_unknown", "events[1]")
    refused({"url": "http://127.0.0.1:9/x", "events": ["payment"]}, "event_type_unknown", "events[0]")
    refused({"url": "http://127.0.0.1:9/x", "events": [".*"]}, "event_type_unknown", "events[0]")
    refused({"url": "http://127.0.0.1:9/x", "events": ["*"], "secret": "mine"}, "field_unknown", "secret")
    refused({"url": "http://127.0.0.1:9/x", "events": ["*"], "merchant_id": "key_nobody"}, "invalid_argument",
            "merchant_id")
    check(expect(admin.get("/v1/webhook-endpoints"), 200).json["data"] == [], "nothing was created")
    # the secret is shown once: not by GET, not by an idempotent replay
    body = {"url": "http://127.0.0.1:9/x", "events": ["transfer.created"]}
    first = expect(admin.post("/v1/webhook-endpoints", body, headers={"Idempotency-Key": "ep-1"}), 201).json
    replay = admin.post("/v1/webhook-endpoints", body, headers={"Idempotency-Key": "ep-1"})
    check(replay.status == 201 and replay.json["id"] == first["id"] and "secret" not in replay.json,
          "a replay omits the secret: %r" % replay)
    got = expect(admin.get("/v1/webhook-endpoints/" + first["id"]), 200).json
    check("secret" not in got and got["events"] == ["transfer.created"], "GET has no secret: %r" % got)
    expect(admin.delete("/v1/webhook-endpoints/" + first["id"]), 200, what="delete")
    # patterns and repeats: kept as given, once each (the longest list fits)
    longest = ["payment.partially_refunded"] * 30 + ["payment.*", "refund.*", "*", "transfer.posted"]
    ep = expect(admin.post("/v1/webhook-endpoints", {"url": "http://127.0.0.1:9/x", "events": longest}), 201).json
    check(ep["events"] == ["payment.partially_refunded", "payment.*", "refund.*", "*", "transfer.posted"],
          "repeats listed once: %r" % ep["events"])
    expect(admin.delete("/v1/webhook-endpoints/" + ep["id"]), 200, what="delete")
    expect(admin.get("/v1/webhook-endpoints/" + first["id"]), 404, "not_found", "deleted")


def test_isolation(server, admin):
    ka, kb = make_key(admin, "ma"), make_key(admin, "mb")
    ca, cb = server.client(ka["key"]), server.client(kb["key"])
    rx_a, rx_b, rx_admin = Receiver(), Receiver(), Receiver()
    ep_a = expect(ca.post("/v1/webhook-endpoints", {"url": rx_a.url(), "events": ["*"]}), 201, what="A endpoint").json
    check(ep_a["merchant_id"] == ka["id"], "a merchant's endpoint is its own: %r" % ep_a)
    ep_b = expect(cb.post("/v1/webhook-endpoints", {"url": rx_b.url(), "events": ["*"]}), 201, what="B endpoint").json
    expect(cb.post("/v1/webhook-endpoints", {"url": rx_b.url(), "events": ["*"], "merchant_id": ka["id"]}), 400,
           "invalid_argument", "B cannot make A's endpoint")
    ep_admin_a = expect(admin.post("/v1/webhook-endpoints", {"url": rx_admin.url(), "events": ["*"],
                                                             "merchant_id": ka["id"]}), 201, what="admin for A").json
    expect(admin.post("/v1/accounts", {"accounts": [account("bank")]}), 200, what="bank")
    expect(ca.post("/v1/accounts", {"accounts": [account("a1"), account("a2")]}), 200, what="A accounts")
    expect(cb.post("/v1/accounts", {"accounts": [account("b1")]}), 200, what="B accounts")
    expect(admin.post("/v1/transfers", transfer("fund-a", "bank", "a1", 100)), 201, what="fund A")
    expect(admin.post("/v1/transfers", transfer("fund-b", "bank", "b1", 100)), 201, what="fund B")
    expect(ca.post("/v1/transfers", transfer("a-move", "a1", "a2", 10)), 201, what="A moves")
    a_objects, b_objects = {"a-move", "a1", "a2", "fund-a"}, {"b1", "fund-b"}
    mine = set(e["object_id"] for e in all_events(ca))
    check(mine == a_objects, "A sees its events only: %r" % mine)
    theirs = set(e["object_id"] for e in all_events(cb))
    check(theirs == b_objects, "B sees its events only: %r" % theirs)
    b_event = [e for e in all_events(admin) if e["object_id"] == "fund-b"][0]
    for path in ("/v1/events?object_id=fund-b", "/v1/events?type=account.created", "/v1/events?limit=100"):
        r = expect(ca.get(path), 200, what="A probing " + path)
        seen = set(e["object_id"] for e in r.json["data"])
        seen |= set(e["data"]["object"].get("credit_account_id", "") for e in r.json["data"])
        check(not (seen & b_objects), "nothing of B leaks through %s: %r" % (path, seen))
    missing_id = "evt_0000000000000001"
    same_as_missing(ca.get("/v1/events/" + b_event["id"]), ca.get("/v1/events/" + missing_id), "foreign event")
    same_as_missing(ca.post("/v1/events/%s/redeliver" % b_event["id"]),
                    ca.post("/v1/events/%s/redeliver" % missing_id), "foreign event redelivery")
    # endpoints: B reaches none of A's
    for method, suffix, body in (("GET", "", None), ("DELETE", "", None), ("POST", "/rotate-secret", {}),
                                 ("POST", "/enable", None), ("GET", "/deliveries", None)):
        foreign = cb.request(method, "/v1/webhook-endpoints/" + ep_a["id"] + suffix, body=body)
        missing = cb.request(method, "/v1/webhook-endpoints/we_000000000000000000000000" + suffix, body=body)
        same_as_missing(foreign, missing, "%s endpoint%s" % (method, suffix))
    expect(ca.get("/v1/webhook-endpoints/" + ep_a["id"]), 200, what="A still has its endpoint")
    listed = [e["id"] for e in expect(cb.get("/v1/webhook-endpoints"), 200).json["data"]]
    check(listed == [ep_b["id"]], "B lists its own endpoint only: %r" % listed)
    listed = [e["id"] for e in expect(admin.get("/v1/webhook-endpoints?limit=100"), 200).json["data"]]
    check({ep_a["id"], ep_b["id"], ep_admin_a["id"]} <= set(listed), "admin lists all: %r" % listed)
    r = expect(ca.post("/v1/events/redeliver", {"since": 0, "endpoint_id": ep_b["id"]}), 404, "not_found",
               "A redelivering to B's endpoint")
    check(r.json["error"].get("field") == "endpoint_id", "names endpoint_id")
    # delivery: each merchant's endpoints get that merchant's events and nothing else
    rx_a.wait_acked([e["id"] for e in all_events(ca)], "A's endpoint")
    rx_b.wait_acked([e["id"] for e in all_events(cb)], "B's endpoint")
    rx_admin.wait_acked([e["id"] for e in all_events(ca)], "admin's endpoint for A")
    expect(admin.post("/v1/transfers", transfer("fund-b2", "bank", "b1", 1)), 201, what="fund B again")
    wait_for(lambda: "fund-b2" in set(a.event["object_id"] for a in rx_b.snapshot()), "B's last event")
    for rx, objects, what in ((rx_a, a_objects, "A's endpoint"), (rx_admin, a_objects, "admin's endpoint for A"),
                              (rx_b, b_objects | {"fund-b2"}, "B's endpoint")):
        got = set(a.event["object_id"] for a in rx.snapshot())
        check(got == objects, "%s got exactly its merchant's events: %r" % (what, got))
        rx.stop()


def test_operations(server, admin):
    r = expect(server.client(key="").get("/readyz"), 200, what="readyz").json
    check(r["status"] == "ready" and "outbox_lag_ms" in r["events"] and "amqp" not in r["events"],
          "readyz carries the events: %r" % r)
    text = expect(server.client(key="").get("/metrics"), 200, what="metrics").raw
    for name in ("paycore_events_written_total{type=\"transfer.created\"}", "paycore_events_delivered_total{",
                 "paycore_events_outbox_lag_seconds{", "paycore_events_purged_total "):
        check(name in text, "metrics carry " + name)
    # every type the server has (a written_total line each) is documented, and no other
    served = set(re.findall(r'^paycore_events_written_total\{type="([a-z_.]+)"\}', text, re.M))
    spec = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../docs/openapi.yaml")).read()
    enum = spec[spec.index("    EventType:"):]
    enum = enum[enum.index("enum: [") + 7:enum.index("]")]
    documented = set(t.strip() for t in enum.split(","))
    check(served == documented, "docs/openapi.yaml EventType: missing %r, extra %r"
          % (sorted(served - documented), sorted(documented - served)))
    guide = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../docs/events.md")).read()
    check(all(t in guide for t in served if not t.startswith("withdrawal.")), "docs/events.md names every type")


def test_private_addresses():
    """By default a webhook may reach public addresses only: URLs whose host is (or
    resolves to) loopback, private, link-local or special-purpose are refused at
    creation with url_not_public and nothing stored; an endpoint made under
    --webhook-private-ok gets no delivery once the server runs without it (the address
    is checked again on every connection: DNS may change), its deliveries failing
    with url_not_public."""
    strict = Server(webhook_private_ok=False)
    try:
        strict.start()
        admin = strict.client()
        for url in ("http://127.0.0.1:9/x", "http://localhost:9/x", "http://10.1.2.3/x", "http://172.16.0.1/x",
                    "http://192.168.1.1/x", "http://169.254.169.254/latest/meta-data", "http://100.64.0.1/x",
                    "http://0.0.0.0/x", "http://[::1]:9/x", "http://[fe80::1]/x", "http://[fd00::1]/x",
                    "http://[::ffff:127.0.0.1]/x", "http://224.0.0.1/x", "http://2130706433/x"):
            r = expect(admin.post("/v1/webhook-endpoints", {"url": url, "events": ["*"]}), 400, "url_not_public",
                       "a non-public webhook %s" % url)
            check(r.json["error"].get("field") == "url", "the field is named: %r" % r.json)
        check(expect(admin.get("/v1/webhook-endpoints"), 200).json["data"] == [], "nothing was created")
        r = expect(admin.post("/v1/webhook-endpoints", {"url": "http://93.184.215.14/x", "events": ["*"]}), 201,
                   what="a public address is taken")
        expect(admin.delete("/v1/webhook-endpoints/" + r.json["id"]), 200, what="delete")
    finally:
        strict.close()

    rx = Receiver()
    server = Server()
    try:
        server.start()
        admin = server.client()
        ep = expect(admin.post("/v1/webhook-endpoints", {"url": rx.url(), "events": ["account.created"]}), 201,
                    what="a loopback endpoint under --webhook-private-ok").json
        expect(admin.post("/v1/accounts", {"accounts": [account("before")]}), 200, what="account")
        wait_for(lambda: len(rx.attempts) >= 1, "the loopback endpoint to get its event")
        server.stop()
        server.webhook_args = []
        server.start(extra_args=["--events-retry-base-ms", "100"])
        admin = server.client()
        seen = len(rx.attempts)
        expect(admin.post("/v1/accounts", {"accounts": [account("after")]}), 200, what="account")

        def refused():
            rows = expect(admin.get("/v1/webhook-endpoints/%s/deliveries" % ep["id"]), 200).json["data"]
            return [d for d in rows if "url_not_public" in (d.get("last_error") or "")]
        rows = wait_for(refused, "the delivery to fail with url_not_public")
        check("127.0.0.1" in rows[0]["last_error"], "the error names the address: %r" % rows[0])
        check(len(rx.attempts) == seen, "nothing reached the loopback receiver: %d attempts" % (len(rx.attempts) - seen))
    finally:
        server.close()
        rx.stop()


def main():
    server = Server()
    try:
        server.start()
        admin = server.client()
        test_paging_and_filters(admin)
        test_endpoint_validation(admin)
        test_isolation(server, admin)
        test_operations(server, admin)
    finally:
        server.close()
    test_private_addresses()
    print("events api: ok")


if __name__ == "__main__":
    main()
