# ratchetkit: one entry point for build, test and demo.
#   make demo   two parties establish a session and chat (the main job)
#   make test   every test (what CI runs through .ci/run)

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
PYTHON ?= python3
SEED ?= 1
PEER_RK := $(or $(CARGO_TARGET_DIR),target)/release/ratchetkit-peer
PEER_LS := node tests/interop/libsignal-peer/peer.js
PEER_LS090 := node tests/interop/libsignal-peer-090/peer.js
PEER_LS0101 := node tests/interop/libsignal-peer-0101/peer.js
DRIVER := $(PYTHON) tests/interop/driver.py

.PHONY: all build demo test lint rust-test interop interop-deps bench bench-test keyserver-test keyserver-bench demo-directory

all: build

build:
	$(CARGO) build --release --workspace

demo:
	$(CARGO) run --release --quiet --example chat
	@$(MAKE) --no-print-directory demo-c
	@$(MAKE) --no-print-directory demo-py
	@$(MAKE) --no-print-directory demo-directory

test: lint rust-test fuzz-short c-test interop crash-test two-process-test py-test py-interop bench-test keyserver-test demo-directory
	@echo "== all tests passed"

# Benchmarks (criterion) and the report: `make bench` writes BENCHMARKS.md.
# `make bench-test` (part of `make test`) only checks that everything runs:
# a few milliseconds per benchmark, results in a separate directory.
BENCH_OUT = $(TARGET_DIR)/bench-results
bench: lib py-venv keyserver-bench
	@mkdir -p $(BENCH_OUT)
	$(CARGO) bench --bench protocol -- --warm-up-time 1 --measurement-time 3 --noplot
	$(CARGO) bench --bench durable -- --warm-up-time 1 --measurement-time 5 --noplot
	$(CC) -std=c99 -O2 -Wall -Wextra -Werror -pedantic -Iinclude benches/c_roundtrip.c \
		-o $(B)/c_roundtrip $(RK_LINK_BENCH)
	$(B)/c_roundtrip > $(BENCH_OUT)/c.json
	$(VENV_PY) benches/python_roundtrip.py --json > $(BENCH_OUT)/python.json
	$(PYTHON) benches/report.py --dir $(TARGET_DIR)/criterion --bindings $(BENCH_OUT) > BENCHMARKS.md
	cat BENCHMARKS.md

bench-test: lib py-venv
	@mkdir -p $(BENCH_OUT)-quick
	CRITERION_HOME=$(TARGET_DIR)/criterion-quick $(CARGO) bench --bench protocol -- \
		--warm-up-time 0.01 --measurement-time 0.05 --sample-size 10 --noplot >/dev/null
	RK_DURABLE_BENCH_QUICK=1 CRITERION_HOME=$(TARGET_DIR)/criterion-quick $(CARGO) bench --bench durable -- \
		--warm-up-time 0.01 --measurement-time 0.05 --sample-size 10 --noplot >/dev/null
	$(CC) -std=c99 -O2 -Wall -Wextra -Werror -pedantic -Iinclude benches/c_roundtrip.c \
		-o $(B)/c_roundtrip $(RK_LINK_BENCH)
	$(B)/c_roundtrip --quick > $(BENCH_OUT)-quick/c.json
	$(VENV_PY) benches/python_roundtrip.py --quick --json > $(BENCH_OUT)-quick/python.json
	$(PYTHON) benches/report.py --dir $(TARGET_DIR)/criterion-quick --check \
		--bindings $(BENCH_OUT)-quick

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --release -- -D warnings

rust-test:
	$(CARGO) test --workspace --exclude ratchetkit-keyserver --release

# Fuzzing (fuzz/ is its own cargo workspace). cargo-fuzz needs nightly
# flags: RUSTC_BOOTSTRAP=1 allows them on the stable toolchain. Each target
# replays its committed seeds (fuzz/corpus/<t>, read only), then fuzzes for
# FUZZ_SECONDS in one process (one worker), FUZZ_JOBS targets at a time; new
# inputs go to fuzz/run/<t> and crashes to fuzz/artifacts/<t> (both ignored
# by git). A crash, leak or timeout fails. Wall time on a clean clone with
# two cores: build about 3.5 min, then 6 rounds of about 40 s.
.PHONY: fuzz-deps fuzz-short
CARGO_FUZZ_VERSION := 0.13.2
FUZZ_TARGETS := parse_message decrypt_whisper decrypt_prekey restore bundle fingerprint ffi kem durable spqr_message decrypt_spqr
FUZZ_SECONDS ?= 40
FUZZ_JOBS ?= 2
FUZZ := RUSTC_BOOTSTRAP=1 nice -n 19 $(CARGO) fuzz

fuzz-deps:
	@$(CARGO) fuzz --version 2>/dev/null | grep -qx 'cargo-fuzz $(CARGO_FUZZ_VERSION)' \
		|| $(CARGO) install cargo-fuzz --version $(CARGO_FUZZ_VERSION) --locked

fuzz-short: fuzz-deps
	$(FUZZ) build
	@rm -rf fuzz/run && mkdir -p fuzz/run
	@echo "== fuzz: $(FUZZ_SECONDS) s per target, $(FUZZ_JOBS) at a time"
	@printf '%s\n' $(FUZZ_TARGETS) | xargs -P $(FUZZ_JOBS) -I{} sh -c '\
		mkdir -p fuzz/run/{}; \
		$(FUZZ) run {} fuzz/run/{} fuzz/corpus/{} -- -max_total_time=$(FUZZ_SECONDS) \
			-timeout=10 -print_final_stats=1 > fuzz/run/{}.log 2>&1 \
		|| { echo "== fuzz: {} FAILED"; tail -n 60 fuzz/run/{}.log; exit 1; }'
	@for t in $(FUZZ_TARGETS); do \
		echo "== fuzz: $$t: $$(grep -E '^Done' fuzz/run/$$t.log)"; \
	done

interop-deps:
	cd tests/interop/libsignal-peer && npm ci --no-audit --no-fund
	cd tests/interop/libsignal-peer-090 && npm ci --no-audit --no-fund
	cd tests/interop/libsignal-peer-0101 && npm ci --no-audit --no-fund
	$(CARGO) build --release -p ratchetkit-peer

# One driver run: $(1) the label, $(2) alice's peer command, $(3) bob's,
# $(4) more driver options (session version, scenario list).
define interop_pair
	@echo "== interop: $(1)"
	$(DRIVER) --seed $(SEED) --alice "$(2)" --bob "$(3)" $(4)
endef

# Scenario sets (driver --list shows every name). Session version 4: the
# classic scenarios with Kyber bundles, plus the Kyber prekey scenarios; the
# v3 policy scenarios run only where the pair can start version 3.
INTEROP_V4 := --session-version 4 --scenarios classic,kyber
INTEROP_V4_LS_TO_090 := --session-version 4 --scenarios classic,kyber,v3_refused,v3_refused_default
INTEROP_V4_LS_LS := --session-version 4 --scenarios classic,kyber,v3_refused,v3_accepted
# SPQR (issue 13): every scenario with 0.101.0 (SPQR required) and the long
# SPQR run (loss, reordering, duplicates, past epoch 3 on both sides).
INTEROP_V4_TO_0101 := --session-version 4 --scenarios classic,kyber,v3_refused_default,spqr_long
INTEROP_V4_0101 := --session-version 4 --scenarios classic,kyber,spqr_long
# (Options with commas go through variables: $(call) splits at commas.)
INTEROP_SPQR_OFFERED_TO_090 := --session-version 4 --scenarios classic,spqr_offered --alice-spqr offered
INTEROP_SPQR_RK_RK := --session-version 4 --scenarios spqr_refused,spqr_long,spqr_offered

# Session version 3: the four pairs, each must pass every classic scenario.
# The ratchetkit peer also runs in durable mode (--durable: init with a
# store file) against 0.90.0 both ways and against itself.
# Session version 4: ratchetkit against the official versions and itself,
# and the libsignal pairs (they prove the driver and the peers). The v3
# policy scenarios run where the initiator can start version 3 (0.90.0
# and 0.101.0 cannot; ratchetkit and 0.72.1 can).
# SPQR: ratchetkit's default policy is "required" (as 0.101.0). 0.90.0
# offers SPQR, so it talks to it as is; 0.72.1 has no SPQR, so the
# ratchetkit peer runs with spqr "offered" against it (falls back to none);
# spqr_refused shows a required peer refusing one without SPQR.
interop: interop-deps
	$(call interop_pair,ratchetkit -> libsignal,$(PEER_RK),$(PEER_LS))
	$(call interop_pair,libsignal -> ratchetkit,$(PEER_LS),$(PEER_RK))
	$(call interop_pair,ratchetkit <-> ratchetkit,$(PEER_RK),$(PEER_RK))
	$(call interop_pair,libsignal <-> libsignal (proves the driver),$(PEER_LS),$(PEER_LS))
	$(call interop_pair,v4: ratchetkit -> libsignal 0.90.0,$(PEER_RK),$(PEER_LS090),$(INTEROP_V4_LS_TO_090))
	$(call interop_pair,v4: libsignal 0.90.0 -> ratchetkit,$(PEER_LS090),$(PEER_RK),$(INTEROP_V4))
	$(call interop_pair,v4: ratchetkit (spqr offered) -> libsignal 0.72.1,$(PEER_RK),$(PEER_LS),$(INTEROP_V4_LS_LS) --alice-spqr offered)
	$(call interop_pair,v4: libsignal 0.72.1 -> ratchetkit (spqr offered),$(PEER_LS),$(PEER_RK),$(INTEROP_V4_LS_LS) --bob-spqr offered)
	$(call interop_pair,spqr: ratchetkit -> libsignal 0.101.0,$(PEER_RK),$(PEER_LS0101),$(INTEROP_V4_TO_0101))
	$(call interop_pair,spqr: libsignal 0.101.0 -> ratchetkit,$(PEER_LS0101),$(PEER_RK),$(INTEROP_V4_0101))
	$(call interop_pair,spqr: ratchetkit (offered) <-> libsignal 0.90.0,$(PEER_RK),$(PEER_LS090),$(INTEROP_SPQR_OFFERED_TO_090))
	$(call interop_pair,spqr: libsignal 0.90.0 -> ratchetkit (offered),$(PEER_LS090),$(PEER_RK),--session-version 4 --scenarios classic --bob-spqr offered)
	$(call interop_pair,spqr: ratchetkit (offered) <-> libsignal 0.72.1,$(PEER_RK),$(PEER_LS),--session-version 4 --scenarios spqr_offered)
	$(call interop_pair,spqr: libsignal 0.72.1 (none) -> ratchetkit (required) refused,$(PEER_LS),$(PEER_RK),--session-version 4 --scenarios spqr_refused)
	$(call interop_pair,spqr: ratchetkit (off) -> libsignal 0.101.0 (required) refused,$(PEER_RK),$(PEER_LS0101),--session-version 4 --scenarios spqr_refused)
	$(call interop_pair,spqr: ratchetkit <-> ratchetkit (required refuses off; long; offered),$(PEER_RK),$(PEER_RK),$(INTEROP_SPQR_RK_RK))
	$(call interop_pair,spqr: libsignal 0.101.0 <-> 0.101.0 (proves the driver),$(PEER_LS0101),$(PEER_LS0101),--session-version 4 --scenarios spqr_long)
	$(call interop_pair,v4: ratchetkit <-> ratchetkit,$(PEER_RK),$(PEER_RK),$(INTEROP_V4_LS_LS))
	$(call interop_pair,v4: libsignal 0.72.1 -> 0.90.0,$(PEER_LS),$(PEER_LS090),$(INTEROP_V4_LS_TO_090))
	$(call interop_pair,v4: libsignal 0.90.0 -> 0.72.1,$(PEER_LS090),$(PEER_LS),$(INTEROP_V4))
	$(call interop_pair,v4: libsignal 0.90.0 <-> 0.90.0,$(PEER_LS090),$(PEER_LS090),$(INTEROP_V4))
	$(call interop_pair,v4: libsignal 0.72.1 <-> 0.72.1,$(PEER_LS),$(PEER_LS),$(INTEROP_V4_LS_LS))
	$(call interop_pair,v4: ratchetkit (durable) -> libsignal 0.90.0,$(PEER_RK),$(PEER_LS090),$(INTEROP_V4_LS_TO_090) --durable alice)
	$(call interop_pair,v4: libsignal 0.90.0 -> ratchetkit (durable),$(PEER_LS090),$(PEER_RK),$(INTEROP_V4) --durable bob)
	$(call interop_pair,v4: ratchetkit (durable) <-> ratchetkit (durable),$(PEER_RK),$(PEER_RK),$(INTEROP_V4_LS_LS) --durable both)
	@echo "== interop: the PQXDH fixture still verifies with 0.90.0"
	cd tests/interop/libsignal-peer-090 && node make-v4-fixture.js

# ---- Durable store (issue 10): SIGKILL crash test, two processes on one file ----
#   make crash-test         a ratchetkit peer in durable mode killed with SIGKILL
#                           CRASH_KILLS times (split over a ratchetkit and a
#                           libsignal 0.90.0 live peer), checked after each kill
#                           (part of `make test`)
#   make crash-test-full    the same with CRASH_KILLS_FULL kills (not in make test)
#   make two-process-test   two durable peers on one database file, TWO_PROCESS_OPS
#                           operations each, against both live peers (part of make test)
# tests/interop/README.md describes what each checks.
.PHONY: crash-test crash-test-full two-process-test
CRASH_KILLS ?= 100
CRASH_KILLS_FULL ?= 1000
TWO_PROCESS_OPS ?= 5000
DURABLE_LIVE = --live "$(PEER_RK)" --live "$(PEER_LS090)"

crash-test: interop-deps
	@echo "== crash test: $(CRASH_KILLS) SIGKILLs"
	$(PYTHON) tests/interop/crash_test.py --seed $(SEED) --kills $(CRASH_KILLS) \
		--child "$(PEER_RK)" $(DURABLE_LIVE)

crash-test-full: interop-deps
	@echo "== crash test: $(CRASH_KILLS_FULL) SIGKILLs"
	$(PYTHON) tests/interop/crash_test.py --seed $(SEED) --kills $(CRASH_KILLS_FULL) \
		--child "$(PEER_RK)" $(DURABLE_LIVE)

two-process-test: interop-deps
	@echo "== two processes on one durable store: $(TWO_PROCESS_OPS) operations each"
	$(PYTHON) tests/interop/two_process_test.py --seed $(SEED) --ops $(TWO_PROCESS_OPS) \
		--child "$(PEER_RK)" $(DURABLE_LIVE)

# ---- C ABI: shared/static library, header, C and C++ tests and examples ----
#   make c-test                  everything below (part of `make test`)
#   make demo-c                  the C and C++ examples
#   make install PREFIX=/opt/rk  library (.so with SONAME links, .a), headers,
#                                pkg-config file; DESTDIR is honoured

.PHONY: c-test c-deps lib c-header c-symbols c-build c-run c-asan c-valgrind \
	install install-test demo-c clean-c

CC ?= cc
CXX ?= g++
PKG_CONFIG ?= pkg-config
PREFIX ?= /usr/local
DESTDIR ?=
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
ABI := $(shell sed -n 's/^pub const RK_ABI_VERSION: u32 = \([0-9]*\);/\1/p' src/ffi/abi.rs)
# What a static link needs besides libratchetkit.a (rustc --print native-static-libs).
LIBS_PRIVATE := -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
B := build
STAGE := $(B)/lib
# Test programs find the staged library next to them, whatever the checkout path.
RK_LINK := -L$(STAGE) -lratchetkit -Wl,-rpath,'$$ORIGIN/../lib'
RK_LINK_BENCH := -L$(STAGE) -lratchetkit -Wl,-rpath,'$$ORIGIN/lib'
C_TESTS := test_api test_threads test_durable test_directory
C_FLAGS := -std=c11 -Wall -Wextra -Werror -g -pthread -Iinclude -DEXPECTED_VERSION='"$(VERSION)"'
EX_C_FLAGS := -std=c99 -Wall -Wextra -Werror -pedantic -g -Iinclude
EX_CXX_FLAGS := -std=c++17 -Wall -Wextra -Werror -pedantic -g -Iinclude -Ibindings/cpp
SAN := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
VALGRIND := valgrind --error-exitcode=99 --leak-check=full --show-leak-kinds=definite \
	--errors-for-leak-kinds=definite --track-origins=yes

c-test: c-header c-symbols c-run c-asan c-valgrind install-test
	@echo "== C ABI: all checks passed"

# valgrind and pkg-config, when missing (a fresh machine; CI runs as root).
c-deps:
	@missing=""; \
	command -v valgrind >/dev/null || missing="$$missing valgrind"; \
	command -v $(PKG_CONFIG) >/dev/null || missing="$$missing pkg-config"; \
	if [ -n "$$missing" ]; then \
		echo "== installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# The library as it installs: libratchetkit.so.<version> with the SONAME
# link libratchetkit.so.<abi> and the dev link libratchetkit.so, and the .a.
lib:
	$(CARGO) build --release -p ratchetkit
	@mkdir -p $(STAGE)
	cp -f $(TARGET_DIR)/release/libratchetkit.so $(STAGE)/libratchetkit.so.$(VERSION)
	ln -sf libratchetkit.so.$(VERSION) $(STAGE)/libratchetkit.so.$(ABI)
	ln -sf libratchetkit.so.$(ABI) $(STAGE)/libratchetkit.so
	cp -f $(TARGET_DIR)/release/libratchetkit.a $(STAGE)/libratchetkit.a

# The committed header is the generated one, and it compiles cleanly as C99
# and C++17 (the C++ wrapper too).
c-header: lib
	@echo "== header: committed include/ matches the generated header"
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
		git diff --exit-code -- include/ || { echo "include/ differs from the generated header: commit it"; exit 1; }; \
		test -z "$$(git status --porcelain -- include/)" || { git status --short -- include/; echo "uncommitted files in include/"; exit 1; }; \
	else echo "(not a git checkout: diff check skipped)"; fi
	@echo "== header: gcc -std=c99 -pedantic, g++ -std=c++17"
	echo '#include "ratchetkit.h"' | $(CC) -std=c99 -Wall -Wextra -Werror -pedantic -Iinclude -x c -fsyntax-only -
	echo '#include "ratchetkit.h"' | $(CXX) -std=c++17 -Wall -Wextra -Werror -Iinclude -x c++ -fsyntax-only -
	echo '#include "ratchetkit.hpp"' | $(CXX) $(EX_CXX_FLAGS) -x c++ -fsyntax-only -
	@echo "== header: version macros = Cargo.toml ($(VERSION)), ABI = $(ABI)"
	grep -qx '#define RK_VERSION_STRING "$(VERSION)"' include/ratchetkit.h
	grep -qx '#define RK_ABI_VERSION $(ABI)' include/ratchetkit.h

# Exported symbols = include/ratchetkit.symbols = the header's functions;
# nothing but rk_ is exported; the SONAME carries the ABI version; every
# exported function is called from tests/c.
c-symbols: lib
	@mkdir -p $(B)
	nm -D --defined-only $(STAGE)/libratchetkit.so | awk '{print $$NF}' | sort > $(B)/symbols.exported
	@echo "== symbols: exported = include/ratchetkit.symbols"
	diff -u include/ratchetkit.symbols $(B)/symbols.exported
	@echo "== symbols: header functions = include/ratchetkit.symbols"
	grep -oE '^(RK_MUST_USE )?[a-z][a-z0-9_ ]*[ *]rk_[a-z0-9_]+\(' include/ratchetkit.h \
		| sed -E 's/.*[ *](rk_[a-z0-9_]+)\($$/\1/' | sort | diff -u include/ratchetkit.symbols -
	@echo "== symbols: SONAME libratchetkit.so.$(ABI)"
	readelf -d $(STAGE)/libratchetkit.so | grep -F 'Library soname: [libratchetkit.so.$(ABI)]'
	@echo "== symbols: every exported function is exercised by tests/c"
	@for s in $$(cat include/ratchetkit.symbols); do \
		grep -qw "$$s" tests/c/*.c || { echo "not called from tests/c: $$s"; exit 1; }; \
	done; echo "$$(wc -l < include/ratchetkit.symbols) functions, all called"

c-build: lib
	@mkdir -p $(B)/c $(B)/c-asan $(B)/cpp
	for t in $(C_TESTS); do \
		$(CC) $(C_FLAGS) tests/c/$$t.c -o $(B)/c/$$t $(RK_LINK); \
		$(CC) $(C_FLAGS) $(SAN) tests/c/$$t.c -o $(B)/c-asan/$$t $(RK_LINK); \
	done
	$(CC) $(EX_C_FLAGS) examples/c/chat.c -o $(B)/c/chat $(RK_LINK)
	$(CC) $(EX_C_FLAGS) $(SAN) examples/c/chat.c -o $(B)/c-asan/chat $(RK_LINK)
	$(CC) $(EX_C_FLAGS) examples/c/directory_client.c -o $(B)/c/directory_client $(RK_LINK)
	$(CXX) $(EX_CXX_FLAGS) examples/cpp/chat.cpp -o $(B)/cpp/chat $(RK_LINK)
	$(CXX) $(EX_CXX_FLAGS) $(SAN) examples/cpp/chat.cpp -o $(B)/c-asan/chat-cpp $(RK_LINK)

c-run: c-build
	@for t in $(C_TESTS); do echo "== C: $$t"; $(B)/c/$$t; done

# AddressSanitizer + UBSan (on the C side; leaks are checked across the
# whole process by LeakSanitizer).
c-asan: c-build
	@for t in $(C_TESTS) chat chat-cpp; do \
		echo "== ASan+UBSan: $$t"; \
		ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		$(B)/c-asan/$$t > $(B)/c-asan/$$t.out 2>&1 || { cat $(B)/c-asan/$$t.out; exit 1; }; \
		grep -E 'passed|Done' $(B)/c-asan/$$t.out; \
	done

# valgrind memcheck: 0 errors and nothing definitely lost, or it fails.
c-valgrind: c-deps c-build
	@for t in c/test_api c/test_threads c/test_durable c/test_directory c/chat cpp/chat; do \
		log=$(B)/$$t.valgrind.log; \
		echo "== valgrind: $$t"; \
		$(VALGRIND) --log-file=$$log $(B)/$$t > /dev/null || { cat $$log; exit 1; }; \
		grep -q 'ERROR SUMMARY: 0 errors' $$log || { cat $$log; exit 1; }; \
		grep -Eq 'definitely lost: 0 bytes|All heap blocks were freed' $$log || { cat $$log; exit 1; }; \
		grep -E 'ERROR SUMMARY|definitely lost|All heap blocks' $$log | sed 's/^==[0-9]*== */   /'; \
	done

install: lib
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 0755 $(STAGE)/libratchetkit.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libratchetkit.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libratchetkit.so.$(ABI)
	ln -sf libratchetkit.so.$(ABI) $(DESTDIR)$(PREFIX)/lib/libratchetkit.so
	install -m 0644 $(STAGE)/libratchetkit.a $(DESTDIR)$(PREFIX)/lib/
	install -m 0644 include/ratchetkit.h bindings/cpp/ratchetkit.hpp $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' -e 's|@LIBS_PRIVATE@|$(LIBS_PRIVATE)|' \
		ratchetkit.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/ratchetkit.pc

# Install into a scratch prefix, then build the examples against the
# installed copy through pkg-config, dynamically and statically, and run them.
IT := $(CURDIR)/$(B)/install-test
install-test: c-deps lib
	rm -rf $(IT)
	$(MAKE) --no-print-directory install PREFIX=$(IT)/usr
	@echo "== install: pkg-config --cflags --libs ratchetkit"
	PKG_CONFIG_PATH=$(IT)/usr/lib/pkgconfig $(PKG_CONFIG) --modversion ratchetkit | grep -qx '$(VERSION)'
	PKG_CONFIG_PATH=$(IT)/usr/lib/pkgconfig $(PKG_CONFIG) --cflags --libs ratchetkit
	$(CC) -std=c99 -Wall -Wextra -Werror examples/c/chat.c -o $(IT)/chat \
		$$(PKG_CONFIG_PATH=$(IT)/usr/lib/pkgconfig $(PKG_CONFIG) --cflags --libs ratchetkit) \
		-Wl,-rpath,$(IT)/usr/lib
	$(CXX) -std=c++17 -Wall -Wextra -Werror examples/cpp/chat.cpp -o $(IT)/chat-cpp \
		$$(PKG_CONFIG_PATH=$(IT)/usr/lib/pkgconfig $(PKG_CONFIG) --cflags --libs ratchetkit) \
		-Wl,-rpath,$(IT)/usr/lib
	$(CC) -std=c99 -Wall -Wextra -Werror examples/c/chat.c -o $(IT)/chat-static \
		$$(PKG_CONFIG_PATH=$(IT)/usr/lib/pkgconfig $(PKG_CONFIG) --cflags ratchetkit) \
		$(IT)/usr/lib/libratchetkit.a \
		$$(PKG_CONFIG_PATH=$(IT)/usr/lib/pkgconfig $(PKG_CONFIG) --static --libs ratchetkit | sed 's/-lratchetkit//')
	@echo "== install: the programs load the installed libratchetkit.so.$(ABI)"
	readelf -d $(IT)/chat | grep -F 'Shared library: [libratchetkit.so.$(ABI)]'
	ldd $(IT)/chat | grep -F '$(IT)/usr/lib/libratchetkit.so.$(ABI)'
	! readelf -d $(IT)/chat-static | grep -F libratchetkit
	$(IT)/chat > $(IT)/chat.out && tail -n 1 $(IT)/chat.out
	$(IT)/chat-cpp > $(IT)/chat-cpp.out && tail -n 1 $(IT)/chat-cpp.out
	$(IT)/chat-static > $(IT)/chat-static.out && tail -n 1 $(IT)/chat-static.out

demo-c: c-build
	@echo
	@echo "== C example (examples/c/chat.c)"
	@$(B)/c/chat
	@echo
	@echo "== C++ example (examples/cpp/chat.cpp, bindings/cpp/ratchetkit.hpp)"
	@$(B)/cpp/chat

clean-c:
	rm -rf $(B)

# ---- Python binding (bindings/python, ctypes over the C library) ----
#   make py-venv     build/venv: pip installs ./bindings/python (which runs
#                    cargo build --release and bundles libratchetkit.so) and
#                    the pinned test requirements
#   make py-test     pytest tests/python (includes `python -m build --wheel`,
#                    and handle races run under valgrind: c-deps installs it)
#   make py-interop  the Python peer against libsignal 0.72.1 (both
#                    directions) and the ratchetkit peer in session version
#                    3, and in version 4 against libsignal 0.90.0 (both
#                    directions) and the ratchetkit peer (the scenario sets
#                    of `make interop`)
#   make demo-py     examples/python/chat.py

.PHONY: py-venv py-test py-interop demo-py py-bench

VENV := $(B)/venv
VENV_PY := $(VENV)/bin/python
PIP_QUIET := --quiet --disable-pip-version-check
PEER_PY := $(VENV_PY) tests/interop/python_peer.py

py-venv:
	@test -x $(VENV_PY) || { echo "== python: creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	$(VENV_PY) -m pip install $(PIP_QUIET) -r tests/python/requirements.txt
	@echo "== python: pip install ./bindings/python (cargo build --release, bundled library)"
	$(VENV_PY) -m pip install $(PIP_QUIET) ./bindings/python

py-test: py-venv c-deps
	@echo "== python: pytest tests/python"
	cd tests/python && ../../$(VENV_PY) -m pytest -q -p no:cacheprovider .

py-interop: py-venv interop-deps
	$(call interop_pair,python -> libsignal,$(PEER_PY),$(PEER_LS))
	$(call interop_pair,libsignal -> python,$(PEER_LS),$(PEER_PY))
	$(call interop_pair,python -> ratchetkit,$(PEER_PY),$(PEER_RK))
	$(call interop_pair,v4: python -> libsignal 0.90.0,$(PEER_PY),$(PEER_LS090),$(INTEROP_V4_LS_TO_090))
	$(call interop_pair,v4: libsignal 0.90.0 -> python,$(PEER_LS090),$(PEER_PY),$(INTEROP_V4))
	$(call interop_pair,v4: python -> ratchetkit,$(PEER_PY),$(PEER_RK),$(INTEROP_V4_LS_LS))

# The key directory flow: the key server on loopback, a C client and a
# Python client meet through it (examples/python/directory_chat.py).
demo-directory: c-build py-venv
	@echo
	@echo "== Key directory (examples/python/directory_chat.py, examples/c/directory_client.c)"
	$(CARGO) build --release --quiet -p ratchetkit-keyserver
	@$(VENV_PY) examples/python/directory_chat.py \
		--server $(TARGET_DIR)/release/ratchetkit-keyserver --client $(B)/c/directory_client

demo-py: py-venv
	@echo
	@echo "== Python example (examples/python/chat.py)"
	@$(VENV_PY) examples/python/chat.py

# The binding's round trip (100 B) against the native one (cargo bench).
py-bench: py-venv
	$(VENV_PY) benches/python_roundtrip.py

# The reference key server (keyserver/): its suite on SQLite and on a
# throwaway PostgreSQL cluster, then the OpenAPI-driven fuzz run.
keyserver-test:
	CARGO="$(CARGO)" keyserver/scripts/test.sh

# Bundle fetches/s and latency on SQLite and PostgreSQL beside the floor;
# writes keyserver/BENCHMARKS.md.
keyserver-bench:
	CARGO="$(CARGO)" keyserver/scripts/bench.sh
