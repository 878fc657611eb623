"""End-to-end: standby mode, `[domain] accept = when-primary-down` (issue 9 §2).

The primary is an aiosmtpd server (fwdlib.Primary) found through the MX
record of primary.test that a real Unbound serves; probe_interval is 1s
(fwd_daemon). While the primary answers, RCPT for the domain gets
451 4.7.0; within a probe interval of it going down, mail is taken; once it
is back, 451 again and what was queued is delivered there.
"""
import os
import smtplib
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxv  # noqa: E402
from fwdlib import send  # noqa: E402
from test_forward import ForwardBase  # noqa: E402

RCPT = 'bob@primary.test'


class TestStandby(ForwardBase):

    def rcpt(self, d):
        """(code, text) of RCPT TO:<bob@primary.test>."""
        s = smtplib.SMTP('127.0.0.1', d.port, local_hostname='client.test', timeout=30)
        try:
            s.ehlo()
            s.mail('alice@sender.test')
            return s.rcpt(RCPT)
        finally:
            s.quit()

    def standby_lines(self, d, state):
        return d.log_text().count('domain=primary.test primary=%s' % state)

    def test_closed_while_the_primary_answers(self):
        primary = self.server('127.0.0.2', 'mx1.test', start=True)
        with self.daemon({'primary.test': {'accept': 'when-primary-down'}}) as d:
            mxv.wait_until(lambda: self.standby_lines(d, 'up') == 1, 15, 'the probe to find the primary up')
            code, text = self.rcpt(d)
            self.assertEqual(code, 451, text)
            self.assertTrue(text.startswith(b'4.7.0 '), text)

            primary.stop()
            t0 = time.monotonic()
            mxv.wait_until(lambda: self.standby_lines(d, 'down') == 1, 15, 'the probe to find the primary down')
            took = time.monotonic() - t0
            self.assertEqual(self.rcpt(d)[0], 250)
            print('figure: standby opened %.2fs after the primary stopped (probe_interval 1s)' % took)
            self.assertLess(took, 4)  # one probe interval, plus the probe's own connect failure
            send(d, 'alice@sender.test', [RCPT], data=b'Subject: taken while down\r\n\r\nhello\r\n')

            primary.start()
            mxv.wait_until(lambda: self.standby_lines(d, 'up') == 2, 15, 'the probe to find the primary back')
            self.assertEqual(self.rcpt(d)[0], 451)
            got = primary.wait_deliveries(1, 20)
            self.assertIn(b'taken while down', got[0].data)

    def test_taken_while_nothing_answers(self):
        # no primary at all: the domain is down from the first probe, and its mail is taken
        with self.daemon({'primary.test': {'accept': 'when-primary-down'}}) as d:
            mxv.wait_until(lambda: self.standby_lines(d, 'down') == 1, 15, 'the first probe to fail')
            self.assertEqual(self.rcpt(d)[0], 250)
            self.assertEqual(self.standby_lines(d, 'up'), 0)

    def test_always_is_the_default(self):
        self.server('127.0.0.2', 'mx1.test', start=True)
        with self.daemon({'primary.test': {}}) as d:
            self.assertEqual(self.rcpt(d)[0], 250)
            self.assertNotIn('accept=when-primary-down', d.log_text())


if __name__ == '__main__':
    unittest.main()
