"""End-to-end: the abuse defences at connect (issue 9 section 3).

DNS lists through a real Unbound on loopback serving list zones under
"test." (listed, not listed, answer codes, weights summing to the
threshold, a dnswl override, a zone whose queries are never answered);
greet_pause (an early talker dropped, a patient client greeted and then
remembered); max_connection_rate and max_message_rate.

Every client binds its own address in 127.0.0.0/8, so each test has its
own client (the DNS lists are keyed by it, and so are the rate tables and
the greet_pause memory), apart from the harness's start-up probe, which
connects from 127.0.0.1.
"""
import os
import signal
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxv  # noqa: E402
from fwdlib import Unbound  # noqa: E402

RCPT = 'alice@example.com'


def listed(ip, zone, code='127.0.0.2'):
    """The A record that lists ip on zone."""
    return '%s.%s. IN A %s' % ('.'.join(reversed(ip.split('.'))), zone, code)


class Client(mxv.Raw):
    """mxv.Raw from a chosen loopback address."""

    def __init__(self, port, src, timeout=10):
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.bind((src, 0))
        self.sock.connect((mxv.HOST, port))
        self.buf = b''
        self.greeted = False

    def read_until(self, marker, timeout=None):
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while marker not in self.buf:
            self._fill(deadline)


def rcpt_reply(d, src, sender='alice@client.test', rcpt=RCPT):
    """(code, text) of the first RCPT from src, and whether the server then closed the connection."""
    with Client(d.port, src) as c:
        c.expect(220)
        c.ehlo()
        c.cmd('MAIL FROM:<%s>' % sender)
        code, text = c.cmd('RCPT TO:<%s>' % rcpt)
        if code == 554:
            c.wait_closed()
        else:
            c.cmd('QUIT')
        return code, text


class DnsListBase(unittest.TestCase):
    records = [
        listed('127.0.0.2', 'bl1.test'),
        listed('127.0.0.4', 'w1.test'), listed('127.0.0.4', 'w2.test'),
        listed('127.0.0.5', 'w1.test'),
        listed('127.0.0.6', 'bl1.test', '127.0.0.9'),
        listed('127.0.0.7', 'bl1.test'), listed('127.0.0.7', 'wl.test'),
        listed('127.0.0.8', 'bl1.test', '127.0.0.3'),
    ]

    @classmethod
    def setUpClass(cls):
        cls.dns = Unbound(cls.records, drop=['slow.test'])
        cls.dns.start()

    @classmethod
    def tearDownClass(cls):
        cls.dns.cleanup()

    def daemon(self, **server):
        domains = {'example.com': {'recipients': ['alice'], 'spf': 'off', 'dmarc': 'off'}}
        return mxv.Daemon(domains=domains, resolver=self.dns.resolver, **server)


class TestDnsLists(DnsListBase):
    CONF = {'dnsbl': 'bl1.test=127.0.0.[2..3]*2, w1.test, w2.test*1', 'dnswl': 'wl.test', 'dnsbl_threshold': 2}

    def assertBlocked(self, d, ip, zone):
        code, text = rcpt_reply(d, ip)
        self.assertEqual(code, 554, text)
        self.assertEqual(text, '5.7.1 Service unavailable; client [%s] blocked using %s' % (ip, zone))
        d.wait_log(r'client=%s from=<alice@client\.test> to=<alice@example\.com> dnsbl=%s reject="554 5\.7\.1 '
                   % (ip.replace('.', r'\.'), zone.replace('.', r'\.')))

    def assertPasses(self, d, ip):
        code, text = rcpt_reply(d, ip)
        self.assertEqual(code, 250, text)

    def test_listed_blocked_at_first_rcpt(self):
        with self.daemon(**self.CONF) as d:
            self.assertBlocked(d, '127.0.0.2', 'bl1.test')
            self.assertBlocked(d, '127.0.0.8', 'bl1.test')  # 127.0.0.3 is in [2..3]

    def test_not_listed_passes(self):
        with self.daemon(**self.CONF) as d:
            self.assertPasses(d, '127.0.0.3')

    def test_answer_outside_the_codes_passes(self):
        with self.daemon(**self.CONF) as d:
            self.assertPasses(d, '127.0.0.6')  # listed as 127.0.0.9: not in 127.0.0.[2..3]

    def test_weights_sum_to_the_threshold(self):
        with self.daemon(**self.CONF) as d:
            self.assertBlocked(d, '127.0.0.4', 'w1.test')  # 1 + 1 = 2
            self.assertPasses(d, '127.0.0.5')              # 1 < 2
            d.wait_log(r'client=127\.0\.0\.5 dnsbl score=1 listed=w1\.test .*verdict=pass')

    def test_dnswl_overrides(self):
        with self.daemon(**self.CONF) as d:
            self.assertPasses(d, '127.0.0.7')
            d.wait_log(r'client=127\.0\.0\.7 dnsbl score=2 listed=bl1\.test allowed=wl\.test .*verdict=pass')

    def test_default_codes_and_threshold(self):
        with self.daemon(dnsbl='w1.test') as d:
            self.assertBlocked(d, '127.0.0.5', 'w1.test')
            self.assertPasses(d, '127.0.0.3')

    def test_dnswl_exempts_from_greylisting(self):
        """Issue 9 section 3: a client on a dnswl zone is not greylisted (dnswl alone blocks nobody)."""
        domains = {'example.com': {'recipients': ['alice'], 'spf': 'off', 'dmarc': 'off', 'greylist': 'on'}}
        with mxv.Daemon(domains=domains, resolver=self.dns.resolver, dnswl='wl.test') as d:
            code, text = rcpt_reply(d, '127.0.0.7')
            self.assertEqual(code, 250, text)
            code, text = rcpt_reply(d, '127.0.0.3')
            self.assertEqual(code, 451, text)
            self.assertTrue(text.startswith('4.7.1 Greylisted'), text)
            code, text = rcpt_reply(d, '127.0.0.2')  # listed on bl1.test, which is no dnsbl here
            self.assertEqual(code, 451, text)


class TestDnsListTimeout(DnsListBase):
    """A zone whose queries are never answered: the RCPT waits at most auth_timeout, and is not refused."""

    def test_zone_that_times_out_never_blocks(self):
        with self.daemon(dnsbl='slow.test, bl1.test', auth_timeout='2s') as d:
            t0 = time.monotonic()
            code, text = rcpt_reply(d, '127.0.0.3')
            took = time.monotonic() - t0
            self.assertEqual(code, 250, text)
            self.assertGreaterEqual(took, 1.5)  # it did wait for the dropped zone
            self.assertLess(took, 5.0)          # and not for c-ares's ~6 s
            d.wait_log(r'client=127\.0\.0\.3 dnsbl score=0 listed=- allowed=- no-answer=slow\.test verdict=pass')

    def test_dnswl_that_times_out_never_blocks(self):
        with self.daemon(dnsbl='bl1.test', dnswl='slow.test', auth_timeout='2s') as d:
            code, text = rcpt_reply(d, '127.0.0.2')
            self.assertEqual(code, 250, text)
            d.wait_log(r'client=127\.0\.0\.2 dnsbl score=1 listed=bl1\.test .*no-answer=slow\.test verdict=pass')

    def test_client_gone_while_lookups_run(self):
        """Sessions end while their lookups run: nothing calls back into them (ASan checks at stop)."""
        with self.daemon(dnsbl='slow.test', auth_timeout='2s') as d:
            with Client(d.port, '127.0.0.40') as c:  # gone while its RCPT waits on the lists
                c.expect(220)
                c.send('EHLO client.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<%s>\r\n' % RCPT)
                c.read_reply()
                c.read_reply()
            with Client(d.port, '127.0.0.41') as c:  # gone before saying anything
                c.expect(220)
            d.wait_log(r'client=127\.0\.0\.40 disconnect')
            d.wait_log(r'client=127\.0\.0\.41 disconnect')
            self.assertEqual(rcpt_reply(d, '127.0.0.3')[0], 250)
        # the lookups still owed are cancelled by the resolver's teardown at stop: the daemon exits clean

class TestGreetPause(unittest.TestCase):
    PAUSE = 2

    def daemon(self):
        return mxv.Daemon(greet_pause='%ds' % self.PAUSE)

    def test_early_talker_dropped(self):
        with self.daemon() as d:
            with Client(d.port, '127.0.0.20') as c:
                c.read_until(b'220-')
                self.assertNotIn(b'220 ', c.buf)
                c.send('EHLO client.test\r\n')
                code, text = c.read_reply()
                self.assertEqual(code, 554, text)
                self.assertIn('5.5.0 ', text)
                c.wait_closed()
            d.wait_log(r'client=127\.0\.0\.20 early talker')
            # an early talker is not remembered: greeted with the pause again
            with Client(d.port, '127.0.0.20') as c:
                c.read_until(b'\r\n')
                self.assertTrue(c.buf.startswith(b'220-'), c.buf)

    def test_patient_client_greeted_then_remembered(self):
        with self.daemon() as d:
            t0 = time.monotonic()
            with Client(d.port, '127.0.0.21') as c:
                c.expect(220)
                self.assertGreaterEqual(time.monotonic() - t0, self.PAUSE - 0.2)
                code, _ = c.ehlo()
                self.assertEqual(code, 250)
                c.cmd('QUIT')
            t0 = time.monotonic()
            with Client(d.port, '127.0.0.21') as c:
                c.read_until(b'\r\n')
                self.assertTrue(c.buf.startswith(b'220 '), c.buf)
                self.assertLess(time.monotonic() - t0, self.PAUSE / 2)
                c.cmd('QUIT')
            with Client(d.port, '127.0.0.22') as c:  # remembered per address
                c.read_until(b'\r\n')
                self.assertTrue(c.buf.startswith(b'220-'), c.buf)

    def test_shutdown_during_the_pause(self):
        """A stopping server closes a half-greeted session without a 421 (it cannot end a 220- reply)."""
        d = mxv.Daemon(greet_pause='4s')  # the harness's probe waits 5 s for a greeting
        with d:
            with Client(d.port, '127.0.0.23') as c:
                c.read_until(b'220-')
                d.proc.send_signal(signal.SIGTERM)
                got = c.wait_closed()  # what was read so far, and the rest
                self.assertTrue(got.startswith(b'220-'), got)
                self.assertNotIn(b'421', got)
            d.proc.wait(10)
            self.assertEqual(d.proc.returncode, 0, d.log_text())


class TestRateLimits(unittest.TestCase):
    def test_connection_rate(self):
        with mxv.Daemon(max_connection_rate='3/h', rate_limit_exceptions='') as d:
            for _ in range(3):
                with Client(d.port, '127.0.0.30') as c:
                    c.expect(220)
                    c.cmd('QUIT')
            with Client(d.port, '127.0.0.30') as c:
                text = c.expect(421, '4.7.0')
                self.assertIn('max_connection_rate', text)
                c.wait_closed()
            d.wait_log(r'client=127\.0\.0\.30 connect refused=Error: too many connections from your address '
                       r'\(max_connection_rate\)')
            with Client(d.port, '127.0.0.31') as c:  # counted per address
                c.expect(220)

    def test_message_rate(self):
        with mxv.Daemon(max_message_rate='2/h', rate_limit_exceptions='') as d:
            with Client(d.port, '127.0.0.32') as c:
                c.ehlo()
                for _ in range(2):
                    self.assertEqual(c.cmd('MAIL FROM:<a@client.test>')[0], 250)
                    self.assertEqual(c.cmd('RSET')[0], 250)
                text = c.cmd('MAIL FROM:<a@client.test>')
                self.assertEqual(text[0], 421, text)
                self.assertTrue(text[1].startswith('4.7.0 '), text)
                c.wait_closed()
            d.wait_log(r'client=127\.0\.0\.32 network=127\.0\.0\.32 message rate limit exceeded '
                       r'\(max_message_rate 2/h\)')

    def test_loopback_excepted_by_default(self):
        with mxv.Daemon(max_connection_rate='2/h', max_message_rate='1/h') as d:
            for _ in range(4):
                with Client(d.port, '127.0.0.33') as c:
                    c.ehlo()
                    self.assertEqual(c.cmd('MAIL FROM:<a@client.test>')[0], 250)
                    self.assertEqual(c.cmd('RSET')[0], 250)
                    self.assertEqual(c.cmd('MAIL FROM:<a@client.test>')[0], 250)
                    c.cmd('QUIT')

    def test_message_rate_ipv6_per_64(self):
        """An IPv6 client is counted by its /64 (the log names the network)."""
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(('::1', 0))
            port6 = s.getsockname()[1]
        with mxv.Daemon(max_message_rate='1/h', rate_limit_exceptions='127.0.0.0/8') as d:
            d.server['listen'] += ', [::1]:%d' % port6
            d.stop()
            d.write_config()
            d.start()
            c = mxv.Raw(port6, host='::1')
            with c:
                c.ehlo()
                self.assertEqual(c.cmd('MAIL FROM:<a@client.test>')[0], 250)
                self.assertEqual(c.cmd('RSET')[0], 250)
                code, text = c.cmd('MAIL FROM:<a@client.test>')
                self.assertEqual(code, 421, text)
                c.wait_closed()
            d.wait_log(r'client=::1 network=::/64 message rate limit exceeded \(max_message_rate 1/h\)')


if __name__ == '__main__':
    unittest.main()
