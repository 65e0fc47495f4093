"""Goal: the card simulator answers every ISO 8583 code of docs/channels.md, keeps its
promises on idempotency (one application per key, the first answer byte for byte),
3-D Secure, captures, voids and refunds, and refuses bad requests with a 400 naming the
field while changing nothing. Method: a real `paycore simulator card` on loopback,
driven over HTTP; every effect is checked in the simulator's own SQLite record."""
import http.client
import json
import os
import socket
import stat
import sys
import threading

sys.path.insert(0, os.path.dirname(__file__))
from simlib import (CARD_3DS, CARD_OK, FORCING, Sim, auth_body, check, expect, expect_invalid,  # noqa: E402
                    luhn_complete)

AUTH = "/v1/authorizations"


def record_count(sim):
    return sim.one("SELECT count(*) FROM records")[0]


def test_every_code(sim, c):
    """Each forcing card gives its code; 14, 51, 54, 61 also happen naturally."""
    for code, number in FORCING.items():
        r = expect(c.post(AUTH, auth_body(number), key="force-" + code), 200, what="card " + number)
        check(r.json["response_code"] == code, "card %s: want %s, got %r" % (number, code, r))
        check(r.json["status"] == ("approved" if code == "00" else "declined"), "status of %r" % r)
        check(r.json["id"].startswith("auth_") and r.json["amount"] == 1999 and r.json["currency"] == "EUR",
              "answer shape %r" % r)
        check(("approval_code" in r.json) == (code == "00"), "approval_code only when approved: %r" % r)
        check(r.json["message"], "a message: %r" % r)
    bad_luhn = "4242424242424241"
    r = expect(c.post(AUTH, auth_body(bad_luhn), key="luhn"), 200)
    check(r.json["response_code"] == "14", "Luhn-invalid: 14, got %r" % r)
    holder = luhn_complete("411111111111300")
    expired = auth_body(holder)
    expired["card"]["exp_year"] = 2020
    check(expect(c.post(AUTH, expired, key="expired"), 200).json["response_code"] == "54", "expired: 54")
    r = expect(c.post(AUTH, auth_body(holder, amount=1000001), key="limit"), 200)
    check(r.json["response_code"] == "61", "above the default amount limit: 61, got %r" % r)
    # 51 naturally: the default balance is 100000 per currency; holds count.
    r = expect(c.post(AUTH, auth_body(holder, amount=60000), key="hold-1"), 200)
    check(r.json["response_code"] == "00", "first hold approved: %r" % r)
    r = expect(c.post(AUTH, auth_body(holder, amount=60000), key="hold-2"), 200)
    check(r.json["response_code"] == "51", "second hold above what is left: 51, got %r" % r)
    balance, held = sim.one("SELECT balance, held FROM cardholders WHERE number = ? AND currency = 'EUR'",
                            (holder,))
    check((balance, held) == (100000, 60000), "cardholder after one hold: %r" % ((balance, held),))
    r = expect(c.post(AUTH, auth_body(holder, amount=60000, currency="USD"), key="hold-usd"), 200)
    check(r.json["response_code"] == "00", "balances are per currency: %r" % r)


def test_idempotency(sim, c):
    """A repeat returns the first answer byte for byte and applies nothing; another
    request under the same key is 409 and changes nothing."""
    holder = luhn_complete("411111111111400")
    body = auth_body(holder, amount=700, merchant_ref="order-1")
    first = expect(c.post(AUTH, body, key="idem-1"), 200)
    before = record_count(sim)
    again = expect(c.post(AUTH, dict(reversed(list(body.items()))), key="idem-1"), 200, what="repeat")
    check(again.raw == first.raw, "repeat must be byte for byte: %r vs %r" % (again.raw, first.raw))
    check(again.headers.get("idempotent-replayed") == "true", "replay header: %r" % again.headers)
    check("idempotent-replayed" not in first.headers, "a first answer is not a replay")
    check(record_count(sim) == before, "a repeat must not add a record")
    check(sim.one("SELECT held FROM cardholders WHERE number = ?", (holder,))[0] == 700, "held once")
    other = dict(body, amount=701)
    expect(c.post(AUTH, other, key="idem-1"), 409, "idempotency_key_reused", "same key, other body")
    expect(c.post(AUTH + "/" + first.json["id"] + "/captures", {"amount": 1}, key="idem-1"), 409,
           "idempotency_key_reused", "same key, other operation")
    check(record_count(sim) == before, "a 409 changes nothing")
    s = expect(c.get("/v1/status/idem-1"), 200)
    check(s.json["found"] is True and s.json["operation"] == "authorize" and s.json["http_status"] == 200,
          "status inquiry: %r" % s)
    check(s.json["response"] == first.json, "status inquiry holds the first answer: %r" % s)
    expect(c.get("/v1/status/never-used"), 404)
    check(c.get("/v1/status/never-used").json == {"found": False}, "404 body is found:false")
    expect(c.post(AUTH, body), 400, "idempotency_key_missing", "no key")
    expect_invalid(c.post(AUTH, body, key="bad key!"), "Idempotency-Key", "malformed key")
    expect_invalid(c.post(AUTH, body, key="k" * 65), "Idempotency-Key", "key too long")
    check(record_count(sim) == before, "refused keys change nothing")


def test_same_key_race(sim, c):
    """Eight clients send one request under one key at once: one applies, all get the
    same answer."""
    holder = luhn_complete("411111111111600")
    body = auth_body(holder, amount=900)
    answers = []
    lock = threading.Lock()

    def send():
        r = c.post(AUTH, body, key="race-1")
        with lock:
            answers.append(r)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(all(a.status == 200 for a in answers) and len(set(a.raw for a in answers)) == 1,
          "one answer for all: %r" % answers)
    check(sum(1 for a in answers if "idempotent-replayed" not in a.headers) == 1, "exactly one first answer")
    check(sim.one("SELECT count(*) FROM records WHERE idempotency_key = 'race-1'")[0] == 1, "applied once")
    check(sim.one("SELECT held FROM cardholders WHERE number = ?", (holder,))[0] == 900, "held once")


def test_3ds(sim, c):
    """A card in the 3-D Secure range is challenged; the right code approves once, a
    wrong code declines with 05, a completed challenge cannot be completed again."""
    r = expect(c.post(AUTH, auth_body(CARD_3DS, amount=500), key="3ds-1"), 200)
    check(r.json["status"] == "challenge_required" and r.json["response_code"] == "1A", "challenge: %r" % r)
    challenge = r.json["challenge_id"]
    check(challenge.startswith("ch_"), "challenge id %r" % challenge)
    done = expect(c.post("/v1/challenges/%s/complete" % challenge, {"code": "123456"}, key="3ds-1-done"), 200)
    check(done.json["status"] == "approved" and done.json["response_code"] == "00", "right code: %r" % done)
    check(done.json["id"] == r.json["id"] and done.json.get("approval_code"), "same authorization: %r" % done)
    check(sim.one("SELECT held FROM cardholders WHERE number = ?", (CARD_3DS,))[0] == 500, "held after 3DS")
    expect(c.post("/v1/challenges/%s/complete" % challenge, {"code": "123456"}, key="3ds-1-again"), 409,
           "challenge_already_completed")
    again = expect(c.post("/v1/challenges/%s/complete" % challenge, {"code": "123456"}, key="3ds-1-done"), 200)
    check(again.raw == done.raw, "a repeat of the completion is a replay")
    r = expect(c.post(AUTH, auth_body(luhn_complete("400000276011111"), amount=500), key="3ds-2"), 200)
    check(r.json["status"] == "challenge_required", "the whole range is challenged: %r" % r)
    wrong = expect(c.post("/v1/challenges/%s/complete" % r.json["challenge_id"], {"code": "000000"},
                          key="3ds-2-done"), 200)
    check(wrong.json["status"] == "declined" and wrong.json["response_code"] == "05" and
          wrong.json["message"] == "authentication failed", "wrong code: %r" % wrong)
    state = sim.one("SELECT status, challenge_state FROM authorizations WHERE id = ?", (r.json["id"],))
    check(state == ("declined", "failed"), "declined for good: %r" % (state,))
    expect(c.post("/v1/challenges/ch_unknown/complete", {"code": "1"}, key="3ds-x"), 404, "not_found")
    got = expect(c.get(AUTH + "/" + r.json["id"]), 200)
    check(got.json["status"] == "declined", "current state: %r" % got)
    capture = expect(c.post(AUTH, auth_body(CARD_3DS, amount=300, capture=True), key="3ds-3"), 200)
    done = expect(c.post("/v1/challenges/%s/complete" % capture.json["challenge_id"], {"code": "123456"},
                         key="3ds-3-done"), 200)
    check(done.json.get("captured_amount") == 300 and done.json.get("capture_id", "").startswith("cap_"),
          "a challenged authorize-and-capture captures on completion: %r" % done)


def test_capture_void_refund(sim, c):
    """Partial captures up to the authorized amount, not above; void only with nothing
    captured; refunds bounded by what was captured; balances follow."""
    holder = luhn_complete("411111111111500")
    auth = expect(c.post(AUTH, auth_body(holder, amount=1000), key="cvr-auth"), 200).json
    path = AUTH + "/" + auth["id"]
    first = expect(c.post(path + "/captures", {"amount": 400}, key="cvr-cap-1"), 200).json
    check(first["status"] == "approved" and first["captured_total"] == 400 and first["id"].startswith("cap_"),
          "partial capture: %r" % first)
    over = expect(c.post(path + "/captures", {"amount": 601}, key="cvr-cap-2"), 200).json
    check(over["status"] == "declined" and over["response_code"] == "61" and over["captured_total"] == 400,
          "capture above what is left: 61, got %r" % over)
    rest = expect(c.post(path + "/captures", {"amount": 600}, key="cvr-cap-3"), 200).json
    check(rest["captured_total"] == 1000, "capture up to the authorized amount: %r" % rest)
    more = expect(c.post(path + "/captures", {"amount": 1}, key="cvr-cap-4"), 200).json
    check(more["response_code"] == "61", "nothing left: %r" % more)
    void = expect(c.post(path + "/void", {}, key="cvr-void"), 200).json
    check(void["status"] == "declined" and void["response_code"] == "57", "void after capture: 57, %r" % void)
    refund = expect(c.post(path + "/refunds", {"amount": 300}, key="cvr-ref-1"), 200).json
    check(refund["status"] == "approved" and refund["refunded_total"] == 300, "refund: %r" % refund)
    over = expect(c.post(path + "/refunds", {"amount": 701}, key="cvr-ref-2"), 200).json
    check(over["response_code"] == "61" and over["refunded_total"] == 300, "refund above captured: %r" % over)
    expect(c.post(path + "/refunds", {"amount": 700}, key="cvr-ref-3"), 200)
    balance, held = sim.one("SELECT balance, held FROM cardholders WHERE number = ?", (holder,))
    check((balance, held) == (100000, 0), "captured 1000, refunded 1000: %r" % ((balance, held),))
    approved = sim.one("SELECT count(*) FROM records WHERE parent_id = ? AND status = 'approved'", (auth["id"],))[0]
    check(approved == 4, "two captures and two refunds applied, got %d" % approved)
    other = expect(c.post(AUTH, auth_body(holder, amount=500), key="cvr-auth-2"), 200).json
    opath = AUTH + "/" + other["id"]
    check(expect(c.post(opath + "/refunds", {"amount": 1}, key="cvr-o-ref"), 200).json["response_code"] == "61",
          "refund of nothing captured: 61")
    void = expect(c.post(opath + "/void", {}, key="cvr-o-void"), 200).json
    check(void["status"] == "approved" and void["amount"] == 500, "void: %r" % void)
    check(sim.one("SELECT held FROM cardholders WHERE number = ?", (holder,))[0] == 0, "void releases the hold")
    check(expect(c.post(opath + "/void", {}, key="cvr-o-void2"), 200).json["response_code"] == "57", "void twice")
    check(expect(c.post(opath + "/captures", {"amount": 1}, key="cvr-o-cap"), 200).json["response_code"] == "57",
          "capture of a voided authorization: 57")
    declined = expect(c.post(AUTH, auth_body(FORCING["05"]), key="cvr-declined"), 200).json
    check(expect(c.post(AUTH + "/" + declined["id"] + "/captures", {"amount": 1}, key="cvr-d-cap"), 200)
          .json["response_code"] == "57", "capture of a declined authorization: 57")
    got = expect(c.get(opath), 200).json
    check(got["status"] == "voided" and got["captured_total"] == 0, "GET authorization: %r" % got)
    one = expect(c.post(AUTH, auth_body(holder, amount=250, capture=True), key="cvr-sale"), 200).json
    check(one["captured_amount"] == 250 and one["capture_id"].startswith("cap_"), "authorize+capture: %r" % one)
    expect(c.post(AUTH + "/auth_nope/captures", {"amount": 1}, key="cvr-404"), 404, "not_found")


def holder_row(sim, number, currency="EUR"):
    return sim.one("SELECT balance, held, amount_limit FROM cardholders WHERE number = ? AND currency = ?",
                   (number, currency))


def authorize_code(c, number, amount, key, currency="EUR", capture=False):
    body = auth_body(number, amount=amount, currency=currency, capture=capture)
    return expect(c.post(AUTH, body, key=key), 200, what=key).json["response_code"]


def test_holder_rows(sim, c):
    """An authorization leaves its cardholder's row as the rules say, for a holder the
    record does not have yet (created by it), one it has, and after a restart (the
    record read anew): holds, sales (capture requested), 51 and 61 moving nothing, a
    challenge creating the row and holding nothing, another currency its own row."""
    fresh, sale, limit = (luhn_complete("41111111111170" + d) for d in "123")
    check(authorize_code(c, fresh, 300, "h-new") == "00", "a new holder's first hold")
    check(holder_row(sim, fresh) == (100000, 300, 1000000), "held on a new row: %r" % (holder_row(sim, fresh),))
    check(authorize_code(c, fresh, 200, "h-again") == "00", "an existing holder's hold")
    check(holder_row(sim, fresh)[:2] == (100000, 500), "held twice: %r" % (holder_row(sim, fresh),))
    check(authorize_code(c, fresh, 99501, "h-51") == "51", "above what is available: 51")
    check(authorize_code(c, fresh, 1000001, "h-61") == "61", "above the limit: 61")
    check(holder_row(sim, fresh)[:2] == (100000, 500), "declines move nothing: %r" % (holder_row(sim, fresh),))
    check(authorize_code(c, fresh, 99500, "h-all") == "00", "exactly what is available")
    check(holder_row(sim, fresh)[:2] == (100000, 100000), "all held: %r" % (holder_row(sim, fresh),))
    check(authorize_code(c, sale, 400, "s-new", capture=True) == "00", "a new holder's sale")
    check(holder_row(sim, sale)[:2] == (99600, 0), "a sale takes the balance: %r" % (holder_row(sim, sale),))
    check(authorize_code(c, sale, 100, "s-again", capture=True) == "00", "an existing holder's sale")
    check(holder_row(sim, sale)[:2] == (99500, 0), "two sales: %r" % (holder_row(sim, sale),))
    check(authorize_code(c, limit, 1000001, "l-new") == "61", "a new holder above the limit: 61")
    check(holder_row(sim, limit) == (100000, 0, 1000000), "created, nothing held: %r" % (holder_row(sim, limit),))
    check(authorize_code(c, limit, 100001, "l-51") == "51", "a holder made by a decline: 51")
    challenged = luhn_complete("400000276000400")
    check(authorize_code(c, challenged, 700, "ch-new") == "1A", "a challenge")
    check(holder_row(sim, challenged)[:2] == (100000, 0), "a challenge holds nothing yet")
    check(authorize_code(c, fresh, 250, "h-usd", currency="USD") == "00", "another currency")
    check(holder_row(sim, fresh, "USD")[:2] == (100000, 250), "its own row: %r" % (holder_row(sim, fresh, "USD"),))
    check(sim.stop() == 0, "clean stop")
    sim.start()
    c = sim.client()
    check(authorize_code(c, sale, 500, "r-sale") == "00", "after a restart: a known holder")
    check(holder_row(sim, sale)[:2] == (99500, 500), "its row moved, not made again: %r" % (holder_row(sim, sale),))
    check(authorize_code(c, fresh, 1, "r-51") == "51", "after a restart: what is held stays held")
    other = luhn_complete("411111111111704")
    check(authorize_code(c, other, 600, "r-new") == "00", "after a restart: a new holder")
    check(holder_row(sim, other)[:2] == (100000, 600), "a new row: %r" % (holder_row(sim, other),))
    count = sim.one("SELECT count(*) FROM cardholders WHERE number IN (?, ?, ?, ?, ?)",
                    (fresh, sale, limit, challenged, other))[0]
    check(count == 6, "one row per holder and currency: %d" % count)


def test_bad_requests(sim, c):
    """Each malformed request is 400 with the field, and adds nothing to the record."""
    before = record_count(sim)
    cases = [
        (b"{", "body"), (b"[1]", "body"), (b"{\"amount\":1,\"amount\":2}", "body"),
    ]
    for raw, field in cases:
        expect_invalid(c.post(AUTH, raw=raw, key="bad-raw"), field, "raw %r" % raw)
    bodies = [
        (dict(auth_body(), amount=19.99), "amount"), (dict(auth_body(), amount="1999"), "amount"),
        (dict(auth_body(), amount=0), "amount"), (dict(auth_body(), amount=10 ** 15 + 1), "amount"),
        (dict(auth_body(), currency="eur"), "currency"), (dict(auth_body(), currency="XXX"), "currency"),
        (dict(auth_body(), extra=1), "extra"), (dict(auth_body(), capture="yes"), "capture"),
        (dict(auth_body(), merchant_ref="x" * 256), "merchant_ref"),
        ({"amount": 1, "currency": "EUR"}, "card"),
        (auth_body("4242-4242"), "card.number"), (auth_body("42424242424"), "card.number"),
    ]
    for body, field in bodies:
        expect_invalid(c.post(AUTH, body, key="bad-body"), field, "body %r" % body)
    card = auth_body()
    card["card"]["exp_month"] = 13
    expect_invalid(c.post(AUTH, card, key="bad-month"), "card.exp_month")
    card = auth_body()
    card["card"]["cvc"] = "12"
    expect_invalid(c.post(AUTH, card, key="bad-cvc"), "card.cvc")
    card = auth_body()
    card["card"]["pin"] = "1"
    expect_invalid(c.post(AUTH, card, key="bad-pin"), "card.pin")
    auth = expect(c.post(AUTH, auth_body(), key="bad-parent"), 200).json
    before = record_count(sim)
    path = AUTH + "/" + auth["id"]
    expect_invalid(c.post(path + "/captures", {}, key="bad-c1"), "amount")
    expect_invalid(c.post(path + "/captures", {"amount": 1, "currency": "USD"}, key="bad-c2"), "currency")
    expect_invalid(c.post(path + "/void", {"amount": 1}, key="bad-v"), "amount")
    expect_invalid(c.post(path + "/refunds", {"amount": -1}, key="bad-r"), "amount")
    expect(c.post(AUTH, raw=b"x" * (64 * 1024 + 1), key="big"), 413, "body_too_large")
    expect(c.get("/v1/nothing"), 404, "not_found")
    expect(c.request("DELETE", AUTH), 405, "method_not_allowed")
    # paths near a route's: an id segment empty or over 64 bytes, a segment more or
    # less, a trailing slash; the route's path under another method
    for near in ("/v1/authorizations//captures", "/v1/authorizations/" + "a" * 65 + "/captures",
                 path + "/captures/x", path + "/capture", path + "/", "/v1/authorizations/", "/healthz/",
                 "/v1/authorizationsx", "//v1/authorizations"):
        expect(c.post(near, {"amount": 1}, key="bad-near"), 404, "not_found", near)
    expect(c.get(path + "/captures"), 405, "method_not_allowed")
    expect(c.post(AUTH + "/" + "a" * 64 + "/captures", {"amount": 1}, key="bad-64"), 404, "not_found")
    check(record_count(sim) == before, "bad requests change nothing")
    check(sim.rows("SELECT key FROM idempotency WHERE key LIKE 'bad-%' AND key != 'bad-parent'") == [],
          "refusals are not recorded under their key")


def send_head(conn, method, path, headers, body=b""):
    """One request on 'conn' (kept alive), its head exactly 'headers' (no header of
    http.client's own); returns (status, JSON or None)."""
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    for name, value in headers:
        conn.putheader(name, value)
    conn.endheaders(body)
    resp = conn.getresponse()
    raw = resp.read()
    try:
        return resp.status, json.loads(raw)
    except ValueError:
        return resp.status, None


def oversized_head_status(sim, headers, body):
    """The status of one POST to AUTH with 'headers' sent whole on a new connection,
    or None when the server closed it (reset) before the answer could be read."""
    head = "POST %s HTTP/1.1\r\n" % AUTH + "".join("%s: %s\r\n" % h for h in headers) + "\r\n"
    sock = socket.create_connection(("127.0.0.1", sim.port), timeout=sim.client().timeout_s)
    try:
        try:
            sock.sendall(head.encode() + body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            answer = sock.recv(65536)
        except ConnectionResetError:
            return None
        if not answer.startswith(b"HTTP/1."):
            return None
        return int(answer.split(b" ", 2)[1])
    finally:
        sock.close()


def test_largest_request():
    """The largest request the protocol allows fits a connection's memory, again and
    again on one kept-alive connection (the gateway's own headers, curl's, a 256-byte
    API key, a 64-byte key, a 255-byte merchant_ref, then a path of 1 KiB); a head
    past the documented bound (~3.8 KiB) is 431, and changes nothing."""
    api_key = "k" * 256
    sim = Sim("card", config={"api_key": api_key}).start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=sim.client().timeout_s)
        common = [("Host", "255.255.255.255:65535"), ("User-Agent", "libcurl-agent/1.0 " + "u" * 40),
                  ("Accept", "application/json"), ("Authorization", "Bearer " + api_key)]
        for i in range(3):
            body = json.dumps(auth_body(merchant_ref="m" * 255)).encode()
            key = ("big-%d-" % i) + "x" * 58
            status, auth = send_head(conn, "POST", AUTH, common + [
                ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                ("Idempotency-Key", key)], body)
            check(status == 200 and auth["status"] == "approved", "largest authorization %d: %d %r" % (i, status, auth))
            body = b'{"amount":1999,"merchant_ref":"' + b"r" * 255 + b'"}'
            status, cap = send_head(conn, "POST", AUTH + "/" + auth["id"] + "/captures", common + [
                ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                ("Idempotency-Key", key[:-1] + "c")], body)
            check(status == 200 and cap["status"] == "approved", "largest capture %d: %d %r" % (i, status, cap))
            status, missing = send_head(conn, "GET", "/v1/authorizations/" + "a" * 1005, common)
            check(status == 404 and missing["error"]["code"] == "not_found", "a 1 KiB path: %d %r" % (status, missing))
        conn.close()
        before = record_count(sim)
        body = json.dumps(auth_body()).encode()
        status = oversized_head_status(sim, common + [
            ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
            ("Idempotency-Key", "big-head"), ("X-Padding", "p" * 3500)], body)
        # the HTTP layer answers 431 and closes; a client still sending may see the
        # connection reset before it reads the answer: refused either way, never served
        check(status in (431, None), "a head past ~3.8 KiB: want 431 or a closed connection, got %r" % status)
        check(record_count(sim) == before and sim.rows("SELECT key FROM idempotency WHERE key = 'big-head'") == [],
              "a refused head changes nothing")
    finally:
        sim.close()


def test_auth_and_files(c_dir):
    """With an api_key every request but /healthz needs it; the record is mode 0600;
    a restart keeps the record (a replay after restart is the same answer)."""
    sim = Sim("card", config={"api_key": "sim-key"}).start()
    try:
        expect(sim.client().post(AUTH, auth_body(), key="a1"), 401, "unauthorized")
        expect(sim.client(api_key="wrong").post(AUTH, auth_body(), key="a1"), 401, "unauthorized")
        expect(sim.client().get("/v1/status/a1"), 401, "unauthorized")
        expect(sim.client().get("/healthz"), 200)
        first = expect(sim.client(api_key="sim-key").post(AUTH, auth_body(), key="a1"), 200)
        mode = stat.S_IMODE(os.stat(sim.db).st_mode)
        check(mode == 0o600, "record mode %o" % mode)
        check(sim.stop() == 0, "clean stop exits 0")
        sim.start()
        again = expect(sim.client(api_key="sim-key").post(AUTH, auth_body(), key="a1"), 200)
        check(again.raw == first.raw, "a replay after a restart is the first answer")
        check(sim.one("SELECT count(*) FROM records")[0] == 1, "applied once across the restart")
    finally:
        sim.close()


def test_data_file():
    """--data sets a cardholder's balance and limit; a bad data file refuses to start."""
    holder = luhn_complete("555555555555444")
    sim = Sim("card", data={"cards": [{"number": holder, "currency": "GBP", "balance": 500,
                                       "amount_limit": 400}]}).start()
    try:
        c = sim.client()
        check(expect(c.post(AUTH, auth_body(holder, 401, "GBP"), key="d1"), 200).json["response_code"] == "61",
              "data amount_limit")
        check(expect(c.post(AUTH, auth_body(holder, 400, "GBP"), key="d2"), 200).json["response_code"] == "00",
              "within balance")
        check(expect(c.post(AUTH, auth_body(holder, 101, "GBP"), key="d3"), 200).json["response_code"] == "51",
              "data balance")
        expect(c.post("/v1/admin/cards", {"number": holder, "currency": "GBP", "balance": 10000}), 200)
        check(expect(c.post(AUTH, auth_body(holder, 101, "GBP"), key="d4"), 200).json["response_code"] == "00",
              "admin balance")
        expect_invalid(c.post("/v1/admin/cards", {"number": "12", "currency": "GBP", "balance": 1}), "number")
    finally:
        sim.close()
    bad = Sim("card", data={"cards": [{"number": holder, "currency": "GBP", "balance": -1}]})
    import subprocess
    out = subprocess.run(bad.command(), capture_output=True, text=True, timeout=60)
    check(out.returncode == 2 and "cards[0].balance" in out.stderr, "bad data refused: %r" % out.stderr)
    bad.close()


def inquiry_is_row(sim, c, auth_id, what):
    """The status inquiry of 'auth_id' answers what its row holds."""
    got = expect(c.get(AUTH + "/" + auth_id), 200, what=what).json
    row = sim.one("SELECT status, response_code, amount, currency, captured_total, refunded_total,"
                  " coalesce(merchant_ref, '') FROM authorizations WHERE id = ?", (auth_id,))
    answered = (got["status"], got["response_code"], got["amount"], got["currency"], got["captured_total"],
                got["refunded_total"], got["merchant_ref"])
    check(answered == row, "%s: inquiry %r, row %r" % (what, answered, row))
    return got


def test_inquiries_follow_rows():
    """Captures, refunds, voids and challenges read the authorization each time as its
    row is (the simulator keeps copies of recent rows): after every step, and after a
    restart (no copies), the inquiry answers the row and the totals bound what follows."""
    sim = Sim("card").start()
    try:
        c = sim.client()
        holder = luhn_complete("411111111111700")
        a = expect(c.post(AUTH, auth_body(holder, amount=1000, merchant_ref="m-1"), key="f-a"), 200).json["id"]
        inquiry_is_row(sim, c, a, "authorized")
        expect(c.post(AUTH + "/" + a + "/captures", {"amount": 400}, key="f-cap-1"), 200)
        inquiry_is_row(sim, c, a, "captured 400")
        check(expect(c.post(AUTH + "/" + a + "/captures", {"amount": 601}, key="f-cap-2"), 200)
              .json["response_code"] == "61", "the copy's total bounds the next capture")
        expect(c.post(AUTH + "/" + a + "/refunds", {"amount": 150}, key="f-ref-1"), 200)
        got = inquiry_is_row(sim, c, a, "refunded 150")
        check((got["captured_total"], got["refunded_total"]) == (400, 150), "totals: %r" % got)
        check(expect(c.post(AUTH + "/" + a + "/void", {}, key="f-void-a"), 200).json["response_code"] == "57",
              "no void after a capture")
        v = expect(c.post(AUTH, auth_body(holder, amount=300), key="f-v"), 200).json["id"]
        expect(c.post(AUTH + "/" + v + "/void", {}, key="f-void"), 200)
        check(inquiry_is_row(sim, c, v, "voided")["status"] == "voided", "voided")
        check(expect(c.post(AUTH + "/" + v + "/captures", {"amount": 1}, key="f-v-cap"), 200)
              .json["response_code"] == "57", "a voided authorization does not capture")
        ch = expect(c.post(AUTH, auth_body(CARD_3DS, amount=200), key="f-3ds"), 200).json
        inquiry_is_row(sim, c, ch["id"], "challenged")
        check(expect(c.post(AUTH + "/" + ch["id"] + "/captures", {"amount": 1}, key="f-3ds-cap-0"), 200)
              .json["response_code"] == "57", "a challenged authorization does not capture")
        expect(c.post("/v1/challenges/%s/complete" % ch["challenge_id"], {"code": "123456"}, key="f-3ds-done"), 200)
        check(inquiry_is_row(sim, c, ch["id"], "completed")["status"] == "approved", "approved by its challenge")
        check(expect(c.post(AUTH + "/" + ch["id"] + "/captures", {"amount": 200}, key="f-3ds-cap"), 200)
              .json["response_code"] == "00", "captures once approved")
        s = expect(c.post(AUTH, auth_body(holder, amount=250, capture=True), key="f-sale"), 200).json["id"]
        check(inquiry_is_row(sim, c, s, "sale")["captured_total"] == 250, "a sale is captured")
        check(sim.stop() == 0, "clean stop")
        sim.start()
        c = sim.client()
        for auth_id in (a, v, ch["id"], s):
            inquiry_is_row(sim, c, auth_id, "after a restart")
        check(expect(c.post(AUTH + "/" + a + "/captures", {"amount": 601}, key="f-cap-3"), 200)
              .json["response_code"] == "61", "the row's total bounds a capture after a restart")
        expect(c.post(AUTH + "/" + a + "/captures", {"amount": 600}, key="f-cap-4"), 200)
        check(inquiry_is_row(sim, c, a, "captured whole")["captured_total"] == 1000, "captured whole")
    finally:
        sim.close()


def main():
    sim = Sim("card").start()
    try:
        c = sim.client()
        test_every_code(sim, c)
        test_idempotency(sim, c)
        test_same_key_race(sim, c)
        test_3ds(sim, c)
        test_capture_void_refund(sim, c)
        test_bad_requests(sim, c)
        test_holder_rows(sim, c)
    finally:
        sim.close()
    test_auth_and_files(None)
    test_largest_request()
    test_data_file()
    test_inquiries_follow_rows()
    print("ok")


if __name__ == "__main__":
    main()
