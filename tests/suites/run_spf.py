#!/usr/bin/env python3
"""The SPF suites against the real code and a real DNS server.

For each scenario of ../shared/testsuites/spf/rfc7208-tests.yml (YAML) and
spf/mail-auth/*.yml (not YAML: read line by line, see SOURCES.md 1), the
zone data is loaded into unbound on loopback (local-data; names that time
out are typetransparent zones stubbed to a UDP black hole), then every test
of the scenario goes through the driver (tests/suites/spf_suite.c: check_host()
on base/dns.c) and its result is compared with the expected one (a list: any
of them). Prints per suite file "N passed, N failed" and each failure.
Deviations from the suites are in DEVIATIONS below, each with its RFC
section (and docs/spf.md).

usage: run_spf.py DRIVER [SUITE_DIR]
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SUITES = os.path.normpath(os.path.join(HERE, '..', '..', '..', 'shared', 'testsuites', 'spf'))
UNBOUND = shutil.which('unbound') or '/usr/sbin/unbound'
TIMEOUT_MS = 400  # per try of the driver's resolver: a TIMEOUT costs 3 tries' worth

# (suite file, test name) -> (accepted results, explanation compared without case,
# why). Each is documented in docs/spf.md with its RFC section.
DEVIATIONS = {
    # The suite keeps RFC 4408 8.1's upper-case nibbles for %{ir} of an IPv6
    # address; RFC 7208 7.4 (its last example) writes them in lower case.
    ('rfc7208-tests.yml', 'Macro expansion rules/v-macro-ip6'): (['fail'], True,
                                                                'RFC 7208 7.4: ip6 nibbles in lower case'),
    # "v=spf1 -all ip:10.0.0.1": the suite wants the term after "all" ignored;
    # RFC 7208 4.6 wants a syntax error anywhere to be permerror, as does the
    # official suite (rfc7208-tests.yml: detect-errors-anywhere).
    ('mail-auth/all.yml', 'All test #1'): (['permerror'], False,
                                           'RFC 7208 4.6: syntax errors anywhere in the record'),
    # Ten a: terms on names that do not exist: the suite counts no void
    # lookups; RFC 7208 4.6.4 limits them to two (official suite: void-over-limit).
    ('mail-auth/basic.yml', 'DNS Lookup Limits #1'): (['permerror'], False,
                                                      'RFC 7208 4.6.4: at most 2 void lookups'),
    # exists: on a name with only AAAA records, for an IPv6 client: RFC 7208
    # 5.7 queries A "even when the connection type is IPv6".
    ('mail-auth/exists.yml', 'Exists #2'): (['fail'], False, 'RFC 7208 5.7: exists queries A only'),
    ('mail-auth/macro.yml', 'Macro expansion 2 #2'): (['fail'], False, 'RFC 7208 5.7: exists queries A only'),
    # An IPv4 client and ip6:::ffff:10.1.2.3: RFC 7208 5 treats the client as
    # IPv4, which ip6 never matches (5.6; official suite: cidr6-ip4).
    ('mail-auth/ip.yml', 'IPv6 match #4'): (['fail'], False, 'RFC 7208 5, 5.6: ip6 matches IPv6 clients only'),
}


def free_port(kind=socket.SOCK_DGRAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def dns_bytes(v):
    """A suite string to bytes: \\xNN escapes in the YAML mean bytes, not code points."""
    if isinstance(v, bytes):
        return v
    out = bytearray()
    for ch in str(v):
        out += bytes([ord(ch)]) if ord(ch) < 256 else ch.encode('utf-8')
    return bytes(out)


def quote_strings(b):
    """TXT rdata: character-strings of at most 255 bytes, escaped for unbound."""
    parts = [b[i:i + 255] for i in range(0, len(b), 255)] or [b'']
    out = []
    for p in parts:
        s = ''.join(chr(c) if 0x20 <= c < 0x7f and c not in (0x22, 0x5c, 0x27) else '\\%03d' % c for c in p)
        out.append('"%s"' % s)
    return ' '.join(out)


def owner(name):
    b = dns_bytes(name.rstrip('.'))
    return ''.join(chr(c) if (chr(c).isalnum() or c in b'-_.*') and c < 0x7f else '\\%03d' % c for c in b) + '.'


class Zone:
    """One scenario's records: (name, type, rdata-text) and the names that time out."""

    def __init__(self):
        self.rrs = []
        self.timeouts = set()

    def add(self, name, rtype, rdata):
        o = owner(name)
        labels = o.rstrip('.').split('.')
        if len(o) > 254 or any(len(x) > 63 for x in labels):
            return  # no DNS server can hold it: the test expects none for it anyway
        self.rrs.append((o, rtype, rdata))

    def flatten_cnames(self):
        """unbound's local-data answers a CNAME without following it (a recursive
        resolver would): an alias whose target has records here is served with
        the target's records instead; a loop stays a bare CNAME."""
        cname = {n: d for n, t, d in self.rrs if t == 'CNAME'}
        out = []
        for n, t, d in self.rrs:
            if t != 'CNAME':
                out.append((n, t, d))
                continue
            target, seen = d.lower(), {n.lower()}
            while target in {k.lower() for k in cname} and target not in seen:
                seen.add(target)
                target = next(v for k, v in cname.items() if k.lower() == target).lower()
            recs = [(n, tt, dd) for nn, tt, dd in self.rrs if nn.lower() == target and tt != 'CNAME']
            out += recs if recs and target not in seen else [(n, t, d)]
        self.rrs = out

    def add_txt(self, name, rtype, value):
        strings = value if isinstance(value, list) else [value]
        joined = b''.join(dns_bytes(s) for s in strings)
        if isinstance(value, list) and value:
            rdata = ' '.join(quote_strings(dns_bytes(s)) for s in strings)
        else:
            rdata = quote_strings(joined)
        self.add(name, rtype, rdata)


class Unbound:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix='mxv-spf-')
        self.port = free_port()
        self.hole_port = free_port()
        self.hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # never read: a black hole
        self.hole.bind(('127.0.0.1', self.hole_port))
        self.proc = None

    def conf(self, zone):
        out = ['server:', '  interface: 127.0.0.1', '  port: %d' % self.port, '  do-daemonize: no',
               '  username: ""', '  chroot: ""', '  directory: "%s"' % self.dir, '  pidfile: ""',
               '  use-syslog: no', '  logfile: "%s/unbound.log"' % self.dir, '  verbosity: 0',
               '  do-ip6: no', '  access-control: 127.0.0.0/8 allow', '  do-not-query-localhost: no',
               '  module-config: "iterator"', '  rrset-roundrobin: no', '  cache-max-ttl: 0', '  cache-max-negative-ttl: 0',
               '  local-zone: "." static', '  local-data: "ready.test. IN TXT ok"']
        for t in sorted(zone.timeouts):
            out.append("  local-zone: '%s' typetransparent" % t)
        # TIMEOUT is for its exact name: names with data below it answer from their own zone.
        below = sorted({n for n, _, _ in zone.rrs if any(n != t and n.endswith('.' + t) for t in zone.timeouts)})
        for n in below:
            out.append("  local-zone: '%s' static" % n)
        for name, rtype, rdata in zone.rrs:
            out.append("  local-data: '%s 300 IN %s %s'" % (name, rtype, rdata))
        for t in sorted(zone.timeouts):
            out += ['stub-zone:', "  name: '%s'" % t, '  stub-addr: 127.0.0.1@%d' % self.hole_port]
        out += ['remote-control:', '  control-enable: no']
        return '\n'.join(out) + '\n'

    def start(self, zone):
        self.stop()
        conf = os.path.join(self.dir, 'unbound.conf')
        with open(conf, 'w') as f:
            f.write(self.conf(zone))
        with open(os.path.join(self.dir, 'stderr'), 'ab') as err:
            self.proc = subprocess.Popen([UNBOUND, '-d', '-c', conf], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError('unbound exited: %s' % open(os.path.join(self.dir, 'stderr')).read()[-2000:])
            if self.ready():
                return
            time.sleep(0.02)
        raise RuntimeError('unbound did not answer')

    def ready(self):
        q = b'\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05ready\x04test\x00\x00\x10\x00\x01'
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.1)
            try:
                s.sendto(q, ('127.0.0.1', self.port))
                return len(s.recv(512)) > 12
            except OSError:
                return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def close(self):
        self.stop()
        self.hole.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# --- rfc7208-tests.yml -------------------------------------------------------

def openspf_zone(scenario):
    """pyspf's loader (test/testspf.py): a name's SPF records double as TXT unless
    it lists TXT records itself (TXT: NONE included); TIMEOUT is for that exact
    name, and only for the types it has no records of."""
    zone = Zone()
    fixspf = True
    for name, recs in (scenario.get('zonedata') or {}).items():
        txt_given, spf = False, []
        for r in recs or []:
            if r == 'TIMEOUT':
                zone.timeouts.add(owner(name))
                continue
            (t, v), = r.items()
            if t == 'TXT':
                txt_given = True
            if v == 'NONE':
                continue
            if t in ('TXT', 'SPF'):
                zone.add_txt(name, t, v)
                if t == 'SPF':
                    spf.append(v)
            elif t == 'MX':
                zone.add(name, 'MX', '%d %s' % (v[0], owner(v[1])))
            elif t in ('PTR', 'CNAME'):
                zone.add(name, t, owner(v))
            else:
                zone.add(name, t, str(v))
        if fixspf and not txt_given:
            for v in spf:
                zone.add_txt(name, 'TXT', v)
    return zone


def openspf_cases(path):
    with open(path, 'rb') as f:
        docs = list(yaml.safe_load_all(f))
    for sc in docs:
        cases = []
        for name, t in sc['tests'].items():
            want = t['result'] if isinstance(t['result'], list) else [t['result']]
            cases.append(dict(name='%s/%s' % (sc['description'], name), ip=str(t['host']),
                              helo=str(t.get('helo', '')), sender=str(t.get('mailfrom', '')),
                              receiver=str(t.get('receiver', 'receiver.example.net')),
                              want=want, exp=t.get('explanation')))
        zone = openspf_zone(sc)
        zone.flatten_cnames()
        yield sc['description'], zone, cases


# --- mail-auth/*.yml ---------------------------------------------------------

class MailAuthDoc:
    """One document of a mail-auth file, read line by line. Two shapes: records
    then tests (domain/sender/ip/expect), and examples.yml's, where each
    "- name:" under tests starts a section with records of its own (on top of
    the document's) and domain/sender/ip carry over until changed."""

    def __init__(self, text):
        self.base, self.sections, self.title = [], [], ''
        in_tests, sec = False, None
        for raw in text.split('\n'):
            line = raw.strip()
            if not line or line.startswith('#'):
                continue
            key, _, val = line.lstrip('- ').partition(':')
            key, val = key.strip(), val.strip()
            if key == 'tests':
                in_tests = True
            elif key == 'name' and not in_tests:
                self.title = val
            elif key == 'name':
                sec = dict(title=val, records=[], steps=[])
                self.sections.append(sec)
            elif key in ('spf', 'exp', 'a', 'aaaa', 'ptr', 'mx'):
                (sec['records'] if sec else self.base).append((key, val))
            elif key in ('domain', 'sender', 'ip', 'expect'):
                if sec is None:
                    sec = dict(title=self.title, records=[], steps=[])
                    self.sections.append(sec)
                sec['steps'].append((key, val))
        self.dns_errors = set(re.findall(r'_dns_error[A-Za-z0-9_.-]*', text))


def mail_auth_cases(path):
    """Documents split on ---; each section one unbound load (SOURCES.md 1)."""
    text = open(path, encoding='utf-8').read()
    for part in text.split('\n---'):
        doc = MailAuthDoc(part)
        state = dict(helo='', sender='', ip='')
        for sec in doc.sections:
            zone = mail_auth_zone(doc.base + sec['records'])
            for n in doc.dns_errors:  # mail-auth's resolver fails these names: here they time out
                zone.timeouts.add(owner(n))
            cases = []
            for key, val in sec['steps']:
                if key == 'expect':
                    res, _, exp = val.partition(' ')
                    cases.append(dict(state, want=[res], exp=exp or None, receiver='localdomain.org',
                                      name='%s #%d' % (sec['title'], len(cases) + 1)))
                else:
                    state['helo' if key == 'domain' else key] = val
            if cases:
                yield sec['title'], zone, cases


def mail_auth_zone(records):
    zone, mxn = Zone(), 0
    if True:
        for key, val in records:
            if key in ('spf', 'exp'):
                name, _, rec = val.partition(' ')
                zone.add_txt(name, 'TXT', rec)
            elif key in ('a', 'aaaa'):
                name, _, ips = val.partition(' ')
                for ip in ips.split(','):
                    zone.add(name, 'AAAA' if ':' in ip else 'A', ip.strip())
            elif key == 'ptr':
                ip, _, names = val.partition(' ')
                rev = reverse_name(ip)
                for n in names.split(','):
                    zone.add(rev, 'PTR', owner(n.strip()))
            elif key == 'mx':
                name, _, ips = val.partition(' ')
                for pos, ip in enumerate(x.strip() for x in ips.split(',')):
                    mxn += 1
                    host = 'mx%d-%d.mxhosts.test' % (mxn, pos)
                    zone.add(name, 'MX', '%d %s.' % (pos + 1, host))
                    zone.add(host, 'AAAA' if ':' in ip else 'A', ip)
    return zone


def reverse_name(ip):
    import ipaddress
    return ipaddress.ip_address(ip).reverse_pointer


# --- iprev (RFC 8601 3): our own cases, on the same driver and server ----------

def iprev_cases():
    zone = Zone()
    for name, t, d in [
            ('10.2.0.192.in-addr.arpa', 'PTR', 'good.example.com.'), ('good.example.com', 'A', '192.0.2.10'),
            ('11.2.0.192.in-addr.arpa', 'PTR', 'liar.example.com.'), ('liar.example.com', 'A', '192.0.2.99'),
            ('13.2.0.192.in-addr.arpa', 'PTR', 'a.example.com.'), ('13.2.0.192.in-addr.arpa', 'PTR', 'b.example.com.'),
            ('b.example.com', 'A', '192.0.2.13'),
            ('14.2.0.192.in-addr.arpa', 'PTR', 'slow.example.org.'),
            ('0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa', 'PTR', 'v6.example.com.'),
            ('v6.example.com', 'AAAA', '2001:db8::10'), ('v6.example.com', 'A', '192.0.2.10'),
            ('15.2.0.192.in-addr.arpa', 'PTR', 'v6.example.com.')]:
        zone.add(name, t, d)
    for i in range(11):  # only the 11th name resolves back: past the limit of 10
        zone.add('16.2.0.192.in-addr.arpa', 'PTR', 'n%d.example.com.' % i)
    zone.add('n10.example.com', 'A', '192.0.2.16')
    zone.timeouts.add('slow.example.org.')
    cases = [('192.0.2.10', 'pass', 'good.example.com'), ('192.0.2.11', 'fail', '-'),
             ('192.0.2.12', 'fail', '-'), ('192.0.2.13', 'pass', 'b.example.com'),
             ('192.0.2.14', 'temperror', '-'), ('2001:db8::10', 'pass', 'v6.example.com'),
             ('::ffff:192.0.2.10', 'pass', 'good.example.com'), ('192.0.2.15', 'fail', '-'),
             ('192.0.2.16', 'fail', '-')]
    return zone, [dict(ip='iprev', helo=ip, sender='', receiver='', want=[r], exp=n, name='iprev ' + ip)
                  for ip, r, n in cases]


def run_iprev(driver, ub):
    zone, cases = iprev_cases()
    ub.start(zone)
    passed, notes = 0, []
    for c, (got, name) in zip(cases, run_cases(driver, ub, cases)):
        if got in c['want'] and name == c['exp']:
            passed += 1
        else:
            notes.append('  FAIL %s: got %s %s, want %s %s' % (c['name'], got, name, c['want'][0], c['exp']))
    print('iprev (own cases): %d passed, %d failed' % (passed, len(notes)))
    for n in notes:
        print(n)
    return len(notes)


def run_lifecycle(driver, ub):
    """spf_check_cancel (no callback, freed when its lookup ends) and dns_free
    under a waiting check (temperror, delivered once), on a record whose
    include times out so the check is still waiting."""
    zone = Zone()
    zone.add_txt('slow.example.com', 'TXT', 'v=spf1 include:hole.example.org -all')
    zone.add_txt('fast.example.com', 'TXT', 'v=spf1 ip4:192.0.2.1 -all')
    zone.timeouts.add('hole.example.org.')
    ub.start(zone)
    cases = [('cancel\t192.0.2.1', 'f@fast.example.com', 'cancelled\tpass\t-'),
             ('cancel\t192.0.2.1', 'f@slow.example.com', 'cancelled\ttemperror\t-'),
             ('dnsfree\t192.0.2.1', 'f@slow.example.com', 'temperror\t-')]
    lines = ''.join('%s\thelo.example.com\t%s\tr.example.net\n' % (m, s) for m, s, _ in cases)
    p = subprocess.run([driver, '127.0.0.1:%d' % ub.port, str(TIMEOUT_MS)], input=lines.encode(),
                       capture_output=True, timeout=120)
    out = p.stdout.decode('utf-8', 'replace').splitlines()
    notes = ['  FAIL %s %s: got %r, want %r' % (m, s, got, want)
             for (m, s, want), got in zip(cases, out + [''] * len(cases)) if got != want]
    if p.returncode != 0:
        notes.append('  FAIL driver rc %d: %s' % (p.returncode, p.stderr.decode()[-2000:]))
    print('spf lifecycle (own cases): %d passed, %d failed' % (len(cases) - len(notes), len(notes)))
    for n in notes:
        print(n)
    return len(notes)


# --- running ------------------------------------------------------------------

def run_cases(driver, ub, cases, helo_first=False):
    """helo_first (mail-auth): the HELO identity is checked first and a fail there is
    conclusive (RFC 7208 2.3); otherwise the MAIL FROM result stands."""
    if helo_first:
        both = run_cases(driver, ub, [dict(c, sender='') for c in cases] + cases)
        return [h if h[0] == 'fail' and c['sender'] else m
                for c, h, m in zip(cases, both[:len(cases)], both[len(cases):])]
    lines = ''.join('%s\t%s\t%s\t%s\n' % (c['ip'], c['helo'], c['sender'], c['receiver']) for c in cases)
    p = subprocess.run([driver, '127.0.0.1:%d' % ub.port, str(TIMEOUT_MS)], input=lines.encode(),
                       capture_output=True, timeout=300)
    out = p.stdout.decode('utf-8', 'replace').splitlines()
    if p.returncode != 0 or len(out) != len(cases):
        raise RuntimeError('driver failed (rc %d): %s' % (p.returncode, p.stderr.decode()[-2000:]))
    return [tuple(o.split('\t', 1)) for o in out]


def judge(suite, case, got, exp):
    want, nocase = case['want'], False
    dev = DEVIATIONS.get((suite, case['name']))
    if dev:
        want, nocase, _ = dev
    if got not in want:
        return False
    e = case.get('exp')
    if e is not None and got == 'fail' and 'fail' in want and len(want) == 1:
        if e == 'DEFAULT':
            return exp == '-'
        return exp.lower() == str(e).lower() if nocase else exp == str(e)
    return True


def main():
    driver = os.path.abspath(sys.argv[1])
    root = sys.argv[2] if len(sys.argv) > 2 else SUITES
    files = [('rfc7208-tests.yml', openspf_cases(os.path.join(root, 'rfc7208-tests.yml')))]
    madir = os.path.join(root, 'mail-auth')
    for f in sorted(os.listdir(madir)):
        if f.endswith('.yml'):
            files.append(('mail-auth/' + f, mail_auth_cases(os.path.join(madir, f))))
    ub = Unbound()
    total_failed = 0
    try:
        for suite, scenarios in files:
            passed, failed, notes = 0, 0, []
            for title, zone, cases in scenarios:
                ub.start(zone)
                results = run_cases(driver, ub, cases, helo_first=suite.startswith('mail-auth/'))
                for case, (got, exp) in zip(cases, results):
                    if judge(suite, case, got, exp):
                        passed += 1
                    else:
                        failed += 1
                        notes.append('  FAIL %s: got %s (%s), want %s%s' % (
                            case['name'], got, exp, '|'.join(map(str, case['want'])),
                            ' (%s)' % case['exp'] if case.get('exp') else ''))
            ndev = sum(1 for k in DEVIATIONS if k[0] == suite)
            print('spf %s: %d passed, %d failed%s' % (suite, passed, failed,
                                                      ' (%d documented deviation(s))' % ndev if ndev else ''))
            for n in notes:
                print(n)
            total_failed += failed
        total_failed += run_iprev(driver, ub)
        total_failed += run_lifecycle(driver, ub)
    finally:
        ub.close()
    return 1 if total_failed else 0


if __name__ == '__main__':
    sys.exit(main())
