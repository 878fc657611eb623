"""Quarantines every message."""
import Milter
import common


class M(common.Recorder):
    def eom(self):
        super().eom()
        self.quarantine('looks like a virus')
        return Milter.CONTINUE


common.run(M)
