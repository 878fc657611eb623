"""Tempfails every sender at MAIL FROM."""
import Milter
import common


class M(common.Recorder):
    def envfrom(self, f, *a):
        super().envfrom(f, *a)
        return Milter.TEMPFAIL


common.run(M)
