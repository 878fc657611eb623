#!/usr/bin/env python3
"""run_dkim: the public DKIM suites (../shared/testsuites/dkim, see its
SOURCES.md section 2) against tests/suites/dkim_verify, with every key
record served by a real unbound on loopback (local-data; long TXT values
split into 255-octet character-strings; NXDOMAIN is a name with no data,
SERVFAIL a refused zone, a timeout a stub zone whose server never answers).
Prints "SUITE: N passed, N failed" per suite and the failures; exits 1 if
any case failed.

Expectations follow the suites, except where a suite predates RFC 8301
(mail-dkim-perl: rsa-sha1 and keys under 1024 bits are never a pass) or
RFC 6376 (g= was removed); see docs/dkim-suites.md for each mapping.
"""
import argparse
import base64
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'e2e'))
import fwdlib  # noqa: E402
import mxv  # noqa: E402

NOW_MAIL_AUTH = 1667843664


def crlf(data):
    return re.sub(rb'\r?\n', b'\r\n', data)


def txt_rdata(value):
    """A TXT value as quoted character-strings of at most 255 octets."""
    raw = value.encode()
    parts = [raw[i:i + 255] for i in range(0, len(raw), 255)] or [b'']
    return ' '.join('"%s"' % p.decode().replace('\\', '\\\\').replace('"', '\\"') for p in parts)


class Dns(fwdlib.Unbound):
    """unbound answering only what it is given: everything else is NXDOMAIN."""

    def __init__(self, txt, servfail=(), timeout=()):
        self.blackhole = fwdlib.UdpBlackhole(mxv.free_port()) if timeout else None
        zones = [types.SimpleNamespace(origin=n, port=self.blackhole.port, trusted=False, ds=None) for n in timeout]
        super().__init__(records=(), refuse=servfail, zones=zones)
        self.txt = dict(txt)

    def config_text(self):
        text = super().config_text()
        extra = ['  local-zone: "." static']
        extra += ["  local-data: '%s. 60 IN TXT %s'" % (n.rstrip('.'), txt_rdata(v)) for n, v in self.txt.items()]
        return text.replace('server:\n', 'server:\n' + '\n'.join(extra) + '\n', 1)

    def __exit__(self, *exc):
        super().__exit__(*exc)
        if self.blackhole:
            self.blackhole.stop()


class Runner:
    def __init__(self, driver):
        self.driver = driver
        self.tmp = tempfile.mkdtemp(prefix='mxv-dkim-')
        self.rng = random.Random(8)
        self.total_failed = 0

    def verify(self, dns, message, now):
        path = os.path.join(self.tmp, 'msg')
        with open(path, 'wb') as f:
            f.write(message)
        seed = self.rng.randrange(1 << 30)
        p = subprocess.run([self.driver, path, dns.resolver, str(now), str(seed)],
                           capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            return [('driver-error', p.stderr.strip() + ' seed=%d' % seed)]
        return [(line.split()[0], line) for line in p.stdout.splitlines()]

    def suite(self, name, txt, cases, servfail=(), timeout=()):
        """txt: the suite's key records; cases: (case, message, now, check(results) -> complaint or None)."""
        passed, failures = 0, []
        with Dns(txt, servfail, timeout) as dns:
            for case, message, now, check in cases:
                res = self.verify(dns, message, now)
                bad = check(res)
                if bad:
                    failures.append('%s: %s; got %s' % (case, bad, ' | '.join(r[1] for r in res)))
                else:
                    passed += 1
        print('%s: %d passed, %d failed' % (name, passed, len(failures)))
        for f in failures:
            print('  FAIL ' + f)
        sys.stdout.flush()
        self.total_failed += len(failures)


def all_are(*allowed):
    def check(res):
        if not res:
            return 'no result'
        if any(r[0] not in allowed for r in res):
            return 'every signature should be %s' % '/'.join(allowed)
        return None
    return check


def last_is(expected):
    def check(res):
        return None if res and res[-1][0] == expected else 'the last signature should be %s' % expected
    return check


def mail_auth(run, root):
    """Expected: the last signature passes (001, the RFC 8463 example: both)."""
    d = os.path.join(root, 'mail-auth')
    txt, cases = {}, []
    for fn in sorted(f for f in os.listdir(d) if re.match(r'\d+\.txt$', f)):
        head, msg = read(os.path.join(d, fn)).replace(b'\r\n', b'\n').split(b'\n\n', 1)
        for line in head.decode().splitlines():
            n, v = line.split(' ', 1)
            txt[n] = v.strip()
        cases.append((fn, crlf(msg), NOW_MAIL_AUTH, all_are('pass') if fn == '001.txt' else last_is('pass')))
    run.suite('dkim/mail-auth', txt, cases)


def rfc8463_keys(root):
    with open(os.path.join(root, 'mail-auth', '001.txt')) as f:
        lines = f.read().split('\n\n', 1)[0].splitlines()
    keys = dict(line.split(' ', 1) for line in lines)
    return {'brisbane._domainkey.football.example.com':
            'v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=',
            'test._domainkey.football.example.com': keys['test._domainkey.football.example.com'].strip()}


def read(path):
    with open(path, 'rb') as f:
        return f.read()


def pem_body(path):
    return ''.join(line.strip() for line in read(path).decode().splitlines() if line and not line.startswith('-----'))


def mimekit(run, root):
    d = os.path.join(root, 'mimekit')
    txt = rfc8463_keys(root)
    txt['20120113._domainkey.gmail.com'] = 'v=DKIM1; k=rsa; p=' + pem_body(os.path.join(d, 'gmail.pub'))
    now = NOW_MAIL_AUTH
    cases = [('rfc8463-example.msg', all_are('pass')), ('gmail.msg', all_are('pass')),
             ('related.msg', all_are('pass')), ('multipart-no-end-boundary.msg', all_are('pass')),
             ('gmail-fail-body.msg', all_are('fail')), ('gmail-fail-headers.msg', all_are('fail'))]
    run.suite('dkim/mimekit', txt, [(n, crlf(read(os.path.join(d, n))), now, c) for n, c in cases])


def canon_body(body, relaxed):
    lines = body.split(b'\r\n')
    if relaxed:
        lines = [re.sub(rb'[ \t]+', b' ', ln).rstrip(b' ') for ln in lines]
    while lines and lines[-1] == b'':
        lines.pop()
    return b''.join(ln + b'\r\n' for ln in lines) if lines or not relaxed else b''


def canon_header(field, relaxed):
    if not relaxed:
        return field
    name, value = field.split(b':', 1)
    value = re.sub(rb'[ \t]+', b' ', value.replace(b'\r\n', b'')).strip(b' ')
    return name.strip().lower() + b':' + value + b'\r\n'


def sign(msg, key, d, s, relaxed, extra=''):
    """A plain rsa-sha256 signer (openssl does the RSA), for the key-record cases; extra: more tags.
    With "l=" in extra, the body length is filled in."""
    head, body = msg.split(b'\r\n\r\n', 1)
    fields = re.findall(rb'[^\r\n]+(?:\r\n[ \t][^\r\n]*)*\r\n', head + b'\r\n')
    names = [b'from', b'to', b'subject']
    signed = [f for n in names for f in fields[::-1] if f.split(b':', 1)[0].strip().lower() == n][:3]
    c = 'relaxed' if relaxed else 'simple'
    cbody = canon_body(body, relaxed)
    if 'l=' in extra:
        extra = extra.replace('l=', 'l=%d' % len(cbody))
    bh = base64.b64encode(__import__('hashlib').sha256(cbody).digest()).decode()
    sig = ('DKIM-Signature: v=1; a=rsa-sha256; c=%s/%s; d=%s; s=%s; t=1700000000;%s\r\n'
           ' h=from:to:subject; bh=%s;\r\n b=' % (c, c, d, s, extra, bh)).encode()
    data = b''.join(canon_header(f, relaxed) for f in signed) + canon_header(sig + b'\r\n', relaxed)[:-2]
    b = subprocess.run(['openssl', 'dgst', '-sha256', '-sign', key], input=data, capture_output=True, check=True).stdout
    return sig + base64.b64encode(b) + b'\r\n' + msg


def dkimpy(run, root):
    """The signed messages, then each key record of the suite behind a message we sign with test.private."""
    d = os.path.join(root, 'dkimpy')
    txt = rfc8463_keys(root)
    txt['sed._domainkey.test.ex'] = read(os.path.join(d, 'eximtest.dns')).decode().strip()
    now = 1700000000
    cases = [(n, crlf(read(os.path.join(d, n))), now, all_are('pass'))
             for n in ('rfc6376.signed.msg', 'ed25519test2.msg')]
    message = crlf(read(os.path.join(d, 'test.message')))
    # dkimpy's verify() is a bool: its "fail" is any result but pass.
    records = {'test.txt': ('pass',), 'test2.txt': ('pass',), 'test_bad.txt': ('fail', 'permerror'),
               'badk.txt': ('permerror',), 'badversion.txt': ('permerror',)}
    for fn, expected in records.items():
        sel = fn[:-4].replace('_', '-')
        txt['%s._domainkey.example.com' % sel] = read(os.path.join(d, fn)).decode().strip()
        for relaxed in (True, False):
            signed = sign(message, os.path.join(d, 'test.private'), 'example.com', sel, relaxed)
            cases.append(('%s (%s)' % (fn, 'relaxed' if relaxed else 'simple'), signed, now, all_are(*expected)))
    good = sign(message, os.path.join(d, 'test.private'), 'example.com', 'test', True)
    cases.append(('test.txt, body changed', good.replace(b'a test message', b'a fake message'), now, all_are('fail')))
    cases.append(('test.txt, Subject changed', good.replace(b'Subject: Testing', b'Subject: Tested'), now,
                  all_are('fail')))
    # l= honoured: text appended after the signed length changes nothing (RFC 6376 3.5).
    for relaxed in (True, False):
        lsig = sign(message, os.path.join(d, 'test.private'), 'example.com', 'test', relaxed, ' l=;')
        cases.append(('test.txt, l= and text appended (%s)' % relaxed, lsig + b'Appended.\r\n', now, all_are('pass')))
    expired = sign(message, os.path.join(d, 'test.private'), 'example.com', 'test', True, ' x=1700000100;')
    cases.append(('test.txt, x= passed', expired, now + 101, all_are('permerror')))
    cases.append(('test.txt, x= not yet passed', expired, now + 99, all_are('pass')))
    run.suite('dkim/dkimpy', txt, cases)


def fake_dns(path):
    """FAKE_DNS.dat: records, plus the names that must fail (SERVFAIL, timeout); NXDOMAIN is just absent."""
    txt, servfail, timeout = {}, [], []
    for line in read(path).decode().splitlines():
        if not line.strip() or line.startswith('#'):
            continue
        name, value = line.split(None, 1)
        value = value.strip()
        if value == 'NXDOMAIN':
            continue
        if value == '~~SERVFAIL~~':
            servfail.append(name)
        elif value == '~~Query timed out~~':
            timeout.append(name)
        else:
            txt[name] = '' if value == '""' else value
    return txt, servfail, timeout


def perl_expected(fn, expected, note, algs, sizes):
    """What an RFC 6376 + 8301 verifier gives for a row of expected.tsv; None: taken as it is (a clean row)."""
    strong = all(a in ('rsa-sha256', 'ed25519-sha256') for a in algs.split(',')) and \
        all(k == 'ed25519' or k == 'nokey' or (k.isdigit() and int(k) >= 1024) for k in sizes.split(','))
    if 'DomainKeys' in note:
        return ('none',), False           # RFC 4870 DomainKey-Signature is not DKIM
    if expected == 'invalid':
        if 'dns error' not in note:
            return ('permerror',), strong
        return ('temperror',) if strong else ('temperror', 'permerror'), strong  # rsa-sha1 needs no key
    if expected == 'pass' and 'ietf0' in fn:
        return ('permerror',), False      # draft-era signatures: no v=, q=dns (RFC 6376 3.5)
    if expected == 'pass':
        return ('pass',) if strong else ('permerror',), strong   # RFC 8301 3.1, 3.2
    return ('fail',) if strong else ('fail', 'permerror'), strong


def mail_dkim_perl(run, root):
    d = os.path.join(root, 'mail-dkim-perl')
    txt, servfail, timeout = fake_dns(os.path.join(d, 'FAKE_DNS.dat'))
    clean, mapped = [], []
    now = int(__import__('time').time())
    for line in read(os.path.join(d, 'expected.tsv')).decode().splitlines():
        if line.startswith('#') or not line.strip():
            continue
        fn, expected, note, algs, sizes = (line.split('\t') + [''] * 5)[:5]
        allowed, strong = perl_expected(fn, expected, note, algs, sizes)
        case = (fn, read(os.path.join(d, 'corpus', fn)), now, all_are(*allowed))
        (clean if strong else mapped).append(case)
    run.suite('dkim/mail-dkim-perl (RFC 8301-clean rows)', txt, clean, servfail, timeout)
    run.suite('dkim/mail-dkim-perl (rows mapped to RFC 8301, docs/dkim-suites.md)', txt, mapped, servfail, timeout)


SUITES = {'mail-auth': mail_auth, 'mimekit': mimekit, 'dkimpy': dkimpy, 'mail-dkim-perl': mail_dkim_perl}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--driver', required=True)
    ap.add_argument('--suites', required=True, help='the dkim/ folder of the shared test suites')
    ap.add_argument('only', nargs='*', help='suite names (default: all)')
    args = ap.parse_args()
    run = Runner(args.driver)
    for name, fn in SUITES.items():
        if not args.only or name in args.only:
            fn(run, args.suites)
    shutil.rmtree(run.tmp, ignore_errors=True)
    return 1 if run.total_failed else 0


if __name__ == '__main__':
    sys.exit(main())
