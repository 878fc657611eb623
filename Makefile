# mxvault build. `make` builds build/mxvault; `make test` installs what is
# missing (Debian, as root), builds with gcc, clang and ASan+UBSan, and runs
# the unit and end-to-end suites. See README.md.

CC      ?= gcc
PKGS    := libevent libevent_pthreads libevent_openssl libcares inih openssl zlib libcurl libpsl lmdb libsystemd
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla -Wformat=2
CFLAGS  ?= -O2 -g
# Headers are included by their folder ("spool/spool.h"), so -iquote src.
ALL_CFLAGS = -std=c17 -D_GNU_SOURCE -pthread -iquote src $(WARN) $(PKG_CFLAGS) $(CFLAGS) $(EXTRA_CFLAGS)
LDLIBS  = $(PKG_LIBS) -pthread $(EXTRA_LDFLAGS)

B       ?= build
SRCS    := $(sort $(wildcard src/*.c src/*/*.c))
OBJS    := $(SRCS:src/%.c=$(B)/obj/%.o)
DEPS    := $(OBJS:.o=.d)
LIBOBJS := $(filter-out $(B)/obj/main.o,$(OBJS))
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(B)/tests/%)
PYTHON  ?= /usr/bin/python3
ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

.PHONY: all deps run test unit e2e asan clang-check bench fuzz clean suites-spf
all: $(B)/mxvault

deps:
	@sh scripts/deps.sh

$(B)/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

-include $(DEPS)

$(B)/mxvault: $(OBJS)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)

$(B)/tests/%: tests/unit/%.c $(LIBOBJS) $(wildcard tests/unit/*.h) | $(B)/tests
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LIBOBJS) $(LDLIBS) -lcmocka

$(B)/tests:
	mkdir -p $@

# The SPF suites (docs/spf.md): the driver on the real resolver code, the
# zone data served by unbound on loopback; `make test` runs them under ASan+UBSan.
$(B)/tests/spf_suite: tests/suites/spf_suite.c $(LIBOBJS) | $(B)/tests
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LIBOBJS) $(LDLIBS)

suites-spf: $(B)/tests/spf_suite
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(PYTHON) tests/suites/run_spf.py $(B)/tests/spf_suite

run: deps all
	mkdir -p var
	./$(B)/mxvault serve -c examples/mxvault.conf

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; ./$$t; done

e2e: all
	MXVAULT_BIN=$(abspath $(B)/mxvault) $(PYTHON) -m unittest discover -s tests/e2e -p 'test_*.py' -v

# ASan+UBSan build (clang) of the daemon and the unit tests, which it runs.
asan:
	$(MAKE) B=build/asan CC=clang CFLAGS="$(ASAN_FLAGS)" EXTRA_LDFLAGS="-fsanitize=address,undefined" all unit

clang-check:
	$(MAKE) B=build/clang CC=clang all

# The whole suite: unit tests with gcc and under ASan+UBSan, a clang build,
# then the end-to-end suite against the sanitized daemon.
test: deps suites-dkim
	$(MAKE) all unit
	$(MAKE) clang-check
	$(MAKE) asan
	$(MAKE) B=build/asan CC=clang CFLAGS="$(ASAN_FLAGS)" EXTRA_LDFLAGS="-fsanitize=address,undefined" suites-spf
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  MXVAULT_BIN=$(abspath build/asan/mxvault) $(PYTHON) tests/e2e/run.py

# Receive side against Postfix and smtp-sink, then the drain to a returning primary.
bench: deps all
	sh scripts/bench.sh
	bash scripts/drain_bench.sh
	bash scripts/callout_bench.sh
	bash scripts/milter_bench.sh
	bash scripts/metrics_bench.sh

fuzz: deps
	sh tests/fuzz/run.sh

clean:
	rm -rf build

# The public DMARC suites (tests/suites/dmarc_suite.c): record parse,
# alignment, From: domain and the PSL vectors, "N passed, N failed" per file.
DMARC_SUITES ?= ../shared/testsuites/dmarc
.PHONY: suites-dmarc
test: suites-dmarc
suites-dmarc: $(B)/tests/suite_dmarc
	./$(B)/tests/suite_dmarc $(DMARC_SUITES)
$(B)/tests/suite_dmarc: tests/suites/dmarc_suite.c $(LIBOBJS) | $(B)/tests
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LIBOBJS) $(LDLIBS)
# DKIM: the public suites (../shared/testsuites/dkim) against keys served by
# unbound on loopback, through tests/suites/dkim_verify (see run_dkim.py).
SUITES_DIR ?= $(abspath ../shared/testsuites)
$(B)/tests/dkim_verify: tests/suites/dkim_verify.c $(LIBOBJS) | $(B)/tests
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LIBOBJS) $(LDLIBS)

.PHONY: suites-dkim
suites-dkim: deps $(B)/tests/dkim_verify
	$(PYTHON) tests/suites/run_dkim.py --driver $(abspath $(B)/tests/dkim_verify) --suites $(SUITES_DIR)/dkim

# The man pages render without a warning (groff -ww); that they document every
# configuration key is checked by tests/unit/test_conf_doc.c.
.PHONY: man-lint
test: man-lint
man-lint: deps
	@for m in man/*.[0-9]; do out=$$(groff -man -ww -z $$m 2>&1); [ -z "$$out" ] || { echo "$$out"; exit 1; }; done; echo "man-lint: ok"
