#!/bin/bash
# drain_bench: how fast mxvault hands a backlog back to a primary that returns.
#
# Queues DRAIN_MSGS (10000) messages of DRAIN_SIZE (4096) bytes with
# smtp-source (20 sessions) while the primary, Postfix's smtp-sink, is down;
# then starts smtp-sink and times, by polling `mxvault queue list`, until the
# queue count first drops (the first delivery, to within the poll interval)
# and until it reaches 0. Prints:
#   drain: N messages in S s = R msg/s
#   first delivery after primary start: T s
# The primary is configured directly (primary = 127.0.0.1:PORT), so no DNS.
# Loopback only; every wait has a deadline (about 2 minutes in all); what is
# started here is stopped by pid on exit and the temporary directory (under
# build/, the repository's filesystem) removed unless DRAIN_KEEP is set.
#
# Environment: DRAIN_MSGS, DRAIN_SIZE, DRAIN_SESSIONS (20), MXVAULT_BIN
# (build/mxvault), DRAIN_PROBE (probe_interval, 1s), PYTHON (python3),
# DRAIN_BASELINE_BIN or MXVAULT_BASELINE_BIN (another build, drained first).
set -u

cd "$(dirname "$0")/.." || exit 1
REPO=$(pwd)
BIN=${MXVAULT_BIN:-$REPO/build/mxvault}
PY=${PYTHON:-python3}
MSGS=${DRAIN_MSGS:-10000}
SIZE=${DRAIN_SIZE:-4096}
SESS=${DRAIN_SESSIONS:-20}
PROBE=${DRAIN_PROBE:-1s}
PATH=$PATH:/usr/sbin:/sbin

die() { echo "drain_bench: $*" >&2; exit 1; }
[ -x "$BIN" ] || die "$BIN not built (run make)"
for t in smtp-source smtp-sink "$PY" timeout; do
	command -v "$t" >/dev/null || die "$t not found (sh scripts/deps.sh installs it)"
done
mkdir -p "$REPO/build" || die "cannot create build/"
TMP=$(mktemp -d "$REPO/build/drain.XXXXXX") || die "mktemp failed"

SINK_PID="" MXV_PID=""
stop_pid() { # pid: TERM, up to 10 s, then KILL
	[ -n "$1" ] || return 0
	kill -TERM "$1" 2>/dev/null || return 0
	for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	return 0
}
cleanup() {
	stop_pid "$SINK_PID"
	stop_pid "$MXV_PID"
	if [ -n "${DRAIN_KEEP:-}" ]; then echo "drain_bench: kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port_open() { "$PY" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$1" 2>/dev/null; }
# The number of queued messages ("-- N messages, B bytes"), or empty on error.
qcount() { "$BIN" queue list -c "$TMP/mxvault.conf" 2>/dev/null | tail -1 | awk '$1 == "--" { print $2 }'; }

# drain_run BIN: queue the backlog with the primary down, start it, time the drain.
drain_run() {
	BIN=$1
	rm -rf "$TMP/spool"
	: >"$TMP/mxvault.log"
	PORT=$(free_port) SINK=$(free_port)
	[ "$PORT" != "$SINK" ] || SINK=$(free_port)
	cat >"$TMP/mxvault.conf" <<EOF
[server]
hostname = backup.test
listen = 127.0.0.1:$PORT
spool = $TMP/spool
probe_interval = $PROBE
retry_min = 1s
retry_max = 4s

[domain bench.test]
recipients = $TMP/recipients
primary = 127.0.0.1:$SINK
# the drain is measured here, not the sender checks (bench.sh does that with
# its own resolver): without one they would ask the host's resolver
spf = off
dmarc = off
EOF

	"$BIN" serve -c "$TMP/mxvault.conf" 2>"$TMP/mxvault.log" &
	MXV_PID=$!
	for _ in $(seq 100); do port_open "$PORT" && break; kill -0 "$MXV_PID" 2>/dev/null || break; sleep 0.1; done
	port_open "$PORT" || die "mxvault did not start; log: $(tail -5 "$TMP/mxvault.log")"

	echo "queueing $MSGS messages of $SIZE bytes ($SESS sessions), primary down..."
	t=$(now)
	timeout 60 smtp-source -s "$SESS" -m "$MSGS" -l "$SIZE" -f sender@sender.test -t rcpt@bench.test \
		"127.0.0.1:$PORT" >"$TMP/smtp-source.log" 2>&1 || die "smtp-source failed: $(tail -3 "$TMP/smtp-source.log")"
	n=$(qcount)
	echo "queued: $n messages in $(secs "$t" "$(now)") s"
	[ "$n" = "$MSGS" ] || die "expected $MSGS queued messages, queue list says '${n:-error}'"

	echo "starting the primary (smtp-sink)..."
	t0=$(now)
	smtp-sink -u root "127.0.0.1:$SINK" 256 >"$TMP/smtp-sink.log" 2>&1 &
	SINK_PID=$!
	first="" last="$n" deadline=$(($(date +%s) + 90))
	poll=""
	while :; do
		tq=$(now)
		c=$(qcount)
		t=$(now)
		poll=$(awk -v a="$poll" -v b="$(secs "$tq" "$t")" 'BEGIN { printf "%.2f", (b + 0.2 > a ? b + 0.2 : a) }')
		if [ -n "$c" ]; then
			[ -z "$first" ] && [ "$c" -lt "$n" ] && first=$(secs "$t0" "$t")
			last=$c
			[ "$c" -eq 0 ] && break
		fi
		kill -0 "$SINK_PID" 2>/dev/null || die "smtp-sink exited: $(tail -3 "$TMP/smtp-sink.log")"
		[ "$(date +%s)" -lt "$deadline" ] || die "queue not empty after 90 s: $last left; first drop at ${first:-never}"
		sleep 0.2
	done
	el=$(secs "$t0" "$t")
	rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }'; }
	echo "drain: $n messages in $el s = $(rate "$n" "$el") msg/s"
	echo "first delivery after primary start: ${first} s (the queue count first dropped; polls up to $poll s apart)"
	# The same two figures from the daemon's log (millisecond timestamps): sharper
	# than polling, which is only as fine as one `queue list` of the whole spool.
	stamp() { date -u -d "$1" +%s.%N 2>/dev/null; }
	s1=$(grep -m1 'status=sent' "$TMP/mxvault.log" | cut -d' ' -f1)
	s2=$(grep ' done$' "$TMP/mxvault.log" | tail -1 | cut -d' ' -f1)
	if [ -n "$s1" ] && [ -n "$s2" ]; then
		f=$(secs "$t0" "$(stamp "$s1")") l=$(secs "$t0" "$(stamp "$s2")")
		echo "from the log: first delivery $f s, last message done $l s after primary start = $(rate "$n" "$l") msg/s"
	fi
	echo "delivered (log lines): $(grep -c 'status=sent' "$TMP/mxvault.log")"
	stop_pid "$SINK_PID"
	stop_pid "$MXV_PID"
	SINK_PID="" MXV_PID=""
}

# The recipients file holds "*": every build, old or new, reads that the same way.
printf '*\n' >"$TMP/recipients"
# DRAIN_BASELINE_BIN (or MXVAULT_BASELINE_BIN): another build, drained first in the same run.
BASE=${DRAIN_BASELINE_BIN:-${MXVAULT_BASELINE_BIN:-}}
SELF=$BIN # drain_run sets BIN, which qcount reads
if [ -n "$BASE" ]; then
	echo "== baseline: $BASE"
	drain_run "$BASE"
	echo "== this build: $SELF"
fi
drain_run "$SELF"
