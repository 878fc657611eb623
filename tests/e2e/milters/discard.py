"""Discards every message at the end of data."""
import Milter
import common


class M(common.Recorder):
    def eom(self):
        super().eom()
        return Milter.DISCARD


common.run(M)
