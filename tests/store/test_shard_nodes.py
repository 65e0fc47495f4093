"""Goal: several paycore nodes serve one set of shards: exactly one node writes the
set at a time (it holds every shard's writer's lock and advertises its address in each
shard's writers table), any node accepts API requests and forwards them to that writer
(the same API key and Idempotency-Key), a standby takes over when the writer is
SIGKILLed and forwarding follows, no acknowledged transfer is lost and no two nodes
write at once; a node with no writer to forward to answers 503 shard_writer_unavailable;
bad --advertise values and misplaced flags are refused with one line.
Method: two throwaway clusters as the shards (shardset.py), node A `serve --shards`,
nodes B and C `serve --shards --standby` on their own loopback ports and node files
(the signing keys copied, as an operator would); requests through every node checked
against a model of the balances; a standby's connection to the writer kept open and
reused (its sockets in /proc); account and transfer reads, and an account's lists
(its transfers, its balance history: pages, order, time ranges, cursors, and the
refusals of bad queries, which stay the writer's), answered by the standbys from the
databases the same as by the writer, also while the writer is stopped (old code
forwarded the lists: they hung with the writer); a load through every node while A is SIGKILLed, with
clients retrying each transfer with its own id until it is acknowledged; a watcher
polls every node's /healthz and each shard's writers row and lock meanwhile; then
every acknowledged transfer is read back through each node, the model and debits ==
credits hold, and after clean stops each shard's books balance and nothing is
prepared."""
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import pgcluster  # noqa: E402
import shardset  # noqa: E402
from shardset import pcapi  # noqa: E402
from pcapi import BIN, TIMEOUT_S, account, check, expect, fail, free_port, transfer  # noqa: E402
from test_pg_store import Model  # noqa: E402

LOCK_KEY1 = 0x50594352


def page_of(resp):
    """A 200's body without its list cursor (each first page's names its own time)."""
    if resp.status != 200:
        return None
    body = dict(resp.json)
    check(("next_cursor" in body) == bool(body.get("has_more")), "next_cursor with has_more only: %r" % body)
    body.pop("next_cursor", None)
    return body


class Node:
    """One `paycore serve --shards` process on a port of its own, with its own node
    files (the set's signing keys copied from the first node's)."""

    def __init__(self, s, name):
        self.s = s
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="paycore-node-%s-" % name)
        self.db = os.path.join(self.dir, "node.db")
        self.proc = None
        self.port = None
        self.log_path = None
        self.starts = 0

    def address(self):
        return "http://127.0.0.1:%d" % self.port

    def copy_keys(self, source_db):
        # the signing keys (.key, .key.shard<i>), the card vault's key (.vault-key) and the
        # webhook secrets' key (.webhook-key): a node taking the set over needs them all
        for path in glob.glob(source_db + ".*key*"):
            shutil.copy(path, self.db + path[len(source_db):])
            os.chmod(self.db + path[len(source_db):], 0o600)

    def start(self, standby, wait_for="listening", extra=()):
        self.starts += 1
        for attempt in range(5):
            self.port = free_port()
            self.log_path = os.path.join(self.dir, "serve-%d-%d.log" % (self.starts, attempt))
            args = [BIN, "serve", "--db", self.db, "--listen", "127.0.0.1:%d" % self.port, "--no-events",
                    "--shards", self.s.shards_arg()] + (["--standby"] if standby else []) + list(extra)
            with open(self.log_path, "w") as log:
                self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log)
            if self.wait_log(wait_for, allow_exit=True):
                return self
            if "Address already in use" not in self.log() and "address_in_use" not in self.log():
                fail("node %s did not start: %s" % (self.name, self.log()[-4000:]))
        fail("node %s: no free port" % self.name)

    def wait_log(self, text, allow_exit=False, timeout_s=None):
        deadline = time.time() + (timeout_s or TIMEOUT_S * 3)
        while time.time() < deadline:
            if text in self.log():
                return True
            if self.proc.poll() is not None:
                if allow_exit:
                    return False
                fail("node %s exited (%d): %s" % (self.name, self.proc.returncode, self.log()[-4000:]))
            time.sleep(0.05)
        fail("node %s: no %r in its log: %s" % (self.name, text, self.log()[-4000:]))

    def log(self):
        return open(self.log_path).read() if self.log_path else ""

    def client(self):
        return pcapi.Client(self.port, self.s.admin_key)

    def healthz(self):
        try:
            r = pcapi.Client(self.port, None).get("/healthz")
            return r.json if r.status == 200 else None
        except (OSError, ValueError):
            return None

    def stop(self, sig=signal.SIGTERM):
        if self.proc is None:
            return 0
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=TIMEOUT_S * 3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            fail("node %s did not stop on signal %d" % (self.name, sig))
        self.proc = None
        for marker in pcapi.SANITIZER_MARKERS:
            check(marker not in self.log(), "node %s: sanitizer report:\n%s" % (self.name, self.log()[-6000:]))
        return code

    def close(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def writers_rows(s):
    """Each shard's writers row: (address, epoch, live)."""
    rows = []
    for i in range(len(s.clusters)):
        row = s.sql(i, "SELECT w.address, w.epoch, EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory'"
                       " AND l.granted AND l.classid = %d AND l.objid = 0 AND l.pid = w.backend_pid AND l.database ="
                       " (SELECT oid FROM pg_database WHERE datname = current_database())) FROM writers w"
                       " WHERE shard_index = %d" % (LOCK_KEY1, i))
        address, epoch, live = row.split("|") if row else ("", "0", "f")
        rows.append((address, int(epoch), live == "t"))
    return rows


def refused(args, want_text, what):
    out = subprocess.run([BIN] + args, capture_output=True, text=True, timeout=TIMEOUT_S * 3)
    check(out.returncode != 0, "%s: must be refused at start, got exit 0" % what)
    lines = [line for line in out.stderr.splitlines() if want_text in line]
    check(len(lines) >= 1, "%s: no line saying %r in:\n%s" % (what, want_text, out.stderr))
    for marker in pcapi.SANITIZER_MARKERS:
        check(marker not in out.stderr, "%s: sanitizer report:\n%s" % (what, out.stderr))


def bad_input(s, node_db):
    serve = ["serve", "--db", node_db, "--no-events"]
    refused(serve + ["--listen", "127.0.0.1:0", "--shards", s.shards_arg(), "--advertise", "not a url"],
            "bad --advertise: 'not a url' is not a URL with a host and a port", "--advertise that does not parse")
    refused(serve + ["--listen", "127.0.0.1:0", "--shards", s.shards_arg(), "--advertise", "ftp://127.0.0.1:80"],
            "bad --advertise: 'ftp://127.0.0.1:80': want http://HOST:PORT", "--advertise of another scheme")
    refused(serve + ["--listen", "127.0.0.1:0", "--shards", s.shards_arg(), "--advertise",
                     "http://127.0.0.1:8080/v1"], "no path or query", "--advertise with a path")
    refused(serve + ["--listen", "127.0.0.1:0", "--shards", s.shards_arg(), "--advertise", "http://0.0.0.0:8080"],
            "not an address other nodes can reach", "--advertise 0.0.0.0")
    refused(serve + ["--listen", "127.0.0.1:0", "--advertise", "http://127.0.0.1:8080"],
            "--advertise is for the nodes of a set of shards (--shards)", "--advertise without --shards")
    refused(serve + ["--listen", "0.0.0.0:0", "--shards", s.shards_arg()],
            "cannot advertise this node to the set", "--listen 0.0.0.0 without --advertise")
    refused(serve + ["--listen", "127.0.0.1:0", "--standby"], "--standby needs --store URL or --shards",
            "--standby with a SQLite file")


def hold_lock(s):
    """Another session holds shard 0's writer's lock (and advertises nothing): psql."""
    cluster = s.clusters[0]
    argv = [os.path.join(pgcluster.PG_BIN, "psql"), "-h", cluster.dir, "-U", pgcluster.USER, "-d", s.names[0],
            "-qAt", "-c", "SELECT pg_advisory_lock(%d, 0)" % LOCK_KEY1, "-c", "SELECT pg_sleep(3600)"]
    if cluster.as_postgres:
        argv = ["runuser", "-u", "postgres", "--"] + argv
    holder = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + TIMEOUT_S * 3
    while s.sql(0, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = %d"
                   % LOCK_KEY1) != "1":
        check(time.time() < deadline and holder.poll() is None, "psql did not take the lock")
        time.sleep(0.05)
    return holder


def no_writer_yet(s, a):
    """A standby while the set has no writer (the lock held by a session that advertises
    nothing): requests get 503 shard_writer_unavailable with Retry-After and nothing is
    written; once the lock is free the standby takes the set."""
    holder = hold_lock(s)
    a.start(standby=True, wait_for="forwarding to the set's writer")
    c = a.client()
    r = expect(c.post("/v1/accounts", account("early")), 503, "shard_writer_unavailable",
               what="a request to a standby while no node writes the set")
    check(r.headers.get("retry-after") == "1", "503 says when to retry: %r" % r.headers)
    check("no node has written the set" in r.json["error"]["message"], "the message says why: %r" % r.json)
    health = a.healthz()
    check(health is not None and health["role"] == "standby" and health["writer"] is None,
          "a standby with no writer says so on /healthz: %r" % health)
    check(s.sql(0, "SELECT count(*) FROM accounts WHERE id = 'early'") == "0", "nothing was written")
    c.close()
    s.sql(0, "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted AND"
             " classid = %d" % LOCK_KEY1)  # the holder's session ends: its lock with it
    holder.wait(TIMEOUT_S)
    a.wait_log('"msg":"listening"')
    health = a.healthz()
    check(health["role"] == "writer" and health["writer"] == a.address(), "A took the set: %r" % health)


def through_every_node(s, a, b, c, model):
    """Accounts, local and cross-shard transfers, reads, idempotent replays: through
    the writer and through each forwarding node alike."""
    clients = {"A": a.client(), "B": b.client(), "C": c.client()}
    by_shard = {}
    for n in range(12):
        node = "ABC"[n % 3]
        account_id = "n-%d" % n
        expect(clients[node].post("/v1/accounts", account(account_id)), 201, what="create %s via %s"
               % (account_id, node))
        model.add_account(account_id)
        by_shard.setdefault(s.shard_of(account_id), []).append(account_id)
    expect(clients["B"].post("/v1/accounts", account("bank")), 201, what="create bank via B")
    model.add_account("bank")
    check(len(by_shard) == 2 and all(len(v) >= 2 for v in by_shard.values()), "placement: %r" % by_shard)
    x0, x1 = by_shard[0][:2]
    y0 = by_shard[1][0]
    for who in sorted(sum(by_shard.values(), [])):
        expect(clients["C"].post("/v1/transfers", transfer("fund-" + who, "bank", who, 1000)), 201,
               what="fund " + who + " via C")
        model.post("bank", who, 1000)
    expect(clients["B"].post("/v1/transfers", transfer("local-b", x0, x1, 10)), 201, what="local via B")
    model.post(x0, x1, 10)
    r = expect(clients["C"].post("/v1/transfers", transfer("cross-c", x0, y0, 25)), 201, what="cross via C")
    model.post(x0, y0, 25)
    check(sorted(s.legs("cross-c")) == [0, 1], "a cross transfer via a forwarding node has both legs")
    got = expect(clients["B"].get("/v1/transfers/cross-c"), 200, what="read cross-c via B").json
    check(got["amount"] == 25 and got["timestamp"] == r.json["timestamp"], "read back via B: %r" % got)
    headers = {"Idempotency-Key": "nodes-idem-1"}
    first = expect(clients["B"].post("/v1/transfers", transfer("idem-n", y0, x1, 7), headers=headers), 201,
                   what="idempotent via B")
    model.post(y0, x1, 7)
    again = expect(clients["C"].post("/v1/transfers", transfer("idem-n", y0, x1, 7), headers=headers), 201,
                   what="its replay via C")
    check(again.json == first.json and again.headers.get("idempotent-replayed") == "true",
          "the replay through another node answers the stored reply: %r" % again.headers)
    expect(clients["A"].post("/v1/transfers", transfer("idem-n2", y0, x1, 8), headers=headers), 409,
           "idempotency_key_reused", what="the key with another body via A")
    expect(clients["B"].post("/v1/transfers", transfer("nobody", x0, "nobody-" + y0, 5)), 422,
           "account_not_found", what="a refusal relayed as the writer gave it")
    expect(pcapi.Client(b.port, "pk_nobody").get("/v1/accounts"), 401, what="a bad API key: the writer refuses")
    key = expect(clients["A"].post("/v1/api-keys", {"scope": "admin", "name": "made-on-a"}), 201,
                 what="a key made on the writer").json["key"]
    expect(pcapi.Client(c.port, key).get("/v1/accounts/" + x0), 200, what="that key through C at once")
    for path in ("/v1/accounts/no%20such", "/v1/accounts?limit=2&starting_after=n-1", "/v1/nowhere"):
        direct, forwarded = clients["A"].get(path), clients["B"].get(path)
        check((direct.status, direct.code(), page_of(direct)) == (forwarded.status, forwarded.code(), page_of(forwarded)),
              "%s: the same answer through B as from A: %r vs %r" % (path, direct, forwarded))
    r = clients["B"].post("/v1/accounts", account("loop"), headers={"Paycore-Forwarded": "http://elsewhere"})
    expect(r, 503, "shard_writer_unavailable", what="a request forwarded once is not forwarded again")
    instance = s.sql(0, "SELECT value FROM paycore_meta WHERE key = 'instance_id'")
    epoch = writers_rows(s)[0][1]
    for fence in ("%s/%d" % (instance, epoch + 1), "someotherset/%d" % epoch, ""):
        r = clients["A"].post("/v1/accounts", account("fenced"), headers={"Paycore-Writer": fence})
        expect(r, 503, "shard_writer_unavailable", what="the writer refuses a request fenced for %r" % fence)
    check(all(s.sql(i, "SELECT count(*) FROM accounts WHERE id = 'fenced'") == "0" for i in range(2)),
          "a fenced-off request wrote nothing")
    expect(clients["A"].post("/v1/accounts", account("fenced"), headers={"Paycore-Writer": "%s/%d" % (instance, epoch)}),
           201, what="the writer runs a request fenced with its own fence")
    model.add_account("fenced")
    for name, client in clients.items():
        model.check(client, "through node " + name)
        client.close()
    return by_shard


def connections_to(node, port):
    """The local ports of node's established TCP connections to 127.0.0.1:port
    (its sockets in /proc/<pid>/fd matched against /proc/net/tcp)."""
    inodes = set()
    fd_dir = "/proc/%d/fd" % node.proc.pid
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = []
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if inode in inodes and state == "01" and remote == "0100007F:%04X" % port:
                ports.append(int(local.split(":")[1], 16))
    return sorted(ports)


def kept_open(s, a, b, model):
    """A standby keeps its connection to the writer open between forwarded requests and
    reuses it: the same one connection after every request, none opened per request."""
    client = b.client()
    seen = set()
    for n in range(12):
        if n % 2:
            expect(client.post("/v1/accounts", account("kept-%d" % n)), 201, what="create kept-%d via B" % n)
            model.add_account("kept-%d" % n)
        else:
            expect(client.get("/v1/api-keys?limit=3"), 200, what="a forwarded list via B")
        ports = connections_to(b, a.port)
        check(len(ports) >= 1, "after request %d B holds a connection to the writer open: %r" % (n, ports))
        seen.update(ports)
    client.close()
    check(len(seen) == 1, "B reused one connection for 12 requests in turn, not one each: ports %r" % sorted(seen))


def same_reads(nodes, ids, key, what, kind="accounts"):
    """GET /v1/<kind>/<id> answers the same (status, code, body) through every node."""
    clients = [pcapi.Client(n.port, key) for n in nodes]
    for account_id in ids:
        answers = []
        for node, client in zip(nodes, clients):
            r = client.get("/v1/%s/%s" % (kind, account_id))
            answers.append((r.status, r.code() if r.status != 200 else None, r.json if r.status == 200 else None))
        check(all(answer == answers[0] for answer in answers), "%s: %s reads the same through %s: %r"
              % (what, account_id, [n.name for n in nodes], answers))
    for client in clients:
        client.close()


def same_paths(nodes, paths, key, what):
    """Each GET path answers the same (status, code, body) through every node; the
    answers of the first node."""
    clients = [pcapi.Client(n.port, key) for n in nodes]
    first = {}
    for path in paths:
        answers = []
        for client in clients:
            r = client.get(path)
            answers.append((r.status, r.code() if r.status != 200 else None, r.json if r.status == 200 else None))
        check(all(answer == answers[0] for answer in answers), "%s: %s reads the same through %s: %r"
              % (what, path, [n.name for n in nodes], answers))
        first[path] = answers[0]
    for client in clients:
        client.close()
    return first


LIST_QUERIES = ["", "?limit=2", "?limit=3&order=desc", "?starting_after=sb-t3&limit=4",
                "?starting_after=sb-t9&order=desc&limit=3", "?from=0&to=9223372036854775807&limit=100",
                "?limit=0", "?limit=x", "?order=up", "?starting_after=no-such-transfer", "?bogus=1"]


def list_paths(ids):
    return ["/v1/accounts/%s/%s%s" % (i, kind, q) for i in ids for kind in ("transfers", "balances")
            for q in LIST_QUERIES] + ["/v1/accounts/no-such-account/transfers", "/v1/accounts/no-such/balances"]


def standby_lists(s, a, b, c, model):
    """The lists of one account (its transfers, its balance history) answer the same
    through the standbys as through the writer, every page and refusal; a standby
    answers a valid one itself (fwd- request id) and forwards a refusal (the writer's
    own code)."""
    ids = sorted(model.posted)
    answers = same_paths([a, b, c], list_paths(ids), s.admin_key, "admin key, lists")
    for path in ("/v1/accounts/%s/transfers?limit=3" % ids[0], "/v1/accounts/%s/balances" % ids[1]):
        r = expect(pcapi.Client(b.port, s.admin_key).get(path), 200, what=path + " via B")
        check(r.headers.get("x-request-id", "").startswith("fwd-"), "B answered %s itself: %r" % (path, r.headers))
    r = pcapi.Client(b.port, s.admin_key).get("/v1/accounts/%s/transfers?limit=0" % ids[0])
    check(r.status == 400 and not r.headers.get("x-request-id", "").startswith("fwd-"),
          "a bad list query is the writer's refusal: %r %r" % (r.status, r.headers))
    return answers


def pages(start, rest, limit, between=None):
    """Every page of one listing: its first page through client 'start', each later one
    through the next of 'rest' in turn (its next_cursor passed on); between() runs
    after the first page."""
    r = expect(start.get("/v1/accounts?limit=%d" % limit), 200, what="a first page").json
    out, turn = list(r["data"]), 0
    if between is not None:
        between()
    while r["has_more"]:
        client = rest[turn % len(rest)]
        turn += 1
        r = expect(client.get("/v1/accounts?limit=%d&cursor=%s" % (limit, r["next_cursor"])), 200,
                   what="a later page").json
        out += r["data"]
    return out


def standby_account_lists(s, a, b, c, model, by_shard):
    """GET /v1/accounts through a standby: answered by the standby itself (fwd-), the
    same page as the writer's; a listing begun on one node continues on the others,
    every page as of the first wherever it is read (a transfer across shards between
    its pages is not on them); an altered cursor is the writer's refusal."""
    clients = {n.name: pcapi.Client(n.port, s.admin_key) for n in (a, b, c)}
    whole = expect(clients["A"].get("/v1/accounts?limit=100"), 200, what="every account via A").json
    check(not whole["has_more"], "one page of every account")
    r = expect(clients["B"].get("/v1/accounts?limit=100"), 200, what="every account via B")
    check(r.headers.get("x-request-id", "").startswith("fwd-") and r.json == whole,
          "B answers the list itself, as A: %r %r" % (r.headers, r.json))
    x0, y0 = by_shard[0][0], by_shard[1][0]

    def between():
        expect(clients["A"].post("/v1/transfers", transfer("sl-x", y0, x0, 9)), 201, what="across, between pages")
        model.post(y0, x0, 9)
    for n, (start, rest) in enumerate((("A", ("B", "C")), ("B", ("A", "C")), ("C", ("C",)))):
        before = expect(clients["A"].get("/v1/accounts?limit=100"), 200, what="every account via A").json["data"]
        listed = pages(clients[start], [clients[x] for x in rest], 2, between if n == 0 else None)
        check(listed == before, "a listing begun on %s and continued on %s reads as of its first page: %r"
              % (start, rest, [(x, y) for x, y in zip(listed, before) if x != y]))
    first = expect(clients["B"].get("/v1/accounts?limit=2"), 200, what="a first page via B").json
    bad = first["next_cursor"][:-2] + ("AA" if first["next_cursor"][-2:] != "AA" else "BA")
    r = clients["C"].get("/v1/accounts?limit=2&cursor=" + bad)
    check(r.status == 400 and r.code() == "list_cursor_invalid" and
          not r.headers.get("x-request-id", "").startswith("fwd-"),
          "an altered cursor through a standby: the writer's refusal: %r %r" % (r, r.headers))
    for client in clients.values():
        client.close()


def standby_reads(s, a, b, c, model, by_shard):
    """Standbys answer account and transfer reads from the shards' databases
    themselves: the same answers as the writer's (balances with posted and voided
    holds, local and across shards, past a balance snapshot; transfers local and
    across shards, pending, posted, voided; a merchant key's own account, another's
    refused; a revoked key refused),
    and they go on answering while the writer is stopped (SIGSTOP)."""
    x0, x1 = by_shard[0][:2]
    y0 = by_shard[1][0]
    client = a.client()
    for tid, debit, credit, amount in (("sb-h1", x0, x1, 70), ("sb-h2", y0, x0, 40), ("sb-h3", x1, y0, 25)):
        expect(client.post("/v1/transfers", transfer(tid, debit, credit, amount, flags=["pending"], timeout_s=3600)),
               201, what="hold " + tid)
        model.hold(tid, debit, credit, amount)
    expect(client.post("/v1/transfers", {"id": "sb-p1", "pending_id": "sb-h1", "amount": 50,
                                         "flags": ["post_pending"]}), 201, what="post sb-h1 in part")
    model.release("sb-h1", 50)
    expect(client.post("/v1/transfers", {"id": "sb-v2", "pending_id": "sb-h2", "flags": ["void_pending"]}), 201,
           what="void sb-h2 (across shards)")
    model.release("sb-h2", 0)
    same_reads([a, b, c], sorted(model.posted), s.admin_key, "admin key")
    # past a balance snapshot (every 64 batches): the rows then hold part of the history
    as_of = [s.sql(i, "SELECT value FROM paycore_meta WHERE key = 'accounts_as_of_seq'") for i in range(2)]
    for n in range(70):
        debit, credit = ((x0, x1), (x1, y0), (y0, x0))[n % 3]
        expect(client.post("/v1/transfers", transfer("sb-t%d" % n, debit, credit, 1 + n)), 201, what="sb-t%d" % n)
        model.post(debit, credit, 1 + n)
    moved = [s.sql(i, "SELECT value FROM paycore_meta WHERE key = 'accounts_as_of_seq'") for i in range(2)]
    check(moved[0] != as_of[0], "shard 0 wrote a balance snapshot meanwhile: %r then %r" % (as_of, moved))
    same_reads([a, b, c], sorted(model.posted), s.admin_key, "admin key, past a snapshot")
    y1 = by_shard[1][1]
    expect(client.post("/v1/transfers", transfer("sb-l1", y0, y1, 4)), 201, what="a local transfer on shard 1")
    model.post(y0, y1, 4)
    transfer_ids = ["local-b", "cross-c", "idem-n", "sb-h1", "sb-h2", "sb-h3", "sb-p1", "sb-v2", "sb-t0", "sb-t1",
                    "sb-l1", "no-such-transfer"]
    same_reads([a, b, c], transfer_ids, s.admin_key, "admin key", kind="transfers")
    for tid in ("local-b", "sb-l1", "sb-t1"):  # shard 0's with the key, shard 1's read at once, across
        r = expect(pcapi.Client(b.port, s.admin_key).get("/v1/transfers/" + tid), 200, what=tid + " via B")
        check(r.headers.get("x-request-id", "").startswith("fwd-"), "B answered %s itself: %r" % (tid, r.headers))
    standby_account_lists(s, a, b, c, model, by_shard)
    lists = standby_lists(s, a, b, c, model)
    r = expect(pcapi.Client(b.port, s.admin_key).get("/v1/transfers/sb-h3"), 200, what="sb-h3 via B")
    check(r.headers.get("x-request-id", "").startswith("fwd-") and r.json["debit_account_id"] == x1 and
          r.json["credit_account_id"] == y0, "B answered a cross-shard hold itself, its legs merged: %r %r"
          % (r.headers, r.json))
    merchant = expect(client.post("/v1/api-keys", {"scope": "merchant", "name": "sb-m"}), 201,
                      what="a merchant key").json
    expect(pcapi.Client(b.port, merchant["key"]).post("/v1/accounts", account("sb-m")), 201,
           what="the merchant's account via B")
    model.add_account("sb-m")
    same_reads([a, b, c], ["sb-m", x0, y0], merchant["key"], "merchant key")
    same_reads([a, b, c], ["cross-c", "sb-h3"], merchant["key"], "merchant key", kind="transfers")
    same_paths([a, b, c], ["/v1/accounts?limit=100", "/v1/accounts/sb-m/transfers", "/v1/accounts/sb-m/balances?limit=2",
                           "/v1/accounts/sb-m/transfers?starting_after=sb-t1", "/v1/accounts/%s/transfers" % x0,
                           "/v1/accounts/%s/balances" % y0], merchant["key"], "merchant key, lists")
    r = expect(pcapi.Client(c.port, merchant["key"]).get("/v1/accounts/sb-m"), 200, what="its own account via C")
    check(r.headers.get("x-request-id", "").startswith("fwd-"), "C answered it itself: %r" % r.headers)
    expect(pcapi.Client(c.port, merchant["key"]).get("/v1/accounts/" + x0), 404, "not_found",
           what="another's account via C")
    expect(client.delete("/v1/api-keys/" + merchant["id"]), 200, what="revoke the merchant key on A")
    expect(pcapi.Client(c.port, merchant["key"]).get("/v1/accounts/sb-m"), 401, what="the revoked key via C at once")
    client.close()
    a.proc.send_signal(signal.SIGSTOP)
    try:
        for node in (b, c):
            reader = node.client()
            for account_id in sorted(model.posted):
                got = expect(reader.get("/v1/accounts/" + account_id), 200, what="%s via %s while the writer is"
                             " stopped" % (account_id, node.name)).json
                got = (got["debits_posted"], got["credits_posted"], got["debits_pending"], got["credits_pending"])
                want = tuple(model.posted[account_id] + model.pending[account_id])
                check(got == want, "%s via %s while the writer is stopped: %r, the model says %r"
                      % (account_id, node.name, got, want))
            every = expect(reader.get("/v1/accounts?limit=100"), 200, what="every account via %s while the writer"
                           " is stopped" % node.name).json["data"]
            got = {x["id"]: (x["debits_posted"], x["credits_posted"], x["debits_pending"], x["credits_pending"])
                   for x in every if not x["id"].startswith("pc.clearing.")}
            want = {i: tuple(model.posted[i] + model.pending[i]) for i in model.posted}
            check(got == want, "every account via %s while the writer is stopped: %r, the model says %r"
                  % (node.name, got, want))
            for tid in ("cross-c", "sb-h1", "sb-h3"):
                expect(reader.get("/v1/transfers/" + tid), 200, what="%s via %s while the writer is stopped"
                       % (tid, node.name))
            for path, (status, _, body) in lists.items():
                if status == 200:
                    got = expect(reader.get(path), 200, what="%s via %s while the writer is stopped"
                                 % (path, node.name)).json
                    check(got == body, "%s via %s while the writer is stopped: %r, the writer said %r"
                          % (path, node.name, got, body))
            reader.close()
    finally:
        a.proc.send_signal(signal.SIGCONT)


class Watcher(threading.Thread):
    """Polls every node's /healthz: never two nodes saying they write the set; records
    when a node other than the first one first says so."""

    def __init__(self, nodes, first):
        super().__init__(daemon=True)
        self.nodes = nodes
        self.first = first
        self.stop_flag = threading.Event()
        self.both = []
        self.took_over_at = None
        self.polls = 0

    def run(self):
        while not self.stop_flag.is_set():
            writers = [n.name for n in self.nodes if n.proc is not None and (n.healthz() or {}).get("role") == "writer"]
            self.polls += 1
            if len(writers) > 1:
                self.both.append(writers)
            if self.took_over_at is None and any(w != self.first for w in writers):
                self.took_over_at = time.time()
            time.sleep(0.05)


def load_worker(index, nodes, ids, acked, lock, stop, errors):
    """Transfers through the nodes in turn; each retried with its own id (through the
    next node) until acknowledged (201 created, or 200: it exists from an earlier try
    whose answer was lost)."""
    clients = [n.client() for n in nodes]
    n = 0
    while not stop.is_set():
        tid = "load-%d-%d" % (index, n)
        debit, credit = ids[(index + n) % len(ids)], ids[(index + n + 1 + index) % len(ids)]
        if debit == credit:
            credit = ids[(ids.index(credit) + 1) % len(ids)]
        body = transfer(tid, debit, credit, 1)
        deadline = time.time() + TIMEOUT_S * 6
        tries = 0
        while time.time() < deadline:
            client = clients[(n + tries) % len(clients)]
            tries += 1
            try:
                r = client.post("/v1/transfers", body)
            except (OSError, ValueError):
                client.close()
                time.sleep(0.05)
                continue
            if r.status in (200, 201):
                with lock:
                    acked[tid] = (debit, credit)
                break
            if r.status != 503:
                with lock:
                    errors.append("%s: %r" % (tid, r))
                break
            time.sleep(0.05)
        else:
            with lock:
                errors.append("%s: never acknowledged" % tid)
        n += 1
    for client in clients:
        client.close()


def failover(s, a, b, c, model, by_shard):
    ids = sorted(sum(by_shard.values(), []))
    for who in ids:
        expect(a.client().post("/v1/transfers", transfer("lfund-" + who, "bank", who, 100000)), 201,
               what="fund for the load")
        model.post("bank", who, 100000)
    watcher = Watcher([a, b, c], "A")
    watcher.start()
    acked, lock, stop, errors = {}, threading.Lock(), threading.Event(), []
    workers = [threading.Thread(target=load_worker, args=(i, [a, b, c], ids, acked, lock, stop, errors), daemon=True)
               for i in range(4)]  # daemons: a failed check ends the test instead of waiting for them
    for w in workers:
        w.start()
    deadline = time.time() + TIMEOUT_S * 3
    while len(acked) < 40 and time.time() < deadline:
        time.sleep(0.05)
    check(len(acked) >= 40, "the load runs through every node before the kill: %d" % len(acked))
    before = writers_rows(s)
    check(all(r[0] == a.address() and r[2] for r in before), "every shard's row names A, live: %r" % before)
    killed_at = time.time()
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait()
    a.proc = None
    acked_at_kill = len(acked)
    while watcher.took_over_at is None and time.time() < deadline + TIMEOUT_S * 3:
        time.sleep(0.05)
    check(watcher.took_over_at is not None, "a standby took over: B %s / C %s" % (b.log()[-2000:], c.log()[-2000:]))
    took_over_s = watcher.took_over_at - killed_at
    while len(acked) < acked_at_kill + 40 and time.time() < deadline + TIMEOUT_S * 6:
        time.sleep(0.05)
    stop.set()
    for w in workers:
        w.join(TIMEOUT_S * 6)
    watcher.stop_flag.set()
    watcher.join()
    check(not errors, "every transfer acknowledged or refused as it should be: %r" % errors[:5])
    check(len(acked) >= acked_at_kill + 40, "the load goes on after the takeover: %d then %d"
          % (acked_at_kill, len(acked)))
    check(not watcher.both, "two nodes said they write the set at once: %r" % watcher.both[:3])
    check(watcher.polls > 10, "the watcher polled: %d" % watcher.polls)
    new, other = (b, c) if (b.healthz() or {}).get("role") == "writer" else (c, b)
    check((new.healthz() or {}).get("role") == "writer", "one of B and C writes the set")
    health = other.healthz()
    check(health is not None and health["role"] == "standby" and health["writer"] == new.address(),
          "the other standby forwards to the new writer: %r" % health)
    after = writers_rows(s)
    check(all(r[0] == new.address() and r[2] and r[1] == before[0][1] + 1 for r in after),
          "every shard's row names the new writer, live, one epoch on: %r then %r" % (before, after))
    for tid, (debit, credit) in acked.items():
        model.post(debit, credit, 1)
    for node in (b, c):
        client = node.client()
        for tid in sorted(acked):
            expect(client.get("/v1/transfers/" + tid), 200, what="acknowledged %s via %s" % (tid, node.name))
        model.check(client, "after the failover, via " + node.name)
        client.close()
    print("takeover_ms=%d acked_before_kill=%d acked_total=%d" % (took_over_s * 1000, acked_at_kill, len(acked)))
    return new, other


def main():
    shardset.require_postgres()
    s = shardset.ShardSet(2)
    a, b, c = Node(s, "A"), Node(s, "B"), Node(s, "C")
    try:
        s.init()
        a.db = s.db  # the node init made the keys for
        bad_input(s, a.db)
        no_writer_yet(s, a)
        refused(["serve", "--db", b.db, "--no-events", "--listen", "127.0.0.1:0", "--shards", s.shards_arg()],
                "another paycore writer", "a second writer (not a standby) while A writes the set")
        b.copy_keys(a.db)  # every shard's signing key, now that the first writer made them
        c.copy_keys(a.db)
        b.start(standby=True, wait_for="forwarding to the set's writer")
        c.start(standby=True, wait_for="forwarding to the set's writer", extra=["--body-max", "64k"])
        r = c.client().post("/v1/accounts", raw=b"{" + b" " * 100000 + b"}")
        expect(r, 413, "body_too_large", what="a body over the standby's --body-max")
        health = a.healthz()
        check(health["role"] == "writer" and health["writer"] == a.address(), "A writes the set: %r" % health)
        for node in (b, c):
            health = node.healthz()
            check(health["role"] == "standby" and health["writer"] == a.address(),
                  "node %s forwards to A: %r" % (node.name, health))
        rows = writers_rows(s)
        check(all(r == (a.address(), rows[0][1], True) for r in rows), "each shard's row names A: %r" % rows)
        model = Model()
        by_shard = through_every_node(s, a, b, c, model)
        kept_open(s, a, b, model)
        standby_reads(s, a, b, c, model, by_shard)
        new, other = failover(s, a, b, c, model, by_shard)
        a.start(standby=True, wait_for="forwarding to the set's writer")
        health = a.healthz()
        check(health["role"] == "standby" and health["writer"] == new.address(),
              "A restarted as a standby forwards to the new writer: %r" % health)
        client = a.client()
        expect(client.post("/v1/transfers", transfer("after-a", by_shard[0][0], by_shard[1][0], 3)), 201,
               what="a cross transfer through the restarted A")
        model.post(by_shard[0][0], by_shard[1][0], 3)
        model.check(client, "through the restarted A")
        client.close()
        check(a.stop() == 0 and other.stop() == 0, "standbys stop cleanly while waiting (exit 0)")
        check(new.stop() == 0, "the writer stops cleanly")
        s.books_balance("after the nodes stopped")
        check(s.prepared() == 0, "nothing prepared is left: %d" % s.prepared())
    except Exception:
        for node in (a, b, c):
            print("--- node %s:\n%s" % (node.name, node.log()[-3000:]), file=sys.stderr)
        raise
    finally:
        for node in (a, b, c):
            node.close()
        s.close()
    print("ok")


if __name__ == "__main__":
    main()
