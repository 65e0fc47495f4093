"""Goal: a payment's events are stored as references to the payment's version records
and rendered when read: GET /v1/events, GET /v1/events/{id} and the webhooks carry
byte for byte the JSON the payment's own replies carried (the signature over those
bytes), and rows stored whole (by a paycore from before references) are still read
and delivered beside them, the same bytes.
Method: a real server (SQLite, or PostgreSQL with PAYCORE_TEST_PG_HOST) with real
card and bank simulators (tests/payments paylib) and a real receiver (receiver.py);
card payments through capture, partial capture, refund and cancel. Each reply that is
a payment at version v must be, byte for byte, data.object of the event (id, v) as
delivered and as GET /v1/events/{id} answers; every delivery verifies; the store
holds the payment events as "@payment:" references. Then the server stops, every
other payment event row is rewritten to its whole body (what an older paycore wrote),
the server starts, a redelivery since the first event sends everything again: each
body equals its first delivery byte for byte, listed and read alike, signed; new
payments after the restart are delivered too."""
import os
import re
import sqlite3
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../payments"))
sys.path.insert(0, HERE)
from paylib import TIMEOUT_S, Env, card_payment  # noqa: E402
import pcapi  # noqa: E402
from receiver import Receiver, all_events, check, expect, signature_valid  # noqa: E402

OBJECT_AT = b'"data":{"object":'


def object_bytes(body):
    """data.object of an event body, as the bytes it carries (payments' events have
    nothing after the object)."""
    at = body.index(OBJECT_AT) + len(OBJECT_AT)
    check(body.endswith(b"}}"), "an event body ends its data and itself: %r" % body[-20:])
    return body[at:-2]


def payment_replies(m):
    """Payments taken through their steps; the raw replies that are payments."""
    replies = []

    def keep(r, status, what):
        expect(r, status, what=what)
        replies.append(r)
        return r.json

    p = keep(m.post("/v1/payments", card_payment(1000)), 201, "payment")
    keep(m.post("/v1/payments/%s/capture" % p["id"], {"amount": 400}), 200, "partial capture")
    keep(m.post("/v1/payments/%s/capture" % p["id"], {"amount": 600}), 200, "capture the rest")
    expect(m.post("/v1/payments/%s/refunds" % p["id"], {"amount": 100}), 201, what="refund")
    replies.append(expect(m.get("/v1/payments/" + p["id"]), 200, what="get after refund"))
    c = keep(m.post("/v1/payments", card_payment(300)), 201, "payment to cancel")
    keep(m.post("/v1/payments/%s/cancel" % c["id"], None), 200, "cancel")
    keep(m.post("/v1/payments", card_payment(700, capture="automatic")), 201, "automatic capture")
    return replies


def delivered(rx):
    """The first acknowledged delivery of each event id: (raw body, signature header)."""
    out = {}
    for a in rx.snapshot():
        if a.acked and a.event["id"] not in out:
            out[a.event["id"]] = (a.body, a.headers["Paycore-Signature"])
    return out


def check_replies(env, rx, ep, replies, what):
    events = all_events(env.admin)
    by_version = {(e["object_id"], e["object_seq"]): e for e in events}
    rx.wait_acked([e["id"] for e in events if e["created"] > ep["created"]], what)
    bodies = delivered(rx)
    for r in replies:
        key = (r.json["id"], r.json["version"])
        check(key in by_version, "%s: an event for %s version %d" % (what, key[0], key[1]))
        event_id = by_version[key]["id"]
        body, signature = bodies[event_id]
        check(object_bytes(body) == r.raw.encode(), "%s: %s v%d delivered byte for byte as replied:\n%r\n%r"
              % (what, key[0], key[1], object_bytes(body)[:200], r.raw[:200]))
        read = expect(env.admin.get("/v1/events/" + event_id), 200, what="read " + event_id)
        check(read.raw.encode() == body, "%s: GET /v1/events/%s is the delivered body" % (what, event_id))
        check(signature_valid(ep["secret"], signature, body), "%s: the signature verifies" % what)
    return events


def listed_raw(client):
    """Each event's raw bytes as GET /v1/events lists them, by id."""
    out, after = {}, None
    while True:
        r = expect(client.get("/v1/events?limit=100" + ("&starting_after=" + after if after else "")), 200,
                   what="list")
        raw = r.raw.encode()
        for e in r.json["data"]:
            start = raw.index(b'{"id":"%s"' % e["id"].encode())
            end = start + len(expect(client.get("/v1/events/" + e["id"]), 200).raw.encode())
            out[e["id"]] = raw[start:end]
        if not r.json["has_more"]:
            return out
        after = r.json["data"][-1]["id"]


class Rows:
    """The events table of the server's store, read and written beside paycore (SQLite
    file or PostgreSQL database), only while the server is stopped."""

    def __init__(self, server):
        self.server = server
        self.pg = server.store_args[1] if server.store_args else None

    def psql(self, sql):
        name = re.match(r"postgresql://paycore@/([^?]+)", self.pg).group(1)
        argv = [os.path.join(pcapi.PG_BIN, "psql"), "-h", pcapi.PG_HOST, "-U", "paycore", "-d", name,
                "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        out = subprocess.run(argv, input=sql, capture_output=True, text=True, timeout=TIMEOUT_S)
        check(out.returncode == 0, "psql: " + out.stderr)
        return out.stdout

    def payment_bodies(self):
        """seq -> first bytes of the stored body, payment events only."""
        query = "SELECT seq, substr(body, 1, 12) FROM events WHERE type LIKE 'payment.%' ORDER BY seq"
        if self.pg:
            rows = [line.split("|", 1) for line in self.psql(query + ";").splitlines() if line]
            return {int(seq): head for seq, head in rows}
        with sqlite3.connect(self.server.db) as db:
            return {seq: head for seq, head in db.execute(query)}

    def rewrite(self, bodies):
        """seq -> the whole body to store instead."""
        if self.pg:
            sql = "".join("UPDATE events SET body = $b$%s$b$ WHERE seq = %d;\n" % (body.decode(), seq)
                          for seq, body in bodies.items())
            self.psql("BEGIN;\n" + sql + "COMMIT;\n")
            return
        with sqlite3.connect(self.server.db) as db:
            db.executemany("UPDATE events SET body = ? WHERE seq = ?",
                           [(body.decode(), seq) for seq, body in bodies.items()])


def seq_of(event_id):
    return int(event_id[len("evt_"):], 16)


def main():
    env = Env(extra_args=["--events-retry-base-ms", "100"])
    rx = Receiver()
    try:
        env.start()
        m = env.merchant("mref")
        ep = expect(env.admin.post("/v1/webhook-endpoints", {"url": rx.url(), "events": ["*"]}), 201,
                    what="endpoint").json
        replies = payment_replies(m)
        events = check_replies(env, rx, ep, replies, "references")
        first = delivered(rx)
        before = listed_raw(env.admin)
        env.stop()
        rows = Rows(env.server)
        heads = rows.payment_bodies()
        check(len(heads) >= len(replies), "payment events stored: %d" % len(heads))
        check(all(h.startswith("@payment:") for h in heads.values()),
              "payment events are stored as references: %r" % sorted(set(heads.values()))[:3])
        by_seq = {seq_of(e["id"]): e["id"] for e in events}
        whole = {seq: first[by_seq[seq]][0] for i, seq in enumerate(sorted(heads)) if i % 2 == 0}
        rows.rewrite(whole)
        mixed = rows.payment_bodies()
        check(sum(h.startswith("{") for h in mixed.values()) == len(whole) and
              sum(h.startswith("@payment:") for h in mixed.values()) == len(heads) - len(whole),
              "the store now mixes whole bodies and references")
        env.start()
        after = listed_raw(env.admin)
        check(after == before, "listed and read alike after the rows were rewritten (%d events)" % len(before))
        count = len(rx.snapshot())
        expect(env.admin.post("/v1/events/redeliver", {"since": min(seq_of(i) for i in first)}), 202,
               what="redeliver")
        wanted = set(e["id"] for e in events if e["created"] > ep["created"])

        def again():
            return set(a.event["id"] for a in rx.snapshot()[count:] if a.acked) >= wanted
        pcapi_wait(again, "every event delivered again")
        for a in rx.snapshot()[count:]:
            if a.event["id"] in first:
                check(a.body == first[a.event["id"]][0], "%s: delivered again byte for byte (%s)"
                      % (a.event["id"], "whole row" if seq_of(a.event["id"]) in whole else "reference"))
                check(signature_valid(ep["secret"], a.headers["Paycore-Signature"], a.body), "signed again")
        check_replies(env, rx, ep, payment_replies(m), "after the restart")
        env.stop()
        env.server.check_sanitizers()
    finally:
        rx.stop()
        env.close()
    print("events as references: ok")


def pcapi_wait(predicate, what):
    from receiver import wait_for
    wait_for(predicate, what)


if __name__ == "__main__":
    main()
