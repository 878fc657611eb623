"""Outbound MTA-STS (RFC 8461), end to end (issue 7, section 3).

A test zone served by unbound (fwdlib.Unbound) gives the domain sts.test its
MX (mx1.sts.test, a Primary on 127.0.0.2), the `_mta-sts.sts.test` TXT record
and mta-sts.sts.test on 127.0.0.20, where an HTTPS server (fwdlib.PolicyServer:
http.server and ssl in a thread, on port 443: the suite runs as root) serves
the policy. A test CA (fwdlib.CA) signs the HTTPS and SMTP certificates; mxvault
trusts it through [server] tls_ca_file (which must be readable by the user
the daemon drops to: curl reads it at the first fetch). Loopback only; every
wait is a condition with a deadline.
"""
import os
import re
import shutil
import socket
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fwdlib  # noqa: E402
import mxv  # noqa: E402
from fwdlib import CA, HTTPS_HOST, Primary, Unbound, fwd_daemon, policy, send  # noqa: E402

SENDER = 'alice@sender.test'
RETRY_MAX = 4.0
SLACK = 1.5


def zone(txt_id='1', mx='mx1.sts.test'):
    return ['sender.test. IN MX 10 mxs.test.', 'mxs.test. IN A 127.0.0.9', 'backup.test. IN A 127.0.0.1',
            'sts.test. IN MX 10 %s.' % mx, 'mx1.sts.test. IN A 127.0.0.2', 'mx2.sts.test. IN A 127.0.0.2',
            'mta-sts.sts.test. IN A ' + HTTPS_HOST,
            # (quoted below: the TXT text holds ';', a comment in zone syntax)
            ('_mta-sts.sts.test.', 'v=STSv1; id=%s;' % txt_id)]


class StsUnbound(Unbound):
    """fwdlib's Unbound with TXT records whose text needs quotes."""

    def __init__(self, records, **kw):
        self.txt = [r for r in records if isinstance(r, tuple)]
        super().__init__([r for r in records if isinstance(r, str)], **kw)

    def set_records(self, records):
        self.txt = [r for r in records if isinstance(r, tuple)]
        self.records = [r for r in records if isinstance(r, str)]

    def config_text(self):
        text = super().config_text()
        extra = ''.join("  local-data: '%s IN TXT \"%s\"'\n" % t for t in self.txt)
        return text.replace('remote-control:', extra + 'remote-control:', 1)


def have_tools():
    return fwdlib.Controller is not None and os.access(fwdlib.UNBOUND, os.X_OK) and os.geteuid() == 0


@unittest.skipUnless(have_tools(), 'needs root (port 443), unbound and python3-aiosmtpd')
class TestMtaSts(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.certdir = tempfile.mkdtemp(prefix='mxv-sts-ca-')
        cls.ca = CA(cls.certdir)
        cls.https_cert = cls.ca.leaf('mta-sts.sts.test')
        cls.mx_cert = cls.ca.leaf('mx1.sts.test')
        cls.wrong_cert = cls.ca.leaf('wrong.sts.test')

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.certdir, ignore_errors=True)

    def setUp(self):
        self.mx_port = mxv.free_port()
        self.dns = StsUnbound(zone())
        self.addCleanup(self.dns.cleanup)
        self.dns.start()
        self.sender_mx = self.primary('127.0.0.9', 'mxs.test', None)

    def primary(self, host, name, tls):
        p = Primary(host, self.mx_port, name, tls=tls)
        self.addCleanup(p.stop)
        return p.start()

    def https(self, text):
        s = fwdlib.PolicyServer(*self.https_cert, text)
        self.addCleanup(s.stop)
        return s

    def daemon(self, tls='mta-sts', **server):
        d = fwd_daemon(self.dns, self.mx_port, {'sts.test': {'tls': tls}}, tls_ca_file=self.ca.cert, **server)
        self.addCleanup(d.cleanup)
        return d

    def replies(self, d):
        return [r.get('reply') or '' for m in d.queue() for r in m['recipients']]

    def wait_deferred(self, d, text, timeout=15):
        return mxv.wait_until(lambda: any(text in r for r in self.replies(d)), timeout,
                              'a deferral with %r in queue list --json (have %r)' % (text, self.replies(d)))

    # --- the cases ---------------------------------------------------------

    def test_enforce_matching_mx_delivered(self):
        p = self.primary('127.0.0.2', 'mx1.sts.test', self.mx_cert)
        web = self.https(policy())
        with self.daemon() as d:
            send(d, SENDER, 'a@sts.test')
            dl = p.wait_deliveries(1, 15)[0]
            self.assertTrue(dl.tls)
            d.wait_log(r'to=<a@sts\.test> relay=\S+ code=250 status=sent tls=mta-sts tls_version=TLSv1\.[23]')
            d.wait_log(r'mta-sts: domain=sts\.test fetched id=1 mode=enforce max_age=86400')
            d.wait_queue(0)
            self.assertEqual(web.count(), 1)

    def test_enforce_mx_not_in_policy_defers(self):
        p = self.primary('127.0.0.2', 'mx1.sts.test', self.mx_cert)
        self.https(policy(mx=('mx9.sts.test', '*.other.test')))
        with self.daemon() as d:
            send(d, SENDER, 'b@sts.test')
            reply = self.wait_deferred(d, '4.7.5')
            self.assertIn('4.7.5 no MX host matches the MTA-STS policy', ' '.join(self.replies(d)), reply)
            d.wait_log(r'delivery: dest=sts\.test deferred=')
            self.assertEqual(p.deliveries(), [], 'delivered to an MX the enforce policy does not list')
            self.assertEqual(p.ehlos, 0, 'connected to an MX the enforce policy does not list')

    def test_enforce_wrong_certificate_name_defers(self):
        p = self.primary('127.0.0.2', 'mx1.sts.test', self.wrong_cert)
        self.https(policy())
        with self.daemon() as d:
            send(d, SENDER, 'c@sts.test')
            self.wait_deferred(d, 'certificate name does not match the MTA-STS policy')
            self.assertEqual(p.deliveries(), [], 'delivered although the certificate names another host')

    def test_testing_mode_delivers_and_reports(self):
        p = self.primary('127.0.0.2', 'mx1.sts.test', self.wrong_cert)
        self.https(policy(mode='testing'))
        with self.daemon() as d:
            send(d, SENDER, 'e@sts.test')
            dl = p.wait_deliveries(1, 15)[0]
            self.assertTrue(dl.tls)
            d.wait_log(r'MTA-STS testing: the policy would have failed: certificate does not match the MTA-STS '
                       r'policy \(.+\)')
            d.wait_log(r'to=<e@sts\.test> relay=\S+ code=250 status=sent tls=may-encrypted')
            d.wait_queue(0)

    def test_cache_survives_restart(self):
        p = self.primary('127.0.0.2', 'mx1.sts.test', self.mx_cert)
        web = self.https(policy())
        d = self.daemon()
        d.start()
        send(d, SENDER, 'f1@sts.test')
        p.wait_deliveries(1, 15)
        d.wait_queue(0)
        self.assertEqual(web.count(), 1)
        web.stop()
        d.stop()
        # The policy server is gone and the MX moved to a host the policy does not list:
        # only the cached policy (same TXT id) can tell that it must not be used.
        self.dns.stop()
        self.dns.set_records(zone(mx='mx2.sts.test'))
        self.dns.start()
        d.start()
        send(d, SENDER, 'f2@sts.test')
        self.wait_deferred(d, '4.7.5 no MX host matches the MTA-STS policy')
        self.assertEqual(len(p.deliveries()), 1, 'delivered to an MX outside the cached enforce policy')
        self.assertNotIn('fetch failed', d.log_text())
        d.stop()

    def test_txt_id_change_refetches(self):
        p = self.primary('127.0.0.2', 'mx1.sts.test', self.mx_cert)
        web = self.https(policy())
        with self.daemon() as d:
            send(d, SENDER, 'g1@sts.test')
            p.wait_deliveries(1, 15)
            d.wait_queue(0)
            send(d, SENDER, 'g2@sts.test')
            p.wait_deliveries(2, 15)
            d.wait_queue(0)
            self.assertEqual(web.count(), 1, 'fetched again although the TXT id is the same')
            self.dns.stop()
            self.dns.set_records(zone(txt_id='2'))
            self.dns.start()
            send(d, SENDER, 'g3@sts.test')
            p.wait_deliveries(3, 15)
            d.wait_log(r'mta-sts: domain=sts\.test fetched id=2 mode=enforce')
            self.assertEqual(web.count(), 2)

    def test_auto_uses_enforce_policy_without_tlsa(self):
        p = self.primary('127.0.0.2', 'mx1.sts.test', self.mx_cert)
        self.https(policy())
        with self.daemon(tls='auto') as d:
            send(d, SENDER, 'h@sts.test')
            p.wait_deliveries(1, 15)
            d.wait_log(r'to=<h@sts\.test> relay=\S+ code=250 status=sent tls=mta-sts ')
            d.wait_queue(0)

    def test_auto_enforce_wrong_certificate_defers(self):
        p = self.primary('127.0.0.2', 'mx1.sts.test', self.wrong_cert)
        self.https(policy())
        with self.daemon(tls='auto') as d:
            send(d, SENDER, 'i@sts.test')
            self.wait_deferred(d, 'certificate name does not match the MTA-STS policy')
            self.assertEqual(p.deliveries(), [])

    def test_auto_with_configured_primary_ignores_the_policy(self):
        # The policy lists MX hosts; a configured primary (here an IP literal) is not one of them,
        # and under auto the policy must not make its mail wait forever.
        p = self.primary('127.0.0.2', 'mx1.sts.test', self.mx_cert)
        web = self.https(policy(mx=('mx9.sts.test',)))
        d = fwd_daemon(self.dns, self.mx_port,
                       {'sts.test': {'tls': 'auto', 'primary': '127.0.0.2:%d' % self.mx_port}},
                       tls_ca_file=self.ca.cert)
        self.addCleanup(d.cleanup)
        with d:
            send(d, SENDER, 'j@sts.test')
            p.wait_deliveries(1, 15)
            d.wait_log(r'to=<j@sts\.test> relay=\S+ code=250 status=sent tls=may-encrypted ')
            d.wait_queue(0)
            self.assertEqual(web.count(), 0, 'fetched an MTA-STS policy for a configured primary')

    def test_enforce_untrusted_certificate_says_so(self):
        # A certificate no trusted CA signed is not a name mismatch: the reply must not say it is.
        own = tempfile.mkdtemp(prefix='mxv-sts-self-')
        self.addCleanup(shutil.rmtree, own, True)
        untrusted = fwdlib.make_cert(own, 'mx1.sts.test')  # the right name, but no CA behind it
        p = self.primary('127.0.0.2', 'mx1.sts.test', untrusted)
        self.https(policy())
        with self.daemon() as d:
            send(d, SENDER, 'k@sts.test')
            self.wait_deferred(d, '4.7.5 certificate verification failed (mta-sts')
            self.assertNotIn('name does not match', ' '.join(self.replies(d)))
            self.assertEqual(p.deliveries(), [])

    # --- shutting down with lookups under way (they must end detached) ------

    def test_stop_while_txt_lookup_pending(self):
        dns = fwdlib.UdpBlackhole(mxv.free_port())
        self.addCleanup(dns.stop)
        p = self.primary('127.0.0.2', 'mx1.sts.test', self.mx_cert)
        d = fwd_daemon('127.0.0.1:%d' % dns.port, self.mx_port,
                       {'sts.test': {'tls': 'mta-sts', 'primary': '127.0.0.2:%d' % self.mx_port}},
                       tls_ca_file=self.ca.cert)
        self.addCleanup(d.cleanup)
        d.start()
        send(d, SENDER, 'j@sts.test')
        mxv.wait_until(lambda: dns.count >= 1, 10, 'the TXT query at the silent resolver')
        self.assertEqual(d.stop(), 0)  # also asserts no sanitizer report
        self.assertEqual(p.deliveries(), [])

    def test_stop_while_fetch_under_way(self):
        silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # accepts, never says a word
        silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        silent.bind((HTTPS_HOST, 443))
        silent.listen(8)
        silent.settimeout(15)
        self.addCleanup(silent.close)
        p = self.primary('127.0.0.2', 'mx1.sts.test', self.mx_cert)
        d = self.daemon()
        d.start()
        send(d, SENDER, 'k@sts.test')
        conn, _ = silent.accept()  # the fetch is under way (a deadline: the timeout above)
        self.addCleanup(conn.close)
        self.assertEqual(d.stop(), 0)
        self.assertEqual(p.deliveries(), [])


if __name__ == '__main__':
    unittest.main()
