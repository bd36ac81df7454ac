# qrupload — the everyday commands. `make` alone lists them.
.DEFAULT_GOAL := help
CARGO ?= cargo
CONF ?= configs

.PHONY: help build run test lint fmt migrate bench

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-8s %s\n", $$1, $$2}'

build: ## Build the release binary (target/release/qrupload)
	$(CARGO) build --release --locked

run: ## Run on embedded defaults: SQLite + local blobs + in-process bus, HTTP :8000, gRPC :9000
	$(CARGO) run --release --locked -- --conf $(CONF) serve

test: ## Run every test (PostgreSQL/Redis/browser tests join in when present; CI requires them)
	$(CARGO) test --workspace --locked --lib --bins --tests

lint: ## Format check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

bench: ## Short fan-out smoke beside nginx + nchan, both rows printed (full shapes: scripts/bench_all.sh)
	SHAPES=smoke IDLE=2 OUT=$${OUT:-/tmp/qrupload-bench-smoke.jsonl} PLOT=0 scripts/bench_all.sh

migrate: ## Apply migrations to the configured database (ARGS="down --steps 1" or ARGS=status for others)
	$(CARGO) run --release --locked -- --conf $(CONF) migrate $(or $(ARGS),up)
