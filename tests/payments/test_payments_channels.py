"""Goal: what a channel's configuration says reaches its payments. Each channel's
`authorization_window_s` is the timeout of its approvals' pending ledger transfers
(the server's --authorization-window-s when it names none) and a hold expires at its
own channel's window; a channel with `partial_captures: false` refuses a partial
capture (400 capture_partial_not_supported, field amount) before its channel hears of
it and changes nothing; the stored `routing` of a payment is the decision the gateway
actually took: its chosen channel is the one whose simulator holds the authorization,
its reason names it, its candidates are every configured channel with why it was in
or out, and a retry onto the next channel shows in its order and the attempts.
Method: a real server and two card simulator processes (A and B) behind four
channels, routed by currency: EUR only to card_a (A, no window of its own), USD only
to card_b (B, window 2 s, no partial captures), CHF only to card_c (B, window 7200 s,
no partial captures), GBP weighted between card_a and card_c. Each check compares the
payment with the ledger's transfers and the simulators' own records."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paylib import (CALLBACK_SECRET, Env, Sim, card_payment, check, check_payment_ledger, expect,  # noqa: E402
                    transfer, wait_for, wait_status)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../api"))
from pcapi import check_conserved  # noqa: E402

SERVER_WINDOW_S = 3000


class ChannelsEnv(Env):
    """Env with a second card simulator and the four card channels above."""

    def __init__(self):
        Env.__init__(self, extra_args=["--authorization-window-s", str(SERVER_WINDOW_S)])
        self.card_b = Sim("card", config={"seed": 8})

    def write_channels(self, port):
        def card(name, sim, currencies, **terms):
            channel = {"name": name, "kind": "card", "url": sim.url, "timeout_ms": 5000,
                       "connect_timeout_ms": 1000, "eligibility": {"currencies": currencies}}
            channel.update(terms)
            return channel
        config = {
            "channels": [
                card("card_a", self.card, ["EUR", "GBP"]),
                card("card_b", self.card_b, ["USD"], authorization_window_s=2, partial_captures=False),
                card("card_c", self.card_b, ["GBP", "CHF"], authorization_window_s=7200, partial_captures=False),
                {"name": "bank", "kind": "bank", "url": self.bank.url, "callback_secret": CALLBACK_SECRET,
                 "callback_url": "http://127.0.0.1:%d/v1/channels/bank/callbacks" % port},
            ],
            "routing": {"strategy": "weighted", "weights": {"card_a": 50, "card_b": 50, "card_c": 50, "bank": 1}},
            "status_inquiry": {"delay_ms": 200, "attempts": 3, "interval_ms": 200},
        }
        with open(self.channels, "w") as f:
            json.dump(config, f)

    def close(self):
        try:
            Env.close(self)
        finally:
            self.card_b.close()


def pay(m, body, what):
    p = expect(m.post("/v1/payments", body), 201, what=what).json
    check(p["status"] == "authorized", "%s: authorized: %r" % (what, p))
    return p


def hold_timeout_s(env, p):
    return transfer(env.admin, p["hold"]["transfer_id"])["timeout_s"]


def sim_of(env, channel):
    return env.card if channel == "card_a" else env.card_b


def sim_authorization(env, channel, ref):
    status, auth = sim_of(env, channel).call("GET", "/v1/authorizations/" + ref)
    return auth if status == 200 else None


def test_windows(env, m):
    """Each channel's window is its holds' ledger timeout; expiry follows it."""
    eur = pay(m, card_payment(400, currency="EUR"), "EUR on card_a")
    usd = pay(m, card_payment(500, currency="USD"), "USD on card_b")
    chf = pay(m, card_payment(600, currency="CHF"), "CHF on card_c")
    check((eur["channel"], usd["channel"], chf["channel"]) == ("card_a", "card_b", "card_c"),
          "routed by currency: %s %s %s" % (eur["channel"], usd["channel"], chf["channel"]))
    got = (hold_timeout_s(env, eur), hold_timeout_s(env, usd), hold_timeout_s(env, chf))
    check(got == (SERVER_WINDOW_S, 2, 7200),
          "hold timeouts: card_a the server's %d, card_b 2, card_c 7200; got %r" % (SERVER_WINDOW_S, got))
    expired = wait_status(m, usd["id"], ["expired"], "card_b's 2 s window")
    check(transfer(env.admin, usd["hold"]["transfer_id"])["pending_state"] == "expired",
          "the ledger expired card_b's hold")
    check(expired["hold"] is None, "no hold left on the expired payment: %r" % expired["hold"])
    for p, what in ((eur, "card_a"), (chf, "card_c")):
        now = expect(m.get("/v1/payments/" + p["id"]), 200, what="get").json
        check(now["status"] == "authorized" and now["amount_capturable"] == p["amount"],
              "%s's payment still holds after card_b's expired: %r" % (what, now["status"]))
        check(transfer(env.admin, p["hold"]["transfer_id"])["pending_state"] == "pending",
              "%s's hold still pending in the ledger" % what)
    return eur, chf


def test_partial_captures(env, m, eur, chf):
    """card_c takes one capture of the whole amount only; card_a takes several."""
    before = expect(m.get("/v1/payments/" + chf["id"]), 200, what="get").json
    for amount in (1, 599):
        r = expect(m.post("/v1/payments/%s/capture" % chf["id"], {"amount": amount}), 400,
                   "capture_partial_not_supported", "partial capture of %d on card_c" % amount)
        check(r.json["error"].get("field") == "amount", "the field is named: %r" % r.json)
    r = expect(m.post("/v1/payments/%s/capture" % chf["id"], {"amount": 1, "final": True}), 400,
               "capture_partial_not_supported", "a final partial capture on card_c")
    after = expect(m.get("/v1/payments/" + chf["id"]), 200, what="get").json
    check(after == before, "a refused partial capture changes nothing:\n%r\n%r" % (before, after))
    auth = sim_authorization(env, "card_c", chf["channel_ref"])
    check(auth is not None and auth.get("captured_total", 0) == 0,
          "the channel heard of no capture: %r" % auth)
    expect(m.post("/v1/payments/%s/capture" % chf["id"], {"amount": 601}), 400, "capture_exceeds_authorized",
           "above the authorization is still that error")
    done = expect(m.post("/v1/payments/%s/capture" % chf["id"], {}), 200, what="whole capture on card_c").json
    check(done["status"] == "captured" and done["amount_captured"] == 600, "whole capture: %r" % done)
    check_payment_ledger(env.admin, done, "card_c capture")
    # card_a (partial_captures by default): two partials up to the whole
    c = expect(m.post("/v1/payments/%s/capture" % eur["id"], {"amount": 150}), 200, what="partial on card_a").json
    check(c["status"] == "partially_captured", "card_a takes a partial capture: %r" % c["status"])
    c = expect(m.post("/v1/payments/%s/capture" % eur["id"], {"amount": 250}), 200, what="second on card_a").json
    check(c["status"] == "captured" and c["amount_captured"] == 400, "two partials make the whole: %r" % c)
    check_payment_ledger(env.admin, c, "card_a partial captures")
    channels = {ch["name"]: ch for ch in expect(env.admin.get("/v1/channels"), 200, what="channels").json["channels"]}
    check(channels["card_c"]["partial_captures"] is False and channels["card_a"]["partial_captures"] is True,
          "GET /v1/channels shows partial_captures: %r" % {k: v.get("partial_captures") for k, v in channels.items()})
    check(channels["card_b"]["authorization_window_s"] == 2 and channels["card_a"]["authorization_window_s"] is None,
          "GET /v1/channels shows authorization_window_s")


def check_routing(env, p, what):
    """The stored routing is the decision taken: chosen = where the money is held."""
    routing = p["routing"]
    names = sorted(c["name"] for c in routing["candidates"])
    check(names == ["bank", "card_a", "card_b", "card_c"], "%s: every configured channel a candidate: %r"
          % (what, names))
    why = {c["name"]: (c["eligible"], c["why"]) for c in routing["candidates"]}
    check(why["card_b"] == (False, "currency") and not why["bank"][0],
          "%s: card_b out for its currency, bank out: %r" % (what, why))
    check(why["card_a"][0] and why["card_c"][0], "%s: card_a and card_c eligible: %r" % (what, why))
    check(routing["strategy"] == "weighted" and routing["why"].startswith("weighted: " + routing["chosen"]),
          "%s: the reason names the chosen channel: %r" % (what, routing))
    check(routing["order"][0] == routing["chosen"] and sorted(routing["order"]) == ["card_a", "card_c"],
          "%s: the order tried: %r" % (what, routing["order"]))
    attempts = [a for o in p["operations"] if o["type"] == "authorize" for a in o["attempts"]]
    check([a["channel"] for a in attempts] == routing["order"][:len(attempts)],
          "%s: the attempts followed the routing's order: %r vs %r" % (what, attempts, routing["order"]))
    check(p["channel"] == attempts[-1]["channel"], "%s: the payment's channel is the last attempt's" % what)
    auth = sim_authorization(env, p["channel"], p["channel_ref"])
    check(auth is not None and auth["amount"] == p["amount"],
          "%s: the authorization is at %s's simulator: %r" % (what, p["channel"], auth))
    other = "card_c" if p["channel"] == "card_a" else "card_a"
    check(sim_authorization(env, other, p["channel_ref"]) is None, "%s: and not at %s's" % (what, other))


def test_routing(env, m):
    seen, payments = set(), []
    for i in range(60):
        p = pay(m, card_payment(100 + i, currency="GBP"), "GBP %d" % i)
        check(p["routing"]["chosen"] == p["channel"], "GBP %d: routing chose %s, the payment is on %s"
              % (i, p["routing"]["chosen"], p["channel"]))
        check(hold_timeout_s(env, p) == (SERVER_WINDOW_S if p["channel"] == "card_a" else 7200),
              "GBP %d: the hold's timeout is %s's window" % (i, p["channel"]))
        check_routing(env, p, "GBP %d" % i)
        stored = expect(m.get("/v1/payments/" + p["id"]), 200, what="get").json
        check(stored["routing"] == p["routing"], "GBP %d: GET shows the routing of the answer" % i)
        seen.add(p["channel"])
        payments.append(p)
        if len(seen) == 2 and i >= 7:
            break
    check(seen == {"card_a", "card_c"}, "the weighted split used both channels: %r" % seen)
    # simulator A unavailable: a payment routed to card_a first is retried on card_c
    env.card.call("POST", "/v1/admin/faults", {"outages": [{"start_ms": 0, "duration_ms": 3600000}],
                                               "outage_mode": "503"})
    retried = None
    for i in range(60):
        p = pay(m, card_payment(300 + i, currency="GBP"), "GBP during A's outage %d" % i)
        check(p["channel"] == "card_c", "A is out: the money is at card_c: %r" % p["channel"])
        check_routing(env, p, "outage %d" % i)
        if p["routing"]["chosen"] == "card_a":
            retried = p
            break
    check(retried is not None, "the weighted draw never put card_a first in 60 payments")
    check(retried["routing"]["order"] == ["card_a", "card_c"], "tried card_a, then card_c: %r"
          % retried["routing"]["order"])
    outcomes = [a["outcome"] for o in retried["operations"] if o["type"] == "authorize" for a in o["attempts"]]
    check(outcomes == ["retryable", "approved"], "card_a's 503, then card_c's approval: %r" % outcomes)
    env.card.call("POST", "/v1/admin/faults", {})
    return payments + [retried]


def main():
    env = ChannelsEnv()
    try:
        env.start()
        m = env.merchant("m1", currencies=("EUR", "USD", "CHF", "GBP"))
        eur, chf = test_windows(env, m)
        test_partial_captures(env, m, eur, chf)
        routed = test_routing(env, m)
        check_conserved(env.admin, "channels")
        env.stop()
        env.start()
        m = env.client(m.key)
        for p in routed[:4] + routed[-1:]:
            again = expect(m.get("/v1/payments/" + p["id"]), 200, what="after restart").json
            check(again["routing"] == p["routing"], "the stored routing survives a restart: %s" % p["id"])
        env.stop()
        env.server.check_sanitizers()
    finally:
        env.close()
    print("payment channels: ok")


if __name__ == "__main__":
    main()
