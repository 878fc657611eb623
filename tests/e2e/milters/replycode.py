"""Answers the end of data with its own code and text (a 4xx)."""
import Milter
import common


class M(common.Recorder):
    def eom(self):
        super().eom()
        self.setreply('452', '4.3.2', 'come back later please')
        return Milter.TEMPFAIL


common.run(M)
