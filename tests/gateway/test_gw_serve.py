"""Goal: the gateway inside `paycore serve`: --channels FILE loads the channels (a bad
file stops the start with its line), GET /v1/channels shows each channel with its
breaker, success rate and latency (never its API key), /metrics carries the gateway
series and stays promtool-clean, SIGHUP and POST /v1/admin/reload reload the file, and
a bad file is refused with its line while the old configuration keeps serving.
Method: a real card simulator process and a real server on loopback ports."""
import json
import os
import re
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from simlib import BIN, TIMEOUT_S, Sim, check, wait_until  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../api"))
from pcapi import START_TIMEOUT_S, Server, expect  # noqa: E402
from test_api_ops import promtool_check  # noqa: E402


def channels_file(path, card_url, names, kind="card"):
    lines = ['{"channels": [']
    for i, name in enumerate(names):
        comma = "," if i + 1 < len(names) else ""
        lines.append('  {"name": "%s", "kind": "%s", "url": "%s", "api_key": "sekret-%s"}%s'
                     % (name, kind, card_url, name, comma))
    lines.append("]}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def names(client):
    resp = expect(client.get("/v1/channels"), 200, what="GET /v1/channels")
    return [c["name"] for c in resp.json["channels"]]


def main():
    server = Server()
    sim = Sim("card").start()
    card_url = "http://127.0.0.1:%d" % sim.port
    path = os.path.join(server.dir, "channels.json")
    try:
        # a bad file at start: the server refuses to start and names the line
        channels_file(path, card_url, ["card_a"], kind="carrier-pigeon")
        out = subprocess.run([BIN, "serve", "--db", server.db, "--listen", "127.0.0.1:0", "--channels", path],
                             capture_output=True, text=True, timeout=START_TIMEOUT_S)  # a start, then the refusal
        check(out.returncode == 1, "serve with a bad channels file must exit 1: %r" % out.returncode)
        check(re.search(r"line 2: channels\[0\]\.kind: unknown channel kind", out.stderr) is not None,
              "start refusal names the line: %r" % out.stderr[-400:])

        out = subprocess.run([BIN, "channels", "check", "--channels", path], capture_output=True, text=True,
                             timeout=TIMEOUT_S)
        check(out.returncode == 1 and "line 2: channels[0].kind" in out.stderr, "channels check: %r" % out.stderr)

        channels_file(path, card_url, ["card_a"])
        out = subprocess.run([BIN, "channels", "check", "--channels", path], capture_output=True, text=True,
                             timeout=TIMEOUT_S)
        check(out.returncode == 0 and out.stdout == "ok\n", "channels check of a good file: %r" % out.stderr)
        out = subprocess.run([BIN, "channels", "authorize", "--channels", path, "--amount", "1999", "--card",
                              "4242424242424242", "--reference", "cli-1"], capture_output=True, text=True,
                             timeout=TIMEOUT_S)
        result = json.loads(out.stdout)
        check(out.returncode == 0 and result["outcome"] == "approved" and result["channel"] == "card_a",
              "channels authorize: %r %r" % (out.returncode, out.stdout[:300]))
        check(result["decision"]["chosen"] == "card_a" and len(result["attempts"]) == 1, "decision: %r" % result)
        server.start(["--channels", path])
        client = server.client()
        resp = expect(client.get("/v1/channels"), 200, what="channels")
        check("sekret" not in resp.raw, "the API key must never be shown")
        (card,) = resp.json["channels"]
        check(card["name"] == "card_a" and card["kind"] == "card", "channel: %r" % card)
        check(card["url"] == card_url, "url: %r" % card)
        check(card["breaker"]["state"] == "closed", "breaker: %r" % card)
        check(card["success_rate"] is None and card["latency_ms"] is None, "no calls yet: %r" % card)
        check(resp.json["routing"]["strategy"] == "priority", "routing: %r" % resp.json["routing"])
        expect(client.get("/v1/channels?x=1"), 400, "query_invalid", "unknown query")

        metrics = expect(server.client(key="").get("/metrics"), 200, what="metrics").raw
        for series in ["paycore_gateway_attempts_total{channel=\"card_a\",op=\"authorize\"} 0",
                       "paycore_gateway_breaker_state{channel=\"card_a\",state=\"closed\"} 1",
                       "paycore_gateway_latency_seconds_count{channel=\"card_a\"} 0",
                       "paycore_gateway_config_reloads_total{result=\"ok\"} 0"]:
            check(series in metrics, "metrics lack %s" % series)
        promtool_check(metrics)

        # SIGHUP with a good file: two channels
        channels_file(path, card_url, ["card_a", "card_b"])
        server.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: names(client) == ["card_a", "card_b"], "SIGHUP reload")

        # SIGHUP with a bad file: refused with its line, the two channels stay
        with open(path, "w") as f:
            f.write('{"channels": [\n  {"name": "card_a", "kind": "card", "url": "%s"}],\n'
                    ' "routing": {"strategy": "weighted",\n   "weights": {"card_a": "heavy"}}}\n' % card_url)
        server.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: re.search(r"reload of .* refused \(line 4: routing\.weights\.card_a: the weight is "
                                     r"not a number", server.log()), "refused reload logged")
        check(names(client) == ["card_a", "card_b"], "a refused reload keeps the old channels")
        resp = expect(client.get("/v1/channels"), 200)
        check(resp.json["config"]["reloads_refused"] == 1, "refusals counted: %r" % resp.json["config"])

        # POST /v1/admin/reload: the same refusal, as an API error with the line
        resp = expect(client.post("/v1/admin/reload"), 400, "gateway_config_invalid", "admin reload of a bad file")
        check("channels line 4" in resp.json["error"]["message"], "line in message: %r" % resp)
        check(names(client) == ["card_a", "card_b"], "still the old channels")
        channels_file(path, card_url, ["card_c"])
        resp = expect(client.post("/v1/admin/reload"), 200, what="admin reload")
        check(resp.json["channels"] is True, "reload answer: %r" % resp.json)
        check(names(client) == ["card_c"], "reloaded: %r" % names(client))
        metrics = expect(server.client(key="").get("/metrics"), 200).raw
        check("paycore_gateway_config_reloads_total{result=\"refused\"} 2" in metrics, "refused reloads counted")
        check("card_a" not in metrics, "a removed channel leaves the metrics")
        promtool_check(metrics)
        check(server.stop() == 0, "clean stop")

        # without --channels: no channels, the route still answers
        server.start()
        resp = expect(server.client().get("/v1/channels"), 200)
        check(resp.json == {"channels": [], "config": None}, "no gateway: %r" % resp.json)
        expect(server.client().post("/v1/admin/reload"), 200, what="reload without channels")
        check(server.stop() == 0, "clean stop")
    finally:
        sim.close()
        server.close()
    print("gateway serve: ok")


if __name__ == "__main__":
    main()
