"""dni_jax.training.host_memory: glibc keeps a freed big block for the next request."""

import os
import platform
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Allocates, touches and frees a 64 MiB block once, then counts the minor
# page faults of doing it again (the kernel's count, not a timing).
_PROBE = """
import ctypes, resource, sys
from dni_jax.training import host_memory
applied = None
if sys.argv[1] == "keep":
  applied = host_memory.keep_freed_memory()
  assert host_memory.keep_freed_memory() == applied  # idempotent
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
size = 64 << 20
def touch():
  p = libc.malloc(size)
  ctypes.memset(p, 1, size)
  libc.free(p)
touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
touch()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str, **env) -> tuple[str, int]:
  out = subprocess.run([sys.executable, "-c", _PROBE, mode], cwd=ROOT,
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": ROOT, **env})
  assert out.returncode == 0, out.stderr[-2000:]
  applied, faults = out.stdout.split()[-2:]
  return applied, int(faults)


@pytest.mark.skipif(platform.system() != "Linux" or
                    platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_a_freed_big_block_is_reused_without_page_faults():
  pages = (64 << 20) // 4096
  # Kept: the second request gets the same, already resident memory.
  applied, kept = _faults("keep")
  assert applied == "True" and kept < pages // 20
  # glibc's default: the block is mmap'ed anew and faulted in again, page
  # by page (16,384 faults here; a kernel that backs it with 2 MiB huge
  # pages faults 32 times, still well above the kept count).
  applied, default = _faults("default")
  assert default > max(10 * kept, 16)
  # The switch off.
  applied, off = _faults("keep", DNI_JAX_KEEP_FREED_MEMORY="0")
  assert applied == "False" and off > max(10 * kept, 16)
