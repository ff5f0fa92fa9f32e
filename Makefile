# Fluxo Export. `make demo` and `make test` are the two commands a newcomer needs.
CARGO_TARGET_DIR ?= $(HOME)/.cache/fluxo/target
export CARGO_TARGET_DIR
# The extension is copied out of release/: a plain `cargo build` (no `php`
# feature) would otherwise replace it with a library PHP cannot load.
SO := $(CARGO_TARGET_DIR)/php/libfluxo.so
SERVER := $(CARGO_TARGET_DIR)/release/fluxo-export-server
PHP := php -d extension=$(SO)
ROWS ?= 1000000
FORMAT ?= csv

.PHONY: deps build install demo test test-servers rust-test php-test python-test lint deny valgrind bench grpc-bench fuzz

deps:
	@scripts/install-deps.sh

## The PHP extension (with the embedded server, Fluxo\Server) and fluxo-export-server.
build: deps
	cargo build --release --features php,server --lib
	mkdir -p $(dir $(SO))
	cp $(CARGO_TARGET_DIR)/release/libfluxo.so $(SO).tmp && mv $(SO).tmp $(SO)
	cargo build --release --features server --bin fluxo-export-server

## Installs the extension as fluxo.so in PHP's extension folder and enables
## it for every SAPI (Debian's phpenmod): `extension=fluxo` then loads it.
install: build
	sudo_=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$sudo_ install -m 644 $(SO) "$$(php-config --extension-dir)/fluxo.so" && \
	  echo "extension=fluxo.so" | $$sudo_ tee /etc/php/$$(php-config --version | cut -d. -f1,2)/mods-available/fluxo.ini >/dev/null && \
	  $$sudo_ phpenmod fluxo && php -m | grep -qx fluxo && echo "fluxo installed: php -m lists it"

## Export 1,000,000 rows from PHP into ./exports, with a progress bar.
demo: build
	$(PHP) -d fluxo.local_dir=$(CURDIR)/exports examples/demo.php $(ROWS) $(FORMAT)

## Rust tests (core, storage, gRPC and HTTP with a tonic client), PHPUnit
## against the built extension, and the grpcio client against the server
## binary, with real S3 (s3s-fs) and OSS-protocol (moto) servers on 127.0.0.1.
test: build test-servers rust-test php-test python-test

test-servers:
	scripts/test-servers.sh install
	scripts/test-servers.sh start

rust-test:
	eval "$$(scripts/test-servers.sh env)" && cargo test --release --features server

php-test:
	eval "$$(scripts/test-servers.sh env)" && \
	  FLUXO_SO=$(SO) $(PHP) /usr/bin/phpunit -c php-tests/phpunit.xml

python-test:
	FLUXO_SERVER_BIN=$(SERVER) FLUXO_SERVER_SO=$(SO) python3 -m pytest -q python-tests

## Format, clippy (src/lib.rs: an `unsafe` block needs a `// SAFETY:`
## comment), and `make deny`.
lint: deny
	cargo fmt --check
	cargo clippy --release --features php,server --lib --bins --tests --benches -- -D warnings

## cargo-deny (deny.toml): licenses, banned and wildcard dependencies, crate
## sources. Not its advisories check: the RustSec database is fetched from
## GitHub, out of reach here (RELIABILITY.md, "Security").
TOOLS := $(HOME)/.cache/fluxo/tools
deny:
	test -x $(TOOLS)/bin/cargo-deny || CARGO_TARGET_DIR=$(HOME)/.cache/fluxo/tools-target \
	  cargo install cargo-deny@0.20.2 --locked --root $(TOOLS)
	$(TOOLS)/bin/cargo-deny check licenses bans sources

## The PHPUnit suite under valgrind memcheck (not part of `make test`):
## fails on a memcheck error with an extension frame. RELIABILITY.md.
valgrind: build test-servers
	eval "$$(scripts/test-servers.sh env)" && scripts/valgrind.sh

## End-to-end figures at 800,000 and 5,000,000 rows: bare PHP loop, fputcsv, Fluxo CSV and XLSX (and xlswriter if loaded).
bench: build
	FLUXO_SO=$(SO) $(PHP) php-bench/bench.php $(or $(BENCH_ROWS),800000) --repeat=$(or $(BENCH_REPEAT),3)
	FLUXO_SO=$(SO) $(PHP) php-bench/bench.php 5000000 --only=bare,fputcsv,fluxo-csv,fluxo-xlsx,xlswriter

## 16 concurrent 100,000-row gRPC streams: aggregate rows/s, server peak RSS.
grpc-bench: build
	cargo test --release --features server --test grpc_bench -- --ignored --nocapture

## Runs each cargo-fuzz target for FUZZ_SECONDS (nightly; own target dir, so
## the main build is not disturbed). New inputs land in fuzz/corpus/<target>;
## `make test` replays that corpus (tests/fuzz_corpus.rs). RELIABILITY.md, "Fuzzing".
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= batch_arena csv_cells xlsx_cells grpc_batch
FUZZ_TOOLS := $(HOME)/.cache/fluxo/tools
fuzz:
	rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	test -x $(FUZZ_TOOLS)/bin/cargo-fuzz || CARGO_TARGET_DIR=$(HOME)/.cache/fluxo/tools-target \
	  cargo install cargo-fuzz --locked --root $(FUZZ_TOOLS)
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  PATH=$(FUZZ_TOOLS)/bin:$$PATH CARGO_TARGET_DIR=$(HOME)/.cache/fluxo/fuzz-target \
	    nice -n 19 cargo +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done
