"""Rejects a message whose body contains GTUBE-like "XJS*C4JDBQADN1" at the end of data."""
import Milter
import common


class M(common.Recorder):
    def envfrom(self, f, *a):
        self.buf = b''
        return super().envfrom(f, *a)

    def body(self, chunk):
        self.buf += chunk
        return super().body(chunk)

    def eom(self):
        super().eom()
        if b'XJS*C4JDBQADN1' in self.buf:
            return Milter.REJECT
        return Milter.CONTINUE


common.run(M)
