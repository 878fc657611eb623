"""Adds a header at the end, and inserts one at the top."""
import Milter
import common


class M(common.Recorder):
    def eom(self):
        super().eom()
        self.addheader('X-Spam-Score', '1.5')
        self.addheader('X-Top', 'first', 0)
        return Milter.ACCEPT


common.run(M)
