"""Goal: webhooks reach a real receiver at least once, signed, in order per object,
through failures, slow answers, timeouts, a receiver restart and a SIGKILL of paycore
during delivery; duplicates happen only as at-least-once allows and always carry the
same event id and body. Method: a real `paycore serve` and a real HTTP receiver
(receiver.py) whose answers the test scripts: 2xx, 500s, delays, answers slower than
--events-webhook-timeout-ms, refused connections while it is stopped. Every event the
API lists must be acknowledged; every attempt's signature is checked with Python's
hmac and one with `paycore webhook verify`; retries wait at least the backoff's lower
bound; no event of an object is attempted before the earlier ones were acknowledged.
The writer wakes the webhook thread for new events only when no wake-up is pending
(none at all while no endpoint exists), and events committed while one is pending
still reach a new endpoint."""
import os
import random
import signal
import subprocess
import tempfile
import threading
import time

from receiver import Receiver, all_events, check, check_order_per_object, expect, metric, signature_valid, wait_for
from pcapi import BIN, Server, account, transfer

RETRY_BASE_MS = 100
EVENTS_FLAGS = ["--events-retry-base-ms", str(RETRY_BASE_MS), "--events-webhook-timeout-ms", "1000"]


def endpoint(client, url, events=("*",)):
    r = expect(client.post("/v1/webhook-endpoints", {"url": url, "events": list(events)}), 201, what="endpoint")
    check(r.json["secret"].startswith("whsec_"), "secret shown at creation: %r" % r.json)
    return r.json


def pending_flow(client, prefix, count):
    """Accounts, plain transfers and pending transfers posted or voided: objects with
    two events each (created, then posted/voided)."""
    expect(client.post("/v1/accounts", {"accounts": [account(prefix + "a"), account(prefix + "b")]}), 200,
           what="accounts")
    for i in range(count):
        expect(client.post("/v1/transfers", transfer("%st%d" % (prefix, i), prefix + "a", prefix + "b", 1 + i)),
               201, what="transfer")
        pid = "%sp%d" % (prefix, i)
        expect(client.post("/v1/transfers", transfer(pid, prefix + "a", prefix + "b", 50, flags=["pending"])),
               201, what="pending")
        resolve = {"id": pid + "-r", "pending_id": pid, "flags": ["post_pending" if i % 2 else "void_pending"]}
        if i % 2:
            resolve["amount"] = 50
        expect(client.post("/v1/transfers", resolve), 201, what="resolve")


def check_signatures(attempts, secret):
    for a in attempts:
        check(signature_valid(secret, a.headers["Paycore-Signature"], a.body),
              "signature of %s verifies: %r" % (a.event["id"], a.headers["Paycore-Signature"]))
        check(a.headers["Paycore-Event-Id"] == a.event["id"], "event id header equals the body's id")
        check(a.headers["Paycore-Event-Type"] == a.event["type"], "event type header")


def check_duplicates(attempts):
    bodies = {}
    for a in attempts:
        check(bodies.setdefault(a.event["id"], a.body) == a.body, "a redelivery of %s has the same body" % a.event["id"])


def test_happy_path(server, admin):
    rx = Receiver()
    ep = endpoint(admin, rx.url())
    pending_flow(admin, "h", 5)
    events = all_events(admin)
    check(len(events) == 2 + 5 * 3, "events written: %d" % len(events))
    rx.wait_acked([e["id"] for e in events], "happy path")
    attempts = rx.snapshot()
    check_signatures(attempts, ep["secret"])
    check_order_per_object(attempts, "happy path")
    check_duplicates(attempts)
    by_id = {e["id"]: e for e in events}
    for a in attempts:
        check(a.event == by_id[a.event["id"]], "the delivered event is the listed one")
    # a receiver's check with the command line, from the raw bytes
    sample = attempts[-1]
    with tempfile.NamedTemporaryFile(delete=False) as f:
        f.write(sample.body)
    try:
        out = subprocess.run([BIN, "webhook", "verify", "--secret", ep["secret"], "--header",
                              sample.headers["Paycore-Signature"], "--body-file", f.name],
                             capture_output=True, text=True, timeout=30)
        check(out.returncode == 0 and out.stdout.strip() == "valid", "paycore webhook verify: %r" % out)
        out = subprocess.run([BIN, "webhook", "verify", "--secret", "whsec_wrong", "--header",
                              sample.headers["Paycore-Signature"], "--body-file", f.name],
                             capture_output=True, text=True, timeout=30)
        check(out.returncode == 1 and "signature_mismatch" in out.stdout, "a wrong secret is refused: %r" % out)
        # a body that cannot be read says why: the errno of the open, or the size limit
        # (a sparse file of exactly 64 MiB: errno is 0 there, the old message said "Success")
        with open(f.name, "r+b") as body:
            body.truncate(64 << 20)
        for path, why in ((f.name + ".missing", "No such file or directory"), (f.name, "64 MiB or larger")):
            out = subprocess.run([BIN, "webhook", "verify", "--secret", ep["secret"], "--header",
                                  sample.headers["Paycore-Signature"], "--body-file", path],
                                 capture_output=True, text=True, timeout=30)
            check(out.returncode == 2 and why in out.stderr and "Success" not in out.stderr,
                  "an unreadable body is a usage error that says why (%s): %r" % (why, out))
    finally:
        os.unlink(f.name)
    check_docs_verifiers(ep["secret"], sample)
    expect(admin.delete("/v1/webhook-endpoints/" + ep["id"]), 200, what="delete endpoint")
    rx.stop()


DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../docs/events.md")


def docs_block(language):
    """The ```<language> verify block of docs/events.md."""
    text = open(DOCS).read()
    start = text.index("```%s verify\n" % language) + len("```%s verify\n" % language)
    return text[start:text.index("```", start)]


def check_docs_verifiers(secret, attempt):
    """The Python and shell receivers shown in docs/events.md verify a real delivery."""
    namespace = {}
    exec(docs_block("python"), namespace)
    header = attempt.headers["Paycore-Signature"]
    check(namespace["verify"](secret, header, attempt.body), "the docs' Python verifier accepts a delivery")
    check(not namespace["verify"]("whsec_wrong", header, attempt.body), "... and refuses a wrong secret")
    check(not namespace["verify"](secret, header, attempt.body + b" "), "... and a changed body")
    with tempfile.TemporaryDirectory() as tmp:
        script, body = os.path.join(tmp, "verify.sh"), os.path.join(tmp, "body")
        open(script, "w").write(docs_block("sh"))
        open(body, "wb").write(attempt.body)
        ok = subprocess.run(["sh", script, secret, header, body], capture_output=True, text=True, timeout=30)
        check(ok.returncode == 0 and ok.stdout.strip() == "valid", "the docs' shell verifier accepts: %r" % ok)
        bad = subprocess.run(["sh", script, "whsec_wrong", header, body], capture_output=True, text=True, timeout=30)
        check(bad.returncode == 1 and bad.stdout.strip() == "invalid", "... and refuses a wrong secret: %r" % bad)


def test_failures_and_backoff(server, admin):
    """500 for the first two attempts of every event, one event answered too slowly
    (a timeout) once, random delays: everything arrives, retries keep their backoff."""
    slow = {}

    def policy(event, n):
        if n <= 2:
            return 500
        if n == 3 and event["object_id"].endswith("t1") and not slow:
            slow[event["id"]] = True
            return ("sleep", 2.0, 200)  # longer than --events-webhook-timeout-ms 1000
        return ("sleep", random.random() * 0.02, 200)

    rx = Receiver(policy)
    ep = endpoint(admin, rx.url())
    pending_flow(admin, "f", 6)
    events = [e for e in all_events(admin) if e["object_id"].startswith("f")]
    rx.wait_acked([e["id"] for e in events], "failures")
    attempts = rx.snapshot()
    check_signatures(attempts, ep["secret"])
    check_order_per_object(attempts, "failures")
    check_duplicates(attempts)
    for e in events:
        # by arrival: a timed-out attempt is recorded when its late answer is made, after its retry
        times = sorted(a.at for a in attempts if a.event["id"] == e["id"])
        check(len(times) >= 3, "%s was retried: %d attempts" % (e["id"], len(times)))
        for k in range(1, len(times)):
            floor_s = RETRY_BASE_MS * (2 ** (k - 1)) / 2 / 1000.0
            check(times[k] - times[k - 1] >= floor_s * 0.9,
                  "attempt %d of %s came %.3f s after the previous one, backoff floor %.3f s"
                  % (k + 1, e["id"], times[k] - times[k - 1], floor_s))
    check(slow and any(a.event["id"] in slow and a.acked for a in attempts), "the timed-out event was retried")
    retried = metric(server, "paycore_events_retried_total", ['destination="%s"' % ep["id"]])
    check(retried is not None and retried >= 2 * len(events), "retries counted: %r" % retried)
    expect(admin.delete("/v1/webhook-endpoints/" + ep["id"]), 200, what="delete endpoint")
    rx.stop()


def test_receiver_restart(server, admin):
    rx = Receiver()
    endpoint(admin, rx.url())
    expect(admin.post("/v1/accounts", {"accounts": [account("ra"), account("rb")]}), 200, what="accounts")
    rx.stop()  # refused connections from here on
    for i in range(20):
        expect(admin.post("/v1/transfers", transfer("r%d" % i, "ra", "rb", 1)), 201, what="transfer while down")
    wait_for(lambda: (metric(server, "paycore_events_retried_total", ['kind="webhook"']) or 0) > 0,
             "an attempt against the stopped receiver")
    rx.start()
    events = [e for e in all_events(admin) if e["object_id"].startswith("r")]
    rx.wait_acked([e["id"] for e in events], "after the receiver restarted")
    check_order_per_object(rx.snapshot(), "restart")
    rx.stop()


def load(client, prefix, count, stop):
    for i in range(count):
        if stop.is_set():
            return
        try:
            client.post("/v1/transfers", transfer("%s%d" % (prefix, i), "ka", "kb", 1))
        except Exception:  # the server is being killed: acknowledged ones count
            return


def test_kill_during_delivery():
    """SIGKILL while deliveries are in flight (the receiver is slow): after the restart
    every event is acknowledged, duplicates carry the same id and body."""
    server = Server(extra_args=EVENTS_FLAGS)
    try:
        server.start()
        admin = server.client()
        rx = Receiver(lambda event, n: ("sleep", 0.02, 200))
        ep = endpoint(admin, rx.url())
        expect(admin.post("/v1/accounts", {"accounts": [account("ka"), account("kb")]}), 200, what="accounts")
        stop = threading.Event()
        loader = threading.Thread(target=load, args=(server.client(), "k", 400, stop))
        loader.start()
        wait_for(lambda: len(rx.acked_ids()) >= 50, "deliveries under way")
        acked_before_kill = len(rx.acked_ids())
        server.stop(signal.SIGKILL)
        stop.set()
        loader.join()
        server.start()
        admin = server.client()
        events = all_events(admin)
        check(len(events) >= acked_before_kill, "events survived the kill: %d" % len(events))
        rx.wait_acked([e["id"] for e in events], "after SIGKILL and restart")
        attempts = rx.snapshot()
        check_duplicates(attempts)
        check_signatures(attempts, ep["secret"])
        listed = set(e["id"] for e in events)
        check(rx.acked_ids() <= listed, "nothing delivered that the outbox does not hold")
        rx.stop()
    finally:
        server.close()


def wakeups(server):
    r = expect(server.client(key="").get("/metrics"), 200, what="metrics")
    for line in r.raw.splitlines():
        if line.startswith("paycore_events_webhook_wakeups_total "):
            return float(line.split(" ")[1])
    return None


def test_wakeups_pending():
    """No endpoint: the writer's commits (each with events) wake the webhook thread at
    most once, then an endpoint gets the events committed after it, none of which woke
    the thread while a wake-up was pending."""
    server = Server(extra_args=EVENTS_FLAGS)
    rx = Receiver()
    try:
        server.start()
        admin = server.client()
        pending_flow(admin, "w", 10)  # 31 commands, one after another: a batch each
        woken = wakeups(server)
        check(woken is not None and woken <= 1, "wake-ups without an endpoint: %r" % woken)
        before = {e["id"] for e in all_events(admin)}
        endpoint(admin, rx.url())
        pending_flow(admin, "v", 3)
        fresh = [e["id"] for e in all_events(admin) if e["id"] not in before]
        check(len(fresh) == 2 + 3 * 3, "events written after the endpoint: %d" % len(fresh))
        rx.wait_acked(fresh, "events after a pending wake-up")
    finally:
        rx.stop()
        server.close()


def main():
    server = Server(extra_args=EVENTS_FLAGS)
    try:
        server.start()
        admin = server.client()
        test_happy_path(server, admin)
        test_failures_and_backoff(server, admin)
        test_receiver_restart(server, admin)
    finally:
        server.close()
    test_kill_during_delivery()
    test_wakeups_pending()
    print("webhook delivery: ok")


if __name__ == "__main__":
    main()
