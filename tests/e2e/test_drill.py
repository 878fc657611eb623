"""End-to-end: `mxvault drill DOMAIN --to ADDRESS -c FILE` (issue 10, section 6).

A real daemon forwards example.com to an aiosmtpd primary on loopback
(fwdlib.Primary). The drill holds delivery to the domain, sends a tagged
test message to the daemon's listener, shows it queued, releases the hold
and waits until the primary has it. Its hold lives only as long as the
command: whatever ends the command (SIGINT, SIGKILL, a failure), mail for
the domain flows again at once.

To catch the command while it holds the domain, some tests give it a
configuration of its own whose listen address is a socket that never
answers (the daemon's hold socket, mxv.Daemon): the command then waits for
a greeting, and the hold stays on, for as long as the test wants.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fwdlib  # noqa: E402
import mxv  # noqa: E402
from fwdlib import send  # noqa: E402

TO = 'alice@example.com'
STEP_RX = re.compile(r'^\s*(\d+\.\d{3})s  (\S+)\s+(.*)$')


@unittest.skipUnless(fwdlib.Controller is not None, 'needs python3-aiosmtpd (run with /usr/bin/python3)')
class TestDrill(unittest.TestCase):
    def setUp(self):
        self.port = mxv.free_port()
        self.primary = fwdlib.Primary('127.0.0.1', self.port, 'primary.test')
        self.addCleanup(self.primary.stop)
        domains = {'example.com': {'recipients': ['alice'], 'primary': '127.0.0.1:%d' % self.port},
                   'other.test': {'primary': '127.0.0.1:%d' % self.port}}
        self.d = mxv.Daemon(domains=domains, hold=False, probe_interval='1s', retry_min='1s', retry_max='2s')
        self.addCleanup(self.d.cleanup)

    def start(self, primary=True):
        if primary:
            self.primary.start()
        self.d.start()
        self.addCleanup(self.d.stop)

    def drill(self, *extra, domain='example.com', to=TO, conf=None, timeout=60):
        return mxv.run_cli('drill', domain, '--to', to, '-c', conf or self.d.conf, *extra, timeout=timeout)

    def steps(self, stdout):
        return [m.groups() for m in map(STEP_RX.match, stdout.splitlines()) if m]

    def stalled_conf(self):
        """A configuration for the command alone: the daemon's, but its listener never greets."""
        hold = socket.socket()
        hold.bind((mxv.HOST, 0))
        hold.listen(8)
        self.addCleanup(hold.close)
        path = os.path.join(self.d.dir, 'stalled.conf')
        text = self.d.config_text().replace('listen = 127.0.0.1:%d' % self.d.port,
                                            'listen = 127.0.0.1:%d' % hold.getsockname()[1])
        with open(path, 'w') as f:
            f.write(text)
        return path

    def start_stalled_drill(self):
        """The command, started and holding example.com (its message never goes out)."""
        p = subprocess.Popen([mxv.BIN, 'drill', 'example.com', '--to', TO, '-c', self.stalled_conf(),
                              '--timeout', '2m'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(p.wait)
        self.addCleanup(lambda: p.poll() is None and p.kill())  # (cleanups run last in, first out)
        self.d.wait_log(r'drill: domain=example.com tag=\w+ started: delivery held', 10)
        return p

    def held_mail(self):
        """Mail for example.com sent while the drill holds it: queued, not delivered."""
        qid = send(self.d, 'bob@sender.test', [TO], data=b'Subject: held by the drill\r\n\r\nhello\r\n')
        q = self.d.wait_queue(1)
        self.assertEqual(q[0]['id'], qid)
        self.assertEqual(self.d.control('ping')[-1], ('x', b'0'))  # a loop pass later: still nothing sent
        self.assertEqual(self.primary.deliveries(), [])
        return qid

    def test_the_drill_passes_end_to_end(self):
        self.start()
        p = self.drill()
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        steps = self.steps(p.stdout)
        self.assertEqual([s[1] for s in steps], ['hold', 'sent', 'queued', 'release', 'delivered'], p.stdout)
        times = [float(s[0]) for s in steps]
        self.assertEqual(times, sorted(times))
        self.assertRegex(steps[1][2], r'^127\.0\.0\.1:%d: 250 2\.0\.0 Ok: queued as [0-9a-f]{16}$' % self.d.port)
        self.assertIn('<alice@example.com> at ', steps[4][2])
        self.assertRegex(p.stdout.splitlines()[-1], r'^verdict: PASS \(\d+\.\d{3} s\)$')
        print('\n' + p.stdout, end='')

        got = self.primary.wait_deliveries(1, 10)
        self.assertEqual(len(got), 1)
        tag = re.search(rb'^X-Mxvault-Drill: (\w+)\r$', got[0].data, re.M).group(1).decode()
        self.assertIn(b'Subject: mxvault failover drill ' + tag.encode(), got[0].data)
        self.assertIn(got[0].mail_from, ('', '<>'))
        self.assertEqual(got[0].rcpt_tos, [TO])
        self.assertEqual(self.d.wait_queue(0), [])

        p = self.drill('--json')
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        out = json.loads(p.stdout)
        self.assertEqual(out['verdict'], 'PASS')
        self.assertIsNone(out['reason'])
        self.assertEqual([s['step'] for s in out['steps']], ['hold', 'sent', 'queued', 'release', 'delivered'])
        self.assertIn(out['queue_id'], out['steps'][1]['text'])
        self.assertNotEqual(out['tag'], tag)
        got = self.primary.wait_deliveries(2, 10)
        tags = [re.search(rb'^X-Mxvault-Drill: (\w+)\r$', g.data, re.M).group(1).decode() for g in got]
        self.assertEqual(sorted(tags), sorted([tag, out['tag']]))  # each drill's message exactly once

    def test_with_the_primary_down_it_fails_at_its_timeout_and_holds_nothing(self):
        self.start(primary=False)
        p = self.drill('--timeout', '4s')
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        names = [s[1] for s in self.steps(p.stdout)]
        self.assertEqual(names[:4], ['hold', 'sent', 'queued', 'release'], p.stdout)
        self.assertNotIn('delivered', names)
        self.assertRegex(p.stdout.splitlines()[-1], r'^verdict: FAIL \(\d+\.\d{3} s\): the primary did not accept')
        print('\n' + p.stdout, end='')
        # nothing stays held: the primary comes back and gets the drill's message
        self.primary.start()
        got = self.primary.wait_deliveries(1, 20)
        self.assertIn(b'X-Mxvault-Drill: ', got[0].data)

    def test_a_refusal_by_the_primary_is_a_failure(self):
        self.primary.rcpt_reply = lambda addr: '550 5.1.1 no such user here'
        self.start()
        p = self.drill('--json')
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        out = json.loads(p.stdout)
        self.assertEqual(out['verdict'], 'FAIL')
        self.assertEqual(out['steps'][-1]['step'], 'bounced')
        self.assertIn('550 5.1.1 no such user here', out['steps'][-1]['text'])
        self.assertEqual(out['reason'], 'the primary refused the message')

    def test_a_refusal_by_the_backup_ends_the_drill_and_its_hold(self):
        self.start()
        p = self.drill(to='nobody@example.com')
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        steps = self.steps(p.stdout)
        self.assertEqual([s[1] for s in steps], ['hold', 'refused'], p.stdout)
        self.assertIn('at RCPT: 550 5.1.1', steps[1][2])
        self.d.wait_log(r'drill: domain=example.com tag=\w+ interrupted: the command went away; delivery released')
        send(self.d, 'bob@sender.test', [TO])
        self.primary.wait_deliveries(1, 10)

    def test_a_listener_that_never_greets_fails_at_the_timeout(self):
        self.start()
        p = self.drill('--timeout', '2s', conf=self.stalled_conf(), timeout=20)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        steps = self.steps(p.stdout)
        self.assertEqual([s[1] for s in steps], ['hold', 'refused'], p.stdout)
        self.assertRegex(steps[1][2], r'at greeting: Connection timed out$')
        self.assertGreaterEqual(float(steps[1][0]), 1.9)
        self.assertRegex(p.stdout.splitlines()[-1], r'^verdict: FAIL \([23]\.\d{3} s\): the backup did not take')
        self.d.wait_log(r'drill: domain=example.com tag=\w+ (interrupted|verdict=fail)')
        send(self.d, 'bob@sender.test', [TO])
        self.primary.wait_deliveries(1, 10)

    def test_interrupted_it_leaves_nothing_held(self):
        self.start()
        for sig in (signal.SIGINT, signal.SIGKILL):
            with self.subTest(signal=sig.name):
                n = len(self.primary.deliveries())
                p = self.start_stalled_drill()
                self.assertEqual(p.stdout.readline().split()[1], 'hold')
                qid = send(self.d, 'bob@sender.test', [TO], data=b'Subject: held by the drill\r\n\r\nhi\r\n')
                q = self.d.wait_queue(1)
                self.assertEqual(q[0]['id'], qid)
                self.assertEqual(self.d.control('ping')[-1], ('x', b'0'))
                self.assertEqual(len(self.primary.deliveries()), n, 'delivered while the drill held the domain')
                p.send_signal(sig)
                p.wait(10)
                got = self.primary.wait_deliveries(n + 1, 10, 'the held message once the drill is gone')
                self.assertIn(b'held by the drill', got[n].data)
                self.d.wait_queue(0)
        self.assertEqual(len(re.findall(r'interrupted: the command went away; delivery released',
                                        self.d.log_text())), 2)

    def test_a_connection_already_open_takes_no_more_of_the_held_mail(self):
        self.primary = fwdlib.Primary('127.0.0.1', self.port, 'primary.test', raw=True)
        self.addCleanup(self.primary.stop)
        gate = threading.Event()
        self.addCleanup(gate.set)
        self.primary.data_hook = lambda dl: gate.wait(20)  # the first message's final reply waits
        self.start()
        send(self.d, 'bob@sender.test', [TO], data=b'Subject: first\r\n\r\nA\r\n')
        mxv.wait_until(lambda: b'Subject: first' in b''.join(self.primary.raw()), 10, 'the first message')
        drill = self.start_stalled_drill()
        send(self.d, 'bob@sender.test', [TO], data=b'Subject: second\r\n\r\nB\r\n')
        self.d.wait_queue(2)
        gate.set()
        session = lambda: [b for b in self.primary.raw() if b'Subject: first' in b][0]  # noqa: E731
        mxv.wait_until(lambda: session().endswith(b'QUIT\r\n'), 10, 'the connection to end')
        self.assertEqual(session().count(b'MAIL FROM'), 1, session())
        self.assertEqual(len(self.primary.deliveries()), 1)
        drill.kill()
        got = self.primary.wait_deliveries(2, 10, 'the second message once the drill is gone')
        self.assertIn(b'Subject: second', got[1].data)

    def write_readable_config(self):
        """The daemon's files rewritten for a reload, readable by the user it runs as."""
        self.d.write_config()
        os.chmod(self.d.dir, 0o755)
        for name in os.listdir(self.d.dir):
            path = os.path.join(self.d.dir, name)
            if os.path.isfile(path):
                os.chmod(path, 0o644)

    def test_a_reload_that_drops_the_held_domain_does_not_keep_it_held(self):
        """A reload drops the drill's domain, then the command goes: its hold goes too.

        The release looked the domain up in the configuration, so the hold of a
        domain no longer configured stayed on for good: once the domain was back,
        its mail never went out again and every drill of it was refused.
        """
        keys = {'spf': 'off', 'dmarc': 'off'}
        ex = dict(keys, recipients=['alice'], primary='127.0.0.1:%d' % self.port)
        other = dict(keys, primary='127.0.0.1:%d' % self.port)
        # a resolver that never answers: the dropped domain's mail must not ask the host's DNS
        self.d = mxv.Daemon(domains={'example.com': ex, 'other.test': other}, hold=False, probe_interval='1s',
                            retry_min='1s', retry_max='2s', resolver='127.0.0.1:%d' % mxv.free_port())
        self.addCleanup(self.d.cleanup)
        self.start()
        drill = self.start_stalled_drill()
        qid = self.held_mail()
        self.d.domains = {'other.test': other}
        self.write_readable_config()
        r = self.d.control('reload')
        self.assertEqual(r[-1], ('x', b'0'), r)
        drill.kill()
        drill.wait(10)
        self.d.wait_log(r'drill: domain=example\.com tag=\w+ interrupted: the command went away; delivery released')
        self.d.domains = {'example.com': ex, 'other.test': other}
        self.write_readable_config()
        r = self.d.control('reload')
        self.assertEqual(r[-1], ('x', b'0'), r)
        got = self.primary.wait_deliveries(1, 20, 'the held message once its domain is back')
        self.assertIn(b'held by the drill', got[0].data)
        self.assertEqual(self.d.wait_queue(0), [], qid)
        p = self.drill(timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_one_drill_per_domain_and_other_domains_flow(self):
        self.start()
        first = self.start_stalled_drill()
        p = self.drill()
        self.assertEqual(p.returncode, 75, p.stdout + p.stderr)
        self.assertIn('a drill of example.com is already running', p.stderr)
        # the hold is the domain's alone
        send(self.d, 'bob@sender.test', ['carol@other.test'])
        got = self.primary.wait_deliveries(1, 10)
        self.assertEqual(got[0].rcpt_tos, ['carol@other.test'])
        first.kill()

    def test_usage_and_a_daemon_that_is_not_running(self):
        self.start()
        cases = [
            (('example.com', '--to', 'alice@other.test'), 64, '--to must be a plain address at example.com'),
            (('nothere.test', '--to', 'a@nothere.test'), 64, 'nothere.test is not a backed-up domain'),
            (('example.com',), 64, 'missing -c FILE or --to ADDRESS'),
            (('example.com', '--to', TO, '--timeout', '0s'), 64, '--timeout'),
        ]
        for args, code, text in cases:
            with self.subTest(args=args):
                extra = () if args == ('example.com',) else ('-c', self.d.conf)
                p = mxv.run_cli('drill', *args, *extra)
                self.assertEqual(p.returncode, code, p.stderr)
                self.assertIn(text, p.stderr)
        self.d.stop()
        p = self.drill()
        self.assertEqual(p.returncode, 69, p.stderr)
        self.assertIn('the daemon is not running', p.stderr)


if __name__ == '__main__':
    unittest.main()
