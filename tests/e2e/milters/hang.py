"""Answers nothing at MAIL FROM for a long time (a milter that hangs)."""
import threading

import Milter
import common

_stop = threading.Event()


class M(common.Recorder):
    def envfrom(self, f, *a):
        super().envfrom(f, *a)
        _stop.wait(120)
        return Milter.CONTINUE


common.run(M)
