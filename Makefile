# scalper: see README.md. `make run` and `make test` are the two commands that matter.
CARGO ?= cargo

.PHONY: build run test bench fuzz lint fmt install clean

build:
	$(CARGO) build --release

run: build
	./target/release/scalper run --config config/default.toml

# Starts (or reuses) the Redis and PostgreSQL the tests need: see scripts/with-test-services.
test:
	scripts/with-test-services $(CARGO) test --all-targets

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
