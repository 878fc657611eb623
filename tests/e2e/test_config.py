"""End-to-end tests of the command line and configuration loading: a good
configuration is printed back in full; every bad one is refused before
anything starts, with "FILE:LINE: message" on stderr and exit 78 (EX_CONFIG)
from both `config check` and `serve`; bad usage exits 64 (EX_USAGE).
"""
import os
import re
import subprocess
import unittest

import mxv

EX_USAGE = 64
EX_CONFIG = 78


class ConfigCase(unittest.TestCase):
    def setUp(self):
        self.d = mxv.Daemon()  # not started: used for its directory, port and config
        self.addCleanup(self.d.cleanup)

    def write(self, name, text):
        path = os.path.join(self.d.dir, name)
        with open(path, 'w', encoding='utf-8') as f:
            f.write(text)
        return path

    def assert_refused(self, conf, expect=None, report_file=None):
        """config check and serve both exit 78 with FILE:LINE: messages."""
        report_file = report_file or conf
        line_rx = re.compile(r'^%s:\d+: ' % re.escape(report_file))
        p = mxv.run_cli('config', 'check', '-c', conf)
        self.assertEqual(p.returncode, EX_CONFIG, p.stdout + p.stderr)
        self.check_stderr(p.stderr, line_rx, expect)
        self.assertEqual(p.stdout, '')

        proc = subprocess.Popen([mxv.BIN, 'serve', '-c', conf], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors='replace')
        try:
            out, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            self.fail('serve kept running on a bad configuration')
        self.assertEqual(proc.returncode, EX_CONFIG, out + err)
        self.check_stderr(err, line_rx, expect)
        self.assertFalse(mxv.port_open(self.d.port), 'serve listened on a bad configuration')
        self.assertFalse(os.path.exists(self.d.spool) and os.listdir(self.d.spool),
                         'serve wrote to the spool on a bad configuration')

    def check_stderr(self, err, line_rx, expect):
        lines = [l for l in err.splitlines() if l]
        self.assertTrue(lines, 'no message on stderr')
        for l in lines:
            self.assertRegex(l, line_rx)
        if expect:
            self.assertRegex(err, expect)

    def good_config(self, **server):
        for k, v in server.items():
            self.d.server[k] = v
        self.d.write_config()
        return self.d.conf


class TestConfigCheck(ConfigCase):
    def test_good_config_prints_effective_config(self):
        conf = self.good_config(max_message_size='1M', max_recipients=5, command_timeout='2s')
        p = mxv.run_cli('config', 'check', '-c', conf)
        self.assertEqual(p.returncode, 0, p.stderr)
        # The only message: any.test accepts every address (recipients = *).
        self.assertRegex(p.stderr, r'^%s:\d+: warning: \[domain any\.test\] accepts every address '
                         r'\(recipients = \*\)[^\n]*\n$' % re.escape(conf))
        self.assertIn('max_message_size = ', p.stdout)
        self.assertRegex(p.stdout, r'(?m)^max_recipients = 5$')
        self.assertRegex(p.stdout, r'(?m)^listen = 127\.0\.0\.1:%d$' % self.d.port)
        self.assertRegex(p.stdout, r'(?m)^\[domain example\.com\]$')
        self.assertRegex(p.stdout, r'(?m)^\[domain any\.test\]$')
        # Defaults are printed too: the effective configuration, not the file.
        self.assertRegex(p.stdout, r'(?m)^max_sessions = \d+$')
        # config check does not start anything.
        self.assertFalse(mxv.port_open(self.d.port))

    def test_printed_config_loads_again(self):
        conf = self.good_config(max_message_size='1M')
        p = mxv.run_cli('config', 'check', '-c', conf, check=0)
        again = self.write('printed.conf', p.stdout)
        q = mxv.run_cli('config', 'check', '-c', again, check=0)
        strip = lambda s: [l for l in s.splitlines() if not l.startswith('#')]
        self.assertEqual(strip(q.stdout), strip(p.stdout))

    def test_good_config_serves(self):
        self.good_config(max_message_size='1M')
        self.d.start()
        self.addCleanup(self.d.stop)
        with self.d.smtp() as s:
            self.assertEqual(s.ehlo()[0], 250)
            self.assertEqual(s.esmtp_features['size'], str(1 << 20))


class TestBadConfig(ConfigCase):
    def bad(self, extra_server='', extra='', expect=None):
        text = self.d.config_text().replace('[server]\n', '[server]\n' + extra_server, 1) + extra
        conf = self.write('bad.conf', text)
        self.assert_refused(conf, expect)

    def test_unknown_key(self):
        self.bad('no_such_key = 1\n', expect=r':2: .*no_such_key')

    def test_unknown_domain_key(self):
        self.bad(extra='\n[domain other.test]\nfrobnicate = yes\n', expect='frobnicate')

    def test_unknown_section(self):
        self.bad(extra='\n[clients]\nfoo = bar\n')

    def test_bad_size(self):
        self.bad('max_message_size = 12Q\n', expect=r':2: .*max_message_size')

    def test_bad_values(self):
        for line in ('max_recipients = 0\n', 'max_recipients = lots\n', 'command_timeout = 5 fortnights\n',
                     'reject_bare_lf = perhaps\n', 'listen = 127.0.0.1\n', 'max_message_size = -1M\n'):
            with self.subTest(line=line):
                self.bad(line)

    def test_malformed_line(self):
        self.bad('this line has no equals sign\n')

    def test_no_domain(self):
        d = mxv.Daemon(domains={})
        self.addCleanup(d.cleanup)
        self.assert_refused(d.conf, expect='domain')

    def test_recipients_required(self):
        # No backscatter by default: a domain must list its recipients or say "*".
        d = mxv.Daemon(domains={'example.com': {'recipients': None}})
        self.addCleanup(d.cleanup)
        self.assert_refused(d.conf, expect=r':\d+: \[domain example\.com\] needs recipients = FILE or '
                                           r'recipients = \*$')

    @unittest.skipUnless(os.geteuid() == 0, 'the user is looked up only when started as root')
    def test_unknown_user(self):
        self.bad('user = nosuchuser\n', expect=r':2: user nosuchuser does not exist \(create it with '
                                              r'adduser --system nosuchuser, or set user =\)$')

    def test_missing_recipients_file(self):
        missing = os.path.join(self.d.dir, 'no-such-file')
        self.bad(extra='\n[domain other.test]\nrecipients = %s\n' % missing, expect=re.escape(missing))

    def test_recipients_file_is_a_directory(self):
        self.bad(extra='\n[domain other.test]\nrecipients = %s\n' % self.d.dir)

    def test_unwritable_spool(self):
        plain = self.write('plain-file', 'not a directory\n')
        self.d.server['spool'] = os.path.join(plain, 'spool')
        conf = self.write('bad.conf', self.d.config_text())
        self.assert_refused(conf, expect='spool')

    def test_unreadable_config(self):
        missing = os.path.join(self.d.dir, 'missing.conf')
        self.assert_refused(missing, expect=re.escape(missing))
        self.assert_refused(self.d.dir)  # a directory
        if os.geteuid() != 0:  # root reads mode 000 files anyway
            conf = self.good_config()
            os.chmod(conf, 0)
            self.assert_refused(conf)

    def test_every_problem_reported(self):
        self.bad('no_such_key = 1\nmax_message_size = 12Q\nmax_errors = many\n')
        p = mxv.run_cli('config', 'check', '-c', os.path.join(self.d.dir, 'bad.conf'))
        self.assertEqual(len(p.stderr.splitlines()), 3, p.stderr)

    def test_port_in_use(self):
        # Not a config error: the daemon still must not run half-started.
        with self.d:
            other = mxv.Daemon()
            self.addCleanup(other.cleanup)
            other.server['listen'] = self.d.server['listen']
            other.write_config()
            p = subprocess.run([mxv.BIN, 'serve', '-c', other.conf], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=15)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn('cannot listen', p.stderr)
            with self.d.smtp() as s:  # the first daemon is unharmed
                self.assertEqual(s.noop()[0], 250)


class TestUsage(unittest.TestCase):
    def usage(self, *args):
        p = mxv.run_cli(*args)
        self.assertEqual(p.returncode, EX_USAGE, p.stdout + p.stderr)
        self.assertIn('usage:', p.stderr)
        self.assertEqual(p.stdout, '')

    def test_serve_without_config(self):
        self.usage('serve')

    def test_unknown_command(self):
        self.usage('bogus')

    def test_no_command(self):
        self.usage()

    def test_bad_option(self):
        self.usage('queue', 'list', '--bogus', '-c', 'f')
        self.usage('serve', '-x', '-c', 'f')
        self.usage('config', 'check', '--json', '-c', 'f')  # --json belongs to queue list

    def test_missing_option_argument(self):
        self.usage('serve', '-c')

    def test_extra_argument(self):
        self.usage('serve', '-c', 'f', 'extra')

    def test_bad_subcommand(self):
        self.usage('config', 'frob', '-c', 'f')
        self.usage('queue', 'frob', '-c', 'f')  # flush is a verb since issue 10

    def test_help(self):
        p = mxv.run_cli('--help')
        self.assertEqual(p.returncode, 0)
        self.assertIn('usage:', p.stdout)


if __name__ == '__main__':
    unittest.main(verbosity=2)
