"""`mxvault check DOMAIN` (issue 10, section 5): the MX checker that knows
which MX is the backup.

One unbound (fwdlib.Unbound) serves a test zone per defect: every domain
X.test has the MX set "10 mx1.test, 20 backup.test" (clean.test), or that
set with one thing wrong. mx1.test is a live aiosmtpd primary
(fwdlib.Primary) on 127.0.0.2:PORT with a certificate for mx1.test from a
test CA; it refuses unknown users and foreign domains as a real primary
does. backup.test is 127.0.0.1: the configuration passed with -c is a
backup whose hostname is backup.test listening on 127.0.0.1:PORT (mx_port
= PORT), so `check -c` recognises it as this host, as the daemon would.
The --probe cases run a real mxvault daemon as that backup. Each case
asserts the finding's id and severity and the exit code (0 ok, 1 warn,
2 error). Loopback only; every wait has a deadline.
"""
import json
import os
import shutil
import ssl
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fwdlib  # noqa: E402
import hostile  # noqa: E402
import mxv  # noqa: E402
from fwdlib import CA, HTTPS_HOST, Primary, Unbound, policy  # noqa: E402
from test_mta_sts import have_tools  # noqa: E402  (root for port 443, unbound, aiosmtpd)

PORT = mxv.free_port()
CHECK_TIMEOUT = 60  # the whole command, at most; each step has its own shorter deadline
SILENT = 15  # primaries of slow.test that accept and never say a word


def mx_set(domain, first='10 mx1.test.', second='20 backup.test.', ttl=3600):
    return ['%s. %d IN MX %s' % (domain, ttl, first), '%s. %d IN MX %s' % (domain, ttl, second)]


def zone():
    r = ['mx1.test. IN A 127.0.0.2', 'backup.test. IN A 127.0.0.1', 'dead.test. IN A 127.0.0.4',
         'other.test. IN A 127.0.0.5', 'mx2.wrongaddr.test. IN A 127.0.0.6', 'mx1t.test. IN A 127.0.0.2',
         'alias.test. IN CNAME mx1.test.', 'relay-mx.test. IN A 127.0.0.7', 'evil.test. IN A 127.0.0.8',
         'evil2.test. IN A 127.0.0.9', 'evil3.test. IN A 127.0.0.10', 'evil4.test. IN A 127.0.0.11',
         'evil5.test. IN A 127.0.0.12',
         '2.0.0.127.in-addr.arpa. IN PTR mx1.test.',
         '_%d._tcp.mx1t.test. IN TLSA 3 1 1 %s' % (PORT, '00' * 32),
         'mta-sts.sts.test. IN A ' + HTTPS_HOST, '_mta-sts.sts.test. IN TXT "v=STSv1; id=1;"']
    r += mx_set('clean.test') + mx_set('parity.test') + mx_set('sts.test')
    r += mx_set('cname.test', first='10 alias.test.')
    r += mx_set('iplit.test', first='10 127.0.0.2.')
    r += ['nullmx.test. IN MX 0 .', 'nomx.test. IN A 127.0.0.2']
    r += mx_set('noaddr.test') + ['noaddr.test. IN MX 30 ghost.test.']
    r += ['single.test. IN MX 10 mx1.test.']
    r += mx_set('samepref.test', second='10 backup.test.')
    r += mx_set('ttl.test', ttl=30)
    r += mx_set('deadprim.test', first='10 dead.test.')
    r += mx_set('notself.test', second='20 other.test.')
    r += mx_set('wrongaddr.test', second='20 mx2.wrongaddr.test.')
    r += mx_set('tlsa.test', first='10 mx1t.test.')
    r += mx_set('relay.test', first='10 relay-mx.test.')
    r += mx_set('hostile.test', first='10 evil.test.') + mx_set('hostile2.test', first='10 evil2.test.')
    r += mx_set('hostile3.test', first='10 evil3.test.') + mx_set('hostile4.test', first='10 evil4.test.')
    r += mx_set('hostile5.test', first='10 evil5.test.')
    r += ['slow.test. IN MX 20 backup.test.']
    r += ['slow.test. IN MX 10 silent%d.test.' % i for i in range(SILENT)]
    r += ['silent%d.test. IN A 127.0.0.%d' % (i, 20 + i) for i in range(SILENT)]
    return r


def primary_rcpt(addr):
    """A primary's answer: its users, postmaster, nobody else, and no relaying."""
    local, _, domain = addr.rpartition('@')
    if not domain.endswith('.test'):
        return '550 5.7.1 Relaying denied'
    if local.lower() in ('postmaster', 'alice'):
        return None
    return '550 5.1.1 No such user'


def findings(out, fid):
    return [(f['severity'], f['host']) for f in out['findings'] if f['id'] == fid]


@unittest.skipUnless(have_tools(), 'needs root (port 443), unbound and python3-aiosmtpd')
class TestCheck(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.certdir = tempfile.mkdtemp(prefix='mxv-check-ca-')
        cls.ca = CA(cls.certdir)
        cls.dns = Unbound(zone())
        cls.dns.start()
        cls.primary = Primary('127.0.0.2', PORT, 'mx1.test', tls=cls.ca.leaf('mx1.test'), rcpt_reply=primary_rcpt)
        cls.primary.start()
        cls.backup_cert = cls.ca.leaf('backup.test')

    @classmethod
    def tearDownClass(cls):
        cls.primary.stop()
        cls.dns.cleanup()
        shutil.rmtree(cls.certdir, ignore_errors=True)

    def backup(self, recipients=('alice',), domain='clean.test', cert=True):
        """The backup's configuration (and daemon, when started): backup.test on 127.0.0.1:PORT;
        cert=False: no tls_cert, so the daemon's self-signed certificate."""
        d = mxv.Daemon({domain: {'recipients': list(recipients) if recipients != '*' else None}}, hold=False,
                       hostname='backup.test', also_known_as='mx2.wrongaddr.test', resolver=self.dns.resolver,
                       mx_port=PORT, tls_ca_file=self.ca.cert, tls_cert=self.backup_cert[0] if cert else None,
                       tls_key=self.backup_cert[1] if cert else None)
        d.port = PORT
        d.server['listen'] = '127.0.0.1:%d' % PORT
        if recipients == '*':
            d.domains[domain]['recipients'] = '*'
        d.write_config()
        self.addCleanup(d.cleanup)
        return d

    def check(self, domain, *args, conf=True, code=None):
        argv = ['check', domain, '--json', '--timeout', '5'] + list(args)
        if conf:
            argv += ['-c', self.backup().conf]
        else:
            argv += ['--resolver', self.dns.resolver, '--port', PORT]
        t = time.monotonic()
        p = mxv.run_cli(*argv, timeout=CHECK_TIMEOUT)
        self.assertLess(time.monotonic() - t, CHECK_TIMEOUT)
        self.assertNotIn('runtime error', p.stderr)
        self.assertNotIn('Sanitizer', p.stderr)
        out = json.loads(p.stdout)
        self.assertEqual(out['exit'], p.returncode)
        if code is not None:
            self.assertEqual(p.returncode, code, json.dumps(out['findings'], indent=1))
        return out

    def assert_finding(self, out, fid, sev, host=None):
        got = findings(out, fid)
        want = [(s, h) for s, h in got if s == sev and (host is None or h == host)]
        self.assertTrue(want, 'no %s %s%s in %s' % (sev, fid, ' for ' + host if host else '',
                                                    json.dumps(out['findings'], indent=1)))

    # --- DNS: one defect per zone -----------------------------------------

    def test_clean_dns(self):
        out = self.check('clean.test', code=0)
        self.assertEqual([(m['host'], m['preference'], m['ttl'], m['role'], m['addresses']) for m in out['mx']],
                         [('mx1.test', 10, 3600, 'primary', ['127.0.0.2']),
                          ('backup.test', 20, 3600, 'backup', ['127.0.0.1'])])
        self.assertFalse(out['backup_assumed'])
        self.assert_finding(out, 'backup.self', 'ok', 'backup.test')
        self.assert_finding(out, 'primary.reachable', 'ok', 'mx1.test')

    def test_without_config_least_preferred_is_assumed_backup(self):
        out = self.check('clean.test', conf=False, code=0)
        self.assertTrue(out['backup_assumed'])
        self.assert_finding(out, 'backup.assumed', 'ok')
        self.assertEqual([m['role'] for m in out['mx']], ['primary', 'backup'])

    def test_cname_target(self):
        self.assert_finding(self.check('cname.test', code=2), 'mx.cname', 'error', 'alias.test')

    def test_ip_literal_target(self):
        self.assert_finding(self.check('iplit.test', code=2), 'mx.ip-literal', 'error', '127.0.0.2')

    def test_null_mx(self):
        self.assert_finding(self.check('nullmx.test', code=2), 'mx.null', 'error')

    def test_no_mx(self):
        self.assert_finding(self.check('nomx.test', code=2), 'mx.none', 'error')

    def test_missing_address_records(self):
        self.assert_finding(self.check('noaddr.test', code=2), 'mx.no-address', 'error', 'ghost.test')

    def test_single_mx(self):
        out = self.check('single.test', conf=False, code=1)
        self.assert_finding(out, 'mx.single', 'warn', 'mx1.test')

    def test_backup_same_preference(self):
        self.assert_finding(self.check('samepref.test', code=2), 'backup.same-preference', 'error', 'mx1.test')

    def test_extreme_ttl(self):
        out = self.check('ttl.test', code=1)
        self.assert_finding(out, 'mx.ttl', 'warn', 'mx1.test')
        self.assertEqual(out['mx'][0]['ttl'], 30)

    def test_unreachable_primary(self):
        self.assert_finding(self.check('deadprim.test', code=2), 'primary.unreachable', 'error', 'dead.test')

    def test_no_mx_is_this_host(self):
        self.assert_finding(self.check('notself.test', code=2), 'backup.not-self', 'error')

    def test_backup_name_resolves_elsewhere(self):
        self.assert_finding(self.check('wrongaddr.test', code=2), 'backup.address', 'error', 'mx2.wrongaddr.test')

    def test_tlsa_on_primary_only(self):
        self.assert_finding(self.check('tlsa.test', code=1), 'tlsa.backup', 'warn', 'backup.test')

    def test_mta_sts_policy_misses_backup(self):
        web = fwdlib.PolicyServer(*self.ca.leaf('mta-sts.sts.test'), policy(mx=('mx1.test',)))
        self.addCleanup(web.stop)
        out = self.check('sts.test', code=2)
        self.assert_finding(out, 'mta-sts.backup', 'error', 'backup.test')
        self.assertEqual(web.count(), 1)
        web.policy = policy(mx=('mx1.test', '*.test'))
        self.check('sts.test', code=0)

    def test_bad_usage(self):
        self.assertEqual(mxv.run_cli('check').returncode, 64)
        self.assertEqual(mxv.run_cli('check', 'a..b').returncode, 64)
        self.assertEqual(mxv.run_cli('check', 'x.test', '--port', '0').returncode, 64)

    # --- --probe, against live peers --------------------------------------

    def test_probe_clean(self):
        with self.backup() as d:
            out = self.check('clean.test', '--probe', '-c', d.conf, conf=False, code=0)
        for host in ('mx1.test', 'backup.test'):
            self.assert_finding(out, 'smtp.banner', 'ok', host)
            self.assert_finding(out, 'tls.ok', 'ok', host)
            self.assert_finding(out, 'smtp.relay-refused', 'ok', host)
            self.assert_finding(out, 'rdns.ok', 'ok', host)
        self.assert_finding(out, 'backup.rcpt-parity', 'ok', 'backup.test')
        # RCPTs only: nothing was sent, nothing queued.
        self.assertEqual(self.primary.deliveries(), [])

    def test_probe_text_output(self):
        with self.backup() as d:
            p = mxv.run_cli('check', 'clean.test', '--probe', '--timeout', '5', '-c', d.conf, timeout=CHECK_TIMEOUT)
        self.assertEqual(p.returncode, 0, p.stdout)
        self.assertRegex(p.stdout, r'(?m)^10 +3600 +primary +mx1\.test +127\.0\.0\.2$')
        self.assertRegex(p.stdout, r'(?m)^ok +backup\.rcpt-parity +backup\.test ')
        self.assertRegex(p.stdout, r'(?m)^\d+ ok, 0 warnings, 0 errors: exit 0$')

    def test_probe_self_signed_backup(self):
        with self.backup(cert=False) as d:
            out = self.check('clean.test', '--probe', '-c', d.conf, conf=False, code=1)
        self.assert_finding(out, 'tls.cert', 'warn', 'backup.test')
        self.assert_finding(out, 'tls.ok', 'ok', 'mx1.test')

    def test_probe_mta_sts_backup_certificate(self):
        # The policy covers the backup, but the backup shows its self-signed certificate.
        web = fwdlib.PolicyServer(*self.ca.leaf('mta-sts.sts.test'), policy(mx=('mx1.test', 'backup.test')))
        self.addCleanup(web.stop)
        with self.backup(domain='sts.test', cert=False) as d:
            out = self.check('sts.test', '--probe', '-c', d.conf, conf=False, code=2)
        self.assert_finding(out, 'mta-sts.backup-cert', 'error', 'backup.test')

    def test_probe_rcpt_parity(self):
        with self.backup(recipients='*', domain='parity.test') as d:
            out = self.check('parity.test', '--probe', '-c', d.conf, conf=False, code=2)
        self.assert_finding(out, 'backup.rcpt-parity', 'error', 'backup.test')

    def test_probe_open_relay(self):
        relay = Primary('127.0.0.7', PORT, 'relay-mx.test')  # accepts every recipient
        relay.start()
        self.addCleanup(relay.stop)
        out = self.check('relay.test', '--probe', conf=False, code=2)
        self.assert_finding(out, 'smtp.open-relay', 'error', 'relay-mx.test')
        self.assertEqual(relay.deliveries(), [])

    def test_probe_hostile_peers_are_bounded(self):
        # A banner of 100 kB without a line end; an EHLO reply that never ends.
        with hostile.Peer([('127.0.0.8', PORT)], hostile.garbage_greeting(100000)), \
                hostile.Peer([('127.0.0.9', PORT)], hostile.endless_multiline()):
            out = self.check('hostile.test', '--probe', conf=False, code=2)
            self.assert_finding(out, 'smtp.banner', 'error', 'evil.test')
            self.assertIn('longer than', ' '.join(f['message'] for f in out['findings'] if f['host'] == 'evil.test'))
            out = self.check('hostile2.test', '--probe', conf=False)
            self.assert_finding(out, 'smtp.ehlo', 'warn', 'evil2.test')

    def test_probe_failed_tls_handshake(self):
        # STARTTLS offered and accepted with 220, then no TLS at all.
        script = hostile.smtp(EHLO=['250-evil3.test', '250 STARTTLS'], STARTTLS='220 2.0.0 go ahead')
        with hostile.Peer([('127.0.0.10', PORT)], script):
            out = self.check('hostile3.test', '--probe', conf=False, code=2)
        self.assert_finding(out, 'tls.handshake', 'error', 'evil3.test')

    def test_probe_connection_lost_at_starttls(self):
        # STARTTLS offered, then a reset: the STARTTLS command cannot be sent, or gets no reply.
        # The finding says so; it once quoted a reply that never came (an uninitialised one).
        script = hostile.smtp(EHLO=['250-evil4.test', '250 STARTTLS', hostile.RESET])
        with hostile.Peer([('127.0.0.11', PORT)], script):
            out = self.check('hostile4.test', '--probe', conf=False, code=2)
        self.assert_finding(out, 'tls.handshake', 'error', 'evil4.test')
        msg = ' '.join(f['message'] for f in out['findings'] if f['id'] == 'tls.handshake')
        self.assertIn('STARTTLS:', msg)
        self.assertNotIn('refused', msg)

    def test_probe_reply_injected_before_tls_is_not_taken_for_one_inside(self):
        # A reply sent in clear after STARTTLS's 220, before the handshake (as a man in the middle
        # would inject it) must not pass for the reply to the EHLO said inside TLS.
        cert, key = self.ca.leaf('evil5.test')
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)

        async def starttls(conn):
            await conn.send('220 2.0.0 go ahead\r\n250 injected.test\r\n')
            await conn.writer.start_tls(ctx)
        script = hostile.smtp(EHLO=['250-evil5.test', '250 STARTTLS'], STARTTLS=starttls)
        with hostile.Peer([('127.0.0.12', PORT)], script):
            out = self.check('hostile5.test', '--probe', conf=False, code=2)
        self.assertNotIn('injected.test', json.dumps(out['findings']))
        self.assert_finding(out, 'tls.handshake', 'error', 'evil5.test')

    def test_probe_many_silent_hosts_cost_a_bounded_time(self):
        # 15 primaries, each accepting and never greeting: 1 s each to reach, 1 s each to probe,
        # one after the other, but the SMTP part has 12 times --timeout in all.
        with hostile.Peer([('127.0.0.%d' % (20 + i), PORT) for i in range(SILENT)], hostile.silent()):
            t = time.monotonic()
            out = self.check('slow.test', '--probe', '--timeout', '1', conf=False)
            took = time.monotonic() - t
        self.assert_finding(out, 'check.time', 'warn')
        self.assertLess(took, 20, json.dumps(out['findings'], indent=1))


if __name__ == '__main__':
    unittest.main()
