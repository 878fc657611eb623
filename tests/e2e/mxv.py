"""mxv: the shared harness of the mxvault end-to-end suite (tests/e2e/).

It runs the real daemon on loopback and talks to it like a client would.
Every wait has a deadline; nothing sleeps and hopes. The environment passes
through to the daemon, so an ASan/UBSan build works the same way:
    MXVAULT_BIN=build/asan/mxvault python3 tests/e2e/run.py

API (kept stable: other test files use it):

  BIN                 daemon binary: $MXVAULT_BIN or <repo>/build/mxvault
  REPO                repository root
  free_port()         a free TCP port on 127.0.0.1
  port_open(port)     True if something accepts connections on 127.0.0.1:port
  wait_until(pred, timeout=10, what='...', interval=0.02)
                      polls pred() until it returns something truthy and
                      returns that value; raises TimeoutError("timed out
                      after Ns waiting for <what>") at the deadline
  run_cli(*args, timeout=30, check=None)
                      runs BIN with args; returns subprocess.CompletedProcess
                      (text stdout/stderr); check=N asserts exit code N
  message(frm, to, subject='test', body='hello\\r\\n') -> bytes
                      a small RFC 5322 message with CRLF line ends

  Daemon(domains=None, spool=None, start=False, hold=True, **server)
      A daemon in a fresh tempfile.mkdtemp() directory (d.dir). The config
      (d.conf) has [server] hostname=backup.test, listen=127.0.0.1:<free
      port> (d.port), spool=<dir>/spool (d.spool) unless spool= is given;
      any **server keyword adds or overrides a [server] key (value None
      removes it; values are written with str()). domains maps a domain
      name to a dict of its keys; a 'recipients' value that is a list is
      written to <dir>/rcpt-<domain> and the key points at that file (a str
      is used as the path). Default domains:
        {'example.com': {'recipients': ['alice', 'bob@example.com']},
         'any.test': {}}
      hold=True keeps received mail queued: every domain without its own
      'primary' key gets primary = 127.0.0.1:<d.hold_port>, a socket that
      listens but never accepts, so a delivery attempt waits for a greeting
      (5 minutes) and recipients stay "queued" for the whole test.
      hold=False writes the domains as given (no primary: MX lookups).
      A domain without a 'recipients' key gets recipients = * (accept any);
      without a 'resolver' server key, domains get spf = off, dmarc = off
      (no sender checks: the suite never asks the host's resolver);
      'recipients': None leaves the key out. $MXV_LEGACY_CONFIG set: no
      recipients = * either (a build from before it existed, to show that a
      regression test fails there).
      d.env: a dict of environment variables added for the daemon process
      (LD_PRELOAD shims, say); empty by default.
      Used as a context manager it starts on enter and, on exit, stops
      (with the checks of stop(), unless the body raised) and removes the
      directory (kept when $MXV_KEEP is set).

      d.start(timeout=10)   launch `BIN serve -c conf`, stderr appended to
                            d.log_path; returns once the port accepts (a
                            probe session that QUITs and sees the close)
      d.stop(timeout=15, check=True) -> exit code
                            SIGTERM and wait; check asserts exit code 0 and
                            no sanitizer report in the log
      d.kill9()             SIGKILL and reap (no checks)
      d.restart(timeout=10) stop() if running, then start()
      d.running()           the process is alive
      d.pid                 the process id (None before start)
      d.log_text()          the whole log (all runs), str
      d.wait_log(regex, timeout=10, what=None) -> re.Match
                            waits until the log matches (re.M)
      d.check_log()         asserts no sanitizer report in the log
      d.queue()             `BIN queue list --json -c conf`, parsed (list)
      d.wait_queue(n, timeout=10) -> list
                            waits until exactly n messages are queued
      d.smtp(timeout=10)    a connected smtplib.SMTP (greeting read)
      d.raw(timeout=10)     a connected Raw client (greeting NOT read)
      d.config_text()       the config file's text; d.write_config()
                            rewrites d.conf from d.server and d.domains

  Raw(port, host='127.0.0.1', timeout=10, bufsize=None): a raw-socket SMTP
  client for what smtplib cannot do (pipelining, BDAT, bare LF, long lines).
  bufsize: SO_RCVBUF and SO_SNDBUF, set before connecting (the small window
  of a slow peer; loopback otherwise buffers megabytes).
      r.send(data)          bytes (str is encoded as UTF-8), sent whole
      r.read_reply(timeout=None) -> (code:int, text:str)
                            one complete reply, multi-line joined with
                            '\\n' (the "250-"/"250 " prefixes removed);
                            raises ConnectionError on EOF before a full reply
      r.cmd(line, timeout=None) -> (code, text)
                            sends line + CRLF and reads one reply
      r.expect(code, enh=None, timeout=None) -> text
                            reads one reply and asserts its code (and the
                            enhanced code the text starts with, if given)
      r.ehlo(name='client.test') -> (code, text)
                            reads the greeting if not yet read, sends EHLO
      r.wait_closed(timeout=None) -> bytes
                            reads until the server closes, returning any
                            bytes that came first; raises TimeoutError
      r.close(); also a context manager
"""

import contextlib
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get('MXVAULT_BIN', os.path.join(REPO, 'build', 'mxvault'))
HOST = '127.0.0.1'
SANITIZER_MARKERS = ('AddressSanitizer', 'LeakSanitizer', 'runtime error')

DEFAULT_DOMAINS = {
    'example.com': {'recipients': ['alice', 'bob@example.com']},
    'any.test': {},
}


def wait_until(pred, timeout=10, what='condition', interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise TimeoutError('timed out after %gs waiting for %s' % (timeout, what))
        time.sleep(interval)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_open(port, host=HOST):
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def run_cli(*args, timeout=30, check=None):
    p = subprocess.run([BIN] + [str(a) for a in args], stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, errors='replace', timeout=timeout)
    if check is not None and p.returncode != check:
        raise AssertionError('%s %s: exit %d, expected %d\nstdout: %s\nstderr: %s' % (
            BIN, ' '.join(map(str, args)), p.returncode, check, p.stdout, p.stderr))
    return p


def message(frm, to, subject='test', body='hello\r\n'):
    text = ('From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%d.%d@client.test>\r\n\r\n%s' %
            (frm, to, subject, os.getpid(), time.monotonic_ns(), body))
    return text.encode('utf-8')


class Raw:
    def __init__(self, port, host=HOST, timeout=10, bufsize=None):
        self.timeout = timeout
        if bufsize is None:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, bufsize)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, bufsize)
            self.sock.settimeout(timeout)
            self.sock.connect((host, port))
        self.buf = b''
        self.greeted = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode('utf-8')
        self.sock.sendall(data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError('no complete reply before the deadline; got %r' % self.buf[:200])
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError('no complete reply before the deadline; got %r' % self.buf[:200]) from None
        except ConnectionResetError:
            chunk = b''
        if not chunk:
            raise ConnectionError('connection closed; partial reply %r' % self.buf[:200])
        self.buf += chunk

    def read_reply(self, timeout=None):
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        lines = []
        while True:
            i = self.buf.find(b'\r\n')
            if i < 0:
                self._fill(deadline)
                continue
            line, self.buf = self.buf[:i], self.buf[i + 2:]
            m = re.match(rb'^(\d{3})([ -]?)(.*)$', line, re.S)
            if not m:
                raise AssertionError('malformed reply line %r' % line)
            lines.append(m.group(3).decode('utf-8', 'replace'))
            if m.group(2) != b'-':
                self.greeted = True
                return int(m.group(1)), '\n'.join(lines)

    def cmd(self, line, timeout=None):
        if isinstance(line, str):
            line = line.encode('utf-8')
        self.send(line + b'\r\n')
        return self.read_reply(timeout)

    def expect(self, code, enh=None, timeout=None):
        c, text = self.read_reply(timeout)
        if c != code or (enh is not None and not text.startswith(enh + ' ')):
            raise AssertionError('expected %d %s, got %d %s' % (code, enh or '', c, text))
        return text

    def ehlo(self, name='client.test'):
        if not self.greeted:
            self.expect(220)
        return self.cmd('EHLO ' + name)

    def wait_closed(self, timeout=None):
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        got = self.buf
        self.buf = b''
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError('connection still open; got %r' % got[:200])
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                return got
            if not chunk:
                return got
            got += chunk


class Daemon:
    def __init__(self, domains=None, spool=None, start=False, hold=True, **server):
        self.dir = tempfile.mkdtemp(prefix='mxv-e2e-')
        self._hold = None
        self.hold_port = None
        if hold:
            self._hold = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._hold.bind((HOST, 0))
            self._hold.listen(64)
            self.hold_port = self._hold.getsockname()[1]
        self.port = free_port()
        self.conf = os.path.join(self.dir, 'mxvault.conf')
        self.log_path = os.path.join(self.dir, 'daemon.log')
        self.spool = spool or os.path.join(self.dir, 'spool')
        self.server = {'hostname': 'backup.test', 'listen': '%s:%d' % (HOST, self.port), 'spool': self.spool}
        self.server.update(server)
        self.domains = DEFAULT_DOMAINS if domains is None else domains
        self.proc = None
        self._log = None
        self.env = {}
        self.write_config()
        if start:
            self.start()

    # --- configuration ---------------------------------------------------

    def config_text(self):
        out = ['[server]']
        out += ['%s = %s' % (k, v) for k, v in self.server.items() if v is not None]
        for name, keys in self.domains.items():
            out += ['', '[domain %s]' % name]
            if self.hold_port and 'primary' not in keys:
                keys = dict(keys, primary='%s:%d' % (HOST, self.hold_port))
            if 'recipients' not in keys and not os.environ.get('MXV_LEGACY_CONFIG'):
                keys = dict(keys, recipients='*')
            if 'resolver' not in self.server and not os.environ.get('MXV_LEGACY_CONFIG'):
                # No test DNS: the sender checks would ask the host's resolver, which the
                # suite must not depend on. Daemons with a test resolver keep the defaults.
                keys = dict({'spf': 'off', 'dmarc': 'off'}, **keys)
            for k, v in keys.items():
                if k == 'recipients' and isinstance(v, (list, tuple)):
                    path = os.path.join(self.dir, 'rcpt-' + name)
                    with open(path, 'w', encoding='utf-8') as f:
                        f.write(''.join(r + '\n' for r in v))
                    v = path
                if v is not None:
                    out.append('%s = %s' % (k, v))
        return '\n'.join(out) + '\n'

    def write_config(self):
        text = self.config_text()
        with open(self.conf, 'w', encoding='utf-8') as f:
            f.write(text)

    # --- process ---------------------------------------------------------

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=10):
        assert not self.running(), 'daemon already running'
        self._log = open(self.log_path, 'ab')
        env = dict(os.environ, **self.env) if self.env else None
        self.proc = subprocess.Popen([BIN, 'serve', '-c', self.conf], stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=self._log, env=env)
        try:
            wait_until(self._probe, timeout, 'mxvault to listen on port %d' % self.port)
        except BaseException:
            self.kill9()
            raise
        return self

    def _exited(self):
        return AssertionError('mxvault exited with %s during start-up; log:\n%s' %
                              (self.proc.returncode, self.log_text()))

    def _probe(self):
        if not self.running():
            raise self._exited()
        # A full QUIT exchange, and the server's close: the probe session is
        # gone from the per-IP count before the test's first connection.
        try:
            with Raw(self.port, timeout=5) as r:
                code, _ = r.read_reply()
                if code == 220:
                    r.cmd('QUIT')
                r.wait_closed()
            return True
        except OSError:  # not listening yet, or closed on us (exiting?)
            if not self.running():
                raise self._exited() from None
            return False

    def stop(self, timeout=15, check=True):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
                raise AssertionError('mxvault did not exit within %gs of SIGTERM; log:\n%s' %
                                     (timeout, self.log_text()))
        rc = self.proc.returncode
        self._close_log()
        if check:
            if rc != 0:
                raise AssertionError('mxvault exited with %d; log:\n%s' % (rc, self.log_text()))
            self.check_log()
        return rc

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._close_log()

    def restart(self, timeout=10):
        if self.running():
            self.stop()
        return self.start(timeout)

    def _close_log(self):
        if self._log:
            self._log.close()
            self._log = None

    def __enter__(self):
        if not self.running():
            self.start()
        return self

    def __exit__(self, etype, exc, tb):
        try:
            if etype is None:
                self.stop()
            else:
                with contextlib.suppress(Exception):
                    self.stop(check=False)
                self.kill9()
        finally:
            self.cleanup()

    def cleanup(self):
        self.kill9()
        if self._hold:
            self._hold.close()
            self._hold = None
        if not os.environ.get('MXV_KEEP'):
            shutil.rmtree(self.dir, ignore_errors=True)

    # --- observation -----------------------------------------------------

    def log_text(self):
        try:
            with open(self.log_path, 'rb') as f:
                return f.read().decode('utf-8', 'replace')
        except FileNotFoundError:
            return ''

    def check_log(self):
        text = self.log_text()
        for marker in SANITIZER_MARKERS:
            if marker in text:
                raise AssertionError('sanitizer report (%s) in the log:\n%s' % (marker, text))

    def wait_log(self, regex, timeout=10, what=None):
        rx = re.compile(regex, re.M)
        return wait_until(lambda: rx.search(self.log_text()), timeout, what or 'log line /%s/' % regex)

    def queue(self):
        p = run_cli('queue', 'list', '--json', '-c', self.conf)
        if p.returncode != 0:
            raise AssertionError('queue list exit %d: %s' % (p.returncode, p.stderr))
        return json.loads(p.stdout)

    def wait_queue(self, n, timeout=10):
        last = []

        def have():
            last[:] = [self.queue()]
            return len(last[0]) == n
        try:
            wait_until(have, timeout, '%d queued messages' % n, interval=0.1)
        except TimeoutError as e:
            raise TimeoutError('%s (have %d)' % (e, len(last[0]) if last else -1)) from None
        return last[0]

    @property
    def control_path(self):
        return self.server.get('control_socket') or os.path.join(self.spool, 'control')

    def control(self, *words, raw=None, timeout=10):
        """One request on the control socket, as the protocol has it (src/ctl/ctl.h): the
        reply's lines as [(kind, bytes)], kind 'o', 'e' or 'x'."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(timeout)
            s.connect(self.control_path)
            s.sendall(raw if raw is not None else b''.join(w.encode() + b'\0' for w in words) + b'\0')
            got = b''
            while True:
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:  # refused: too many clients
                    break
                if not chunk:
                    break
                got += chunk
        return [(line[:1].decode(), line[2:]) for line in got.split(b'\n') if line]

    # --- clients ---------------------------------------------------------

    def smtp(self, timeout=10):
        return smtplib.SMTP(HOST, self.port, local_hostname='client.test', timeout=timeout)

    def raw(self, timeout=10):
        return Raw(self.port, timeout=timeout)
