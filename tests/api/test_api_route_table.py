"""Goal: `paycore serve --routes` tells the truth about who may call each route: the
scopes it lists are exactly the keys the server lets through (GET /v1/api-keys was
listed admin-only while read_only may read it).
Method: print the table; against a real server, call every route as admin, merchant,
read_only and with no key (path parameters filled with an unknown id, an empty JSON
object as body); a caller the table lists must never get 401/403, any other must get
403 forbidden (401 unauthenticated without a key)."""
import subprocess

from pcapi import BIN, Server, check, expect

SCOPES = ("admin", "merchant", "read_only")


def route_table():
    out = subprocess.run([BIN, "serve", "--routes"], capture_output=True, text=True, timeout=30)
    check(out.returncode == 0, "serve --routes failed: " + out.stderr)
    table = []
    for line in out.stdout.splitlines():
        method, pattern, who = line.split()
        allowed = set() if who == "none" else set(who.split(","))
        check(allowed <= set(SCOPES), "unknown scope in %r" % line)
        table.append((method, pattern, who == "none", allowed))
    check(len(table) >= 14, "route table read: %r" % out.stdout)
    return table


def fill(pattern):
    return "/".join("no-such-id" if part.startswith("{") else part for part in pattern.split("/"))


def main():
    table = route_table()
    listed = {(m, p): allowed for m, p, _, allowed in table}
    check(listed[("GET", "/v1/api-keys")] == {"admin", "read_only"}, "GET /v1/api-keys: admin and read_only")
    check(listed[("POST", "/v1/api-keys")] == {"admin"}, "POST /v1/api-keys: admin only")
    server = Server()
    try:
        server.start()
        admin = server.client()
        clients = {"admin": admin, "none": server.client(key="")}
        for scope in ("merchant", "read_only"):
            key = expect(admin.post("/v1/api-keys", {"scope": scope, "name": scope}), 201, what=scope).json
            clients[scope] = server.client(key["key"])
        for method, pattern, keyless, allowed in table:
            path = fill(pattern)
            for who, client in clients.items():
                body = {} if method in ("POST", "PUT", "PATCH") else None
                r = client.request(method, path, body=body)
                where = "%s %s as %s (listed: %s)" % (method, pattern, who, "none" if keyless else ",".join(sorted(allowed)))
                if keyless or who in allowed:
                    check(r.status not in (401, 403), "%s: refused %r" % (where, r))
                elif who == "none":
                    expect(r, 401, "unauthenticated", where)
                else:
                    expect(r, 403, "forbidden", where)
        check(server.stop() == 0, "clean stop")
    finally:
        server.close()
    print("route table: %d routes, every listed scope matches the server" % len(table))


if __name__ == "__main__":
    main()
