"""Goal: one merchant's key can neither label nor read another merchant's risk data.
(1) A risk decision belongs to the merchant whose payment or whose key made it (an
admin's belongs to no merchant, nor does one stored before decisions had owners):
merchant B's POST /v1/risk/feedback on A's decision ids (from A's payment and from A's
POST /v1/risk/decisions), on an admin's and on an old one answers exactly as on a
decision that does not exist (404, the same body) and records nothing; A's own feedback
and an admin's on any decision are recorded. (2) A merchant's POST /v1/risk/decisions
is for its own payee only (another payee reads as an unknown merchant) and its payers,
devices and addresses are its own: B's decisions neither see A's velocity (from A's
decisions or A's payments) nor add to it, while A's own decisions count each other.
Method: a real server and simulators; the decisions file is read with sqlite3 after a
clean stop (every queued decision and feedback committed); a row in the file's layout
from before owners (no owner_id, no scope columns) is written before the first start."""
import os
import sqlite3
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paylib import RULES, Env, card_payment, check, expect  # noqa: E402

VELOCITY = "velocity window=1h max_count=2\n"  # a third payment of a payer within the hour: review

OLD_SCHEMA = (
    "CREATE TABLE risk_decisions(decision_id INTEGER PRIMARY KEY, txn_id INTEGER,"
    " ts_s INTEGER NOT NULL, payer_id TEXT NOT NULL, payee_id TEXT NOT NULL,"
    " amount_minor INTEGER NOT NULL, currency TEXT NOT NULL, mcc INTEGER NOT NULL,"
    " channel INTEGER NOT NULL, country_payer TEXT NOT NULL, country_merchant TEXT NOT NULL,"
    " device_id TEXT NOT NULL, ip_prefix TEXT NOT NULL, account_age_days INTEGER NOT NULL,"
    " outcome INTEGER NOT NULL, score REAL, reasons TEXT NOT NULL, feedback INTEGER,"
    " feedback_s INTEGER)")


def old_decision(path):
    """Decision 1 as a server before owners stored it (payee 'ma')."""
    db = sqlite3.connect(path)
    db.execute(OLD_SCHEMA)
    db.execute("INSERT INTO risk_decisions VALUES(1, 0, 1719300000, 'P_OLD', 'ma', 1000, 'EUR', 5411, 1, 'DE', 'DE',"
               " '', '', 10, 0, NULL, '', NULL, NULL)")
    db.commit()
    db.close()


def decision(payer, payee, amount=1500):
    return {"payer_id": payer, "payee_id": payee, "amount_minor": amount, "currency": "EUR", "mcc": "5411",
            "channel": "ecommerce", "country_payer": "DE", "country_merchant": "DE", "device_id": "dev-" + payer,
            "ip_prefix": "10.9.8", "account_age_days": 30}


def decide(client, payer, payee, what):
    return expect(client.post("/v1/risk/decisions", decision(payer, payee)), 200, what=what).json


def codes(d):
    return [r["code"] for r in d["reasons"]]


def feedback(client, decision_id, is_fraud=True):
    return client.post("/v1/risk/feedback", {"decision_id": decision_id, "is_fraud": is_fraud})


def refused_as_missing(client, decision_id, missing_id, what):
    """The answer on 'decision_id' is the answer on a decision that does not exist."""
    theirs, absent = feedback(client, decision_id), feedback(client, missing_id)
    check(theirs.status == 404 and theirs.code() == "risk_decision_not_found", "%s: 404: %r" % (what, theirs))
    check(theirs.status == absent.status and theirs.json == absent.json,
          "%s: the same answer as a missing decision: %r vs %r" % (what, theirs.json, absent.json))


def feedback_rules(a, b, env, missing_id):
    """Who may label which decision; returns {payer of the decision: feedback expected in the file}."""
    paid = expect(a.post("/v1/payments", card_payment(1200, payer="PA1")), 201, what="A's payment").json
    from_payment = paid["risk"]["decision_id"]
    from_route = decide(a, "PA2", "ma", "A's decision")["decision_id"]
    from_admin = decide(env.admin, "PZ", "ma", "an admin's decision")["decision_id"]
    check(len({from_payment, from_route, from_admin, 1}) == 4, "four decisions")
    for did, what in ((from_payment, "A's payment's"), (from_route, "A's decision"), (from_admin, "an admin's"),
                      (1, "an old unowned")):
        refused_as_missing(b, did, missing_id, "B's feedback on %s decision" % what)
    for did, what in ((from_admin, "an admin's"), (1, "an old unowned")):
        refused_as_missing(a, did, missing_id, "A's feedback on %s decision" % what)
    expect(feedback(a, from_payment, False), 200, what="A's feedback on its payment's decision")
    expect(feedback(a, from_route, True), 200, what="A's feedback on its own decision")
    expect(feedback(env.admin, from_admin, True), 200, what="an admin's feedback on its decision")
    expect(feedback(env.admin, 1, False), 200, what="an admin's feedback on an old decision")
    refused_as_missing(b, from_payment, missing_id, "B's feedback after A's")
    unbound_key(env, from_route)
    return {"PA1": 0, "PA2": 1, "PZ": 1, "P_OLD": 0}  # by payer: the file holds numbers, clients ids


def unbound_key(env, own_decision):
    """A merchant key bound to no merchant owns no decisions: 403 merchant_key_unbound."""
    key = expect(env.admin.post("/v1/api-keys", {"scope": "merchant", "name": "ledger only"}), 201).json["key"]
    loose = env.client(key)
    expect(loose.post("/v1/risk/decisions", decision("PU", "ma")), 403, "merchant_key_unbound", "unbound decides")
    expect(feedback(loose, own_decision), 403, "merchant_key_unbound", "unbound gives feedback")


def own_payee_only(b):
    theirs = b.post("/v1/risk/decisions", decision("PB0", "ma"))
    absent = b.post("/v1/risk/decisions", decision("PB0", "m-nobody"))
    check(theirs.status == 400 and theirs.code() == "merchant_unknown" and theirs.json == absent.json,
          "B deciding for A's payee: as for no merchant: %r vs %r" % (theirs.json, absent.json))


def scoped_features(a, b):
    """Velocity (max 2 an hour) counts a merchant's own decisions only."""
    for i in range(2):
        check("velocity" not in codes(decide(a, "PX", "ma", "A on PX %d" % i)), "A's first two on PX")
    check("velocity" in codes(decide(a, "PX", "ma", "A on PX, third")), "A's own third decision on PX counts")
    check("velocity" not in codes(decide(b, "PX", "mb", "B on PX")), "B does not see A's PX")
    for i in range(3):
        expect(a.post("/v1/payments", card_payment(700 + i, payer="PV")), 201, what="A's payment %d of PV" % i)
    check("velocity" not in codes(decide(b, "PV", "mb", "B on PV")), "B does not see A's payments of PV")
    for i in range(4):
        decide(b, "PY", "mb", "B on PY %d" % i)
    check("velocity" not in codes(decide(a, "PY", "ma", "A on PY")), "B's decisions do not count for A")


def stored_feedback(path):
    db = sqlite3.connect(path)
    try:
        return {row[0]: row[1] for row in db.execute("SELECT payer_id, feedback FROM risk_decisions")
                if row[1] is not None or row[0] in ("PA1", "PA2", "PZ", "P_OLD")}
    finally:
        db.close()


def main():
    env = Env()
    try:
        with open(env.rules, "w") as f:
            f.write(RULES + VELOCITY)
        risk_db = env.server.db + "-risk.db"
        old_decision(risk_db)
        env.start()
        a = env.merchant("ma")
        b = env.merchant("mb")
        missing_id = 10 ** 9
        expected = feedback_rules(a, b, env, missing_id)
        own_payee_only(b)
        scoped_features(a, b)
        env.stop()
        stored = stored_feedback(risk_db)
        for did, value in expected.items():
            check(stored.get(did) == value, "decision of %s: feedback %r stored, want %r" % (did, stored.get(did), value))
        labelled = {did for did, value in stored.items() if value is not None}
        check(labelled == set(expected), "feedback on exactly the decisions allowed: %r" % sorted(labelled))
        print("payments hostile risk: feedback only by the owner or an admin, scoped features: ok (%d decisions)"
              % len(stored))
    finally:
        env.close()


if __name__ == "__main__":
    main()
