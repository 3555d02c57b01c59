# ratchetkit: one entry point for build, test and demo.
#   make demo   two parties establish a session and chat (the main job)
#   make test   every test (what CI runs through .ci/run)

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
PYTHON ?= python3
SEED ?= 1
PEER_RK := target/release/ratchetkit-peer
PEER_LS := node tests/interop/libsignal-peer/peer.js
DRIVER := $(PYTHON) tests/interop/driver.py

.PHONY: all build demo test lint rust-test interop interop-deps

all: build

build:
	$(CARGO) build --release --workspace

demo:
	$(CARGO) run --release --quiet --example chat

test: lint rust-test interop
	@echo "== all tests passed"

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --release -- -D warnings

rust-test:
	$(CARGO) test --workspace --release

interop-deps:
	cd tests/interop/libsignal-peer && npm ci --no-audit --no-fund
	$(CARGO) build --release -p ratchetkit-peer

# The four pairs: each must pass every scenario.
interop: interop-deps
	@echo "== interop: ratchetkit -> libsignal"
	$(DRIVER) --seed $(SEED) --alice "$(PEER_RK)" --bob "$(PEER_LS)"
	@echo "== interop: libsignal -> ratchetkit"
	$(DRIVER) --seed $(SEED) --alice "$(PEER_LS)" --bob "$(PEER_RK)"
	@echo "== interop: ratchetkit <-> ratchetkit"
	$(DRIVER) --seed $(SEED) --alice "$(PEER_RK)" --bob "$(PEER_RK)"
	@echo "== interop: libsignal <-> libsignal (proves the driver)"
	$(DRIVER) --seed $(SEED) --alice "$(PEER_LS)" --bob "$(PEER_LS)"
