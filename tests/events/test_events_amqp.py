"""Goal: with --events-amqp every event reaches a real RabbitMQ topic exchange (routing
key = event type, message id = event id), counted as published only once the broker
confirmed it; when the broker dies in the middle of a load the API keeps taking
transfers and card payments, /readyz and /metrics say the broker is down, and after
the broker is back nothing is missing, duplicates carry the same id and body, and each
object's events arrive in order. Method: a real broker started here (rabbit.py: its
own node, ports, epmd and data directory) with a durable queue bound to the exchange;
a real consumer (amqp_consume, librabbitmq) reading it throughout; a load of transfers
(plain and pending, posted or voided) from two threads; the broker SIGKILLed mid-load
and started again on the same data; a card payment made and captured over the real
card simulator while it is down; the consumer's stream compared with GET /v1/events."""
import json
import os
import re
import signal
import subprocess
import sys
import threading

from rabbit import RabbitMQ, available
from receiver import all_events, check, expect, wait_for
from pcapi import account, fail, missing_input, transfer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../payments"))
from paylib import Env, card_payment  # noqa: E402

CONSUME = os.environ.get("PAYCORE_AMQP_CONSUME",
                         os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../build/amqp_consume"))
TRANSFERS = 300  # per load thread


class Consumer:
    def __init__(self, port):
        self.lines = []
        self.lock = threading.Lock()
        self.proc = subprocess.Popen([CONSUME, "--port", str(port), "--timeout-s", "300"], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        self.thread = threading.Thread(target=self.read, daemon=True)
        self.thread.start()

    def read(self):
        for line in self.proc.stdout:
            message_id, routing_key, body = line.rstrip("\n").split(" ", 2)
            with self.lock:
                self.lines.append((message_id, routing_key, body))

    def snapshot(self):
        with self.lock:
            return list(self.lines)

    def ids(self):
        return set(m for m, _, _ in self.snapshot())

    def close(self):
        self.proc.kill()
        self.proc.wait()


def load(client, prefix, results):
    for i in range(TRANSFERS):
        tid = "%s%d" % (prefix, i)
        if i % 3 == 0:
            r = client.post("/v1/transfers", transfer(tid, "qa", "qb", 10, flags=["pending"]))
            results.append(r.status)
            resolve = {"id": tid + "-r", "pending_id": tid, "flags": ["post_pending" if i % 2 else "void_pending"]}
            if i % 2:
                resolve["amount"] = 10
            r = client.post("/v1/transfers", resolve)
        else:
            r = client.post("/v1/transfers", transfer(tid, "qa", "qb", 1))
        results.append(r.status)


def broker_state(server):
    return expect(server.client(key="").get("/readyz"), 200, what="readyz").json["events"].get("amqp")


def amqp_metric(server, name):
    r = expect(server.client(key="").get("/metrics"), 200, what="metrics")
    for line in r.raw.splitlines():
        if line.startswith(name) and ("destination=\"amqp\"" in line or "{" not in line):
            return float(line.rsplit(" ", 1)[1])
    return None


def check_stream(consumer, events):
    by_id = {e["id"]: e for e in events}
    seen = {}
    last_seq = {}
    for message_id, routing_key, body in consumer.snapshot():
        event = json.loads(body)
        check(event["id"] == message_id, "message id is the event id: %s vs %s" % (message_id, event["id"]))
        check(event["type"] == routing_key, "routing key is the type: %s" % routing_key)
        check(seen.setdefault(message_id, body) == body, "a duplicate of %s has the same body" % message_id)
        check(by_id.get(message_id) == event, "the message is the stored event %s" % message_id)
        obj = event["object_id"]
        if event["object_seq"] > last_seq.get(obj, 0):
            check(event["object_seq"] == last_seq.get(obj, 0) + 1,
                  "%s: seq %d arrived before seq %d" % (obj, event["object_seq"], last_seq.get(obj, 0) + 1))
            last_seq[obj] = event["object_seq"]


def main():
    if not available():
        missing_input("RabbitMQ (rabbitmq-server, epmd)", "install it with scripts/deps.sh (Debian's rabbitmq-server)")
        return
    if not os.access(CONSUME, os.X_OK):
        fail("the consumer %s is not built (make build)" % CONSUME)
    broker = RabbitMQ()
    env = None
    consumer = None
    try:
        broker.start()
        subprocess.run([CONSUME, "--port", str(broker.port), "--declare-only", "--timeout-s", "60"], check=True,
                       timeout=120)
        env = Env(extra_args=["--events-amqp", broker.amqp_url()])
        env.start()
        server, admin = env.server, env.admin
        merchant = env.merchant("m1")
        wait_for(lambda: broker_state(server) == "connected", "paycore connected to the broker")
        consumer = Consumer(broker.port)
        expect(admin.post("/v1/accounts", {"accounts": [account("qa"), account("qb")]}), 200, what="accounts")
        results = []
        loaders = [threading.Thread(target=load, args=(server.client(), p, results)) for p in ("x", "y")]
        for t in loaders:
            t.start()
        wait_for(lambda: len(consumer.ids()) >= 100, "events flowing to the consumer")
        broker.stop(signal.SIGKILL)
        wait_for(lambda: broker_state(server) == "down", "readyz says the broker is down")
        check(amqp_metric(server, "paycore_events_amqp_connected") == 0, "metrics say the broker is down")
        during = len(results)
        wait_for(lambda: len(results) >= during + 50, "transfers taken while the broker is down")
        p = expect(merchant.post("/v1/payments", card_payment(700)), 201, what="payment, broker down").json
        expect(merchant.post("/v1/payments/%s/capture" % p["id"], {}), 200, what="capture, broker down")
        check(broker_state(server) == "down", "the payment was taken while the broker was down")
        broker.start()
        for t in loaders:
            t.join()
        check(all(s == 201 for s in results), "every request of the load succeeded")
        events = all_events(admin)
        load_events = [e for e in events if re.match(r"(q[ab]|[xy][0-9]+)$", e["object_id"])]
        expected = 2 + 2 * sum(2 if i % 3 == 0 else 1 for i in range(TRANSFERS))
        check(len(load_events) == expected, "events written: %d of %d" % (len(load_events), expected))
        payment_types = [e["type"] for e in events if e["object_id"] == p["id"]]
        check(payment_types == ["payment.created", "payment.authorized", "payment.updated", "payment.captured"],
              "the payment's events: %r" % payment_types)
        wait_for(lambda: broker_state(server) == "connected", "paycore reconnected")
        wait_for(lambda: not (set(e["id"] for e in events) - consumer.ids()), "every event consumed",
                 timeout_s=300)
        check_stream(consumer, events)
        # a payment's events are stored as references and rendered when published:
        # the same bytes as GET /v1/events/{id} renders
        bodies = dict((m, b) for m, _, b in consumer.snapshot())
        for e in events:
            if e["object_id"] == p["id"]:
                read = expect(admin.get("/v1/events/" + e["id"]), 200, what="read " + e["id"])
                check(bodies[e["id"]] == read.raw, "%s: published byte for byte as read" % e["id"])
        # the consumer may hold an event before paycore has the broker's confirm of it
        wait_for(lambda: (amqp_metric(server, "paycore_events_delivered_total") or 0) >= len(events),
                 "confirmed events counted (%d events)" % len(events))
        lag = amqp_metric(server, "paycore_events_outbox_lag_seconds")
        check(lag is not None, "lag reported")
        print("amqp: %d events, %d messages consumed (duplicates allowed), broker restarted once"
              % (len(events), len(consumer.snapshot())))
    finally:
        if consumer is not None:
            consumer.close()
        if env is not None:
            env.close()
        broker.close()


if __name__ == "__main__":
    main()
