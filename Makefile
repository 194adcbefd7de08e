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

# A long seeded soak campaign against the simulator (tests/live_soak.rs): SOAK_SCENARIOS
# randomized fault scenarios (one position's life each: REST 500s, 429s, resets, lost answers,
# rejections retried, order-update and feed drops, bad ticks, slow or failing REST), many per
# engine lifetime, the real binary SIGKILLed at failpoints and from outside, restarts killed
# again while settling; audited after every restart and every scenario. Prints scenarios run,
# kills, exits, duplicates, orphans and account mismatches, with the counts per fault and per
# kill point. The same seed draws the same campaign (SOAK_RIG=N replays one rig of it);
# `make test` runs a short one (3 scenarios).
SOAK_SEED ?= 1592640677
SOAK_SCENARIOS ?= 1000
soak:
	SOAK_SEED=$(SOAK_SEED) SOAK_SCENARIOS=$(SOAK_SCENARIOS) scripts/with-test-services \
		$(CARGO) test --test live_soak -- --nocapture

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
