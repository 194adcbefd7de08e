# scalper: see README.md. `make run` and `make test` are the two commands that matter.
CARGO ?= cargo

.PHONY: build run test soak bench fuzz lint fmt install clean

build:
	$(CARGO) build --release

run: build
	./target/release/scalper run --config config/default.toml

# Starts (or reuses) the Redis and PostgreSQL the tests need: see scripts/with-test-services.
test:
	scripts/with-test-services $(CARGO) test --all-targets

# A long seeded campaign against the simulator: randomized faults, the real binary SIGKILLed at
# the crash windows and from outside, restarts killed again while settling; prints scenarios
# run, kills, exits, duplicates, orphans and account mismatches (tests/live_crash_windows.rs).
# The same seed replays the same campaign; `make test` runs a short one (3 scenarios).
SOAK_SEED ?= 1592640677
SOAK_SCENARIOS ?= 1000
soak:
	SOAK_SEED=$(SOAK_SEED) SOAK_SCENARIOS=$(SOAK_SCENARIOS) scripts/with-test-services \
		$(CARGO) test --test live_crash_windows a_seeded_campaign -- --nocapture

# Benchmarks that write to PostgreSQL need it too.
bench:
	scripts/with-test-services $(CARGO) bench

# Each fuzz target for FUZZ_SECONDS, one after another (see fuzz/run.sh; installs cargo-fuzz
# when missing). `make test` replays the committed corpora (tests/fuzz_corpus.rs).
FUZZ_SECONDS ?= 60
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

install: build
	scripts/install.sh

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
