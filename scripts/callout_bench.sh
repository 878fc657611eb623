#!/bin/bash
# callout_bench: the accept-rate cost of recipients = callout when every
# address is already learned (cache hits), against recipients = * in the
# same run (docs/benchmarks.md, issue 9).
#
# Four fresh daemons of one build, alternately (star, callout, star,
# callout: drift on a shared machine hits both). Each: a warm-up of 200
# messages (the first alone) to x@bench.test while the primary (Postfix's smtp-sink) is up (the
# callout daemon asks it once and learns x@bench.test good), then the primary
# is stopped and CB_MSGS (2000) messages of CB_SIZE (4096) bytes are timed
# from smtp-source -s CB_SESSIONS (20). Each callout run must show exactly one
# callout in its log (the rest were cache hits) and every run must have
# queued all its messages, or its rate is n/a. Prints each rate and the
# server's CPU ms per message (/proc/PID/stat), the means, and the cost
# 1 - callout/star.
#
# Loopback only; every wait has a deadline; what is started here is stopped
# by pid on exit and the temporary directory (under build/) removed.
# Environment: CB_MSGS, CB_SIZE, CB_SESSIONS, MXVAULT_BIN (build/mxvault), PYTHON.
set -u

cd "$(dirname "$0")/.." || exit 1
REPO=$(pwd)
BIN=${MXVAULT_BIN:-$REPO/build/mxvault}
PY=${PYTHON:-python3}
MSGS=${CB_MSGS:-2000}
SIZE=${CB_SIZE:-4096}
SESS=${CB_SESSIONS:-20}
WARM=200
PATH=$PATH:/usr/sbin:/sbin

die() { echo "callout_bench: $*" >&2; exit 1; }
[ -x "$BIN" ] || die "$BIN not built (run make)"
for t in smtp-source smtp-sink "$PY" timeout; do
	command -v "$t" >/dev/null || die "$t not found"
done
mkdir -p build || die "cannot create build/"
TMP=$(mktemp -d "$REPO/build/callout-bench.XXXXXX") || die "mktemp failed"
chmod 755 "$TMP"
SINK_PID="" MXV_PID=""
stop_pid() { # pid: TERM, up to 15 s, then KILL
	[ -n "$1" ] || return 0
	kill -TERM "$1" 2>/dev/null || return 0
	n=150
	while [ $n -gt 0 ] && kill -0 "$1" 2>/dev/null; do sleep 0.1; n=$((n - 1)); done
	kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	return 0
}
cleanup() {
	stop_pid "$SINK_PID"
	stop_pid "$MXV_PID"
	rm -rf "$TMP"
}
trap cleanup EXIT INT TERM HUP

freeport() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
waitport() { # port seconds
	"$PY" -c 'import socket, sys, time
d = time.monotonic() + float(sys.argv[2])
while time.monotonic() < d:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close(); sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)' "$1" "$2"
}
now() { date +%s.%N; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; } # utime + stime
# Python's float formatting: the figures are for a table, not for sh arithmetic.
calc() { "$PY" -c "print('$1' % ($2))"; }

SINK_PORT=$(freeport)
# run MODE: one fresh daemon; sets RATE
run() {
	mode=$1
	rm -rf "$TMP/spool"
	PORT=$(freeport)
	if [ "$mode" = callout ]; then rcpt=callout; else rcpt='*'; fi
	printf '[server]\nhostname = mxvault.bench.test\nlisten = 127.0.0.1:%s\nspool = %s\nmax_sessions_per_ip = 1000\nmin_free_space = 0\nretry_min = 1m\n[domain bench.test]\nrecipients = %s\nprimary = 127.0.0.1:%s\nspf = off\ndmarc = off\n' \
		"$PORT" "$TMP/spool" "$rcpt" "$SINK_PORT" >"$TMP/mxvault.conf"
	smtp-sink -u "$(id -un)" "127.0.0.1:$SINK_PORT" 256 >/dev/null 2>&1 &
	SINK_PID=$!
	waitport "$SINK_PORT" 10 || die "smtp-sink did not start"
	"$BIN" serve -c "$TMP/mxvault.conf" 2>"$TMP/mxvault-$mode.log" &
	MXV_PID=$!
	waitport "$PORT" 10 || die "mxvault did not start: $(tail -3 "$TMP/mxvault-$mode.log")"
	# One message first: it makes the one callout, the rest are cache hits.
	timeout 60 smtp-source -s 1 -m 1 -l "$SIZE" -M client.b.test -f a@b.test -t x@bench.test \
		"127.0.0.1:$PORT" >/dev/null 2>&1 || die "first message against $mode failed"
	timeout 60 smtp-source -s "$SESS" -m $((WARM - 1)) -l "$SIZE" -M client.b.test -f a@b.test -t x@bench.test \
		"127.0.0.1:$PORT" >/dev/null 2>&1 || die "warm-up against $mode failed"
	stop_pid "$SINK_PID"
	SINK_PID=
	c0=$(cpu_ticks "$MXV_PID")
	t0=$(now)
	timeout 150 smtp-source -s "$SESS" -m "$MSGS" -l "$SIZE" -M client.b.test -f a@b.test -t x@bench.test \
		"127.0.0.1:$PORT" >"$TMP/source.log" 2>&1
	rc=$?
	t1=$(now)
	c1=$(cpu_ticks "$MXV_PID")
	RATE=$(calc '%.0f' "$MSGS / ($t1 - $t0)")
	CPU=$(calc '%.3f' "($c1 - $c0) * 1000.0 / $(getconf CLK_TCK) / $MSGS")
	[ $rc = 0 ] || { echo "callout_bench: smtp-source against $mode failed: $(tail -2 "$TMP/source.log")" >&2; RATE=n/a; }
	stop_pid "$MXV_PID"
	MXV_PID=
	callouts=$(grep -c 'callout: to=' "$TMP/mxvault-$mode.log")
	queued=$(grep -c 'result=queued' "$TMP/mxvault-$mode.log")
	if [ "$mode" = callout ] && [ "$callouts" != 1 ]; then
		echo "callout_bench: $callouts callouts in the callout run (expected 1)" >&2
		RATE=n/a
	fi
	if [ "$queued" -lt $((WARM + MSGS)) ]; then
		echo "callout_bench: $mode queued $queued messages, expected $((WARM + MSGS))" >&2
		RATE=n/a
	fi
	echo "run: recipients = $rcpt: $RATE msg/s, $CPU CPU ms/msg (callouts: $callouts, queued: $queued)"
}

echo "load: smtp-source -s $SESS -m $MSGS -l $SIZE (after $WARM warm-up messages); $(nproc) CPUs"
run star; S1=$RATE SC1=$CPU
run callout; C1=$RATE CC1=$CPU
run star; S2=$RATE SC2=$CPU
run callout; C2=$RATE CC2=$CPU
case "$S1$S2$C1$C2" in *n/a*) die "a run failed: no figure" ;; esac
S=$(calc '%.0f' "($S1 + $S2) / 2")
C=$(calc '%.0f' "($C1 + $C2) / 2")
echo "mean: recipients = *: $S msg/s, $(calc '%.3f' "($SC1 + $SC2) / 2") CPU ms/msg; recipients = callout (all cache hits): $C msg/s, $(calc '%.3f' "($CC1 + $CC2) / 2") CPU ms/msg"
echo "cost: $(calc '%.1f' "100 * (1 - $C / $S)")% of the accept rate"
