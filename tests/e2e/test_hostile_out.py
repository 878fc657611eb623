"""End-to-end tests of the forward side against hostile peers (issue 6b).

mxvault is a client too, and the server it talks to is often picked by an
attacker: a DSN goes to the MX of whatever sender domain was forged. Here
the next hops are hostile.Peer servers on loopback that lie, stall, flood
or never answer, DNS is unbound (fwdlib.Unbound) serving zones built to
hurt, and what is asserted is what a user would see: whether a recipient
is delivered, deferred or bounced (`queue list`, the log, DSNs at the
sender's MX), how many connections the peer saw and how long they lasted,
how many queries unbound logged, and the daemon's own connections and
memory from /proc.

Tests: a protocol error before EHLO backs the destination off (no reconnect
storm) and repeated failure lines are rate-limited.

Run with /usr/bin/python3 (python3-aiosmtpd, unbound); every wait has a
deadline and every hostile script ends on its own.
"""
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402
import mxv  # noqa: E402
import test_forward as tf  # noqa: E402
from fwdlib import send  # noqa: E402

SENDER = tf.SENDER
SLACK = tf.SLACK


class HostileBase(tf.ForwardBase):
    def hostile(self, script, hosts=('127.0.0.2',)):
        p = hostile.Peer([(h, self.mx_port) for h in hosts], script)
        self.addCleanup(p.stop)
        return p.start()

    def wait_window(self, seconds):
        """Lets a measuring window of wall time go by (a bounded wait, not a guess)."""
        t0 = time.monotonic()
        mxv.wait_until(lambda: time.monotonic() - t0 >= seconds, seconds + 5, '%gs to pass' % seconds, 0.05)


class TestEarlyFailure(HostileBase):
    """A protocol error before EHLO completes backs the destination off."""
    zone = ['storm.test. IN MX 10 mxs8.test.'] + ['mxs8.test. IN A 127.0.1.%d' % i for i in range(1, 9)]

    def test_no_reconnect_storm(self):
        peer = self.hostile(hostile.garbage_greeting(100 * 1024))  # a 100 KB reply line
        with self.daemon({'primary.test': {}}) as d:
            for i in range(4):
                send(d, SENDER, 'p%d@primary.test' % i)
            d.wait_log(r'peer=mx1\.test\S* failed: protocol error: reply line too long', timeout=10)
            n0, q0 = peer.accepted, self.dns.queries('primary.test', 'MX')
            window = 5.0
            self.wait_window(window)
            n, q = peer.accepted - n0, self.dns.queries('primary.test', 'MX') - q0
            print('\nfigure: protocol error before EHLO: %d connections and %d MX lookups in %gs '
                  '(probe_interval %gs)' % (n, q, window, tf.PROBE))
            # A probe a second and a backed-off retry: not ~800 connections a second.
            self.assertLessEqual(n, 15, 'reconnect storm: %d connections in %gs' % (n, window))
            self.assertLessEqual(q, 15, 'DNS storm: %d MX lookups in %gs' % (q, window))
            self.assertRegex(d.log_text(), r'delivery: dest=primary\.test deferred=')
            self.assertQueueStates(d, {'queued', 'deferred'}, n=4)
            self.assertNoDsn(d)

    def test_failure_lines_rate_limited(self):
        hosts = ['127.0.1.%d' % i for i in range(1, 9)]
        peer = self.hostile(hostile.garbage_greeting(100 * 1024), hosts)
        with self.daemon({'storm.test': {}}) as d:
            for i in range(4):
                send(d, SENDER, 's%d@storm.test' % i)
            first = d.wait_log(r'^(\S+) delivery: peer=mxs8\.test\S* failed', timeout=10)
            t0 = tf.log_time(first.group(1))
            # Four connections, eight addresses each: 32 failures at once, more with every probe.
            mxv.wait_until(lambda: peer.accepted >= 48, 10, '48 connections to the 8 addresses')
            rx = re.compile(r'^(\S+) delivery: peer=mxs8\.test\S* failed', re.M)
            in_window = [t for t in rx.findall(d.log_text()) if tf.log_time(t) < t0 + 9.5]
            print('\nfigure: %d connections, %d failure lines logged in the first 10s window' %
                  (peer.accepted, len(in_window)))
            self.assertLessEqual(len(in_window), 20, 'failure lines are not rate-limited')
            # The next window says how many were left out.
            m = d.wait_log(r'delivery: dest=storm\.test suppressed=(\d+) failure lines', timeout=15)
            self.assertGreater(int(m.group(1)), 0)


if __name__ == '__main__':
    unittest.main(verbosity=2)
