"""Goal: an acknowledged transfer keeps its balance effect across a clean stop, a
restart and a crash, when batches that write no ledger rows (an API key, an
idempotent replay) ran before the stop; and a brand-new database verifies.
Method: the real binary over loopback. `paycore init`, then `paycore verify` at once.
Accounts a and b, transfer 100, create an API key and replay the transfer with its
Idempotency-Key (batches without ledger rows), SIGTERM; restart, transfer 50
(acknowledged), SIGKILL a few batches later (far fewer than a balance snapshot's
64); restart: b must show 150 and `paycore verify` must pass, before and after a
clean stop."""
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "api"))
from pcapi import BIN, TIMEOUT_S, Server, account, check, expect, transfer  # noqa: E402


def verify(server, what):
    out = subprocess.run([BIN, "verify"] + server.store_location_args() + ["--pubkey", server.db + ".key.pub"],
                         capture_output=True, text=True, timeout=TIMEOUT_S * 3)
    check(out.returncode == 0 and out.stdout.startswith("verify ok"),
          "%s: verify: %d %s %s" % (what, out.returncode, out.stdout.strip(), out.stderr.strip()))


def balance_of(client, account_id):
    body = expect(client.get("/v1/accounts/" + account_id), 200, what="get " + account_id).json
    return body["credits_posted"] - body["debits_posted"]


def main():
    server = Server()
    try:
        verify(server, "right after init")
        admin = server.start().client()
        expect(admin.post("/v1/accounts", account("a")), 201, what="create a")
        expect(admin.post("/v1/accounts", account("b")), 201, what="create b")
        idem = {"Idempotency-Key": "scenario-t1"}
        expect(admin.post("/v1/transfers", transfer("t1", "a", "b", 100), headers=idem), 201, what="t1")
        expect(admin.post("/v1/api-keys", {"scope": "read_only", "name": "ro"}), 201, what="key")
        replay = admin.post("/v1/transfers", transfer("t1", "a", "b", 100), headers=idem)
        check(replay.status in (200, 201), "idempotent replay: %r" % replay)
        admin.close()
        check(server.stop(signal.SIGTERM) == 0, "clean stop exits 0")
        verify(server, "after the clean stop")

        admin = server.start().client()
        expect(admin.post("/v1/transfers", transfer("t2", "a", "b", 50)), 201, what="t2 (acknowledged)")
        for i in range(3):
            expect(admin.post("/v1/accounts", account("c%d" % i)), 201, what="a few more batches")
        admin.close()
        server.stop(signal.SIGKILL)

        verify(server, "after the crash")
        admin = server.start().client()
        check(balance_of(admin, "b") == 150, "b after the crash: %d, want 150" % balance_of(admin, "b"))
        check(balance_of(admin, "a") == -150, "a after the crash: %d, want -150" % balance_of(admin, "a"))
        admin.close()
        check(server.stop(signal.SIGTERM) == 0, "clean stop exits 0")
        verify(server, "after the last clean stop")
        print("test_restart_scenario: ok")
    finally:
        server.close()


if __name__ == "__main__":
    main()
