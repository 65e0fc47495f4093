# paycore: the two quick-start commands are `make run` and `make test`.
BUILD      ?= build
BUILD_SAN  ?= build-sanitize
JOBS       ?= 2
DB         ?= paycore.db
LISTEN     ?= 127.0.0.1:8080

.PHONY: all deps build run test test-sanitize test-long bench bench-quick docs clean

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
# test runs 24). PAYCORE_CRASH_ROUNDS and PAYCORE_SEED override.
CRASH_ROUNDS ?= 400
test-long: build
	@cd $(BUILD) && PAYCORE_CRASH_ROUNDS=$(CRASH_ROUNDS) ./store_test_crash

bench: build
	@sh scripts/bench.sh $(BUILD) full

bench-quick: build
	@sh scripts/bench.sh $(BUILD) quick

docs: build
	@$(BUILD)/paycore docs errors > docs/errors.md

clean:
	rm -rf $(BUILD) $(BUILD_SAN)
