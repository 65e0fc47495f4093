"""Goal: the request header limit is what docs/architecture.md says (API_CONNECTION_MEMORY_BYTES,
libmicrohttpd's memory per connection, 8 KiB): a request whose line and headers take up to
6 KiB in up to 30 header fields (an Authorization, a 255-byte Idempotency-Key and other
headers) is served, on a kept-alive connection too, one after another; a head of 8 KiB
(more than the connection's memory) or 40 KiB is answered 431 and changes nothing, and
the server goes on serving.
Method: one real server over loopback; raw HTTP/1.1 over sockets (exact byte counts),
transfers posted under large heads, then the same connection reused; heads past the
limit on other connections; the accounts compared before and after."""
import json
import socket

from pcapi import TIMEOUT_S, Server, account, check, expect


def read_reply(s):
    """One reply off a kept-alive socket: (status, body bytes)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            return None, data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = [l for l in lines if l.lower().startswith(b"content-length:")]
    want = int(length[0].split(b":")[1]) if length else 0
    while len(rest) < want:
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, rest


def request_bytes(method, path, key, body=b"", extra_headers=()):
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: 127.0.0.1", "Authorization: Bearer " + key,
             "Content-Type: application/json", "Content-Length: %d" % len(body)]
    lines += ["%s: %s" % h for h in extra_headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


HEAD_BYTES_MAX = 6 * 1024  # docs/architecture.md
HEAD_FIELDS_MAX = 30


def padded(head_bytes, method, path, key, body=b"", idempotency_key=None, fields=0):
    """A request whose line and headers take exactly 'head_bytes' (an X-Pad header fills),
    with 'fields' more small header fields."""
    extra = [("Idempotency-Key", idempotency_key)] if idempotency_key else []
    extra += [("X-Field-%d" % i, "v") for i in range(fields)]
    base = len(request_bytes(method, path, key, body, extra + [("X-Pad", "")])) - len(body)
    pad = head_bytes - base
    check(pad > 0, "the padding fits")
    data = request_bytes(method, path, key, body, extra + [("X-Pad", "p" * pad)])
    check(len(data) - len(body) == head_bytes, "head of %d bytes" % head_bytes)
    return data


def raw_exchange(server, lines, body=b""):
    """One request of exactly these header lines on its own connection: (status, body)."""
    s = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT_S)
    try:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        return read_reply(s)
    finally:
        s.close()


def repeated_headers(server):
    """Header names in any case; of a repeated header the first counts (the server reads
    the headers it needs in one pass over them: the same as a lookup of each name)."""
    body = json.dumps({"id": "hdr-rep", "debit_account_id": "h1", "credit_account_id": "h2",
                       "amount": 7, "currency": "USD", "code": 1}).encode()
    head = ["POST /v1/transfers HTTP/1.1", "host: 127.0.0.1", "AUTHORIZATION: Bearer " + server.admin_key,
            "authorization: Bearer wrong", "content-type: application/json", "Content-Type: text/plain",
            "IDEMPOTENCY-KEY: rep-first", "Idempotency-Key: rep-second", "content-length: %d" % len(body)]
    status, reply = raw_exchange(server, head, body)
    check(status == 201, "lower- and upper-case names, the first of each repeated: %r %r" % (status, reply[:200]))
    status, again = raw_exchange(server, head[:6] + ["idempotency-key: rep-first", "Content-Length: %d" % len(body)],
                                 body)
    check(status == 201 and again == reply, "the first Idempotency-Key was the key: replayed %r" % again[:200])
    other_body = body.replace(b"hdr-rep", b"hdr-rep2")
    status, other = raw_exchange(server, head[:6] + ["Idempotency-Key: rep-second",
                                                     "Content-Length: %d" % len(other_body)], other_body)
    check(status == 201 and json.loads(other)["id"] == "hdr-rep2",
          "the second one was not (another body under it runs): %r %r" % (status, other[:200]))
    status, denied = raw_exchange(server, [head[0], head[1], "Authorization: Bearer wrong",
                                           "Authorization: Bearer " + server.admin_key, "Content-Length: 0"])
    check(status == 401, "a wrong first Authorization is refused, whatever follows: %r %r" % (status, denied[:200]))
    status, typed = raw_exchange(server, [head[0], head[1], "Authorization: Bearer " + server.admin_key,
                                          "Content-Type: text/plain", "content-type: application/json",
                                          "Content-Length: %d" % len(body)], body)
    check(status == 415, "the first Content-Type counts: %r %r" % (status, typed[:200]))


def main():
    server = Server().start()
    try:
        c = server.client()
        expect(c.post("/v1/accounts", {"accounts": [account("h1"), account("h2")]}), 200, what="accounts")
        s = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT_S)
        try:
            heads = ((HEAD_BYTES_MAX, 0), (HEAD_BYTES_MAX, HEAD_FIELDS_MAX - 7), (1024, 0), (HEAD_BYTES_MAX, 0),
                     (HEAD_BYTES_MAX, HEAD_FIELDS_MAX - 7))  # one kept-alive connection; 7 fields of its own
            for i, (size, fields) in enumerate(heads):
                body = json.dumps({"id": "hdr-%d" % i, "debit_account_id": "h1", "credit_account_id": "h2",
                                   "amount": 1 + i, "currency": "USD", "code": 1}).encode()
                data = padded(size, "POST", "/v1/transfers", server.admin_key, body, ("k%d" % i).ljust(255, "k")
                              if i % 2 == 0 else "key-%d" % i, fields)
                check(data.count(b"\r\n") - 2 <= HEAD_FIELDS_MAX, "at most %d fields" % HEAD_FIELDS_MAX)
                s.sendall(data)
                status, reply = read_reply(s)
                check(status == 201, "headers of %d bytes in %d more fields served: %r %r" %
                      (size, fields, status, reply[:200]))
                check(json.loads(reply)["id"] == "hdr-%d" % i, "the transfer: %r" % reply[:200])
        finally:
            s.close()
        repeated_headers(server)
        before = c.get("/v1/accounts?limit=100").raw
        for size in (8 * 1024, 40 * 1024):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT_S)
            try:
                body = json.dumps({"id": "hdr-big", "debit_account_id": "h1", "credit_account_id": "h2",
                                   "amount": 9, "code": 1, "currency": "USD"}).encode()
                try:
                    s.sendall(padded(size, "POST", "/v1/transfers", server.admin_key, body))
                except (BrokenPipeError, ConnectionResetError):
                    pass
                try:
                    status, _ = read_reply(s)
                except ConnectionResetError:
                    status = None
                check(status == 431, "a head of %d bytes is answered 431: %r" % (size, status))
            finally:
                s.close()
        expect(c.get("/v1/transfers/hdr-big"), 404, "not_found", "the refused transfer is not there")
        check(c.get("/v1/accounts?limit=100").raw == before, "the refused request changed nothing")
        expect(c.get("/healthz"), 200, what="still serving")
        server.check_sanitizers()
    finally:
        server.close()
    print("ok")


if __name__ == "__main__":
    main()
