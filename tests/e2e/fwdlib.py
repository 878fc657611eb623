"""fwdlib: real peers for the forward-side end-to-end tests (test_forward.py).

  Unbound(records, refuse=(), port=None, redirect=(), zones=(), drop=())
      unbound (/usr/sbin/unbound) as the authoritative server of the zone
      "test." (local-zone static) on 127.0.0.1:port (a free port unless
      given). records: local-data lines without quotes, e.g.
      "primary.test. IN MX 10 mx1.test."; a TXT record's strings in double
      quotes ('x.test. IN TXT "v=spf1 -all"'). refuse: zones answered REFUSED
      (records inside them are left out: unbound would answer those).
      drop: zones whose queries get no answer at all (local-zone deny: a
      dead or unreachable name server; records inside are left out too).
      redirect: zones of type redirect: every name under "h.test." answers
      with the records given for "h.test." itself (one large A set for
      thousands of host names).
      start() waits (bounded) until dig gets an answer; stop() kills it.
      u.resolver is the "127.0.0.1:PORT" for mxvault's [server] resolver;
      u.queries(name, qtype) counts the queries it logged. A context manager.

  SignedZone(origin, records, signed=True, trusted=True, bogus=())
      An authoritative server for one zone below "test." (unbound with an
      auth-zone, its own process on 127.0.0.1:port), the zone DNSSEC-signed
      with Debian's ldns tools (ldns-keygen: an ECDSAP256SHA256 KSK and ZSK;
      ldns-signzone: NSEC). records: zone-file lines, absolute names
      ("mx1.dane.test. IN A 127.0.0.2"); SOA and NS are added. signed=False
      serves it unsigned. trusted: whether an Unbound given this zone gets
      its trust anchor (the KSK's DS, z.ds): without it the answers are
      insecure (no AD bit). bogus: (name, type) pairs whose RRSIG is
      corrupted after signing: a validating resolver answers SERVFAIL for
      them. Start it before the Unbound that uses it: Unbound(records,
      zones=[z]) delegates the zone to it (stub-zone), validates it (module
      validator) and overrides its part of the static "test." zone.
      z.set_records(records) re-signs and reloads (a key change, a new
      TLSA); the resolver's cache still holds answers for up to 2 s (TTL).

  UdpBlackhole(port)
      A "DNS server" that swallows every query (lookups time out) and
      counts them (.count); stop() frees the port.

  Primary(host, port, name='mx.test', tls=None, pipelining=False)
      A recording SMTP server (aiosmtpd in a thread with its own asyncio
      loop) on host:port: the "primary" mail server of a backed-up domain,
      or the sender domain's MX that receives our DSNs. Every transaction
      it accepts is kept as a Delivery (t: time.monotonic() of the final
      250, mail_from ('' for <>), rcpt_tos, data: bytes, tls: bool, helo).
      p.rcpt_reply: None (accept all) or a callable address -> reply text
      or None (accept); p.data_hook: called with (Delivery) before the 250
      (test 9 uses it to kill -9 mxvault mid-delivery). tls: (cert, key)
      paths to offer STARTTLS. p.ehlos counts EHLO/HELO commands (every
      connection mxvault makes says one); p.rcpt_replies lists (address,
      reply) for every RCPT. raw=True keeps every byte each session
      received, exactly as sent (dot-stuffing and all): p.raw() is a list
      of bytes, one per session. pipelining=True adds PIPELINING to the EHLO
      reply (aiosmtpd handles pipelined commands in order). start()/stop()
      may be repeated; stop() closes every session, as a server process
      that exits would. p.dsns(): the transactions with MAIL FROM:<>.

  CA(dir), PolicyServer(cert, key, text), policy(mode, mx, max_age)
      MTA-STS (test_mta_sts.py, test_dane.py): a test CA made with openssl
      (ca.cert, ca.key; ca.leaf(name) -> (cert, key) for that DNS name; the
      directory and files readable by the daemon's user, since curl reads
      tls_ca_file after privileges are dropped), the HTTPS server of
      https://mta-sts.DOMAIN/.well-known/mta-sts.txt on HTTPS_HOST:443
      (needs root; .policy is the text served, .count() the requests) and
      the text of a policy file.

  Helpers: make_cert(dir, cn, ca=None) -> (cert, key) (self-signed, or
  signed by ca = make_ca(dir, cn) -> (cert, key), the cert file then holding
  the chain); spki_sha256(cert) and cert_sha256(cert): the hex digests of a
  TLSA 3 1 1 / 2 0 1 record; parse_dsn(bytes) -> dict;
  send(d, sender, rcpts, data=None, s=None) -> queue id; fwd_daemon(dns,
  mx_port, domains, **server) -> mxv.Daemon (hold=False: MX lookups);
  env_set(**kv) (environment for daemons started inside); rcpt_states(q).

Needs /usr/bin/python3 (Debian's python3-aiosmtpd); Controller is None
without it and test_forward.py skips.
"""
import asyncio
import base64
import collections
import contextlib
import email
import email.policy
import hashlib
import http.server
import logging
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxv  # noqa: E402

try:
    from aiosmtpd.controller import Controller
except ImportError:  # run with /usr/bin/python3 (Debian's python3-aiosmtpd)
    Controller = None
# aiosmtpd logs every session exception (a TLS handshake the client gives
# up on, a connection cut by kill -9) with a traceback: noise in test output.
logging.getLogger('mail.log').setLevel(logging.CRITICAL)

UNBOUND = '/usr/sbin/unbound'
QUEUED_RX = re.compile(r'queued as ([0-9a-f]{16})\b')


# --- DNS ------------------------------------------------------------------

class Unbound:
    def __init__(self, records=(), refuse=(), port=None, redirect=(), zones=(), drop=()):
        self.zones = list(zones)
        self.dir = tempfile.mkdtemp(prefix='mxv-unbound-')
        self.port = port or mxv.free_port()
        self.resolver = '%s:%d' % (mxv.HOST, self.port)
        self.records = list(records)
        self.refuse = list(refuse)
        self.drop = list(drop)
        self.redirect = list(redirect)
        self.proc = None
        self.conf = os.path.join(self.dir, 'unbound.conf')

    def config_text(self):
        out = ['server:',
               '  interface: 127.0.0.1', '  port: %d' % self.port,
               '  do-daemonize: no', '  username: ""', '  chroot: ""',
               '  directory: "%s"' % self.dir, '  pidfile: ""',
               '  use-syslog: no', '  logfile: "%s/unbound.log"' % self.dir,
               '  verbosity: 1', '  log-queries: yes', '  do-ip6: no',
               '  access-control: 127.0.0.0/8 allow',
               '  do-not-query-localhost: no',
               '  module-config: "%s"' % ('validator iterator' if self.zones else 'iterator'),
               '  local-zone: "test." static',
               '  local-data: "ready.test. IN TXT ok"']
        for z in self.zones:  # delegated below: resolved (and validated) through its server
            out += ['  local-zone: "%s" transparent' % z.origin]
            if z.trusted and z.ds:
                out += ['  trust-anchor: "%s"' % z.ds]
        if self.zones:
            out += ['  val-log-level: 2']
        out += ['  local-zone: "%s" refuse' % z for z in self.refuse]
        out += ['  local-zone: "%s" deny' % z for z in self.drop]
        out += ['  local-zone: "%s" redirect' % z for z in self.redirect]
        # (unbound answers local data even inside a "refuse" zone: leave it out)
        # a record with quoted strings (TXT) goes in single quotes
        out += [("  local-data: '%s'" if '"' in r else '  local-data: "%s"') % r
                for r in self.records if not self.refused(r.split()[0])]
        for z in self.zones:
            out += ['stub-zone:', '  name: "%s"' % z.origin, '  stub-addr: %s@%d' % (mxv.HOST, z.port)]
        out += ['remote-control:', '  control-enable: no']
        return '\n'.join(out) + '\n'

    def refused(self, name):
        name = name.rstrip('.').lower()
        return any(name == z.rstrip('.').lower() or name.endswith('.' + z.rstrip('.').lower())
                   for z in self.refuse + self.drop)

    def answers(self):
        p = subprocess.run(['dig', '@127.0.0.1', '-p', str(self.port), '+time=1', '+tries=1', '+short',
                            'ready.test.', 'TXT'], capture_output=True, text=True, timeout=5)
        return p.returncode == 0 and '"ok"' in p.stdout

    def start(self, timeout=10):
        with open(self.conf, 'w') as f:
            f.write(self.config_text())
        with open(os.path.join(self.dir, 'stderr'), 'ab') as err:
            self.proc = subprocess.Popen([UNBOUND, '-d', '-c', self.conf], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError('unbound exited with %s: %s' % (self.proc.returncode, self.log_text()))
            return self.answers()
        mxv.wait_until(ready, timeout, 'unbound to answer on port %d' % self.port, interval=0.05)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def queries(self, name, qtype='MX'):
        """How many queries for name/qtype unbound has logged (all its runs in this dir)."""
        rx = re.compile(r'info: \S+ %s\. %s IN$' % (re.escape(name.rstrip('.')), qtype), re.M | re.I)
        return len(rx.findall(self.log_text()))

    def log_text(self):
        text = ''
        for n in ('unbound.log', 'stderr'):
            with contextlib.suppress(OSError), open(os.path.join(self.dir, n), errors='replace') as f:
                text += f.read()
        return text

    def cleanup(self):
        self.stop()
        if not os.environ.get('MXV_KEEP'):
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        if not self.proc:
            self.start()
        return self

    def __exit__(self, *exc):
        self.cleanup()


class SignedZone(Unbound):
    """An unbound of its own, authoritative for one zone (see the module doc)."""

    def __init__(self, origin, records, signed=True, trusted=True, bogus=(), port=None):
        super().__init__(port=port)
        self.origin = origin.rstrip('.') + '.'
        self.signed, self.trusted, self.bogus = signed, trusted, list(bogus)
        self.records = list(records)
        self.zonefile = os.path.join(self.dir, 'zone.signed')
        self.keys = []
        self.ds = None
        self.serial = 1

    def _keys(self):
        if self.keys:
            return
        for ksk in (True, False):
            p = subprocess.run(['ldns-keygen', '-a', 'ECDSAP256SHA256'] + (['-k'] if ksk else []) + [self.origin],
                               cwd=self.dir, check=True, capture_output=True, text=True, timeout=60)
            self.keys.append(p.stdout.strip())
        with open(os.path.join(self.dir, self.keys[0] + '.ds')) as f:
            self.ds = ' '.join(f.read().split())

    def _write_zone(self):
        head = ['$TTL 2',
                '%s IN SOA ns.%s hostmaster.%s %d 3600 600 86400 2' % (self.origin, self.origin, self.origin,
                                                                      self.serial),
                '%s IN NS ns.%s' % (self.origin, self.origin), 'ns.%s IN A %s' % (self.origin, mxv.HOST)]
        plain = os.path.join(self.dir, 'zone')
        with open(plain, 'w') as f:
            f.write('\n'.join(head + self.records) + '\n')
        if not self.signed:
            shutil.copyfile(plain, self.zonefile + '.new')
        else:
            self._keys()
            subprocess.run(['ldns-signzone', '-o', self.origin, '-f', self.zonefile + '.new', plain] + self.keys,
                           cwd=self.dir, check=True, capture_output=True, timeout=60)
            self._corrupt(self.zonefile + '.new')
        os.replace(self.zonefile + '.new', self.zonefile)

    def _corrupt(self, path):
        """Flips a bit in the signature of each RRSIG covering a (name, type) in self.bogus."""
        want = {(n.rstrip('.').lower() + '.', t.upper()) for n, t in self.bogus}
        lines = []
        with open(path) as f:
            for line in f:
                fields = line.split()
                if len(fields) > 5 and fields[3] == 'RRSIG' and (fields[0].lower(), fields[4].upper()) in want:
                    sig = bytearray(base64.b64decode(fields[-1]))
                    sig[len(sig) // 2] ^= 0x01
                    line = '\t'.join(fields[:-1] + [base64.b64encode(bytes(sig)).decode()]) + '\n'
                lines.append(line)
        with open(path, 'w') as f:
            f.writelines(lines)

    def config_text(self):
        return '\n'.join([
            'server:', '  interface: %s' % mxv.HOST, '  port: %d' % self.port,
            '  do-daemonize: no', '  username: ""', '  chroot: ""', '  directory: "%s"' % self.dir,
            '  pidfile: ""', '  use-syslog: no', '  logfile: "%s/unbound.log"' % self.dir, '  verbosity: 1',
            '  do-ip6: no', '  access-control: 127.0.0.0/8 allow', '  module-config: "iterator"',
            '  local-zone: "test." nodefault',  # unbound blocks "test." (RFC 6761) unless told not to
            'auth-zone:', '  name: "%s"' % self.origin, '  zonefile: "%s"' % self.zonefile,
            '  for-downstream: yes', '  for-upstream: no',
            'remote-control:', '  control-enable: no']) + '\n'

    def answers(self):
        """Serving the zone at its current serial."""
        p = subprocess.run(['dig', '@' + mxv.HOST, '-p', str(self.port), '+time=1', '+tries=1', '+short',
                            self.origin, 'SOA'], capture_output=True, text=True, timeout=5)
        f = p.stdout.split()
        return p.returncode == 0 and len(f) > 2 and f[2] == str(self.serial)

    def start(self, timeout=20):
        self._write_zone()
        return super().start(timeout)

    def set_records(self, records, timeout=20):
        """New zone content, re-signed with the same keys, served at once (a restart of its server)."""
        self.records = list(records)
        self.serial += 1
        self.stop()
        return self.start(timeout)


class UdpBlackhole:
    """A DNS server that never answers: counts the datagrams it swallows."""

    def __init__(self, port):
        self.port = port
        self.count = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((mxv.HOST, port))
        self.sock.settimeout(0.1)
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            try:
                self.sock.recv(4096)
                self.count += 1
            except socket.timeout:
                pass
            except OSError:
                return

    def stop(self):
        if self.running:
            self.running = False
            self.thread.join(5)
            self.sock.close()


# --- SMTP peers -----------------------------------------------------------

Delivery = collections.namedtuple('Delivery', 't mail_from rcpt_tos data tls helo')


class _Handler:
    def __init__(self, owner):
        self.o = owner

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        with self.o.lock:
            self.o.ehlos += 1
        if self.o.pipelining:
            responses.insert(-1, '250-PIPELINING')
        return responses

    async def handle_HELO(self, server, session, envelope, hostname):
        session.host_name = hostname
        with self.o.lock:
            self.o.ehlos += 1
        return '250 %s' % self.o.name

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        reply = self.o.mail_reply
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return '250 2.1.0 Ok'

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        rule = self.o.rcpt_reply
        reply = rule(address) if rule else None
        with self.o.lock:
            self.o.rcpt_replies.append((address, reply or '250'))
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return '250 2.1.5 Ok'

    async def handle_DATA(self, server, session, envelope):
        dl = Delivery(time.monotonic(), envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content),
                      session.ssl is not None, session.host_name)
        with self.o.lock:
            self.o.records.append(dl)
        if self.o.data_hook:
            self.o.data_hook(dl)
        return '250 2.0.0 Ok: stored'


class _Controller(Controller or object):
    """aiosmtpd's Controller, remembering its sessions so stop() can close
    them: a server that stops must look like a process that exited (the
    peer sees the connection close), not leave sockets open and silent."""

    def factory(self):
        proto = super().factory()
        self.protos = getattr(self, 'protos', [])
        self.protos.append(proto)
        sink = getattr(self, 'raw_sink', None)
        if sink is not None:
            got = bytearray()
            sink.append(got)
            received = proto.data_received

            def record(data):
                got.extend(data)
                received(data)
            proto.data_received = record
        return proto

    def close_sessions(self):
        async def close_all():
            self.server.close()  # no new sessions; the kernel resets the backlog
            for _ in range(3):   # accepts already under way still make sessions
                await asyncio.sleep(0.05)
                for p in getattr(self, 'protos', []):
                    for t in (getattr(p, 'transport', None), getattr(p, '_original_transport', None)):
                        if t is not None:
                            t.abort()
        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(close_all(), self.loop).result(5)


def _shutdown_leftovers(host, port):
    """Shuts down (FIN to the peer) every socket of this process still
    connected on host:port. aiosmtpd can leave behind a session accepted in
    the instant it stops, open and silent; a real server that stops closes
    them all. shutdown() without close(): the owner still closes its fd."""
    want = '%s:%04X' % (''.join('%02X' % int(b) for b in reversed(host.split('.'))), port)
    inodes = set()
    with open('/proc/net/tcp') as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == want and fields[3] != '0A':  # not the (closed) listener
                inodes.add(fields[9])
    for fd in os.listdir('/proc/self/fd'):
        with contextlib.suppress(OSError):
            link = os.readlink('/proc/self/fd/' + fd)
            if link.startswith('socket:[') and link[8:-1] in inodes:
                s = socket.socket(fileno=int(fd))
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.detach()


class Primary:
    def __init__(self, host, port, name='mx.test', tls=None, pipelining=False, rcpt_reply=None, smtputf8=True,
                 raw=False):
        self.host, self.port, self.name = host, port, name
        self.raw_sessions = [] if raw else None
        self.smtputf8 = smtputf8
        self.tls = tls
        self.pipelining = pipelining
        self.rcpt_reply = rcpt_reply
        self.mail_reply = None
        self.data_hook = None
        self.lock = threading.Lock()
        self.records = []
        self.rcpt_replies = []
        self.ehlos = 0
        self.ctl = None
        self.started_at = None

    def start(self):
        assert self.ctl is None
        kw = {}
        if self.tls:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(*self.tls)
            kw = {'tls_context': ctx, 'require_starttls': False}
        self.ctl = _Controller(_Handler(self), hostname=self.host, port=self.port, server_hostname=self.name,
                              ready_timeout=10, enable_SMTPUTF8=self.smtputf8, timeout=60, **kw)
        self.ctl.raw_sink = self.raw_sessions
        self.started_at = time.monotonic()
        self.ctl.start()
        return self

    def stop(self):
        if self.ctl:
            self.ctl.close_sessions()
            self.ctl.stop()
            _shutdown_leftovers(self.host, self.port)
            self.ctl = None

    def __enter__(self):
        return self.start() if self.ctl is None else self

    def __exit__(self, *exc):
        self.stop()

    def deliveries(self):
        with self.lock:
            return list(self.records)

    def rcpt_counts(self):
        c = collections.Counter()
        for dl in self.deliveries():
            c.update(a.lower() for a in dl.rcpt_tos)
        return c

    def wait_deliveries(self, n, timeout=10, what=None):
        """Waits until at least n transactions arrived; returns them all."""
        return mxv.wait_until(lambda: len(self.records) >= n and self.deliveries(), timeout,
                              what or '%d deliveries at %s:%d (have %d)' % (n, self.host, self.port, len(self.records)))

    def dsns(self):
        return [dl for dl in self.deliveries() if dl.mail_from in ('', '<>')]

    def raw(self):
        with self.lock:
            return [bytes(b) for b in self.raw_sessions or []]


# --- MTA-STS: a test CA and the policy's HTTPS server ---------------------

HTTPS_HOST = '127.0.0.20'  # mta-sts.DOMAIN's address in the tests' zones


class CA:
    """A test CA (openssl) and leaf certificates it signs, in a directory
    the daemon's user can read."""

    def __init__(self, directory):
        self.dir = directory
        os.chmod(directory, 0o755)
        self.cert, self.key = self.path('ca.crt'), self.path('ca.key')
        self.openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=mxvault test CA', '-days', '1',
                     '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign',
                     '-keyout', self.key, '-out', self.cert)

    def path(self, name):
        return os.path.join(self.dir, name)

    def openssl(self, *args):
        subprocess.run(['openssl'] + list(args), check=True, capture_output=True, timeout=60)

    def leaf(self, name):
        """(cert, key) for the DNS name, signed by the CA."""
        cert, key, csr, ext = (self.path(name + s) for s in ('.crt', '.key', '.csr', '.ext'))
        with open(ext, 'w') as f:
            f.write('subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\n' % name)
        self.openssl('req', '-new', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=' + name, '-keyout', key,
                     '-out', csr)
        self.openssl('x509', '-req', '-in', csr, '-CA', self.cert, '-CAkey', self.key, '-CAcreateserial',
                     '-days', '1', '-extfile', ext, '-out', cert)
        for p in (cert, key, self.cert):
            os.chmod(p, 0o644)
        return cert, key


class PolicyServer:
    """https://mta-sts.DOMAIN/.well-known/mta-sts.txt on HTTPS_HOST:443 (any
    DOMAIN whose mta-sts name points there; the certificate names it):
    serves .policy (text/plain), counts the requests for it."""

    def __init__(self, cert, key, policy):
        self.policy = policy
        self.requests = 0
        self.lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                with owner.lock:
                    owner.requests += 1
                if self.path != '/.well-known/mta-sts.txt':
                    self.send_error(404)
                    return
                body = owner.policy.encode()
                self.send_response(200)
                self.send_header('Content-Type', 'text/plain; charset=utf-8')
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(cert, key)
        self.httpd = http.server.ThreadingHTTPServer((HTTPS_HOST, 443), Handler, bind_and_activate=False)
        self.httpd.allow_reuse_address = True
        self.httpd.daemon_threads = True
        self.httpd.server_bind()
        self.httpd.server_activate()
        self.httpd.socket = self.ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
        self.thread.start()

    def count(self):
        with self.lock:
            return self.requests

    def stop(self):
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(5)
            self.httpd = None


def policy(mode='enforce', mx=('mx1.sts.test',), max_age=86400):
    """The text of an MTA-STS policy file."""
    return 'version: STSv1\r\nmode: %s\r\n%smax_age: %d\r\n' % (mode, ''.join('mx: %s\r\n' % m for m in mx), max_age)


# --- helpers --------------------------------------------------------------

def make_cert(directory, cn, ca=None):
    """A certificate for cn: self-signed, or issued by ca (cert, key) with the
    chain (leaf, then the CA) in the returned cert file."""
    cert, key = os.path.join(directory, cn + '.crt'), os.path.join(directory, cn + '.key')
    args = ['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=' + cn,
            '-addext', 'subjectAltName=DNS:' + cn, '-days', '1', '-keyout', key, '-out', cert]
    if ca:
        args += ['-CA', ca[0], '-CAkey', ca[1], '-addext', 'basicConstraints=critical,CA:FALSE']
    subprocess.run(args, check=True, capture_output=True, timeout=60)
    if ca:
        with open(cert, 'a') as out, open(ca[0]) as f:
            out.write(f.read())
    return cert, key


def make_ca(directory, cn):
    """A test certificate authority: (cert, key)."""
    cert, key = os.path.join(directory, cn + '.ca.crt'), os.path.join(directory, cn + '.ca.key')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
                    '-subj', '/CN=' + cn, '-addext', 'basicConstraints=critical,CA:TRUE',
                    '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-days', '1', '-keyout', key, '-out', cert],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def _openssl_der(args, pem):
    return subprocess.run(['openssl'] + args, input=pem, check=True, capture_output=True, timeout=30).stdout


def spki_sha256(cert):
    """SHA-256 of the certificate's SubjectPublicKeyInfo (the first in the file): TLSA 3 1 1 / 2 1 1 data."""
    with open(cert, 'rb') as f:
        pub = _openssl_der(['x509', '-noout', '-pubkey'], f.read())
    return hashlib.sha256(_openssl_der(['pkey', '-pubin', '-outform', 'DER'], pub)).hexdigest()


def cert_sha256(cert):
    """SHA-256 of the whole certificate (the first in the file): TLSA 3 0 1 / 2 0 1 data."""
    with open(cert, 'rb') as f:
        return hashlib.sha256(_openssl_der(['x509', '-outform', 'DER'], f.read())).hexdigest()


def parse_dsn(data):
    """A DSN's parts: content_type, report_type, the per-message fields
    ('message': reporting-mta, arrival-date, ...) and per recipient block
    the fields action, status, final-recipient, remote-mta, diagnostic-code,
    will-retry-until ... (lower-cased keys, values as sent, whitespace
    runs folded), plus the whole text."""
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    out = {'content_type': msg.get_content_type(), 'report_type': msg.get_param('report-type'),
           'subject': msg.get('Subject', ''), 'rcpts': [], 'text': data.decode('utf-8', 'replace'),
           'auto_submitted': msg.get('Auto-Submitted', ''), 'message': {}}
    for part in msg.walk():
        if part.get_content_type() in ('message/delivery-status', 'message/global-delivery-status'):
            blocks = part.get_payload()
            if isinstance(blocks, list) and len(blocks) == 1:
                # message/global-delivery-status is parsed as one embedded message: split it again
                blocks = blocks[0].as_string()
            if isinstance(blocks, str):  # message/global-delivery-status may come as text
                blocks = [email.message_from_string(b) for b in re.split(r'\r?\n\r?\n', blocks) if b.strip()]
            if blocks:
                out['message'] = {k.lower(): ' '.join(v.split()) for k, v in blocks[0].items()}
            for b in blocks[1:]:
                out['rcpts'].append({k.lower(): ' '.join(v.split()) for k, v in b.items()})
    return out


def send(d, sender, rcpts, data=None, s=None):
    """One transaction into mxvault; returns the queue id (asserts 250)."""
    if isinstance(rcpts, str):
        rcpts = [rcpts]
    if data is None:
        data = mxv.message(sender or 'mailer-daemon@sender.test', rcpts[0])
    own = s is None
    if own:
        s = d.smtp(timeout=30)
    try:
        s.ehlo_or_helo_if_needed()
        code, text = s.mail(sender)
        assert code == 250, 'MAIL: %d %s' % (code, text)
        for r in rcpts:
            code, text = s.rcpt(r)
            assert code == 250, 'RCPT %s: %d %s' % (r, code, text)
        code, text = s.data(data)
        text = text.decode('utf-8', 'replace')
        assert code == 250, 'DATA: %d %s' % (code, text)
        m = QUEUED_RX.search(text)
        assert m, text
        return m.group(1)
    finally:
        if own:
            s.quit()


def fwd_daemon(dns, mx_port, domains, **server):
    """An mxvault (not started) that forwards: resolver = dns (an Unbound or
    "IP:PORT"), every MX on mx_port, fast probes and retries."""
    keys = {'resolver': dns if isinstance(dns, str) else dns.resolver, 'mx_port': mx_port,
            'probe_interval': '1s', 'retry_min': '1s', 'retry_max': '4s'}
    keys.update(server)
    # hold=False: domains without a primary key are routed by MX lookup
    return mxv.Daemon(domains=domains, hold=False, **keys)


@contextlib.contextmanager
def env_set(**kv):
    """Sets environment variables (inherited by daemons started inside)."""
    old = {k: os.environ.get(k) for k in kv}
    os.environ.update({k: str(v) for k, v in kv.items()})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def rcpt_states(queue):
    """{address: state} over a `queue list --json` result."""
    return {r['address']: r['state'] for m in queue for r in m['recipients']}
