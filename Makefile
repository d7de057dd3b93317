# Tributary. Every target installs what it needs first (scripts/setup.sh, idempotent: a second
# run downloads nothing), so these work on a fresh machine.
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -euo pipefail -c
ENV = eval "$$(scripts/setup.sh)"

.PHONY: demo test bench-smoke setup contracts lint bench gpu

## Run the whole demo on embedded defaults (anvil, lake and SQLite under .tributary/demo);
## installs only what the demo runs (anvil, solc-js, torch, the GraphiQL assets).
demo:
	eval "$$(scripts/setup.sh --demo)"
	cargo build --bin tributary
	cargo run --quiet --bin tributary -- demo $(ARGS)

## Run every test: unit, integration (real anvil, Delta on disk, SQLite), end to end; then
## every benchmark at a tiny scale (`bench-smoke`), so a benchmark that breaks fails here.
test:
	$(ENV)
	cargo test --workspace --no-fail-fast
	$(MAKE) --no-print-directory bench-smoke

## Every benchmark of `make bench` at a tiny scale (TRIBUTARY_BENCH_SMOKE=1: seconds each, both
## sides checked to agree as in the full run), in the test profile. The query benchmark reads
## the graph the ancestry benchmark's smoke run leaves.
bench-smoke:
	eval "$$(scripts/setup.sh --bench)"
	export TRIBUTARY_BENCH_SMOKE=1 TRIBUTARY_BENCH_DB="$$(mktemp -d)/graph.db"
	cargo test -p tributary-sql --bench ancestry
	cargo test -p tributary-api --bench query
	cargo test -p tributary-pipeline --bench ingest
	cargo test -p tributary-indexer --bench backfill
	cargo test -p tributary-trainer --bench lora_step --bench attribution --bench serving --bench gpu
	rm -rf "$$(dirname "$$TRIBUTARY_BENCH_DB")"

## Install tools (anvil, solc-js, torch venv, PostgreSQL) into the cache folder.
setup:
	scripts/setup.sh

## Recompile contracts/src into the committed artifacts in contracts/out.
contracts:
	$(ENV)
	node contracts/build.js

## Benchmarks (release-like `bench-fast` profile), side by side with their references; the
## results go to BENCHMARKS.md by hand, with the machine and date.
## TRIBUTARY_BENCH_RECORDS sets the record count of the ingest benchmark (default 1,000,000),
## TRIBUTARY_BENCH_SCALE the size of the ancestry benchmark's graph (default 1.0: 1.1M nodes;
## kept in TRIBUTARY_BENCH_DB, default ~/.cache/tributary/bench-graph.db, and reused by the
## query benchmark), of the query benchmark's lake (1M contributions)
## and of the backfill benchmark's chain (default 1.0: 20,000 blocks, 140,000 events).
bench:
	eval "$$(scripts/setup.sh --bench)"
	cargo bench --profile bench-fast -p tributary-pipeline --bench ingest
	export TRIBUTARY_BENCH_DB=$${TRIBUTARY_BENCH_DB:-$$HOME/.cache/tributary/bench-graph.db}
	cargo bench --profile bench-fast -p tributary-sql --bench ancestry
	cargo bench --profile bench-fast -p tributary-api --bench query
	cargo bench --profile bench-fast -p tributary-indexer --bench backfill
	cargo bench --profile bench-fast -p tributary-trainer --bench lora_step
	cargo bench --profile bench-fast -p tributary-trainer --bench attribution
	cargo bench --profile bench-fast -p tributary-trainer --bench serving

## What CI checks besides the tests.
lint:
	$(ENV)
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	# The layering (ARCHITECTURE.md): the trainer is compute only, and api links no libtorch.
	if cargo tree -p tributary-trainer -e normal,dev,build --prefix none \
		| grep -E '^(alloy|deltalake|sqlx|axum)[ -]'; then
		echo "tributary-trainer must not depend on the crates above"; exit 1
	fi
	if cargo tree -p tributary-api -e normal,build --prefix none | grep -E '^(tch|torch-sys) '; then
		echo "tributary-api must not link libtorch"; exit 1
	fi

## The GPU check (issue 24) on this machine's GPU: builds the bundle, then runs the GPU tests
## and benchmarks side by side with PyTorch + PEFT (scripts/gpu-check.sh; results in .gpu/out).
gpu:
	$(ENV)
	scripts/gpu-check.sh bundle
	scripts/gpu-check.sh run
