"""End-to-end: greylisting, `[domain] greylist = on` (issue 9 §3).

The same set-up as test_auth.py (a real Unbound on loopback serving the
SPF and DMARC records, aiosmtpd as primary), with greylist_delay = 2s.
soft.test passes SPF from 127.0.0.1 but publishes no DMARC policy, so its
mail is greylisted; spf.test passes SPF and publishes one, so it is not.
"""
import os
import smtplib
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxv  # noqa: E402
from test_auth import AUTHSERV_ID, AuthBase, RCPT  # noqa: E402

DELAY = 2


class TestGreylist(AuthBase):

    def grey_daemon(self, **domain):
        return self.daemon({'primary.test': dict({'greylist': 'on'}, **domain)}, authserv_id=AUTHSERV_ID,
                           greylist_delay='%ds' % DELAY)

    def rcpt(self, d, sender, rcpt=RCPT):
        s = smtplib.SMTP('127.0.0.1', d.port, local_hostname='client.test', timeout=30)
        try:
            s.ehlo()
            s.mail(sender)
            return s.rcpt(rcpt)
        finally:
            s.quit()

    def assertGreylisted(self, got):
        code, text = got
        self.assertEqual(code, 451, text)
        self.assertRegex(text, rb'^4\.7\.1 Greylisted, try again in \d+ seconds$')

    def retry_until_accepted(self, d, sender, timeout=15):
        """Retries (twice a second, bounded) until RCPT is accepted; returns the seconds it took."""
        t0 = time.monotonic()
        mxv.wait_until(lambda: self.rcpt(d, sender)[0] == 250 or time.sleep(0.5), timeout,
                       'the greylisted retry to pass')
        return time.monotonic() - t0

    def test_first_attempt_deferred_then_retry_passes(self):
        with self.grey_daemon() as d:
            t0 = time.monotonic()
            self.assertGreylisted(self.rcpt(d, 'alice@soft.test'))
            self.assertGreylisted(self.rcpt(d, 'alice@soft.test'))  # too early: still deferred
            self.retry_until_accepted(d, 'alice@soft.test')
            self.assertGreaterEqual(time.monotonic() - t0, DELAY - 0.5)
            # the client's network has shown it retries: another sender and recipient pass at once
            self.assertEqual(self.rcpt(d, 'carol@soft.test', 'dave@primary.test')[0], 250)
            self.assertIn('passed after', d.log_text())

    def test_remembered_across_a_restart(self):
        d = self.grey_daemon()
        with d:
            self.assertGreylisted(self.rcpt(d, 'bob@soft.test'))
            t0 = time.monotonic()
            d.stop()
            mxv.wait_until(lambda: time.monotonic() - t0 >= DELAY + 1, DELAY + 5, 'the delay to pass')
            d.start()
            # the first attempt was kept: the first retry after the restart passes (forgotten, it would start over)
            self.assertEqual(self.rcpt(d, 'bob@soft.test')[0], 250)

    def test_spf_pass_with_dmarc_policy_is_exempt(self):
        with self.grey_daemon() as d:
            self.assertEqual(self.rcpt(d, 'alice@spf.test')[0], 250)
            self.assertNotIn('Greylisted', d.log_text())

    def test_off_by_default(self):
        with self.daemon({'primary.test': {}}, authserv_id=AUTHSERV_ID, greylist_delay='%ds' % DELAY) as d:
            self.assertEqual(self.rcpt(d, 'alice@soft.test')[0], 250)


if __name__ == '__main__':
    unittest.main()
