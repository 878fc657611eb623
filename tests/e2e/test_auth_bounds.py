"""End-to-end: the HELO identity's SPF check, and the bound on how long a
reply waits for the sender checks (auth_timeout), issue 8.

The same set-up as test_auth.py (a real Unbound on loopback, python3-dkim
as signer, aiosmtpd as primary), with one more kind of zone: slow.test,
whose queries Unbound never answers (local-zone deny), as a dead name
server would. c-ares gives up on such a query after about 6 s (2 s, then
4 s); a chain of them (SPF at MAIL, the DKIM key, then DMARC) would hold
the end of data for 12 s or more without the bound.
"""
import os
import smtplib
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_auth  # noqa: E402
from test_auth import AUTHSERV_ID, PASS_IP, RCPT, AuthBase, auth_results, message, txt  # noqa: E402
from fwdlib import send  # noqa: E402


def sign_as(msg, domain):
    """An rsa-sha256 signature by python3-dkim with d=domain (selector rsa)."""
    return test_auth.dkim.sign(msg, b'rsa', domain.encode(), test_auth.KEYS[0],
                               include_headers=[b'from', b'to', b'subject']) + msg


class BoundsBase(AuthBase):
    zone = test_auth.zone() + [
        txt('helofail.test.', 'v=spf1 -all'),
        txt('helopass.test.', 'v=spf1 ip4:127.0.0.1 -all'),
    ]
    drop = ['slow.test']

    def client_as(self, d, helo, ip=PASS_IP):
        return smtplib.SMTP('127.0.0.1', d.port, local_hostname=helo, timeout=60, source_address=(ip, 0))

    def deliver_as(self, d, helo, sender, msg):
        n = len(self.primary.deliveries())
        s = self.client_as(d, helo)
        try:
            send(d, sender, [RCPT], data=msg, s=s)
        finally:
            s.quit()
        return auth_results(self.primary.wait_deliveries(n + 1, 30)[n].data)

    def rcpt_reply(self, d, helo, sender):
        """(code, text) of RCPT after HELO helo and MAIL FROM sender."""
        s = self.client_as(d, helo)
        try:
            s.ehlo()
            code, text = s.mail(sender)
            self.assertEqual(code, 250, text)
            return s.rcpt(RCPT)
        finally:
            s.quit()


    def data_reply(self, d, sender, msg):
        """(code, text, seconds the end of data took) of one transaction from client.test to RCPT."""
        s = self.client_as(d, 'client.test')
        try:
            s.ehlo()
            s.mail(sender)
            s.rcpt(RCPT)
            t0 = time.monotonic()
            code, text = s.data(msg)
            return code, text, time.monotonic() - t0
        finally:
            s.quit()


class TestHeloIdentity(BoundsBase):
    """RFC 7208 2.3: the HELO name is checked on its own; a fail there is conclusive."""

    def test_helo_fail_refused_under_reject(self):
        with self.auth_daemon(spf='reject') as d:
            # alice@spf.test passes from 127.0.0.1: only the HELO identity fails
            code, text = self.rcpt_reply(d, 'helofail.test', 'alice@spf.test')
            self.assertEqual(code, 550, text)
            self.assertTrue(text.startswith(b'5.7.23 '), text)
            code, text = self.rcpt_reply(d, 'helopass.test', 'alice@spf.test')
            self.assertEqual(code, 250, text)

    def test_both_identities_tagged(self):
        with self.auth_daemon(spf='tag') as d:
            ar = self.deliver_as(d, 'helofail.test', 'alice@spf.test', message('alice@spf.test'))
            self.assertIn('spf=pass smtp.mailfrom=alice@spf.test', ar)
            self.assertIn('spf=fail smtp.helo=helofail.test', ar)
            self.assertLess(ar.index('smtp.mailfrom'), ar.index('smtp.helo'))

    def test_null_sender_is_the_helo_identity(self):
        with self.auth_daemon(spf='reject') as d:
            ar = self.deliver_as(d, 'helopass.test', '', message('mailer-daemon@helopass.test'))
            self.assertIn('spf=pass smtp.helo=helopass.test', ar)
            self.assertEqual(ar.count('spf='), 1, ar)  # one identity, one verdict
            code, text = self.rcpt_reply(d, 'helofail.test', '')
            self.assertEqual(code, 550, text)
            self.assertTrue(text.startswith(b'5.7.23 '), text)


class TestAuthTimeout(BoundsBase):
    """A name server that never answers delays a reply by auth_timeout (2s here), then temperror."""

    def timed_out(self, d, what):
        return any('auth checks timed out' in line and what in line for line in d.log_text().splitlines())

    def test_rcpt_waits_at_most_auth_timeout(self):
        with self.daemon({'primary.test': {'spf': 'reject'}}, authserv_id=AUTHSERV_ID, auth_timeout='2s') as d:
            t0 = time.monotonic()
            code, text = self.rcpt_reply(d, 'client.test', 'alice@slow.test')
            elapsed = time.monotonic() - t0
            self.assertEqual(code, 451, text)
            self.assertTrue(text.startswith(b'4.7.24 '), text)
            self.assertTrue(self.timed_out(d, ' spf'), d.log_text()[-2000:])
            self.assertLess(elapsed, 5.5)  # c-ares alone would take about 6 s

    def test_end_of_data_waits_at_most_auth_timeout(self):
        msg = sign_as(message('alice@slow.test'), 'slow.test')
        with self.daemon({'primary.test': {'spf': 'tag', 'dmarc': 'tag'}}, authserv_id=AUTHSERV_ID,
                         auth_timeout='2s') as d:
            n = len(self.primary.deliveries())
            code, text, elapsed = self.data_reply(d, 'alice@spf.test', msg)
            self.assertEqual(code, 250, text)
            self.assertLess(elapsed, 8)  # the key (6 s), then _dmarc (6 s more) without the bound
            ar = auth_results(self.primary.wait_deliveries(n + 1, 30)[n].data)
            self.assertIn('spf=pass smtp.mailfrom=alice@spf.test', ar)
            self.assertIn('dkim=temperror', ar)
            self.assertIn('header.d=slow.test', ar)
            self.assertIn('dmarc=temperror', ar)
            self.assertTrue(self.timed_out(d, 'dkim'), d.log_text()[-2000:])

    def test_one_wait_runs_out_once(self):
        """Regression: a wait that ran out on SPF waited again, a fresh auth_timeout, for the keys."""
        msg = sign_as(message('alice@slow.test'), 'slow.test')
        with self.daemon({'primary.test': {'spf': 'tag', 'dmarc': 'tag'}}, authserv_id=AUTHSERV_ID,
                         auth_timeout='2s') as d:
            n = len(self.primary.deliveries())
            code, text, _ = self.data_reply(d, 'alice@slow.test', msg)  # its SPF lookup is never answered
            self.assertEqual(code, 250, text)
            ar = auth_results(self.primary.wait_deliveries(n + 1, 30)[n].data)
            for verdict in ('spf=temperror smtp.mailfrom=alice@slow.test', 'dkim=temperror', 'dmarc=temperror'):
                self.assertIn(verdict, ar)
            lines = [ln for ln in d.log_text().splitlines() if 'auth checks timed out' in ln]
            self.assertEqual(len(lines), 1, lines)
            self.assertIn(' spf', lines[0])

    def test_enforce_defers_when_dmarc_cannot_answer(self):
        with self.daemon({'primary.test': {'dmarc': 'enforce'}}, authserv_id=AUTHSERV_ID, auth_timeout='2s') as d:
            code, text, _ = self.data_reply(d, 'alice@spf.test', message('alice@slow.test'))
            self.assertEqual(code, 451, text)
            self.assertTrue(text.startswith(b'4.7.1 '), text)
            self.assertTrue(self.timed_out(d, 'dmarc'), d.log_text()[-2000:])
            self.assertEqual(len(self.primary.deliveries()), 0)


if __name__ == '__main__':
    unittest.main()
