#!/bin/sh
# Builds and runs every libFuzzer target tests/fuzz/fuzz_NAME.c as
# build/fuzz/NAME, for ${FUZZ_SECONDS:-30} seconds each, on a copy of
# tests/fuzz/corpus/NAME when there is one (the seeds in git stay as they
# are). A target links every src/*.c but main.c, unless it names its own
# sources on a line "// fuzz-sources: src/a.c src/b.c" (so a pure parser can
# be fuzzed while other modules are broken). Arguments, if any, pick targets
# by NAME. Exits non-zero if a target fails to build or finds a crash; the
# crashing input is left as build/fuzz/NAME-crash-* (and leak-*, timeout-*).
set -u
cd "$(dirname "$0")/../.." || exit 1

SECONDS_EACH=${FUZZ_SECONDS:-30}
CC=${FUZZ_CC:-clang}
# UBSan must abort, not just print, or libFuzzer never sees the bug.
CFLAGS="-std=c17 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -iquote src"
PKGS="libevent libevent_pthreads libevent_openssl libcares inih openssl zlib libcurl libpsl lmdb"
OUT=build/fuzz
mkdir -p "$OUT"

wanted() {
	[ $# -eq 1 ] && return 0
	name=$1
	shift 1
	for w in "$@"; do
		[ "$w" = "$name" ] && return 0
	done
	return 1
}

default_sources() {
	for f in src/*.c src/*/*.c; do
		[ "$f" = src/main.c ] || printf '%s ' "$f"
	done
}

failed=""
for target in tests/fuzz/fuzz_*.c; do
	[ -e "$target" ] || continue
	name=$(basename "$target" .c)
	name=${name#fuzz_}
	wanted "$name" "$@" || continue
	sources=$(sed -n 's|^// fuzz-sources:||p' "$target" | head -n 1)
	[ -n "$sources" ] || sources=$(default_sources)
	# Without the pkg-config packages a target that needs them fails to link,
	# which is reported below; a target with its own short list still builds.
	pkg=$(pkg-config --cflags --libs $PKGS 2>/dev/null) || pkg="-lz"
	echo "== fuzz $name: building ($sources)"
	# shellcheck disable=SC2086 # word splitting of the lists is intended
	if ! $CC $CFLAGS -o "$OUT/$name" "$target" $sources $pkg -pthread; then
		echo "== fuzz $name: BUILD FAILED" >&2
		failed="$failed $name"
		continue
	fi
	corpus="$OUT/$name.corpus"
	rm -rf "$corpus"
	mkdir -p "$corpus"
	[ -d "tests/fuzz/corpus/$name" ] && cp -R "tests/fuzz/corpus/$name/." "$corpus/"
	echo "== fuzz $name: running for ${SECONDS_EACH}s"
	if ! "./$OUT/$name" -max_total_time="$SECONDS_EACH" -print_final_stats=1 \
		-artifact_prefix="$OUT/$name-" "$corpus"; then
		echo "== fuzz $name: FAILED (see $OUT/$name-*)" >&2
		failed="$failed $name"
	fi
done

if [ -n "$failed" ]; then
	echo "fuzz: failed:$failed" >&2
	exit 1
fi
echo "fuzz: all targets ran clean"
