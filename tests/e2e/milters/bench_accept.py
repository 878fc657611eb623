"""The bench milter: sees every stage (connect to the end of data, headers and
body included), records nothing, continues, and accepts at the end of data."""
import sys

import Milter


class M(Milter.Base):
    def envfrom(self, f, *a):
        return Milter.CONTINUE

    def envrcpt(self, to, *a):
        return Milter.CONTINUE

    def header(self, name, value):
        return Milter.CONTINUE

    def eoh(self):
        return Milter.CONTINUE

    def body(self, chunk):
        return Milter.CONTINUE

    def eom(self):
        return Milter.ACCEPT


Milter.factory = M
print('ready', flush=True)
Milter.runmilter('mxvault-bench', sys.argv[1], timeout=60)
