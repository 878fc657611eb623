"""End-to-end tests of the forward side: mxvault hands queued mail to the
primary servers, on loopback, with real peers only.

  DNS        unbound (fwdlib.Unbound) serving the zone "test.";
             mxvault's [server] resolver points at it
  primaries  aiosmtpd servers (fwdlib.Primary) on 127.0.0.2, .3, .4, all on
             one port (mx_port): they record every transaction and answer
             4xx/5xx per recipient when told to
  senders    the sender domain sender.test has its MX (mxs.test, 127.0.0.9)
             running a recording server too: DSNs from mxvault land there

What is asserted is what a user sees: which server got which recipient and
how often, the DSNs the sender received (parsed as RFC 3464 reports), the
states `queue list --json` shows, and the log lines an operator reads
("mail-loop", "bounce-guard=on", "is back; flushing", "possible-duplicate").
Every wait has a deadline. Timings printed with "figure:" are for the
record (recovery time, drain behaviour).

Tests: 1 recovery after an outage (and no connection storm while down),
2 MX preferences, 3 mail loops (best MX is us), 4 equal preferences, 5
per-recipient 4xx/5xx and the DSN (Remote-MTA is a host name), 6 DNS
failures (no server, timeouts, REFUSED), 7 implicit MX, null MX, NXDOMAIN,
8 delay notice (its Will-Retry-Until) and expiry, 9 kill -9 mid-drain, 10
bounce guard (and what it holds flows the moment it lets go), 11 outbound
TLS (may, encrypt, verify; the TLS version in the log), 12 hop limit, 13
deduplication of a resent message, 14 line ends normalised on the way out.
Hostile next hops are in test_hostile_out.py.

retention cannot be set below 1m, so the expiry test takes about 65 s.
Run with /usr/bin/python3 (python3-aiosmtpd); a sanitizer report in a
daemon's log fails the test with the report.
"""
import calendar
import email.utils
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fwdlib  # noqa: E402
import mxv  # noqa: E402
from fwdlib import Primary, Unbound, fwd_daemon, parse_dsn, send  # noqa: E402

PROBE = 1.0       # probe_interval in seconds (fwd_daemon's default)
RETRY_MAX = 4.0   # retry_max
SLACK = 1.5       # scheduling, DNS and process slack on loopback (ASan included)
SENDER = 'alice@sender.test'

BASE_ZONE = [
    'backup.test. IN A 127.0.0.1',           # mxvault's own hostname
    'sender.test. IN MX 10 mxs.test.',       # where DSNs go
    'mxs.test. IN A 127.0.0.9',
    'primary.test. IN MX 10 mx1.test.',
    'mx1.test. IN A 127.0.0.2',
]


def log_time(stamp):
    """Seconds since the epoch of a log line's timestamp (2026-11-22T18:54:00.826Z)."""
    date, frac = stamp.rstrip('Z').split('.')
    return calendar.timegm(time.strptime(date, '%Y-%m-%dT%H:%M:%S')) + int(frac) / 1000.0


def have_tools():
    return fwdlib.Controller is not None and os.access(fwdlib.UNBOUND, os.X_OK)


@unittest.skipUnless(have_tools(), 'needs unbound and python3-aiosmtpd (run with /usr/bin/python3)')
class ForwardBase(unittest.TestCase):
    zone = []        # records added to BASE_ZONE
    refuse = []
    drop = []        # zones whose queries are never answered
    redirect = []    # zones where every name answers like the zone's own name

    def setUp(self):
        self.reports = []
        self.addCleanup(self.check_sanitizer_reports)
        self.mx_port = mxv.free_port()
        self.dns = Unbound(BASE_ZONE + self.zone, refuse=self.refuse, redirect=self.redirect, drop=self.drop)
        self.addCleanup(self.dns.cleanup)
        self.dns.start()
        self.sender_mx = self.server('127.0.0.9', 'mxs.test', start=True)

    def server(self, host, name, start=False, **kw):
        p = Primary(host, self.mx_port, name, **kw)
        self.addCleanup(p.stop)
        return p.start() if start else p

    def daemon(self, domains, **server):
        return self.watch(fwd_daemon(self.dns, self.mx_port, domains, **server))

    def watch(self, d):
        """Keeps a sanitizer report from d's log before its directory goes:
        a daemon that died of one makes the test time out, and the report
        is the real failure."""
        cleanup = d.cleanup

        def keep_report():
            text = d.log_text()
            at = min((text.find(m) for m in mxv.SANITIZER_MARKERS if m in text), default=-1)
            if at >= 0:
                start = text.rfind('\n', 0, max(0, text.rfind('\n', 0, at))) + 1
                self.reports.append('\n'.join(text[start:].splitlines()[:40]))
            cleanup()
        d.cleanup = keep_report
        return d

    def check_sanitizer_reports(self):
        if self.reports:
            self.fail('sanitizer report in the daemon log:\n' + '\n----\n'.join(self.reports))

    # --- assertions ---------------------------------------------------

    def assertQueueStates(self, d, allowed, n=None):
        q = d.queue()
        if n is not None:
            self.assertEqual(len(q), n, q)
        for m in q:
            for r in m['recipients']:
                self.assertIn(r['state'], allowed, m)
        return q

    def assertNoDsn(self, d):
        self.assertEqual(self.sender_mx.dsns(), [], 'the sender got DSNs')
        self.assertNotIn('dsn-for=', d.log_text(), 'a DSN was queued')

    def wait_dsns(self, n, timeout):
        return mxv.wait_until(lambda: len(self.sender_mx.dsns()) >= n and self.sender_mx.dsns(), timeout,
                              '%d DSN(s) at the sender domain MX (have %d)' % (n, len(self.sender_mx.dsns())))

    def wait_log_count(self, d, regex, n, timeout, what=None):
        rx = re.compile(regex, re.M)
        return mxv.wait_until(lambda: len(rx.findall(d.log_text())) >= n, timeout,
                              what or '%d log lines /%s/' % (n, regex))

    def assertOnce(self, primary, rcpts):
        counts = primary.rcpt_counts()
        for r in rcpts:
            self.assertEqual(counts[r.lower()], 1, '%s delivered %d times' % (r, counts[r.lower()]))


class TestRecovery(ForwardBase):
    """1. Primary down: mail is queued; it comes up: everything goes at once."""

    def test_primary_down_then_up(self):
        p = self.server('127.0.0.2', 'mx1.test')
        with self.daemon({'primary.test': {}}) as d:
            want = []
            for i in range(10):
                rcpts = ['u%d@primary.test' % i] + (['v%d@primary.test' % i] if i % 2 == 0 else [])
                send(d, SENDER, rcpts)
                want += rcpts
            d.wait_log(r'delivery: dest=primary\.test deferred=', timeout=10)
            self.assertQueueStates(d, {'queued', 'deferred'}, n=10)
            # A couple of failed probes, so the outage is a steady state.
            self.wait_log_count(d, r'peer=mx1\.test\[127\.0\.0\.2\]:\d+ failed', 3, timeout=10)
            # The queue says why it holds the mail.
            rcpts = [r for m in d.queue() for r in m['recipients']]
            self.assertEqual({r['state'] for r in rcpts}, {'deferred'})
            for r in rcpts:
                self.assertRegex(r.get('reply', ''), r'^451 4\.4\.1 .*refused', r)

            t0 = time.monotonic()
            p.start()
            mxv.wait_until(lambda: sum(p.rcpt_counts().values()) >= len(want), 2 * PROBE + SLACK + 10,
                           'all %d recipients at the primary' % len(want))
            times = [dl.t - t0 for dl in p.deliveries()]
            first, last = min(times), max(times)
            print('\nfigure: recovery: first delivery %.3fs after the primary started, all %d recipients by %.3fs '
                  '(probe_interval %gs)' % (first, len(want), last, PROBE))
            self.assertLessEqual(last, 2 * PROBE + SLACK, 'not everything delivered within two probe intervals')
            self.assertOnce(p, want)
            self.assertEqual(sorted(p.rcpt_counts()), sorted(w.lower() for w in want))
            d.wait_queue(0, timeout=10)
            self.assertRegex(d.log_text(), r'delivery: dest=primary\.test is back; flushing')
            self.assertNoDsn(d)

    def test_down_primary_not_hammered(self):
        """While the primary is down: about one attempt per probe interval or
        retry, not a connection (and a DNS lookup) per event-loop turn."""
        with self.daemon({'primary.test': {}}) as d:
            send(d, SENDER, 'h@primary.test')
            m = d.wait_log(r'^(\S+) delivery: dest=primary\.test deferred=', timeout=10)
            t0 = log_time(m.group(1))
            window = 5.0
            rx = re.compile(r'^(\S+) delivery: peer=mx1\.test\S* failed', re.M)
            mxv.wait_until(lambda: any(log_time(t) > t0 + window for t in rx.findall(d.log_text())),
                           window + 5, 'a failed attempt after the %gs window' % window)
            n = sum(1 for t in rx.findall(d.log_text()) if t0 < log_time(t) <= t0 + window)
            q = self.dns.queries('primary.test', 'MX')
            print('\nfigure: while down: %d connection attempts in %gs, %d MX lookups in all' % (n, window, q))
            # probes (1/s) plus backoff retries (1, 2, 4 s; up to 4 connections each)
            self.assertLessEqual(n, 25, 'connection storm against a down primary: %d attempts in %gs' % (n, window))
            d.stop()
            self.assertLessEqual(self.dns.queries('primary.test', 'MX'), 60, 'DNS storm')


class TestMxPreference(ForwardBase):
    """2. Only MX hosts more preferred than us; never a less preferred one, never ourselves."""
    zone = ['prefs.test. IN MX 10 mx1.test.',
            'prefs.test. IN MX 20 backup.test.',
            'prefs.test. IN MX 30 mx3.test.',
            'mx3.test. IN A 127.0.0.3']

    def test_preferences(self):
        mx1 = self.server('127.0.0.2', 'mx1.test', start=True)
        mx3 = self.server('127.0.0.3', 'mx3.test', start=True)
        # backup.test (127.0.0.1) on mx_port: where mxvault would land if it
        # "delivered" to the pref-20 host, i.e. itself.
        selfish = self.server('127.0.0.1', 'backup.test', start=True)
        with self.daemon({'prefs.test': {}}) as d:
            first = ['a%d@prefs.test' % i for i in range(5)]
            for r in first:
                send(d, SENDER, r)
            mxv.wait_until(lambda: sum(mx1.rcpt_counts().values()) >= 5, 10, '5 deliveries to mx1')
            self.assertOnce(mx1, first)
            d.wait_queue(0)

            mx1.stop()
            later = ['b%d@prefs.test' % i for i in range(3)]
            for r in later:
                send(d, SENDER, r)
            d.wait_log(r'delivery: dest=prefs\.test deferred=', timeout=10)
            n0 = len(re.findall(r'peer=mx1\.test\S* failed', d.log_text()))
            # Several probes of mx1 go by; mail waits for it.
            self.wait_log_count(d, r'peer=mx1\.test\S* failed', n0 + 3, timeout=10)
            self.assertQueueStates(d, {'queued', 'deferred'}, n=3)
            self.assertEqual(mx3.ehlos, 0, 'mxvault talked to the less preferred mx3')
            self.assertEqual(selfish.ehlos, 0, 'mxvault talked to its own MX entry')
            self.assertEqual(mx3.deliveries(), [])
            self.assertNotRegex(d.log_text(), r'relay=(mx3|backup)\.test')

            mx1.start()
            mxv.wait_until(lambda: sum(mx1.rcpt_counts().values()) >= 8, 2 * PROBE + SLACK + 5,
                           '3 more deliveries to mx1')
            self.assertOnce(mx1, first + later)
            d.wait_queue(0)
            self.assertEqual(mx3.ehlos + selfish.ehlos, 0)
            self.assertNoDsn(d)


class TestMailLoop(ForwardBase):
    """3. We are the best MX: by hostname, by also_known_as, by listen address+port."""
    zone = ['loop.test. IN MX 10 backup.test.',
            'aka.test. IN MX 5 other-name.test.',
            'other-name.test. IN A 127.0.0.77',
            'loopaddr.test. IN MX 10 me.test.',
            'me.test. IN A 127.0.0.1']

    def setUp(self):
        self.reports = []  # the MX port is the daemon's own port: set up in the test
        self.addCleanup(self.check_sanitizer_reports)

    def test_best_mx_is_us(self):
        self.dns = Unbound(BASE_ZONE + self.zone)
        self.addCleanup(self.dns.cleanup)
        self.dns.start()
        d = self.watch(fwd_daemon(self.dns, 0, {'loop.test': {}, 'aka.test': {}, 'loopaddr.test': {}},
                                  also_known_as='other-name.test'))
        # Every MX host is tried on mx_port; make that our own listening port,
        # so me.test (127.0.0.1) is exactly our listen address and port.
        self.mx_port = d.port
        d.server['mx_port'] = d.port
        d.write_config()
        self.sender_mx = self.server('127.0.0.9', 'mxs.test', start=True)
        with d:
            for dom in ('loop.test', 'aka.test', 'loopaddr.test'):
                send(d, SENDER, 'x@' + dom)
            for dom in ('loop', 'aka', 'loopaddr'):
                # logged at the first attempt and at every probe after it
                self.wait_log_count(d, r'delivery: (?:error: )?dest=%s\.test mail-loop' % dom, 3, timeout=15)
            self.assertQueueStates(d, {'queued', 'deferred'}, n=3)
            self.assertNotRegex(d.log_text(), r'status=(sent|bounced)')
            # The only SMTP sessions mxvault saw are ours: the start-up probe
            # and three submissions. A connection to itself would be a fifth.
            sessions = re.findall(r'smtpd: session=\d+ client=\S+ connect', d.log_text())
            self.assertEqual(len(sessions), 4, sessions)
            self.assertNoDsn(d)


class TestEqualPreference(ForwardBase):
    """4. Equal preferences share the load (random order per connection)."""
    zone = ['equal.test. IN MX 10 mxa.test.',
            'equal.test. IN MX 10 mxb.test.',
            'mxa.test. IN A 127.0.0.2',
            'mxb.test. IN A 127.0.0.4']

    def test_equal_preferences(self):
        a = self.server('127.0.0.2', 'mxa.test', start=True)
        b = self.server('127.0.0.4', 'mxb.test', start=True)
        with self.daemon({'equal.test': {}}) as d:
            rcpts = ['e%02d@equal.test' % i for i in range(20)]
            for i, r in enumerate(rcpts):
                send(d, SENDER, r)
                # Wait for it (and for its connection's QUIT), so the next one
                # opens a fresh connection with a fresh random order.
                mxv.wait_until(lambda: len(a.deliveries()) + len(b.deliveries()) >= i + 1, 10,
                               'delivery of %s' % r)
                d.wait_log(r'to=<%s> relay=\S+ code=250' % r)
            na, nb = len(a.deliveries()), len(b.deliveries())
            print('\nfigure: equal preference split: mxa %d, mxb %d' % (na, nb))
            self.assertEqual(na + nb, 20)
            self.assertGreater(na, 0, 'mxa got nothing')
            self.assertGreater(nb, 0, 'mxb got nothing')
            total = a.rcpt_counts() + b.rcpt_counts()
            self.assertEqual(set(total), set(rcpts))
            self.assertEqual(set(total.values()), {1})
            d.wait_queue(0)


class TestPerRecipient(ForwardBase):
    """5. 2xx, 4xx and 5xx for recipients of one message."""

    def run_case(self, pipelining):
        state = {'tmp_ok': False}

        def rule(addr):
            local = addr.split('@')[0].lower()
            if local == 'tmp' and not state['tmp_ok']:
                return '450 4.2.1 Mailbox busy, try later'
            if local == 'bad':
                return '550 5.1.1 No such user here'
            return None
        p = self.server('127.0.0.2', 'mx1.test', start=True, pipelining=pipelining, rcpt_reply=rule)
        with self.daemon({'primary.test': {}}) as d:
            rcpts = ['good1@primary.test', 'tmp@primary.test', 'bad@primary.test', 'good2@primary.test']
            qid = send(d, SENDER, rcpts)
            mxv.wait_until(lambda: p.rcpt_counts()['good2@primary.test'], 10, 'the good recipients')
            dsns = self.wait_dsns(1, 2 * RETRY_MAX + SLACK + 5)
            self.assertEqual(len(dsns), 1)
            dsn = dsns[0]
            self.assertEqual(dsn.rcpt_tos, [SENDER])
            rep = parse_dsn(dsn.data)
            self.assertEqual(rep['content_type'], 'multipart/report')
            self.assertEqual(rep['report_type'], 'delivery-status')
            self.assertEqual(len(rep['rcpts']), 1, rep['text'])
            blk = rep['rcpts'][0]
            self.assertEqual(blk.get('action'), 'failed', blk)
            self.assertRegex(blk.get('status', ''), r'^5\.\d{1,3}\.\d{1,3}$')
            self.assertEqual(blk.get('status'), '5.1.1')
            self.assertEqual(blk.get('final-recipient', '').replace(' ', '').lower(), 'rfc822;bad@primary.test')
            self.assertIn('No such user here', blk.get('diagnostic-code', ''))
            # RFC 3464 2.3.5: the "dns" type takes a host name, nothing else.
            self.assertEqual(blk.get('remote-mta'), 'dns; mx1.test')

            # tmp@ stays queued (deferred) and is retried
            q = self.assertQueueStates(d, {'delivered', 'bounced', 'deferred'}, n=1)
            self.assertEqual(q[0]['id'], qid)
            self.assertEqual(fwdlib.rcpt_states(q), {'good1@primary.test': 'delivered',
                                                     'tmp@primary.test': 'deferred',
                                                     'bad@primary.test': 'bounced',
                                                     'good2@primary.test': 'delivered'})
            mxv.wait_until(lambda: sum(1 for a, _ in p.rcpt_replies if a.startswith('tmp@')) >= 3,
                           3 * RETRY_MAX + SLACK, 'retries of tmp@')
            state['tmp_ok'] = True
            mxv.wait_until(lambda: p.rcpt_counts()['tmp@primary.test'], RETRY_MAX + SLACK + 2, 'tmp@ delivered')
            d.wait_queue(0)
            self.assertOnce(p, ['good1@primary.test', 'tmp@primary.test', 'good2@primary.test'])
            self.assertEqual(p.rcpt_counts()['bad@primary.test'], 0)
            self.assertEqual(len(self.sender_mx.dsns()), 1, 'more than one DSN')
            self.assertEqual(len(re.findall('dsn-for=', d.log_text())), 1)

    def test_per_recipient_no_pipelining(self):
        self.run_case(pipelining=False)

    def test_per_recipient_pipelining(self):
        self.run_case(pipelining=True)


class TestDnsFailure(ForwardBase):
    """6. DNS trouble is temporary: mail waits, no DSN; DNS back: delivered."""

    def check_waits_then_delivers(self, d, rcpt, fix, queries):
        send(d, SENDER, rcpt)
        d.wait_log(r'delivery: dest=primary\.test deferred=', timeout=15)
        if queries:
            # several attempts (the first and probes) go by while DNS fails
            mxv.wait_until(lambda: queries() >= 3, 4 * RETRY_MAX + 10, '3 MX queries (have %d)' % queries())
        self.assertQueueStates(d, {'queued', 'deferred'}, n=1)
        self.assertEqual(self.primary.deliveries(), [])
        self.assertNotRegex(d.log_text(), r'status=bounced')
        fix()
        mxv.wait_until(lambda: self.primary.rcpt_counts()[rcpt], 3 * RETRY_MAX + SLACK + 5,
                       'delivery after DNS came back')
        d.wait_queue(0)
        self.assertOnce(self.primary, [rcpt])
        self.assertNoDsn(d)

    def dns_on(self, port, **kw):
        u = Unbound(BASE_ZONE, port=port, **kw)
        self.addCleanup(u.cleanup)
        return u.start()

    def test_resolver_not_listening(self):
        self.primary = self.server('127.0.0.2', 'mx1.test', start=True)
        dead = mxv.free_port()  # nothing listens there (ICMP port unreachable)
        with self.watch(fwd_daemon('127.0.0.1:%d' % dead, self.mx_port, {'primary.test': {}})) as d:
            self.check_waits_then_delivers(d, 'dns1@primary.test', lambda: self.dns_on(dead), None)

    def test_resolver_timeout(self):
        self.primary = self.server('127.0.0.2', 'mx1.test', start=True)
        port = mxv.free_port()
        hole = fwdlib.UdpBlackhole(port)  # swallows queries: every lookup times out
        self.addCleanup(hole.stop)

        def fix():
            hole.stop()
            self.dns_on(port)
        with self.watch(fwd_daemon('127.0.0.1:%d' % port, self.mx_port, {'primary.test': {}})) as d:
            self.check_waits_then_delivers(d, 'dns2@primary.test', fix, lambda: hole.count)

    def test_refused(self):
        self.primary = self.server('127.0.0.2', 'mx1.test', start=True)
        self.dns.stop()
        refusing = self.dns_on(self.dns.port, refuse=['primary.test.'])

        def fix():
            refusing.stop()
            self.dns_on(self.dns.port)
        with self.daemon({'primary.test': {}}) as d:
            self.check_waits_then_delivers(d, 'dns3@primary.test', fix,
                                           lambda: refusing.queries('primary.test', 'MX'))


class TestImplicitAndNullMx(ForwardBase):
    """7. No MX: the domain's own address. Null MX: a permanent 5.1.10."""
    zone = ['implicit.test. IN A 127.0.0.2',
            'nullmx.test. IN MX 0 .']

    def test_implicit_mx(self):
        p = self.server('127.0.0.2', 'implicit.test', start=True)
        with self.daemon({'implicit.test': {}}) as d:
            send(d, SENDER, 'imp@implicit.test')
            mxv.wait_until(lambda: p.rcpt_counts()['imp@implicit.test'], 10, 'delivery to the A record')
            d.wait_queue(0)
            self.assertRegex(d.log_text(), r'to=<imp@implicit\.test> relay=implicit\.test\[127\.0\.0\.2\]')
            self.assertNoDsn(d)

    def test_null_mx(self):
        with self.daemon({'nullmx.test': {}}) as d:
            send(d, SENDER, 'nobody@nullmx.test')
            dsn = self.wait_dsns(1, 10)[0]
            rep = parse_dsn(dsn.data)
            self.assertEqual(rep['content_type'], 'multipart/report')
            self.assertEqual(len(rep['rcpts']), 1, rep['text'])
            self.assertEqual(rep['rcpts'][0].get('action'), 'failed')
            self.assertEqual(rep['rcpts'][0].get('status'), '5.1.10')
            self.assertEqual(rep['rcpts'][0].get('final-recipient', '').replace(' ', '').lower(),
                             'rfc822;nobody@nullmx.test')
            d.wait_queue(0)
            self.assertRegex(d.log_text(), r'to=<nobody@nullmx\.test> relay=\S+ code=556 status=bounced')

    def test_nxdomain(self):
        # not in the brief; cheap: an authoritative "no such domain" bounces 5.1.2
        with self.daemon({'nosuch.test': {}}) as d:
            send(d, SENDER, 'x@nosuch.test')
            dsn = self.wait_dsns(1, 10)[0]
            rep = parse_dsn(dsn.data)
            self.assertEqual(rep['rcpts'][0].get('action'), 'failed')
            self.assertEqual(rep['rcpts'][0].get('status'), '5.1.2')
            d.wait_queue(0)


class TestUnmetExtension(ForwardBase):
    """A message that needs SMTPUTF8 is bounced (5.6.7), never sent to a next hop without it."""
    zone = ['primary.test. IN MX 10 mx1.test.', 'mx1.test. IN A 127.0.0.2']

    def test_smtputf8_required(self):
        p = self.server('127.0.0.2', 'mx1.test', start=True, smtputf8=False)
        with self.daemon({'primary.test': {}}) as d:
            s = d.smtp(timeout=30)
            s.ehlo()
            self.assertEqual(s.mail(SENDER, ['SMTPUTF8'])[0], 250)
            self.assertEqual(s.rcpt('j\u00fcrgen@primary.test')[0], 250)
            code, text = s.data('Subject: gr\u00fc\u00dfe\r\n\r\nhallo\r\n'.encode('utf-8'))
            self.assertEqual(code, 250, text)
            s.quit()
            dsn = self.wait_dsns(1, 15)[0]
            rep = parse_dsn(dsn.data)
            self.assertEqual(rep['rcpts'][0].get('action'), 'failed')
            self.assertEqual(rep['rcpts'][0].get('status'), '5.6.7')
            d.wait_queue(0)
            self.assertEqual(sum(p.rcpt_counts().values()), 0, 'sent to a next hop without SMTPUTF8')


class TestExpiry(ForwardBase):
    """8. A delay warning, then a failure at expiry (4.4.7); never a DSN for <>."""
    zone = ['expire.test. IN MX 10 mx1.test.']
    RETENTION = 60  # the configured minimum (1m)

    def test_expiry(self):
        with self.daemon({'expire.test': {'retention': '%ds' % self.RETENTION, 'warn_after': '2s'}}) as d:
            t0 = time.monotonic()
            qid = send(d, SENDER, 'late@expire.test')
            nullid = send(d, '', 'bounce@expire.test')
            delayed = self.wait_dsns(1, 2 + SLACK + 3)
            self.assertEqual(len(delayed), 1)
            rep = parse_dsn(delayed[0].data)
            self.assertEqual(delayed[0].rcpt_tos, [SENDER])
            self.assertEqual(rep['content_type'], 'multipart/report')
            self.assertEqual([b.get('action') for b in rep['rcpts']], ['delayed'], rep['text'])
            self.assertRegex(rep['rcpts'][0].get('status', ''), r'^4\.')
            self.assertEqual(rep['rcpts'][0].get('final-recipient', '').replace(' ', '').lower(),
                             'rfc822;late@expire.test')
            self.assertQueueStates(d, {'queued', 'deferred'}, n=2)

            both = self.wait_dsns(2, self.RETENTION + SLACK + 10)
            t_fail = time.monotonic() - t0
            print('\nfigure: expiry: failure DSN %.1fs after submission (retention %ds)' % (t_fail, self.RETENTION))
            self.assertGreaterEqual(t_fail, self.RETENTION - 1, 'bounced before retention ran out')
            rep = parse_dsn(both[1].data)
            self.assertEqual([b.get('action') for b in rep['rcpts']], ['failed'], rep['text'])
            self.assertEqual(rep['rcpts'][0].get('status'), '4.4.7')
            d.wait_queue(0, timeout=10)
            # nothing more: one delay notice, one failure, none for the <> message
            log = d.log_text()
            self.assertEqual(len(re.findall(r'dsn-for=%s' % qid, log)), 2, log)
            self.assertNotIn('dsn-for=%s' % nullid, log)
            self.assertEqual(len(re.findall('dsn-for=', log)), 2)
            self.assertEqual(len(self.sender_mx.dsns()), 2)
            self.assertRegex(log, r'id=%s to=<bounce@expire\.test> status=expired' % nullid)


class TestDelayNotice(ForwardBase):
    """The delay DSN says until when delivery is tried: arrival + retention, to the second."""
    zone = ['expire.test. IN MX 10 mx1.test.']

    def test_will_retry_until(self):
        with self.daemon({'expire.test': {'retention': '2h', 'warn_after': '1s'}}) as d:
            send(d, SENDER, 'slow@expire.test')
            dsn = self.wait_dsns(1, 1 + SLACK + 5)[0]
            rep = parse_dsn(dsn.data)
            self.assertEqual([b.get('action') for b in rep['rcpts']], ['delayed'], rep['text'])
            arrival = email.utils.parsedate_to_datetime(rep['message']['arrival-date'])
            until = email.utils.parsedate_to_datetime(rep['rcpts'][0]['will-retry-until'])
            print('\nfigure: delay notice: Arrival-Date %s, Will-Retry-Until %s' % (arrival, until))
            self.assertEqual((until - arrival).total_seconds(), 2 * 3600, rep['text'])
            m = re.search(r'Delivery will be tried until ([^.]+)\.', ' '.join(rep['text'].split()))
            self.assertTrue(m, rep['text'])
            self.assertEqual(email.utils.parsedate_to_datetime(m.group(1)), until)  # the text says the same


class TestKillDuringDrain(ForwardBase):
    """9. kill -9 in the middle of a drain loses nothing; duplicates are logged."""
    N = 300

    def test_kill9_mid_drain(self):
        p = self.server('127.0.0.2', 'mx1.test')
        d = self.daemon({'primary.test': {}})
        with d:
            rcpts = ['k%03d@primary.test' % i for i in range(self.N)]
            with d.smtp(timeout=30) as s:
                for r in rcpts:
                    send(d, SENDER, r, s=s)
            d.wait_queue(self.N, timeout=30)
            d.wait_log(r'delivery: dest=primary\.test deferred=', timeout=10)

            killed = threading.Event()

            def hook(dl):
                # The 100th message reached the primary: kill mxvault before
                # it can read the 250 (the duplicate window D1, at its worst).
                if len(p.records) >= self.N // 3 and not killed.is_set():
                    killed.set()
                    os.kill(d.pid, signal.SIGKILL)
            p.data_hook = hook
            p.start()
            mxv.wait_until(killed.is_set, 2 * PROBE + SLACK + 10, 'a third of the queue delivered')
            d.proc.wait(10)
            d.kill9()
            at_kill = len(p.deliveries())
            p.data_hook = None
            d.start()
            mxv.wait_until(lambda: set(p.rcpt_counts()) >= set(rcpts), 60, 'every recipient delivered')
            d.wait_queue(0, timeout=30)
            counts = p.rcpt_counts()
            dups = sum(c - 1 for c in counts.values())
            flagged = len(re.findall('possible-duplicate', d.log_text()))
            print('\nfigure: kill -9 after %d of %d: duplicates %d, possible-duplicate log lines %d' %
                  (at_kill, self.N, dups, flagged))
            self.assertEqual(set(counts), set(rcpts))
            self.assertLessEqual(dups, flagged, 'unannounced duplicates: %s' %
                                 sorted(r for r, c in counts.items() if c > 1))


class TestBounceGuard(ForwardBase):
    """10. A primary that comes back refusing everything causes no DSN storm."""

    def test_bounce_guard(self):
        refuse = {'on': True}
        p = self.server('127.0.0.2', 'mx1.test',
                        rcpt_reply=lambda a: '550 5.1.1 User unknown (misconfigured)' if refuse['on'] else None)
        with self.daemon({'primary.test': {}}, bounce_guard='50%', bounce_guard_hold='1h') as d:
            rcpts = ['g%02d@primary.test' % i for i in range(12)]
            for r in rcpts:
                send(d, SENDER, r)
            d.wait_log(r'delivery: dest=primary\.test deferred=', timeout=10)
            p.start()
            d.wait_log(r'dest=primary\.test bounce-guard=on', timeout=2 * PROBE + SLACK + 5)
            # Let held mail be retried at least once while the guard is on.
            mxv.wait_until(lambda: len(p.rcpt_replies) >= len(rcpts) + 3, 2 * RETRY_MAX + SLACK,
                           'retries while the guard is on')
            self.assertEqual(self.sender_mx.dsns(), [], 'DSNs sent while the primary refuses everything')
            self.assertNotIn('dsn-for=', d.log_text())
            self.assertQueueStates(d, {'deferred'}, n=len(rcpts))
            self.assertNotRegex(d.log_text(), r'status=bounced')
            refuse['on'] = False
            mxv.wait_until(lambda: set(p.rcpt_counts()) >= set(rcpts), RETRY_MAX + SLACK + 5,
                           'everything delivered once the primary accepts')
            self.assertOnce(p, rcpts)
            d.wait_queue(0)
            self.assertNoDsn(d)


    def test_real_refusal_after_recovery_bounces_at_once(self):
        """A real 5xx among the first recipients after a recovery is held while they are judged,
        and bounced as soon as the judgement clears the primary, not at the message's next retry."""
        p = self.server('127.0.0.2', 'mx1.test',
                        rcpt_reply=lambda a: '550 5.1.1 No such user' if a.startswith('bad@') else None)
        with self.daemon({'primary.test': {}}, bounce_guard='50%', retry_min='1m', retry_max='1h') as d:
            good = ['ok%02d@primary.test' % i for i in range(11)]
            for r in ['bad@primary.test'] + good:
                send(d, SENDER, r)
            d.wait_log(r'delivery: dest=primary\.test deferred=', timeout=10)
            t0 = time.monotonic()
            p.start()
            mxv.wait_until(lambda: set(p.rcpt_counts()) >= set(good), 2 * PROBE + SLACK + 5, 'the good recipients')
            d.wait_log(r'to=<bad@primary\.test> relay=\S+ code=550 status=held')
            dsn = self.wait_dsns(1, 2 * PROBE + SLACK + 5)[0]  # retry_min is a minute away
            print('\nfigure: real refusal held in the guard window, bounced %.2fs after the primary came back' %
                  (time.monotonic() - t0))
            rep = parse_dsn(dsn.data)
            self.assertEqual([(b.get('action'), b.get('status')) for b in rep['rcpts']], [('failed', '5.1.1')])
            self.assertNotIn('bounce-guard=on', d.log_text())
            d.wait_queue(0)
            self.assertOnce(p, good)

    def test_guard_off_releases_held_mail_at_once(self):
        """Once the primary accepts mail again, everything the guard held goes at once."""
        refuse = {'on': True}
        p = self.server('127.0.0.2', 'mx1.test',
                        rcpt_reply=lambda a: '550 5.1.1 User unknown (misconfigured)' if refuse['on'] else None)
        with self.daemon({'primary.test': {}}, bounce_guard='50%', bounce_guard_hold='1h', retry_min='1m',
                         retry_max='1h') as d:
            held = ['h%02d@primary.test' % i for i in range(12)]
            for r in held:
                send(d, SENDER, r)
            d.wait_log(r'delivery: dest=primary\.test deferred=', timeout=10)
            p.start()
            d.wait_log(r'dest=primary\.test bounce-guard=on', timeout=2 * PROBE + SLACK + 5)
            mxv.wait_until(lambda: len(p.rcpt_replies) >= len(held), 10, 'every recipient refused once')
            d.wait_queue(len(held))
            refuse['on'] = False
            t0 = time.monotonic()
            send(d, SENDER, 'new@primary.test')  # a new message: accepted, so the primary works again
            d.wait_log(r'dest=primary\.test bounce-guard=off reason="the primary accepts mail again"', timeout=10)
            mxv.wait_until(lambda: set(p.rcpt_counts()) >= set(held), 5, 'the held mail, at once (retry_min is 1m)')
            print('\nfigure: bounce guard off: %d held recipients delivered %.2fs after the first acceptance' %
                  (len(held), time.monotonic() - t0))
            self.assertOnce(p, held + ['new@primary.test'])
            d.wait_queue(0)
            self.assertNoDsn(d)


class TestTls(ForwardBase):
    """11. Outbound STARTTLS: may, encrypt, verify."""

    def setUp(self):
        super().setUp()
        self.certdir = tempfile.mkdtemp(prefix='mxv-cert-')
        self.addCleanup(shutil.rmtree, self.certdir, True)
        self.cert, self.key = fwdlib.make_cert(self.certdir, 'mx1.test')

    def test_tls_may(self):
        p = self.server('127.0.0.2', 'mx1.test', start=True, tls=(self.cert, self.key))
        with self.daemon({'primary.test': {'tls': 'may'}}) as d:
            send(d, SENDER, 't1@primary.test')
            dl = p.wait_deliveries(1, 10)[0]
            self.assertTrue(dl.tls, 'delivered without TLS although STARTTLS was offered')
            d.wait_log(r'to=<t1@primary\.test> relay=\S+ code=250 status=sent tls=may-encrypted tls_version=TLSv1\.[23] ')
            d.wait_queue(0)

    def test_tls_may_without_starttls(self):
        p = self.server('127.0.0.2', 'mx1.test', start=True)
        with self.daemon({'primary.test': {'tls': 'may'}}) as d:
            send(d, SENDER, 't2@primary.test')
            dl = p.wait_deliveries(1, 10)[0]
            self.assertFalse(dl.tls)
            d.wait_log(r'to=<t2@primary\.test> relay=\S+ code=250 status=sent tls=none ')
            d.wait_queue(0)

    def test_tls_encrypt(self):
        plain = self.server('127.0.0.2', 'mx1.test', start=True)
        with self.daemon({'primary.test': {'tls': 'encrypt'}}) as d:
            send(d, SENDER, 't3@primary.test')
            d.wait_log(r'delivery: dest=primary\.test deferred=', timeout=10)
            self.wait_log_count(d, r'peer=mx1\.test\S* failed: 451 4\.7\.4 TLS is required', 2, timeout=10)
            self.assertEqual(plain.deliveries(), [], 'sent in clear although tls = encrypt')
            self.assertQueueStates(d, {'queued', 'deferred'}, n=1)
            plain.stop()
            p = self.server('127.0.0.2', 'mx1.test', start=True, tls=(self.cert, self.key))
            dl = p.wait_deliveries(1, 2 * RETRY_MAX + SLACK)[0]  # self-signed is fine for encrypt
            self.assertTrue(dl.tls)
            d.wait_queue(0)
            self.assertNoDsn(d)

    def test_tls_verify(self):
        p = self.server('127.0.0.2', 'mx1.test', start=True, tls=(self.cert, self.key))
        # The daemon must not trust the test certificate through the host's store.
        with fwdlib.env_set(SSL_CERT_FILE=os.path.join(self.certdir, 'none.pem'),
                            SSL_CERT_DIR=self.certdir + '/nodir'):
            d = self.daemon({'primary.test': {'tls': 'verify'}})
            d.start()
        try:
            send(d, SENDER, 't4@primary.test')
            d.wait_log(r'delivery: dest=primary\.test deferred=', timeout=10)
            self.wait_log_count(d, r'peer=mx1\.test\S* failed: 451 4\.7\.5 certificate verification failed', 2, timeout=10)
            self.assertEqual(p.deliveries(), [], 'delivered to an unverified server with tls = verify')
            self.assertQueueStates(d, {'queued', 'deferred'}, n=1)
            d.stop()
            with fwdlib.env_set(SSL_CERT_FILE=self.cert):
                d.start()
            dl = p.wait_deliveries(1, 2 * RETRY_MAX + SLACK)[0]
            self.assertTrue(dl.tls)
            self.assertEqual(dl.rcpt_tos, ['t4@primary.test'])
            d.wait_queue(0)
            self.assertNoDsn(d)
            d.stop()
        finally:
            d.cleanup()


class TestLineEnds(ForwardBase):
    """With reject_bare_lf = no a bare CR or LF is taken in; on the way out every line
    ends in CRLF, so no next hop can see an end of data we did not send."""

    def test_bare_cr_and_lf_normalised(self):
        p = self.server('127.0.0.2', 'mx1.test', start=True, raw=True)
        with self.daemon({'primary.test': {}}, reject_bare_lf='no') as d:
            with d.raw() as r:
                self.assertEqual(r.ehlo()[0], 250)
                self.assertEqual(r.cmd('MAIL FROM:<%s>' % SENDER)[0], 250)
                self.assertEqual(r.cmd('RCPT TO:<n@primary.test>')[0], 250)
                self.assertEqual(r.cmd('DATA')[0], 354)
                r.send(b'From: <alice@sender.test>\r\nSubject: line ends\r\n\r\n'
                       b'line1\r.\r\nMAIL FROM:<evil@sender.test>\r\nline3\nline4\r\n.\r\n')
                self.assertEqual(r.read_reply()[0], 250)
                r.cmd('QUIT')
            dl = p.wait_deliveries(1, 10)[0]
            d.wait_queue(0)
            sent = b''.join(p.raw())
            content = sent.split(b'\r\nDATA\r\n', 1)[1]
            content = content[:content.index(b'\r\n.\r\n') + 2]
            self.assertIn(b'line1\r\n..\r\nMAIL FROM:<evil@sender.test>\r\nline3\r\nline4\r\n', content)
            self.assertIsNone(re.search(rb'\r(?!\n)|(?<!\r)\n', content), 'a bare CR or LF went out: %r' % content)
            self.assertEqual(len(p.deliveries()), 1)
            self.assertEqual(dl.rcpt_tos, ['n@primary.test'])
            self.assertTrue(dl.data.endswith(b'line1\r\n.\r\nMAIL FROM:<evil@sender.test>\r\nline3\r\nline4\r\n'),
                            dl.data)


class TestHopsAndDedup(ForwardBase):
    """12. Hop limit on receive (554 5.4.6). 13. A resent message is delivered once."""

    @staticmethod
    def with_received(n, tag):
        hops = ''.join('Received: from h%d.test by h%d.test; Sun, 22 Nov 2026 10:00:00 +0000\r\n' % (i, i + 1)
                       for i in range(n))
        return (hops + 'From: <%s>\r\nTo: <hop@primary.test>\r\nSubject: %s\r\nMessage-ID: <%s.%d@client.test>\r\n'
                '\r\nhello\r\n' % (SENDER, tag, tag, time.monotonic_ns())).encode()

    def test_hop_limit(self):
        p = self.server('127.0.0.2', 'mx1.test', start=True)
        with self.daemon({'primary.test': {}}) as d:
            with d.smtp() as s:
                s.ehlo()
                self.assertEqual(s.mail(SENDER)[0], 250)
                self.assertEqual(s.rcpt('hop@primary.test')[0], 250)
                code, text = s.data(self.with_received(101, 'loop'))
                self.assertEqual(code, 554, text)
                self.assertTrue(text.startswith(b'5.4.6'), text)
            send(d, SENDER, 'hop@primary.test', self.with_received(99, 'ok'))
            dl = p.wait_deliveries(1, 10)[0]
            self.assertEqual(len(re.findall(rb'^Received:', dl.data, re.M)), 100)
            d.wait_queue(0)
            self.assertEqual(len(p.deliveries()), 1)

    def test_dedup(self):
        p = self.server('127.0.0.2', 'mx1.test')
        with self.daemon({'primary.test': {}}) as d:
            data = mxv.message(SENDER, 'once@primary.test', subject='resent')
            first = send(d, SENDER, 'once@primary.test', data)
            second = send(d, SENDER, 'once@primary.test', data)
            self.assertEqual(second, first, 'the copy was not recognised')
            self.assertEqual(len(d.queue()), 1)
            other = send(d, SENDER, ['once@primary.test', 'also@primary.test'], data)
            self.assertNotEqual(other, first, 'different recipients must not be deduplicated')
            p.start()
            mxv.wait_until(lambda: p.rcpt_counts()['also@primary.test'], 2 * PROBE + SLACK + 5, 'deliveries')
            d.wait_queue(0)
            self.assertEqual(p.rcpt_counts()['once@primary.test'], 2)  # once per distinct transaction
            self.assertEqual(len(p.deliveries()), 2)


if __name__ == '__main__':
    unittest.main(verbosity=2)
