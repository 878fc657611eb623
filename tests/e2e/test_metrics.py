"""End-to-end: /metrics, /healthz and the HTTP listener (issue 10, section 3).

The daemon runs with http_listen on a free loopback port; the test does
things a user would see counted (mail queued for a domain whose primary is
down, mail delivered to and refused by a live primary, refusals for each
reason it can cheaply cause), then scrapes /metrics, checks it with
Prometheus's own `promtool check metrics`, and compares the numbers with
what it did. contrib/prometheus-alerts.yml is checked with `promtool check
rules`, and every metric that it and contrib/grafana-dashboard.json name
must exist in a real scrape.
"""
import http.client
import json
import os
import re
import shutil
import smtplib
import socket
import struct
import subprocess
import tempfile
import time
import unittest

import mxv

try:
    import fwdlib
    Primary = fwdlib.Primary if fwdlib.Controller is not None else None
except ImportError:  # python3-aiosmtpd missing
    Primary = None

try:
    from fwdlib import Unbound
    from test_milter import Milter
except ImportError:
    Unbound = Milter = None

PROMTOOL = shutil.which('promtool')
SENDER = 'someone@up.test'  # DSNs go to up.test's primary: no DNS anywhere


def get(port, path, method='GET', headers=None, timeout=10):
    """(status, headers dict, body bytes) of one request."""
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=timeout)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def parse_metrics(text):
    """{(name, frozenset(labels)): value} from the text format."""
    out = {}
    rx = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
    for line in text.splitlines():
        if not line or line.startswith('#'):
            continue
        m = rx.match(line)
        assert m, 'unparsable line: %r' % line
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ''))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(metrics, name, **labels):
    return metrics[(name, frozenset(labels.items()))]


def metric_names(text):
    return {l.split('{')[0].split(' ')[0] for l in text.splitlines() if l and not l.startswith('#')}


class MetricsBase(unittest.TestCase):
    def start(self, domains, **server):
        self.http_port = mxv.free_port()
        d = mxv.Daemon(domains=domains, hold=False, http_listen='127.0.0.1:%d' % self.http_port, **server)
        self.addCleanup(d.cleanup)
        d.start()
        self.addCleanup(d.stop)
        return d

    def scrape(self):
        status, headers, body = get(self.http_port, '/metrics')
        self.assertEqual(status, 200)
        self.assertTrue(headers['content-type'].startswith('text/plain; version=0.0.4'), headers)
        return body.decode()

    def promtool_check(self, text):
        p = subprocess.run([PROMTOOL, 'check', 'metrics'], input=text, text=True, capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, 'promtool check metrics: ' + p.stdout + p.stderr)


@unittest.skipUnless(PROMTOOL, 'needs promtool (Debian package prometheus)')
@unittest.skipUnless(Primary, 'needs python3-aiosmtpd (run with /usr/bin/python3)')
class TestMetrics(MetricsBase):
    def setUp(self):
        self.primary_port = mxv.free_port()
        self.p = Primary('127.0.0.1', self.primary_port, 'mx.up.test',
                         rcpt_reply=lambda a: '550 5.1.1 no such user' if a.startswith('bad@') else None)
        self.addCleanup(self.p.stop)
        self.p.start()
        closed = mxv.free_port()  # nothing listens: the primary of down.test is down
        up = '127.0.0.1:%d' % self.primary_port
        self.d = self.start({
            'down.test': {'recipients': ['alice'], 'primary': '127.0.0.1:%d' % closed},
            'up.test': {'primary': up},
            'secure.test': {'primary': up, 'require_tls': 'yes'},
            'grey.test': {'primary': up, 'greylist': 'on'},
        }, max_message_size='10K', bounce_guard='0%', probe_interval='1s', retry_min='1s', retry_max='4s',
            max_connection_rate='30/m', rate_limit_exceptions='192.0.2.1')

    def refused(self, s, to, code):
        with self.assertRaises(smtplib.SMTPRecipientsRefused) as e:
            s.sendmail(SENDER, [to], mxv.message(SENDER, to))
        self.assertEqual(e.exception.recipients[to][0], code)
        s.rset()

    def test_numbers_match_what_was_done(self):
        d = self.d
        s = d.smtp()
        for i in range(3):
            s.sendmail(SENDER, ['alice@down.test'], mxv.message(SENDER, 'alice@down.test', 'queued %d' % i))
        s.sendmail(SENDER, ['alice@up.test'], mxv.message(SENDER, 'alice@up.test'))
        s.sendmail(SENDER, ['bad@up.test'], mxv.message(SENDER, 'bad@up.test'))
        self.refused(s, 'x@elsewhere.test', 550)        # relay
        self.refused(s, 'bob@down.test', 550)           # unknown recipient
        self.refused(s, 'carol@secure.test', 530)       # TLS required
        self.refused(s, 'dave@grey.test', 451)          # greylisted
        code, _ = s.docmd('MAIL FROM:<%s> SIZE=999999' % SENDER)  # size, declared
        self.assertEqual(code, 552)
        s.mail(SENDER)  # size, sent (no SIZE= declared: smtplib's sendmail would add it)
        s.rcpt('alice@up.test')
        code, _ = s.data(mxv.message(SENDER, 'alice@up.test', body='x' * 20000 + '\r\n'))
        self.assertEqual(code, 552)
        s.quit()
        r = d.raw()  # size, sent with BDAT
        r.read_reply()
        for cmd in ('EHLO client.test', 'MAIL FROM:<%s>' % SENDER, 'RCPT TO:<alice@up.test>'):
            r.send(cmd + '\r\n')
            self.assertLess(r.read_reply()[0], 400, cmd)
        r.send(b'BDAT 20000 LAST\r\n' + b'x' * 20000)
        self.assertEqual(r.read_reply()[0], 552)
        r.close()
        s = d.smtp()
        s.starttls()
        s.ehlo()
        s.sendmail(SENDER, ['carol@secure.test'], mxv.message(SENDER, 'carol@secure.test'))
        s.quit()
        # Delivered: alice@up.test, carol@secure.test, and the DSN for bad@up.test (to someone@up.test).
        mxv.wait_until(lambda: len(self.p.deliveries()) >= 3, 20, 'three deliveries to the live primary')

        def settled():
            m = parse_metrics(self.scrape())
            return (value(m, 'mxvault_destination_up', domain='down.test') == 0
                    and value(m, 'mxvault_deliveries_total', result='delivered') >= 3
                    and value(m, 'mxvault_spool_messages') == 3 and m)  # the delivered ones are done with
        m = mxv.wait_until(settled, 20, 'down.test seen down, three deliveries counted and done with')
        text = self.scrape()
        self.promtool_check(text)
        m = parse_metrics(text)

        self.assertEqual(value(m, 'mxvault_queue_messages', domain='down.test'), 3)
        self.assertGreater(value(m, 'mxvault_queue_bytes', domain='down.test'), 3 * 100)
        self.assertEqual(value(m, 'mxvault_queue_messages', domain='up.test'), 0)
        self.assertGreater(value(m, 'mxvault_destination_state_change_timestamp_seconds', domain='down.test'), 1e9)
        self.assertGreaterEqual(value(m, 'mxvault_queue_oldest_message_age_seconds', domain='down.test'), 0)
        self.assertEqual(value(m, 'mxvault_destination_up', domain='up.test'), 1)
        self.assertEqual(value(m, 'mxvault_bounce_guard_active', domain='up.test'), 0)
        self.assertEqual(value(m, 'mxvault_smtp_messages_accepted_total'), 6)
        self.assertEqual(value(m, 'mxvault_deliveries_total', result='delivered'), 3)
        self.assertEqual(value(m, 'mxvault_deliveries_total', result='bounced'), 1)
        self.assertEqual(value(m, 'mxvault_dsns_total', action='failed'), 1)
        want = {'relay': 1, 'unknown_recipient': 1, 'tls_required': 1, 'greylist': 1, 'size': 3, 'spf': 0,
                'dmarc': 0, 'dnsbl': 0, 'milter': 0, 'rate': 0, 'connection_limit': 0}
        got = {r: value(m, 'mxvault_smtp_rejections_total', reason=r) for r in want}
        self.assertEqual(got, want)
        self.assertEqual(value(m, 'mxvault_smtp_tls_sessions_total', version='TLSv1.3'), 1)
        self.assertEqual(value(m, 'mxvault_smtp_sessions_open'), 0)
        self.assertGreaterEqual(value(m, 'mxvault_spool_commit_batch_messages_count'), 1)
        self.assertEqual(value(m, 'mxvault_spool_commit_batch_messages_sum'), 6 + 1)  # the DSN is stored too
        self.assertGreaterEqual(value(m, 'mxvault_spool_fsync_duration_seconds_count'), 1)
        self.assertGreater(value(m, 'mxvault_spool_free_bytes'), 0)
        self.assertEqual(value(m, 'mxvault_spool_has_space'), 1)
        self.assertGreaterEqual(value(m, 'mxvault_spool_message_bytes'),
                                value(m, 'mxvault_queue_bytes', domain='down.test'))
        # Labels name configured domains only: no peer's string becomes a series.
        domains = {v for (name, labels) in m for k, v in labels if k == 'domain'}
        self.assertEqual(domains, {'down.test', 'up.test', 'secure.test', 'grey.test'})

        # The connection rate (30/m, loopback not exempt): refusals beyond it are counted as rate.
        refused = 0
        for _ in range(40):
            r = d.raw()
            code, _ = r.read_reply()
            r.close()
            if code == 421:
                refused += 1
                break
        self.assertEqual(refused, 1, 'no connection was refused by max_connection_rate')
        m = parse_metrics(self.scrape())
        self.assertEqual(value(m, 'mxvault_smtp_rejections_total', reason='rate'), 1)

    def test_contrib_files_name_real_metrics(self):
        names = metric_names(self.scrape())
        # Histograms are scraped as _bucket/_sum/_count; a rule or panel may name any of them.
        exprs = []
        with open(os.path.join(mxv.REPO, 'contrib', 'grafana-dashboard.json'), encoding='utf-8') as f:
            dash = json.load(f)
        for panel in dash['panels']:
            for t in panel.get('targets', []):
                exprs.append(t['expr'])
        self.assertGreaterEqual(len(exprs), 6)
        rules = os.path.join(mxv.REPO, 'contrib', 'prometheus-alerts.yml')
        p = subprocess.run([PROMTOOL, 'check', 'rules', rules], text=True, capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        with open(rules, encoding='utf-8') as f:
            exprs += re.findall(r'expr:\s*(.+(?:\n\s{10,}.+)*)', f.read())
        used = set()
        for e in exprs:
            used |= set(re.findall(r'\bmxvault_[a-z0-9_]+', e))
        self.assertTrue(used)
        self.assertEqual(used - names, set(), 'contrib files name metrics that /metrics does not have')


@unittest.skipUnless(PROMTOOL, 'needs promtool (Debian package prometheus)')
@unittest.skipUnless(Unbound and Milter and Primary, 'needs unbound, python3-aiosmtpd, python3-milter')
class TestRefusalsThatAskTheDns(MetricsBase):
    """The refusals that need DNS answers or a milter: DNSBL, SPF, DMARC, milter."""

    def setUp(self):
        self.dns = Unbound([
            '2.0.0.127.bl.test. IN A 127.0.0.2',  # 127.0.0.2 is listed on bl.test
            'spf.test. IN TXT "v=spf1 ip4:127.0.0.9 -all"',
            '_dmarc.spf.test. IN TXT "v=DMARC1; p=reject"',
        ])
        self.addCleanup(self.dns.cleanup)
        self.dns.start()
        tmp = tempfile.mkdtemp(prefix='mxv-metrics-')
        self.addCleanup(shutil.rmtree, tmp, True)
        self.milter = Milter('reject_rcpt', tmp)  # refuses spam@...
        self.addCleanup(self.milter.stop)
        self.d = self.start({'example.com': {'spf': 'reject', 'dmarc': 'off'},
                             'enf.test': {'spf': 'tag', 'dmarc': 'enforce'}},
                            resolver=self.dns.resolver, dnsbl='bl.test', milter=self.milter.spec)

    def client(self, ip='127.0.0.1'):
        return smtplib.SMTP('127.0.0.1', self.d.port, local_hostname='client.test', timeout=30,
                            source_address=(ip, 0))

    def test_each_reason_counted(self):
        s = self.client('127.0.0.2')
        with self.assertRaises(smtplib.SMTPRecipientsRefused) as e:
            s.sendmail('a@nospf.test', ['bob@example.com'], mxv.message('a@nospf.test', 'bob@example.com'))
        self.assertEqual(e.exception.recipients['bob@example.com'][0], 554)  # DNSBL
        s.close()
        s = self.client()
        with self.assertRaises(smtplib.SMTPRecipientsRefused) as e:
            s.sendmail('alice@spf.test', ['bob@example.com'], mxv.message('alice@spf.test', 'bob@example.com'))
        self.assertEqual(e.exception.recipients['bob@example.com'][0], 550)  # SPF fail, spf = reject
        s.rset()
        with self.assertRaises(smtplib.SMTPRecipientsRefused) as e:
            s.sendmail('a@nospf.test', ['spam@example.com'], mxv.message('a@nospf.test', 'spam@example.com'))
        self.assertEqual(e.exception.recipients['spam@example.com'][0], 550)  # the milter
        s.rset()
        with self.assertRaises(smtplib.SMTPDataError) as e:  # DMARC fail, p=reject, dmarc = enforce
            s.sendmail('alice@spf.test', ['bob@enf.test'], mxv.message('alice@spf.test', 'bob@enf.test'))
        self.assertEqual(e.exception.smtp_code, 550)
        s.rset()
        s.sendmail('a@nospf.test', ['bob@example.com'], mxv.message('a@nospf.test', 'bob@example.com'))
        s.quit()
        text = self.scrape()
        self.promtool_check(text)
        m = parse_metrics(text)
        got = {r: value(m, 'mxvault_smtp_rejections_total', reason=r) for r in ('dnsbl', 'spf', 'milter', 'dmarc')}
        self.assertEqual(got, {'dnsbl': 1, 'spf': 1, 'milter': 1, 'dmarc': 1})
        self.assertEqual(value(m, 'mxvault_smtp_messages_accepted_total'), 1)
        self.assertGreater(value(m, 'mxvault_dns_query_duration_seconds_count'), 3)


@unittest.skipUnless(PROMTOOL, 'needs promtool (Debian package prometheus)')
class TestHttpListener(MetricsBase):
    def setUp(self):
        self.d = self.start(None)

    def test_healthz_and_methods(self):
        status, _, body = get(self.http_port, '/healthz')
        self.assertEqual((status, body), (200, b'ok\n'))
        status, headers, body = get(self.http_port, '/metrics', method='HEAD')
        self.assertEqual((status, body), (200, b''))
        self.assertGreater(int(headers['content-length']), 1000)
        for method in ('POST', 'PUT', 'DELETE'):
            status, headers, _ = get(self.http_port, '/metrics', method=method)
            self.assertEqual(status, 405, method)
            self.assertEqual(headers.get('allow'), 'GET, HEAD')
        self.assertEqual(get(self.http_port, '/nothing-here')[0], 404)
        status, _, _ = get(self.http_port, '/', headers={'X-Big': 'a' * 20000})
        self.assertGreaterEqual(status, 400)
        self.promtool_check(self.scrape())  # still serving

    def test_connections_beyond_the_cap_wait_their_turn(self):
        idle = []
        self.addCleanup(lambda: [s.close() for s in idle])
        for _ in range(32):  # WEB_MAX_CONNECTIONS, each sending half a request
            s = socket.create_connection(('127.0.0.1', self.http_port), timeout=5)
            s.sendall(b'GET /healthz HTTP/1.1\r\n')
            idle.append(s)
        with self.assertRaises((socket.timeout, TimeoutError, ConnectionError)):
            get(self.http_port, '/healthz', timeout=2.5)
        for s in idle:
            s.close()
        status, _, body = mxv.wait_until(lambda: get(self.http_port, '/healthz', timeout=3), 10,
                                         'the listener to accept again')
        self.assertEqual((status, body), (200, b'ok\n'))

    def test_a_trickled_request_is_cut_off(self):
        # evhttp's timeout (10 s) is per read: a byte every 3 s would hold the connection for
        # as long as the peer likes. The whole connection gets WEB_MAX_LIFE_S (30 s).
        s = socket.create_connection(('127.0.0.1', self.http_port), timeout=5)
        self.addCleanup(s.close)
        s.sendall(b'GET /healthz HTTP/1.1\r\nX-Slow: ')
        start = time.monotonic()
        closed = None
        for _ in range(20):  # 60 s at most
            try:
                s.sendall(b'a')
                s.settimeout(3)
                if s.recv(100) == b'':
                    closed = time.monotonic() - start
                    break
            except socket.timeout:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = time.monotonic() - start
                break
        self.assertIsNotNone(closed, 'the trickling connection was never closed')
        self.assertGreaterEqual(closed, 25)
        self.assertLessEqual(closed, 40)
        self.assertEqual(get(self.http_port, '/healthz')[0], 200)

    def test_pipelined_requests_and_head_keep_their_framing(self):
        # One connection, many requests written at once, HEAD among them: each answer is framed
        # by its Content-Length (none for HEAD's body), so the answers parse back one by one.
        paths = ['/healthz', '/metrics', '/'] * 50
        reqs = b''.join(b'%s %s HTTP/1.1\r\nHost: t\r\n\r\n' % (b'HEAD' if i % 4 == 0 else b'GET', p.encode())
                        for i, p in enumerate(paths))
        s = socket.create_connection(('127.0.0.1', self.http_port), timeout=10)
        self.addCleanup(s.close)
        s.sendall(reqs + b'GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n')
        data = b''
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        statuses = []
        for i in range(len(paths) + 1):
            head, sep, data = data.partition(b'\r\n\r\n')
            self.assertTrue(sep, 'answer %d is cut short' % i)
            statuses.append(int(head.split(b' ')[1]))
            length = int(re.search(rb'(?im)^content-length: *(\d+)', head).group(1))
            if i < len(paths) and i % 4 == 0:
                length = 0  # HEAD: the length of the body that GET would have had
            data = data[length:]
        self.assertEqual(statuses, [200] * (len(paths) + 1))
        self.assertEqual(data, b'')

    def test_connections_reset_beyond_the_cap_are_forgotten(self):
        # More peers than WEB_MAX_CONNECTIONS send a request and reset at once, three times over:
        # every slot comes back (the listener accepts again) and the daemon keeps no socket of theirs.
        pid = self.d.proc.pid
        fds = lambda: len(os.listdir('/proc/%d/fd' % pid))
        before = fds()
        for _ in range(3):
            peers = [socket.create_connection(('127.0.0.1', self.http_port), timeout=5) for _ in range(40)]
            for s in peers:
                s.sendall(b'GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n')
            for s in peers:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
                s.close()
        mxv.wait_until(lambda: fds() <= before, 20, 'the reset connections to be closed')
        self.assertEqual(get(self.http_port, '/healthz')[0], 200)

    def test_healthz_fails_when_the_spool_is_short_of_space(self):
        self.d.stop()
        self.d.server['min_free_space'] = '999999G'
        self.d.write_config()
        self.d.start()
        status, _, body = get(self.http_port, '/healthz')
        self.assertEqual(status, 503)
        self.assertIn(b'space', body)
        m = parse_metrics(self.scrape())
        self.assertEqual(value(m, 'mxvault_spool_has_space'), 0)

    def test_chart_follows_a_reload_that_adds_domains(self):
        # The chart's per-domain history is kept by domain name: domains a reload adds get lines
        # of their own (up to the chart's limit), not only those configured at the start.
        self.d.stop()
        self.d.domains = {'one.test': {}}
        self.d.write_config()
        self.d.start()
        self.assertNotIn(b'class="series domain"', get(self.http_port, '/')[2])
        self.d.domains = {'one.test': {}, 'two.test': {}, 'three.test': {}}
        self.d.write_config()
        for path in [self.d.dir] + [os.path.join(self.d.dir, n) for n in os.listdir(self.d.dir)]:
            if os.path.isdir(path) or os.path.isfile(path):  # read by the unprivileged daemon at a reload
                os.chmod(path, 0o755 if os.path.isdir(path) else 0o644)
        self.d.control('reload')
        mxv.wait_until(lambda: get(self.http_port, '/')[2].count(b'<td class="domain">') == 3, 10,
                       'the page to show the three domains')
        page = get(self.http_port, '/')[2]
        self.assertEqual(page.count(b'class="series domain"'), 3, page)
        legend = page[page.index(b'class="legend"'):]
        for name in (b'one.test', b'two.test', b'three.test'):
            self.assertIn(name, legend)

    def test_config_check_warns_when_not_loopback(self):
        self.d.server['http_listen'] = '0.0.0.0:%d' % mxv.free_port()
        self.d.write_config()
        p = mxv.run_cli('config', 'check', '-c', self.d.conf)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stderr, r'(?m)^%s:\d+: warning: http_listen 0\.0\.0\.0:\d+ is not a loopback address'
                         % re.escape(self.d.conf))
        self.assertRegex(p.stdout, r'(?m)^http_listen = 0\.0\.0\.0:\d+$')


if __name__ == '__main__':
    unittest.main()
