"""Records everything and accepts every message (also the bench milter)."""
import common


class M(common.Recorder):
    pass


common.run(M)
