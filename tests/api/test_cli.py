"""Goal: the CLI client commands reach a real server, print a table or --json, and on
failure print the API's error code and exit non-zero; every command has --help; the
load generator prints its key=value line and its transfers land; serve's choice of
HTTP server: --http-engine and --http-mhd at once are refused. Method: a real server; PAYCORE_URL/PAYCORE_KEY in
the environment; outputs parsed back."""
import json
import os
import subprocess
import tempfile

from pcapi import BIN, TIMEOUT_S, Server, check, check_conserved, expect


def run(env, *args):
    out = subprocess.run([BIN] + list(args), capture_output=True, text=True, timeout=TIMEOUT_S * 3, env=env)
    return out.returncode, out.stdout, out.stderr


def test_help():
    for args in (["serve"], ["init"], ["account", "create"], ["account", "get"], ["account", "list"],
                 ["transfer", "create"], ["transfer", "get"], ["transfer", "post"], ["transfer", "void"],
                 ["transfer", "list"], ["key", "create"], ["key", "list"], ["key", "revoke"], ["load"]):
        code, out, err = run(os.environ.copy(), *(args + ["--help"]))
        check(code == 0 and "usage: paycore " + args[0] in out, "%s --help: %d %r" % (args, code, out[:80]))
    code, _, err = run(os.environ.copy(), "account", "frobnicate")
    check(code == 2, "unknown subcommand is a usage error")


def test_commands(env, server):
    code, out, err = run(env, "account", "create", "--id", "cli-a", "--currency", "USD", "--flags", "history",
                         "--metadata", "team=ops")
    check(code == 0 and "cli-a" in out and "created" in out, "account create: %d %r %r" % (code, out, err))
    run(env, "account", "create", "--id", "cli-b", "--currency", "USD")
    code, out, err = run(env, "account", "get", "cli-a", "--json")
    check(code == 0 and json.loads(out)["metadata"] == {"team": "ops"}, "account get --json: %r" % out)
    code, out, err = run(env, "transfer", "create", "--id", "ct1", "--debit", "cli-b", "--credit", "cli-a",
                         "--amount", "500", "--currency", "USD", "--json")
    check(code == 0 and json.loads(out)["status"] == "created", "transfer create: %r %r" % (out, err))
    code, out, err = run(env, "transfer", "create", "--id", "hold", "--debit", "cli-b", "--credit", "cli-a",
                         "--amount", "300", "--currency", "USD", "--flags", "pending", "--timeout-s", "60")
    check(code == 0, "pending: %r" % err)
    code, out, err = run(env, "transfer", "post", "--id", "cap", "--pending-id", "hold", "--amount", "100", "--json")
    check(code == 0 and json.loads(out)["amount"] == 100, "post: %r %r" % (out, err))
    code, out, err = run(env, "transfer", "void", "--id", "vd", "--pending-id", "hold")
    check(code == 1 and "pending_transfer_already_posted" in err, "void after post: %d %r" % (code, err))
    code, out, err = run(env, "transfer", "get", "hold", "--json")
    check(code == 0 and json.loads(out)["pending_state"] == "posted", "transfer get: %r" % out)
    code, out, err = run(env, "transfer", "list", "cli-a", "--order", "desc", "--limit", "5")
    lines = out.splitlines()
    check(code == 0 and lines[0].split()[0] == "id" and lines[1].split()[0] == "cap", "transfer list: %r" % out)
    code, out, err = run(env, "account", "list", "--json")
    check(code == 0 and len(json.loads(out)["data"]) == 2, "account list: %r" % out)
    code, out, err = run(env, "transfer", "create", "--id", "bad", "--debit", "cli-b", "--credit", "cli-a",
                         "--amount", "12.5", "--currency", "USD")
    check(code == 2, "a non-integer amount is a usage error")
    code, out, err = run(env, "account", "get", "ghost")
    check(code == 1 and "not_found" in err, "missing account: %d %r" % (code, err))
    bad = dict(env, PAYCORE_KEY="pck_nope")
    code, out, err = run(bad, "account", "list")
    check(code == 1 and "unauthenticated" in err, "bad key: %r" % err)
    code, out, err = run(env, "key", "create", "--scope", "merchant", "--name", "m", "--accounts", "cli-a", "--json")
    created = json.loads(out)
    check(code == 0 and created["key"].startswith("pck_"), "key create: %r" % out)
    code, out, err = run(env, "key", "list")
    check(code == 0 and created["id"] in out and created["key"] not in out, "key list: %r" % out)
    code, out, err = run(env, "key", "revoke", created["id"])
    check(code == 0, "key revoke: %r" % err)
    code, out, err = run(dict(env, PAYCORE_KEY=created["key"]), "account", "list")
    check(code == 1 and "unauthenticated" in err, "revoked key refused")


def test_load(env, server):
    code, out, err = run(env, "load", "--concurrency", "4", "--count", "200", "--accounts", "20")
    check(code == 0, "load failed: %r %r" % (out, err))
    fields = dict(kv.split("=") for kv in out.split()[1:])
    check(out.startswith("load ") and fields["requests"] == "200" and fields["errors"] == "0" and
          fields["transfers"] == "200", "load line: %r" % out)
    for key in ("requests_per_s", "transfers_per_s", "p50_ms", "p99_ms", "p999_ms"):
        check(float(fields[key]) > 0, "load %s: %r" % (key, out))
    code, out, err = run(env, "load", "--concurrency", "2", "--count", "4", "--batch", "50", "--accounts", "10")
    fields = dict(kv.split("=") for kv in out.split()[1:])
    check(code == 0 and fields["transfers"] == "200", "batched load: %r %r" % (out, err))
    c = server.client()
    r = expect(c.get("/metrics"), 200, what="metrics")
    committed = int([l for l in r.raw.splitlines() if l.startswith("paycore_transfers_committed_total ")][0].split()[1])
    check(committed >= 400, "load transfers committed: %d" % committed)
    check_conserved(c, "after load")


def test_http_server_choice():
    env = {k: v for k, v in os.environ.items() if k not in ("PAYCORE_HTTP_MHD", "PAYCORE_HTTP_ENGINE")}
    with tempfile.TemporaryDirectory(prefix="engapi-cli-") as tmp:
        db = os.path.join(tmp, "n.db")
        code, _, err = run(env, "serve", "--http-engine", "--http-mhd", "--db", db, "--listen", "127.0.0.1:0")
        check(code == 2 and "--http-engine and --http-mhd" in err, "both servers named: %d %r" % (code, err[-300:]))


def main():
    test_help()
    test_http_server_choice()
    server = Server()
    try:
        server.start()
        env = dict(os.environ, PAYCORE_URL="http://127.0.0.1:%d" % server.port, PAYCORE_KEY=server.admin_key)
        test_commands(env, server)
        test_load(env, server)
    finally:
        server.close()
    print("cli: ok")


if __name__ == "__main__":
    main()
