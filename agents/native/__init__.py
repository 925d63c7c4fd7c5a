"""Native kernels, compiled on first use with the machine's C compiler and cached; None where that cannot be done.

``fused_step()`` is ``fused_step.c`` (one PPO / A2C gradient of a categorical MLP actor-critic, and the
collector's policy step, the matrix products through the BLAS NumPy already loaded), built with ``cc -O3 -march=native`` into
``$HYPERRL_CACHE`` (default ``~/.cache/hyperrl``) under a name that hashes the source, the compiler and the
machine, so a change of any builds afresh; a build takes about a second, once per machine.  Without a C
compiler, or with a NumPy whose BLAS is not the 64-bit-integer OpenBLAS of its wheels, it returns None and
``agents.fused`` keeps its NumPy step (``HYPERRL_NATIVE=0`` asks for that too).  ``compiled(source)`` builds
and loads any other kernel the same way (``solvers.optim4rl.kernel``'s).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("fused_step.c")
HEADERS = Path(__file__).parent
"""where the kernels' shared header (``fast_math.h``) lives: on every build's include path"""
_SGEMM_NAMES = ("scipy_cblas_sgemm64_", "cblas_sgemm64_")
"""the 64-bit-integer cblas_sgemm of NumPy's OpenBLAS (its wheels' names), which fused_step.c calls"""


def _cache_dir() -> Path:
    return Path(os.environ.get("HYPERRL_CACHE", Path.home() / ".cache" / "hyperrl")) / "native"


def _numpy_sgemm() -> int | None:
    """The address of NumPy's own OpenBLAS sgemm (64-bit integers), or None."""
    import numpy as np

    folder = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    for lib in sorted(folder.glob("libscipy_openblas64*.so*")):
        handle = ctypes.CDLL(str(lib))  # already loaded by NumPy: this finds the same copy
        for name in _SGEMM_NAMES:
            if hasattr(handle, name):
                return ctypes.cast(getattr(handle, name), ctypes.c_void_p).value
    return None


def _build(compiler: str, source: Path) -> Path:
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True).stdout
    headers = b"".join(h.read_bytes() for h in sorted(HEADERS.glob("*.h")))
    flags = ["-O3", "-march=native", "-fno-math-errno", "-fPIC", "-shared", "-pthread", f"-I{HEADERS}"]
    identity = source.read_bytes() + headers + " ".join(flags).encode() + version.encode() + platform.processor().encode()
    key = hashlib.sha256(identity + _cpu_flags()).hexdigest()
    target = _cache_dir() / f"{source.stem}-{key[:16]}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:  # built aside, then moved in whole
            built = Path(tmp) / target.name
            cmd = [compiler, *flags, "-o", str(built), str(source), "-lm"]
            subprocess.run(cmd, capture_output=True, check=True)
            os.replace(built, target)
    return target


def _cpu_flags() -> bytes:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return b""
    return next((line.encode() for line in lines if line.startswith("flags")), b"")


def compiled(source: Path) -> ctypes.CDLL | None:
    """The C file ``source`` built (once per machine, cached as above) and loaded, or None: no compiler, not
    Linux, ``HYPERRL_NATIVE=0``, or the build failed.  Callers keep a pure-Python path for None (and cache
    the library they set up: this looks the compiler up and hashes the source on every call)."""
    if os.environ.get("HYPERRL_NATIVE", "1") == "0" or platform.system() != "Linux":
        return None
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        return None
    try:
        return ctypes.CDLL(str(_build(compiler, Path(source))))
    except (OSError, subprocess.CalledProcessError):
        return None


@functools.cache
def fused_step() -> ctypes.CDLL | None:
    """The compiled ``fused_step`` kernel with NumPy's sgemm set, or None (then the NumPy step serves)."""
    sgemm = _numpy_sgemm()
    lib = compiled(SOURCE) if sgemm is not None else None
    if lib is None:
        return None
    lib.set_sgemm.argtypes = [ctypes.c_void_p]
    lib.set_sgemm(sgemm)
    lib.fused_step.restype = ctypes.c_double
    lib.fused_step.argtypes = [ctypes.c_void_p] * 10
    lib.policy_act.restype = None
    lib.policy_act.argtypes = [ctypes.c_void_p] * 8
    return lib
