"""End-to-end tests of the alerts without mail (issue 10, section 4):
[server] notify_command runs, with EVENT, DOMAIN, QUEUED, OLDEST_AGE and
DETAIL in its environment, once per change of state, never per message.

The command is a small shell script that appends one line per run to a
file ("EVENT|DOMAIN|QUEUED|OLDEST_AGE|DETAIL"); the primary is an aiosmtpd
server (fwdlib.Primary) on a loopback port that refuses connections until
the test starts it. What is asserted is what an operator sees: the lines
the command wrote, in order, and the daemon's log (a command that hangs is
killed at notify_timeout; junk it prints is logged escaped and bounded;
SMTP answers while a command runs).

Run with /usr/bin/python3 (python3-aiosmtpd).
"""
import http.server
import json
import os
import pwd
import re
import subprocess
import tempfile
import threading
import time
import unittest

import fwdlib
import mxv
from fwdlib import Primary, send

DOMAIN = 'alerts.test'
SENDER = ''  # the null sender: nothing here may cause a DSN (there is no DNS for it)


def daemon_user_ids():
    """The uid and gid the daemon's children run as (root drops to user mxvault)."""
    if os.geteuid() != 0:
        return os.geteuid(), os.getegid()
    pw = pwd.getpwnam('mxvault')
    return pw.pw_uid, pw.pw_gid


@unittest.skipUnless(fwdlib.Controller is not None, 'needs python3-aiosmtpd (run with /usr/bin/python3)')
class AlertsBase(unittest.TestCase):
    # The script's body after the line it appends (script_head: before it); %(out)s is the output file.
    script_tail = ''

    def setUp(self):
        self.pport = mxv.free_port()
        self.primary = Primary('127.0.0.1', self.pport, 'mx.alerts.test')
        self.addCleanup(self.primary.stop)

    def daemon(self, domains=None, script_tail=None, script_head='', **server):
        domains = domains or {DOMAIN: {}}
        domains = {name: dict({'primary': '127.0.0.1:%d' % self.pport}, **keys) for name, keys in domains.items()}
        keys = {'probe_interval': '1s', 'retry_min': '1s', 'retry_max': '2s'}
        keys.update(server)
        d = mxv.Daemon(domains=domains, hold=False, **keys)
        self.addCleanup(d.cleanup)
        # The command runs as the daemon's user: its directory must be reachable and writable.
        os.chmod(d.dir, 0o711)
        self.outdir = os.path.join(d.dir, 'alerts')
        os.mkdir(self.outdir, 0o700)
        os.chown(self.outdir, *daemon_user_ids())
        self.out = os.path.join(self.outdir, 'events')
        script = os.path.join(d.dir, 'notify.sh')
        tail = self.script_tail if script_tail is None else script_tail
        with open(script, 'w') as f:
            f.write('#!/bin/sh\n' + script_head +
                    'printf "%%s|%%s|%%s|%%s|%%s\\n" "$EVENT" "$DOMAIN" "$QUEUED" "$OLDEST_AGE" "$DETAIL" >> %s\n'
                    % self.out + tail % {'out': self.out})
        os.chmod(script, 0o755)
        d.server['notify_command'] = script
        d.write_config()
        return d

    def lines(self):
        try:
            with open(self.out) as f:
                return [line.rstrip('\n').split('|', 4) for line in f]
        except FileNotFoundError:
            return []

    def events(self):
        return [line[0] for line in self.lines()]

    def wait_event(self, name, timeout=15):
        return mxv.wait_until(lambda: [ln for ln in self.lines() if ln[0] == name], timeout,
                              'event %s (have %s)' % (name, self.events()))

    def wait_down(self, d):
        d.wait_log(r'delivery: dest=%s deferred=' % re.escape(DOMAIN), timeout=10)


class TestOutageAndRecovery(AlertsBase):
    def test_events_in_order_once_per_state_change(self):
        """Several messages during an outage: queuing once, then recovered and drained, in that order
        (a slow command for "recovered" holds "drained" back: a domain's alerts never overtake each other)."""
        with self.daemon(script_head='if [ "$EVENT" = recovered ]; then sleep 0.5; fi\n') as d:
            for i in range(3):
                send(d, SENDER, 'u%d@%s' % (i, DOMAIN))
            first = self.wait_event('queuing')[0]
            for i in range(3, 6):  # more mail while down: no new alert
                send(d, SENDER, 'u%d@%s' % (i, DOMAIN))
            d.wait_queue(6)
            self.primary.start()
            self.primary.wait_deliveries(1, timeout=15)
            self.wait_event('drained', timeout=20)
            mxv.wait_until(lambda: sum(len(dl.rcpt_tos) for dl in self.primary.deliveries()) >= 6, 15,
                           'all six delivered')
            d.wait_queue(0)
            d.stop()
            lines, log = self.lines(), d.log_text()
        self.assertEqual([ln[0] for ln in lines], ['queuing', 'recovered', 'drained'], lines)
        self.assertEqual({ln[1] for ln in lines}, {DOMAIN})
        self.assertGreaterEqual(int(first[2]), 1)                 # QUEUED when it went down
        self.assertRegex(first[4], r'^4\d\d ')                    # DETAIL: why (the deferral's reply)
        recovered, drained = lines[1], lines[2]
        self.assertEqual(recovered[2], '6')                       # all six waiting when it came back
        self.assertRegex(recovered[4], r'answers again after \d+s')
        self.assertEqual(drained[2], '0')
        self.assertEqual(drained[3], '0')                         # OLDEST_AGE: nothing left
        self.assertRegex(log, r'alert: warning: event=queuing domain=alerts\.test queued=\d+')
        self.assertRegex(log, r'notify: event=drained pid=\d+ exit=0')
        print('\nevents: ' + ' / '.join('|'.join(ln) for ln in lines))


class TestStandby(AlertsBase):
    def test_outage_without_mail_has_no_drained(self):
        """A standby domain's probes see the primary down and back with nothing queued: queuing and recovered,
        and no "drained" later, when mail that came in meanwhile is delivered."""
        with self.daemon({DOMAIN: {'accept': 'when-primary-down'}}) as d:
            first = self.wait_event('queuing')[0]
            self.primary.start()
            self.wait_event('recovered')
            d.wait_log(r'standby: domain=alerts\.test primary=up')
            self.primary.stop()
            # Down again: taken, queued, delivered once the primary is back; one pair of alerts per outage.
            mxv.wait_until(lambda: len([e for e in self.events() if e == 'queuing']) >= 2, 15, 'the second outage')
            send(d, SENDER, 'a@' + DOMAIN)
            self.primary.start()
            self.wait_event('drained', timeout=20)
            d.stop()
            events = self.events()
        self.assertEqual(first[2], '0')
        self.assertEqual(events, ['queuing', 'recovered', 'queuing', 'recovered', 'drained'])


class TestTimeAlerts(AlertsBase):
    def test_old_mail_and_expiring_once(self):
        """Oldest past alert_age: old-mail once; within a day of expiring: expiring once; both ahead of recovery."""
        with self.daemon({DOMAIN: {'retention': '1m'}}, alert_age='2s') as d:
            for i in range(3):
                send(d, SENDER, 'u%d@%s' % (i, DOMAIN))
            old = self.wait_event('old-mail')[0]
            exp = self.wait_event('expiring')[0]
            # Two more probes (probe_interval 1s), so two more checks (every second with alert_age = 2s)
            # while both conditions still hold.
            probes = d.log_text().count('delivery: dest=alerts.test deferred=')
            mxv.wait_until(lambda: d.log_text().count('delivery: dest=alerts.test deferred=') >= probes + 2, 10,
                           'two more probes')
            self.primary.start()
            self.wait_event('drained', timeout=20)
            d.stop()
            events = self.events()
        for name in ('queuing', 'old-mail', 'expiring', 'recovered', 'drained'):
            self.assertEqual(events.count(name), 1, events)
        self.assertEqual(events[0], 'queuing')
        self.assertEqual(events[-2:], ['recovered', 'drained'])
        self.assertEqual(old[2], '3')
        self.assertGreaterEqual(int(old[3]), 2)                   # OLDEST_AGE past alert_age
        self.assertRegex(old[4], r'waited \d+s \(alert_age 2s\)')
        self.assertRegex(exp[4], r'expires \(and bounces\) in \d+s')


class TestBounceGuard(AlertsBase):
    def test_bounce_guard_on_and_off(self):
        """A primary that comes back refusing everything: bounce-guard once, bounce-guard-off when it accepts."""
        refuse = {'on': True}
        self.primary.rcpt_reply = lambda a: '550 5.1.1 User unknown (misconfigured)' if refuse['on'] else None
        with self.daemon(bounce_guard='50%', bounce_guard_hold='1h') as d:
            rcpts = ['g%02d@%s' % (i, DOMAIN) for i in range(12)]
            for r in rcpts:
                send(d, SENDER, r)
            self.wait_event('queuing')
            self.primary.start()
            guard = self.wait_event('bounce-guard')[0]
            # Held mail is retried (and refused again) while the guard is on: no second alert.
            mxv.wait_until(lambda: len(self.primary.rcpt_replies) >= len(rcpts) + 3, 15, 'retries under the guard')
            refuse['on'] = False
            self.wait_event('drained', timeout=20)
            d.stop()
            events = self.events()
        self.assertEqual(events, ['queuing', 'recovered', 'bounce-guard', 'bounce-guard-off', 'drained'])
        self.assertEqual(guard[1], DOMAIN)
        self.assertEqual(guard[4], 'most recipients were refused after a recovery')


class TestSpoolAlerts(AlertsBase):
    def test_spool_size_and_disk_space(self):
        """The spool's files past alert_spool_size, and free space under twice min_free_space: one alert each."""
        vfs = os.statvfs(tempfile.gettempdir())  # where mxv.Daemon puts the spool
        free = vfs.f_bavail * vfs.f_frsize
        min_free = int(free * 0.7)  # under twice it, still above it: mail is taken
        with self.daemon(alert_spool_size='2K', min_free_space=str(min_free), alert_age='2s') as d:
            body = 'x' * 70 + '\r\n'
            for i in range(2):
                send(d, SENDER, 'u%d@%s' % (i, DOMAIN),
                     data=mxv.message('a@b.test', 'u@%s' % DOMAIN, body=body * 40))
            size = self.wait_event('spool-size')[0]
            space = self.wait_event('disk-space')[0]
            send(d, SENDER, 'u9@%s' % DOMAIN)  # mail is still taken above min_free_space
            d.stop()
            events = self.events()
        self.assertEqual(events.count('spool-size'), 1)
        self.assertEqual(events.count('disk-space'), 1)
        self.assertEqual(size[1], '')                             # no DOMAIN: the spool's own
        self.assertRegex(size[4], r'the spool takes \d+ bytes \(alert_spool_size 2048\)')
        self.assertRegex(space[4], r'\d+ bytes free for the spool; mail is refused under min_free_space %d'
                         % min_free)


class TestCommandRuns(AlertsBase):
    def test_hung_command_is_killed_and_smtp_still_answers(self):
        """A command that hangs is killed (with what it started) at notify_timeout; one runs at a time per kind,
        the next alert of its kind waits for it; SMTP and the control socket answer meanwhile."""
        marker = str(20000 + os.getpid() % 10000)
        domains = {DOMAIN: {}, 'second.test': {}}
        with self.daemon(domains, script_tail='sleep %s\n' % marker, notify_timeout='3s') as d:
            send(d, SENDER, 'a@' + DOMAIN)
            send(d, SENDER, 'b@second.test')
            self.wait_event('queuing')
            # The command sleeps: the loop does not.
            t0 = time.monotonic()
            send(d, SENDER, 'c@' + DOMAIN)
            self.assertEqual(d.control('ping'), [('o', b'pong'), ('x', b'0')])
            self.assertLess(time.monotonic() - t0, 2.0, 'SMTP waited for the command')
            self.assertEqual(len(self.lines()), 1, 'two commands of one kind at once')
            d.wait_log(r'notify: warning: event=queuing pid=\d+ still running after notify_timeout=3s: killing it',
                       timeout=10)
            mxv.wait_until(lambda: len(self.lines()) >= 2, 10, 'the second domain\'s queuing alert')
            self.assertRegex(d.log_text(), r'notify: warning: event=queuing pid=\d+ signal=9 ms=\d+ timed_out=yes')
            self.assertEqual({ln[1] for ln in self.lines()}, {DOMAIN, 'second.test'})
            mxv.wait_until(lambda: d.log_text().count('timed_out=yes') >= 2, 10, 'the second run killed')
            self.assertEqual(self.sleepers(marker), [], 'the command\'s own child outlived the kill')
            d.stop()

    @staticmethod
    def sleepers(marker):
        found = []
        for pid in filter(str.isdigit, os.listdir('/proc')):
            try:
                with open('/proc/%s/cmdline' % pid, 'rb') as f:
                    if f.read() == b'sleep\0' + marker.encode() + b'\0':
                        found.append(pid)
            except OSError:
                pass
        return found

    def test_junk_output_is_logged_escaped_and_bounded(self):
        tail = ('printf "bell\\007 esc\\033[31m red\\r\\n"\n'
                'head -c 300000 /dev/zero | tr "\\000" "A"\n'
                'echo to-stderr >&2\n')
        with self.daemon(script_tail=tail) as d:
            send(d, SENDER, 'a@' + DOMAIN)
            self.wait_event('queuing')
            m = d.wait_log(r'notify: event=queuing pid=\d+ exit=0 ms=\d+ output_not_logged=(\d+)B', timeout=10)
            d.stop()
            text = d.log_text()
        out = [ln for ln in text.splitlines() if re.match(r'.*notify: event=queuing pid=\d+ output=', ln)]
        self.assertIn(r'bell\x07 esc\x1b[31m red"', out[0])
        self.assertNotIn('\x1b', text)
        self.assertNotIn('\x07', text)
        logged = sum(len(re.search(r'output="(.*)"$', ln).group(1)) for ln in out)
        self.assertLessEqual(logged, 4096 + 64)  # NOTIFY_LOG_MAX, plus the escapes of the first line
        self.assertGreater(int(m.group(1)), 290000)
        self.assertNotIn('to-stderr', text)  # past the cap: read and dropped, not logged


class Sink:
    """An HTTP server on loopback that keeps every POST (path, headers, body) and answers 200."""

    def __init__(self):
        got = self.got = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get('Content-Length', 0)))
                got.append((self.path, dict(self.headers), body))
                self.send_response(200)
                self.send_header('Content-Length', '0')
                self.end_headers()

            def log_message(self, *args):
                pass
        self.httpd = http.server.HTTPServer(('127.0.0.1', 0), Handler)
        self.url = 'http://127.0.0.1:%d/hook' % self.httpd.server_port
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class TestContribScripts(unittest.TestCase):
    """contrib/notify-http.sh, run as mxvault runs it (the alert in the environment), against a local server."""
    ENV = {'EVENT': 'queuing', 'DOMAIN': 'example.com', 'QUEUED': '12', 'OLDEST_AGE': '30',
           'DETAIL': '451 4.4.1 "quoted" \\ back', 'MXVAULT_HOST': 'backup.test', 'PATH': '/usr/bin:/bin'}

    SCRIPT = os.path.join(mxv.REPO, 'contrib', 'notify-http.sh')

    def run_script(self, mode):
        sink = Sink()
        self.addCleanup(sink.close)
        p = subprocess.run([self.SCRIPT, mode, sink.url], env=self.ENV,
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(len(sink.got), 1)
        return sink.got[0]

    def test_webhook_posts_the_alert_as_json(self):
        path, headers, body = self.run_script('webhook')
        self.assertEqual(headers['Content-Type'], 'application/json')
        self.assertEqual(json.loads(body), {'event': 'queuing', 'domain': 'example.com', 'queued': 12,
                                            'oldest_age': 30, 'detail': '451 4.4.1 "quoted" \\ back',
                                            'host': 'backup.test'})

    def test_ntfy_publishes_with_a_title_and_priority(self):
        path, headers, body = self.run_script('ntfy')
        self.assertEqual(headers['Title'], 'mxvault backup.test: queuing example.com')
        self.assertEqual(headers['Priority'], 'high')
        self.assertEqual(body.decode(), '451 4.4.1 "quoted" \\ back (queued 12, oldest 30s)')

    def test_slack_posts_text(self):
        path, headers, body = self.run_script('slack')
        text = json.loads(body)['text']
        self.assertIn('*queuing* example.com on backup.test: 451 4.4.1 "quoted" \\ back', text)

    def test_no_url_or_mode_is_a_usage_error(self):
        for args in (['webhook'], ['ntfy'], [], ['email', 'http://127.0.0.1:9/']):
            p = subprocess.run([self.SCRIPT] + args, env=self.ENV, capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 64, args)
            self.assertRegex(p.stderr, 'usage|no URL')


class TestAlertConfig(unittest.TestCase):
    def test_bad_values_are_reported_with_their_line(self):
        d = mxv.Daemon(hold=False, notify_timeout='2h', alert_age='0', alert_spool_size='lots')
        self.addCleanup(d.cleanup)
        p = mxv.run_cli('config', 'check', '-c', d.conf)
        self.assertEqual(p.returncode, 78, p.stderr)
        for key, why in (('notify_timeout', 'must be at most 1h'), ('alert_age', 'must be at least 1s'),
                         ('alert_spool_size', 'expected a size')):
            self.assertRegex(p.stderr, r'%s:\d+: bad value for %s: .*%s' % (re.escape(d.conf), key, why))


class TestWithoutCommand(unittest.TestCase):
    def test_alerts_are_logged_without_a_command(self):
        d = mxv.Daemon(domains={DOMAIN: {'primary': '127.0.0.1:%d' % mxv.free_port()}}, hold=False,
                       probe_interval='1s', retry_min='1s')
        with d:
            send(d, SENDER, 'a@' + DOMAIN)
            d.wait_log(r'alert: warning: event=queuing domain=alerts\.test queued=1 oldest_age=\d+s detail="4\d\d ')
            self.assertNotIn('notify: event=', d.log_text())


if __name__ == '__main__':
    unittest.main()
