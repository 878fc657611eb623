"""Queue control (issue 10, section 1): `mxvault queue show, export, hold,
release, delete, flush, extend` against the real daemon. The primary of
primary.test is an aiosmtpd server (fwdlib.Primary) started and stopped by
the tests (stopped: the destination is down and its mail queues); the
sender's domain, bounces.test, is backed up too, and its primary is a sink
that records every DSN. No DNS is involved: both primaries are configured
as 127.0.0.1:PORT. Every wait has a deadline (mxv.wait_until).

The extension test (held mail too) waits for a one-minute retention (the configured
minimum) to run out: about 65 s. Run with /usr/bin/python3
(python3-aiosmtpd).
"""
import json
import os
import re
import subprocess
import sys
import shutil
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fwdlib  # noqa: E402
import mxv  # noqa: E402
from fwdlib import Primary, send  # noqa: E402

SENDER = 'alice@bounces.test'
DOMAIN = 'primary.test'
NOT_QUEUED = '0123456789abcdef'


def have_tools():
    return fwdlib.Controller is not None


@unittest.skipUnless(have_tools(), 'needs python3-aiosmtpd (run with /usr/bin/python3)')
class QueueControlBase(unittest.TestCase):
    def setUp(self):
        self.primary = Primary(mxv.HOST, mxv.free_port(), 'mx.primary.test')
        self.addCleanup(self.primary.stop)
        self.sink = Primary(mxv.HOST, mxv.free_port(), 'mx.bounces.test').start()
        self.addCleanup(self.sink.stop)

    def daemon(self, primary_keys=None, **server):
        keys = {'probe_interval': '1s', 'retry_min': '1s', 'retry_max': '4s'}
        keys.update(server)
        domains = {
            DOMAIN: dict({'primary': '%s:%d' % (mxv.HOST, self.primary.port)}, **(primary_keys or {})),
            'bounces.test': {'primary': '%s:%d' % (mxv.HOST, self.sink.port)},
        }
        d = mxv.Daemon(domains=domains, hold=False, **keys)
        self.addCleanup(d.cleanup)
        d.start()
        return d

    def queue(self, d, *args, check=0):
        return mxv.run_cli('queue', *args, '-c', d.conf, check=check)

    def queue_json(self, d, *args):
        return json.loads(self.queue(d, *args, '--json').stdout)

    def message_ids(self, d):
        return [m['id'] for m in d.queue()]

    def states(self, d, qid):
        return [r['state'] for m in d.queue() if m['id'] == qid for r in m['recipients']]

    def wait_deferred(self, d, qid):
        """The first attempt failed (the primary is down): the message waits."""
        d.wait_log(r'dest=%s deferred=' % re.escape(DOMAIN), timeout=10)
        mxv.wait_until(lambda: set(self.states(d, qid)) == {'deferred'}, 10, '%s deferred' % qid)

    def sent(self, d, qid):
        return re.search(r'id=%s to=<[^>]*> relay=\S+ code=250 status=sent' % qid, d.log_text())

    def delivered_ids(self, d):
        return set(re.findall(r'id=([0-9a-f]{16}) to=<[^>]*> relay=\S+ code=250 status=sent', d.log_text()))


class TestHold(QueueControlBase):
    def test_hold_id_survives_a_restart_and_release_delivers_it(self):
        d = self.daemon()
        held = send(d, SENDER, 'one@' + DOMAIN)
        other = send(d, SENDER, 'two@' + DOMAIN)
        self.wait_deferred(d, held)
        out = self.queue_json(d, 'hold', held)
        self.assertEqual(out, {'command': 'held', 'id': held})
        self.assertEqual(self.states(d, held), ['held'])
        self.assertIn(self.states(d, other), (['queued'], ['deferred']))
        d.restart()
        q = {m['id']: m for m in d.queue()}
        self.assertTrue(q[held]['held'], q)
        self.assertEqual(self.states(d, held), ['held'])
        # The primary comes back: the other message goes, the held one does not, even when flushed.
        self.primary.start()
        mxv.wait_until(lambda: self.sent(d, other), 15, 'the message not held to be delivered')
        self.assertEqual(self.queue_json(d, 'flush', DOMAIN)['command'], 'flushed')
        self.assertEqual(self.message_ids(d), [held])
        self.assertEqual(self.delivered_ids(d), {other})
        self.assertEqual(len(self.primary.deliveries()), 1)
        # Released: delivered at once.
        p = self.queue(d, 'release', held)
        self.assertEqual(p.stdout.strip(), '%s released' % held)
        mxv.wait_until(lambda: self.sent(d, held), 10, 'the released message to be delivered')
        d.wait_queue(0)
        self.assertEqual([dl.rcpt_tos for dl in self.primary.deliveries()], [['two@' + DOMAIN], ['one@' + DOMAIN]])
        d.wait_log(r'id=%s held by the administrator' % held)

    def test_hold_domain_covers_later_mail_across_a_restart(self):
        d = self.daemon()
        self.primary.start()
        self.assertEqual(self.queue_json(d, 'hold', DOMAIN.upper()), {'command': 'held', 'domain': DOMAIN})
        qid = send(d, SENDER, 'later@' + DOMAIN)   # arrives after the hold
        mxv.wait_until(lambda: self.states(d, qid) == ['held'], 10, 'the new message shown held')
        # Mail for another destination still flows; the held one is never connected to.
        other = send(d, 'carol@' + DOMAIN, 'bob@bounces.test')
        self.sink.wait_deliveries(1)
        mxv.wait_until(lambda: self.sent(d, other), 10, 'the other destination delivered')
        d.restart()
        d.wait_log(r'dest=%s held by the administrator since=' % re.escape(DOMAIN))
        self.queue(d, 'flush')
        self.assertEqual(self.states(d, qid), ['held'])
        self.assertEqual(self.primary.ehlos, 0, 'a held destination was connected to')
        self.assertEqual(self.primary.deliveries(), [])
        # Released: flushed at once.
        self.assertEqual(self.queue(d, 'release', DOMAIN).stdout.strip(), '%s released' % DOMAIN)
        self.primary.wait_deliveries(1)
        d.wait_queue(0)
        p = self.queue(d, 'release', DOMAIN, check=1)
        self.assertIn('%s is not held' % DOMAIN, p.stderr)

    def test_quarantined_message_is_delivered_when_released(self):
        from test_milter import Milter
        tmp = tempfile.mkdtemp(prefix='mxv-qc-')
        self.addCleanup(shutil.rmtree, tmp, True)
        m = Milter('quarantine', tmp)
        self.addCleanup(m.stop)
        self.primary.start()
        d = self.daemon(milter=m.spec)
        qid = send(d, SENDER, 'q@' + DOMAIN)
        d.wait_log(r'quarantined="looks like a virus": held, not delivered')
        self.assertEqual(self.states(d, qid), ['quarantined'])
        self.assertEqual(self.queue_json(d, 'release', qid), {'command': 'released', 'id': qid})
        self.primary.wait_deliveries(1)
        d.wait_queue(0)
        d.wait_log(r'id=%s released by the administrator from quarantine' % qid)

    def test_quarantine_released_after_its_retention_is_not_expired(self):
        # Quarantined past its retention (about 65 s), then released while the primary is down: the time in
        # quarantine is given back like a hold's, so it waits for the primary instead of bouncing at once.
        from test_milter import Milter
        tmp = tempfile.mkdtemp(prefix='mxv-qc-')
        self.addCleanup(shutil.rmtree, tmp, True)
        m = Milter('quarantine', tmp)
        self.addCleanup(m.stop)
        d = self.daemon(primary_keys={'retention': '1m', 'warn_after': '0'}, milter=m.spec)
        qid = send(d, SENDER, 'q@' + DOMAIN)
        d.wait_log(r'quarantined="looks like a virus": held, not delivered')
        time.sleep(65)   # the retention runs out while it is quarantined
        self.queue(d, 'release', qid)
        self.assertGreaterEqual(self.queue_json(d, 'show', qid)['retention_extended'], 60)
        self.wait_deferred(d, qid)
        time.sleep(3)   # a few ticks of the queue manager: expiry would have run
        self.assertNotRegex(d.log_text(), r'id=%s to=<[^>]*> status=expired' % qid)
        self.assertEqual(self.message_ids(d), [qid])
        self.assertEqual(self.sink.deliveries(), [])


class TestFlushDeleteExtend(QueueControlBase):
    def test_flush_ignores_the_backoff(self):
        d = self.daemon(retry_min='1h', retry_max='1h', probe_interval='1h')
        first = send(d, SENDER, 'a@' + DOMAIN)
        self.wait_deferred(d, first)
        self.primary.start()   # nothing would try it again for an hour
        out = self.queue_json(d, 'flush')
        self.assertEqual(out['command'], 'flushed')
        self.assertIsNone(out['domain'])
        self.assertEqual(out['jobs'], 1)
        self.primary.wait_deliveries(1, timeout=10)
        d.wait_queue(0)
        # flush DOMAIN: the same for one destination
        self.primary.stop()
        second = send(d, SENDER, 'b@' + DOMAIN)
        mxv.wait_until(lambda: self.states(d, second) == ['deferred'], 15, 'the second message deferred')
        self.primary.start()
        self.assertIn('flushed %s' % DOMAIN, self.queue(d, 'flush', DOMAIN).stdout)
        self.primary.wait_deliveries(2, timeout=10)
        d.wait_queue(0)

    def test_delete_removes_without_a_bounce(self):
        d = self.daemon()
        qid = send(d, SENDER, ['x@' + DOMAIN, 'y@' + DOMAIN])
        self.wait_deferred(d, qid)
        out = self.queue_json(d, 'delete', qid)
        self.assertEqual(out, {'command': 'deleted', 'id': qid, 'in_flight': False})
        d.wait_queue(0)
        d.wait_log(r'id=%s deleted by the administrator' % qid)
        d.wait_log(r'id=%s to=<y@primary\.test> status=deleted' % qid)
        self.queue(d, 'show', qid, check=1)
        # A bounce would be queued with the deletion; none was, and the sender's MX saw nothing.
        d.restart()
        self.assertNotIn('dsn-for=', d.log_text())
        self.assertEqual(self.sink.deliveries(), [])
        self.assertEqual(d.queue(), [])

    def test_extend_pushes_expiry_back_and_held_mail_never_expires(self):
        d = self.daemon(primary_keys={'retention': '1m', 'warn_after': '0'})
        plain = send(d, SENDER, 'plain@' + DOMAIN)
        longer = send(d, SENDER, 'longer@' + DOMAIN)
        held = send(d, SENDER, 'held@' + DOMAIN)
        out = self.queue_json(d, 'extend', longer, '1h')
        self.assertEqual(out, {'command': 'extended', 'id': longer, 'seconds': 3600, 'messages': 1})
        self.assertEqual(self.queue_json(d, 'show', longer)['retention_extended'], 3600)
        self.queue(d, 'hold', held)
        # The one not extended expires at its time; the extended and the held ones are still queued then.
        d.wait_log(r'id=%s to=<plain@primary\.test> status=expired' % plain, timeout=90)
        self.sink.wait_deliveries(1, timeout=15)   # the expiry's bounce
        self.assertEqual(sorted(self.message_ids(d)), sorted([longer, held]))
        self.assertNotRegex(d.log_text(), r'id=(%s|%s) to=<[^>]*> status=expired' % (longer, held))
        # Released after more than its retention: the time it was held is given back, so it is not expired now.
        self.queue(d, 'release', held)
        self.assertGreaterEqual(self.queue_json(d, 'show', held)['retention_extended'], 60)
        # DOMAIN form
        out = self.queue_json(d, 'extend', DOMAIN, '2h')
        self.assertEqual(out['messages'], 2)
        self.assertEqual(self.queue_json(d, 'show', longer)['retention_extended'], 3600 + 7200)
        self.assertEqual(sorted(self.message_ids(d)), sorted([longer, held]))
        self.assertEqual(len(self.sink.deliveries()), 1)
        self.queue(d, 'extend', longer, 'soon', check=64)
        # Beyond 100 years: refused for both forms (the DOMAIN one said '0 message(s)', exit 0)
        for what in (longer, DOMAIN):
            p = self.queue(d, 'extend', what, '10000w', check=64)
            self.assertIn('out of range', p.stderr)
        self.assertEqual(self.queue_json(d, 'show', longer)['retention_extended'], 3600 + 7200)

    def test_delete_during_an_attempt_ends_with_it(self):
        """A message on a connection when it is deleted: what the primary accepts in that
        attempt is delivered; what it defers or refuses goes without a bounce once the attempt ends."""
        gate = threading.Event()
        entered = threading.Event()

        def hold_the_dot(dl):
            entered.set()
            gate.wait(20)
        self.primary.data_hook = hold_the_dot
        replies = {'later': '451 4.3.0 later', 'refused': '550 5.1.1 no such user'}
        self.primary.rcpt_reply = lambda addr: replies.get(addr.split('@')[0])
        self.primary.start()
        self.addCleanup(gate.set)
        d = self.daemon(bounce_guard='0')   # a 5xx is a bounce, not held by the guard
        qid = send(d, SENDER, ['now@' + DOMAIN, 'later@' + DOMAIN, 'refused@' + DOMAIN])
        self.assertTrue(entered.wait(15), 'the delivery attempt never reached the dot')
        out = self.queue_json(d, 'delete', qid)
        self.assertEqual(out, {'command': 'deleted', 'id': qid, 'in_flight': True})
        gate.set()
        d.wait_log(r'id=%s to=<later@primary\.test> status=deleted' % qid)
        d.wait_queue(0)
        self.assertTrue(self.sent(d, qid), 'the recipient the primary took was delivered')
        # refused during the attempt: failed for good, but the message is deleted: no DSN
        d.wait_log(r'id=%s to=<refused@primary\.test> .*code=550 status=bounced' % qid)
        self.assertNotIn('dsn-for=', d.log_text())
        self.assertEqual(self.sink.deliveries(), [])


class TestShowExport(QueueControlBase):
    def test_show_prints_envelope_states_headers_and_body(self):
        d = self.daemon()
        body = 'first line of the body\r\nsecond\r\n'
        data = ('From: <%s>\r\nTo: <r@%s>\r\nSubject: evil \x1b[31mred\r\nX-Tag: 42\r\n\r\n%s' %
                (SENDER, DOMAIN, body)).encode()
        qid = send(d, SENDER, 'r@' + DOMAIN, data=data)
        self.wait_deferred(d, qid)
        text = self.queue(d, 'show', qid).stdout
        self.assertIn('id:          %s' % qid, text)
        self.assertIn('sender:      <%s>' % SENDER, text)
        self.assertIn('client:      127.0.0.1', text)
        self.assertRegex(text, r'recipient:\s+deferred\s+<r@primary\.test>.* last reply: 4\d\d ')
        self.assertIn('X-Tag: 42', text)
        self.assertIn('Subject: evil \\x1b[31mred', text)   # escaped, never raw
        self.assertNotIn('\x1b', text)
        self.assertNotIn('first line of the body', text)
        full = self.queue(d, 'show', qid, '--body').stdout
        self.assertIn('first line of the body\nsecond\n', full)
        j = self.queue_json(d, 'show', qid, '--body')
        self.assertEqual(j['id'], qid)
        self.assertEqual(j['sender'], SENDER)
        self.assertEqual(j['recipients'][0]['address'], 'r@' + DOMAIN)
        self.assertEqual(j['recipients'][0]['state'], 'deferred')
        self.assertRegex(j['recipients'][0]['reply'], r'^4\d\d ')
        self.assertTrue(j['message'].endswith(body), j['message'][-80:])
        self.assertIn('\x1b', j['message'])  # JSON carries it escaped; the decoder gives it back
        h = self.queue_json(d, 'show', qid)
        self.assertIn('X-Tag: 42\r\n', h['headers'])
        self.assertNotIn('first line', h['headers'])

    def test_export_is_reimported_by_a_real_mta(self):
        d = self.daemon()
        one = send(d, SENDER, ['p@' + DOMAIN, 'q@' + DOMAIN],
                   data=mxv.message(SENDER, 'p@' + DOMAIN, body='line one\r\n.leading dot\r\nend\r\n'))
        two = send(d, 'bob@bounces.test', 'r@' + DOMAIN)
        self.wait_deferred(d, one)
        out = tempfile.mkdtemp(prefix='mxv-export-')
        self.addCleanup(shutil.rmtree, out, True)
        res = self.queue_json(d, 'export', out)
        self.assertEqual(res['exported'], 2)
        self.assertEqual(sorted(res['ids']), sorted([one, two]))
        # The day the primary is lost: another MTA takes the mail, envelope from ID.json.
        new_primary = Primary(mxv.HOST, mxv.free_port(), 'new.primary.test').start()
        self.addCleanup(new_primary.stop)
        for qid in (one, two):
            with open(os.path.join(out, qid + '.json')) as f:
                env = json.load(f)
            rcpts = [r['address'] for r in env['recipients'] if r['pending']]
            eml = os.path.join(out, qid + '.eml')
            with open(eml, 'rb') as f:
                self.assertNotIn(b'\r\n', f.read())   # LF line ends, as sendmail -t and swaks want
            subprocess.run(['swaks', '--silent', '2', '--server', '%s:%d' % (mxv.HOST, new_primary.port),
                            '--from', env['sender'], '--to', ','.join(rcpts), '--data', '@' + eml],
                           check=True, capture_output=True, timeout=30)
            got = new_primary.wait_deliveries(1 if qid == one else 2)[-1]
            self.assertEqual(got.mail_from, env['sender'])
            self.assertEqual(sorted(got.rcpt_tos), sorted(rcpts))
            sent_on = self.queue_json(d, 'show', qid, '--body')['message'].encode()
            # swaks ends DATA with a line of its own: the message is the same up to it
            self.assertEqual(got.data.replace(b'\r\n', b'\n').rstrip(b'\n'), sent_on.replace(b'\r\n', b'\n').rstrip(b'\n'))
        with open(os.path.join(out, one + '.json')) as f:
            env = json.load(f)
        self.assertEqual([r['address'] for r in env['recipients']], ['p@' + DOMAIN, 'q@' + DOMAIN])
        self.assertEqual(env['client'], '127.0.0.1')
        self.assertEqual(env['helo'], 'client.test')

    def test_export_never_writes_through_what_it_finds(self):
        # export may run as root, into /var/tmp: what someone else left there must not redirect it
        d = self.daemon()
        qid = send(d, SENDER, 'p@' + DOMAIN)
        self.wait_deferred(d, qid)
        tmp = tempfile.mkdtemp(prefix='mxv-export-')
        self.addCleanup(shutil.rmtree, tmp, True)
        victim = os.path.join(tmp, 'victim')
        with open(victim, 'w') as f:
            f.write('precious\n')
        # a hard link named ID.eml in our own directory: replaced, the file it points at untouched
        out = os.path.join(tmp, 'ours')
        os.mkdir(out, 0o700)
        os.link(victim, os.path.join(out, qid + '.eml'))
        self.assertEqual(self.queue_json(d, 'export', out)['exported'], 1)
        with open(victim) as f:
            self.assertEqual(f.read(), 'precious\n')
        with open(os.path.join(out, qid + '.eml'), 'rb') as f:
            self.assertIn(b'Subject:', f.read())
        # a directory others may write to, or a symbolic link to one: refused, nothing written
        shared = os.path.join(tmp, 'shared')
        os.mkdir(shared)
        os.chmod(shared, 0o777)
        link = os.path.join(tmp, 'link')
        os.symlink(os.path.join(tmp, 'elsewhere'), link)
        os.mkdir(os.path.join(tmp, 'elsewhere'), 0o700)
        for where in (shared, link):
            p = self.queue(d, 'export', where, check=73)
            self.assertIn(where, p.stderr)
        self.assertEqual(os.listdir(shared), [])
        self.assertEqual(os.listdir(os.path.join(tmp, 'elsewhere')), [])


class TestErrors(QueueControlBase):
    def test_unknown_id_is_exit_1_and_no_daemon_is_exit_69(self):
        d = self.daemon()
        for args in (('hold', NOT_QUEUED), ('release', NOT_QUEUED), ('delete', NOT_QUEUED),
                     ('extend', NOT_QUEUED, '1h'), ('show', NOT_QUEUED)):
            with self.subTest(args=args):
                p = self.queue(d, *args, check=1)
                self.assertIn('mxvault: no message %s in the queue' % NOT_QUEUED, p.stderr)
        self.queue(d, 'hold', 'not a domain!', check=64)
        # The longest name there is, in every answer: whole JSON (the answers were once cut at 256 bytes).
        longest = '.'.join(['a' * 63, 'b' * 63, 'c' * 63, 'd' * 61])
        self.assertEqual(len(longest), 253)
        self.assertEqual(self.queue_json(d, 'extend', longest, '1d')['domain'], longest)
        self.assertEqual(self.queue_json(d, 'flush', longest)['domain'], longest)
        # A lasting hold on a name nothing goes to is refused: a typo, or a mistyped ID.
        p = self.queue(d, 'hold', longest, check=1)
        self.assertIn('mxvault: %s is not a queue ID, nor a domain backed up here or with mail queued' % longest,
                      p.stderr)
        self.queue(d, 'hold', 'nosuchid', check=1)
        self.assertEqual(self.queue_json(d, 'hold', 'bounces.test')['domain'], 'bounces.test')
        self.assertEqual(self.queue_json(d, 'release', 'bounces.test')['domain'], 'bounces.test')
        self.queue(d, 'release', longest, check=1)
        self.queue(d, 'hold', 'x' * 254, check=64)
        self.queue(d, 'frobnicate', check=64)
        self.assertEqual(self.queue_json(d, 'flush')['jobs'], 0)
        d.stop()
        for args in (('hold', NOT_QUEUED), ('release', DOMAIN), ('delete', NOT_QUEUED), ('flush',),
                     ('extend', DOMAIN, '1d')):
            with self.subTest(args=args, daemon='stopped'):
                p = self.queue(d, *args, check=69)
                self.assertIn('the daemon is not running', p.stderr)
        # The read-only commands work without it.
        self.assertEqual(self.queue_json(d, 'list'), [])
        self.queue(d, 'show', NOT_QUEUED, check=1)


if __name__ == '__main__':
    unittest.main()
