# mixpaneld - Mixpanel-compatible analytics server.
#
#   make            build build/mixpaneld
#   make deps       install missing Debian -dev packages (as root) and test tools
#   make run        build and start the server with config.example.ini
#   make test       unit tests, fuzzers (briefly), e2e tests; then again under ASan+UBSan
#   make bench      ingestion benchmark, then query benchmark (see docs/PERFORMANCE.md)
#   make bench-query  query benchmark only (BENCH_EVENTS=200000 for a quick run)
#   make install    binary, /etc/mixpaneld/config.ini, systemd unit
#   make SAN=1      build into build/san/ with AddressSanitizer + UBSan
#   make fuzz       build the libFuzzer targets; make fuzz-long runs them for minutes
#   make lint       ban sprintf/strcpy/atoi/strcat/gets

PKGS      := libmicrohttpd sqlite3 libcjson libcurl openssl zlib
DEB_PKGS  := libmicrohttpd-dev libsqlite3-dev libcjson-dev libcurl4-openssl-dev libssl-dev zlib1g-dev pkg-config tzdata
TOOL_PKGS := clang libclang-rt-dev nodejs npm openssl sqlite3 curl chromium

CC      ?= cc
ifeq ($(SAN),1)
BUILD   := build/san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT     := -O1 -g
else
BUILD   := build
SANFLAGS :=
OPT     := -O2 -g
endif

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS  += -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE $(OPT) $(SANFLAGS) -Iinclude $(PKG_CFLAGS) -MMD -MP
LDLIBS  += $(PKG_LIBS) -lpthread -lm
LDFLAGS += $(SANFLAGS)

SRCS     := $(wildcard src/*.c)
SQL      := $(sort $(wildcard sql/shard/*.sql)) $(sort $(wildcard sql/meta/*.sql))
OBJS     := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(SRCS)) $(BUILD)/obj/schema.o
LIBOBJS  := $(filter-out $(BUILD)/obj/main.o,$(OBJS))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
TOOL_SRCS := $(wildcard tests/tools/*.c)
TOOL_BINS := $(patsubst tests/tools/%.c,$(BUILD)/tools/%,$(TOOL_SRCS))
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(FUZZ_SRCS))
FUZZ_SECONDS ?= 5

PREFIX  ?= /usr/local
CONFIG  ?= config.example.ini

.PHONY: all deps check-deps test-deps bench-deps test unit e2e fuzz fuzz-run fuzz-long test-san bench bench-query run install clean lint tools

all: check-deps $(BUILD)/mixpaneld

# Fails with a clear message (instead of a compiler error) when a library is missing.
check-deps:
	@missing=""; for p in $(PKGS); do pkg-config --exists $$p || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "missing libraries:$$missing -- run 'make deps' (as root)"; exit 1; fi

deps:
	@missing=""; for p in $(PKGS); do pkg-config --exists $$p 2>/dev/null || missing="$$missing $$p"; done; \
	command -v pkg-config >/dev/null || missing="$$missing pkg-config"; \
	[ -f /usr/share/zoneinfo/Europe/Paris ] || missing="$$missing tzdata"; \
	if [ -n "$$missing" ]; then \
	  echo "deps: missing$$missing; installing $(DEB_PKGS)"; \
	  if [ "$$(id -u)" != 0 ]; then echo "deps: run as root (or: apt-get install $(DEB_PKGS))"; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_PKGS) >/dev/null; \
	else echo "deps: all libraries present"; fi

# Tools the tests use: clang + sanitizer runtimes, node/npm, openssl, the sqlite3
# CLI, Chromium for the browser test; then the npm packages of tests/e2e.
test-deps: deps
	@real=""; for p in $(TOOL_PKGS); do \
	  case $$p in nodejs) command -v node >/dev/null && continue;; npm) command -v npm >/dev/null && continue;; esac; \
	  dpkg -s $$p >/dev/null 2>&1 || real="$$real $$p"; done; \
	if [ -n "$$real" ]; then echo "test-deps: installing$$real"; \
	  if [ "$$(id -u)" != 0 ]; then echo "test-deps: run as root (or install:$$real)"; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$real >/dev/null; fi
	@cd tests/e2e && if [ ! -f node_modules/.installed ] || [ package.json -nt node_modules/.installed ] || \
	    [ package-lock.json -nt node_modules/.installed ]; then \
	  npm install --no-audit --no-fund --silent >/dev/null && touch node_modules/.installed && echo "test-deps: npm packages installed"; fi

$(BUILD)/obj/%.o: src/%.c | $(BUILD)/obj
	$(CC) $(CFLAGS) -c $< -o $@

%/gen/schema.c: $(SQL) sql/gen_schema.sh
	@mkdir -p $(dir $@)
	sh sql/gen_schema.sh $(SQL) > $@

$(BUILD)/obj/schema.o: $(BUILD)/gen/schema.c | $(BUILD)/obj
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/mixpaneld: $(OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(LIBOBJS) tests/unit/testlib.h | $(BUILD)/tests
	$(CC) $(CFLAGS) -Itests/unit -o $@ $< $(LIBOBJS) $(LDFLAGS) $(LDLIBS)

$(BUILD)/tools/%: tests/tools/%.c $(LIBOBJS) | $(BUILD)/tools
	$(CC) $(CFLAGS) -o $@ $< $(LIBOBJS) $(LDFLAGS) $(LDLIBS)

$(BUILD)/obj $(BUILD)/tests $(BUILD)/tools build/fuzz:
	mkdir -p $@

tools: $(TOOL_BINS)

unit: $(UNIT_BINS)
	@fail=0; for t in $(UNIT_BINS); do $$t || fail=1; done; exit $$fail

# libFuzzer targets: clang, with ASan+UBSan, linked against the library sources.
build/fuzz/%: tests/fuzz/%.c $(filter-out src/main.c,$(SRCS)) build/gen/schema.c | build/fuzz
	clang -std=c11 -D_GNU_SOURCE -g -O1 -Iinclude $(PKG_CFLAGS) -fsanitize=fuzzer,address,undefined \
	  -o $@ $< $(filter-out src/main.c,$(SRCS)) build/gen/schema.c $(PKG_LIBS) -lpthread -lm


fuzz: $(FUZZ_BINS)

# Replay each committed corpus, then fuzz for FUZZ_SECONDS per target.
fuzz-run: fuzz
	@for f in $(FUZZ_BINS); do n=$$(basename $$f); mkdir -p build/fuzz/corpus-$$n; \
	  echo "fuzz: $$n ($(FUZZ_SECONDS)s)"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -rss_limit_mb=2048 build/fuzz/corpus-$$n tests/fuzz/corpus/$$n \
	    >build/fuzz/$$n.log 2>&1 || { tail -40 build/fuzz/$$n.log; exit 1; }; done; echo "fuzz: all targets clean"

fuzz-long:
	$(MAKE) fuzz-run FUZZ_SECONDS=600

e2e: $(BUILD)/mixpaneld tools
	cd tests/e2e && MIXPANELD=$(CURDIR)/$(BUILD)/mixpaneld TOOLS=$(CURDIR)/$(BUILD)/tools node --test --test-concurrency=2 .

test-san:
	$(MAKE) SAN=1 unit e2e

test: test-deps
	$(MAKE) lint
	$(MAKE) all
	$(MAKE) unit
	$(MAKE) fuzz-run
	$(MAKE) e2e
	$(MAKE) test-san
	@echo "make test: all suites passed"

# The npm packages of tests/bench (DuckDB, the query benchmark's reference).
bench-deps: test-deps
	@cd tests/bench && if [ ! -f node_modules/.installed ] || [ package.json -nt node_modules/.installed ] || \
	    [ package-lock.json -nt node_modules/.installed ]; then \
	  npm install --no-audit --no-fund --silent >/dev/null && touch node_modules/.installed && echo "bench-deps: npm packages installed"; fi

# The three benchmarks, each even when an earlier one fails; fails if any did.
bench: deps test-deps bench-deps all tools
	@s=0; node tests/bench/bench.mjs || s=1; node tests/bench/query_bench.mjs || s=1; \
	  node tests/bench/identity_bench.mjs || s=1; exit $$s

# BENCH_EVENTS, BENCH_USERS, BENCH_DAYS scale the data set (default 10M, 200k, 90).
bench-query: deps test-deps bench-deps all tools
	node tests/bench/query_bench.mjs

# Identity resolution's cost: plain vs merged data (docs/PERFORMANCE.md, "Identity").
# BENCH_ID_EVENTS, BENCH_ID_USERS, BENCH_ID_DAYS scale it (default 2M, 40k, 90).
.PHONY: bench-identity
bench-identity: deps all tools
	node tests/bench/identity_bench.mjs

run: deps all
	@mkdir -p data
	$(BUILD)/mixpaneld --config $(CONFIG)

install: all
	install -D -m 0755 $(BUILD)/mixpaneld $(DESTDIR)$(PREFIX)/bin/mixpaneld
	install -d -m 0755 $(DESTDIR)/etc/mixpaneld
	@# the config holds API secrets: readable by root and the service's group only
	[ -e $(DESTDIR)/etc/mixpaneld/config.ini ] || \
	  sed 's|^data_dir *=.*|data_dir = /var/lib/mixpaneld|' config.example.ini > $(DESTDIR)/etc/mixpaneld/config.ini
	chmod 0640 $(DESTDIR)/etc/mixpaneld/config.ini
	install -d -m 0755 $(DESTDIR)/etc/systemd/system
	sed 's|/usr/local/bin/mixpaneld|$(PREFIX)/bin/mixpaneld|' docs/mixpaneld.service > $(DESTDIR)/etc/systemd/system/mixpaneld.service
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then \
	  id mixpaneld >/dev/null 2>&1 || useradd --system --home /var/lib/mixpaneld --shell /usr/sbin/nologin mixpaneld; \
	  chgrp mixpaneld /etc/mixpaneld/config.ini; \
	  echo "installed; start it with: systemctl daemon-reload && systemctl enable --now mixpaneld"; \
	else \
	  echo "installed under $(DESTDIR); on the target: useradd --system --home /var/lib/mixpaneld --shell /usr/sbin/nologin mixpaneld,"; \
	  echo "chgrp mixpaneld /etc/mixpaneld/config.ini, then systemctl daemon-reload && systemctl enable --now mixpaneld"; \
	fi

lint:
	@if grep -nE '\b(sprintf|strcpy|strcat|atoi|gets)\s*\(' src/*.c include/*.h; then \
	  echo "lint: banned function (use snprintf, memcpy with a length, strtol)"; exit 1; fi; echo "lint: ok"

clean:
	rm -rf build

-include $(OBJS:.o=.d)
