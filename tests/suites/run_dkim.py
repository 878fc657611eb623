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
        return text.replace('remote-control:', '\n'.join(extra) + '\nremote-control:', 1)

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


SUITES = {'mail-auth': mail_auth, 'mimekit': mimekit}


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
    return 1 if run.total_failed else 0


if __name__ == '__main__':
    sys.exit(main())
