# paycore: the two quick-start commands are `make run` and `make test`.
BUILD      ?= build
BUILD_SAN  ?= build-sanitize
BUILD_TSAN ?= build-tsan
JOBS       ?= 2
DB         ?= paycore.db
LISTEN     ?= 127.0.0.1:8080
# make install: GNU layout under PREFIX, staged under DESTDIR (packaging, tests)
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
DATADIR    ?= $(PREFIX)/share
MANDIR     ?= $(DATADIR)/man
DOCDIR     ?= $(DATADIR)/doc/paycore
UNITDIR    ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d

.PHONY: all deps build run test test-sanitize test-tsan test-long test-payments-crash test-ha test-faults test-shards-faults bench bench-quick docs clean install uninstall

all: build

deps:
	@sh scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	@sh scripts/run.sh $(BUILD)/paycore $(DB) $(LISTEN)

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-sanitize: deps
	@cmake -S . -B $(BUILD_SAN) -DCMAKE_BUILD_TYPE=Debug -DPC_SANITIZE=ON >/dev/null
	@cmake --build $(BUILD_SAN) -j $(JOBS)
	@cd $(BUILD_SAN) && PAYCORE_SANITIZED=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(JOBS)

# The crash test at full length: hundreds of kill / clean-stop / fault cycles (make
# test runs 24), then on PostgreSQL (make test runs 6). PAYCORE_SEED replays a run.
CRASH_ROUNDS ?= 400
PG_CRASH_ROUNDS ?= 100
test-long: build
	@cd $(BUILD) && PAYCORE_CRASH_ROUNDS=$(CRASH_ROUNDS) ./store_test_crash
	@cd $(BUILD) && PAYCORE_BIN=$(CURDIR)/$(BUILD)/paycore PAYCORE_CRASH_ROUNDS=$(PG_CRASH_ROUNDS) \
	  python3 $(CURDIR)/tests/store/test_crash_pg.py

# The payments crash test at full length: paycore SIGKILLed during a payment load against
# the real simulators, PAY_CRASH_ROUNDS times (make test runs 4); then the ledger must
# agree with the simulators' records. PAYCORE_SEED replays one run.
PAY_CRASH_ROUNDS ?= 60
test-payments-crash: build
	@PAYCORE_BIN=$(BUILD)/paycore PAYCORE_PAY_CRASH_ROUNDS=$(PAY_CRASH_ROUNDS) python3 tests/payments/test_payments_crash.py

# The two-phase commit fault test at full length: after the fixed faults (make test runs
# them), SHARD_FAULT_ROUNDS coordinator kills at random steps, shard pairs and
# Idempotency-Keys over three PostgreSQL clusters. PAYCORE_SEED replays one run.
SHARD_FAULT_ROUNDS ?= 40
test-shards-faults: build
	@PAYCORE_BIN=$(BUILD)/paycore PAYCORE_SHARD_FAULT_ROUNDS=$(SHARD_FAULT_ROUNDS) python3 tests/store/test_shards_faults.py

# High availability (make test runs these too): paycore on three etcd members and two
# PostgreSQL nodes under Patroni (synchronous_mode), the primary killed under load.
test-ha: build
	@PAYCORE_BIN=$(BUILD)/paycore python3 tests/ha/test_ha.py
	@PAYCORE_BIN=$(BUILD)/paycore python3 tests/ha/test_store_wait.py

# The bank test at full length: concurrent transfers and reads of all balances while
# paycore nodes and the PostgreSQL primary are killed and restarted, FAULT_ROUNDS
# faults on each of a SQLite file, a plain cluster, the Patroni pair and a set of three
# shards (make test runs a short one); then a PostgreSQL server gone silent (an iptables rule on one loopback
# port: root; make test leaves the firewall alone).
FAULT_ROUNDS ?= 30
test-faults: build
	@PAYCORE_BIN=$(BUILD)/paycore PAYCORE_FAULT_ROUNDS=$(FAULT_ROUNDS) python3 tests/ha/test_bank.py
	@PAYCORE_BIN=$(BUILD)/paycore python3 tests/ha/fault_vanish.py

# The HTTP server's tests under ThreadSanitizer: the engine's workers (api/, the
# default) and MHD threads (a few api-mhd/ suites), the writer thread and the reapers
# share requests; a data race there fails the run. The crash test too (6
# cycles): its checks read the ledger beside a writer thread that expires pending
# transfers at once after each restart. And many payments at once: flows handed
# between HTTP, gateway, stage and writer threads. And the simulators on the engine:
# its worker, the timer thread that answers latency waits and held timeouts, the record's
# group commit (test_sim_group, test_sim_loop, test_sim_faults; test_gw_reuse restarts one).
test-tsan: deps
	@cmake -S . -B $(BUILD_TSAN) -DCMAKE_BUILD_TYPE=Debug -DPC_TSAN=ON >/dev/null
	@cmake --build $(BUILD_TSAN) -j $(JOBS) --target paycore store_test_crash api_test_router api_test_request_arena http_test_http http_test_unescape gateway_test_gw_reuse
	@cd $(BUILD_TSAN) && PAYCORE_SANITIZED=1 PAYCORE_CRASH_ROUNDS=6 TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  ctest --output-on-failure -j $(JOBS) -R '^(api/|http/|api-mhd/test_api_(concurrency|shutdown|stop_race|idempotency_retry)$$|store/test_crash$$|payments/test_payments_concurrent$$|gateway/test_(sim_group|sim_loop|sim_faults|gw_reuse)$$)'

bench: build
	@sh scripts/bench.sh $(BUILD) full

bench-quick: build
	@sh scripts/bench.sh $(BUILD) quick

docs: build
	@$(BUILD)/paycore docs errors > docs/errors.md
	@sh scripts/manpage.sh $(BUILD)/paycore > docs/paycore.1

# Installs what `make build` made (run it first): the binary, the man page, the
# dashboard, the systemd unit (ExecStart at BINDIR) and its user, docs and deploy files.
install:
	@test -x $(BUILD)/paycore -a -f $(BUILD)/web/index.html || { echo "make install: run 'make build' first" >&2; exit 1; }
	install -d -m 755 $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(DATADIR)/paycore/web/assets \
	  $(DESTDIR)$(DOCDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) \
	  $(DESTDIR)$(DATADIR)/paycore/prometheus/rules $(DESTDIR)$(DATADIR)/paycore/grafana
	install -m 755 $(BUILD)/paycore $(DESTDIR)$(BINDIR)/paycore
	install -m 644 docs/paycore.1 $(DESTDIR)$(MANDIR)/man1/paycore.1
	install -m 644 $(BUILD)/web/index.html $(DESTDIR)$(DATADIR)/paycore/web/index.html
	install -m 644 $(BUILD)/web/assets/* $(DESTDIR)$(DATADIR)/paycore/web/assets/
	sed 's|^ExecStart=/usr/local/bin/paycore|ExecStart=$(BINDIR)/paycore|' deploy/systemd/paycore.service \
	  > $(DESTDIR)$(UNITDIR)/paycore.service
	chmod 644 $(DESTDIR)$(UNITDIR)/paycore.service
	install -m 644 deploy/systemd/paycore.sysusers $(DESTDIR)$(SYSUSERSDIR)/paycore.conf
	install -m 644 deploy/systemd/paycore.env $(DESTDIR)$(DATADIR)/paycore/paycore.env.example
	install -m 644 deploy/prometheus/prometheus.yml $(DESTDIR)$(DATADIR)/paycore/prometheus/prometheus.yml
	install -m 644 deploy/prometheus/rules/paycore.rules.yml $(DESTDIR)$(DATADIR)/paycore/prometheus/rules/paycore.rules.yml
	install -m 644 deploy/grafana/paycore.json $(DESTDIR)$(DATADIR)/paycore/grafana/paycore.json
	install -m 644 docs/operations.md docs/capacity.md docs/errors.md docs/openapi.yaml $(DESTDIR)$(DOCDIR)/

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/paycore $(DESTDIR)$(MANDIR)/man1/paycore.1 \
	  $(DESTDIR)$(UNITDIR)/paycore.service $(DESTDIR)$(SYSUSERSDIR)/paycore.conf
	rm -rf $(DESTDIR)$(DATADIR)/paycore $(DESTDIR)$(DOCDIR)

clean:
	rm -rf $(BUILD) $(BUILD_SAN) $(BUILD_TSAN)
