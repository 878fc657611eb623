"""Milters (issue 9 §4) against a real one nobody here wrote: Debian's
spamass-milter in front of SpamAssassin's spamd, as a Postfix primary
would run them. spamd runs with local tests only (-L: no network) on a
loopback port, spamass-milter on another (inet), rejecting a score of 15
or more (GTUBE scores 1000). What the aiosmtpd primary receives shows the
milter's header changes (X-Spam-*) made part of the stored message.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxv  # noqa: E402
import test_milter  # noqa: E402
from test_forward import ForwardBase  # noqa: E402
from test_milter import message  # noqa: E402

SPAMD = shutil.which('spamd') or '/usr/sbin/spamd'
SAMILTER = shutil.which('spamass-milter') or '/usr/sbin/spamass-milter'
GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X'


def have_spamassassin():
    return os.access(SPAMD, os.X_OK) and os.access(SAMILTER, os.X_OK) and os.geteuid() == 0


@unittest.skipUnless(have_spamassassin(), 'needs spamd and spamass-milter (Debian), run as root')
class TestSpamassMilter(ForwardBase):
    # test_milter's helpers, not its tests
    mxv = test_milter.MilterTest.mxv
    transaction = test_milter.MilterTest.transaction
    delivered = test_milter.MilterTest.delivered

    def setUp(self):
        super().setUp()
        self.primary = self.server('127.0.0.2', 'mx1.test', start=True)
        work = tempfile.mkdtemp(prefix='mxv-sa-')
        os.chmod(work, 0o755)
        self.addCleanup(shutil.rmtree, work, True)
        spamd_port = mxv.free_port()
        # spamd drops to nobody; it loads its rules (a few seconds) before it listens
        self.spamd = subprocess.Popen([SPAMD, '-L', '--listen-ip=127.0.0.1', '-p', str(spamd_port), '-u', 'nobody',
                                       '--max-children=1', '--nouser-config', '-s', 'stderr',
                                       '--pidfile', os.path.join(work, 'spamd.pid')],
                                      stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, 'spamd.log'), 'w'))
        self.addCleanup(self.stop, self.spamd)
        mxv.wait_until(lambda: mxv.port_open(spamd_port), 90, 'spamd listening')
        self.milter_port = mxv.free_port()
        self.samilter = subprocess.Popen([SAMILTER, '-p', 'inet:%d@127.0.0.1' % self.milter_port, '-r', '15',
                                          '--', '-d', '127.0.0.1', '-p', str(spamd_port)],
                                         stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, 'samilter.log'), 'w'))
        self.addCleanup(self.stop, self.samilter)
        mxv.wait_until(lambda: mxv.port_open(self.milter_port), 30, 'spamass-milter listening')

    @staticmethod
    def stop(proc):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def test_gtube_rejected_clean_mail_tagged(self):
        with self.mxv('inet:127.0.0.1:%d' % self.milter_port, milter_content_timeout='60s') as d:
            r = self.transaction(d, data=message(subject='spam', body='%s\r\n' % GTUBE))
            self.assertEqual(r[-1][1], 550, r)  # refused before the 250: nothing stored, nothing bounced later
            self.assertEqual(d.queue(), [])
            r = self.transaction(d, data=message(subject='a clean message', body='Hello Bob, lunch tomorrow?\r\n'))
            self.assertEqual(r[-1][1], 250, r)
            got = self.delivered()[0].data
            head = got.partition(b'\r\n\r\n')[0]
            self.assertIn(b'X-Spam-Checker-Version: SpamAssassin', head)  # the milter's header, stored and sent
            self.assertIn(b'Subject: a clean message', head)


if __name__ == '__main__':
    unittest.main()
