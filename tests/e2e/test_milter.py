"""Milters (issue 9, section 4): the real daemon against test milters
written with Debian's pymilter (tests/e2e/milters/, one per action), each
run as its own process on a loopback port and recording what it saw. The
primary is an aiosmtpd server (fwdlib.Primary): what it receives is what
mxvault stored and sent on, milters' changes included.

Every wait has a deadline (mxv.wait_until, Daemon.wait_log)."""
import json
import os
import smtplib
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxv  # noqa: E402
from test_forward import ForwardBase  # noqa: E402

MILTERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'milters')
SENDER = 'alice@sender.test'
DOMAIN = 'primary.test'


class Milter:
    """One pymilter process from tests/e2e/milters/NAME.py on a free port."""

    def __init__(self, name, directory):
        self.port = mxv.free_port()
        self.log = os.path.join(directory, 'milter-%s-%d.jsonl' % (name, self.port))
        self.proc = subprocess.Popen(['/usr/bin/python3', os.path.join(MILTERS, name + '.py'),
                                      'inet:%d@127.0.0.1' % self.port, self.log],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=MILTERS)
        mxv.wait_until(lambda: mxv.port_open(self.port), 10, 'milter %s listening' % name)
        self.spec = 'inet:127.0.0.1:%d' % self.port

    def seen(self):
        try:
            with open(self.log) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def stages(self, stage):
        return [e for e in self.seen() if e['stage'] == stage]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.proc.stdout.close()


def message(subject='test', body='hello\r\n', extra=''):
    return ('From: <%s>\r\nTo: <bob@%s>\r\nSubject: %s\r\nMessage-ID: <%s@sender.test>\r\n%s\r\n%s' % (
        SENDER, DOMAIN, subject, time.monotonic_ns(), extra, body)).encode()


class MilterTest(ForwardBase):
    def setUp(self):
        super().setUp()
        self.tmp = self.enterContext_tmp()
        self.primary = self.server('127.0.0.2', 'mx1.test', start=True)

    def enterContext_tmp(self):
        import tempfile
        d = tempfile.mkdtemp(prefix='mxv-milter-')
        self.addCleanup(lambda: subprocess.run(['rm', '-rf', d]))
        return d

    def milter(self, name):
        m = Milter(name, self.tmp)
        self.addCleanup(m.stop)
        return m

    def mxv(self, *specs, **server):
        server.setdefault('milter', ','.join(specs))
        return self.daemon({DOMAIN: {}}, **server)

    def transaction(self, d, rcpts=('bob@primary.test',), data=None):
        """Runs one transaction; returns the replies: ('mail', code), ('rcpt', code, text)..., ('data', code, text)."""
        out = []
        s = d.smtp(timeout=60)
        try:
            s.ehlo('client.sender.test')
            code, text = s.mail(SENDER)
            out.append(('mail', code, text.decode()))
            if code != 250:
                return out
            ok = 0
            for r in rcpts:
                code, text = s.rcpt(r)
                out.append(('rcpt', code, text.decode()))
                ok += code == 250
            if not ok:
                return out
            code, text = s.data(data or message())
            out.append(('data', code, text.decode()))
        finally:
            try:
                s.quit()
            except smtplib.SMTPException:
                pass
        return out

    def delivered(self, n=1):
        return self.primary.wait_deliveries(n, timeout=20)

    # --- verdicts ---------------------------------------------------------------

    def test_accept_sees_everything_and_mail_goes_through(self):
        m = self.milter('accept')
        with self.mxv(m.spec) as d:
            r = self.transaction(d, data=message(subject='hi there'))
            self.assertEqual(r[-1][1], 250, r)
            dl = self.delivered()[0]
            self.assertIn(b'Subject: hi there', dl.data)
            seen = m.seen()
            stages = [e['stage'] for e in seen]
            for st in ('connect', 'helo', 'mail', 'rcpt', 'header', 'eoh', 'body', 'eom'):
                self.assertIn(st, stages, seen)
            c = m.stages('connect')[0]
            self.assertEqual(c['client_addr'], '127.0.0.1')
            self.assertEqual(c['j'], 'backup.test')
            self.assertEqual(m.stages('helo')[0]['helo'], 'client.sender.test')
            self.assertEqual(m.stages('mail')[0]['sender'], '<%s>' % SENDER)
            self.assertEqual(m.stages('rcpt')[0]['rcpt'], '<bob@primary.test>')
            names = [e['name'] for e in m.stages('header')]
            self.assertEqual(names[0], 'Received')  # ours comes first, as Postfix sends its own
            self.assertIn('Subject', names)
            self.assertEqual([e['value'] for e in m.stages('header') if e['name'] == 'Subject'], ['hi there'])
            qid = r[-1][2].split()[-1]
            self.assertEqual(m.stages('eom')[0]['queue_id'], qid)

    def test_large_body_in_chunks(self):
        m = self.milter('accept')
        body = ''.join('line %06d of a long message, long enough to need several chunks\r\n' % i for i in range(8000))
        with self.mxv(m.spec) as d:
            r = self.transaction(d, data=message(body=body))
            self.assertEqual(r[-1][1], 250, r)
            dl = self.delivered()[0]
            self.assertTrue(dl.data.endswith(body.encode()), 'the primary got the body intact')
            sizes = [e['size'] for e in m.stages('body')]
            self.assertGreater(len(sizes), 1, sizes)
            self.assertLessEqual(max(sizes), 65535)
            self.assertEqual(sum(sizes), len(body))

    def test_reject_at_rcpt_only_that_recipient(self):
        m = self.milter('reject_rcpt')
        with self.mxv(m.spec) as d:
            r = self.transaction(d, rcpts=('spam@primary.test', 'bob@primary.test'))
            self.assertEqual(r[1][1], 550, r)
            self.assertIn('no spam here', r[1][2])
            self.assertEqual(r[2][1], 250, r)
            self.assertEqual(r[3][1], 250, r)
            dl = self.delivered()[0]
            self.assertEqual([a.lower() for a in dl.rcpt_tos], ['bob@primary.test'])
            d.wait_log(r'milter=inet:127\.0\.0\.1:\d+ stage=rcpt verdict=reject')

    def test_reject_at_eom(self):
        m = self.milter('reject_eom')
        with self.mxv(m.spec) as d:
            r = self.transaction(d, data=message(body='this is XJS*C4JDBQADN1 spam\r\n'))
            self.assertEqual(r[-1][1], 550, r)
            d.wait_log(r'stage=eom verdict=reject')
            self.assertEqual(d.queue(), [])
            r = self.transaction(d, data=message(body='clean\r\n'))
            self.assertEqual(r[-1][1], 250, r)
            self.assertEqual(len(self.delivered()), 1)

    def test_tempfail_at_mail(self):
        m = self.milter('tempfail')
        with self.mxv(m.spec) as d:
            r = self.transaction(d)
            self.assertEqual(r[0][1], 451, r)
            self.assertIn('4.7.1', r[0][2])
            self.assertEqual(d.queue(), [])

    def test_replycode_at_eom(self):
        m = self.milter('replycode')
        with self.mxv(m.spec) as d:
            r = self.transaction(d)
            self.assertEqual(r[-1][1], 452, r)
            self.assertIn('4.3.2 come back later please', r[-1][2])
            self.assertEqual(d.queue(), [])

    def test_discard(self):
        m = self.milter('discard')
        with self.mxv(m.spec) as d:
            r = self.transaction(d)
            self.assertEqual(r[-1][1], 250, r)
            d.wait_log(r'result=discarded milter=inet:')
            self.assertEqual(d.queue(), [])
            self.assertEqual(self.primary.deliveries(), [])

    # --- changes ----------------------------------------------------------------

    def test_addheader_reaches_the_primary(self):
        m = self.milter('addheader')
        with self.mxv(m.spec) as d:
            r = self.transaction(d)
            self.assertEqual(r[-1][1], 250, r)
            body = self.delivered()[0].data
            head = body.split(b'\r\n\r\n', 1)[0]
            self.assertIn(b'\r\nX-Spam-Score: 1.5', head)
            # inserted at index 0: before our Received: (only our Authentication-Results comes first)
            self.assertTrue(body.startswith(b'Authentication-Results: backup.test;'), body[:200])
            self.assertIn(b'\r\nX-Top: first\r\nReceived: from client.sender.test', head)
            self.assertTrue(body.endswith(b'\r\n\r\nhello\r\n'), body[-100:])

    def test_chgheader_and_delete(self):
        m = self.milter('chgheader')
        with self.mxv(m.spec) as d:
            r = self.transaction(d, data=message(subject='cheap pills', extra='X-Remove-Me: yes\r\n'))
            self.assertEqual(r[-1][1], 250, r)
            body = self.delivered()[0].data
            self.assertIn(b'\r\nSubject: [SPAM] changed\r\n', body)
            self.assertNotIn(b'cheap pills', body)
            self.assertNotIn(b'X-Remove-Me', body)
            self.assertIn(b'\r\n\r\nhello', body)

    def test_replbody(self):
        m = self.milter('replbody')
        with self.mxv(m.spec) as d:
            r = self.transaction(d, data=message(subject='s', body='original body\r\n'))
            self.assertEqual(r[-1][1], 250, r)
            body = self.delivered()[0].data
            self.assertNotIn(b'original body', body)
            self.assertIn(b'Subject: s\r\n', body)
            self.assertTrue(body.endswith(b'\r\n\r\nthe body was replaced\r\nsecond line\r\n'), body[-120:])
            # stored again under a new queue id: the one the client was told, and the one our Received: says
            qid = r[-1][2].split()[-1]
            self.assertIn(('(mxvault) with ESMTP id %s' % qid).encode(), body)

    def test_quarantine_holds_the_message(self):
        m = self.milter('quarantine')
        with self.mxv(m.spec) as d:
            r = self.transaction(d)
            self.assertEqual(r[-1][1], 250, r)
            q = d.wait_queue(1)
            self.assertEqual(q[0]['quarantine'], 'looks like a virus')
            self.assertEqual([x['state'] for x in q[0]['recipients']], ['quarantined'])
            d.wait_log(r'quarantined="looks like a virus": held, not delivered')
            # the primary is up: a message the queue took would go at once; this one stays, across a restart
            d.restart()
            d.wait_log(r'held, not delivered(.|\n)*held, not delivered', timeout=10)
            self.assertEqual(len(d.queue()), 1)
            self.assertEqual(self.primary.deliveries(), [])

    # --- failures -----------------------------------------------------------------

    def test_down_default_tempfail(self):
        port = mxv.free_port()
        with self.mxv('inet:127.0.0.1:%d' % port) as d:
            r = self.transaction(d)
            self.assertEqual(r[0][1], 451, r)
            d.wait_log(r'milter: .*milter=inet:127\.0\.0\.1:%d failed: connection' % port)
            self.assertEqual(d.queue(), [])

    def test_down_default_accept(self):
        port = mxv.free_port()
        with self.mxv('inet:127.0.0.1:%d' % port, milter_default_action='accept') as d:
            r = self.transaction(d)
            self.assertEqual(r[-1][1], 250, r)
            self.assertEqual(len(self.delivered()), 1)

    def test_hang_times_out_to_default(self):
        m = self.milter('hang')
        with self.mxv(m.spec, milter_command_timeout='2s') as d:
            t0 = time.monotonic()
            r = self.transaction(d)
            took = time.monotonic() - t0
            self.assertEqual(r[0][1], 451, r)
            self.assertGreaterEqual(took, 1.9)
            self.assertLess(took, 15)
            d.wait_log(r'no reply within its timeout')
        with self.mxv(m.spec, milter_command_timeout='2s', milter_default_action='accept') as d:
            r = self.transaction(d)
            self.assertEqual(r[-1][1], 250, r)
            self.assertEqual(len(self.delivered()), 1)

    def serve_fake(self, handle):
        """A raw-socket milter on a free loopback port: handle(conn) runs, in a thread, for its one
        connection (not pymilter, which cannot misbehave on purpose). Returns its spec."""
        srv = socket.socket()
        srv.bind(('127.0.0.1', 0))
        srv.listen(4)
        srv.settimeout(30)
        self.addCleanup(srv.close)

        def serve():
            try:
                c, _ = srv.accept()
            except OSError:
                return
            with c:
                handle(c)
        t = threading.Thread(target=serve, daemon=True)
        t.start()
        self.addCleanup(t.join, 10)
        return 'inet:127.0.0.1:%d' % srv.getsockname()[1]

    def fake_milter(self, replies):
        """A milter that answers the option negotiation and then sends the given raw packets: not pymilter,
        because pymilter cannot send a malformed reply. Returns its spec."""
        def handle(c):
            c.settimeout(30)
            n = struct.unpack('>I', c.recv(4, socket.MSG_WAITALL))[0]
            c.recv(n, socket.MSG_WAITALL)  # our options
            c.sendall(struct.pack('>IcIII', 13, b'O', 6, 0, 0))
            n = struct.unpack('>I', c.recv(4, socket.MSG_WAITALL))[0]
            c.recv(n, socket.MSG_WAITALL)  # the first command (a macro, or connect)
            for r in replies:
                c.sendall(r)
            try:
                c.recv(65536)  # until we close it
            except OSError:
                pass
        return self.serve_fake(handle)

    def test_malformed_replies_are_protocol_errors(self):
        cases = {
            'length over the limit': struct.pack('>I', 65537) + b'c',
            'reply code 2xx': struct.pack('>I', 8) + b'y250 ok\0',
            'unknown reply': struct.pack('>I', 1) + b'Z',
            'header change at connect': struct.pack('>I', 5) + b'hX\0v\0',
        }
        for what, packet in cases.items():
            with self.subTest(what):
                with self.mxv(self.fake_milter([packet])) as d:
                    r = self.transaction(d)
                    self.assertEqual(r[0][1], 451, r)
                    d.wait_log(r'milter: .*failed: (reply longer|malformed reply|unexpected reply)')
                    self.assertEqual(d.queue(), [])

    def stalled_milter(self):
        """A milter that answers the negotiation asking to answer nothing but the end of the message
        (SMFIP_NR_*), then never reads again. Returns its spec."""
        done = threading.Event()
        self.addCleanup(done.set)
        nr = 0x80 | 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x40000 | 0x80000  # NR_HDR ... NR_BODY

        def handle(c):
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            n = struct.unpack('>I', c.recv(4, socket.MSG_WAITALL))[0]
            c.recv(n, socket.MSG_WAITALL)  # our options
            c.sendall(struct.pack('>IcIII', 13, b'O', 6, 0, nr))
            done.wait(60)  # and reads nothing more
        return self.serve_fake(handle)

    def test_a_milter_that_stops_reading_times_out(self):
        """Regression: with nothing owed (SMFIP_NR_*) and its socket full, a milter that stopped reading
        left the end of data waiting with no timer at all."""
        with self.mxv(self.stalled_milter(), milter_content_timeout='2s', max_message_size='64M') as d:
            body = ('x' * 998 + '\r\n') * 20000  # 20 MB: more than the socket buffers hold
            r = self.transaction(d, data=message(body=body))
            self.assertEqual(r[-1][1], 451, r)  # the default action, tempfail
            d.wait_log(r'no reply within its timeout')
            self.assertEqual(d.queue(), [])

    def progress_milter(self):
        """A milter that continues every command, and at the end of the message says it is still working
        (SMFIR_PROGRESS) three times a second apart before it accepts. Returns its spec."""
        def packet(c):
            head = c.recv(4, socket.MSG_WAITALL)
            if len(head) < 4:
                return None
            return c.recv(struct.unpack('>I', head)[0], socket.MSG_WAITALL)

        def handle(c):
            c.settimeout(30)
            packet(c)  # our options
            c.sendall(struct.pack('>IcIII', 13, b'O', 6, 0, 0))
            while True:
                p = packet(c)
                if not p or p[:1] == b'Q':
                    return
                if p[:1] in (b'D', b'A'):  # macros and abort are never answered
                    continue
                if p[:1] == b'E':
                    for _ in range(3):
                        time.sleep(1)
                        c.sendall(struct.pack('>Ic', 1, b'p'))
                    c.sendall(struct.pack('>Ic', 1, b'a'))
                else:
                    c.sendall(struct.pack('>Ic', 1, b'c'))
        return self.serve_fake(handle)

    def test_progress_restarts_the_clock(self):
        """Regression: SMFIR_PROGRESS (smfi_progress) was taken for a broken milter."""
        with self.mxv(self.progress_milter(), milter_content_timeout='2s') as d:
            r = self.transaction(d)
            self.assertEqual(r[-1][1], 250, r)  # 3 s of work, never 2 s without a word
            self.assertEqual(len(self.delivered()), 1)

    def test_header_section_too_long_for_the_milters_is_refused(self):
        """Regression: a header section over 256 KiB reached no milter and, under
        milter_default_action = accept, was stored unfiltered: a client could skip the filters."""
        m = self.milter('accept')
        filler = ''.join('X-Filler-%03d: %s\r\n' % (i, 'f' * 900) for i in range(400))  # about 360 KiB
        with self.mxv(m.spec, milter_default_action='accept') as d:
            r = self.transaction(d, data=message(extra=filler))
            self.assertEqual(r[-1][1], 552, r)
            self.assertTrue(r[-1][2].startswith('5.3.4 '), r)
            self.assertEqual(d.queue(), [])
            r = self.transaction(d, data=message())  # an ordinary message still goes through
            self.assertEqual(r[-1][1], 250, r)

    def test_two_milters_in_order(self):
        a = self.milter('accept')
        b = self.milter('reject_eom')
        with self.mxv(a.spec, b.spec) as d:
            r = self.transaction(d, data=message(body='XJS*C4JDBQADN1\r\n'))
            self.assertEqual(r[-1][1], 550, r)
            self.assertEqual(len(a.stages('eom')), 1)
            self.assertEqual(len(b.stages('eom')), 1)

    def test_config_check(self):
        d = self.mxv('inet:localhost:1')
        self.addCleanup(d.cleanup)
        p = mxv.run_cli('config', 'check', '-c', d.conf)
        self.assertEqual(p.returncode, 78, p.stderr)
        self.assertIn("bad value for milter: 'inet:localhost:1'", p.stderr)
        d.server['milter'] = 'unix:/run/m.sock,inet:[::1]:8891'
        d.server['milter_default_action'] = 'accept'
        d.write_config()
        p = mxv.run_cli('config', 'check', '-c', d.conf)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn('milter = unix:/run/m.sock,inet:[::1]:8891', p.stdout)
        self.assertIn('milter_default_action = accept', p.stdout)
        self.assertIn('milter_content_timeout = 5m', p.stdout)


if __name__ == '__main__':
    unittest.main()
