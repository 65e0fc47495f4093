"""Goal: docs/openapi.yaml documents exactly the routes the server has. Method: the
server prints its route table (`paycore serve --routes`); the spec's paths and methods
are read with a small line parser; both sets must be equal. The file must also be valid
YAML (python3-yaml, installed by scripts/deps.sh), and a YAML parser must read the same
routes as the line parser."""
import os
import re
import subprocess
import sys

import yaml

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
    try:
        parsed = yaml.safe_load(open(SPEC))
    except yaml.YAMLError as e:
        check(False, "docs/openapi.yaml is not valid YAML: %s" % e)
    parsed_routes = set((method.upper(), path) for path, ops in parsed["paths"].items() for method in ops
                        if method in ("get", "post", "put", "patch", "delete", "head", "options"))
    check(parsed_routes == spec, "the YAML parser and the line parser disagree: %r" % sorted(parsed_routes ^ spec))
    missing = sorted(server - spec)
    extra = sorted(spec - server)
    check(not missing, "routes missing from docs/openapi.yaml: %r" % missing)
    check(not extra, "docs/openapi.yaml lists routes the server lacks: %r" % extra)
    print("openapi: %d routes match" % len(server))


if __name__ == "__main__":
    main()
