"""End-to-end durability tests of the spool: what a client was told (250 with
a queue id, a 4xx, or no answer at all) against what `queue list --json`
shows after kill -9, a torn or corrupted log, a full disk, and a restart.

The contract under test (docs/spool.md, src/spool*.c): a session answers
"250 2.0.0 Ok: queued as <id>" only after the batch holding its COMMIT
record is durable, so every acknowledged message survives a crash exactly
once; a message never acknowledged may survive only if its final dot was
sent (it was "in flight"); disk trouble is a 4xx, never a crash or a 250.

The disk-full tests mount a small tmpfs (root only; skipped otherwise).
"""
import collections
import contextlib
import os
import re
import shutil
import smtplib
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxv  # noqa: E402

QUEUED_RX = re.compile(r'queued as ([0-9a-f]{16})\b')
REC_MAGIC = b'MXV2'
REC_HDR = struct.Struct('<4sB3xIQ8s16s')  # magic, type, zero[3], payload length, message id, header tag, MAC
REC_V1_HDR = struct.Struct('<4sB3xIQI')   # format v1: magic MXV1, ..., crc32
REC_DATA, REC_COMMIT, REC_DONE = 2, 3, 5
DISK_ERRORS = {(452, '4.3.1'), (451, '4.3.0')}
KIB = 1024


def body_of(size, tag):
    """A message of about size bytes: CRLF lines, none starting with '.'."""
    head = ('From: <%s>\r\nTo: <x@any.test>\r\nSubject: %s\r\n\r\n' % (tag, tag)).encode()
    line = (tag + ' ' + 'x' * 74)[:74].encode() + b'\r\n'
    n = max(1, (size - len(head)) // len(line))
    return head + line * n


def new_daemon(**server):
    """A daemon (not started) taking any recipient in any.test. Its primary
    is a loopback port nobody listens on: once delivery runs, messages stay
    queued (deferred) and nothing leaves the host."""
    return mxv.Daemon(domains={'any.test': {'primary': '%s:%d' % (mxv.HOST, mxv.free_port())}}, **server)


def queued_id(code, text):
    if code != 250:
        return None
    m = QUEUED_RX.search(text if isinstance(text, str) else text.decode('utf-8', 'replace'))
    return m.group(1) if m else None


def transact(s, sender, rcpt, body):
    """One transaction on a greeted smtplib session.
    Returns (stage, code, text): stage is 'mail', 'rcpt', 'data' or 'end'."""
    code, text = s.mail(sender)
    if code != 250:
        return 'mail', code, text.decode('utf-8', 'replace')
    code, text = s.rcpt(rcpt)
    if code != 250:
        s.rset()
        return 'rcpt', code, text.decode('utf-8', 'replace')
    s.putcmd('data')
    code, text = s.getreply()
    if code != 354:
        return 'data', code, text.decode('utf-8', 'replace')
    s.send(body + b'.\r\n')
    code, text = s.getreply()
    return 'end', code, text.decode('utf-8', 'replace')


def send_one(d, sender, rcpt, body):
    """A fresh session, one transaction, QUIT: (stage, code, text, queue id)."""
    with d.smtp(timeout=30) as s:  # QUIT on exit
        s.ehlo()
        stage, code, text = transact(s, sender, rcpt, body)
    return stage, code, text, queued_id(code, text) if stage == 'end' else None


def segments(spool):
    return sorted(f for f in os.listdir(spool) if re.fullmatch(r'[0-9a-f]{8}\.seg', f))


def records(path):
    """(offset, type, payload length, message id as hex) of every record, walking the headers."""
    with open(path, 'rb') as f:
        data = f.read()
    out, pos = [], 0
    while pos + REC_HDR.size <= len(data):
        magic, rtype, length, msgid, _tag, _mac = REC_HDR.unpack_from(data, pos)
        if magic != REC_MAGIC:
            break
        out.append((pos, rtype, length, '%016x' % msgid))
        pos += REC_HDR.size + length
    return out


@contextlib.contextmanager
def patched_environ(env):
    """os.environ with env added, for a subprocess started inside."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


LOSTIO_C = r'''/* Power-loss emulation for kill -9 tests: writes to *.seg files stay in this
 * process's memory until fsync/fdatasync (or close), so SIGKILL loses exactly
 * what a power cut would lose from the file contents. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define MAXFD 65536
struct pend {
	off_t off;
	size_t n;
	struct pend *next;
	char p[];
};
static struct pend *head[MAXFD], **tailp[MAXFD];
static char is_seg[MAXFD];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static long sync_us = -1;

#define REAL(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

static int seg_fd(int fd)
{
	return fd >= 0 && fd < MAXFD && is_seg[fd];
}

static void note_open(int fd, const char *path, int flags)
{
	size_t n = strlen(path);
	if (fd < 0 || fd >= MAXFD)
		return;
	pthread_mutex_lock(&mu);
	is_seg[fd] = n > 4 && strcmp(path + n - 4, ".seg") == 0 && (flags & O_ACCMODE) != O_RDONLY;
	head[fd] = NULL;
	tailp[fd] = &head[fd];
	pthread_mutex_unlock(&mu);
}

int openat(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = 0;
	if (flags & (O_CREAT | O_TMPFILE)) {
		va_list ap;
		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
	}
	int fd = REAL(openat)(dirfd, path, flags, mode);
	note_open(fd, path, flags);
	return fd;
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
	if (!seg_fd(fd))
		return REAL(pwrite)(fd, buf, n, off);
	struct pend *p = malloc(sizeof(*p) + n);
	if (!p) {
		errno = ENOMEM;
		return -1;
	}
	memcpy(p->p, buf, n);
	p->off = off;
	p->n = n;
	p->next = NULL;
	pthread_mutex_lock(&mu);
	*tailp[fd] = p;
	tailp[fd] = &p->next;
	pthread_mutex_unlock(&mu);
	return (ssize_t)n;
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
	return pwrite(fd, buf, n, off);
}

/* Writes what is pending for fd: 0, or -1 with errno. */
static int flush(int fd)
{
	pthread_mutex_lock(&mu);
	struct pend *p = head[fd];
	head[fd] = NULL;
	tailp[fd] = &head[fd];
	pthread_mutex_unlock(&mu);
	int rc = 0;
	while (p) {
		struct pend *next = p->next;
		size_t done = 0;
		while (rc == 0 && done < p->n) {
			ssize_t r = REAL(pwrite)(fd, p->p + done, p->n - done, p->off + (off_t)done);
			if (r < 0)
				rc = -1;
			else
				done += (size_t)r;
		}
		free(p);
		p = next;
	}
	return rc;
}

static void disk_delay(void)
{
	if (sync_us < 0) {
		const char *s = getenv("LOSTIO_SYNC_US");
		sync_us = s ? atol(s) : 0;
	}
	if (sync_us > 0) {
		struct timespec ts = {sync_us / 1000000, (sync_us % 1000000) * 1000};
		nanosleep(&ts, NULL);
	}
}

int fdatasync(int fd)
{
	if (seg_fd(fd)) {
		disk_delay(); /* a disk is slow: widen the window between write and sync */
		if (flush(fd) < 0)
			return -1;
	}
	return REAL(fdatasync)(fd);
}

int fsync(int fd)
{
	if (seg_fd(fd)) {
		disk_delay();
		if (flush(fd) < 0)
			return -1;
	}
	return REAL(fsync)(fd);
}

int ftruncate(int fd, off_t len)
{
	if (seg_fd(fd) && flush(fd) < 0)
		return -1;
	return REAL(ftruncate)(fd, len);
}

int close(int fd)
{
	if (seg_fd(fd)) {
		/* Conservative: what is written and closed stays (page cache). */
		(void)flush(fd);
		is_seg[fd] = 0;
	}
	return REAL(close)(fd);
}
'''


def build_lostio(cc, where):
    src, so = os.path.join(where, 'lostio.c'), os.path.join(where, 'lostio.so')
    with open(src, 'w') as f:
        f.write(LOSTIO_C)
    subprocess.run([cc, '-O2', '-shared', '-fPIC', '-o', so, src, '-ldl'], check=True, capture_output=True)
    return so


# --- kill -9 under load -------------------------------------------------------

class Ledger:
    """What each client was told, by MAIL FROM (unique per message)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.msgs = {}    # sender -> {'state', 'id', 'rcpt', 'len', 'reply'}
        self.acked = 0

    def set(self, sender, **kv):
        with self.lock:
            self.msgs.setdefault(sender, {}).update(kv)
            if kv.get('state') == 'acked':
                self.acked += 1

    def senders(self, state):
        with self.lock:
            return {k: v for k, v in self.msgs.items() if v['state'] == state}


class Loader(threading.Thread):
    """One client: messages in a loop on one connection (a new one every few
    messages) until told to stop or the connection fails."""

    PER_CONNECTION = 8

    def __init__(self, port, cycle, tid, ledger, stop):
        super().__init__(daemon=True, name='loader-%d-%d' % (cycle, tid))
        self.port, self.cycle, self.tid, self.ledger, self.stop = port, cycle, tid, ledger, stop
        self.error = None      # how the thread ended, if not by stop
        self.unexpected = None  # an exception that is not a connection failure

    def run(self):
        n = 0
        try:
            while not self.stop.is_set():
                s = smtplib.SMTP(mxv.HOST, self.port, local_hostname='client.test', timeout=30)
                try:
                    s.ehlo()
                    for _ in range(self.PER_CONNECTION):
                        if self.stop.is_set():
                            break
                        self.one(s, n)
                        n += 1
                    s.quit()
                finally:
                    s.close()
        except (OSError, smtplib.SMTPException) as e:
            self.error = e
        except Exception as e:  # a bug in the test: surface it
            self.unexpected = e

    def one(self, s, n):
        sender = 'c%d-t%d-%d@load.test' % (self.cycle, self.tid, n)
        rcpt = 'r%d-%d@any.test' % (self.tid, n)
        # Every fifth message spans several DATA records (64 KiB each).
        body = body_of(150 * KIB if n % 5 == 4 else 600 + 37 * self.tid, sender)
        self.ledger.set(sender, state='refused', rcpt=rcpt, len=len(body))
        code, text = s.mail(sender)
        if code == 250:
            code, text = s.rcpt(rcpt)
        if code == 250:
            s.putcmd('data')
            code, text = s.getreply()
        if code != 354:
            self.ledger.set(sender, reply='%d %s' % (code, text))
            s.rset()
            return
        # From here until the reply, the message may or may not be queued.
        self.ledger.set(sender, state='inflight')
        s.send(body + b'.\r\n')
        code, text = s.getreply()
        qid = queued_id(code, text.decode('utf-8', 'replace'))
        if qid:
            self.ledger.set(sender, state='acked', id=qid)
        else:
            self.ledger.set(sender, state='refused', reply='%d %s' % (code, text))


class KillUnderLoadTest(unittest.TestCase):
    THREADS = 20
    # Per cycle: kill once this many messages were acknowledged, or after
    # this many seconds of load, whichever comes first.
    CYCLES = [(25, 0.4), (150, 1.0), (100000, 2.0)]

    def test_kill9_during_load_loses_no_acknowledged_message(self):
        d = new_daemon(min_free_space=0)
        self.addCleanup(d.cleanup)
        self.cycles(d, d.start)

    def test_kill9_with_unsynced_writes_lost(self):
        """kill -9 keeps the page cache, so on its own it cannot tell a 250
        sent after fdatasync from one sent before it (or even before the
        write). With lostio.so preloaded, segment writes stay in the daemon's
        memory until fdatasync/fsync, and each sync takes a while: SIGKILL
        then loses what a power cut would, and any early 250 shows up."""
        cc = shutil.which('cc') or shutil.which('gcc') or shutil.which('clang')
        if not cc:
            self.skipTest('no C compiler to build the lostio.so preload')
        d = new_daemon(min_free_space=0)
        self.addCleanup(d.cleanup)
        so = build_lostio(cc, d.dir)
        # An ASan build wants its runtime first in the library list unless told otherwise.
        asan = ':'.join(filter(None, [os.environ.get('ASAN_OPTIONS'), 'verify_asan_link_order=0']))
        env = {'LD_PRELOAD': so, 'LOSTIO_SYNC_US': '3000', 'ASAN_OPTIONS': asan}

        def start():
            with patched_environ(env):
                d.start()
        self.cycles(d, start)

    def cycles(self, d, start):
        start()
        ledgers = []
        for cycle, (target, seconds) in enumerate(self.CYCLES):
            with self.subTest(cycle=cycle):
                ledger = Ledger()
                ledgers.append(ledger)
                self.load_and_kill(d, cycle, ledger, target, seconds)
                start()
                d.check_log()
                self.check_queue(d.queue(), ledgers)
                # The restarted daemon takes mail, and that mail counts as acknowledged.
                sender = 'probe-c%d@load.test' % cycle
                body = body_of(2000, sender)
                stage, code, text, qid = send_one(d, sender, 'probe@any.test', body)
                self.assertEqual((stage, code), ('end', 250), text)
                self.assertIsNotNone(qid, text)
                ledger.set(sender, state='acked', id=qid, rcpt='probe@any.test', len=len(body))
                self.check_queue(d.queue(), ledgers)
        d.stop()

    def load_and_kill(self, d, cycle, ledger, target, seconds):
        stop = threading.Event()
        threads = [Loader(d.port, cycle, t, ledger, stop) for t in range(self.THREADS)]
        for t in threads:
            t.start()
        t0 = time.monotonic()
        try:
            mxv.wait_until(lambda: ledger.acked >= target or (time.monotonic() - t0 >= seconds and ledger.acked > 0),
                           timeout=seconds + 30, what='load (cycle %d)' % cycle, interval=0.005)
            ended = [(t.name, t.error, t.unexpected) for t in threads if not t.is_alive()]
            self.assertEqual(ended, [], 'clients stopped before the kill')
            d.kill9()
        finally:
            stop.set()
            d.kill9()
            for t in threads:
                t.join(30)
        self.assertEqual([t.name for t in threads if t.is_alive()], [], 'clients still running after the kill')
        self.assertEqual([(t.name, repr(t.unexpected)) for t in threads if t.unexpected], [])
        refused = ledger.senders('refused')
        # Refused before the dot is fine only as the connection died; a reply
        # other than 250 from a healthy daemon is not.
        replied = {k: v['reply'] for k, v in refused.items() if 'reply' in v}
        self.assertEqual(replied, {}, 'the daemon refused messages under load')
        n_acked, n_inflight = len(ledger.senders('acked')), len(ledger.senders('inflight'))
        self.assertGreater(n_acked, 0)
        print('\n  cycle %d: killed after %.2fs: acked=%d inflight=%d refused=%d' % (
            cycle, time.monotonic() - t0, n_acked, n_inflight, len(refused)), file=sys.stderr)

    def check_queue(self, queue, ledgers):
        acked, maybe = {}, {}
        for lg in ledgers:
            acked.update(lg.senders('acked'))
            maybe.update(lg.senders('inflight'))
        dup_ids = sorted(i for i, k in collections.Counter(m['id'] for m in queue).items() if k > 1)
        self.assertEqual(dup_ids[:20], [], 'duplicate queue ids (%d)' % len(dup_ids))
        by_sender = {}
        for m in queue:
            by_sender.setdefault(m['sender'], []).append(m)
        dup_senders = sorted(s for s, ms in by_sender.items() if len(ms) > 1)
        self.assertEqual(dup_senders[:20], [], 'messages queued more than once (%d)' % len(dup_senders))
        by_id = {m['id']: m for m in queue}
        lost = sorted('%s id=%s' % (s, v['id']) for s, v in acked.items()
                      if v['id'] not in by_id or by_id[v['id']]['sender'] != s)
        self.assertEqual(lost[:20], [], 'acknowledged messages missing after kill -9: %d of %d' % (
            len(lost), len(acked)))
        unknown = sorted('%s id=%s' % (m['sender'], m['id']) for m in queue
                         if m['sender'] not in acked and m['sender'] not in maybe)
        self.assertEqual(unknown[:20], [], 'queued messages that were neither acknowledged nor in flight (%d)' %
                         len(unknown))
        for m in queue:
            info = acked.get(m['sender']) or maybe[m['sender']]
            self.assertGreater(m['size'], 0, m)
            # size counts our Received: header too, so it is at least what was sent.
            self.assertGreaterEqual(m['size'], info['len'], m)
            self.assertEqual([r['address'] for r in m['recipients']], [info['rcpt']], m)


# --- torn tail and corruption -------------------------------------------------

class CorruptionTest(unittest.TestCase):
    def test_torn_tail_then_corrupt_record(self):
        d = new_daemon(min_free_space=0)
        self.addCleanup(d.cleanup)
        d.start()
        first = self.send_some(d, 'a', 6)
        d.stop()

        # A torn write: garbage after the last record of the newest segment.
        seg = os.path.join(d.spool, segments(d.spool)[-1])
        size = os.path.getsize(seg)
        with open(seg, 'ab') as f:
            f.write(b'\x00GARBAGE-torn-write\xff' * 13)
        mark = len(d.log_text())
        d.start()
        self.assertRegex(d.log_text()[mark:], r'torn tail')
        self.assertEqual(os.path.getsize(seg), size, 'the torn tail was not cut off')
        self.assertEqual(sorted(m['id'] for m in d.queue()), sorted(first))
        second = self.send_some(d, 'b', 3)
        d.stop()
        segs = segments(d.spool)
        self.assertGreaterEqual(len(segs), 2, 'a restart should start a new segment')

        # One flipped byte in the payload of a committed message's DATA
        # record in an older segment: that message is set aside, nothing else.
        old = os.path.join(d.spool, segs[0])
        data_recs = [r for r in records(old) if r[1] == REC_DATA and r[3] in first]
        self.assertTrue(data_recs, 'no DATA record of a committed message in %s' % old)
        off, _, length, victim = data_recs[len(data_recs) // 2]
        self.assertGreater(length, 2)
        with open(old, 'r+b') as f:
            f.seek(off + REC_HDR.size + length // 2)
            b = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([b[0] ^ 0x5a]))
        mark = len(d.log_text())
        d.start()
        log = d.log_text()[mark:]
        self.assertRegex(log, r'set aside')
        self.assertTrue(d.running())
        corrupt = os.listdir(os.path.join(d.spool, 'corrupt'))
        self.assertTrue(corrupt, 'nothing under corrupt/')
        self.assertIn(victim + '.eml', corrupt)
        expect = sorted(set(first) - {victim} | set(second))
        self.assertEqual(sorted(m['id'] for m in d.queue()), expect)
        third = self.send_some(d, 'c', 1)
        self.assertEqual(sorted(m['id'] for m in d.queue()), sorted(expect + third))
        d.stop()

    def send_some(self, d, tag, n):
        ids = []
        for i in range(n):
            sender = '%s%d@client.test' % (tag, i)
            stage, code, text, qid = send_one(d, sender, 'u%d@any.test' % i, body_of(3000, sender))
            self.assertEqual((stage, code), ('end', 250), text)
            ids.append(qid)
        return ids


# --- records forged in message content ------------------------------------------

def tlv(tag, value):
    return struct.pack('<BI', tag, len(value)) + value


def forged_envelope(to, body_size, pad):
    """An envelope as spool_rec.c encodes it: sender, body size, one recipient,
    and an unknown field (skipped by the decoder) to vary the bytes."""
    return (tlv(1, b'forger@evil.test') + tlv(11, struct.pack('<Q', body_size)) + tlv(20, tlv(1, to.encode())) +
            tlv(99, pad))


def smtp_safe(b):
    """Bytes that pass through DATA unchanged: no bare CR or LF (dot-stuffing is undone by the server)."""
    rest = b.replace(b'\r\n', b'')
    return b'\r' not in rest and b'\n' not in rest


def v1_record(rtype, msgid, payload):
    """A format v1 record: CRC-32 over the header (CRC field zero) and the payload."""
    head = REC_V1_HDR.pack(b'MXV1', rtype, len(payload), msgid, 0)
    return REC_V1_HDR.pack(b'MXV1', rtype, len(payload), msgid, zlib.crc32(head + payload)) + payload


def v2_lookalike(rtype, msgid, payload, n):
    """An MXV2 header with a made-up header tag and MAC."""
    made_up = bytes((0x21 + (7 * i + n) % 90) for i in range(24))
    return REC_HDR.pack(b'MXV2', rtype, len(payload), msgid, made_up[:8], made_up[8:]) + payload


def forge(make, victim_id, forged_id):
    """DATA + COMMIT of a message to victim@elsewhere.test, and a DONE for
    victim_id, each varied until its bytes pass through SMTP unchanged."""
    for n in range(10000):
        pad = b'%04d' % n
        body = b'Subject: forged ' + pad + b'\r\n\r\nforged\r\n'
        recs = [make(REC_DATA, forged_id, body),
                make(REC_COMMIT, forged_id, forged_envelope('victim@elsewhere.test', len(body), pad)),
                make(REC_DONE, victim_id, pad)]
        if smtp_safe(b'\r\n' + b''.join(recs) + b'\r\n'):
            return b''.join(recs)
    raise AssertionError('no SMTP-safe forgery for id %016x' % victim_id)


def dot_stuff(body):
    return (b'.' + body if body.startswith(b'.') else body).replace(b'\r\n.', b'\r\n..')


class ForgedRecordsTest(unittest.TestCase):
    """Issue 6: recovery scans a damaged segment for the next record, and a
    sender can put record-shaped bytes in a body. Message A carries forged
    records (v1 ones with a valid CRC-32, MXV2 ones with a made-up MAC): a
    message to a domain that is not configured and a DONE for C, which was
    queued before. A crash or bad sector then damages A's first DATA header.
    After the restart nothing forged may count: C and B (after the damage)
    stay queued, A is set aside, nothing goes to elsewhere.test."""

    def send(self, d, sender, body):
        stage, code, text, qid = send_one(d, sender, 'rcpt@any.test', body)
        self.assertEqual((stage, code), ('end', 250), text)
        return qid

    def test_forged_records_in_a_body_do_not_count_after_damage(self):
        d = new_daemon(min_free_space=0)
        self.addCleanup(d.cleanup)
        d.start()
        # C's id goes into a forged DONE record: it must pass through DATA unchanged.
        for i in range(20):
            c = self.send(d, 'c%d@client.test' % i, body_of(2000, 'c%d' % i))
            if smtp_safe(struct.pack('<Q', int(c, 16))):
                break
        else:
            self.fail('no queue id without CR or LF bytes')
        victim, forged_id = int(c, 16), int(c, 16) + 0x4242
        marker = b'MARKER-A-%d' % os.getpid()
        body_a = (b'From: <a@client.test>\r\nSubject: A\r\n\r\n' + marker + b'\r\n' +
                  forge(v1_record, victim, forged_id) + b'\r\n' +
                  forge(lambda t, i, p: v2_lookalike(t, i, p, 1), victim, forged_id + 1) + b'\r\nend of A\r\n')
        self.assertTrue(smtp_safe(body_a))
        a = self.send(d, 'a@client.test', dot_stuff(body_a))
        b = self.send(d, 'b@client.test', body_of(2000, 'b'))
        self.assertEqual(sorted(m['id'] for m in d.queue()), sorted([c, a, b]))
        d.kill9()

        seg = os.path.join(d.spool, segments(d.spool)[-1])
        with open(seg, 'r+b') as f:
            data = f.read()
            at = data.find(marker)
            self.assertGreater(at, 0, 'marker of A not in %s' % seg)
            head = data.rfind(b'MXV', 0, at)
            self.assertGreaterEqual(head, 0)
            self.assertEqual(struct.unpack_from('<Q', data, head + 12)[0], int(a, 16), "not A's DATA header")
            f.seek(head + 12)  # the message id, in both formats: fails the header's check
            f.write(bytes([data[head + 12] ^ 0x40]))
        mark = len(d.log_text())
        d.start()
        queue = d.queue()
        to = sorted(r['address'] for m in queue for r in m['recipients'])
        self.assertFalse([t for t in to if t.endswith('@elsewhere.test')], 'a forged message was recovered: %s' % to)
        # Recovered and at once relayed (or bounced, here: the domain does not resolve) shows in the log only.
        forged = [ln for ln in d.log_text()[mark:].splitlines() if 'elsewhere.test' in ln or '%016x' % forged_id in ln]
        self.assertEqual(forged, [], 'a forged message was recovered')
        ids = sorted(m['id'] for m in queue)
        self.assertIn(c, ids, 'C was dropped by a forged DONE record')
        self.assertIn(b, ids, 'B, after the damage, was not salvaged')
        self.assertEqual(ids, sorted([c, b]))
        self.assertIn(a + '.eml', os.listdir(os.path.join(d.spool, 'corrupt')))
        d.stop()


# --- disk full ----------------------------------------------------------------

class DiskFullTest(unittest.TestCase):
    MSG = 512 * KIB

    def mount_tmpfs(self, size):
        mnt = tempfile.mkdtemp(prefix='mxv-tmpfs-')
        p = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=%s,mode=0700' % size, 'tmpfs', mnt],
                           capture_output=True, text=True)
        if p.returncode != 0:
            os.rmdir(mnt)
            self.skipTest('cannot mount a tmpfs (needs root): %s' % (p.stderr.strip() or p.returncode))
        self.addCleanup(self.umount, mnt)
        return mnt

    @staticmethod
    def umount(mnt):
        if subprocess.run(['umount', mnt], capture_output=True).returncode != 0:
            subprocess.run(['umount', '-l', mnt], capture_output=True)
        os.rmdir(mnt)

    @staticmethod
    def filler(path, size):
        with open(path, 'wb') as f:
            f.write(b'\0' * size)
            f.flush()
            os.fsync(f.fileno())

    @staticmethod
    def free(path):
        st = os.statvfs(path)
        return st.f_bavail * st.f_frsize

    def daemon(self, mnt, **server):
        # Registered after the mount: runs first, so the daemon is gone before umount.
        d = new_daemon(spool=os.path.join(mnt, 'spool'), **server)
        self.addCleanup(d.cleanup)
        return d

    def assert_alive(self, d):
        self.assertTrue(d.running(), 'the daemon died:\n' + d.log_text()[-3000:])
        with d.raw() as r:
            code, _ = r.ehlo()
            self.assertEqual(code, 250)
            self.assertEqual(r.cmd('NOOP')[0], 250)
            r.cmd('QUIT')

    def test_enospc_is_4xx_and_recovers(self):
        mnt = self.mount_tmpfs('2m')
        fill = os.path.join(mnt, 'filler')
        self.filler(fill, 1280 * KIB)  # leaves 768 KiB: room for one 512 KiB message, not two
        d = self.daemon(mnt, min_free_space=0)
        d.start()
        acked, n = [], 0

        def attempt():
            nonlocal n
            n += 1
            sender = 'big%d@client.test' % n
            stage, code, text, qid = send_one(d, sender, 'big@any.test', body_of(self.MSG, sender))
            if qid:
                acked.append(qid)
            return stage, code, text, qid

        for _ in range(8):
            stage, code, text, qid = attempt()
            if code != 250:
                break
        self.assertGreaterEqual(code, 400, 'no 4xx after %d messages of 512 KiB in 768 KiB' % n)
        self.assertIn((code, text.split(' ')[0]), DISK_ERRORS, '%s: %d %s' % (stage, code, text))
        self.assertGreaterEqual(len(acked), 1, 'the first message should have fit')
        self.assert_alive(d)

        # Still full: nothing may be acknowledged, neither at once (the
        # daemon remembers ENOSPC for a moment) nor once MAIL is taken again.
        stage, code, text, qid = attempt()
        self.assertIn((code, text.split(' ')[0]), DISK_ERRORS, '%s: %d %s' % (stage, code, text))
        self.assertTrue(d.running())

        def full_attempt():
            stage, code, text, qid = attempt()
            self.assertIn((code, text.split(' ')[0]), DISK_ERRORS, '%s: %d %s' % (stage, code, text))
            return (stage, code, text) if stage == 'end' else None
        mxv.wait_until(full_attempt, timeout=10, what='a message refused at the end of DATA', interval=0.2)
        self.assert_alive(d)
        self.assertEqual(sorted(m['id'] for m in d.queue()), sorted(acked))

        # Space comes back: mail is accepted again.
        os.unlink(fill)

        def recovered():
            stage, code, text, qid = attempt()
            if code != 250:
                self.assertIn((code, text.split(' ')[0]), DISK_ERRORS, '%s: %d %s' % (stage, code, text))
            return qid
        mxv.wait_until(recovered, timeout=15, what='a 250 once space is back', interval=0.2)
        self.assertEqual(sorted(m['id'] for m in d.queue()), sorted(acked))
        d.stop()
        d.start()
        self.assertEqual(sorted(m['id'] for m in d.queue()), sorted(acked))
        self.assert_alive(d)
        d.stop()

    def test_refused_message_is_not_queued(self):
        """A message answered 4xx at the end of DATA must not be queued: the
        client keeps it and retries, so storing it too means a duplicate.

        The case: A's first DATA record is durable in segment 1; B's batch
        then fails (ENOSPC) in segment 1, so A's commit is reported failed
        (last_failed_batch >= first_batch, docs/spool.md invariant 4), while
        A's last DATA and its COMMIT go to segment 2 and are durable. The
        ABORT written for the failed commit must keep recovery (and `queue
        list`) from bringing A back (crash state R5)."""
        mnt = self.mount_tmpfs('2m')
        fill = os.path.join(mnt, 'filler')
        self.filler(fill, 1280 * KIB)
        d = self.daemon(mnt, min_free_space=0)
        d.start()
        stage, code, text, keep = send_one(d, 'c@client.test', 'c@any.test', body_of(2000, 'c'))
        self.assertEqual((stage, code), ('end', 250), text)  # pins segment 1
        a = d.raw()
        self.addCleanup(a.close)
        self.assertEqual(a.ehlo()[0], 250)
        self.assertEqual(a.cmd('MAIL FROM:<a@client.test>')[0], 250)
        self.assertEqual(a.cmd('RCPT TO:<a@any.test>')[0], 250)
        self.assertEqual(a.cmd('DATA')[0], 354)
        a.send(body_of(70 * KIB, 'a'))  # one full 64 KiB DATA record goes to disk

        def seg1_size():
            segs = segments(d.spool)
            return segs and os.path.getsize(os.path.join(d.spool, segs[0])) >= 64 * KIB
        mxv.wait_until(seg1_size, what="A's first DATA record in segment 1")
        stage, code, text, _ = send_one(d, 'b@client.test', 'b@any.test', body_of(900 * KIB, 'b'))
        self.assertIn((code, text.split(' ')[0]), DISK_ERRORS, '%s: %d %s' % (stage, code, text))
        os.unlink(fill)  # room again before A ends its message
        a.send(b'.\r\n')
        code, text = a.read_reply(timeout=30)
        self.assertIn((code, text.split(' ')[0]), DISK_ERRORS, 'A: %d %s' % (code, text))
        a.close()
        d.stop()
        d.start()
        self.assertEqual(sorted(m['sender'] for m in d.queue()), ['c@client.test'],
                         'a message answered %d is queued' % code)
        d.stop()

    def test_min_free_space_refuses_mail_from(self):
        mnt = self.mount_tmpfs('2m')
        fill = os.path.join(mnt, 'filler')
        self.filler(fill, 600 * KIB)  # free: about 1.4 MiB, then 0.9 MiB after one message
        d = self.daemon(mnt, min_free_space='1M')
        d.start()
        self.assertGreater(self.free(mnt), 1024 * KIB)
        sender = 'big@client.test'
        stage, code, text, qid = send_one(d, sender, 'big@any.test', body_of(self.MSG, sender))
        self.assertEqual((stage, code), ('end', 250), text)
        acked = [qid]
        self.assertLess(self.free(mnt), 1024 * KIB)

        def mail_from(want):
            with d.smtp() as s:
                s.ehlo()
                code, text = s.mail('probe@client.test')
                text = text.decode()
                s.rset()
            if code == want:
                return text
            self.assertIn(code, (250, 452), text)
            return None
        text = mxv.wait_until(lambda: mail_from(452), timeout=10, what='452 at MAIL FROM', interval=0.1)
        self.assertTrue(text.startswith('4.3.1 '), text)
        self.assert_alive(d)

        os.unlink(fill)
        mxv.wait_until(lambda: mail_from(250), timeout=10, what='MAIL FROM taken again', interval=0.1)
        sender = 'after@client.test'
        stage, code, text, qid = send_one(d, sender, 'big@any.test', body_of(64 * KIB, sender))
        self.assertEqual((stage, code), ('end', 250), text)
        acked.append(qid)
        self.assertEqual(sorted(m['id'] for m in d.queue()), sorted(acked))
        d.stop()


# --- plain restart ------------------------------------------------------------

class RestartTest(unittest.TestCase):
    def test_sigterm_restart_keeps_queue(self):
        d = new_daemon(min_free_space=0)
        self.addCleanup(d.cleanup)
        d.start()
        sent = {}
        for i in range(5):
            sender = 'keep%d@client.test' % i
            stage, code, text, qid = send_one(d, sender, 'k%d@any.test' % i, body_of(1000 + 40000 * i, sender))
            self.assertEqual((stage, code), ('end', 250), text)
            sent[qid] = sender
        before = d.queue()
        self.assertEqual({m['id']: m['sender'] for m in before}, sent)
        d.stop()
        d.start()
        after = d.queue()
        self.assertEqual({m['id']: m['sender'] for m in after}, sent)
        # Delivery attempts may change the recipients' states and the
        # attempt counters in between; what was stored may not change.
        def stored(q):
            return sorted((m['id'], m['sender'], m['arrival'], m['size'], tuple(r['address'] for r in m['recipients']))
                          for m in q)
        self.assertEqual(stored(after), stored(before))
        d.stop()


if __name__ == '__main__':
    unittest.main()
