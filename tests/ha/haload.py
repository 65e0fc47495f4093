"""tests/ha/haload.py: clients that behave as paycore's documentation asks across
failures: a request whose answer was lost (connection refused or reset, a 5xx while
the server restarts or the database fails over) is sent again with the same id until
a definite answer comes; and the checks run after the faults. Not a test itself."""
import http.client
import os
import random
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "api"))
import pcapi  # noqa: E402
from pcapi import check  # noqa: E402

RETRY_PAUSE_S = 0.1


class Outcome:
    APPLIED = "applied"      # 201 created, or 200 exists (an earlier try was applied)
    REFUSED = "refused"      # a definite 4xx: nothing applied


# A standby binds its port but answers nothing until it takes over: a request there
# waits this long before the client tries the next node (the same id again).
REQUEST_TIMEOUT_S = 5 if not pcapi.SANITIZED else 15


class Client(pcapi.Client):
    """pcapi's client with a shorter timeout (see REQUEST_TIMEOUT_S)."""

    def request(self, *args, **kw):
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT_S)
        return pcapi.Client.request(self, *args, **kw)


class Nodes:
    """The paycore nodes' ports: a client stays on the one that answered last and moves
    to the next after a lost answer."""

    def __init__(self, ports, key):
        self.ports = list(ports)
        self.key = key
        self.at = 0
        self.client = Client(self.ports[0], key)

    def next(self):
        self.client.close()
        self.at = (self.at + 1) % len(self.ports)
        self.client = Client(self.ports[self.at], self.key)

    def request(self, method, path, body=None):
        """The response, or None after a lost answer (the caller tries again)."""
        try:
            r = self.client.request(method, path, body=body)
        except (ConnectionError, OSError, http.client.HTTPException):
            self.next()
            return None
        if r.status >= 500 or r.status in (408, 429):
            self.next()  # restarting, draining, the store failed, or a standby's 503
            return None
        return r

    def close(self):
        self.client.close()


def send_until_definite(nodes, method, path, body, deadline_s, stop=None):
    """(Outcome, response) once a node gives a definite answer; None when 'deadline_s'
    (time.time()) passes or 'stop' is set first."""
    while time.time() < deadline_s and not (stop is not None and stop.is_set()):
        r = nodes.request(method, path, body)
        if r is None:
            time.sleep(RETRY_PAUSE_S)
            continue
        if r.status in (200, 201):
            return Outcome.APPLIED, r
        return Outcome.REFUSED, r
    return None


def get_retrying(nodes, path, deadline_s):
    """A GET answered 200 or 404 (retrying anything else); fails past the deadline."""
    while time.time() < deadline_s:
        r = nodes.request("GET", path)
        if r is not None and r.status in (200, 404):
            return r
        time.sleep(RETRY_PAUSE_S)
    pcapi.fail("GET %s: no answer before the deadline" % path)


class Transfers:
    """Concurrent clients, each sending transfers between 'accounts' with ids of its
    own, each retried until definite. Every attempt is remembered, so that the check
    can tell acknowledged from unknown."""

    def __init__(self, ports, key, accounts, clients=4, amount_max=9, seed=1, prefix="t"):
        self.ports = ports          # the nodes (Nodes: a client moves on after a lost answer)
        self.key = key
        self.accounts = accounts
        self.clients = clients
        self.amount_max = amount_max
        self.random = random.Random(seed)
        self.prefix = prefix
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.sent = {}       # id -> body of every transfer attempted
        self.applied = {}    # id -> body, acknowledged (201 or 200 exists)
        self.refused = {}    # id -> error code
        self.errors = []
        self.threads = []

    def start(self, prefix=None):
        """Starts the clients (again after stop(), with new ids under 'prefix')."""
        if prefix is not None:
            self.prefix = prefix
        self.stop_event.clear()
        self.threads = []
        for n in range(self.clients):
            rng = random.Random(self.random.random())
            t = threading.Thread(target=self.client_loop, args=(n, rng), daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def body(self, tid, rng):
        debit, credit = rng.sample(self.accounts, 2)
        return pcapi.transfer(tid, debit, credit, rng.randint(1, self.amount_max))

    def client_loop(self, n, rng):
        i = 0
        nodes = Nodes(self.ports, self.key)
        try:
            while not self.stop_event.is_set():
                tid = "%s%d-%d" % (self.prefix, n, i)
                i += 1
                body = self.body(tid, rng)
                with self.lock:
                    self.sent[tid] = body
                got = send_until_definite(nodes, "POST", "/v1/transfers", body, time.time() + 600, self.stop_event)
                if got is None:
                    return  # stopped with this one unknown
                outcome, r = got
                with self.lock:
                    if outcome == Outcome.APPLIED:
                        self.check_same(body, r)
                        self.applied[tid] = body
                    else:
                        self.refused[tid] = r.code()
        except Exception as e:  # noqa: BLE001
            with self.lock:
                self.errors.append(repr(e))
        finally:
            nodes.close()

    def check_same(self, body, r):
        j = r.json or {}
        got = j.get("transfer", j)
        for field in ("debit_account_id", "credit_account_id", "amount"):
            if field in got and got[field] != body[field]:
                self.errors.append("%s: answered %s=%r, sent %r" % (body["id"], field, got[field], body[field]))

    def count(self):
        with self.lock:
            return len(self.applied)

    def wait_applied(self, more, timeout_s, what):
        target = self.count() + more
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            check(not self.errors, "client errors: %r" % self.errors[:5])
            if self.count() >= target:
                return
            time.sleep(0.05)
        pcapi.fail("%s: %d acknowledged transfers, wanted %d within %d s" % (what, self.count(), target, timeout_s))

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(pcapi.TIMEOUT_S * 2)
        check(not any(t.is_alive() for t in self.threads), "a client did not stop")
        check(not self.errors, "client errors: %r" % self.errors[:5])


def check_transfers(nodes, load, what, timeout_s=300):
    """Every acknowledged transfer is there with its fields; every refused one is not;
    the unknown ones are there or not. Returns the transfers present (id -> body)."""
    deadline = time.time() + timeout_s
    present = {}
    for tid, body in sorted(load.sent.items()):
        r = get_retrying(nodes, "/v1/transfers/" + tid, deadline)
        if tid in load.applied:
            check(r.status == 200, "%s: acknowledged transfer %s is missing: %r" % (what, tid, r))
        if tid in load.refused:
            check(r.status == 404, "%s: refused transfer %s (%s) is there: %r" % (what, tid, load.refused[tid], r))
        if r.status == 200:
            for field in ("debit_account_id", "credit_account_id", "amount"):
                check(r.json[field] == body[field], "%s: %s has %s=%r, sent %r" % (what, tid, field, r.json[field],
                                                                                  body[field]))
            present[tid] = body
    return present


def expected_balances(initial, present):
    """Posted balances the transfers present imply: account -> [debits, credits]."""
    balances = dict((a, list(v)) for a, v in initial.items())
    for body in present.values():
        balances[body["debit_account_id"]][0] += body["amount"]
        balances[body["credit_account_id"]][1] += body["amount"]
    return balances


def check_balances(nodes, want, what, timeout_s=120):
    """Each account's posted balances equal what the transfers present imply (a
    transfer applied twice, or half, shows here); debits == credits per currency."""
    deadline = time.time() + timeout_s
    for account_id, (debits, credits) in sorted(want.items()):
        r = get_retrying(nodes, "/v1/accounts/" + account_id, deadline)
        check(r.status == 200, "%s: account %s: %r" % (what, account_id, r))
        got = (r.json["debits_posted"], r.json["credits_posted"])
        check(got == (debits, credits), "%s: %s posted (debits, credits) %r, the transfers present imply %r" % (
            what, account_id, got, (debits, credits)))
    client = pcapi.Client(nodes.ports[nodes.at], nodes.key)
    pcapi.check_conserved(client, what)
    client.close()
