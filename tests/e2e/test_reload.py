"""End-to-end tests of the daemon's life (issue 10 section 2): SIGHUP
reloads the configuration, the recipients files and the certificate
without dropping sessions or mail; a bad file is refused with FILE:LINE in
the log and the old configuration stays in force; the service manager
hears READY, RELOADING and STOPPING (sd_notify, to a socket this test
binds, as systemd would); `serve -d` writes and removes its pid file; the
systemd unit in contrib/ passes `systemd-analyze verify`.

The daemon starts as root and drops to its user, so a reload reads the
files as that user: each test makes its directory readable first, as an
operator would (docs/operations.md). Loopback only; every wait has a
deadline.
"""
import hashlib
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

import fwdlib
import mxv

SENDER = 'sender@client.test'
EX_UNAVAILABLE = 69


def readable(d):
    """What the unprivileged daemon must read at a reload: the directory and the files in it."""
    os.chmod(d.dir, 0o755)
    for name in os.listdir(d.dir):
        path = os.path.join(d.dir, name)
        if os.path.isfile(path):
            os.chmod(path, 0o644)


def started(test, **kw):
    d = mxv.Daemon(**kw)
    test.addCleanup(d.cleanup)
    readable(d)
    d.start()
    test.addCleanup(d.stop)
    return d


def hup(d, expect, timeout=20):
    """SIGHUP, then waits for one more log line matching expect than there was before."""
    rx = re.compile(expect, re.M)
    before = len(rx.findall(d.log_text()))
    d.proc.send_signal(signal.SIGHUP)
    mxv.wait_until(lambda: len(rx.findall(d.log_text())) > before, timeout, 'log line /%s/ after SIGHUP' % expect)


def rcpt_code(d, addr):
    with d.smtp() as s:
        s.ehlo('client.test')
        s.mail(SENDER)
        code, _ = s.rcpt(addr)
        return code


def greets(port):
    """A 220 from port: the daemon is past its start (a bound socket alone accepts into the backlog)."""
    try:
        with mxv.Raw(port, timeout=5) as r:
            return r.read_reply()[0] == 220
    except OSError:
        return False


def served_cert(port):
    """The SHA-256 of the certificate a new STARTTLS session is shown."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP('127.0.0.1', port, timeout=10) as s:
        s.ehlo('client.test')
        s.starttls(context=ctx)
        return hashlib.sha256(s.sock.getpeercert(binary_form=True)).hexdigest()


def file_cert(path):
    der = subprocess.run(['openssl', 'x509', '-in', path, '-outform', 'DER'], capture_output=True, check=True,
                         timeout=30).stdout
    return hashlib.sha256(der).hexdigest()


class TestReloadUnderLoad(unittest.TestCase):
    SESSIONS = 20
    PER_SESSION = 5

    def sender(self, port, i, acked, errors, first_sent):
        try:
            with smtplib.SMTP('127.0.0.1', port, timeout=30) as s:
                s.ehlo('client%d.test' % i)
                for j in range(self.PER_SESSION):
                    to = 'user%d-%d@any.test' % (i, j)
                    s.sendmail(SENDER, [to], mxv.message(SENDER, to, subject='load %d/%d' % (i, j)))
                    acked.append(to)
                    first_sent[i].set()
                    # Spread each session's messages across the reloads below.
                    time.sleep(0.05)
        except Exception as e:  # noqa: BLE001 - any failure of a session is the finding
            errors.append('session %d: %r' % (i, e))
            first_sent[i].set()

    def test_sighup_during_twenty_sessions_loses_nothing(self):
        d = started(self)
        acked, errors = [], []
        first_sent = [threading.Event() for _ in range(self.SESSIONS)]
        threads = [threading.Thread(target=self.sender, args=(d.port, i, acked, errors, first_sent))
                   for i in range(self.SESSIONS)]
        for t in threads:
            t.start()
        for ev in first_sent:
            self.assertTrue(ev.wait(30), 'a session never sent its first message')
        # A change that takes effect, then a refused one, then a good one again: all while the sessions run.
        d.domains = dict(d.domains, **{'new.test': {}})
        d.write_config()
        hup(d, r'mxvault: reload ok ')
        with open(d.conf, 'a', encoding='utf-8') as f:
            f.write('max_sessions = lots\n')
        hup(d, r'reload refused: ')
        d.write_config()
        hup(d, r'mxvault: reload ok ')
        for t in threads:
            t.join(60)
            self.assertFalse(t.is_alive(), 'a session hung')
        self.assertEqual(errors, [])
        self.assertEqual(len(acked), self.SESSIONS * self.PER_SESSION)
        q = d.wait_queue(len(acked), timeout=30)
        queued = sorted(r['address'] for m in q for r in m['recipients'])
        self.assertEqual(queued, sorted(acked))
        self.assertEqual(rcpt_code(d, 'anyone@new.test'), 250)


class TestReloadChanges(unittest.TestCase):
    def test_domain_added_for_new_sessions_only(self):
        d = started(self)
        old = d.smtp()
        self.addCleanup(old.close)
        old.ehlo('client.test')
        old.mail(SENDER)
        self.assertEqual(old.rcpt('someone@later.test')[0], 550)
        d.domains = dict(d.domains, **{'later.test': {}})
        d.write_config()
        hup(d, r'mxvault: reload ok config=\S+ domains=3$')
        # The session that began before keeps the configuration it began with.
        self.assertEqual(old.rcpt('someone@later.test')[0], 550)
        self.assertEqual(old.rcpt('alice@example.com')[0], 250)
        old.data(mxv.message(SENDER, 'alice@example.com'))
        self.assertEqual(rcpt_code(d, 'someone@later.test'), 250)
        # Mail for the new domain is queued: the queue manager meets a domain its start did not know.
        with d.smtp() as s:
            s.sendmail(SENDER, ['someone@later.test'], mxv.message(SENDER, 'someone@later.test'))
        q = d.wait_queue(2)
        self.assertEqual(sorted(r['address'] for m in q for r in m['recipients']),
                         ['alice@example.com', 'someone@later.test'])

    def test_recipients_file_reread(self):
        d = started(self)
        self.assertEqual(rcpt_code(d, 'alice@example.com'), 250)
        self.assertEqual(rcpt_code(d, 'carol@example.com'), 550)
        with open(os.path.join(d.dir, 'rcpt-example.com'), 'w', encoding='utf-8') as f:
            f.write('bob@example.com\ncarol\n')
        hup(d, r'mxvault: reload ok ')
        self.assertEqual(rcpt_code(d, 'carol@example.com'), 250)
        self.assertEqual(rcpt_code(d, 'alice@example.com'), 550)
        self.assertEqual(rcpt_code(d, 'bob@example.com'), 250)

    def test_bad_config_refused_old_one_serves(self):
        d = started(self)
        with open(d.conf, encoding='utf-8') as f:
            lines = f.read().split('\n')
        bad_line = lines.index('[server]') + 2
        lines.insert(bad_line - 1, 'max_recipients = many')
        with open(d.conf, 'w', encoding='utf-8') as f:
            f.write('\n'.join(lines))
        hup(d, r'reload refused: ')
        d.wait_log(r"reload refused: %s:%d: bad value for max_recipients: 'many'" %
                   (re.escape(d.conf), bad_line))
        self.assertNotRegex(d.log_text(), r'reload ok')
        self.assertTrue(d.running())
        self.assertEqual(rcpt_code(d, 'alice@example.com'), 250)
        self.assertEqual(rcpt_code(d, 'nobody@example.com'), 550)

    def test_recipients_file_unreadable_refused(self):
        d = started(self)
        os.unlink(os.path.join(d.dir, 'rcpt-example.com'))
        hup(d, r'reload refused: ')
        d.wait_log(r'reload refused: %s:\d+: ' % re.escape(d.conf))
        self.assertEqual(rcpt_code(d, 'alice@example.com'), 250)

    def test_recipients_file_of_another_kind_is_refused_in_a_few_lines(self):
        """A recipients file that is something else (a map, a log): refused in a few lines, not one per line.

        Every bad line was reported: 100000 log lines (and as many in the reply to
        `mxvault reload`, all held in memory first) for one refused reload.
        """
        d = started(self)
        with open(os.path.join(d.dir, 'rcpt-example.com'), 'w', encoding='utf-8') as f:
            f.writelines('user%d@elsewhere.test OK\n' % i for i in range(100000))
        hup(d, r'reload refused: ')
        self.assertEqual(d.control('ping')[-1], ('x', b'0'))  # the reload's loop pass is over: all it logged is out
        self.assertRegex(d.log_text(), r"reload refused: \S+rcpt-example\.com:1: address 'user0@elsewhere\.test OK' "
                                       r"is not in domain 'example\.com'")
        self.assertRegex(d.log_text(), r'reload refused: \S+rcpt-example\.com:100000: 99990 more problems in '
                                       r'this file are not shown')
        self.assertLess(len(re.findall(r'reload refused: ', d.log_text())), 20)
        self.assertEqual(rcpt_code(d, 'alice@example.com'), 250)

    def test_fixed_key_needs_restart(self):
        d = started(self)
        new_port = mxv.free_port()
        d.server['listen'] = '127.0.0.1:%d' % new_port
        d.write_config()
        hup(d, r'reload refused: ')
        d.wait_log(r'reload refused: %s: listen changed: needs a restart' % re.escape(d.conf))
        self.assertEqual(rcpt_code(d, 'alice@example.com'), 250)  # d.port: still the old listener
        self.assertFalse(mxv.port_open(new_port), 'a listener moved without a restart')

    def test_unreadable_config_refused(self):
        """The daemon is no longer root: a file only root can read is refused, and says why."""
        d = started(self)
        os.chmod(d.conf, 0o600)
        hup(d, r'reload refused: ')
        d.wait_log(r'reload refused: %s:1: cannot read: Permission denied' % re.escape(d.conf))
        self.assertEqual(rcpt_code(d, 'alice@example.com'), 250)


class TestReloadCommand(unittest.TestCase):
    """`mxvault reload -c FILE`: the same as SIGHUP, through the control socket, with the result printed."""

    def test_reload_ok_printed(self):
        d = started(self)
        d.domains = dict(d.domains, **{'cli.test': {}})
        d.server['max_errors'] = '7'
        d.write_config()
        with open(os.path.join(d.dir, 'rcpt-example.com'), 'a', encoding='utf-8') as f:
            f.write('carol\n')
        p = mxv.run_cli('reload', '-c', d.conf, check=0)
        self.assertIn('reload ok: %s, 3 domains' % d.conf, p.stdout)
        # What changed, as the log says it too.
        self.assertIn('[server] changed: max_errors\n', p.stdout)
        self.assertIn('domains added: cli.test\n', p.stdout)
        self.assertIn('[domain example.com] changed: recipients (3, were 2)\n', p.stdout)
        d.wait_log(r'mxvault: reload: domains added: cli\.test$')
        d.wait_log(r'mxvault: reload ok config=\S+ domains=3$')
        self.assertEqual(rcpt_code(d, 'x@cli.test'), 250)

    def test_refused_reload_printed_with_reason(self):
        d = started(self)
        d.server['dedup_window'] = '1h'
        d.write_config()
        p = mxv.run_cli('reload', '-c', d.conf)
        self.assertEqual(p.returncode, 78, p.stdout + p.stderr)
        self.assertIn('%s: dedup_window changed: needs a restart' % d.conf, p.stderr)
        self.assertEqual(p.stdout, '')
        d.wait_log(r'reload refused: %s: dedup_window changed' % re.escape(d.conf))

    def test_file_that_does_not_load_is_not_sent(self):
        d = started(self)
        with open(d.conf, 'a', encoding='utf-8') as f:
            f.write('nonsense\n')
        p = mxv.run_cli('reload', '-c', d.conf)
        self.assertEqual(p.returncode, 78, p.stdout + p.stderr)
        self.assertRegex(p.stderr, r'%s:\d+: ' % re.escape(d.conf))
        self.assertIn('not sent to the daemon', p.stderr)
        self.assertNotIn('reload', d.log_text())

    def test_no_daemon(self):
        d = mxv.Daemon()
        self.addCleanup(d.cleanup)
        p = mxv.run_cli('reload', '-c', d.conf)
        self.assertEqual(p.returncode, 69, p.stdout + p.stderr)


class TestReloadDelivery(unittest.TestCase):
    """The queue manager: queued mail follows the new configuration of its domain."""

    def send(self, d, to):
        with d.smtp() as s:
            s.sendmail(SENDER, [to], mxv.message(SENDER, to))

    def test_new_primary_gets_queued_mail(self):
        dead = mxv.free_port()  # nothing listens: every attempt fails at once
        domains = {'moved.test': {'primary': '127.0.0.1:%d' % dead}}
        d = started(self, domains=domains, hold=False, retry_min='1s', retry_max='2s')
        self.send(d, 'user@moved.test')
        d.wait_log(r'dest=moved\.test .*(refused|failed)', 15)
        p = fwdlib.Primary('127.0.0.1', mxv.free_port(), 'mx.moved.test')
        p.start()
        self.addCleanup(p.stop)
        d.domains = {'moved.test': {'primary': '127.0.0.1:%d' % p.port}}
        d.write_config()
        hup(d, r'mxvault: reload ok ')
        mxv.wait_until(lambda: p.deliveries(), 20, 'the queued message at the new primary')
        self.assertEqual(p.deliveries()[0].rcpt_tos, ['user@moved.test'])
        d.wait_queue(0)

    def test_open_connection_to_old_primary_takes_no_more(self):
        """A connection open at the reload finishes its message; the rest goes to the new primary."""
        old = fwdlib.Primary('127.0.0.1', mxv.free_port(), 'old.moved.test')
        old.data_hook = lambda delivery: time.sleep(0.5)  # slow: the queue is still full at the reload
        new = fwdlib.Primary('127.0.0.1', mxv.free_port(), 'new.moved.test')
        for p in (old, new):
            p.start()
            self.addCleanup(p.stop)
        domains = {'moved.test': {'primary': '127.0.0.1:%d' % old.port}}
        d = started(self, domains=domains, hold=False, max_connections_per_destination=1)
        n = 6
        with d.smtp() as s:
            for i in range(n):
                to = 'user%d@moved.test' % i
                s.sendmail(SENDER, [to], mxv.message(SENDER, to))
        mxv.wait_until(lambda: old.deliveries(), 10, 'the first delivery at the old primary')
        d.domains = {'moved.test': {'primary': '127.0.0.1:%d' % new.port}}
        d.write_config()
        hup(d, r'mxvault: reload ok ')
        mxv.wait_until(lambda: len(old.deliveries()) + len(new.deliveries()) >= n, 30, 'every message delivered')
        self.assertLess(len(old.deliveries()), n - 1, 'the old connection went on taking messages')
        self.assertGreater(len(new.deliveries()), 0)
        d.wait_queue(0)

    def test_removed_domain_keeps_its_mail_delivered_by_mx(self):
        """A domain dropped from the file: what is queued for it still goes, to its MX (docs/operations.md)."""
        p = fwdlib.Primary('127.0.0.2', mxv.free_port(), 'mx.gone.test')
        p.start()
        self.addCleanup(p.stop)
        u = fwdlib.Unbound(['gone.test. IN MX 10 mx.gone.test.', 'mx.gone.test. IN A 127.0.0.2'])
        u.start()
        self.addCleanup(u.cleanup)
        dead = mxv.free_port()
        keys = {'spf': 'off', 'dmarc': 'off'}
        domains = {'gone.test': dict(keys, primary='127.0.0.1:%d' % dead), 'stays.test': dict(keys)}
        d = started(self, domains=domains, hold=False, retry_min='1s', retry_max='2s', resolver=u.resolver,
                    mx_port=p.port)
        self.send(d, 'user@gone.test')
        d.wait_log(r'dest=gone\.test .*(refused|failed)', 15)
        d.domains = {'stays.test': dict(keys)}
        d.write_config()
        hup(d, r'mxvault: reload ok config=\S+ domains=1$')
        self.assertEqual(rcpt_code(d, 'other@gone.test'), 550)  # no longer backed up
        mxv.wait_until(lambda: p.deliveries(), 20, 'the queued message at the MX of gone.test')
        self.assertEqual(p.deliveries()[0].rcpt_tos, ['user@gone.test'])
        d.wait_queue(0)


class TestReloadCallout(unittest.TestCase):
    def test_callout_asks_the_new_primary(self):
        """recipients = callout: after a reload that moves the primary, a new address is asked of the new one."""
        refusing = fwdlib.Primary('127.0.0.1', mxv.free_port(), 'old.test',
                                  rcpt_reply=lambda addr: '550 5.1.1 no such user')
        accepting = fwdlib.Primary('127.0.0.1', mxv.free_port(), 'new.test')
        for p in (refusing, accepting):
            p.start()
            self.addCleanup(p.stop)
        d = started(self, domains={'co.test': {'recipients': 'callout', 'primary': '127.0.0.1:%d' % refusing.port}})
        self.assertEqual(rcpt_code(d, 'first@co.test'), 550)
        d.domains = {'co.test': {'recipients': 'callout', 'primary': '127.0.0.1:%d' % accepting.port}}
        d.write_config()
        hup(d, r'mxvault: reload ok ')
        d.wait_log(r'mxvault: reload: \[domain co\.test\] changed: primary$')
        self.assertEqual(rcpt_code(d, 'second@co.test'), 250)
        self.assertIn('second@co.test', [a for a, _ in accepting.rcpt_replies])
        self.assertNotIn('second@co.test', [a for a, _ in refusing.rcpt_replies])


class TestReloadCertificate(unittest.TestCase):
    def setUp(self):
        self.certs = tempfile.mkdtemp(prefix='mxv-e2e-certs-')
        self.addCleanup(shutil.rmtree, self.certs, True)
        os.chmod(self.certs, 0o755)
        self.a = fwdlib.make_cert(self.certs, 'a.backup.test')
        self.b = fwdlib.make_cert(self.certs, 'b.backup.test')
        for path in self.a + self.b:
            os.chmod(path, 0o644)

    def test_new_certificate_for_new_sessions(self):
        d = started(self, tls_cert=self.a[0], tls_key=self.a[1])
        self.assertEqual(served_cert(d.port), file_cert(self.a[0]))
        # A session in TLS before the reload goes on after it.
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        early = d.smtp()
        self.addCleanup(early.close)
        early.ehlo('client.test')
        early.starttls(context=ctx)
        early.ehlo('client.test')
        d.server.update(tls_cert=self.b[0], tls_key=self.b[1])
        d.write_config()
        hup(d, r'mxvault: reload ok ')
        self.assertEqual(served_cert(d.port), file_cert(self.b[0]))
        early.sendmail(SENDER, ['alice@example.com'], mxv.message(SENDER, 'alice@example.com'))
        self.assertEqual(len(d.wait_queue(1)), 1)

    def test_bad_certificate_keeps_the_old_one(self):
        d = started(self, tls_cert=self.a[0], tls_key=self.a[1])
        # The files change under the same names: a key that does not match the certificate.
        shutil.copy(self.b[1], self.a[1])
        hup(d, r'mxvault: reload ok ')
        d.wait_log(r'reload: keeps the old certificate: %s: tls_key ' % re.escape(d.conf))
        self.assertEqual(served_cert(d.port), file_cert(self.a[0]))


class TestNotify(unittest.TestCase):
    """sd_notify as systemd's Type=notify sees it: datagrams on $NOTIFY_SOCKET."""

    def setUp(self):
        self.sockdir = tempfile.mkdtemp(prefix='mxv-e2e-notify-')
        self.addCleanup(shutil.rmtree, self.sockdir, True)
        os.chmod(self.sockdir, 0o755)
        self.path = os.path.join(self.sockdir, 'notify')
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(self.sock.close)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o666)  # the daemon sends as its user after the drop

    def next_state(self, want, timeout=20):
        """Reads datagrams until one has the line want; returns that datagram's lines."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError('no %s from the daemon' % want)
            self.sock.settimeout(left)
            lines = self.sock.recv(4096).decode().split('\n')
            if want in lines:
                return lines

    def test_ready_reloading_stopping(self):
        d = mxv.Daemon()
        self.addCleanup(d.cleanup)
        readable(d)
        d.env = {'NOTIFY_SOCKET': self.path}
        self.addCleanup(d.stop)
        d.start()
        lines = self.next_state('READY=1')
        self.assertTrue(any(x.startswith('STATUS=accepting mail') for x in lines), lines)
        self.assertTrue(mxv.port_open(d.port))
        d.proc.send_signal(signal.SIGHUP)
        lines = self.next_state('RELOADING=1')
        self.assertTrue(any(re.fullmatch(r'MONOTONIC_USEC=\d+', x) for x in lines), lines)
        self.next_state('READY=1')
        d.proc.send_signal(signal.SIGTERM)
        self.next_state('STOPPING=1')
        self.assertEqual(d.proc.wait(15), 0)

    def test_ready_only_after_listening(self):
        """READY=1 is sent once the port accepts: a client told "ready" is never refused."""
        d = mxv.Daemon()
        self.addCleanup(d.cleanup)
        d.env = {'NOTIFY_SOCKET': self.path}
        log = open(d.log_path, 'ab')
        self.addCleanup(log.close)
        proc = subprocess.Popen([mxv.BIN, 'serve', '-c', d.conf], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=log, env=dict(os.environ, **d.env))
        self.addCleanup(lambda: proc.poll() is None and (proc.kill(), proc.wait(10)))
        self.next_state('READY=1')
        self.assertTrue(mxv.port_open(d.port))
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(15), 0)


class TestPidFile(unittest.TestCase):
    def test_serve_d_writes_and_removes_it(self):
        d = mxv.Daemon()
        self.addCleanup(d.cleanup)
        pid_path = os.path.join(d.spool, 'mxvault.pid')
        mxv.run_cli('serve', '-d', '-c', d.conf, check=0)  # the parent returns once forked
        pid = mxv.wait_until(lambda: os.path.exists(pid_path) and open(pid_path).read().strip(), 10,
                             'the pid file')
        pid = int(pid)
        self.addCleanup(lambda: os.path.exists('/proc/%d' % pid) and os.kill(pid, signal.SIGKILL))
        mxv.wait_until(lambda: greets(d.port), 10, 'the daemon to greet')
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            self.assertIn(b'serve', f.read())
        # A second daemon on the same pid file is refused before it starts anything.
        p = mxv.run_cli('serve', '-d', '-c', d.conf)
        self.assertEqual(p.returncode, EX_UNAVAILABLE, p.stderr)
        self.assertIn('names process %d, which runs' % pid, p.stderr)
        os.kill(pid, signal.SIGTERM)
        mxv.wait_until(lambda: not os.path.exists('/proc/%d' % pid) or
                       open('/proc/%d/stat' % pid).read().split()[2] == 'Z', 15, 'the daemon to exit')
        self.assertFalse(os.path.exists(pid_path), 'the pid file outlived the daemon')

    def test_stale_pid_file_is_replaced(self):
        d = mxv.Daemon()
        self.addCleanup(d.cleanup)
        # In the spool: a directory the daemon's user may write, so it can remove the file at the stop.
        os.makedirs(d.spool, exist_ok=True)
        pid_path = os.path.join(d.spool, 'run.pid')
        dead = subprocess.Popen(['true'])
        dead.wait()
        with open(pid_path, 'w') as f:
            f.write('%d\n' % dead.pid)
        d.server['pid_file'] = pid_path
        d.write_config()
        d.start()  # the foreground writes it too, when pid_file is set
        with open(pid_path) as f:
            self.assertEqual(int(f.read()), d.pid)
        d.stop()
        self.assertFalse(os.path.exists(pid_path))


class TestSystemdUnit(unittest.TestCase):
    UNIT = os.path.join(mxv.REPO, 'contrib', 'mxvault.service')

    def verify(self, text):
        if not shutil.which('systemd-analyze'):
            self.skipTest('systemd-analyze is not installed (Debian package systemd)')
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, 'mxvault.service')
            with open(path, 'w', encoding='utf-8') as f:
                f.write(text)
            return subprocess.run(['systemd-analyze', 'verify', path], capture_output=True, text=True, timeout=60)

    def unit_text(self):
        with open(self.UNIT, encoding='utf-8') as f:
            # verify wants the binary to exist: the one under test stands in for /usr/sbin/mxvault.
            return f.read().replace('/usr/sbin/mxvault', os.path.abspath(mxv.BIN))

    def test_unit_verifies(self):
        text = self.unit_text()
        for want in ('Type=notify', 'ExecReload=', 'ProtectSystem=strict', 'ReadWritePaths=/var/spool/mxvault',
                     'NoNewPrivileges=yes', 'PrivateTmp=yes',
                     'CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_SETUID CAP_SETGID CAP_CHOWN'):
            self.assertIn(want, text)
        p = self.verify(text)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(p.stderr.strip(), '', p.stderr)

    def test_verify_can_fail(self):
        """The check above means something: a unit with a missing binary is caught."""
        p = self.verify(self.unit_text().replace(os.path.abspath(mxv.BIN), '/nonexistent/mxvault'))
        self.assertNotEqual(p.returncode, 0, p.stdout + p.stderr)


if __name__ == '__main__':
    unittest.main()
