"""bench/bench_events.py BUILD full|quick: the events benchmark. On this machine,
everything on loopback, in one run:
  1. events_overhead: the ledger's single-transfer HTTP load (`paycore load`, 64
     connections) against `serve --no-events` (baseline) and against a server writing
     events and delivering them to a local receiver (webhook_sink); the baseline runs
     before and after and is averaged; lag_p99_ms is the p99 of arrival minus creation
     of the events delivered during and right after the load, measured at the receiver.
  2. events_webhook: a new endpoint asked to redeliver everything the load wrote (its
     cursor rewound to 0): events acknowledged per second by the receiver.
  3. events_amqp: the same backlog published to a local RabbitMQ (durable queue, so
     every confirm means persisted) with publisher confirms: confirmed events per
     second, read from paycore_events_delivered_total{destination="amqp"}.
One key=value line per figure, baseline in the same run, ratio last."""
import json
import os
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(HERE, "..", "build")
MODE = sys.argv[2] if len(sys.argv) > 2 else "quick"
os.environ["PAYCORE_BIN"] = os.path.join(BUILD, "paycore")
sys.path.insert(0, os.path.join(HERE, "..", "tests", "events"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "api"))
from pcapi import Server  # noqa: E402
import rabbit  # noqa: E402

SECONDS = 3 if MODE == "quick" else 10
BIN = os.environ["PAYCORE_BIN"]


def http(method, url, key=None, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if key:
        request.add_header("Authorization", "Bearer " + key)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read().decode()


def metric(server, name, label=""):
    text = http("GET", "http://127.0.0.1:%d/metrics" % server.port)
    for line in text.splitlines():
        if line.startswith(name) and label in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def load(server):
    out = subprocess.run([BIN, "load", "--url", "http://127.0.0.1:%d" % server.port, "--key", server.admin_key,
                          "--concurrency", "64", "--duration-s", str(SECONDS)], capture_output=True, text=True)
    fields = dict(item.split("=", 1) for item in out.stdout.split() if "=" in item)
    must(out.returncode == 0 and "transfers_per_s" in fields, "paycore load: %s" % (out.stderr or out.stdout)[-300:])
    return float(fields["transfers_per_s"])


class Sink:
    def __init__(self):
        self.proc = subprocess.Popen([os.path.join(BUILD, "webhook_sink")], stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline().strip().split("=")[1])

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def stats(self, path):
        text = http("GET", self.url("/stats?path=" + path))
        return dict((k, float(v)) for k, v in (item.split("=") for item in text.split()))

    def close(self):
        self.proc.terminate()
        self.proc.wait()


def wait_until(condition, timeout_s):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def must(done, what):
    """A figure over a wait that timed out would be wrong: stop instead."""
    if not done:
        sys.exit("bench_events: timed out waiting for " + what)


def baseline_run():
    server = Server(extra_args=["--no-events", "--log-level", "warn"])
    try:
        server.start()
        return load(server)
    finally:
        server.close()


def events_runs(sink):
    """The load with events on; then the backlog drained to a new endpoint and to AMQP."""
    server = Server(extra_args=["--log-level", "warn"])
    try:
        server.start()
        base = "http://127.0.0.1:%d" % server.port
        http("POST", base + "/v1/webhook-endpoints", server.admin_key, {"url": sink.url("/load"), "events": ["*"]})
        per_s = load(server)
        written = sum(metric(server, "paycore_events_written_total", 'type="%s"' % t)
                      for t in ("account.created", "transfer.created"))
        must(wait_until(lambda: sink.stats("/load")["count"] >= written, 300), "the load's events at the receiver")
        lag_p99_ms = sink.stats("/load")["lag_p99_ms"]
        ep = json.loads(http("POST", base + "/v1/webhook-endpoints", server.admin_key,
                             {"url": sink.url("/drain"), "events": ["*"]}))
        start = time.time()
        http("POST", base + "/v1/events/redeliver", server.admin_key, {"since": 0, "endpoint_id": ep["id"]})
        must(wait_until(lambda: sink.stats("/drain")["count"] >= written, 600), "the redelivered backlog")
        webhook_per_s = sink.stats("/drain")["count"] / (time.time() - start)
        server.stop()
        amqp_line = amqp_run(server, int(written))
        return per_s, lag_p99_ms, webhook_per_s, int(written), amqp_line
    finally:
        server.close()


def amqp_run(server, written):
    if not rabbit.available():
        return "events_amqp skipped=rabbitmq_not_installed"
    broker = rabbit.RabbitMQ()
    try:
        broker.start()
        subprocess.run([os.path.join(BUILD, "amqp_consume"), "--port", str(broker.port), "--declare-only",
                        "--queue", "bench"], check=True, timeout=120)
        server.start(extra_args=["--events-amqp", broker.amqp_url()])
        base = "http://127.0.0.1:%d" % server.port
        must(wait_until(lambda: metric(server, "paycore_events_amqp_connected") == 1, 60), "the broker connection")
        start = time.time()
        http("POST", base + "/v1/events/redeliver", server.admin_key, {"since": 0, "endpoint_id": "amqp"})
        must(wait_until(lambda: metric(server, "paycore_events_delivered_total", 'destination="amqp"') >= written, 600),
             "the broker's confirms of the backlog")
        confirmed = metric(server, "paycore_events_delivered_total", 'destination="amqp"')
        per_s = confirmed / (time.time() - start)
        return "events_amqp per_s=%.0f events=%d broker=rabbitmq_local confirms=on" % (per_s, confirmed)
    finally:
        server.stop()
        broker.close()


def main():
    sink = Sink()
    try:
        before = baseline_run()
        per_s, lag_p99_ms, webhook_per_s, written, amqp_line = events_runs(sink)
        after = baseline_run()
    finally:
        sink.close()
    baseline = (before + after) / 2
    print("events_webhook per_s=%.0f events=%d receiver=local_http" % (webhook_per_s, written))
    print(amqp_line)
    print("events_overhead per_s=%.0f lag_p99_ms=%.1f baseline=no_events baseline_per_s=%.0f ratio=%.2f"
          % (per_s, lag_p99_ms, baseline, per_s / baseline if baseline > 0 else float("nan")))


if __name__ == "__main__":
    main()
