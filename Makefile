# scalper: see README.md. `make run` and `make test` are the two commands that matter.
CARGO ?= cargo

.PHONY: build run test bench lint fmt install clean

build:
	$(CARGO) build --release

run: build
	./target/release/scalper run --config config/default.toml

test:
	$(CARGO) test --all-targets

bench:
	$(CARGO) bench

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

install: build
	scripts/install.sh

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
