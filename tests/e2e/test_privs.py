"""End-to-end tests of least privilege (issue 6, section 4): started as root,
`serve` binds its port, then runs as `user` (here `nobody`) for good: /proc
shows no uid or gid 0 in any thread, the spool belongs to that user (a spool
left behind by root is taken over), and mail is still received and
delivered, to an aiosmtpd primary on loopback.
"""
import os
import pwd
import unittest

import fwdlib
import mxv

SENDER = 'sender@client.test'


def ids_of(pid):
    """{'Uid': [...], 'Gid': [...], 'Groups': [...]} of every thread of pid."""
    out = []
    for tid in os.listdir('/proc/%d/task' % pid):
        ids = {}
        with open('/proc/%d/task/%s/status' % (pid, tid)) as f:
            for line in f:
                key, _, value = line.partition(':')
                if key in ('Uid', 'Gid', 'Groups'):
                    ids[key] = [int(v) for v in value.split()]
        out.append(ids)
    return out


def owners(path):
    """(uid, gid) of path and of everything below it."""
    found = {(os.lstat(path).st_uid, os.lstat(path).st_gid)}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            st = os.lstat(os.path.join(root, name))
            found.add((st.st_uid, st.st_gid))
    return found


@unittest.skipUnless(os.geteuid() == 0, 'privileges are dropped only when started as root')
@unittest.skipUnless(fwdlib.Controller is not None, 'needs python3-aiosmtpd (run with /usr/bin/python3)')
class TestPrivilegeDrop(unittest.TestCase):
    def setUp(self):
        self.nobody = pwd.getpwnam('nobody')
        self.port = mxv.free_port()
        self.primary = fwdlib.Primary('127.0.0.2', self.port, 'primary.test')
        self.addCleanup(self.primary.stop)
        domains = {'example.com': {'recipients': ['alice'], 'primary': '127.0.0.2:%d' % self.port}}
        self.d = mxv.Daemon(domains=domains, hold=False, user='nobody', probe_interval='1s', retry_min='1s',
                            retry_max='2s')
        self.addCleanup(self.d.cleanup)

    def test_runs_as_user_with_no_root_left(self):
        d = self.d
        d.start()
        self.addCleanup(d.stop)
        d.wait_log(r'running as user=nobody uid=%d' % self.nobody.pw_uid)
        for ids in ids_of(d.pid):
            self.assertEqual(ids['Uid'], [self.nobody.pw_uid] * 4, ids)
            self.assertEqual(ids['Gid'], [self.nobody.pw_gid] * 4, ids)
            self.assertEqual(ids['Groups'], [self.nobody.pw_gid], ids)
        # Still a mail server: it takes mail, keeps it, and hands it on.
        fwdlib.send(d, SENDER, ['alice@example.com'])
        self.primary.start()
        dl = self.primary.wait_deliveries(1, timeout=15)
        self.assertEqual(dl[0].rcpt_tos, ['alice@example.com'])
        self.assertEqual(owners(d.spool), {(self.nobody.pw_uid, self.nobody.pw_gid)})

    def test_root_owned_spool_is_taken_over(self):
        d = self.d
        d.start()
        fwdlib.send(d, SENDER, ['alice@example.com'])  # the primary is down: held
        d.stop()
        for root, dirs, files in os.walk(d.spool):
            for name in dirs + files:
                os.lchown(os.path.join(root, name), 0, 0)
        os.chown(d.spool, 0, 0)
        d.start()
        self.addCleanup(d.stop)
        d.wait_log(r'dir=\S+ belonged to uid=0 gid=0: gave it and its [1-9]\d* entries to uid=%d' %
                   self.nobody.pw_uid)
        self.assertEqual(owners(d.spool), {(self.nobody.pw_uid, self.nobody.pw_gid)})
        self.assertEqual(len(d.queue()), 1)
        self.primary.start()
        self.primary.wait_deliveries(1, timeout=15)


if __name__ == '__main__':
    unittest.main(verbosity=2)
