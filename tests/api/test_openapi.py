"""Goal: docs/openapi.yaml documents exactly the routes the server has. Method: the
server prints its route table (`paycore serve --routes`); the spec's paths and methods
are read with a small line parser (stdlib only); both sets must be equal."""
import os
import re
import subprocess
import sys

from pcapi import BIN, check

SPEC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../docs/openapi.yaml")


def spec_routes(path):
    routes, current, in_paths = set(), None, False
    for line in open(path):
        if re.match(r"^\S", line):
            in_paths = line.startswith("paths:")
            continue
        if not in_paths:
            continue
        m = re.match(r"^  (/\S*):\s*$", line)
        if m:
            current = m.group(1)
            continue
        m = re.match(r"^    (get|post|put|patch|delete|head|options):", line)
        if m and current:
            routes.add((m.group(1).upper(), current))
    return routes


def main():
    check(open(SPEC).readline().startswith("openapi: 3.1"), "OpenAPI 3.1")
    out = subprocess.run([BIN, "serve", "--routes"], capture_output=True, text=True, timeout=30)
    check(out.returncode == 0, "serve --routes failed: " + out.stderr)
    server = set(tuple(line.split()[:2]) for line in out.stdout.splitlines() if line.strip())
    check(len(server) >= 14, "route table read: %r" % server)
    spec = spec_routes(SPEC)
    missing = sorted(server - spec)
    extra = sorted(spec - server)
    check(not missing, "routes missing from docs/openapi.yaml: %r" % missing)
    check(not extra, "docs/openapi.yaml lists routes the server lacks: %r" % extra)
    print("openapi: %d routes match" % len(server))


if __name__ == "__main__":
    main()
