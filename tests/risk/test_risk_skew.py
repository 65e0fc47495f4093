"""Goal: no training/serving skew. The server, fed an authorization stream over HTTP,
scores every row exactly as `paycore risk eval` does offline (same features, same
model), and `paycore risk train` prints its contract line.
Method: train on a slice of the dev data (PAYCORE_SHARED/data/payments_dev.csv; absent:
a failure under CI, else reported not run with how to provide it), eval
the slice, replay the slice through a real server with that model, compare the
metric values; also a corrupt model file stops the server at start."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "api"))
from pcapi import BIN, Server, check, missing_input  # noqa: E402

ROWS = 25000


def metrics(line):
    return dict(kv.split("=", 1) for kv in line.split())


def main():
    shared = os.environ.get("PAYCORE_SHARED", "")
    data = os.path.join(shared, "data", "payments_dev.csv")
    if not shared or not os.path.exists(data):
        missing_input("dev data %s" % (data if shared else "(PAYCORE_SHARED unset)"),
                      "set PAYCORE_SHARED to the directory holding data/payments_dev.csv "
                      "(the project's ../shared) before 'make test'")
    server = Server()
    try:
        slice_path = os.path.join(server.dir, "slice.csv")
        with open(data) as src, open(slice_path, "w") as dst:
            for i, line in enumerate(src):
                if i > ROWS:
                    break
                dst.write(line)
        first_ts = int(open(slice_path).readlines()[1].split(",")[1])
        split = first_ts + 3 * 86400
        model = os.path.join(server.dir, "model.json")
        out = subprocess.run([BIN, "risk", "train", "--data", slice_path, "--out", model, "--split-ts", str(split),
                              "--valid-days", "1", "--rounds", "60"], capture_output=True, text=True, timeout=600)
        check(out.returncode == 0, "train failed: %s" % out.stderr)
        line = out.stdout.strip()
        check(re.match(r"^roc_auc=[0-9.]+ pr_auc=[0-9.]+ recall_at_1pct_fpr=[0-9.]+ ", line) is not None,
              "train line %r" % line)
        check(out.stderr == "", "no progress bar when stderr is not a terminal: %r" % out.stderr[:200])
        trained = metrics(line)
        check(float(trained["roc_auc"]) > 0.8, "train AUC well above chance: %r" % line)
        out = subprocess.run([BIN, "risk", "eval", "--data", slice_path, "--model", model],
                             capture_output=True, text=True, timeout=300)
        check(out.returncode == 0, "eval failed: %s" % out.stderr)
        offline = metrics(out.stdout)
        server.start(["--risk-model", model])
        out = subprocess.run([BIN, "risk", "replay", "--data", slice_path, "--url", "http://127.0.0.1:%d" % server.port,
                              "--key", server.admin_key], capture_output=True, text=True, timeout=600)
        check(out.returncode == 0, "replay failed: %s" % out.stderr)
        online = metrics(out.stdout)
        check(online["decisions"] == str(ROWS) and online["errors"] == "0", "replay %r" % online)
        for key in ("roc_auc", "pr_auc", "recall_at_1pct_fpr"):
            check(online[key] == offline[key], "%s: served %s, offline %s" % (key, online[key], offline[key]))
        check(server.stop() == 0, "clean stop")
        with open(model, "w") as f:
            f.write('{"learner": {"truncated')
        out = subprocess.run([BIN, "serve", "--db", server.db, "--listen", "127.0.0.1:0", "--risk-model", model],
                             capture_output=True, text=True, timeout=60)
        check(out.returncode != 0 and "risk_model_invalid" in out.stderr, "corrupt model refused: %r" % out.stderr[-300:])
    finally:
        server.close()
    print("risk skew: ok (served == offline: %s)" % " ".join("%s=%s" % (k, offline[k]) for k in ("roc_auc", "pr_auc")))


if __name__ == "__main__":
    main()
