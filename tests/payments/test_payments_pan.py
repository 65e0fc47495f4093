"""Goal: a card number never appears in anything paycore writes or says: the database
files (main, WAL, index, the risk files), the vault key file, the logs, /metrics, error
messages or any reply, whatever happened to the payment (approved, declined, 3-D
Secure, refused as invalid, top-ups, a restart). The CVC is never stored at all.
Method: a real server with real simulators; payments with a set of card numbers (and
invalid ones), the server logging at debug level; every reply is kept; every file it
wrote is searched byte for byte for every number used, its digits in any grouping the
API accepts, and every CVC: once while it runs (the WAL and its index before any
checkpoint folds them away), and again after it stopped. The simulators' own records (in their own directories) are the
outside world: a channel must know the number."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paylib import CARD, CARD_3DS, CARD_DECLINE, Env, card_payment, check, expect, pay_records  # noqa: E402

CARDS = [CARD, CARD_3DS, CARD_DECLINE, "5555555555554444", "4000000000000002", "378282246310005"]
INVALID = ["4242424242424241", "4111111111111112", "1234567890123"]
CVCS = ["913", "4827"]


def search_files(env, needles, what):
    """Every file in the server's directory, byte for byte; the number searched."""
    searched = 0
    for name in sorted(os.listdir(env.dir)):
        path = os.path.join(env.dir, name)
        if not os.path.isfile(path):
            continue
        data = open(path, "rb").read()
        searched += 1
        for n in needles:
            check(n.encode() not in data, "%s: %s holds card number %s" % (what, name, n))
    return searched


def main():
    env = Env(extra_args=["--log-level", "debug"])
    replies = []

    def keep(resp):
        replies.append(resp.raw)
        for h, v in resp.headers.items():
            replies.append("%s: %s" % (h, v))
        return resp

    try:
        env.start()
        m = env.merchant("m1")
        w = expect(m.post("/v1/wallets", {"owner_id": "C1", "currency": "EUR"}), 201).json
        for i, number in enumerate(CARDS):
            body = card_payment(1000 + i, number=number)
            body["payment_method"]["card"]["cvc"] = CVCS[i % 2] if len(number) != 15 else "4827"
            p = keep(m.post("/v1/payments", body)).json
            if p.get("status") == "requires_action":
                keep(m.post("/v1/payments/%s/confirm" % p["id"], {"code": "123456"}))
            if p.get("id"):
                keep(m.post("/v1/payments/%s/capture" % p["id"], {}))
                keep(m.get("/v1/payments/" + p["id"]))
            top = card_payment(200, number=number, payer="C1")
            del top["capture_method"]
            keep(m.post("/v1/wallets/%s/top_ups" % w["id"], top))
        for number in INVALID:
            r = keep(m.post("/v1/payments", card_payment(100, number=number)))
            check(r.status == 400, "invalid number refused: %r" % r)
        keep(m.get("/v1/payments?limit=100"))
        keep(env.admin.get("/v1/accounts?limit=100"))
        keep(env.client(key="").get("/metrics"))
        needles = CARDS + INVALID
        spaced = [" ".join(n[i:i + 4] for i in range(0, len(n), 4)) for n in needles]
        live = search_files(env, needles + spaced, "while serving")
        check(os.path.exists(env.server.db + "-wal") or env.server.store_args,
              "the WAL was there to search while serving")
        env.stop()
        env.start()  # a restart reads everything back
        keep(env.client(key="").get("/metrics"))
        keep(m.get("/v1/payments?limit=100"))
        env.stop()
        searched = search_files(env, needles + spaced, "after the stop")
        check(searched >= 6 and live >= 6, "the database, its WAL/index, risk files and logs were searched: %d files"
              " while serving, %d after" % (live, searched))
        text = "\n".join(replies)
        for n in needles + spaced:
            check(n not in text, "a reply, header or /metrics shows card number %s" % n)
        db = open(env.server.db, "rb").read() + open(env.server.db + "-wal", "rb").read() \
            if os.path.exists(env.server.db + "-wal") else open(env.server.db, "rb").read()
        for cvc in CVCS:
            check(('"cvc":"%s"' % cvc).encode() not in db and ("cvc=%s" % cvc).encode() not in db,
                  "the CVC is never stored")
        # payment records are stored packed (schema version 16): searched unpacked too
        records = pay_records(env.server.db)
        check(any(r["stored"] == "packed" for r in records), "packed records to search: %d" % len(records))
        unpacked = "\n".join(r["doc"] for r in records)
        for n in needles + spaced + ['"cvc":"%s"' % cvc for cvc in CVCS]:
            check(n not in unpacked, "a payment record holds %s" % n)
    finally:
        env.close()
    print("payments PAN grep: ok (%d replies)" % len(replies))


if __name__ == "__main__":
    main()
