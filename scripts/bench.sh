#!/bin/sh
# bench: what group commit buys, measured in one run on this machine (`make bench`).
#
# Measures, in order: the disk's fdatasync rate on the spool's filesystem;
# mxvault's memory per idle session, in clear and after STARTTLS; then the same
# smtp-source load against smtp-sink (no storage), mxvault and a private Postfix
# instance (mail kept in the hold queue, then in the deferred queue); then the
# same STARTTLS load (a Python asyncio client: smtp-source has no TLS) against
# mxvault and that Postfix, both with mxvault's certificate. Prints a table and writes the
# same numbers as key=value lines to build/bench/results.txt; the daemons' logs
# are kept in build/bench/ too. docs/benchmarks.md says what each number means.
#
# Loopback only. Every wait has a deadline. Everything started here is stopped,
# and the temporary directory (under build/bench, so on the repository's
# filesystem, not a tmpfs) removed, on exit. Postfix needs root; without it,
# or if its private instance does not start, its rows say why instead of a number.
#
# Environment: BENCH_MSGS (10000), BENCH_SESSIONS (50), BENCH_SIZE (4096),
# BENCH_IDLE (1000), BENCH_WARMUP (200), BENCH_TLS_MSGS (2000), MXVAULT_BIN
# (build/mxvault), PYTHON,
# MXVAULT_BASELINE_BIN (another build measured the same way in the same run).
set -u

cd "$(dirname "$0")/.." || exit 1
REPO=$(pwd)
BIN=${MXVAULT_BIN:-$REPO/build/mxvault}
PY=${PYTHON:-python3}
MSGS=${BENCH_MSGS:-10000}
SESS=${BENCH_SESSIONS:-50}
SIZE=${BENCH_SIZE:-4096}
IDLE=${BENCH_IDLE:-1000}
WARM=${BENCH_WARMUP:-200}
TLS_MSGS=${BENCH_TLS_MSGS:-2000}
OUT=$REPO/build/bench
RES=$OUT/results.txt
PATH=$PATH:/usr/sbin:/sbin

die() { echo "bench: $*" >&2; exit 1; }
[ -x "$BIN" ] || die "$BIN not built (run make)"
for t in smtp-source smtp-sink "$PY" timeout; do
	command -v "$t" >/dev/null || die "$t not found (sh scripts/deps.sh installs it)"
done
mkdir -p "$OUT" || die "cannot create $OUT"
TMP=$(mktemp -d "$OUT/run.XXXXXX") || die "mktemp failed"
chmod 755 "$TMP" # the private Postfix's unprivileged daemons walk into it

# --- cleanup: stop what we started (by pid), then remove the temp dir --------
SRC_PID="" SINK_PID="" MXV_PID="" PERF_PID="" UB_PID="" PFX_CONF="" PFX_MASTER="" PFX_KIDS=""
wait_gone() { # pid seconds: waits until pid has exited or the deadline passed
	n=$(($2 * 10))
	while [ "$n" -gt 0 ] && kill -0 "$1" 2>/dev/null; do sleep 0.1; n=$((n - 1)); done
}
stop_pid() { # pid [seconds] [signal]: the signal (TERM), wait up to the deadline, then SIGKILL
	[ -n "$1" ] || return 0
	kill -"${3:-TERM}" "$1" 2>/dev/null || return 0
	wait_gone "$1" "${2:-10}"
	kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	return 0
}
pfx_stop() {
	[ -n "$PFX_CONF" ] || return 0
	PFX_MASTER=$(tr -d " " <"$TMP/postfix/queue/pid/master.pid" 2>/dev/null)
	[ -n "$PFX_MASTER" ] && PFX_KIDS=$(pgrep -P "$PFX_MASTER" 2>/dev/null | tr '\n' ' ')
	timeout 30 postfix -c "$PFX_CONF" stop >/dev/null 2>&1
	stop_pid "$PFX_MASTER" 10
	for k in $PFX_KIDS; do stop_pid "$k" 5; done
	PFX_CONF=
}
cleanup() {
	trap - EXIT INT TERM HUP
	stop_pid "$SRC_PID" 5 # timeout(1) passes the signal on to smtp-source
	stop_pid "$PERF_PID" 5 INT
	stop_pid "$SINK_PID" 5
	stop_pid "$MXV_PID" 15
	stop_pid "$UB_PID" 5
	pfx_stop
	[ -f "$TMP/mxvault.log" ] && cp "$TMP/mxvault.log" "$OUT/mxvault.log"
	[ -f "$TMP/postfix/maillog" ] && cp "$TMP/postfix/maillog" "$OUT/postfix.maillog"
	rm -rf "$TMP" "$RES.tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# --- helpers ----------------------------------------------------------------
cat >"$TMP/bench.py" <<'EOF'
"""bench.py: the parts of scripts/bench.sh that need sockets or syscalls."""
import os, resource, socket, sys, time

def read_greeting(s, deadline):
    data = b''
    while b'\n' not in data:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        d = s.recv(512)
        if not d:
            break
        data += d
    return data.startswith(b'220')

def freeport():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    print(s.getsockname()[1])
    s.close()

def waitport(port, secs):
    """Exit 0 once 127.0.0.1:port sends a 220 greeting."""
    deadline = time.monotonic() + float(secs)
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(('127.0.0.1', int(port)), timeout=1) as s:
                if read_greeting(s, min(deadline, time.monotonic() + 2)):
                    s.sendall(b'QUIT\r\n')
                    return 0
        except OSError:
            pass
        time.sleep(0.05)
    return 1

def syncrate(path, secs):
    """4 KiB appends, each followed by fdatasync, for secs: syncs per second."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
    buf, n, t0 = b'x' * 4096, 0, time.monotonic()
    end = t0 + float(secs)
    while True:
        os.write(fd, buf)
        os.fdatasync(fd)
        n += 1
        now = time.monotonic()
        if now >= end:
            break
    os.close(fd)
    os.unlink(path)
    print('%.0f' % (n / (now - t0)))

def rss_kib(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    raise RuntimeError('no VmRSS')

def idle_rss(n, pid, secs, open_sessions):
    """RSS of pid before and 0.5 s after open_sessions(n, deadline) returned
    (its sockets, how many got where they should), then the sockets are closed.
    Prints RSS before, RSS after, sessions that got there."""
    n, pid = int(n), int(pid)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < n + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n + 64 if hard == resource.RLIM_INFINITY else min(n + 64, hard), hard))
    time.sleep(0.5)  # let the probe session's teardown settle
    before = rss_kib(pid)
    socks, ok = open_sessions(n, time.monotonic() + float(secs))
    time.sleep(0.5)
    after = rss_kib(pid)
    for s in socks:
        s.close()
    print(before, after, ok)

def idle(port, n, pid, secs):
    """n sessions that read their greeting, then stay idle."""
    def open_sessions(n, deadline):
        socks, greeted = [], 0
        for _ in range(n):
            if time.monotonic() >= deadline:
                break
            socks.append(socket.create_connection(('127.0.0.1', int(port)), timeout=5))
        for s in socks:
            try:
                if time.monotonic() < deadline and read_greeting(s, deadline):
                    greeted += 1
            except OSError:
                pass
        return socks, greeted
    idle_rss(n, pid, secs, open_sessions)

def read_reply(f):
    while True:
        line = f.readline()
        if len(line) < 4:
            raise ConnectionError('connection closed')
        if line[3:4] != b'-':
            return int(line[:3])

def client_tls():
    import ssl
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # as MTAs do toward an MX without DANE or MTA-STS
    return ctx

def idle_tls(port, n, pid, secs):
    """n sessions that say EHLO, STARTTLS and EHLO again, then stay idle."""
    ctx = client_tls()
    def open_sessions(n, deadline):
        socks, ok = [], 0
        for _ in range(n):
            if time.monotonic() >= deadline:
                break
            try:
                s = socket.create_connection(('127.0.0.1', int(port)), timeout=5)
                socks.append(s)
                f = s.makefile('rb')
                read_reply(f)
                s.sendall(b'EHLO idle.bench.test\r\n')
                read_reply(f)
                s.sendall(b'STARTTLS\r\n')
                if read_reply(f) != 220:
                    continue
                socks[-1] = t = ctx.wrap_socket(s, server_hostname='mxvault.bench.test')
                t.sendall(b'EHLO idle.bench.test\r\n')
                ok += read_reply(t.makefile('rb')) == 250
            except OSError:
                pass
        return socks, ok
    idle_rss(n, pid, secs, open_sessions)

def tlsload(port, total, sessions, size):
    """total messages over `sessions` concurrent STARTTLS sessions (one message
    per connection, as smtp-source does), spread over one process per CPU so the
    client is not the bottleneck. Prints elapsed seconds and messages that got 250."""
    import asyncio
    total, sessions, size = int(total), int(sessions), int(size)
    procs = max(1, min(os.cpu_count() or 1, sessions))
    body = (b'Subject: tls bench\r\n\r\n' + b'x' * 76 + b'\r\n') * max(1, size // 78) + b'.\r\n'

    async def one(ctx):
        r, w = await asyncio.open_connection('127.0.0.1', int(port))
        async def reply():
            while True:
                line = await r.readline()
                if len(line) < 4:
                    raise ConnectionError('closed')
                if line[3:4] != b'-':
                    return int(line[:3])
        try:
            steps = [(None, 220), (b'EHLO load.bench.test\r\n', 250), (b'STARTTLS\r\n', 220)]
            for cmd, want in steps:
                if cmd:
                    w.write(cmd)
                if await reply() != want:
                    return False
            await w.start_tls(ctx, server_hostname='mxvault.bench.test')
            for cmd, want in [(b'EHLO load.bench.test\r\n', 250), (b'MAIL FROM:<a@b.test>\r\n', 250),
                              (b'RCPT TO:<x@bench.test>\r\n', 250), (b'DATA\r\n', 354), (body, 250),
                              (b'QUIT\r\n', 221)]:
                w.write(cmd)
                if await reply() != want:
                    return False
            return True
        finally:
            w.close()

    async def run(n, conc):
        ctx = client_tls()
        left, good = [n], [0]
        async def worker():
            while left[0] > 0:
                left[0] -= 1
                try:
                    ok = await asyncio.wait_for(one(ctx), 60)
                except (OSError, asyncio.TimeoutError, ConnectionError):
                    ok = False
                good[0] += ok  # after the await: `good[0] += await ...` would lose updates
        await asyncio.gather(*(worker() for _ in range(conc)))
        return good[0]

    t0 = time.monotonic()
    kids = []
    for i in range(procs):
        n = total // procs + (i < total % procs)
        conc = sessions // procs + (i < sessions % procs)
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(rfd)
            got = asyncio.run(run(n, conc))
            os.write(wfd, str(got).encode())
            os._exit(0)
        os.close(wfd)
        kids.append((pid, rfd))
    good = 0
    for pid, rfd in kids:
        data = b''
        while True:
            d = os.read(rfd, 64)
            if not d:
                break
            data += d
        os.close(rfd)
        os.waitpid(pid, 0)
        good += int(data or 0)
    print('%.3f %d' % (time.monotonic() - t0, good))

sys.exit(globals()[sys.argv[1]](*sys.argv[2:]) or 0)
EOF
bpy() { "$PY" "$TMP/bench.py" "$@"; }
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"$1\", $2 }"; } # calc FMT EXPR
div() { # div A B FMT: A/B, or n/a when either is not a number or B is 0
	case "$1$2" in *[!0-9.-]* | '') echo n/a; return ;; esac
	awk -v a="$1" -v b="$2" -v f="$3" 'BEGIN { if (b + 0 == 0) print "n/a"; else printf f "\n", a / b }'
}
R() { echo "$1=$2" >>"$RES.tmp"; } # one result line

# perf counts fsync/fdatasync system calls cheaply (in-kernel counters).
HAVE_PERF=0
perf stat -x, -e syscalls:sys_enter_fdatasync -o /dev/null true >/dev/null 2>&1 && HAVE_PERF=1
perf_start() { # perf_start -p PID | -a
	[ "$HAVE_PERF" = 1 ] || return 0
	rm -f "$TMP/perf.out"
	perf stat -x, -e syscalls:sys_enter_fdatasync,syscalls:sys_enter_fsync -o "$TMP/perf.out" "$@" \
		>/dev/null 2>&1 &
	PERF_PID=$!
	sleep 0.5 # perf attaches asynchronously
}
perf_stop() { # sets FDS and FSS: fdatasync and fsync calls counted, or n/a
	FDS=n/a FSS=n/a
	[ -n "$PERF_PID" ] || return 0
	stop_pid "$PERF_PID" 5 INT # perf prints its counts on SIGINT
	PERF_PID=""
	set -- $(awk -F, '$3 ~ /fdatasync/ { d = $1 } $3 ~ /sys_enter_fsync/ { f = $1 }
		END { if (d ~ /^[0-9]+$/ && f ~ /^[0-9]+$/) print d, f }' "$TMP/perf.out" 2>/dev/null)
	[ $# = 2 ] && FDS=$1 FSS=$2
	return 0
}

# source_run LABEL PORT COUNT: runs smtp-source; sets ELAPSED (s); fails if it did.
source_run() {
	t0=$(now)
	# In the background so that a signal to this script is handled at once (wait returns).
	timeout 150 smtp-source -s "$SESS" -m "$3" -l "$SIZE" -M client.b.test -f a@b.test -t x@bench.test "127.0.0.1:$2" \
		>"$TMP/source-$1.log" 2>&1 &
	SRC_PID=$!
	wait "$SRC_PID"
	rc=$?
	SRC_PID=""
	ELAPSED=$(calc %.3f "$(now) - $t0")
	[ "$rc" = 0 ] && return 0
	echo "bench: smtp-source against $1 failed (exit $rc):" >&2
	tail -3 "$TMP/source-$1.log" >&2
	return 1
}
# tls_run LABEL PORT: a warm-up, then $TLS_MSGS messages over $SESS STARTTLS sessions
# (bench.py tlsload); sets TLS_RATE (msgs/s, n/a when unknown) and TLS_OK (250s in the timed run).
TLS_WARM=$((WARM < 200 ? WARM : 200))
tls_run() {
	tls_label=$1 tls_port=$2
	TLS_RATE=n/a TLS_OK=0
	timeout 120 "$PY" "$TMP/bench.py" tlsload "$tls_port" "$TLS_WARM" "$SESS" "$SIZE" >/dev/null 2>&1
	set -- $(timeout 300 "$PY" "$TMP/bench.py" tlsload "$tls_port" "$TLS_MSGS" "$SESS" "$SIZE" \
		2>"$TMP/tlsload-$tls_label.log" || echo n/a 0)
	TLS_OK=${2:-0}
	[ "$TLS_OK" = "$TLS_MSGS" ] || echo "bench: $tls_label: $TLS_OK of $TLS_MSGS STARTTLS messages accepted" >&2
	TLS_RATE=$(div "$TLS_OK" "$1" %.0f)
}
cputicks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo n/a; } # utime + stime
# measure LABEL PORT SERVER_PID [PERF ARGS]: a warm-up of $WARM messages (not
# counted), the hook $BEFORE_MEASURE, then the timed run of $MSGS messages, with
# perf counting syncs if PERF ARGS are given. Sets RATE (msgs/s), FDS and FSS
# (sync calls), CPU_MS (the server's CPU time per message, if SERVER_PID is not
# empty), each n/a when unknown.
BEFORE_MEASURE=:
measure() {
	label=$1 port=$2 spid=$3
	shift 3
	RATE=n/a FDS=n/a FSS=n/a CPU_MS=n/a
	source_run "$label-warmup" "$port" "$WARM" || return 1
	$BEFORE_MEASURE
	[ $# -gt 0 ] && perf_start "$@"
	[ -n "$spid" ] && c0=$(cputicks "$spid")
	ok=0
	source_run "$label" "$port" "$MSGS" && ok=1
	[ -n "$spid" ] && CPU_MS=$(div "$(sum "$(cputicks "$spid")" "-$c0")" "$((MSGS * HZ / 1000))" %.3f)
	perf_stop
	[ "$ok" = 1 ] && RATE=$(div "$MSGS" "$ELAPSED" %.0f)
	return 0
}
sum() { case "$1$2" in *n/a*) echo n/a ;; *) echo $(($1 + $2)) ;; esac; }
HZ=$(getconf CLK_TCK 2>/dev/null || echo 100)

: >"$RES.tmp"
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $((IDLE + 200)) ] || ulimit -n $((IDLE + 1000)) 2>/dev/null

# --- machine ----------------------------------------------------------------
FS=$(findmnt -n -o FSTYPE -T "$TMP" 2>/dev/null || df -T "$TMP" | awk 'NR == 2 { print $2 }')
DEV=$(findmnt -n -o SOURCE -T "$TMP" 2>/dev/null || echo '?')
CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
MEMK=$(awk '/^MemTotal/ { print $2 }' /proc/meminfo)
R date "$(date -u '+%Y-%m-%d %H:%M UTC')"
R nproc "$(nproc)"
R cpu "${CPU:-unknown}"
R mem_mib $((MEMK / 1024))
R kernel "$(uname -sr)"
R spool_fs "$FS"
R spool_dev "$DEV"
R loadavg_at_start "$(cut -d' ' -f1-3 /proc/loadavg)"
R msgs "$MSGS"
R sessions "$SESS"
R tls_msgs "$TLS_MSGS"
R msg_size "$SIZE"
[ "$FS" = tmpfs ] && echo "bench: warning: $TMP is on tmpfs; sync numbers mean nothing" >&2
echo "bench: $(nproc) CPUs, $((MEMK / 1024)) MiB, $FS on $DEV, $(uname -sr)" >&2

# --- 1. the disk ------------------------------------------------------------
# Measured again at the end: on a shared or virtual disk the rate drifts.
echo "bench: fdatasync rate (2 s)..." >&2
FSYNC1=$(bpy syncrate "$TMP/syncrate" 2) || FSYNC1=n/a

# --- 2. smtp-sink: the SMTP exchange with no storage ---------------------------
echo "bench: smtp-sink..." >&2
PORT=$(bpy freeport)
U=
[ "$(id -u)" = 0 ] && U="-u root"
smtp-sink $U "127.0.0.1:$PORT" 1024 >"$TMP/sink.log" 2>&1 &
SINK_PID=$!
if bpy waitport "$PORT" 10; then
	measure sink "$PORT" "$SINK_PID"
	SINK=$RATE SINK_CPU=$CPU_MS
else
	echo "bench: smtp-sink did not start" >&2
	SINK=n/a SINK_CPU=n/a
fi
stop_pid "$SINK_PID" 5
SINK_PID=
R sink_msgs_per_s "$SINK"
R sink_cpu_ms_per_msg "$SINK_CPU"

# --- DNS for the sender-authentication checks (issue 8) -------------------------
# They are on by default (spf = tag, dmarc = tag), so every mxvault run gets
# [server] resolver = a private unbound on loopback that answers them at once:
# b.test's SPF record (a pass for 127.0.0.1), the HELO name client.b.test's
# (smtp-source -M) and _dmarc.b.test (p=none) from local data, 127.0.0.1's PTR (localhost.) and localhost.'s A from its built-in
# zones. Without it they would go to the system's resolver, and on a machine
# without one each would wait for its timeout.
auth_dns_start() { # sets UB_PORT, UB_PID; fails with AUTH_WHY
	AUTH_WHY=
	command -v unbound >/dev/null && command -v dig >/dev/null || { AUTH_WHY="needs unbound and dig"; return 1; }
	UB_PORT=$(bpy freeport)
	mkdir -p "$TMP/unbound"
	{
		echo 'server:'
		echo '  interface: 127.0.0.1'
		echo "  port: $UB_PORT"
		echo '  do-daemonize: no'
		echo '  username: ""'
		echo '  chroot: ""'
		echo "  directory: \"$TMP/unbound\""
		echo '  pidfile: ""'
		echo '  use-syslog: no'
		echo '  verbosity: 0'
		echo '  do-ip6: no'
		echo '  access-control: 127.0.0.0/8 allow'
		echo '  module-config: "iterator"'
		echo '  local-zone: "test." static'
		echo "  local-data: 'b.test. IN TXT \"v=spf1 ip4:127.0.0.1 -all\"'"
		echo "  local-data: '_dmarc.b.test. IN TXT \"v=DMARC1; p=none\"'"
		echo "  local-data: 'client.b.test. IN TXT \"v=spf1 ip4:127.0.0.1 -all\"'"
		echo 'remote-control:'
		echo '  control-enable: no'
	} >"$TMP/unbound/unbound.conf"
	unbound -d -c "$TMP/unbound/unbound.conf" >"$TMP/unbound/stderr" 2>&1 &
	UB_PID=$!
	k=100
	until dig @127.0.0.1 -p "$UB_PORT" +time=1 +tries=1 +short b.test TXT 2>/dev/null | grep -q spf1; do
		k=$((k - 1))
		if [ "$k" -le 0 ] || ! kill -0 "$UB_PID" 2>/dev/null; then
			AUTH_WHY="unbound did not answer"
			return 1
		fi
		sleep 0.1
	done
}
if ! auth_dns_start; then
	echo "bench: $AUTH_WHY: the checks use the system's resolver" >&2
	stop_pid "$UB_PID" 5
	UB_PID= UB_PORT=
fi

# --- 3 and 5. mxvault: idle sessions, then durable accepts ----------------------
# mxvault_run KEY BIN: a fresh spool and daemon; results as KEY_msgs_per_s etc.
# The recipients file holds "*": every build, old or new, reads that the same way.
printf '*\n' >"$TMP/recipients"
mxvault_run() {
	key=$1 bin=$2
	echo "bench: mxvault ($key: $bin)..." >&2
	rm -rf "$TMP/spool"
	PORT=$(bpy freeport)
	DOWN=$(bpy freeport) # nothing listens here: the primary is down, mail stays queued
	cat >"$TMP/mxvault.conf" <<EOF
[server]
hostname = mxvault.bench.test
listen = 127.0.0.1:$PORT
spool = $TMP/spool
max_sessions = $((IDLE + 1000))
max_sessions_per_ip = $((IDLE + 1000))
min_free_space = 0
${UB_PORT:+resolver = 127.0.0.1:$UB_PORT}
[domain bench.test]
recipients = $TMP/recipients
primary = 127.0.0.1:$DOWN
EOF
	"$bin" serve -c "$TMP/mxvault.conf" 2>"$TMP/mxvault.log" &
	MXV_PID=$!
	MXV=n/a MXV_Q=n/a IDLE_B=n/a IDLE_A=n/a IDLE_N=0 IDLE_K=n/a FDS=n/a FSS=n/a CPU_MS=n/a
	TIDLE_B=n/a TIDLE_A=n/a TIDLE_N=0 TIDLE_K=n/a TLS_RATE=n/a TLS_OK=0 MXV_TLS_SENT=0
	if bpy waitport "$PORT" 10; then
		set -- $(bpy idle "$PORT" "$IDLE" "$MXV_PID" 30 || echo n/a n/a 0)
		IDLE_B=$1 IDLE_A=$2 IDLE_N=$3
		[ "$IDLE_N" = "$IDLE" ] || echo "bench: only $IDLE_N of $IDLE idle sessions were greeted" >&2
		[ "$IDLE_N" -gt 0 ] 2>/dev/null && IDLE_K=$(div "$(calc %d "$IDLE_A - $IDLE_B")" "$IDLE_N" %.1f)
		if [ "$key" = mxvault ]; then # STARTTLS is new in this build: a baseline may not have it
			set -- $(bpy idle_tls "$PORT" "$IDLE" "$MXV_PID" 60 || echo n/a n/a 0)
			TIDLE_B=$1 TIDLE_A=$2 TIDLE_N=$3
			[ "$TIDLE_N" = "$IDLE" ] || echo "bench: only $TIDLE_N of $IDLE idle TLS sessions got there" >&2
			[ "$TIDLE_N" -gt 0 ] 2>/dev/null &&
				TIDLE_K=$(div "$(calc %d "$TIDLE_A - $TIDLE_B")" "$TIDLE_N" %.1f)
		fi
		measure "$key" "$PORT" "$MXV_PID" -p "$MXV_PID"
		MXV=$RATE
		MXV_FDS=$FDS MXV_FS=$FSS MXV_CPU=$CPU_MS
		if [ "$key" = mxvault ]; then
			echo "bench: mxvault with STARTTLS..." >&2
			tls_run mxvault-tls "$PORT"
			MXV_TLS_SENT=$((TLS_WARM + TLS_OK))
			# Postfix gets the same certificate (ECDSA P-256, made by mxvault at its first start).
			cp "$TMP/spool/tls/cert.pem" "$TMP/tls-cert.pem" && cp "$TMP/spool/tls/key.pem" "$TMP/tls-key.pem"
		fi
		FDS=$MXV_FDS FSS=$MXV_FS CPU_MS=$MXV_CPU
	else
		echo "bench: mxvault did not start; see $OUT/mxvault.log" >&2
	fi
	MXV_FDS=$FDS MXV_FS=$FSS MXV_CPU=$CPU_MS
	stop_pid "$MXV_PID" 15
	MXV_PID=
	MXV_Q=$("$bin" queue list -c "$TMP/mxvault.conf" 2>/dev/null | tail -1 | awk '{ print $2 }')
	MXV_EXP=$((WARM + MSGS + MXV_TLS_SENT))
	[ "$MXV_Q" = "$MXV_EXP" ] || echo "bench: $key queue holds ${MXV_Q:-?} messages, expected $MXV_EXP" >&2
	MXV_SYNCS=$(sum "$MXV_FDS" "$MXV_FS")
	R "${key}_msgs_per_s" "$MXV"
	R "${key}_cpu_ms_per_msg" "$MXV_CPU"
	R "${key}_queued" "${MXV_Q:-n/a}"
	R "${key}_queued_expected" "$MXV_EXP"
	R "${key}_fdatasync" "$MXV_FDS"
	R "${key}_fsync" "$MXV_FS"
	R "${key}_syncs_per_msg" "$(div "$MXV_SYNCS" "$MSGS" "%.3f")"
	R "${key}_msgs_per_sync" "$(div "$MSGS" "$MXV_SYNCS" "%.1f")"
	R "${key}_idle_sessions" "$IDLE_N"
	R "${key}_idle_rss_before_kib" "$IDLE_B"
	R "${key}_idle_rss_after_kib" "$IDLE_A"
	R "${key}_idle_kib_per_session" "$IDLE_K"
	if [ "$key" = mxvault ]; then
		R mxvault_tls_msgs_per_s "$TLS_RATE"
		R mxvault_tls_accepted "$TLS_OK"
		R mxvault_idle_tls_sessions "$TIDLE_N"
		R mxvault_idle_tls_rss_before_kib "$TIDLE_B"
		R mxvault_idle_tls_rss_after_kib "$TIDLE_A"
		R mxvault_idle_tls_kib_per_session "$TIDLE_K"
	fi
	cp "$TMP/mxvault.log" "$OUT/$key.log" 2>/dev/null
}
# MXVAULT_BASELINE_BIN: another build (the last release, say) measured the
# same way in the same run, right before this one: what a change costs.
[ -n "${MXVAULT_BASELINE_BIN:-}" ] && mxvault_run baseline "$MXVAULT_BASELINE_BIN"
mxvault_run mxvault "$BIN" # last: MXV and MXV_CPU keep this build's figures

# --- 6. sender authentication (issue 8): every check on against every check off ---
# The same build, fresh daemons alternately (off, on, off, on: drift on a
# shared machine hits both), each a warm-up and $MSGS messages from
# smtp-source. "on" is the defaults (spf = tag, dmarc = tag): iprev at connect,
# SPF on MAIL FROM a@b.test, DKIM over the content (unsigned: no key query),
# DMARC on From: <a@b.test>; "off" is spf = off, dmarc = off (no check, the
# header says none). Both use the private unbound above. The loss is
# 1 - on/off of the mean accept rates.
# auth_run KEY SPF DMARC: one fresh daemon of this build; sets RATE and CPU_MS (n/a when unknown).
auth_run() {
	key=$1
	echo "bench: mxvault, sender authentication $key (spf = $2, dmarc = $3)..." >&2
	rm -rf "$TMP/spool"
	PORT=$(bpy freeport)
	DOWN=$(bpy freeport)
	printf '[server]\nhostname = mxvault.bench.test\nlisten = 127.0.0.1:%s\nspool = %s\nresolver = 127.0.0.1:%s\n%s\n%s\n%s\n' \
		"$PORT" "$TMP/spool" "$UB_PORT" 'max_sessions = 1000' 'max_sessions_per_ip = 1000' 'min_free_space = 0' \
		>"$TMP/mxvault.conf"
	printf '[domain bench.test]\nrecipients = %s\nprimary = 127.0.0.1:%s\nspf = %s\ndmarc = %s\n' \
		"$TMP/recipients" "$DOWN" "$2" "$3" >>"$TMP/mxvault.conf"
	"$BIN" serve -c "$TMP/mxvault.conf" 2>"$TMP/mxvault.log" &
	MXV_PID=$!
	RATE=n/a CPU_MS=n/a
	if bpy waitport "$PORT" 10; then
		measure "auth-$key" "$PORT" "$MXV_PID"
	else
		echo "bench: mxvault did not start; see $OUT/auth-$key.log" >&2
	fi
	stop_pid "$MXV_PID" 15
	MXV_PID=
	q=$("$BIN" queue list -c "$TMP/mxvault.conf" 2>/dev/null | tail -1 | awk '{ print $2 }')
	if [ "$q" != $((WARM + MSGS)) ]; then
		echo "bench: auth $key: queue holds ${q:-?} messages, expected $((WARM + MSGS))" >&2
		RATE=n/a
	fi
	# proof the checks ran (or did not): the SPF verdicts in the headers stored in
	# the spool (not unbound's query log: logging every query slows it down)
	AUTH_N=$(grep -rao 'spf=pass' "$TMP/spool" | wc -l)
	R "auth_${key}_spf_pass_stored" "$AUTH_N"
	want=$((WARM + MSGS)) # at least one verdict a message with the checks on, none off
	[ "$2" = off ] && want=0
	if { [ "$2" = off ] && [ "$AUTH_N" != 0 ]; } || [ "$AUTH_N" -lt "$want" ]; then
		echo "bench: auth $key: $AUTH_N stored spf=pass verdicts for $((WARM + MSGS)) messages" >&2
		RATE=n/a
	fi
	cp "$TMP/mxvault.log" "$OUT/auth-$key.log" 2>/dev/null
}
mean() { # DIGITS VALUES...: their mean, n/a if any is not a number
	d=$1
	shift
	echo "$@" | awk -v d="$d" '{ for (i = 1; i <= NF; i++) { if ($i !~ /^[0-9.]+$/) { print "n/a"; exit } s += $i }
		printf "%." d "f\n", s / NF }'
}
AUTH_ON=n/a AUTH_OFF=n/a AUTH_ON_CPU=n/a AUTH_OFF_CPU=n/a
if [ -n "$UB_PORT" ]; then
	r_off="" r_on="" c_off="" c_on=""
	for round in 1 2; do
		auth_run "off$round" off off
		r_off="$r_off $RATE" c_off="$c_off $CPU_MS"
		auth_run "on$round" tag tag
		r_on="$r_on $RATE" c_on="$c_on $CPU_MS"
	done
	AUTH_OFF=$(mean 0 $r_off) AUTH_ON=$(mean 0 $r_on)
	AUTH_OFF_CPU=$(mean 3 $c_off) AUTH_ON_CPU=$(mean 3 $c_on)
	R auth_status ok
	R auth_off_runs_msgs_per_s "$(echo $r_off)"
	R auth_on_runs_msgs_per_s "$(echo $r_on)"
else
	echo "bench: sender authentication rows skipped: $AUTH_WHY" >&2
	R auth_status "skipped: $AUTH_WHY"
fi
stop_pid "$UB_PID" 5
UB_PID=
R auth_off_msgs_per_s "$AUTH_OFF"
R auth_on_msgs_per_s "$AUTH_ON"
R auth_off_cpu_ms_per_msg "$AUTH_OFF_CPU"
R auth_on_cpu_ms_per_msg "$AUTH_ON_CPU"
case "$AUTH_ON$AUTH_OFF" in
*n/a*) R auth_loss_pct n/a ;;
*) R auth_loss_pct "$(calc %.1f "100 * (1 - $AUTH_ON / $AUTH_OFF)")" ;;
esac

# --- 4. a private Postfix instance --------------------------------------------
PFX=$TMP/postfix
PFX_Q=$PFX/queue
pfx_count() { # queued messages, once the queue manager has moved them all (deadline 60 s):
	# while qmgr renames files between queues, find could count one twice
	k=600
	while [ "$(find "$PFX_Q/incoming" "$PFX_Q/active" -type f | wc -l)" -gt 0 ] && [ "$k" -gt 0 ]; do
		sleep 0.1; k=$((k - 1))
	done
	find "$PFX_Q/incoming" "$PFX_Q/active" "$PFX_Q/deferred" "$PFX_Q/hold" -type f | wc -l
}
pfx_purge() { postsuper -c "$PFX/conf" -d ALL >/dev/null 2>&1; }
pfx_settle() { pfx_count >/dev/null; pfx_purge; PFX_N0=$(pfx_count); } # after the warm-up
pfx_start() { # sets PFX_WHY on failure
	PFX_WHY=
	[ "$(id -u)" = 0 ] || { PFX_WHY="needs root"; return 1; }
	command -v postfix >/dev/null && command -v postconf >/dev/null || { PFX_WHY="postfix not installed"; return 1; }
	[ -f /etc/postfix/master.cf ] || { PFX_WHY="no /etc/postfix/master.cf"; return 1; }
	PFXPORT=$(bpy freeport)
	mkdir -p "$PFX/conf" "$PFX_Q" "$PFX/data"
	# main.cf from scratch, so local tweaks (milters, filters) do not leak in;
	# master.cf is the system's (daemon paths), its inet services replaced by ours.
	: >"$PFX/conf/main.cf"
	cp /etc/postfix/master.cf "$PFX/conf/"
	# Every postconf names the private instance: a fresh Debian has no
	# /etc/postfix/main.cf (the package was installed with "No configuration").
	chown "$(postconf -c "$PFX/conf" -h mail_owner)" "$PFX/data"
	postconf -c "$PFX/conf" -e compatibility_level=3.6 \
		"queue_directory=$PFX_Q" "data_directory=$PFX/data" \
		inet_interfaces=127.0.0.1 inet_protocols=ipv4 myhostname=postfix.bench.test \
		mydestination= relay_domains=bench.test 'relayhost=[127.0.0.1]:1' 'defer_transports=smtp relay' \
		mynetworks=127.0.0.0/8 'smtpd_recipient_restrictions=permit_mynetworks,reject' \
		smtpd_client_connection_count_limit=0 default_process_limit=100 \
		alias_maps= alias_database= "maillog_file=$PFX/maillog" "maillog_file_prefixes=$PFX" ||
		{ PFX_WHY="postconf failed"; return 1; }
	for s in $(postconf -c "$PFX/conf" -M | awk '$2 == "inet" { print $1 "/inet" }'); do
		postconf -c "$PFX/conf" -MX "$s"
	done
	postconf -c "$PFX/conf" -M "127.0.0.1:$PFXPORT/inet=127.0.0.1:$PFXPORT inet n - n - - smtpd" &&
		postconf -c "$PFX/conf" -F '*/*/chroot=n' || { PFX_WHY="postconf -M failed"; return 1; }
	timeout 60 postfix -c "$PFX/conf" check >"$TMP/postfix-check.log" 2>&1 ||
		{ PFX_WHY="postfix check failed: $(tail -1 "$TMP/postfix-check.log")"; return 1; }
	PFX_CONF=$PFX/conf # from here on, cleanup stops it
	timeout 60 postfix -c "$PFX/conf" start >"$TMP/postfix-start.log" 2>&1 ||
		{ PFX_WHY="postfix start failed: $(tail -1 "$TMP/postfix-start.log")"; return 1; }
	bpy waitport "$PFXPORT" 30 || { PFX_WHY="private postfix did not answer on port $PFXPORT"; return 1; }
}
pfx_mode() { # hold|deferred
	if [ "$1" = hold ]; then
		postconf -c "$PFX/conf" -e 'smtpd_data_restrictions=check_client_access static:HOLD'
	else
		postconf -c "$PFX/conf" -e smtpd_data_restrictions=
	fi
	postfix -c "$PFX/conf" reload >/dev/null 2>&1
	pfx_purge
	sleep 1
	bpy waitport "$PFXPORT" 30
	echo "bench: Postfix ($1)..." >&2
	BEFORE_MEASURE=pfx_settle
	measure "postfix-$1" "$PFXPORT" "" -a
	BEFORE_MEASURE=:
	PFX_SYNCS=$(sum "$FDS" "$FSS")
	R "postfix_$1_msgs_per_s" "$RATE"
	R "postfix_$1_queued" "$(($(pfx_count) - PFX_N0))"
	R "postfix_$1_syncs_per_msg" "$(div "$PFX_SYNCS" "$MSGS" "%.3f")"
}
# The STARTTLS load against Postfix keeping mail in the hold queue, with mxvault's certificate.
pfx_tls() {
	if [ ! -f "$TMP/tls-cert.pem" ]; then
		R postfix_tls_msgs_per_s "n/a"
		return 0
	fi
	postconf -c "$PFX/conf" -e "smtpd_tls_cert_file=$TMP/tls-cert.pem" "smtpd_tls_key_file=$TMP/tls-key.pem" \
		smtpd_tls_security_level=may 'smtpd_data_restrictions=check_client_access static:HOLD'
	postfix -c "$PFX/conf" reload >/dev/null 2>&1
	pfx_purge
	sleep 1
	bpy waitport "$PFXPORT" 30
	echo "bench: Postfix with STARTTLS..." >&2
	tls_run postfix-tls "$PFXPORT"
	R postfix_tls_msgs_per_s "$TLS_RATE"
	R postfix_tls_accepted "$TLS_OK"
}
if pfx_start; then
	R postfix_status ok
	R postfix_version "$(postconf -c "$PFX/conf" -h mail_version)"
	pfx_mode hold
	pfx_mode deferred
	pfx_tls
else
	echo "bench: Postfix skipped: $PFX_WHY" >&2
	R postfix_status "skipped: $PFX_WHY"
fi
pfx_stop

echo "bench: fdatasync rate again (2 s)..." >&2
FSYNC2=$(bpy syncrate "$TMP/syncrate" 2) || FSYNC2=n/a
R fdatasync_per_s_start "$FSYNC1"
R fdatasync_per_s_end "$FSYNC2"
R fdatasync_per_s "$(div "$(sum "$FSYNC1" "$FSYNC2")" 2 %.0f)"

# --- results --------------------------------------------------------------------
get() { awk -F= -v k="$1" '$1 == k { sub(/^[^=]*=/, ""); v = $0 } END { print (v == "" ? "n/a" : v) }' "$RES.tmp"; }
PH=$(get postfix_hold_msgs_per_s)
PD=$(get postfix_deferred_msgs_per_s)
R ratio_mxvault_to_sink "$(div "$MXV" "$SINK" "%.2f")"
R ratio_mxvault_to_postfix_hold "$(div "$MXV" "$PH" "%.1f")"
R ratio_mxvault_to_postfix_deferred "$(div "$MXV" "$PD" "%.1f")"
R ratio_mxvault_to_postfix_tls "$(div "$(get mxvault_tls_msgs_per_s)" "$(get postfix_tls_msgs_per_s)" "%.2f")"

{
	echo
	echo "mxvault bench, $(get date): $(get nproc) CPUs ($(get cpu)), $(get mem_mib) MiB, $(get kernel)"
	echo "spool filesystem: $(get spool_fs) on $(get spool_dev); load average at start: $(get loadavg_at_start)"
	echo "load: smtp-source -s $SESS -m $MSGS -l $SIZE (after a warm-up of $WARM messages)"
	echo
	printf '%-34s %10s %11s %13s\n' "" "msgs/s" "syncs/msg" "queued"
	printf '%-34s %10s  (start %s, end %s)\n' "disk: 4 KiB append + fdatasync" "$(get fdatasync_per_s) syncs/s" \
		"$FSYNC1" "$FSYNC2"
	printf '%-34s %10s %11s %13s   %s ms CPU/msg\n' "smtp-sink (no storage)" "$SINK" - - "$SINK_CPU"
	printf '%-34s %10s %11s %13s   %s ms CPU/msg\n' "mxvault (durable)" "$MXV" "$(get mxvault_syncs_per_msg)" \
		"$(get mxvault_queued)/$(get mxvault_queued_expected)" "$MXV_CPU"
	if [ "$(get postfix_status)" = ok ]; then
		printf '%-34s %10s %11s %13s\n' "Postfix $(get postfix_version), hold queue" "$PH" \
			"$(get postfix_hold_syncs_per_msg)" "$(get postfix_hold_queued)/$MSGS"
		printf '%-34s %10s %11s %13s\n' "Postfix $(get postfix_version), deferred" "$PD" \
			"$(get postfix_deferred_syncs_per_msg)" "$(get postfix_deferred_queued)/$MSGS"
	else
		echo "Postfix: $(get postfix_status)"
	fi
	echo
	echo "mxvault / smtp-sink: $(get ratio_mxvault_to_sink)   mxvault / Postfix: $(get ratio_mxvault_to_postfix_hold) (hold)," \
		"$(get ratio_mxvault_to_postfix_deferred) (deferred)   messages per mxvault sync: $(get mxvault_msgs_per_sync)"
	echo "mxvault idle sessions: $(get mxvault_idle_sessions), VmRSS $(get mxvault_idle_rss_before_kib) ->" \
		"$(get mxvault_idle_rss_after_kib) KiB: $(get mxvault_idle_kib_per_session) KiB per session"
	echo "mxvault idle TLS sessions (STARTTLS + EHLO): $(get mxvault_idle_tls_sessions)," \
		"VmRSS $(get mxvault_idle_tls_rss_before_kib) -> $(get mxvault_idle_tls_rss_after_kib) KiB:" \
		"$(get mxvault_idle_tls_kib_per_session) KiB per session"
	echo "STARTTLS load, $SESS sessions, $TLS_MSGS messages: mxvault $(get mxvault_tls_msgs_per_s) msgs/s" \
		"($(get mxvault_tls_accepted) accepted), Postfix $(get postfix_tls_msgs_per_s) msgs/s" \
		"($(get postfix_tls_accepted) accepted, hold queue); mxvault / Postfix: $(get ratio_mxvault_to_postfix_tls)"
	if [ -n "${MXVAULT_BASELINE_BIN:-}" ]; then
		echo "baseline ($MXVAULT_BASELINE_BIN): $(get baseline_msgs_per_s) msgs/s," \
			"$(get baseline_syncs_per_msg) syncs/msg, $(get baseline_cpu_ms_per_msg) ms CPU/msg," \
			"$(get baseline_idle_kib_per_session) KiB per idle session;" \
			"this build / baseline: $(div "$(get mxvault_msgs_per_s)" "$(get baseline_msgs_per_s)" %.2f)"
	fi
	echo "sender authentication (same build, 2 runs each, $MSGS messages): checks on $(get auth_on_msgs_per_s)" \
		"msgs/s ($(get auth_on_cpu_ms_per_msg) ms CPU/msg), off $(get auth_off_msgs_per_s) msgs/s" \
		"($(get auth_off_cpu_ms_per_msg) ms CPU/msg): loss $(get auth_loss_pct) % (target < 25 %) [$(get auth_status)]"
	echo "(Postfix syncs are counted system-wide; results in ${RES#"$REPO"/})"
}
mv "$RES.tmp" "$RES"
