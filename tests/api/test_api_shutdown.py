"""Goal: a clean stop (SIGTERM) while clients scrape /metrics on keep-alive connections
and post transfers never touches freed memory, never reports a counter that went
back, answers every queued transfer, and ends the keep-alive connections.
Method: several cycles of: start, then client threads that each hold one keep-alive
connection and scrape /metrics in a loop (plus threads posting transfers), SIGTERM
once every scraper has been answered a few times; every scrape answered 200 must show
paycore_transfers_committed_total at least as large as before SIGTERM, the server
must exit 0 with no sanitizer report, and after the last cycle every acknowledged
transfer is in the database and the books balance. Under make test-sanitize the
server runs under ASan (a read of the freed writer aborts it)."""
import http.client
import re
import signal
import threading
import time

from pcapi import SANITIZED, TIMEOUT_S, Server, account, check, check_conserved, expect, transfer

CYCLES = 4
SCRAPERS = 6
POSTERS = 2
COMMITTED = re.compile(r"^paycore_transfers_committed_total (\d+)$", re.M)


class Scraper(threading.Thread):
    """Scrapes /metrics on one keep-alive connection until the server closes it."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.answers = 0
        self.committed = []   # paycore_transfers_committed_total of each 200 reply
        self.errors = []
        self.stop = False

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT_S)
        while not self.stop:
            try:
                conn.request("GET", "/metrics")
                resp = conn.getresponse()
                body = resp.read().decode()
            except (OSError, http.client.HTTPException):
                return  # the server closed the connection (or stopped listening)
            if resp.status != 200:
                self.errors.append("%d %s" % (resp.status, body[:200]))
                continue
            m = COMMITTED.search(body)
            if m is None:
                self.errors.append("no paycore_transfers_committed_total in a 200 scrape")
                continue
            self.committed.append(int(m.group(1)))
            self.answers += 1
            if resp.getheader("Connection", "").lower() == "close":
                return


class Poster(threading.Thread):
    """Posts transfers a -> b on one connection until refused or closed."""

    def __init__(self, server, name):
        super().__init__(daemon=True)
        self.client = server.client()
        self.name = name
        self.acked = []
        self.stop = False

    def run(self):
        n = 0
        while not self.stop:
            n += 1
            tid = "%s-%d" % (self.name, n)
            try:
                r = self.client.post("/v1/transfers", transfer(tid, "a", "b", 1))
            except (OSError, http.client.HTTPException):
                return
            if r.status == 201:
                self.acked.append(tid)
            elif r.status == 503:
                return  # shutting_down: the server refuses new commands while it drains
            else:
                raise AssertionError("unexpected reply %r" % r)


def wait_for(condition, what):
    deadline = time.time() + TIMEOUT_S * 3
    while not condition():
        check(time.time() < deadline, "timed out waiting for " + what)
        time.sleep(0.01)


def committed_now(server):
    text = expect(server.client(key="").get("/metrics"), 200, what="metrics").raw
    return int(COMMITTED.search(text).group(1))


def one_cycle(server, cycle, acked):
    server.start()
    scrapers = [Scraper(server.port) for _ in range(SCRAPERS)]
    posters = [Poster(server, "c%d-p%d" % (cycle, i)) for i in range(POSTERS)]
    for t in scrapers + posters:
        t.start()
    wait_for(lambda: all(s.answers >= 5 for s in scrapers), "every scraper answered")
    wait_for(lambda: all(len(p.acked) >= 3 for p in posters), "every poster acknowledged")
    floor = committed_now(server)
    check(floor > 0, "transfers were committed before SIGTERM")
    code = server.stop(signal.SIGTERM)
    for t in scrapers + posters:
        t.stop = True
        t.join(timeout=TIMEOUT_S)
        check(not t.is_alive(), "a client thread hung after the server stopped")
    log = server.log()
    check(code == 0, "cycle %d: exit %d after SIGTERM; log:\n%s" % (cycle, code, log[-4000:]))
    for s in scrapers:
        check(not s.errors, "cycle %d: scrape errors %r" % (cycle, s.errors[:3]))
        fell = [v for i, v in enumerate(s.committed) if i > 0 and v < s.committed[i - 1]]
        check(not fell, "cycle %d: paycore_transfers_committed_total went back during the stop "
                        "(%d before SIGTERM; last scrapes %r)" % (cycle, floor, s.committed[-8:]))
    for p in posters:
        acked += p.acked


def main():
    server = Server()
    acked = []
    try:
        server.start()
        expect(server.client().post("/v1/accounts", {"accounts": [account("a"), account("b")]}), 200,
               what="accounts")
        check(server.stop() == 0, "first stop")
        for cycle in range(CYCLES):
            one_cycle(server, cycle, acked)
        server.start()
        c = server.client()
        missing = [t for t in acked if c.get("/v1/transfers/" + t).status != 200]
        check(not missing, "acknowledged transfers missing after the stops: %r" % missing[:5])
        b = expect(c.get("/v1/accounts/b"), 200, what="b").json
        check(b["credits_posted"] == len(acked),
              "b credited %d, acknowledged %d" % (b["credits_posted"], len(acked)))
        check_conserved(c, "after the stops")
        check(server.stop() == 0, "last stop")
    finally:
        server.close()
    print("api shutdown: %d cycles, %d transfers acknowledged, ok%s"
          % (CYCLES, len(acked), " (sanitized)" if SANITIZED else ""))


if __name__ == "__main__":
    main()
