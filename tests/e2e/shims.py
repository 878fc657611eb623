"""shims: LD_PRELOAD libraries for the end-to-end tests, built on first use.

  build(name) -> path of tests/e2e/shims/NAME.c compiled as a shared object
                 (in a temporary directory kept for the test run), or None
                 when there is no C compiler (the caller skips)
  preload_env(so, **extra) -> environment entries for a daemon: LD_PRELOAD
                 plus ASAN_OPTIONS that let ASan accept a preloaded library
"""
import atexit
import os
import shutil
import subprocess
import tempfile

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'shims')
_built = {}
_dir = None


def build(name):
    global _dir
    if name in _built:
        return _built[name]
    cc = shutil.which('cc') or shutil.which('gcc') or shutil.which('clang')
    if not cc:
        return None
    if _dir is None:
        _dir = tempfile.mkdtemp(prefix='mxv-shims-')
        atexit.register(shutil.rmtree, _dir, True)
        os.chmod(_dir, 0o755)  # the daemon loads it after dropping root
    so = os.path.join(_dir, name + '.so')
    subprocess.run([cc, '-O2', '-shared', '-fPIC', '-o', so, os.path.join(HERE, name + '.c'), '-ldl'],
                   check=True, capture_output=True)
    _built[name] = so
    return so


def preload_env(so, **extra):
    asan = os.environ.get('ASAN_OPTIONS', '')
    env = {'LD_PRELOAD': so, 'ASAN_OPTIONS': (asan + ':' if asan else '') + 'verify_asan_link_order=0'}
    env.update({k: str(v) for k, v in extra.items()})
    return env
