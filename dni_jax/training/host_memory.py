"""Keep freed host memory in the process (glibc), so big XLA:CPU buffers are reused.

XLA:CPU allocates each execution's scratch buffer with ``malloc`` and frees
it afterwards. glibc serves a request above its mmap threshold (at most
32 MiB) with a fresh ``mmap`` and unmaps it on ``free``, so every step of a
program whose scratch is bigger, such as a vmapped sweep group of eight
LSTMs (39 MiB), page-faults its whole scratch in again. On a 2-core x86
CPU that made the step of a group of 8 Copy runs 21.6 ms instead of
11.5 ms (``python -m experiments.benchmark_sweep``, with and without
``--keep_freed_memory``).

``keep_freed_memory()`` tells glibc to serve every request from its heaps
(``M_MMAP_MAX = 0``) and to keep freed memory instead of returning it to
the system (``M_TRIM_THRESHOLD``). The process's resident memory stays near
its peak instead of shrinking; the numbers computed are unchanged. (One
arena for all threads, ``M_ARENA_MAX = 1``, would also keep the buffers but
makes XLA's threads queue on one lock, and steps slower.) The
entry points in ``experiments/`` call it first; a program that imports the
library may call it too. It does nothing where the C library is not glibc
(macOS, musl) or when ``DNI_JAX_KEEP_FREED_MEMORY=0``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

# mallopt(3) parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

_applied = None


def keep_freed_memory() -> bool:
  """Applies the glibc settings once; returns whether they are in force."""
  global _applied
  if _applied is not None:
    return _applied
  _applied = False
  if os.environ.get("DNI_JAX_KEEP_FREED_MEMORY", "1") == "0":
    return _applied
  if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
    return _applied
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    mallopt = libc.mallopt
  except (OSError, AttributeError):
    return _applied
  mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
  mallopt.restype = ctypes.c_int
  _applied = all(mallopt(param, value) == 1 for param, value in (
      (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1)))
  return _applied
