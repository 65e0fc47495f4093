"""tests/gateway/test_sim_transport.py: which HTTP server a simulator runs. Goal: paycore's
own engine is the default; --http-mhd or PAYCORE_SIM_HTTP_MHD=1 selects libmicrohttpd,
and wins over --http-engine (accepted, the default) and PAYCORE_SIM_HTTP_ENGINE=1.
Method: start a card simulator under each combination of flags and variables; read the
transport from the "simulator listening" log line and, to see the server itself and
not only its log, send a head past the 3840-byte bound: only the engine refuses it with
431 and a JSON body `{"error":{...,"code":"headers_too_large"}}`. Every one also
approves an authorization. The variables this test sets are cleared first, so the test
means the same when ctest runs it with PAYCORE_SIM_HTTP_MHD=1 in the environment."""
import json
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(__file__))
from simlib import TIMEOUT_S, Sim, auth_body, check, expect, wait_until  # noqa: E402

VARIABLES = ("PAYCORE_SIM_HTTP_MHD", "PAYCORE_SIM_HTTP_ENGINE")
HEAD_BYTES_PAST_BOUND = 3900  # SIM_HEAD_BYTES_MAX is 3840 (include/paycore/limits.h)


def oversized_head_answer(sim):
    """The raw answer (b"" when closed unanswered) to a GET whose head is too large."""
    filler = "x" * HEAD_BYTES_PAST_BOUND
    head = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: %s\r\n\r\n" % filler
    s = socket.create_connection(("127.0.0.1", sim.port), timeout=TIMEOUT_S)
    data = b""
    try:
        s.sendall(head.encode())
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except (ConnectionError, socket.timeout):
        pass
    finally:
        s.close()
    return data


def engine_refusal(answer):
    """True when 'answer' is the engine's own 431 with its JSON error code."""
    if not answer.startswith(b"HTTP/1.1 431 "):
        return False
    body = answer.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in answer else b""
    try:
        return json.loads(body)["error"]["code"] == "headers_too_large"
    except (ValueError, KeyError, TypeError):
        return False


def started(args, variables):
    """A card simulator started with 'args' and only 'variables' of VARIABLES set."""
    saved = {name: os.environ.pop(name, None) for name in VARIABLES}
    os.environ.update(variables)
    try:
        return Sim("card", args=args).start()
    finally:
        for name in VARIABLES:
            os.environ.pop(name, None)
            if saved[name] is not None:
                os.environ[name] = saved[name]


def check_transport(args, variables, want):
    sim = started(args, variables)
    try:
        what = "%r with %r" % (args, variables)
        # the log line follows the listening= line: wait for it, then read which it names
        line = wait_until(lambda: [l for l in sim.log().splitlines() if "simulator listening" in l],
                          "%s: the simulator listening log line" % what)[0]
        check('"http":"%s"' % want in line, "%s: want the log to name %s, got %s" % (what, want, line))
        answer = oversized_head_answer(sim)
        if want == "engine":
            check(engine_refusal(answer), "%s: want the engine's JSON 431, got %r" % (what, answer[:300]))
        else:
            check(not engine_refusal(answer), "%s: libmicrohttpd answered like the engine: %r" % (what, answer[:300]))
        r = sim.client().post("/v1/authorizations", auth_body(), key="transport-1")
        expect(r, 200)
        check(r.json["status"] == "approved", "%s: want approved, got %r" % (what, r))
    finally:
        sim.close()


def main():
    check_transport([], {}, "engine")
    check_transport(["--http-engine"], {}, "engine")
    check_transport([], {"PAYCORE_SIM_HTTP_ENGINE": "1"}, "engine")
    check_transport([], {"PAYCORE_SIM_HTTP_MHD": "0"}, "engine")
    check_transport(["--http-mhd"], {}, "libmicrohttpd")
    check_transport([], {"PAYCORE_SIM_HTTP_MHD": "1"}, "libmicrohttpd")
    check_transport(["--http-engine", "--http-mhd"], {}, "libmicrohttpd")
    check_transport(["--http-engine"], {"PAYCORE_SIM_HTTP_MHD": "1"}, "libmicrohttpd")
    print("ok")


if __name__ == "__main__":
    main()
