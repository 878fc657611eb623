"""End-to-end tests of the SMTP dialogue: the real daemon, real clients
(smtplib, swaks, smtp-source, a raw socket), and what a client sees: reply
codes, enhanced status codes, and the queue as `queue list --json` shows it.
Each test gets a fresh daemon (see mxv.py); LIMITS are the [server] keys.
"""
import os
import select
import shutil
import subprocess
import threading
import time
import unittest

import mxv

SENDER = 'sender@client.test'


class DaemonCase(unittest.TestCase):
    LIMITS = {'max_message_size': '1M', 'max_recipients': 5, 'max_errors': 10}

    def setUp(self):
        self.d = mxv.Daemon(**self.LIMITS)
        self.addCleanup(self.d.cleanup)
        self.d.start()
        # Runs before cleanup (LIFO), after the clients' own cleanups.
        self.addCleanup(self.d.stop)

    def raw(self, ehlo=True):
        r = self.d.raw()
        self.addCleanup(r.close)
        if ehlo:
            code, _ = r.ehlo()
            self.assertEqual(code, 250)
        else:
            r.expect(220)
        return r

    def reply(self, r, code, enh=None):
        c, text = r.read_reply()
        self.assertEqual(c, code, text)
        if enh:
            self.assertTrue(text.startswith(enh + ' '), '%d %s: expected %s' % (c, text, enh))
        return text

    def cmd(self, r, line, code, enh=None):
        r.send(line.encode('utf-8') + b'\r\n' if isinstance(line, str) else line + b'\r\n')
        return self.reply(r, code, enh)

    def spool_bytes(self):
        data = b''
        for root, _, files in os.walk(self.d.spool):
            for f in sorted(files):
                if not os.path.isfile(os.path.join(root, f)):
                    continue  # the control socket
                with open(os.path.join(root, f), 'rb') as fh:
                    data += fh.read()
        return data

    def assert_stored(self, msg, content):
        """The queued message msg holds exactly our Received header + content."""
        data = self.spool_bytes()
        i = data.find(content)
        self.assertGreaterEqual(i, 0, 'content not found in the spool')
        j = data.rfind(b'Received: from ', 0, i)
        self.assertGreaterEqual(j, 0, 'no Received header before the content')
        received = data[j:i]
        self.assertRegex(received, rb'^Received: from [^\r\n]*\r\n(\t[^\r\n]*\r\n)+$')
        self.assertEqual(msg['size'], len(received) + len(content))

    def only_message(self):
        q = self.d.wait_queue(1)
        return q[0]

    def assert_queue_empty(self):
        # 250 is sent only after the message is durable, so an empty queue
        # after the client has seen every reply is final.
        self.assertEqual(self.d.queue(), [])


class TestTransaction(DaemonCase):
    def test_smtplib_transaction(self):
        body = mxv.message(SENDER, 'alice@example.com', body='Hello Alice.\r\n')
        with self.d.smtp() as s:
            code, text = s.ehlo()
            self.assertEqual(code, 250)
            for ext in ('pipelining', 'size', '8bitmime', 'smtputf8', 'enhancedstatuscodes', 'chunking', 'dsn'):
                self.assertTrue(s.has_extn(ext), ext)
            self.assertEqual(s.esmtp_features['size'], str(1 << 20))
            code, _ = s.mail(SENDER)
            self.assertEqual(code, 250)
            self.assertEqual(s.rcpt('alice@example.com')[0], 250)
            self.assertEqual(s.rcpt('bob@example.com')[0], 250)
            code, text = s.data(body)
            self.assertEqual(code, 250)
            self.assertRegex(text.decode(), r'^2\.0\.0 Ok: queued as [0-9a-f]{16}$')
            qid = text.decode().split()[-1]
            s.quit()
        m = self.only_message()
        self.assertEqual(m['id'], qid)
        self.assertEqual(m['sender'], SENDER)
        self.assertEqual([(r['address'], r['state']) for r in m['recipients']],
                         [('alice@example.com', 'queued'), ('bob@example.com', 'queued')])
        self.assertGreater(m['size'], len(body))
        self.assert_stored(m, body)

    @unittest.skipUnless(shutil.which('swaks'), 'swaks not installed')
    def test_swaks(self):
        p = subprocess.run(['swaks', '--server', '127.0.0.1:%d' % self.d.port, '--helo', 'client.test',
                            '--from', SENDER, '--to', 'bob@example.com', '--timeout', '10'],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        m = self.only_message()
        self.assertEqual(m['sender'], SENDER)
        self.assertEqual(m['recipients'], [{'address': 'bob@example.com', 'state': 'queued'}])

    @unittest.skipUnless(os.access('/usr/sbin/smtp-source', os.X_OK), 'smtp-source not installed')
    def test_smtp_source(self):
        p = subprocess.run(['/usr/sbin/smtp-source', '-s', '5', '-m', '50', '-l', '2048', '-f', 'a@b.org',
                            '-t', 'x@any.test', '127.0.0.1:%d' % self.d.port],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        q = self.d.wait_queue(50)
        for m in q:
            self.assertEqual(m['sender'], 'a@b.org')
            self.assertEqual(m['recipients'], [{'address': 'x@any.test', 'state': 'queued'}])
            self.assertGreater(m['size'], 2048)

    def test_helo_and_null_sender(self):
        r = self.raw(ehlo=False)
        self.cmd(r, 'EHLO', 501, '5.5.4')
        self.cmd(r, 'HELO two words', 501, '5.5.4')
        self.assertEqual(r.cmd('HELO client.test'), (250, 'backup.test'))
        self.cmd(r, 'MAIL FROM:<> BODY=8BITMIME', 555, '5.5.4')  # no extensions after HELO
        self.cmd(r, 'MAIL FROM:<>', 250, '2.1.0')  # bounces must be accepted
        self.cmd(r, 'RCPT TO:<alice@example.com>', 250, '2.1.5')
        self.cmd(r, 'DATA', 354)
        body = b'Subject: bounce\r\n\r\nundeliverable\r\n'
        r.send(body + b'.\r\n')
        self.reply(r, 250, '2.0.0')
        m = self.only_message()
        self.assertEqual(m['sender'], '')
        self.assert_stored(m, body)
        self.assertIn(b' with SMTP id ', self.spool_bytes())

    def test_sequence_errors(self):
        r = self.raw(ehlo=False)
        self.cmd(r, 'MAIL FROM:<%s>' % SENDER, 503, '5.5.1')
        self.cmd(r, 'EHLO client.test', 250)
        self.cmd(r, 'RCPT TO:<alice@example.com>', 503, '5.5.1')
        self.cmd(r, 'DATA', 503, '5.5.1')
        self.cmd(r, 'MAIL FROM:<%s>' % SENDER, 250, '2.1.0')
        self.cmd(r, 'DATA', 503, '5.5.1')  # no RCPT yet
        self.cmd(r, 'RCPT TO:<nobody@example.com>', 550, '5.1.1')
        self.cmd(r, 'DATA', 554, '5.5.1')  # only rejected recipients
        self.cmd(r, 'MAIL FROM:<%s>' % SENDER, 503, '5.5.1')  # nested
        self.cmd(r, 'VRFY alice', 252)
        self.cmd(r, 'FROB nicate', 500, '5.5.2')
        self.cmd(r, 'RSET', 250, '2.0.0')
        self.cmd(r, 'RCPT TO:<alice@example.com>', 503, '5.5.1')  # RSET ended the transaction
        self.cmd(r, 'NOOP', 250, '2.0.0')
        self.cmd(r, 'QUIT', 221, '2.0.0')
        r.wait_closed()
        self.assert_queue_empty()


class TestPipelining(DaemonCase):
    def test_one_transaction_in_one_write(self):
        r = self.raw()
        r.send('MAIL FROM:<%s>\r\nRCPT TO:<alice@example.com>\r\nRCPT TO:<nobody@example.com>\r\n'
               'DATA\r\n' % SENDER)
        self.reply(r, 250, '2.1.0')
        self.reply(r, 250, '2.1.5')
        self.reply(r, 550, '5.1.1')
        self.reply(r, 354)
        body = mxv.message(SENDER, 'alice@example.com')
        r.send(body + b'.\r\n')
        self.reply(r, 250, '2.0.0')
        self.cmd(r, 'QUIT', 221)
        m = self.only_message()
        self.assertEqual(m['recipients'], [{'address': 'alice@example.com', 'state': 'queued'}])
        self.assert_stored(m, body)

    def test_two_messages_in_one_write(self):
        r = self.raw()
        b1 = mxv.message(SENDER, 'alice@example.com', subject='one')
        b2 = mxv.message(SENDER, 'bob@example.com', subject='two')
        r.send(b'MAIL FROM:<a@client.test>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n' + b1 + b'.\r\n' +
               b'MAIL FROM:<b@client.test>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n' + b2 + b'.\r\n' +
               b'QUIT\r\n')
        for code in (250, 250, 354, 250, 250, 250, 354, 250, 221):
            self.reply(r, code)
        r.wait_closed()
        q = sorted(self.d.wait_queue(2), key=lambda m: m['sender'])
        self.assertEqual([(m['sender'], m['recipients'][0]['address']) for m in q],
                         [('a@client.test', 'alice@example.com'), ('b@client.test', 'bob@example.com')])
        self.assert_stored(q[0], b1)
        self.assert_stored(q[1], b2)


class TestBdat(DaemonCase):
    def test_chunks(self):
        r = self.raw()
        self.cmd(r, 'MAIL FROM:<%s>' % SENDER, 250)
        self.cmd(r, 'RCPT TO:<alice@example.com>', 250)
        body = mxv.message(SENDER, 'alice@example.com', body='chunked\r\n' * 20)
        a, b = body[:100], body[100:]
        r.send(b'BDAT %d\r\n' % len(a) + a)
        self.reply(r, 250, '2.0.0')
        r.send(b'BDAT %d LAST\r\n' % len(b) + b)
        self.reply(r, 250, '2.0.0')
        m = self.only_message()
        self.assert_stored(m, body)

    def test_bdat_0_last(self):
        r = self.raw()
        body = mxv.message(SENDER, 'bob@example.com')
        # All pipelined, the way CHUNKING clients send it.
        r.send(b'MAIL FROM:<%s>\r\nRCPT TO:<bob@example.com>\r\nBDAT %d\r\n' % (SENDER.encode(), len(body)) +
               body + b'BDAT 0 LAST\r\n')
        for code in (250, 250, 250, 250):
            self.reply(r, code)
        self.assert_stored(self.only_message(), body)

    def test_bdat_without_mail_consumes_the_chunk(self):
        r = self.raw()
        # The chunk looks like a command; it must be eaten as data, not run.
        r.send(b'BDAT 6\r\nQUIT\r\n')
        self.reply(r, 503, '5.5.1')
        self.cmd(r, 'NOOP', 250, '2.0.0')
        r.send(b'BDAT 6 LAST\r\nRSET\r\n')
        self.reply(r, 503, '5.5.1')
        self.cmd(r, 'NOOP', 250, '2.0.0')
        self.assert_queue_empty()

    def test_bdat_over_size_limit(self):
        r = self.raw()
        self.cmd(r, 'MAIL FROM:<%s>' % SENDER, 250)
        self.cmd(r, 'RCPT TO:<alice@example.com>', 250)
        chunk = (b'x' * 998 + b'\r\n') * 600  # 600 KB
        r.send(b'BDAT %d\r\n' % len(chunk) + chunk)
        self.reply(r, 250, '2.0.0')
        r.send(b'BDAT %d LAST\r\n' % len(chunk) + chunk)
        self.reply(r, 552, '5.3.4')
        # The session goes on, and a message of the right size still fits.
        self.cmd(r, 'MAIL FROM:<%s>' % SENDER, 250)
        self.cmd(r, 'RCPT TO:<alice@example.com>', 250)
        body = mxv.message(SENDER, 'alice@example.com')
        r.send(b'BDAT %d LAST\r\n' % len(body) + body)
        self.reply(r, 250, '2.0.0')
        self.assert_stored(self.only_message(), body)


class TestEightBitAndUtf8(DaemonCase):
    def test_8bitmime_body(self):
        r = self.raw()
        self.cmd(r, 'MAIL FROM:<%s> BODY=8BITMIME' % SENDER, 250)
        self.cmd(r, 'RCPT TO:<alice@example.com>', 250)
        self.cmd(r, 'DATA', 354)
        body = (b'From: <sender@client.test>\r\nSubject: 8bit\r\nContent-Type: text/plain; charset=latin1\r\n'
                b'Content-Transfer-Encoding: 8bit\r\n\r\nCaf\xe9 \xff\x80\x81 na\xefve\r\n')
        r.send(body + b'.\r\n')
        self.reply(r, 250, '2.0.0')
        self.assert_stored(self.only_message(), body)

    def test_smtputf8(self):
        r = self.raw()
        self.cmd(r, 'MAIL FROM:<ü@例え.jp> SMTPUTF8', 250, '2.1.0')
        self.cmd(r, 'RCPT TO:<δοκιμή@any.test>', 250, '2.1.5')
        self.cmd(r, 'DATA', 354)
        body = 'From: <ü@例え.jp>\r\nTo: <δοκιμή@any.test>\r\nSubject: ünïcödé\r\n\r\nこんにちは\r\n'.encode()
        r.send(body + b'.\r\n')
        self.reply(r, 250, '2.0.0')
        m = self.only_message()
        self.assertEqual(m['sender'], 'ü@例え.jp')
        self.assertEqual(m['recipients'], [{'address': 'δοκιμή@any.test', 'state': 'queued'}])
        self.assert_stored(m, body)
        self.assertIn(b' with UTF8SMTP ', self.spool_bytes())

    def test_utf8_without_smtputf8(self):
        r = self.raw()
        self.cmd(r, 'MAIL FROM:<ü@例え.jp>', 553, '5.6.7')
        self.cmd(r, 'MAIL FROM:<%s>' % SENDER, 250)
        self.cmd(r, 'RCPT TO:<δοκιμή@any.test>', 553, '5.6.7')
        self.cmd(r, 'RCPT TO:<user@例え.jp>', 553, '5.6.7')


class TestDsn(DaemonCase):
    def test_dsn_parameters(self):
        r = self.raw()
        self.cmd(r, 'MAIL FROM:<%s> RET=HDRS ENVID=abc' % SENDER, 250, '2.1.0')
        self.cmd(r, 'RCPT TO:<alice@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;alice@example.com',
                 250, '2.1.5')
        self.cmd(r, 'RCPT TO:<bob@example.com> NOTIFY=NEVER', 250, '2.1.5')
        self.cmd(r, 'DATA', 354)
        r.send(mxv.message(SENDER, 'alice@example.com') + b'.\r\n')
        self.reply(r, 250, '2.0.0')
        m = self.only_message()
        self.assertEqual([x['address'] for x in m['recipients']], ['alice@example.com', 'bob@example.com'])


class TestLimits(DaemonCase):
    LIMITS = {'max_message_size': '1M', 'max_recipients': 5, 'max_errors': 5, 'max_sessions_per_ip': 3}

    def test_command_line_too_long(self):
        r = self.raw()
        self.cmd(r, 'NOOP ' + 'x' * (512 - 7), 250)  # 512 octets with CRLF: the limit
        self.cmd(r, 'NOOP ' + 'x' * (512 - 6), 500, '5.5.2')
        self.cmd(r, 'NOOP ' + 'x' * 600, 500, '5.5.2')
        self.cmd(r, 'MAIL FROM:<%s> ENVID=%s' % (SENDER, 'x' * 2000), 500, '5.5.2')
        self.cmd(r, 'NOOP', 250)  # the session is still in step

    def test_message_too_big(self):
        r = self.raw()
        self.cmd(r, 'MAIL FROM:<%s> SIZE=2000000' % SENDER, 552, '5.3.4')
        self.cmd(r, 'MAIL FROM:<%s> SIZE=1000' % SENDER, 250)
        self.cmd(r, 'RCPT TO:<alice@example.com>', 250)
        self.cmd(r, 'DATA', 354)
        r.send((b'y' * 998 + b'\r\n') * 1100 + b'.\r\n')
        self.reply(r, 552, '5.3.4')
        self.cmd(r, 'NOOP', 250)
        self.assert_queue_empty()

    def test_too_many_recipients(self):
        r = self.raw()
        self.cmd(r, 'MAIL FROM:<%s>' % SENDER, 250)
        for i in range(5):
            self.cmd(r, 'RCPT TO:<user%d@any.test>' % i, 250, '2.1.5')
        self.cmd(r, 'RCPT TO:<user5@any.test>', 452, '4.5.3')
        self.cmd(r, 'DATA', 354)
        r.send(mxv.message(SENDER, 'user0@any.test') + b'.\r\n')
        self.reply(r, 250)
        self.assertEqual(len(self.only_message()['recipients']), 5)

    def test_too_many_errors(self):
        r = self.raw()
        for _ in range(4):
            self.cmd(r, 'BOGUS', 500, '5.5.2')
        self.cmd(r, 'BOGUS', 500, '5.5.2')
        self.reply(r, 421, '4.7.0')
        r.wait_closed()

    def test_sessions_per_ip(self):
        held = [self.raw(ehlo=False) for _ in range(3)]
        r = self.d.raw()
        self.addCleanup(r.close)
        self.reply(r, 421, '4.7.0')
        r.wait_closed()
        # Once one of the three is gone, there is room again.
        self.cmd(held[0], 'QUIT', 221)
        held[0].wait_closed()
        r = self.raw(ehlo=False)
        self.cmd(r, 'NOOP', 250)


class TestTimeout(DaemonCase):
    LIMITS = {'command_timeout': '2s', 'data_timeout': '3s'}

    def test_command_timeout(self):
        r = self.raw()
        t0 = time.monotonic()
        self.reply(r, 421, '4.4.2')  # read_reply's deadline (10 s) bounds the wait
        self.assertGreaterEqual(time.monotonic() - t0, 1.5)
        r.wait_closed()
        self.d.wait_log(r'client=127\.0\.0\.1 timeout ')

    def test_data_timeout(self):
        r = self.raw()
        self.cmd(r, 'MAIL FROM:<%s>' % SENDER, 250)
        self.cmd(r, 'RCPT TO:<alice@example.com>', 250)
        self.cmd(r, 'DATA', 354)
        r.send(b'Subject: stalled\r\n\r\npart of a message\r\n')
        t0 = time.monotonic()
        self.reply(r, 421, '4.4.2')
        self.assertGreaterEqual(time.monotonic() - t0, 2.5)
        r.wait_closed()
        self.assert_queue_empty()


class TestDataTimeout(DaemonCase):
    # A client may pause between reads of content for data_timeout, longer
    # than command_timeout; the stall below is the point of the test.
    LIMITS = {'command_timeout': '1s', 'data_timeout': '5s'}
    STALL = 2.5

    def test_stall_within_data_timeout(self):
        r = self.raw()
        self.cmd(r, 'MAIL FROM:<%s>' % SENDER, 250)
        self.cmd(r, 'RCPT TO:<alice@example.com>', 250)
        self.cmd(r, 'DATA', 354)
        body = mxv.message(SENDER, 'alice@example.com')
        r.send(body[:20])
        time.sleep(self.STALL)
        r.send(body[20:] + b'.\r\n')
        self.reply(r, 250, '2.0.0')
        self.assert_stored(self.only_message(), body)
        self.reply(r, 421, '4.4.2')  # idle again: command_timeout applies

    def test_stall_within_bdat_chunk(self):
        r = self.raw()
        self.cmd(r, 'MAIL FROM:<%s>' % SENDER, 250)
        self.cmd(r, 'RCPT TO:<alice@example.com>', 250)
        body = mxv.message(SENDER, 'alice@example.com')
        r.send(b'BDAT %d LAST\r\n' % len(body) + body[:20])
        time.sleep(self.STALL)
        r.send(body[20:])
        self.reply(r, 250, '2.0.0')
        self.assert_stored(self.only_message(), body)
        t0 = time.monotonic()
        self.reply(r, 421, '4.4.2')  # idle again: command_timeout applies
        self.assertLess(time.monotonic() - t0, 3)


class TestBackPressure(DaemonCase):
    def test_client_that_does_not_read(self):
        # 4M pipelined NOOPs, replies unread: the daemon must stop reading
        # (so the send stalls once the socket buffers are full) rather than
        # buffer 56 MB of replies, and then answer every command once the
        # client reads.
        n = 4000000
        stream = memoryview(b'NOOP\r\n' * n)
        r = self.raw(ehlo=False)
        r.sock.setblocking(False)
        sent = 0
        while sent < len(stream):
            _, w, _ = select.select([], [r.sock], [], 1.0)
            if not w:
                break  # no progress for a second: the daemon stopped reading
            sent += r.sock.send(stream[sent:sent + 65536])
        self.assertLess(sent, len(stream) // 2, 'the daemon kept reading a client that does not read')

        chunks = []

        def reader():
            while True:
                c = r.sock.recv(1 << 20)
                chunks.append(c)
                if not c or c.endswith(b'221 2.0.0 Bye\r\n'):
                    return
        r.sock.setblocking(True)
        r.sock.settimeout(30)
        t = threading.Thread(target=reader, daemon=True)
        t.start()
        r.sock.sendall(stream[sent:])
        r.sock.sendall(b'QUIT\r\n')
        t.join(60)
        self.assertFalse(t.is_alive(), 'replies did not all arrive')
        out = r.buf + b''.join(chunks)  # the greeting was read by raw()
        self.assertTrue(out.endswith(b'221 2.0.0 Bye\r\n'), out[-100:])
        self.assertEqual(out.count(b'250 2.0.0 Ok\r\n'), n)


class TestMaxSessions(DaemonCase):
    LIMITS = {'max_sessions': 2}

    def test_max_sessions(self):
        self.raw(ehlo=False)
        self.raw(ehlo=False)
        r = self.d.raw()
        self.addCleanup(r.close)
        self.reply(r, 421, '4.7.0')
        r.wait_closed()


class TestRelayControl(DaemonCase):
    def rcpt(self, addr, code, enh):
        with self.subTest(rcpt=addr):
            r = self.raw()
            self.cmd(r, 'MAIL FROM:<%s>' % SENDER, 250)
            self.cmd(r, 'RCPT TO:' + addr, code, enh)
            if code != 250:
                self.cmd(r, 'DATA', 554, '5.5.1')  # nothing to send it for
            r.cmd('QUIT')
            r.close()

    def test_relay_denied(self):
        # A source route is refused even when it ends at one of our recipients
        # (RFC 5321 4.1.1.3 allows refusing instead of ignoring it).
        self.rcpt('<@evil.example:alice@example.com>', 550, '5.7.1')
        for addr in ('<a@other.org>', '<user%other.org@example.com>', '<"user@other.org"@example.com>',
                     '<@example.com:user@other.org>', '<@a.example.com,@example.com:user@other.org>',
                     '<user@[127.0.0.1]>', '<host!user@example.com>', '<alice@example.com.other.org>'):
            self.rcpt(addr, 550, '5.7.1')

    def test_syntax_errors(self):
        for addr in ('<user@other.org@example.com>', '<alice@example.com.>', '<alice@example.com',
                     'alice@example.com', '<alice@@example.com>', '<alice@exa mple.com>'):
            self.rcpt(addr, 501, '5.1.3')

    def test_known_and_unknown_recipients(self):
        self.rcpt('<ALICE@EXAMPLE.COM>', 250, '2.1.5')
        self.rcpt('<Bob@Example.Com>', 250, '2.1.5')
        self.rcpt('<bob2@example.com>', 550, '5.1.1')
        self.rcpt('<postmaster>', 250, '2.1.5')
        # RFC 5321 4.5.1: postmaster of a backed-up domain, in any case, even
        # though the recipients file does not list it.
        self.rcpt('<PostMaster@example.com>', 250, '2.1.5')
        self.rcpt('<anyone@any.test>', 250, '2.1.5')
        self.assert_queue_empty()


class TestUtf8Recipients(unittest.TestCase):
    def test_listed_utf8_recipient_is_accepted(self):
        """Regression: a recipients file could not list UTF-8 local parts, so a
        domain with a list refused SMTPUTF8 recipients while advertising SMTPUTF8."""
        d = mxv.Daemon(domains={'example.com': {'recipients': ['j\u00f6s\u00e9', 'alice']}})
        self.addCleanup(d.cleanup)
        d.start()
        self.addCleanup(d.stop)
        r = d.raw()
        self.addCleanup(r.close)
        r.ehlo()
        self.assertEqual(r.cmd('MAIL FROM:<%s> SMTPUTF8' % SENDER)[0], 250)
        code, text = r.cmd('RCPT TO:<j\u00f6s\u00e9@example.com>')
        self.assertEqual(code, 250, text)
        code, text = r.cmd('RCPT TO:<j\u00f6rg@example.com>')
        self.assertEqual((code, text[:5]), (550, '5.1.1'))


class TestBareLf(DaemonCase):
    def data(self, r, rcpt='alice@example.com'):
        self.cmd(r, 'MAIL FROM:<%s>' % SENDER, 250)
        self.cmd(r, 'RCPT TO:<%s>' % rcpt, 250)
        self.cmd(r, 'DATA', 354)

    def test_bare_lf_in_data(self):
        r = self.raw()
        self.data(r)
        r.send(b'Subject: bare\r\n\r\nline one\nline two\r\n.\r\n')
        self.reply(r, 550, '5.6.0')
        self.cmd(r, 'NOOP', 250)
        self.assert_queue_empty()

    def test_smuggling(self):
        for end in (b'\n.\n', b'\r\n.\n', b'\n.\r\n', b'\r.\r\n', b'\r\n.\r'):
            with self.subTest(end=end):
                r = self.raw()
                self.data(r)
                r.send(b'Subject: smuggle\r\n\r\nhello' + end +
                       b'MAIL FROM:<x@evil>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\nevil\r\n.\r\n')
                self.reply(r, 550, '5.6.0')
                # Exactly one reply: the next thing we hear answers our NOOP.
                self.cmd(r, 'NOOP', 250, '2.0.0')
                self.cmd(r, 'QUIT', 221)
                r.close()
                self.assert_queue_empty()

    def test_disconnect_in_data_and_bdat(self):
        # Nothing is queued, and the daemon frees the half-received message
        # (stop() checks the exit code and the ASan/LSan report).
        for start in (b'DATA\r\n', b'BDAT 100000\r\n'):
            with self.subTest(start=start):
                r = self.raw()
                self.cmd(r, 'MAIL FROM:<%s>' % SENDER, 250)
                self.cmd(r, 'RCPT TO:<alice@example.com>', 250)
                r.send(start)
                if start.startswith(b'DATA'):
                    self.reply(r, 354)
                r.send(b'Subject: cut\r\n\r\nhalf a message\r\n')
                r.close()
        self.d.wait_log(r'(?s)(disconnect messages=0.*){3}', what='both sessions to end')
        self.assert_queue_empty()

    def test_bare_cr_and_lf_in_commands(self):
        r = self.raw()
        self.cmd(r, b'NOOP\rRSET', 500, '5.5.2')
        r.send(b'NOOP\n')
        self.reply(r, 500, '5.5.2')
        self.cmd(r, 'NOOP', 250)


class TestLongLines(DaemonCase):
    def test_5000_octet_line(self):
        r = self.raw()
        self.cmd(r, 'MAIL FROM:<%s>' % SENDER, 250)
        self.cmd(r, 'RCPT TO:<alice@example.com>', 250)
        self.cmd(r, 'DATA', 354)
        long_line = bytes(ord('a') + i % 26 for i in range(5000))
        body = b'Subject: long\r\n\r\n' + long_line + b'\r\nend\r\n'
        r.send(body + b'.\r\n')
        self.reply(r, 250, '2.0.0')
        self.assert_stored(self.only_message(), body)

    def test_dot_stuffing(self):
        r = self.raw()
        self.cmd(r, 'MAIL FROM:<%s>' % SENDER, 250)
        self.cmd(r, 'RCPT TO:<alice@example.com>', 250)
        self.cmd(r, 'DATA', 354)
        r.send(b'Subject: dots\r\n\r\n..leading dot\r\n...\r\n.\r\n')
        self.reply(r, 250, '2.0.0')
        self.assert_stored(self.only_message(), b'Subject: dots\r\n\r\n.leading dot\r\n..\r\n')


if __name__ == '__main__':
    unittest.main(verbosity=2)
