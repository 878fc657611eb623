"""End-to-end: sender authentication at the edge (issue 8, section 5).

The real daemon, DNS answers from a real Unbound on loopback (fwdlib), and
the Authentication-Results header as the aiosmtpd Primary receives it.
Messages are signed by Debian's python3-dkim (rsa-sha256 with a 2048-bit
openssl key, ed25519-sha256 with a PyNaCl key; relaxed and simple), never
by code of ours. The client's address is varied by binding the client
socket to 127.0.0.x (SPF pass from 127.0.0.1, fail from 127.0.0.5).

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
from fwdlib import send  # noqa: E402
from test_forward import ForwardBase  # noqa: E402

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


def sign(msg, alg='rsa', canon=(b'relaxed', b'simple')):
    if alg == 'rsa':
        sel, key, sa = b'rsa', KEYS[0], b'rsa-sha256'
    else:
        sel, key, sa = b'ed', KEYS[2], b'ed25519-sha256'
    sig = dkim.sign(msg, sel, b'signed.test', key, canonicalize=canon, signature_algorithm=sa,
                    include_headers=[b'from', b'to', b'subject', b'date', b'message-id'])
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
    refuse = ['tempfail.test']  # REFUSED for every name: the SPF lookup is a temperror

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


class TestDkim(AuthBase):
    """Signatures by python3-dkim: pass for rsa and ed25519, relaxed and simple; fail when tampered."""

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


class TestDmarc(AuthBase):
    """DMARC: reject enforced at end of data (nothing stored), tagged otherwise."""

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
