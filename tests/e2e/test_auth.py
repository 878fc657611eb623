"""End-to-end: sender authentication at the edge (issue 8, section 5).

The real daemon, DNS answers from a real Unbound on loopback (fwdlib), and
the Authentication-Results header as the aiosmtpd Primary receives it.
Messages are signed by Debian's python3-dkim (rsa-sha256 with a 2048-bit
openssl key, ed25519-sha256 with a PyNaCl key; relaxed and simple; l=,
oversigned h=, and rsa-sha1 with the same RSA key), never by code of ours.
The client's address is varied by binding the client socket to 127.0.0.x
(SPF pass from 127.0.0.1, fail from 127.0.0.5).
A lookup fails by the resolver's answer: REFUSED (Unbound's refuse zones:
the SPF record of tempfail.test, the DMARC record of dtemp.test) or
SERVFAIL (a DNSSEC signature broken on purpose: fwdlib.SignedZone bogus=).

Not here: the forged-header tests (test_authres.py).
"""
import base64
import itertools
import os
import re
import smtplib
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxv  # noqa: E402
from fwdlib import SignedZone, Unbound, fwd_daemon, send  # noqa: E402
from test_forward import BASE_ZONE, ForwardBase  # noqa: E402

try:
    import dkim
    import nacl.signing
except ImportError:  # run with /usr/bin/python3 (Debian's python3-dkim, python3-nacl)
    dkim = None

AUTHSERV_ID = 'auth.backup.test'
PASS_IP, FAIL_IP = '127.0.0.1', '127.0.0.5'
RCPT = 'bob@primary.test'


def txt(name, text):
    """A TXT record, its text cut into strings of at most 200 octets."""
    return '%s IN TXT %s' % (name, ' '.join('"%s"' % text[i:i + 200] for i in range(0, len(text), 200)))


def _keys():
    """(rsa private PEM, rsa p=, ed25519 private for dkimpy, ed25519 p=)."""
    d = tempfile.mkdtemp(prefix='mxv-dkim-')
    key = os.path.join(d, 'rsa.key')
    subprocess.run(['openssl', 'genrsa', '-traditional', '-out', key, '2048'], check=True, capture_output=True,
                   timeout=60)
    pub = subprocess.run(['openssl', 'rsa', '-in', key, '-pubout', '-outform', 'DER'], check=True,
                         capture_output=True, timeout=60).stdout
    with open(key, 'rb') as f:
        rsa_priv = f.read()
    ed = nacl.signing.SigningKey.generate()
    return rsa_priv, base64.b64encode(pub).decode(), base64.b64encode(bytes(ed)), \
        base64.b64encode(bytes(ed.verify_key)).decode()


KEYS = _keys() if dkim else None


def zone():
    if not KEYS:
        return []
    return [
        # SPF: pass from 127.0.0.1 only; softfail elsewhere; fail for everyone
        txt('spf.test.', 'v=spf1 ip4:127.0.0.1 -all'),
        txt('soft.test.', 'v=spf1 ip4:127.0.0.1 ~all'),
        txt('_dmarc.spf.test.', 'v=DMARC1; p=reject'),
        txt('fail.test.', 'v=spf1 ip4:192.0.2.1 -all'),
        # SPF permerror (RFC 7208 4.5, 4.6): two records; an unknown mechanism after the matching one
        txt('twospf.test.', 'v=spf1 ip4:127.0.0.1 -all'),
        txt('twospf.test.', 'v=spf1 ip4:192.0.2.1 -all'),
        txt('badspf.test.', 'v=spf1 ip4:127.0.0.1 foo:bar -all'),
        # DMARC temperror: SPF passes from 127.0.0.1, the _dmarc lookup is refused (AuthBase.refuse)
        txt('dtemp.test.', 'v=spf1 ip4:127.0.0.1 -all'),
        # DKIM keys of signed.test, whose DMARC policy is reject
        txt('rsa._domainkey.signed.test.', 'v=DKIM1; k=rsa; p=' + KEYS[1]),
        txt('ed._domainkey.signed.test.', 'v=DKIM1; k=ed25519; p=' + KEYS[3]),
        txt('_dmarc.signed.test.', 'v=DMARC1; p=reject'),
        # DMARC: SPF fails, nothing signs
        txt('rej.test.', 'v=spf1 ip4:192.0.2.1 -all'),
        txt('_dmarc.rej.test.', 'v=DMARC1; p=reject'),
        txt('quar.test.', 'v=spf1 ip4:192.0.2.1 -all'),
        txt('_dmarc.quar.test.', 'v=DMARC1; p=quarantine'),
        txt('none.test.', 'v=spf1 ip4:192.0.2.1 -all'),
        txt('_dmarc.none.test.', 'v=DMARC1; p=none'),
        # iprev: 127.0.0.7 named client.test, forward-confirmed; 127.0.0.8's name points elsewhere
        # (127.0.0.1 is localhost. in unbound's own 127.in-addr.arpa zone, and localhost. is 127.0.0.1)
        '7.0.0.127.in-addr.arpa. IN PTR client.test.',
        'client.test. IN A 127.0.0.7',
        '8.0.0.127.in-addr.arpa. IN PTR liar.test.',
        'liar.test. IN A 192.0.2.8',
    ]


SEQ = itertools.count()


def message(frm, subject='auth test', body='hello\r\nworld\r\n'):
    """A message with a Message-ID of its own (mxvault drops a duplicate silently)."""
    return ('From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nDate: Wed, 02 Dec 2026 11:30:00 +0000\r\n'
            'Message-ID: <%d.%d@client.test>\r\n\r\n%s' % (frm, RCPT, subject, os.getpid(), next(SEQ),
                                                           body)).encode()


SIGNED_HEADERS = [b'from', b'to', b'subject', b'date', b'message-id']


def sign(msg, alg='rsa', canon=(b'relaxed', b'simple'), headers=SIGNED_HEADERS, length=False):
    """alg: 'rsa' (rsa-sha256), 'rsa-sha1' (the same key) or 'ed25519'; headers: h= (a name twice
    oversigns it); length: an l= tag."""
    if alg in ('rsa', 'rsa-sha1'):
        sel, key, sa = b'rsa', KEYS[0], b'rsa-sha1' if alg == 'rsa-sha1' else b'rsa-sha256'
    else:
        sel, key, sa = b'ed', KEYS[2], b'ed25519-sha256'
    sig = dkim.sign(msg, sel, b'signed.test', key, canonicalize=canon, signature_algorithm=sa,
                    include_headers=headers, length=length)
    return sig + msg


def auth_results(got):
    """Our header as the primary got it: the first field, unfolded."""
    head = got.partition(b'\r\n\r\n')[0].decode('utf-8', 'replace')
    assert head.startswith('Authentication-Results: %s;' % AUTHSERV_ID), head[:400]
    first = re.match(r'Authentication-Results:[^\r\n]*(?:\r\n[ \t][^\r\n]*)*', head).group(0)
    return re.sub(r'\r\n[ \t]+', ' ', first)


@unittest.skipUnless(dkim is not None, 'needs python3-dkim and python3-nacl (run with /usr/bin/python3)')
class AuthBase(ForwardBase):
    zone = zone()
    # REFUSED for every name: the SPF lookup (tempfail.test) or the DMARC one (dtemp.test) is a temperror
    refuse = ['tempfail.test', '_dmarc.dtemp.test']

    def setUp(self):
        super().setUp()
        self.primary = self.server('127.0.0.2', 'mx1.test', start=True)

    def auth_daemon(self, **modes):
        return self.daemon({'primary.test': modes}, authserv_id=AUTHSERV_ID)

    def client(self, d, ip=PASS_IP):
        return smtplib.SMTP(mxv.HOST, d.port, local_hostname='client.test', timeout=30, source_address=(ip, 0))

    def assertRefused(self, d, ip, sender, msg, code, enh, at='rcpt'):
        """One transaction from ip refused with code and enhanced code at RCPT or at the end of data."""
        s = self.client(d, ip)
        try:
            if at == 'rcpt':
                with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
                    s.sendmail(sender, [RCPT], msg)
                got, text = cm.exception.recipients[RCPT]
            else:
                with self.assertRaises(smtplib.SMTPDataError) as cm:
                    s.sendmail(sender, [RCPT], msg)
                got, text = cm.exception.smtp_code, cm.exception.smtp_error
            self.assertEqual(got, code, text)
            self.assertTrue(text.startswith(enh.encode() + b' '), text)
        finally:
            s.quit()

    def deliver(self, d, sender, msg, ip=PASS_IP):
        """Sends one message from ip; returns our header as the primary got it."""
        n = len(self.primary.deliveries())
        s = self.client(d, ip)
        try:
            send(d, sender, [RCPT], data=msg, s=s)
        finally:
            s.quit()
        return auth_results(self.primary.wait_deliveries(n + 1, 20)[n].data)


class TestSpf(AuthBase):
    """SPF for the real client address, in the header and (spf = reject) at RCPT."""

    def test_pass_fail_softfail_tagged(self):
        with self.auth_daemon(spf='tag') as d:
            ar = self.deliver(d, 'alice@spf.test', message('alice@spf.test'), PASS_IP)
            self.assertIn('spf=pass smtp.mailfrom=alice@spf.test', ar)
            ar = self.deliver(d, 'alice@spf.test', message('alice@spf.test'), FAIL_IP)
            self.assertIn('spf=fail smtp.mailfrom=alice@spf.test', ar)
            ar = self.deliver(d, 'alice@soft.test', message('alice@soft.test'), FAIL_IP)
            self.assertIn('spf=softfail smtp.mailfrom=alice@soft.test', ar)
            ar = self.deliver(d, 'alice@soft.test', message('alice@soft.test'), PASS_IP)
            self.assertIn('spf=pass smtp.mailfrom=alice@soft.test', ar)

    def test_reject_fail_at_rcpt(self):
        with self.auth_daemon(spf='reject') as d:
            self.assertRefused(d, FAIL_IP, 'alice@spf.test', message('alice@spf.test'), 550, '5.7.23')
            # the same sender from its own address passes and is delivered, tagged
            ar = self.deliver(d, 'alice@spf.test', message('alice@spf.test'), PASS_IP)
            self.assertIn('spf=pass smtp.mailfrom=alice@spf.test', ar)
            self.assertEqual(len(self.primary.deliveries()), 1)
            # softfail is not refused
            ar = self.deliver(d, 'alice@soft.test', message('alice@soft.test'), FAIL_IP)
            self.assertIn('spf=softfail', ar)

    def test_reject_temperror_451(self):
        with self.auth_daemon(spf='reject') as d:
            self.assertRefused(d, PASS_IP, 'alice@tempfail.test', message('alice@tempfail.test'), 451, '4.7.24')

    def test_temperror_tagged(self):
        with self.auth_daemon(spf='tag') as d:
            ar = self.deliver(d, 'alice@tempfail.test', message('alice@tempfail.test'), PASS_IP)
            self.assertIn('spf=temperror smtp.mailfrom=alice@tempfail.test', ar)

    def test_reject_permerror_tagged_only(self):
        """spf = reject refuses fail and temperror only: a broken record (two of them; an unknown
        mechanism after the one that matches, RFC 7208 4.6) is accepted and tagged permerror."""
        with self.auth_daemon(spf='reject') as d:
            for domain in ('twospf.test', 'badspf.test'):
                with self.subTest(domain=domain):
                    sender = 'alice@' + domain
                    ar = self.deliver(d, sender, message(sender), PASS_IP)
                    self.assertIn('spf=permerror smtp.mailfrom=' + sender, ar)


class TestDkim(AuthBase):
    """Signatures by python3-dkim: pass for rsa and ed25519, relaxed and simple, l=; fail when tampered or
    a From: is added under an oversigned h=; rsa-sha1 is permerror."""

    def test_signers_pass(self):
        with self.auth_daemon() as d:
            for alg in ('rsa', 'ed25519'):
                for canon in ((b'relaxed', b'relaxed'), (b'simple', b'simple'), (b'relaxed', b'simple')):
                    with self.subTest(alg=alg, canon=canon):
                        msg = sign(message('alice@signed.test', 'signed %s %s' % (alg, canon[0].decode())), alg,
                                   canon)
                        ar = self.deliver(d, 'alice@signed.test', msg)
                        self.assertRegex(ar, r'dkim=pass [^;]*header\.d=signed\.test header\.s=%s\b' %
                                         ('rsa' if alg == 'rsa' else 'ed'))
                        self.assertIn('dmarc=pass', ar)

    def test_tampered_body_and_header(self):
        with self.auth_daemon() as d:
            for alg in ('rsa', 'ed25519'):
                with self.subTest(alg=alg, what='body'):
                    msg = sign(message('alice@signed.test', 'body ' + alg), alg, (b'simple', b'simple'))
                    ar = self.deliver(d, 'alice@signed.test', msg.replace(b'hello', b'HELLO'))
                    self.assertRegex(ar, r'dkim=fail [^;]*header\.d=signed\.test')
                    self.assertNotIn('dkim=pass', ar)
                with self.subTest(alg=alg, what='header'):
                    msg = sign(message('alice@signed.test', 'header ' + alg), alg, (b'relaxed', b'relaxed'))
                    ar = self.deliver(d, 'alice@signed.test', msg.replace(b'Subject: header', b'Subject: HEADER'))
                    self.assertRegex(ar, r'dkim=fail [^;]*header\.d=signed\.test')
                    self.assertNotIn('dkim=pass', ar)

    def assertDkim(self, ar, result):
        self.assertRegex(ar, r'dkim=%s [^;]*header\.d=signed\.test' % result)
        if result != 'pass':
            self.assertNotIn('dkim=pass', ar)

    def test_canonicalization_tolerance(self):
        """simple/relaxed passes too; relaxed header canonicalization absorbs a signed header's name
        case and whitespace, relaxed body trailing whitespace; simple absorbs neither (RFC 6376 3.4)."""
        header_ws = (b'Subject: ', b'SUBJECT:  \t ')
        body_ws = (b'hello\r\n', b'hello \t \r\n')
        cases = [  # (canonicalization, change in transit, result)
            ((b'simple', b'relaxed'), None, 'pass'),
            ((b'relaxed', b'simple'), header_ws, 'pass'),
            ((b'simple', b'relaxed'), header_ws, 'fail'),
            ((b'simple', b'relaxed'), body_ws, 'pass'),
            ((b'relaxed', b'simple'), body_ws, 'fail'),
        ]
        with self.auth_daemon() as d:
            for alg in ('rsa', 'ed25519'):
                for i, (canon, change, result) in enumerate(cases):
                    with self.subTest(alg=alg, canon=canon, change=change):
                        msg = sign(message('alice@signed.test', 'canon %s %d' % (alg, i)), alg, canon)
                        if change:
                            self.assertIn(change[0], msg)
                            msg = msg.replace(*change)
                        self.assertDkim(self.deliver(d, 'alice@signed.test', msg), result)

    def test_length_tag(self):
        """l= (RFC 6376 3.5): only that many body octets are signed. docs/dkim-suites.md: text appended
        after the signed length still passes; a change inside it fails."""
        with self.auth_daemon() as d:
            for alg in ('rsa', 'ed25519'):
                for what, change, result in (('as signed', None, 'pass'),
                                             ('appended', lambda m: m + b'appended after l=\r\n', 'pass'),
                                             ('changed inside', lambda m: m.replace(b'world', b'WORLD'), 'fail')):
                    with self.subTest(alg=alg, what=what):
                        msg = sign(message('alice@signed.test', 'l= %s %s' % (alg, what)), alg,
                                   (b'relaxed', b'simple'), length=True)
                        self.assertRegex(msg.partition(b'\r\n\r\n')[0], rb';\s*l=\d+')
                        self.assertDkim(self.deliver(d, 'alice@signed.test', change(msg) if change else msg), result)

    def test_oversigned_from(self):
        """h= naming From twice signs its absence too (RFC 6376 5.4.2, 8.15): a second From: added
        above it breaks the signature. Signed once, the same addition leaves the signature intact (the
        verifier takes the last From:), which is why signers oversign."""
        added = b'From: <mallory@elsewhere.test>\r\n'
        with self.auth_daemon() as d:
            for alg in ('rsa', 'ed25519'):
                for what, headers, change, result in (
                        ('oversigned', [b'from'] + SIGNED_HEADERS, False, 'pass'),
                        ('oversigned, From added', [b'from'] + SIGNED_HEADERS, True, 'fail'),
                        ('signed once, From added', SIGNED_HEADERS, True, 'pass')):
                    with self.subTest(alg=alg, what=what):
                        msg = sign(message('alice@signed.test', 'oversign %s %s' % (alg, what)), alg,
                                   (b'relaxed', b'relaxed'), headers=headers)
                        h = re.search(rb'\bh=([^;]*);', msg.partition(b'\r\n\r\n')[0]).group(1)
                        self.assertEqual([n.strip() for n in h.split(b':')], headers)
                        self.assertDkim(self.deliver(d, 'alice@signed.test', added + msg if change else msg), result)

    def test_rsa_sha1_permerror(self):
        """rsa-sha1 is never a pass (RFC 8301 3.1; src/auth/dkim.h: permerror), so signed.test's
        p=reject finds no aligned pass."""
        with self.auth_daemon() as d:
            msg = sign(message('alice@signed.test', 'sha1'), 'rsa-sha1')
            self.assertIn(b'a=rsa-sha1;', msg)
            ar = self.deliver(d, 'alice@signed.test', msg)
            self.assertDkim(ar, 'permerror')
            self.assertRegex(ar, r'dmarc=fail\b[^;]*header\.from=signed\.test')


class TestDmarc(AuthBase):
    """DMARC: reject enforced at end of data (nothing stored), tagged otherwise; a failed policy lookup
    (REFUSED, SERVFAIL) is 451 4.7.1 under enforce (nothing stored), dmarc=temperror under tag."""

    def test_reject_enforced(self):
        with self.auth_daemon(dmarc='enforce') as d:
            self.assertRefused(d, PASS_IP, 'alice@rej.test', message('alice@rej.test'), 550, '5.7.1', at='data')
            self.assertEqual(d.queue(), [])
            # a message that passes (aligned DKIM, SPF none) goes through: only it reaches the primary
            ar = self.deliver(d, 'bounces@elsewhere.test', sign(message('alice@signed.test', 'aligned'), 'ed25519'))
            self.assertIn('dmarc=pass', ar)
            self.assertRegex(ar, r'dkim=pass [^;]*header\.d=signed\.test')
            self.assertEqual([dl.data.count(b'Subject: aligned') for dl in self.primary.deliveries()], [1])

    def test_reject_tagged(self):
        with self.auth_daemon(dmarc='tag') as d:
            ar = self.deliver(d, 'alice@rej.test', message('alice@rej.test'))
            self.assertRegex(ar, r'dmarc=fail\b[^;]*header\.from=rej\.test')
            self.assertIn('spf=fail smtp.mailfrom=alice@rej.test', ar)

    def test_quarantine_and_none_under_enforce_accepted(self):
        with self.auth_daemon(dmarc='enforce') as d:
            ar = self.deliver(d, 'alice@quar.test', message('alice@quar.test'))
            self.assertRegex(ar, r'dmarc=fail\b[^;]*header\.from=quar\.test')
            ar = self.deliver(d, 'alice@none.test', message('alice@none.test'))
            self.assertRegex(ar, r'dmarc=fail\b[^;]*header\.from=none\.test')

    def test_spf_aligned_pass_with_spf_off(self):
        """spf = off only means SPF refuses nothing: DMARC still needs its result (aligned SPF pass, no DKIM)."""
        with self.auth_daemon(spf='off', dmarc='enforce') as d:
            ar = self.deliver(d, 'alice@spf.test', message('alice@spf.test'), PASS_IP)
            self.assertRegex(ar, r'dmarc=pass\b[^;]*header\.from=spf\.test')
            # the same from an address SPF fails: p=reject enforced
            self.assertRefused(d, FAIL_IP, 'alice@spf.test', message('alice@spf.test'), 550, '5.7.1', at='data')

    def test_tampered_aligned_signature_rejected(self):
        """signed.test says p=reject: its signature broken in transit and no SPF is a DMARC fail."""
        with self.auth_daemon(dmarc='enforce') as d:
            msg = sign(message('alice@signed.test', 'broken'), 'rsa').replace(b'world', b'WORLD')
            self.assertRefused(d, PASS_IP, 'bounces@elsewhere.test', msg, 550, '5.7.1', at='data')
            self.assertEqual(d.queue(), [])

    def assertDeferredNotStored(self, d, sender):
        """sender's message is answered 451 4.7.1 at the end of data and not kept: the queue is empty,
        and of it and a message that passes after it only the latter reaches the primary."""
        self.assertRefused(d, PASS_IP, sender, message(sender, 'deferred'), 451, '4.7.1', at='data')
        self.assertEqual(d.queue(), [])
        ar = self.deliver(d, 'bounces@elsewhere.test', sign(message('alice@signed.test', 'aligned'), 'ed25519'))
        self.assertIn('dmarc=pass', ar)
        self.assertEqual([(dl.data.count(b'Subject: aligned'), dl.data.count(b'Subject: deferred'))
                          for dl in self.primary.deliveries()], [(1, 0)])

    def assertTaggedTemperror(self, d, domain):
        """A message from alice@domain (SPF pass) is delivered, its header saying dmarc=temperror."""
        sender = 'alice@' + domain
        ar = self.deliver(d, sender, message(sender))
        self.assertRegex(ar, r'dmarc=temperror\b[^;]*header\.from=%s\b' % re.escape(domain))
        self.assertIn('spf=pass smtp.mailfrom=' + sender, ar)

    def test_temperror_enforced_451(self):
        """The _dmarc lookup REFUSED (SPF itself passes): under enforce, try again later."""
        with self.auth_daemon(dmarc='enforce') as d:
            self.assertDeferredNotStored(d, 'alice@dtemp.test')

    def test_temperror_tagged(self):
        with self.auth_daemon(dmarc='tag') as d:
            self.assertTaggedTemperror(d, 'dtemp.test')

    def test_servfail_temperror(self):
        """The _dmarc answer SERVFAIL (its signature broken, the resolver validating): 451 4.7.1 under
        enforce, tagged temperror under tag."""
        z = SignedZone('sf.test', [txt('sf.test.', 'v=spf1 ip4:127.0.0.1 -all'),
                                   txt('_dmarc.sf.test.', 'v=DMARC1; p=none')], bogus=[('_dmarc.sf.test.', 'TXT')])
        self.addCleanup(z.cleanup)
        z.start()
        dns = Unbound(BASE_ZONE + self.zone, refuse=self.refuse, zones=[z])
        self.addCleanup(dns.cleanup)
        dns.start()
        dig = subprocess.run(['dig', '@' + mxv.HOST, '-p', str(dns.port), '+time=5', '+tries=1', '_dmarc.sf.test.',
                              'TXT'], capture_output=True, text=True, timeout=15).stdout
        self.assertIn('status: SERVFAIL', dig)  # the precondition: what mxvault will be answered
        for mode in ('enforce', 'tag'):
            with self.subTest(dmarc=mode), \
                    self.watch(fwd_daemon(dns, self.mx_port, {'primary.test': {'dmarc': mode}},
                                          authserv_id=AUTHSERV_ID)) as d:
                if mode == 'enforce':
                    self.assertDeferredNotStored(d, 'alice@sf.test')
                else:
                    self.assertTaggedTemperror(d, 'sf.test')


class TestIprev(AuthBase):
    """iprev (RFC 8601 3): the client's PTR name, forward-confirmed, in the header."""

    def test_iprev(self):
        with self.auth_daemon() as d:
            ar = self.deliver(d, 'alice@spf.test', message('alice@spf.test'), PASS_IP)
            self.assertRegex(ar, r'iprev=pass policy\.iprev=127\.0\.0\.1 \(localhost\)')
            ar = self.deliver(d, 'alice@spf.test', message('alice@spf.test'), '127.0.0.7')
            self.assertRegex(ar, r'iprev=pass policy\.iprev=127\.0\.0\.7 \(client\.test\)')
            ar = self.deliver(d, 'alice@spf.test', message('alice@spf.test'), '127.0.0.8')
            self.assertRegex(ar, r'iprev=fail policy\.iprev=127\.0\.0\.8\b')
            ar = self.deliver(d, 'alice@spf.test', message('alice@spf.test'), FAIL_IP)  # no PTR at all
            self.assertRegex(ar, r'iprev=(fail|permerror) policy\.iprev=127\.0\.0\.5\b')


if __name__ == '__main__':
    unittest.main()
