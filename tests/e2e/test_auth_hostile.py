"""End-to-end: the sender checks against a hostile client (issue 8 review).

Regression tests for what an attacker-side review of the check wiring
found, each of which failed before its fix:
- a client that resets while the end of data waits on the checks: the
  commit then started from inside the wait's end and the session was freed
  under it (ASan: heap-use-after-free in the spool);
- a first content line that starts with white space (it continues our own
  Received: field in the stored message) made the header scanners think
  there was no header section: a forged Authentication-Results after it
  reached the primary, and From: was not seen;
- a From: our parser cannot name one author in (unparseable, several,
  too long) bypassed dmarc = enforce;
- pipelined MAIL/RSET pairs left one SPF check per pair in flight;
- the data-rate clock ran on while the end of data waited on the checks.

Set-up as test_auth_bounds.py: slow.test is never answered.
"""
import os
import re
import socket
import struct
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxv  # noqa: E402
import shims  # noqa: E402
from test_auth import AUTHSERV_ID, RCPT, auth_results, message  # noqa: E402
from test_auth_bounds import BoundsBase  # noqa: E402

FORGED = (b'Authentication-Results: %s; dkim=pass header.d=signed.test;\r\n'
          b'\tdmarc=pass header.from=signed.test\r\n' % AUTHSERV_ID.encode())


def sessions_open(d):
    text = d.log_text()
    return set(re.findall(r'session=(\d+) client=\S+ connect', text)) - \
        set(re.findall(r'session=(\d+) client=\S+ disconnect', text))


class TestAuthHostile(BoundsBase):

    def test_reset_while_waiting_on_checks(self):
        tiny = shims.build('tinysndbuf')
        if not tiny:
            self.skipTest('no C compiler for the shim')
        d = self.daemon({'primary.test': {'spf': 'tag', 'dmarc': 'tag'}}, authserv_id=AUTHSERV_ID,
                        auth_timeout='3s')
        d.env = shims.preload_env(tiny)
        with d:
            s = socket.create_connection(('127.0.0.1', d.port))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
            # replies it never reads back up, so the reset is seen while the checks run (DMARC of slow.test)
            s.sendall(b'EHLO client.test\r\n' + b'NOOP\r\n' * 2000 + b'MAIL FROM:<alice@spf.test>\r\n'
                      b'RCPT TO:<%s>\r\nDATA\r\n' % RCPT.encode() + message('alice@slow.test') + b'.\r\n')
            # the end of data waits on DMARC once its query is out: reset then, well inside auth_timeout
            mxv.wait_until(lambda: self.dns.queries('_dmarc.slow.test', 'TXT'), 20, 'the DMARC lookup')
            self.assertNotIn('auth checks timed out', d.log_text())
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
            s.close()  # a reset
            d.wait_log(r'auth checks timed out: dmarc', timeout=20)  # the wait ends: the commit runs
            mxv.wait_until(lambda: not sessions_open(d), 30, 'the reset session to be freed')
            # the daemon is whole: the next client's message goes through
            ar = self.deliver_as(d, 'client.test', 'alice@spf.test', message('alice@spf.test'))
            self.assertIn('spf=pass', ar)

    def test_leading_white_space_hides_no_forged_header(self):
        msg = b' x\r\n' + FORGED + b'From: <service@signed.test>\r\nSubject: forged\r\n\r\nbody\r\n'
        with self.auth_daemon(dmarc='tag') as d:
            n = len(self.primary.deliveries())
            s = self.client_as(d, 'client.test')
            try:
                s.sendmail('alice@spf.test', [RCPT], msg)
            finally:
                s.quit()
            got = self.primary.wait_deliveries(n + 1, 30)[n].data
            header = got.partition(b'\r\n\r\n')[0]
            self.assertNotIn(b'header.d=signed.test', header)
            ar = auth_results(got)
            self.assertIn('dmarc=fail', ar)  # From: was seen: signed.test, unsigned, not aligned
            self.assertIn('header.from=signed.test', ar)
        with self.auth_daemon(dmarc='enforce') as d:
            s = self.client_as(d, 'client.test')
            try:
                with self.assertRaises(__import__('smtplib').SMTPDataError) as cm:
                    s.sendmail('alice@spf.test', [RCPT], msg)
            finally:
                s.quit()
            self.assertEqual(cm.exception.smtp_code, 550)
            self.assertTrue(cm.exception.smtp_error.startswith(b'5.7.1 '), cm.exception.smtp_error)

    def test_enforce_refuses_a_from_without_one_author(self):
        bad = ['"Signed" <service@signed.test>>', 'Signed <service@signed.test> (Signed',
               '<service@signed.test> x', 'service@signed.test;']
        with self.auth_daemon(dmarc='enforce') as d:
            for value in bad:
                with self.subTest(value=value):
                    msg = message('x@spf.test').replace(b'From: <x@spf.test>', b'From: ' + value.encode())
                    self.assertRefused(d, '127.0.0.1', 'alice@spf.test', msg, 550, '5.7.1', at='data')
            # two From: fields
            msg = b'From: <alice@spf.test>\r\n' + message('service@signed.test')
            self.assertRefused(d, '127.0.0.1', 'alice@spf.test', msg, 550, '5.7.1', at='data')
            self.assertEqual(len(self.primary.deliveries()), 0)
        with self.auth_daemon(dmarc='tag') as d:  # tagged only
            ar = self.deliver(d, 'alice@spf.test', message('x@spf.test').replace(
                b'From: <x@spf.test>', b'From: <service@signed.test> x'))
            self.assertIn('dmarc=permerror', ar)

    def test_rset_waits_for_the_check_it_would_abandon(self):
        with self.daemon({'primary.test': {'spf': 'tag'}}, authserv_id=AUTHSERV_ID, auth_timeout='1s') as d:
            with mxv.Raw(d.port, timeout=30) as r:
                r.expect(220)
                r.send(b'EHLO client.test\r\n' + b''.join(
                    b'MAIL FROM:<a%d@slow.test>\r\nRSET\r\n' % i for i in range(3)) + b'QUIT\r\n')
                t0 = time.monotonic()
                codes = [r.read_reply()[0] for _ in range(8)]
                elapsed = time.monotonic() - t0
            self.assertEqual(codes, [250] * 7 + [221])
            # each RSET waited for its MAIL FROM check (1s each), none was left running
            self.assertEqual(len(re.findall(r'auth checks timed out: spf', d.log_text())), 3)
            self.assertGreater(elapsed, 2.5)

    def test_check_wait_is_not_data_time(self):
        with self.daemon({'primary.test': {'spf': 'tag', 'dmarc': 'tag'}}, authserv_id=AUTHSERV_ID,
                         auth_timeout='8s', min_data_rate='500') as d:
            s = self.client_as(d, 'client.test')
            try:
                s.ehlo()
                s.mail('alice@spf.test')
                s.rcpt(RCPT)
                code, text = s.data(message('alice@slow.test'))  # DMARC of slow.test: c-ares gives up in ~6s
                self.assertEqual(code, 250, text)
                self.assertEqual(s.noop()[0], 250)  # not 421: the wait was not a slow client
            finally:
                s.quit()


if __name__ == '__main__':
    unittest.main()
