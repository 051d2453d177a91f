# One place for the commands people and CI run: `make test`, `make lint`, `make bench`.
PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
export VIRTUAL_ENV := $(abspath $(VENV))

.PHONY: all test test-all test-rust test-exhaustive test-python lint bench dev dev-fast valgrind fuzz clean

all: lint test

# A virtual environment with the pinned tools, rebuilt when the pins change.
$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -r requirements-dev.txt
	touch $@

# Builds the extension (release, as `pip install .` does) and installs the package into the
# venv, editable: for benchmarks.
dev: $(VENV)/.installed
	$(VENV)/bin/maturin develop --release -q

# The same in the `fast` profile (Cargo.toml), which the Rust tests share: for the tests.
dev-fast: $(VENV)/.installed
	$(VENV)/bin/maturin develop --profile fast -q

# Every behaviour, Rust and Python: the README's test command.
test: test-rust test-python

# `make test`, then the long checks (CI runs both).
test-all: test test-exhaustive

# The GPU tests skip without a GPU adapter, unless BCERS_REQUIRE_GPU=1 (CI) makes them fail.
test-rust:
	cargo test --profile fast --features gpu

# The f32 elementary functions over every input the losses use, f64 over 5e7 samples each.
test-exhaustive:
	cargo test --profile fast --features gpu --lib -- --ignored exhaustive --nocapture

# pytest's exit status 5 means it collected nothing: that is a failure here, said plainly.
test-python: dev-fast
	@$(VPY) -m pytest tests README.md --doctest-glob='*.md' ; status=$$? ; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi ; \
	exit $$status

lint: $(VENV)/.installed
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --all-features -- -D warnings
	RUSTDOCFLAGS=-Dwarnings cargo doc --no-deps --all-features -q
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(MAKE) dev-fast
	$(VENV)/bin/mypy
	$(VPY) -m mypy.stubtest bcers --ignore-missing-stub --allowlist stubtest-allowlist.txt

bench: dev
	cargo bench --bench kernels
	$(VPY) benches/bench.py

# Memory errors and leaks in the Rust tests, under valgrind's memcheck.
valgrind:
	scripts/valgrind.sh

# A long fuzzing run over the whole API (stable Rust: `cargo install cargo-fuzz`).
fuzz:
	cargo fuzz run --sanitizer none api fuzz/corpus/api -- -max_total_time=600 -max_len=2048

clean:
	cargo clean
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
