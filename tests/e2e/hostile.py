"""hostile: peers that misbehave on purpose, for test_hostile_out.py.

mxvault is an SMTP client too, and the server it talks to is often chosen
by an attacker (a DSN goes to the MX of whatever sender domain was
forged). These are the servers such an attacker would run, on loopback.

  Peer(addrs, script)
      A TCP server on every (host, port) in addrs, run by an asyncio loop
      in a thread of its own. Each accepted connection runs
      `await script(conn)`; conn.reader / conn.writer are asyncio streams,
      conn.lines (bytes, without CRLF) what conn.readline() read, conn.data
      the DATA content read by conn.read_data(). The peer counts:
        p.accepted       connections accepted so far
        p.open           connections open now; p.max_open the most at once
        p.durations      seconds each finished connection stayed open
        p.conns          every Conn, in order of arrival
      p.start() / p.stop() (stop closes every connection; also a context
      manager). Every script ends on its own: each loop in it is bounded
      by a deadline (LIMIT seconds), so a test that fails cannot hang.

  Scripts (functions returning a script):
      smtp(**replies)     an SMTP server that answers each command with
                          replies.get(VERB) (a str, a list of lines sent as
                          one multi-line reply, or a coroutine function
                          taking conn), otherwise a plausible positive
                          reply; 'GREETING' and 'DOT' (after the content)
                          too. A reply of RESET resets the connection
                          after writing what came before it.
      garbage_greeting(n) n bytes of "2" and no line end, then silence
      endless_multiline() "220 hi", then on EHLO "250-x" lines without end
      trickle(text, every) writes text one byte each `every` seconds
                          (trickle_bytes(conn, data, every) inside a script)
      silent()            accepts and never writes a byte (reads until EOF)

  reset(writer)           closes with RST (SO_LINGER 0), as a crash would
  outbound_conns(pid, port) -> int
                          the process's TCP sockets connected (or
                          connecting) to remote port `port`, from
                          /proc/PID/fd and /proc/net/tcp{,6}
  rss_kb(pid), peak_rss_kb(pid) -> int
                          resident set size now and at its peak (kB), from
                          /proc/PID/status
"""
import asyncio
import contextlib
import os
import socket
import struct
import threading
import time

LIMIT = 60.0   # no script runs longer than this
RESET = object()


class Conn:
    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.lines = []
        self.data = []
        self.opened = time.monotonic()
        self.closed = None

    async def readline(self, timeout=LIMIT):
        line = await asyncio.wait_for(self.reader.readline(), timeout)
        if not line:
            raise ConnectionError('peer closed')
        line = line.rstrip(b'\r\n')
        self.lines.append(line)
        return line

    async def read_data(self, timeout=LIMIT):
        """Reads DATA content up to the lone dot; keeps it dot-stuffed, as sent."""
        deadline = time.monotonic() + timeout
        buf = b''
        while not buf.endswith(b'\r\n.\r\n') and buf != b'.\r\n':
            chunk = await asyncio.wait_for(self.reader.read(65536), max(0.01, deadline - time.monotonic()))
            if not chunk:
                raise ConnectionError('peer closed in DATA')
            buf += chunk
        self.data.append(buf)
        return buf

    async def until_eof(self, timeout=LIMIT):
        """Reads (and drops) whatever comes until the other side closes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not await asyncio.wait_for(self.reader.read(65536), max(0.01, deadline - time.monotonic())):
                return

    async def send(self, text):
        self.writer.write(text.encode() if isinstance(text, str) else text)
        await self.writer.drain()


def reset(writer):
    sock = writer.get_extra_info('socket')
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    writer.transport.abort()


class Peer:
    def __init__(self, addrs, script):
        self.addrs = list(addrs)
        self.script = script
        self.lock = threading.Lock()
        self.accepted = 0
        self.open = 0
        self.max_open = 0
        self.durations = []
        self.conns = []
        self.loop = None
        self.thread = None
        self.servers = []
        self.tasks = set()

    async def _serve(self, reader, writer):
        conn = Conn(reader, writer)
        with self.lock:
            self.accepted += 1
            self.open += 1
            self.max_open = max(self.max_open, self.open)
            self.conns.append(conn)
        task = asyncio.current_task()
        self.tasks.add(task)
        try:
            await asyncio.wait_for(self.script(conn), LIMIT)
        except (ConnectionError, asyncio.TimeoutError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            self.tasks.discard(task)
            conn.closed = time.monotonic()
            with self.lock:
                self.open -= 1
                self.durations.append(conn.closed - conn.opened)
            with contextlib.suppress(Exception):
                writer.close()

    async def _start_servers(self):
        for host, port in self.addrs:
            srv = await asyncio.start_server(self._serve, host, port, reuse_address=True, limit=1 << 20)
            self.servers.append(srv)

    def start(self):
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self._start_servers())
            ready.set()
            self.loop.run_forever()
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        if not ready.wait(10):
            raise AssertionError('hostile peer did not start on %s' % self.addrs)
        return self

    def stop(self):
        if not self.loop:
            return

        async def close_all():
            for srv in self.servers:
                srv.close()
            tasks = list(self.tasks)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close_all(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop = None

    def __enter__(self):
        return self.start() if self.loop is None else self

    def __exit__(self, *exc):
        self.stop()

    def snapshot(self):
        with self.lock:
            return self.accepted, self.open, list(self.durations)

    def all_lines(self):
        with self.lock:
            return [ln for c in self.conns for ln in c.lines]


# --- scripts ---------------------------------------------------------------

async def _say(conn, reply):
    if reply is RESET:
        reset(conn.writer)
        raise ConnectionError('reset by script')
    if callable(reply):
        await reply(conn)
        return
    if isinstance(reply, (list, tuple)):
        for i, part in enumerate(reply):
            if part is RESET:
                await conn.writer.drain()
                reset(conn.writer)
                raise ConnectionError('reset by script')
            await conn.send(part + '\r\n')
        return
    await conn.send(reply + '\r\n')


def smtp(**replies):
    defaults = {'GREETING': '220 hostile.test ESMTP', 'EHLO': ['250-hostile.test', '250 8BITMIME'],
                'HELO': '250 hostile.test', 'MAIL': '250 2.1.0 Ok', 'RCPT': '250 2.1.5 Ok', 'DATA': '354 go ahead',
                'DOT': '250 2.0.0 Ok', 'RSET': '250 Ok', 'QUIT': '221 bye', 'NOOP': '250 Ok'}
    defaults.update(replies)

    async def script(conn):
        await _say(conn, defaults['GREETING'])
        deadline = time.monotonic() + LIMIT
        while time.monotonic() < deadline:
            line = await conn.readline()
            verb = line.split(b' ', 1)[0].split(b':', 1)[0].upper().decode('ascii', 'replace')
            reply = defaults.get(verb, '502 5.5.2 not implemented')
            await _say(conn, reply)
            if verb == 'DATA' and isinstance(reply, str) and reply.startswith('354'):
                await conn.read_data()
                await _say(conn, defaults['DOT'])
            if verb == 'QUIT':
                return
    return script


def garbage_greeting(n):
    async def script(conn):
        await conn.send(b'2' * n)
        await conn.until_eof()
    return script


def endless_multiline():
    async def script(conn):
        await conn.send('220 hostile.test ESMTP\r\n')
        await conn.readline()
        block = b'250-x\r\n' * 4096
        deadline = time.monotonic() + LIMIT
        while time.monotonic() < deadline:
            conn.writer.write(block)
            await conn.writer.drain()
            if conn.reader.at_eof():
                return
    return script


async def trickle_bytes(conn, data, every):
    """Sends data (over and over) a byte each `every` seconds; returns when the other side closes."""
    for i in range(int(LIMIT / every)):
        await conn.send(data[i % len(data):i % len(data) + 1])
        try:
            if not await asyncio.wait_for(conn.reader.read(65536), every):
                return
        except asyncio.TimeoutError:
            pass


def trickle(text, every=1.0):
    async def script(conn):
        await trickle_bytes(conn, text.encode(), every)
    return script


def silent():
    async def script(conn):
        await conn.until_eof()
    return script


# --- observing the daemon --------------------------------------------------

def _socket_inodes(pid):
    inodes = set()
    fd_dir = '/proc/%d/fd' % pid
    for fd in os.listdir(fd_dir):
        with contextlib.suppress(OSError):
            link = os.readlink(os.path.join(fd_dir, fd))
            if link.startswith('socket:['):
                inodes.add(link[8:-1])
    return inodes


def outbound_conns(pid, port):
    """TCP sockets of pid whose remote port is port (any state but LISTEN)."""
    inodes = _socket_inodes(pid)
    n = 0
    for table in ('/proc/net/tcp', '/proc/net/tcp6'):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                rem_port = int(fields[2].split(':')[1], 16)
                if rem_port == port and fields[3] != '0A' and fields[9] in inodes:
                    n += 1
    return n


def _status_kb(pid, key):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith(key + ':'):
                return int(line.split()[1])
    return 0


def rss_kb(pid):
    return _status_kb(pid, 'VmRSS')


def peak_rss_kb(pid):
    """The most resident memory the process ever had (VmHWM)."""
    return _status_kb(pid, 'VmHWM')
