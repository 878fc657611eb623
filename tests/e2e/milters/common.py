"""Shared by the test milters (pymilter, Debian's python3-milter): run one
milter class on the socket given as argv[1] ("inet:PORT@127.0.0.1"), and
append what it saw, one JSON object a line, to argv[2]. Each milter in this
folder is a few lines on top of Recorder: what it does at which stage."""
import json
import sys
import threading

import Milter

_lock = threading.Lock()


class Recorder(Milter.Base):
    """Records every callback (with the macros the MTA sent) and continues."""

    def __init__(self):
        self.id = Milter.uniqueID()

    def rec(self, stage, **kw):
        with _lock, open(sys.argv[2], 'a') as f:
            f.write(json.dumps(dict(stage=stage, id=self.id, **kw)) + '\n')

    def connect(self, hostname, family, hostaddr):
        self.rec('connect', hostname=hostname, addr=hostaddr[0],
                 client_addr=self.getsymval('{client_addr}'), j=self.getsymval('j'),
                 daemon_name=self.getsymval('{daemon_name}'))
        return Milter.CONTINUE

    def hello(self, helo):
        self.rec('helo', helo=helo, tls_version=self.getsymval('{tls_version}'))
        return Milter.CONTINUE

    def envfrom(self, f, *a):
        self.rec('mail', sender=f)
        return Milter.CONTINUE

    def envrcpt(self, to, *a):
        self.rec('rcpt', rcpt=to)
        return Milter.CONTINUE

    def header(self, name, value):
        self.rec('header', name=name, value=value)
        return Milter.CONTINUE

    def eoh(self):
        self.rec('eoh')
        return Milter.CONTINUE

    def body(self, chunk):
        self.rec('body', size=len(chunk))
        return Milter.CONTINUE

    def eom(self):
        self.rec('eom', queue_id=self.getsymval('{i}'))
        return Milter.CONTINUE

    def abort(self):
        return Milter.CONTINUE


def run(cls):
    Milter.factory = cls
    Milter.set_flags(Milter.ADDHDRS | Milter.CHGHDRS | Milter.CHGBODY | Milter.QUARANTINE)
    print('ready', flush=True)
    Milter.runmilter('mxvault-test', sys.argv[1], timeout=60)
