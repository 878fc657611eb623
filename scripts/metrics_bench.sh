#!/bin/bash
# metrics_bench: what http_listen costs the store path (issue 10), measured in
# one run (`make bench` runs it): the same smtp-source load (BENCH_MSGS
# messages of BENCH_SIZE bytes over BENCH_SESSIONS sessions, after a warm-up)
# against a fresh mxvault with http_listen off, on (listening, nobody asks),
# and on while a scraper (curl, on the same CPUs) asks for /metrics and /
# every BENCH_SCRAPE_S seconds (Prometheus'
# default is 15 s; the default here, 1 s, is harsher), alternating
# BENCH_ROUNDS times so that drift on a shared disk falls on every side. Prints one line per run and
# the medians; writes them to build/bench/metrics.txt.
#
# Loopback only; every wait has a deadline; everything started is stopped
# (by pid) and the temporary directory removed on exit.
set -u
cd "$(dirname "$0")/.." || exit 1
REPO=$(pwd)
BIN=${MXVAULT_BIN:-$REPO/build/mxvault}
PY=${PYTHON:-python3}
MSGS=${BENCH_MSGS:-5000}
SESS=${BENCH_SESSIONS:-50}
SIZE=${BENCH_SIZE:-4096}
WARM=${BENCH_WARMUP:-200}
ROUNDS=${BENCH_ROUNDS:-3}
SCRAPE=${BENCH_SCRAPE_S:-1}
OUT=$REPO/build/bench
PATH=$PATH:/usr/sbin:/sbin

die() { echo "metrics_bench: $*" >&2; exit 1; }
[ -x "$BIN" ] || die "$BIN not built (run make)"
command -v smtp-source >/dev/null || die "smtp-source not found (sh scripts/deps.sh installs postfix)"
command -v curl >/dev/null || die "curl not found"
mkdir -p "$OUT" || die "cannot create $OUT"
TMP=$(mktemp -d "$OUT/metrics.XXXXXX") || die "mktemp failed"
MXV_PID="" SCRAPER_PID=""
stop_pid() { # pid: TERM, up to 10 s, then KILL
	[ -n "$1" ] || return 0
	kill "$1" 2>/dev/null || return 0
	for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	return 0
}
cleanup() {
	stop_pid "$SCRAPER_PID"
	stop_pid "$MXV_PID"
	rm -rf "$TMP"
}
trap cleanup EXIT INT TERM HUP

freeport() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
waitport() { # port: up to 10 s
	"$PY" - "$1" <<'PYEOF'
import socket, sys, time
end = time.monotonic() + 10
while time.monotonic() < end:
    try:
        socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)
PYEOF
}
# The scraper: GET /metrics and / every SCRAPE seconds until killed (curl: little CPU of its own).
scraper() { # port
	while :; do
		curl -sf -o /dev/null "http://127.0.0.1:$1/metrics" && curl -sf -o /dev/null "http://127.0.0.1:$1/" &&
			echo x >>"$TMP/scrapes"
		sleep "$SCRAPE"
	done
}

printf '*\n' >"$TMP/recipients"
# run MODE (off | on: listening, nobody asks | scraped): prints msgs/s of the timed run and
# mxvault's CPU ms per message in it
run() {
	rm -rf "$TMP/spool"
	sync # the previous run's writeback must not fall on this one
	port=$(freeport) down=$(freeport) hport=$(freeport)
	{
		echo '[server]'
		echo 'hostname = mxvault.bench.test'
		echo "listen = 127.0.0.1:$port"
		echo "spool = $TMP/spool"
		echo 'min_free_space = 0'
		[ "$1" != off ] && echo "http_listen = 127.0.0.1:$hport"
		echo '[domain bench.test]'
		echo "recipients = $TMP/recipients"
		echo "primary = 127.0.0.1:$down"
		echo 'spf = off' # no resolver here: the sender checks would wait on the system's
		echo 'dmarc = off'
	} >"$TMP/mxvault.conf"
	"$BIN" serve -c "$TMP/mxvault.conf" 2>"$TMP/mxvault-$1.log" &
	MXV_PID=$!
	waitport "$port" || { echo n/a; stop_pid "$MXV_PID"; MXV_PID=; return; }
	timeout 120 smtp-source -s "$SESS" -m "$WARM" -l "$SIZE" -f a@b.test -t x@bench.test "127.0.0.1:$port" >/dev/null 2>&1
	if [ "$1" = scraped ]; then
		scraper "$hport" &
		SCRAPER_PID=$!
	fi
	c0=$(cputicks "$MXV_PID")
	t0=$(date +%s.%N)
	timeout 300 smtp-source -s "$SESS" -m "$MSGS" -l "$SIZE" -f a@b.test -t x@bench.test "127.0.0.1:$port" \
		>"$TMP/source.log" 2>&1
	rc=$?
	t1=$(date +%s.%N)
	c1=$(cputicks "$MXV_PID")
	stop_pid "$SCRAPER_PID"
	SCRAPER_PID=
	stop_pid "$MXV_PID"
	MXV_PID=
	[ "$rc" = 0 ] || { echo n/a n/a; return; }
	awk "BEGIN { printf \"%.0f %.3f\n\", $MSGS / ($t1 - $t0), ($c1 - $c0) * 1000 / $HZ / $MSGS }"
}
cputicks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; } # utime + stime
HZ=$(getconf CLK_TCK 2>/dev/null || echo 100)
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)]; else print "n/a" }'; }

echo "metrics_bench: $MSGS messages of $SIZE bytes over $SESS sessions, $ROUNDS rounds, scraping every ${SCRAPE}s" >&2
: >"$TMP/off" && : >"$TMP/on" && : >"$TMP/scraped"
MODES="off on scraped"
for r in $(seq "$ROUNDS"); do
	line="round $r:"
	for mode in $MODES; do
		set -- $(run $mode)
		echo "$1" >>"$TMP/$mode"
		echo "$2" >>"$TMP/$mode.cpu"
		line="$line $mode $1 msgs/s $2 ms CPU/msg;"
	done
	echo "$line" >&2
	MODES="${MODES#* } ${MODES%% *}" # each mode goes first in turn: no order favours one
done
ratio() { awk "BEGIN { if (\"$1\" + 0 > 0 && \"$2\" + 0 > 0) printf \"%.3f\", $1 / $2; else print \"n/a\" }"; }
OFF=$(grep -v n/a "$TMP/off" | median)
ON=$(grep -v n/a "$TMP/on" | median)
SCR=$(grep -v n/a "$TMP/scraped" | median)
{
	echo "metrics_msgs=$MSGS"
	echo "metrics_rounds=$ROUNDS"
	echo "metrics_scrape_every_s=$SCRAPE"
	echo "metrics_http_off_msgs_per_s=$OFF"
	echo "metrics_http_on_msgs_per_s=$ON"
	echo "metrics_http_scraped_msgs_per_s=$SCR"
	echo "metrics_http_off_cpu_ms_per_msg=$(median <"$TMP/off.cpu")"
	echo "metrics_http_on_cpu_ms_per_msg=$(median <"$TMP/on.cpu")"
	echo "metrics_http_scraped_cpu_ms_per_msg=$(median <"$TMP/scraped.cpu")"
	echo "metrics_on_over_off=$(ratio "$ON" "$OFF")"
	echo "metrics_scraped_over_off=$(ratio "$SCR" "$OFF")"
} | tee "$OUT/metrics.txt"
