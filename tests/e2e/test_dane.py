"""End-to-end tests of outbound DANE (RFC 7672): mxvault delivering a
backed-up domain's mail to its primary under `tls = dane` and `tls = auto`.

  DNS        the backed-up domain dane.test. is a DNSSEC-signed zone
             (fwdlib.SignedZone: ldns-keygen + ldns-signzone, served by an
             unbound auth-zone on its own port); mxvault's resolver is a
             validating unbound (fwdlib.Unbound with zones=[...]) holding
             the zone's DS as trust anchor, so it sets the AD bit on what it
             validated. The rest of "test." (the sender's domain) is
             unbound's static local data, as in test_forward.py.
  primary    an aiosmtpd server (fwdlib.Primary) on 127.0.0.2:mx_port, named
             mx1.dane.test, offering STARTTLS with a certificate issued by a
             test CA for that name (the chain in the file, so DANE-TA can
             match the CA).
  TLSA       at _<mx_port>._tcp.mx1.dane.test: the port mxvault connects to.

What is asserted is what an operator sees: the delivery log line
(tls=dane-verified, tls=may-encrypted), the reply `queue list --json`
shows for a deferred recipient (4.7.5 TLSA record did not match, 4.7.4 TLS
is required), and what the primary received (nothing, when DANE fails:
never sent in clear, never over unauthenticated TLS).

Tests: 1 DANE-EE 3 1 1 match, 2 a wrong TLSA (deferred, nothing sent; the
fixed record is then used), 3 DANE-TA 2 0 1 (the CA), 4 TLSA in an unsigned
zone and in a signed zone without trust anchor (not DANE: may), 5 tls = auto,
6 no STARTTLS while DANE applies (4.7.4), 7 a bogus TLSA signature
(SERVFAIL: the host is not used), 8 an MX RRset that is not validated (the
MX in an unsigned zone, the host's TLSA signed and wrong: not DANE).

TestDaneWithMtaSts: tls = auto for a domain with two MX hosts, mx1 with
TLSA records and mx2 without, that also publishes an enforce MTA-STS policy
(the TXT record and mta-sts.dane.test in the signed zone, the policy served
by fwdlib.PolicyServer, certificates from fwdlib.CA, trusted through
tls_ca_file). mx1 is down (nothing listens): the policy, not "may", decides
whether mx2 can have the mail (RFC 8461 2: DANE wins only for the hosts
that have it). Needs root for port 443.
Run with /usr/bin/python3 (python3-aiosmtpd); needs unbound and ldnsutils.
"""
import os
import re
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fwdlib  # noqa: E402
import mxv  # noqa: E402
from fwdlib import SignedZone, Unbound, send  # noqa: E402
from test_forward import ForwardBase  # noqa: E402

RETRY_MAX = 4.0   # fwd_daemon's retry_max
SLACK = 1.5
SENDER = 'alice@sender.test'
ORIGIN = 'dane.test.'
MX = 'mx1.dane.test'
WRONG = 'ab' * 32

SENDER_ZONE = [
    'backup.test. IN A 127.0.0.1',
    'sender.test. IN MX 10 mxs.test.',
    'mxs.test. IN A 127.0.0.9',
]


def have_tools():
    return (fwdlib.Controller is not None and os.access(fwdlib.UNBOUND, os.X_OK)
            and shutil.which('ldns-signzone') and shutil.which('ldns-keygen'))


@unittest.skipUnless(have_tools(), 'needs unbound, ldnsutils and python3-aiosmtpd (run with /usr/bin/python3)')
class DaneBase(ForwardBase):
    """ForwardBase's servers, daemons and checks, on a DNS of the test's making."""

    def setUp(self):  # not ForwardBase's: each test builds its own zones and resolver
        self.reports = []
        self.addCleanup(self.check_sanitizer_reports)
        self.mx_port = mxv.free_port()
        self.certdir = tempfile.mkdtemp(prefix='mxv-cert-')
        self.addCleanup(shutil.rmtree, self.certdir, True)
        self.ca = fwdlib.make_ca(self.certdir, 'Test CA')
        self.cert, self.key = fwdlib.make_cert(self.certdir, MX, ca=self.ca)
        self.sender_mx = self.server('127.0.0.9', 'mxs.test', start=True)

    # --- fixtures ---------------------------------------------------------

    def tlsa_name(self, host=MX):
        return '_%d._tcp.%s.' % (self.mx_port, host)

    def tlsa(self, rec, host=MX):
        return '%s IN TLSA %s' % (self.tlsa_name(host), rec)

    def ee(self):
        return '3 1 1 ' + fwdlib.spki_sha256(self.cert)

    def zone(self, records, origin=ORIGIN, mx=True, **kw):
        """The signed zone of the backed-up domain: MX, the host's address, records."""
        head = ['%s IN MX 10 %s.' % (origin, MX)] if mx else []
        if MX.endswith('.' + origin.rstrip('.')):
            head.append('%s. IN A 127.0.0.2' % MX)
        z = SignedZone(origin, head + list(records), **kw)
        self.addCleanup(z.cleanup)
        return z.start()

    def resolver(self, zones, records=()):
        """mxvault's resolver (self.dns): validating, with the zones delegated to their servers."""
        self.dns = Unbound(SENDER_ZONE + list(records), zones=zones)
        self.addCleanup(self.dns.cleanup)
        return self.dns.start()

    def primary(self, tls=True):
        return self.server('127.0.0.2', MX, start=True, tls=(self.cert, self.key) if tls else None)

    def daemon(self, domains, **server):
        d = super().daemon(domains, **server)
        # The test CA is in no trust store: DANE alone must authenticate.
        d.env = {'SSL_CERT_FILE': os.path.join(self.certdir, 'none.pem'), 'SSL_CERT_DIR': self.certdir + '/nodir'}
        return d

    # --- assertions -------------------------------------------------------

    def wait_reply(self, d, regex, timeout=10):
        """Waits until every recipient in the queue is deferred with a reply matching regex."""
        def have():
            rcpts = [r for m in d.queue() for r in m['recipients']]
            return rcpts and all(r['state'] == 'deferred' and re.search(regex, r.get('reply', '')) for r in rcpts)
        try:
            mxv.wait_until(have, timeout, 'recipients deferred with /%s/' % regex, interval=0.1)
        except TimeoutError as e:
            raise AssertionError('%s; queue: %s' % (e, d.queue())) from None

    def assertNothingSent(self, p):
        self.assertEqual(p.deliveries(), [], 'the primary received mail although DANE failed')
        self.assertEqual(p.rcpt_replies, [], 'a recipient was sent although DANE failed')

    def delivered(self, d, p, rcpt, label):
        dl = p.wait_deliveries(1, 10)[0]
        self.assertTrue(dl.tls, 'delivered in clear')
        self.assertEqual(dl.rcpt_tos, [rcpt])
        d.wait_log(r'to=<%s> relay=\S+ code=250 status=sent tls=%s tls_version=TLSv1\.[23] ' %
                   (re.escape(rcpt), label))
        d.wait_queue(0)


class TestDane(DaneBase):
    def test_1_dane_ee_match(self):
        z = self.zone([self.tlsa(self.ee())])
        self.resolver([z])
        p = self.primary()
        with self.daemon({'dane.test': {'tls': 'dane'}}) as d:
            send(d, SENDER, 'ee@dane.test')
            self.delivered(d, p, 'ee@dane.test', 'dane-verified')

    def test_2_wrong_tlsa_defers_then_fixed(self):
        z = self.zone([self.tlsa('3 1 1 ' + WRONG)])
        self.resolver([z])
        p = self.primary()
        with self.daemon({'dane.test': {'tls': 'dane'}}) as d:
            send(d, SENDER, 'wrong@dane.test')
            self.wait_log_count(d, r'peer=mx1\.dane\.test\S* failed: 451 4\.7\.5 TLSA record did not match', 2,
                                timeout=15)
            self.wait_reply(d, r'^451 4\.7\.5 TLSA record did not match')
            self.assertNothingSent(p)
            self.assertNotIn('sender.test', ''.join(dl.mail_from for dl in self.sender_mx.deliveries()))
            # The operator publishes the right record: the next retry delivers.
            z.set_records(['%s IN MX 10 %s.' % (ORIGIN, MX), '%s. IN A 127.0.0.2' % MX, self.tlsa(self.ee())])
            dl = p.wait_deliveries(1, 2 * RETRY_MAX + 2 + SLACK + 5)[0]
            self.assertTrue(dl.tls)
            d.wait_log(r'to=<wrong@dane\.test> relay=\S+ code=250 status=sent tls=dane-verified ')
            d.wait_queue(0)

    def test_3_dane_ta_matches_the_ca(self):
        z = self.zone([self.tlsa('2 0 1 ' + fwdlib.cert_sha256(self.ca[0]))])
        self.resolver([z])
        p = self.primary()
        with self.daemon({'dane.test': {'tls': 'dane'}}) as d:
            send(d, SENDER, 'ta@dane.test')
            self.delivered(d, p, 'ta@dane.test', 'dane-verified')

    def test_3b_dane_ta_name_mismatch(self):
        # DANE-TA binds the CA, and the CA can issue for any name: the name must match (RFC 7672 3.2.2).
        other, okey = fwdlib.make_cert(self.certdir, 'other.dane.test', ca=self.ca)
        z = self.zone([self.tlsa('2 0 1 ' + fwdlib.cert_sha256(self.ca[0]))])
        self.resolver([z])
        p = self.server('127.0.0.2', MX, start=True, tls=(other, okey))
        with self.daemon({'dane.test': {'tls': 'dane'}}) as d:
            send(d, SENDER, 'taname@dane.test')
            self.wait_reply(d, r'^451 4\.7\.5 TLSA record did not match', timeout=15)
            self.assertNothingSent(p)

    def test_3c_malformed_records_mean_encrypt_only(self):
        # Records of the right shape that OpenSSL cannot use (a "full" key that is no key):
        # unusable, so TLS without authentication (RFC 7672 2.2), never clear.
        self.resolver([self.zone([self.tlsa('3 1 0 00112233445566778899'), self.tlsa('2 0 0 0badc0de')])])
        p = self.primary()
        with self.daemon({'dane.test': {'tls': 'dane'}}) as d:
            send(d, SENDER, 'garbled@dane.test')
            self.delivered(d, p, 'garbled@dane.test', 'dane-encrypted')

    def test_3d_malformed_records_without_starttls_defer(self):
        self.resolver([self.zone([self.tlsa('3 1 0 00112233445566778899')])])
        p = self.primary(tls=False)
        with self.daemon({'dane.test': {'tls': 'dane'}}) as d:
            send(d, SENDER, 'garbledclear@dane.test')
            self.wait_reply(d, r'^451 4\.7\.4 TLS is required', timeout=15)
            self.assertNothingSent(p)

    def test_4_unsigned_zone_is_not_dane(self):
        z = self.zone([self.tlsa('3 1 1 ' + WRONG)], signed=False)
        self.resolver([z])
        p = self.primary()
        with self.daemon({'dane.test': {'tls': 'dane'}}) as d:
            send(d, SENDER, 'plain@dane.test')
            self.delivered(d, p, 'plain@dane.test', 'may-encrypted')

    def test_4b_no_trust_anchor_is_not_dane(self):
        z = self.zone([self.tlsa('3 1 1 ' + WRONG)], trusted=False)
        self.resolver([z])
        p = self.primary()
        with self.daemon({'dane.test': {'tls': 'dane'}}) as d:
            send(d, SENDER, 'noanchor@dane.test')
            self.delivered(d, p, 'noanchor@dane.test', 'may-encrypted')

    def test_5_auto_uses_dane(self):
        z = self.zone([self.tlsa(self.ee())])
        self.resolver([z])
        p = self.primary()
        with self.daemon({'dane.test': {'tls': 'auto'}}) as d:
            send(d, SENDER, 'auto@dane.test')
            self.delivered(d, p, 'auto@dane.test', 'dane-verified')

    def test_5b_auto_wrong_tlsa_defers(self):
        z = self.zone([self.tlsa('3 1 1 ' + WRONG)])
        self.resolver([z])
        p = self.primary()
        with self.daemon({'dane.test': {}}) as d:  # auto is the default
            send(d, SENDER, 'autowrong@dane.test')
            self.wait_reply(d, r'^451 4\.7\.5 TLSA record did not match', timeout=15)
            self.assertNothingSent(p)

    def test_6_no_starttls_defers(self):
        z = self.zone([self.tlsa(self.ee())])
        self.resolver([z])
        p = self.primary(tls=False)
        with self.daemon({'dane.test': {'tls': 'dane'}}) as d:
            send(d, SENDER, 'clear@dane.test')
            self.wait_reply(d, r'^451 4\.7\.4 TLS is required \(dane-verified\) but STARTTLS is not offered',
                            timeout=15)
            self.assertNothingSent(p)

    def test_7_bogus_tlsa_signature_defers(self):
        z = self.zone([self.tlsa(self.ee())], bogus=[(self.tlsa_name(), 'TLSA')])
        self.resolver([z])
        p = self.primary()
        with self.daemon({'dane.test': {'tls': 'dane'}}) as d:
            send(d, SENDER, 'bogus@dane.test')
            d.wait_log(r'host=mx1\.dane\.test TLSA lookup failed: the host is not used', timeout=15)
            self.wait_reply(d, r'^451 4\.7\.5 TLSA lookup failed for every MX host', timeout=15)
            self.assertNothingSent(p)
            self.assertEqual(p.ehlos, 0, 'connected to a host whose TLSA lookup failed')

    def test_8_insecure_mx_is_not_dane(self):
        # RFC 7672 2.2.1: the MX RRset of an unsigned domain could be anyone's:
        # DANE does not apply, even to a host whose own zone is signed.
        hz = self.zone([self.tlsa('3 1 1 ' + WRONG)], mx=False)
        dz = self.zone(['plain.test. IN MX 10 %s.' % MX], origin='plain.test.', mx=False, signed=False)
        self.resolver([hz, dz])
        p = self.primary()
        with self.daemon({'plain.test': {'tls': 'dane'}}) as d:
            send(d, SENDER, 'insecure@plain.test')
            self.delivered(d, p, 'insecure@plain.test', 'may-encrypted')



@unittest.skipUnless(have_tools() and os.geteuid() == 0, 'needs root (port 443), unbound, ldnsutils, aiosmtpd')
class TestDaneWithMtaSts(DaneBase):
    MX2 = 'mx2.dane.test'

    @classmethod
    def setUpClass(cls):
        cls.sts_dir = tempfile.mkdtemp(prefix='mxv-dane-sts-ca-')
        cls.sts_ca = fwdlib.CA(cls.sts_dir)
        cls.https_cert = cls.sts_ca.leaf('mta-sts.dane.test')
        cls.mx2_cert = cls.sts_ca.leaf(cls.MX2)
        cls.wrong_cert = cls.sts_ca.leaf('wrong.dane.test')

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.sts_dir, ignore_errors=True)

    def run_case(self, policy_mx, mx2_cert, rcpt):
        """mx1 (TLSA, down) and mx2 (no TLSA, up with mx2_cert), an enforce policy listing policy_mx:
        returns the daemon, still running, and mx2's Primary."""
        z = self.zone([self.tlsa(self.ee()),
                       '%s IN MX 10 %s.' % (ORIGIN, self.MX2), '%s. IN A 127.0.0.3' % self.MX2,
                       'mta-sts.%s IN A %s' % (ORIGIN, fwdlib.HTTPS_HOST),
                       '_mta-sts.%s IN TXT "v=STSv1; id=1;"' % ORIGIN])
        self.resolver([z])
        web = fwdlib.PolicyServer(*self.https_cert, fwdlib.policy(mx=policy_mx))
        self.addCleanup(web.stop)
        # mx1, the DANE host, is blocked: nothing listens on 127.0.0.2.
        p2 = self.server('127.0.0.3', self.MX2, start=True, tls=mx2_cert)
        d = self.daemon({'dane.test': {'tls': 'auto'}}, tls_ca_file=self.sts_ca.cert)
        self.addCleanup(d.cleanup)
        d.start()
        send(d, SENDER, rcpt)
        return d, p2

    def deferred_not_delivered(self, d, p2, regex, why):
        """Waits for the first outcome, a deferral matching regex or a delivery at mx2: must be the deferral."""
        def deferred():
            rcpts = [r for m in d.queue() for r in m['recipients']]
            return rcpts and all(r['state'] == 'deferred' and re.search(regex, r.get('reply', '')) for r in rcpts)
        mxv.wait_until(lambda: p2.deliveries() or deferred(), 20, 'a deferral /%s/ or a delivery at mx2' % regex,
                       interval=0.1)
        sent = [line for line in d.log_text().splitlines() if 'status=sent' in line]
        self.assertEqual(p2.deliveries(), [], '%s: %s' % (why, sent))
        self.assertEqual(sent, [])
        d.wait_log(r'mta-sts: domain=dane\.test fetched id=1 mode=enforce')

    def test_9_auto_enforce_binds_host_without_tlsa(self):
        # mx2 is not in the policy: never used, DANE host down or not; mx1 is tried (and refuses).
        d, p2 = self.run_case(('mx1.dane.test',), self.mx2_cert, 'notlisted@dane.test')
        self.deferred_not_delivered(d, p2, r'^4\d\d ', 'delivered to an MX the enforce policy does not list')
        self.assertEqual(p2.ehlos, 0, 'connected to an MX the enforce policy does not list')

    def test_9b_auto_enforce_checks_certificate_of_host_without_tlsa(self):
        # mx2 is in the policy, but its certificate names another host: 4.7.5, nothing sent.
        d, p2 = self.run_case(('mx1.dane.test', self.MX2), self.wrong_cert, 'wrongname@dane.test')
        self.deferred_not_delivered(d, p2, r'^451 4\.7\.5 certificate name does not match the MTA-STS policy',
                                    'delivered to a host whose certificate names another')


if __name__ == '__main__':
    unittest.main()
