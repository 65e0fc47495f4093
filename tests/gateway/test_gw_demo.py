"""Goal: `paycore serve --demo` routes to its own simulators: GET /v1/channels lists the
card, wallet and bank channels at the demo simulators' URLs, an authorization through
the demo's channels file is approved by the demo card simulator, and the bank channel's
callbacks name this server's port and are accepted by it (signed with the demo's secret).
Method: a real `serve --demo` on a free port; the simulators' URLs from its log; a bank
transfer posted to the demo bank with the callback URL the gateway configured, polled
until the bank says its callback was delivered (acknowledged by paycore)."""
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from simlib import BIN, TIMEOUT_S, Client, check, wait_until  # noqa: E402
from simlib import expect as sim_expect  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../api"))
from pcapi import Server, expect  # noqa: E402


def main():
    server = Server(demo=True)
    try:
        server.start(["--demo"])
        sims = {}
        for line in server.log().splitlines():
            if '"msg":"demo simulator"' in line:
                entry = json.loads(line)
                sims[entry["channel"]] = entry["url"]
        check(sorted(sims) == ["bank", "card", "wallet"], "demo simulators: %r" % sims)
        resp = expect(server.client().get("/v1/channels"), 200, what="channels")
        listed = {c["name"]: (c["kind"], c["url"], c["breaker"]["state"]) for c in resp.json["channels"]}
        check(listed == {k: (k, sims[k], "closed") for k in sims}, "demo channels: %r" % listed)

        path = server.db + ".sims/channels.json"
        check(oct(os.stat(path).st_mode & 0o777) == "0o600", "the demo channels file is private")
        out = subprocess.run([BIN, "channels", "authorize", "--channels", path, "--amount", "1999", "--card",
                              "4242424242424242", "--reference", "demo-order-1"], capture_output=True, text=True,
                             timeout=TIMEOUT_S)
        check(out.returncode == 0 and json.loads(out.stdout)["channel"] == "card", "demo authorize: %r" % out.stdout)

        bank = json.load(open(path))["channels"][2]
        check(bank["callback_url"] == "http://127.0.0.1:%d/v1/channels/bank/callbacks" % server.port,
              "callbacks come to this server: %r" % bank)
        bank_sim = Client(int(sims["bank"].rsplit(":", 1)[1]))
        transfer = sim_expect(bank_sim.post("/v1/transfers", {
            "direction": "credit", "amount": 500, "currency": "EUR",
            "account": {"routing_number": "110000000", "account_number": "000123456789"},
            "callback_url": bank["callback_url"], "reference": "demo-payout-1"}, key="demo-k1"), 202).json
        wait_until(lambda: bank_sim.get("/v1/transfers/" + transfer["id"]).json["callback"]["delivered"],
                   "the demo bank's callback to be acknowledged")
        check(re.search(r"transfer %s settled \(approved\)" % transfer["id"], server.log()) is not None,
              "the settled callback reached the gateway")
        check(server.stop() == 0, "clean stop")
    finally:
        server.close()
    print("gateway demo: ok")


if __name__ == "__main__":
    main()
