"""Rejects the recipient spam@..., with its own reply text; others go on."""
import Milter
import common


class M(common.Recorder):
    def envrcpt(self, to, *a):
        super().envrcpt(to, *a)
        if to.lower().startswith('<spam@'):
            self.setreply('550', '5.7.1', 'no spam here')
            return Milter.REJECT
        return Milter.CONTINUE


common.run(M)
