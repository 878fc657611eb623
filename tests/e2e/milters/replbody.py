"""Replaces the body."""
import Milter
import common


class M(common.Recorder):
    def eom(self):
        super().eom()
        self.replacebody(b'the body was replaced\r\nsecond line\r\n')
        return Milter.CONTINUE


common.run(M)
