"""Goal: the slow parts of webhook delivery behave without waiting days: a delivery
retried past 3 days is dead-lettered; an endpoint failing for 5 days is disabled and
says why; re-enabling resumes it; one event or everything since a time is delivered
again on request; retention never purges an event some destination still waits for
(retrying or dead-lettered), and purges the rest; a rotated secret signs with both
secrets during its grace period and only with the new one after it. Method: a real
server whose delivery clock is moved forward through the test clock file
(PAYCORE_EVENTS_TEST_CLOCK_FILE, read by the webhook thread), a real receiver that
fails or acknowledges as the test says, and the API, /metrics and the receiver's
records as the observers."""
import os
import tempfile
import time

from receiver import Receiver, all_events, check, check_order_per_object, expect, metric, signature_valid, wait_for
from pcapi import Server, account, transfer

DAY_S = 24 * 3600


class Clock:
    def __init__(self):
        fd, self.path = tempfile.mkstemp(prefix="paycore-clock-")
        os.close(fd)
        self.shift(0)

    def shift(self, seconds):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % seconds)
        os.rename(tmp, self.path)


def _plain(server, name):
    r = expect(server.client(key="").get("/metrics"), 200, what="metrics")
    for line in r.raw.splitlines():
        if line.startswith(name + " "):
            return float(line.split(" ")[1])
    return None


def after_purge_round(server, clock, shift_s):
    """Moves the clock (which starts a retention round) and waits for the round."""
    runs = _plain(server, "paycore_events_purge_runs_total")
    clock.shift(shift_s)
    wait_for(lambda: _plain(server, "paycore_events_purge_runs_total") > runs, "a retention round")


def deliveries(admin, endpoint_id, state):
    r = expect(admin.get("/v1/webhook-endpoints/%s/deliveries?state=%s&limit=100" % (endpoint_id, state)), 200,
               what="deliveries")
    return r.json["data"]


def main():
    clock = Clock()
    os.environ["PAYCORE_EVENTS_TEST_CLOCK_FILE"] = clock.path
    server = Server(extra_args=["--events-retry-base-ms", "100", "--events-retention-s", str(DAY_S),
                                "--events-webhook-timeout-ms", "2000"])
    mode = {"ok": False}
    rx = Receiver(lambda event, n: 200 if mode["ok"] else 500)
    try:
        server.start()
        admin = server.client()
        ep = expect(admin.post("/v1/webhook-endpoints", {"url": rx.url(), "events": ["*"]}), 201, what="endpoint").json

        # 1. retried, then dead-lettered past 3 days
        expect(admin.post("/v1/accounts", {"accounts": [account("x1"), account("x2")]}), 200, what="accounts")
        e1, e2 = all_events(admin)
        for e in (e1, e2):  # both retried (each dead letter below says so), however loaded the machine
            wait_for(lambda: len([a for a in rx.snapshot() if a.event["id"] == e["id"]]) >= 3, "retries of " + e["id"])
        r = expect(admin.get("/v1/webhook-endpoints/" + ep["id"]), 200, what="endpoint").json
        check(r["status"] == "enabled" and "failing_since" in r, "failing, not yet disabled: %r" % r)
        clock.shift(3 * DAY_S + 60)
        wait_for(lambda: len(deliveries(admin, ep["id"], "dead_lettered")) == 2, "dead letters")
        dead = deliveries(admin, ep["id"], "dead_lettered")
        check(sorted(d["event_id"] for d in dead) == sorted([e1["id"], e2["id"]]), "dead letters: %r" % dead)
        check(all(d["attempts"] >= 3 and d["last_error"] == "HTTP 500" for d in dead), "dead letters say why: %r" % dead)
        check(metric(server, "paycore_events_dead_lettered_total", ['destination="%s"' % ep["id"]]) == 2,
              "dead letters counted")

        # 2. retention keeps what a destination still waits for
        expect(admin.post("/v1/transfers", transfer("t3", "x1", "x2", 5)), 201, what="t3")
        count_before = len(all_events(admin))
        after_purge_round(server, clock, 4 * DAY_S)
        check(len(all_events(admin)) == count_before, "nothing undelivered was purged")

        # 3. failing for 5 days: disabled, and it says why; no more attempts
        clock.shift(5 * DAY_S + 120)
        wait_for(lambda: expect(admin.get("/v1/webhook-endpoints/" + ep["id"]), 200).json["status"] == "disabled",
                 "the endpoint disabled")
        r = expect(admin.get("/v1/webhook-endpoints/" + ep["id"]), 200, what="endpoint").json
        check("HTTP 500" in r["disabled_reason"] and r["disabled_at"] > 0, "disabled says why: %r" % r)
        expect(admin.post("/v1/transfers", transfer("t4", "x1", "x2", 6)), 201, what="t4 while disabled")
        attempts = len(rx.snapshot())
        time.sleep(1.0)  # ten retry periods: a disabled endpoint gets nothing
        check(len(rx.snapshot()) == attempts, "no attempts while disabled")

        # 4. re-enabled: what waited is delivered, dead letters stay dead
        mode["ok"] = True
        r = expect(admin.post("/v1/webhook-endpoints/%s/enable" % ep["id"]), 200, what="enable").json
        check(r["status"] == "enabled", "enabled: %r" % r)
        events = all_events(admin)
        waiting = [e["id"] for e in events if e["id"] not in (e1["id"], e2["id"])]
        rx.wait_acked(waiting, "after re-enabling")
        check(not ({e1["id"], e2["id"]} & rx.acked_ids()), "dead letters are not delivered by themselves")

        # 5. redelivery: one event, then everything since a time
        r = expect(admin.post("/v1/events/%s/redeliver" % e1["id"]), 202, what="redeliver one").json
        check(r["endpoints"] == [ep["id"]], "redelivered to the endpoint: %r" % r)
        rx.wait_acked([e1["id"]], "redelivered dead letter")
        wait_for(lambda: len(deliveries(admin, ep["id"], "dead_lettered")) == 1, "e1 no longer dead")
        acks = lambda i: sum(1 for a in rx.snapshot() if a.acked and a.event["id"] == i)  # noqa: E731
        before = {e["id"]: acks(e["id"]) for e in events}
        r = expect(admin.post("/v1/events/redeliver", {"since": e2["created"]}), 202, what="redeliver since").json
        check(ep["id"] in r["endpoints"], "since: %r" % r)
        for e in events[1:]:
            wait_for(lambda: acks(e["id"]) > before[e["id"]], "%s delivered again" % e["id"])
        check(acks(e1["id"]) == before[e1["id"]], "an event before 'since' is not sent again")
        check_order_per_object(rx.snapshot(), "redelivery")
        check(deliveries(admin, ep["id"], "dead_lettered") == [], "no dead letter left")

        # 6. everything delivered: retention purges all but the newest event (once the
        # webhook thread stored its cursor: rounds repeat until then)
        def purged_down():
            after_purge_round(server, clock, 10 * DAY_S + purged_down.round)
            purged_down.round += 1
            return [e["id"] for e in all_events(admin)] == [events[-1]["id"]]
        purged_down.round = 0
        wait_for(purged_down, "retention purging all but the newest event")

        # 7. rotation: both secrets sign during the grace period, then only the new one
        rotated = expect(admin.post("/v1/webhook-endpoints/%s/rotate-secret" % ep["id"], {"grace_period_s": 3600}),
                         200, what="rotate").json
        check(rotated["secret"] != ep["secret"] and "previous_secret_expires" in rotated, "rotated: %r" % rotated)
        seen = len(rx.snapshot())
        expect(admin.post("/v1/transfers", transfer("t5", "x1", "x2", 7)), 201, what="t5")
        a = wait_for(lambda: [x for x in rx.snapshot()[seen:] if x.event["object_id"] == "t5"], "t5 delivered")[0]
        header = a.headers["Paycore-Signature"]
        check(header.count("v1=") == 2, "two signatures during the grace period: %r" % header)
        check(signature_valid(rotated["secret"], header, a.body) and signature_valid(ep["secret"], header, a.body),
              "both secrets verify")
        final = expect(admin.post("/v1/webhook-endpoints/%s/rotate-secret" % ep["id"], {"grace_period_s": 0}), 200,
                       what="rotate without grace").json
        seen = len(rx.snapshot())
        expect(admin.post("/v1/transfers", transfer("t6", "x1", "x2", 8)), 201, what="t6")
        a = wait_for(lambda: [x for x in rx.snapshot()[seen:] if x.event["object_id"] == "t6"], "t6 delivered")[0]
        header = a.headers["Paycore-Signature"]
        check(header.count("v1=") == 1 and signature_valid(final["secret"], header, a.body), "one signature: %r" % header)
        check(not signature_valid(rotated["secret"], header, a.body), "the old secret no longer verifies")
        # a grace period ends by itself: after it, only the new secret signs
        short = expect(admin.post("/v1/webhook-endpoints/%s/rotate-secret" % ep["id"], {"grace_period_s": 1}), 200,
                       what="rotate with 1 s of grace").json
        ends_s = short["previous_secret_expires"] / 1e9
        wait_for(lambda: time.time() > ends_s + 0.5, "the grace period over")
        seen = len(rx.snapshot())
        expect(admin.post("/v1/transfers", transfer("t7", "x1", "x2", 9)), 201, what="t7")
        a = wait_for(lambda: [x for x in rx.snapshot()[seen:] if x.event["object_id"] == "t7"], "t7 delivered")[0]
        header = a.headers["Paycore-Signature"]
        check(header.count("v1=") == 1 and signature_valid(short["secret"], header, a.body),
              "after the grace period one signature, the new secret's: %r" % header)
        print("webhook lifecycle: ok")
    finally:
        rx.stop()
        server.close()
        os.unlink(clock.path)


if __name__ == "__main__":
    main()
