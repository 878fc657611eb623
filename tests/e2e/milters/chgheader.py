"""Changes the Subject:, deletes X-Remove-Me: (a change with an empty value)."""
import Milter
import common


class M(common.Recorder):
    def eom(self):
        super().eom()
        self.chgheader('Subject', 1, '[SPAM] changed')
        self.chgheader('X-Remove-Me', 1, '')
        return Milter.CONTINUE


common.run(M)
