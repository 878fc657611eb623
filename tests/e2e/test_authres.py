"""End-to-end: Authentication-Results (issue 8) as the primary receives it.

The real daemon forwards to an aiosmtpd Primary (fwdlib) and the test reads
what the primary got: an Authentication-Results field that claims our
authserv-id is removed on the way in (DATA, and BDAT with chunk boundaries
inside the forged field), one of another authserv-id is kept; ours, kept
beside the stored content in the spool, arrives as the first header line,
before our Received:, and is in the headers a DSN returns. No check runs in
these tests (spf = off, dmarc = off), so ours says "none" (RFC 8601 2.2).
"""
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxv  # noqa: E402
from fwdlib import parse_dsn, send  # noqa: E402
from test_forward import SENDER, ForwardBase  # noqa: E402

AUTHSERV_ID = 'auth.backup.test'
FORGED = ('Authentication-Results: (forged by the sender)\r\n'
          '  AUTH.Backup.Test;\r\n'
          '\tspf=pass smtp.mailfrom=alice@sender.test\r\n')
THEIRS = 'Authentication-Results: mx.sender.test; dkim=pass header.d=sender.test\r\n'


def forged_message(to):
    return ('From: <%s>\r\n%sTo: <%s>\r\n%sSubject: forged\r\n'
            'Message-ID: <%d@client.test>\r\n\r\n'
            'Authentication-Results: auth.backup.test; in the body, kept\r\n' %
            (SENDER, FORGED, to, THEIRS, os.getpid())).encode()


class TestForgedAuthRes(ForwardBase):
    """A sender cannot forge our verdict: fields claiming our authserv-id never reach the primary."""

    def check_received(self, p):
        got = p.wait_deliveries(1, 15)[0].data
        header, _, body = got.partition(b'\r\n\r\n')
        self.assertNotIn(b'spf=pass smtp.mailfrom=alice@sender.test', header, got)
        self.assertNotIn(b'forged by the sender', header, got)
        self.assertIn(THEIRS.encode(), header, got)
        self.assertIn(b'Authentication-Results: auth.backup.test; in the body, kept', body)
        self.assertIn(b'\r\nSubject: forged\r\n', header)
        return got

    def test_forged_removed_data(self):
        p = self.server('127.0.0.2', 'mx1.test', start=True)
        with self.daemon({'primary.test': {}}, authserv_id=AUTHSERV_ID) as d:
            send(d, SENDER, ['bob@primary.test'], data=forged_message('bob@primary.test'))
            self.check_received(p)
            self.assertRegex(d.log_text(), r'removed=1 reason="Authentication-Results claiming our authserv-id"')

    def test_forged_removed_bdat_split(self):
        p = self.server('127.0.0.2', 'mx1.test', start=True)
        with self.daemon({'primary.test': {}}, authserv_id=AUTHSERV_ID) as d:
            msg = forged_message('bob@primary.test')
            at = msg.index(b'AUTH.Backup')
            cuts = [at - 30, at + 4, at + 20, msg.index(b'\tspf=pass') + 1]  # inside the name, the id, a fold
            r = d.raw()
            r.ehlo()
            self.assertEqual(r.cmd('MAIL FROM:<%s>' % SENDER)[0], 250)
            self.assertEqual(r.cmd('RCPT TO:<bob@primary.test>')[0], 250)
            start = 0
            for c in cuts:
                r.send(b'BDAT %d\r\n' % (c - start) + msg[start:c])
                r.expect(250, '2.0.0')
                start = c
            r.send(b'BDAT %d LAST\r\n' % (len(msg) - start) + msg[start:])
            r.expect(250, '2.0.0')
            r.close()
            self.check_received(p)


class TestOurAuthRes(ForwardBase):
    """Our header: stored with the message, sent first, returned in DSNs."""

    def test_first_header_line(self):
        p = self.server('127.0.0.2', 'mx1.test', start=True)
        off = {'spf': 'off', 'dmarc': 'off'}
        with self.daemon({'primary.test': off}, authserv_id=AUTHSERV_ID) as d:
            send(d, SENDER, ['bob@primary.test'], data=forged_message('bob@primary.test'))
            got = p.wait_deliveries(1, 15)[0].data
            self.assertTrue(got.startswith(b'Authentication-Results: auth.backup.test; none\r\nReceived: from '),
                            got[:300])
            self.assertEqual(len(re.findall(rb'auth\.backup\.test;', got.partition(b'\r\n\r\n')[0], re.I)), 1,
                             got)

    def test_default_authserv_id_is_hostname(self):
        p = self.server('127.0.0.2', 'mx1.test', start=True)
        with self.daemon({'primary.test': {}}) as d:
            # a leading dot in the body, to see the stream is dot-stuffed as a whole
            send(d, SENDER, ['bob@primary.test'], data=mxv.message(SENDER, 'bob@primary.test', body='.dot\r\n'))
            got = p.wait_deliveries(1, 15)[0].data
            # The checks ran (iprev for 127.0.0.1, SPF and DMARC find no records in the test zone).
            self.assertRegex(got, rb'^Authentication-Results: backup\.test; spf=none smtp\.mailfrom=[^\r]*\r\n'
                                  rb'(\t[^\r]*\r\n)*Received: from ')
            self.assertIn(b'iprev=pass', got.split(b'Received: ')[0])
            self.assertTrue(got.endswith(b'\r\n\r\n.dot\r\n'), got[-50:])

    def test_in_dsn(self):
        self.server('127.0.0.2', 'mx1.test', start=True, rcpt_reply=lambda a: '550 5.1.1 No such user here')
        with self.daemon({'primary.test': {}}, authserv_id=AUTHSERV_ID) as d:
            send(d, SENDER, ['bad@primary.test'])
            dsn = self.wait_dsns(1, 15)[0]
            rep = parse_dsn(dsn.data)
            self.assertIn('Authentication-Results: auth.backup.test; spf=none', dsn.data.decode('utf-8', 'replace'),
                          rep['text'])


if __name__ == '__main__':
    unittest.main()
