"""End-to-end tests of inbound STARTTLS (RFC 3207, issue 7 section 1): the
real daemon and real TLS clients (openssl s_client, swaks, Python's
smtplib and ssl, a private Postfix instance as the sending MTA). What a
client sees (the 220, EHLO after TLS, 5xx to misuse), what the daemon
logs, what it stores (the Received: header, read at an aiosmtpd primary
the message is forwarded to), and what it refuses to start with.

Certificates: the self-signed one mxvault makes in SPOOL/tls, or pairs
made with openssl (fwdlib.make_cert). Loopback only; every wait has a
deadline.
"""
import hashlib
import os
import pwd
import re
import select
import shutil
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

import fwdlib
import mxv
import shims
from test_config import ConfigCase

SENDER = 'sender@client.test'
TLS_LINE = r'session=\d+ client=127\.0\.0\.1 starttls version=TLSv1\.[23] cipher=\S+ bits=\d+/\d+$'


def client_context():
    """A client that encrypts without verifying, as most MTAs do toward an MX."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def starttls(r):
    """Raw session after EHLO: STARTTLS, then the handshake; returns the TLS socket's DER certificate."""
    r.expect(220, '2.0.0')
    assert r.buf == b'', 'bytes after the 220: %r' % r.buf
    r.sock = client_context().wrap_socket(r.sock, server_hostname='backup.test')
    return r.sock.getpeercert(binary_form=True)


def started(test, env=None, **kw):
    """A daemon of its own for test (mxv.Daemon keywords), started, stopped and removed after it."""
    d = mxv.Daemon(**kw)
    test.addCleanup(d.cleanup)
    d.env = env or {}
    d.start()
    test.addCleanup(d.stop)
    return d


def smtp_tls(d):
    s = d.smtp()
    s.ehlo()
    s.starttls(context=client_context())
    s.ehlo()
    return s


class TlsCase(unittest.TestCase):
    SERVER = {}
    DOMAINS = None

    def setUp(self):
        self.d = mxv.Daemon(domains=self.DOMAINS, **self.SERVER)
        self.addCleanup(self.d.cleanup)
        self.d.start()
        self.addCleanup(self.d.stop)

    def raw(self):
        r = self.d.raw()
        self.addCleanup(r.close)
        code, text = r.ehlo()
        self.assertEqual(code, 250, text)
        return r, text

    def raw_tls(self, pipelined=''):
        """A raw session after EHLO and STARTTLS (pipelined: sent in clear right behind it), not yet EHLO again."""
        r, _ = self.raw()
        r.send('STARTTLS\r\n' + pipelined)
        starttls(r)
        return r


class TestClients(TlsCase):
    def test_openssl_s_client(self):
        p = subprocess.run(['openssl', 's_client', '-starttls', 'smtp', '-connect', '127.0.0.1:%d' % self.d.port,
                            '-crlf', '-ign_eof', '-quiet'], input=b'EHLO after.test\nQUIT\n',
                           capture_output=True, timeout=30)
        out = p.stdout.decode('utf-8', 'replace')
        self.assertEqual(p.returncode, 0, out + p.stderr.decode('utf-8', 'replace'))
        self.assertIn('250-backup.test', out)
        self.assertIn('221 2.0.0 Bye', out)
        # What s_client prints comes after the handshake: EHLO over TLS offers no STARTTLS.
        self.assertNotIn('STARTTLS', out)
        self.d.wait_log(TLS_LINE)

    def test_ehlo_offers_starttls_in_clear_only(self):
        _, text = self.raw()
        self.assertIn('\nSTARTTLS\n', text + '\n')
        r = self.raw_tls()
        code, text = r.ehlo()
        self.assertEqual(code, 250)
        self.assertNotIn('STARTTLS', text)
        self.assertIn('PIPELINING', text)

    def test_swaks_tls(self):
        p = subprocess.run(['swaks', '--tls', '--server', '127.0.0.1:%d' % self.d.port, '--ehlo', 'client.test',
                            '--from', SENDER, '--to', 'alice@example.com', '--timeout', '20'],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn('<-  220 2.0.0 Ready to start TLS', p.stdout)
        self.assertIn('=== TLS started with cipher TLSv1.3', p.stdout)
        q = self.d.wait_queue(1)
        self.assertEqual([r['address'] for r in q[0]['recipients']], ['alice@example.com'])
        self.d.wait_log(r'proto=ESMTPS result=queued')

    def test_smtplib_starttls(self):
        s = smtp_tls(self.d)
        self.assertNotIn('starttls', s.esmtp_features)
        s.sendmail(SENDER, ['bob@example.com'], mxv.message(SENDER, 'bob@example.com'))
        code, _ = s.quit()  # 221 arrives over TLS before the close
        self.assertEqual(code, 221)
        self.assertEqual(len(self.d.wait_queue(1)), 1)
        self.d.wait_log(TLS_LINE)


class TestMisuse(TlsCase):
    def test_pipelined_command_after_starttls_is_discarded(self):
        """CVE-2011-0411: a command sent in clear behind STARTTLS must not run inside TLS."""
        r = self.raw_tls(pipelined='MAIL FROM:<attacker@evil.test>\r\n')
        self.assertEqual(r.ehlo()[0], 250)
        # Had the MAIL run, this RCPT would be accepted.
        r.send('RCPT TO:<alice@example.com>\r\n')
        r.expect(503, '5.5.1')
        self.d.wait_log(r'starttls discarded=%d bytes pipelined in clear' % len('MAIL FROM:<attacker@evil.test>\r\n'))

    def test_session_reset_after_starttls(self):
        """RFC 3207 4.2: HELO/EHLO is needed again, and the old name is forgotten."""
        r = self.raw_tls()
        r.send('MAIL FROM:<%s>\r\n' % SENDER)
        r.expect(503, '5.5.1')  # send HELO/EHLO first

    def test_starttls_twice(self):
        r = self.raw_tls()
        self.assertEqual(r.ehlo()[0], 250)
        r.send('STARTTLS\r\n')
        r.expect(503, '5.5.1')
        r.send('NOOP\r\n')
        r.expect(250)

    def test_starttls_inside_transaction(self):
        r, _ = self.raw()
        r.send('MAIL FROM:<%s>\r\n' % SENDER)
        r.expect(250)
        r.send('STARTTLS\r\n')
        r.expect(503, '5.5.1')
        r.send('STARTTLS now\r\n')
        r.expect(501, '5.5.4')

    def in_handshake(self, **server):
        """A daemon of its own (with these [server] keys), and a session that got 220 to STARTTLS."""
        d = started(self, **server)
        r = d.raw()
        self.addCleanup(r.close)
        r.ehlo()
        r.send('STARTTLS\r\n')
        r.expect(220)
        return d, r

    def test_garbage_instead_of_client_hello(self):
        d, r = self.in_handshake(max_sessions_per_ip=1)
        r.send(b'GET / HTTP/1.0\r\n\r\n' + bytes(range(256)) * 4)
        r.wait_closed()
        r.close()
        d.wait_log(r'starttls failed reason="[^"]+"')
        # The slot is free again (one session per IP) and the daemon still serves TLS.
        s = smtp_tls(d)
        self.assertEqual(s.noop()[0], 250)
        s.quit()
        self.assertTrue(d.running())

    def test_silent_client_during_handshake(self):
        d, r = self.in_handshake(command_timeout='2s')
        r.wait_closed(timeout=10)
        d.wait_log(r'starttls failed reason="timeout"')

    def test_handshake_obeys_session_deadline(self):
        """A handshake trickled one byte at a time still ends at max_session_time."""
        d, r = self.in_handshake(max_session_time='2s', command_timeout='60s')
        r.send(b'\x16')  # the first byte of a ClientHello, and then nothing
        r.wait_closed(timeout=10)
        d.wait_log(r'starttls failed reason="session time limit exceeded"')


def exchange(sock, stream, sent=0, timeout=120):
    """Sends the rest of stream (from sent) on a non-blocking TLS socket while
    reading replies, until the 221; returns every byte read."""
    got = bytearray()
    deadline = time.monotonic() + timeout
    while not got.endswith(b'221 2.0.0 Bye\r\n'):
        if time.monotonic() > deadline:
            raise AssertionError('replies did not all arrive (%d)' % got.count(b'\r\n'))
        rd, wr, _ = select.select([sock], [sock] if sent < len(stream) else [], [], 5)
        if rd or sock.pending():
            try:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    raise AssertionError('closed after %d replies: %r' % (got.count(b'\r\n'), bytes(got[-60:])))
                got += chunk
            except ssl.SSLWantReadError:
                pass
        if wr:
            try:
                sent += sock.send(stream[sent:sent + 16384])
            except ssl.SSLWantWriteError:
                pass
    return got


class TestBackPressure(unittest.TestCase):
    def test_burst_then_quit_gets_every_reply(self):
        """Regression: libevent runs the TLS filter's write callback deferred;
        a closing session took a late one for "all encrypted" and sent its
        close_notify with replies still queued, which then failed to encrypt
        and were lost, 221 included. 100,000 NOOPs and QUIT in one burst (the
        kernel buffers take it all), read at Python's pace."""
        d = started(self)
        r = d.raw()
        self.addCleanup(r.close)
        r.ehlo()
        r.send('STARTTLS\r\n')
        starttls(r)
        n = 100000
        r.sock.setblocking(False)
        got = exchange(r.sock, memoryview(b'EHLO c\r\n' + b'NOOP\r\n' * n + b'QUIT\r\n'))
        self.assertEqual(got.count(b'250 2.0.0 Ok\r\n'), n)

    def test_client_that_does_not_read_is_not_read_either(self):
        """Under TLS the replies pass through two buffers (the filter's and the
        socket's): a client that pipelines without reading must still make the
        server stop reading it, and then get every reply, in order, and the 221
        before the close. As test_smtp's TestBackPressure, over TLS, with small
        socket buffers on both sides (a shim for the daemon's) so that 200,000
        NOOPs are enough. One thread, non-blocking: an SSL socket is not for two."""
        tiny = shims.build('tinysndbuf')
        if not tiny:
            self.skipTest('no C compiler for the shim')
        d = started(self, env=shims.preload_env(tiny))
        r = mxv.Raw(d.port, bufsize=8192)
        self.addCleanup(r.close)
        r.ehlo()
        r.send('STARTTLS\r\n')
        starttls(r)
        n = 200000
        stream = memoryview(b'EHLO c\r\n' + b'NOOP\r\n' * n + b'QUIT\r\n')
        sock = r.sock
        sock.setblocking(False)
        sent = 0
        while sent < len(stream):
            _, w, _ = select.select([], [sock], [], 1.0)
            if not w:
                break  # no progress for a second: the daemon stopped reading
            try:
                sent += sock.send(stream[sent:sent + 16384])
            except ssl.SSLWantWriteError:
                pass
        self.assertLess(sent, len(stream) // 2, 'the daemon kept reading a client that does not read')

        got = exchange(sock, stream, sent)
        self.assertEqual(got.count(b'250 2.0.0 Ok\r\n'), n)


class TestNoTls(TlsCase):
    SERVER = {'tls_cert': 'none'}

    def test_not_offered(self):
        r, text = self.raw()
        self.assertNotIn('STARTTLS', text)
        r.send('STARTTLS\r\n')
        r.expect(502, '5.5.1')
        self.assertFalse(os.path.exists(os.path.join(self.d.spool, 'tls')))
        self.d.wait_log(r'inbound TLS is off \(tls_cert = none\)')


class TestRequireTls(TlsCase):
    DOMAINS = {'secure.test': {'require_tls': 'yes', 'recipients': ['alice']},
               'example.com': {'recipients': ['alice']}}

    def test_require_tls(self):
        r, _ = self.raw()
        r.send('MAIL FROM:<%s>\r\n' % SENDER)
        r.expect(250)
        r.send('RCPT TO:<alice@secure.test>\r\n')
        self.assertEqual(r.expect(530, '5.7.0'), '5.7.0 Must issue a STARTTLS command first')
        # Before the recipient check: unknown addresses are not revealed in clear either.
        r.send('RCPT TO:<nobody@secure.test>\r\n')
        r.expect(530, '5.7.0')
        r.send('RCPT TO:<postmaster@secure.test>\r\n')
        r.expect(250)
        r.send('RCPT TO:<alice@example.com>\r\n')
        r.expect(250)
        r.send('RSET\r\n')
        r.expect(250)
        r.send('STARTTLS\r\n')
        starttls(r)
        r.ehlo()
        r.send('MAIL FROM:<%s>\r\n' % SENDER)
        r.expect(250)
        r.send('RCPT TO:<alice@secure.test>\r\n')
        r.expect(250)


class TestSelfSigned(unittest.TestCase):
    def test_created_at_first_start_and_reused(self):
        d = mxv.Daemon()
        self.addCleanup(d.cleanup)
        d.start()
        m = d.wait_log(r'tls: created a self-signed certificate for hostname=backup\.test cert=(\S+) key=(\S+) '
                       r'sha256=([0-9a-f]{64})$')
        cert, key, logged = m.group(1), m.group(2), m.group(3)
        self.assertEqual(os.path.dirname(cert), os.path.join(d.spool, 'tls'))
        self.assertEqual(os.stat(key).st_mode & 0o777, 0o600)
        if os.geteuid() == 0:  # given to the daemon's user, which reads it for the next start
            user = pwd.getpwnam('mxvault')
            for path in (cert, key, os.path.dirname(cert)):
                self.assertEqual((os.stat(path).st_uid, os.stat(path).st_gid), (user.pw_uid, user.pw_gid), path)
        first = self.served_fingerprint(d)
        self.assertEqual(first, logged)
        d.restart()
        self.addCleanup(d.stop)
        self.assertEqual(self.served_fingerprint(d), first)
        self.assertEqual(len(re.findall(r'created a self-signed certificate', d.log_text())), 1)

    def served_fingerprint(self, d):
        with d.raw() as r:
            r.ehlo()
            r.send('STARTTLS\r\n')
            der = starttls(r)
            r.cmd('QUIT')
        return hashlib.sha256(der).hexdigest()


class TestConfiguredCert(unittest.TestCase):
    def test_root_only_key_is_loaded_before_privileges_drop(self):
        d = mxv.Daemon()
        self.addCleanup(d.cleanup)
        cert, key = fwdlib.make_cert(d.dir, 'mx.backup.test')
        os.chmod(key, 0o600)  # root's, when the suite runs as root: the daemon then runs as mxvault
        d.server.update(tls_cert=cert, tls_key=key)
        d.write_config()
        d.start()
        self.addCleanup(d.stop)
        with open(cert) as f:
            want = ssl.PEM_cert_to_DER_cert(f.read())
        with d.raw() as r:
            r.ehlo()
            r.send('STARTTLS\r\n')
            self.assertEqual(starttls(r), want)
            r.cmd('QUIT')
        self.assertFalse(os.path.exists(os.path.join(d.spool, 'tls')), 'made a self-signed one anyway')


class TestBadFiles(ConfigCase):
    def test_missing_file(self):
        missing = os.path.join(self.d.dir, 'nope.pem')
        conf = self.good_config(tls_cert=missing, tls_key=missing)
        self.assert_refused(conf, r':\d+: tls_cert %s: cannot read: No such file' % re.escape(missing))

    def test_not_pem(self):
        cert, key = fwdlib.make_cert(self.d.dir, 'a.test')
        junk = self.write('junk.pem', 'not a certificate\n')
        self.assert_refused(self.good_config(tls_cert=junk, tls_key=key), r'tls_cert \S+junk\.pem: no PEM certificate')

    def test_mismatched_key(self):
        cert, _ = fwdlib.make_cert(self.d.dir, 'a.test')
        _, other = fwdlib.make_cert(self.d.dir, 'b.test')
        self.assert_refused(self.good_config(tls_cert=cert, tls_key=other),
                            r'tls_key \S+b\.test\.key: the private key does not match the certificate')

    def test_key_without_cert(self):
        _, key = fwdlib.make_cert(self.d.dir, 'a.test')
        self.assert_refused(self.good_config(tls_key=key), r'tls_key needs tls_cert')


@unittest.skipUnless(fwdlib.Controller is not None, 'needs python3-aiosmtpd (run with /usr/bin/python3)')
class TestReceivedHeader(unittest.TestCase):
    """The Received: header as the primary gets it: forwarded to an aiosmtpd primary."""

    def setUp(self):
        self.port = mxv.free_port()
        self.primary = fwdlib.Primary('127.0.0.1', self.port, 'primary.test')
        self.addCleanup(self.primary.stop)
        self.primary.start()
        domains = {'example.com': {'recipients': ['alice'], 'primary': '127.0.0.1:%d' % self.port}}
        self.d = mxv.Daemon(domains=domains, hold=False, probe_interval='1s', retry_min='1s', retry_max='2s')
        self.addCleanup(self.d.cleanup)
        self.d.start()
        self.addCleanup(self.d.stop)

    def received(self, n):
        dl = self.primary.wait_deliveries(n, timeout=20)[n - 1]
        m = re.search(rb'^Received: from .*?(?=\r\n\S)', dl.data, re.S | re.M)
        self.assertIsNotNone(m, dl.data[:500])
        return m.group(0).decode()

    def test_esmtps_with_version_and_cipher(self):
        s = smtp_tls(self.d)
        s.sendmail(SENDER, ['alice@example.com'], mxv.message(SENDER, 'alice@example.com'))
        s.quit()
        h = self.received(1)
        self.assertRegex(h, r'by backup\.test \(mxvault\) with ESMTPS id [0-9a-f]{16}\r\n'
                            r'\t\(version=TLSv1\.3 cipher=TLS_\w+ bits=\d+/\d+\)\r\n\tfor <alice@example\.com>;')

        # SMTPUTF8 over TLS is UTF8SMTPS (RFC 6531 3.7.3); in clear, plain ESMTP and no TLS comment.
        s = smtp_tls(self.d)
        s.sendmail(SENDER, ['alice@example.com'], mxv.message(SENDER, 'alice@example.com'), mail_options=['SMTPUTF8'])
        s.quit()
        self.assertIn(' with UTF8SMTPS id ', self.received(2))
        fwdlib.send(self.d, SENDER, ['alice@example.com'])
        h = self.received(3)
        self.assertIn(' with ESMTP id ', h)
        self.assertNotIn('version=', h)


class PrivatePostfix:
    """A Postfix instance of its own (as scripts/bench.sh makes one): main.cf
    from scratch, the system's master.cf with its inet services replaced by
    smtpd on 127.0.0.1:port; it relays everything to relayhost."""

    def __init__(self, relayhost, **extra):
        self.dir = tempfile.mkdtemp(prefix='mxv-postfix-')
        os.chmod(self.dir, 0o755)  # its unprivileged daemons walk into it
        self.conf = os.path.join(self.dir, 'conf')
        self.queue = os.path.join(self.dir, 'queue')
        self.data = os.path.join(self.dir, 'data')
        self.maillog = os.path.join(self.dir, 'maillog')
        self.port = mxv.free_port()
        self.relayhost = relayhost
        self.extra = extra
        self.master = None

    def postconf(self, *args):
        subprocess.run(['postconf', '-c', self.conf] + list(args), check=True, capture_output=True, timeout=30)

    def start(self):
        for p in (self.conf, self.queue, self.data):
            os.makedirs(p)
        open(os.path.join(self.conf, 'main.cf'), 'w').close()
        shutil.copy('/etc/postfix/master.cf', self.conf)
        owner = subprocess.run(['postconf', '-c', self.conf, '-h', 'mail_owner'], capture_output=True, text=True,
                               check=True).stdout.strip()
        shutil.chown(self.data, owner)
        keys = {'compatibility_level': '3.6', 'queue_directory': self.queue, 'data_directory': self.data,
                'inet_interfaces': '127.0.0.1', 'inet_protocols': 'ipv4', 'myhostname': 'postfix.client.test',
                'mydestination': '', 'relay_domains': 'example.com', 'relayhost': self.relayhost,
                'mynetworks': '127.0.0.0/8', 'smtpd_recipient_restrictions': 'permit_mynetworks,reject',
                'alias_maps': '', 'alias_database': '', 'maillog_file': self.maillog,
                'maillog_file_prefixes': self.dir, 'smtp_tls_loglevel': '1'}
        keys.update(self.extra)
        self.postconf('-e', *['%s=%s' % kv for kv in keys.items()])
        services = subprocess.run(['postconf', '-c', self.conf, '-M'], capture_output=True, text=True,
                                  check=True).stdout
        for line in services.splitlines():
            f = line.split()
            if len(f) > 1 and f[1] == 'inet':
                self.postconf('-MX', f[0] + '/inet')
        self.postconf('-M', '127.0.0.1:%d/inet=127.0.0.1:%d inet n - n - - smtpd' % (self.port, self.port))
        self.postconf('-F', '*/*/chroot=n')
        p = subprocess.run(['postfix', '-c', self.conf, 'start'], capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise AssertionError('postfix start: %s %s' % (p.stdout, p.stderr))
        mxv.wait_until(lambda: mxv.port_open(self.port), 30, 'the private postfix on port %d' % self.port)
        return self

    def log_text(self):
        try:
            with open(self.maillog, errors='replace') as f:
                return f.read()
        except FileNotFoundError:
            return ''

    def stop(self):
        pidfile = os.path.join(self.queue, 'pid', 'master.pid')
        master = None
        if os.path.exists(pidfile):
            with open(pidfile) as f:
                master = int(f.read().strip() or 0) or None
        subprocess.run(['postfix', '-c', self.conf, 'stop'], capture_output=True, timeout=60)
        if master:
            mxv.wait_until(lambda: not os.path.exists('/proc/%d' % master), 15, 'postfix master to exit')
        shutil.rmtree(self.dir, ignore_errors=True)


@unittest.skipUnless(os.geteuid() == 0 and shutil.which('postfix') and os.path.exists('/etc/postfix/master.cf'),
                     'a private Postfix instance needs root and postfix')
class TestPostfixSender(unittest.TestCase):
    def test_postfix_relays_with_tls_encrypt(self):
        d = mxv.Daemon()
        self.addCleanup(d.cleanup)
        d.start()
        self.addCleanup(d.stop)
        pfx = PrivatePostfix('[127.0.0.1]:%d' % d.port, smtp_tls_security_level='encrypt')
        self.addCleanup(pfx.stop)
        pfx.start()
        with smtplib.SMTP('127.0.0.1', pfx.port, local_hostname='client.test', timeout=30) as s:
            s.sendmail(SENDER, ['alice@example.com'], mxv.message(SENDER, 'alice@example.com'))
        d.wait_log(r'proto=ESMTPS result=queued', timeout=60)
        d.wait_log(TLS_LINE)
        mxv.wait_until(lambda: re.search(r'status=sent', pfx.log_text()), 30, 'postfix to log status=sent')
        self.assertRegex(pfx.log_text(), r'TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:%d' % d.port)
        q = d.wait_queue(1)
        self.assertEqual([r['address'] for r in q[0]['recipients']], ['alice@example.com'])


if __name__ == '__main__':
    unittest.main(verbosity=2)
