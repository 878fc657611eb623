#!/bin/sh
# milter_bench: the accept-rate cost of one milter, measured in one run.
#
# Starts the bench milter (tests/e2e/milters/bench_accept.py: pymilter, sees
# every stage, headers and body included, accepts at the end of data) and two
# fresh mxvault daemons from the same binary, one with `milter =` that milter
# and one without; sender checks off (they would ask a resolver) and the
# primary down, so every message stays queued. Then smtp-source -s SESS -m
# MSGS against each, ROUNDS times alternating (off, on, off, on...), and prints
# the messages per second of each run and the ratio of the medians.
#
# Environment: BENCH_MSGS (2000), BENCH_SESSIONS (20), BENCH_SIZE (4096),
# BENCH_ROUNDS (3), MXVAULT_BIN (build/mxvault). Loopback only; every wait has
# a deadline; what is started here is stopped (by pid) on exit.
set -u
cd "$(dirname "$0")/.." || exit 1
REPO=$(pwd)
BIN=${MXVAULT_BIN:-$REPO/build/mxvault}
MSGS=${BENCH_MSGS:-2000}
SESS=${BENCH_SESSIONS:-20}
SIZE=${BENCH_SIZE:-4096}
ROUNDS=${BENCH_ROUNDS:-3}
PATH=$PATH:/usr/sbin:/sbin
mkdir -p build/bench
TMP=$(mktemp -d "$REPO/build/bench/milter.XXXXXX") || exit 1
PIDS=""
cleanup() {
	for p in $PIDS; do kill "$p" 2>/dev/null; done
	for p in $PIDS; do wait "$p" 2>/dev/null; done
	rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
freeport() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
waitport() { # port seconds
	/usr/bin/python3 - "$1" "$2" <<'PY'
import socket, sys, time
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    try:
        socket.create_connection(('127.0.0.1', int(sys.argv[1])), 0.2).close(); sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)
PY
}
now() { date +%s.%N; }

MPORT=$(freeport)
/usr/bin/python3 tests/e2e/milters/bench_accept.py "inet:$MPORT@127.0.0.1" >"$TMP/milter.log" 2>&1 &
MILTER_PID=$!
PIDS="$PIDS $!"
waitport "$MPORT" 10 || { echo "milter_bench: the milter did not start" >&2; exit 1; }

start_daemon() { # name extra-server-line -> sets PORT
	PORT=$(freeport)
	DOWN=$(freeport)
	mkdir -p "$TMP/$1"
	printf 'x\n' >"$TMP/$1/recipients"
	cat >"$TMP/$1/mxvault.conf" <<CONF
[server]
hostname = mxvault.bench.test
listen = 127.0.0.1:$PORT
spool = $TMP/$1/spool
min_free_space = 0
$2
[domain bench.test]
recipients = $TMP/$1/recipients
primary = 127.0.0.1:$DOWN
spf = off
dmarc = off
CONF
	"$BIN" serve -c "$TMP/$1/mxvault.conf" 2>"$TMP/$1/log" &
	DPID=$!
	PIDS="$PIDS $!"
	waitport "$PORT" 10 || { echo "milter_bench: mxvault ($1) did not start" >&2; cat "$TMP/$1/log" >&2; exit 1; }
}
start_daemon off ""
OFF_PORT=$PORT OFF_PID=$DPID
start_daemon on "milter = inet:127.0.0.1:$MPORT"
ON_PORT=$PORT ON_PID=$DPID
cpu() { awk '{ printf "%.1f", ($14 + $15) / 100 }' "/proc/$1/stat"; } # user+system seconds (USER_HZ 100)

run() { # port -> prints msgs/s
	t0=$(now)
	timeout 300 smtp-source -s "$SESS" -m "$MSGS" -l "$SIZE" -M client.b.test -f a@b.test -t x@bench.test \
		"127.0.0.1:$1" >/dev/null 2>&1 || { echo "milter_bench: smtp-source failed" >&2; exit 1; }
	echo "$(now) $t0 $MSGS" | awk '{ printf "%.0f\n", $3 / ($1 - $2) }'
}
run "$OFF_PORT" >/dev/null # warm-up, both
run "$ON_PORT" >/dev/null
OFF="" ON=""
i=0
while [ "$i" -lt "$ROUNDS" ]; do
	OFF="$OFF $(run "$OFF_PORT")"
	ON="$ON $(run "$ON_PORT")"
	i=$((i + 1))
done
median() { echo "$@" | tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
MOFF=$(median $OFF)
MON=$(median $ON)
echo "load: smtp-source -s $SESS -m $MSGS -l $SIZE, $ROUNDS rounds each (after a warm-up run each)"
echo "milter off msgs/s:$OFF (median $MOFF)"
echo "milter on  msgs/s:$ON (median $MON)"
echo "$MON $MOFF" | awk '{ printf "on/off: %.2f\n", $1 / $2 }'
echo "cpu seconds, whole run: mxvault off $(cpu "$OFF_PID"), mxvault on $(cpu "$ON_PID"), the milter $(cpu "$MILTER_PID")"
grep -c "result=queued" "$TMP/on/log" | awk '{ print "milter on: " $1 " messages queued (warm-up included)" }'
grep -c "milter.*failed" "$TMP/on/log" | awk '{ print "milter on: " $1 " milter failures logged" }'
