"""Files a run owns: written atomically, and a lock per workdir.

- ``write_atomic``: a synced temporary file renamed over the target, so a
  kill or a full disk leaves the old file or the new one, never half of one.
- ``WorkdirLock``: one process trains in a workdir at a time. The lock is an
  ``flock`` on ``<workdir>/.lock``: the system releases it when its process
  ends, however it ends, so a killed run never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import threading
import time

from dni_jax.errors import WorkdirError

LOCK_FILE = ".lock"


def sync_dir(directory: str) -> None:
  """Makes a rename in ``directory`` durable (where the system allows)."""
  try:
    fd = os.open(directory, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


@contextlib.contextmanager
def signals_deferred():
  """Holds Ctrl-C and SIGTERM back until the block ends (e.g. a checkpoint
  save, so that it is never cut by an interrupt; SIGKILL cannot be held,
  which the checkpoints' digests cover). Only the main thread can.

  The signals are recorded by a Python handler, not blocked with a signal
  mask: the system delivers a signal to any thread that does not block it
  (Orbax's and XLA's threads included), and Python then runs the handler in
  the main thread, mask or not. A held signal is handed to the handler that
  was in place once the block ends.
  """
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  held = []
  previous = {s: signal.signal(s, lambda signum, _: held.append(signum))
              for s in (signal.SIGINT, signal.SIGTERM)}
  try:
    yield
  finally:
    with contextlib.ExitStack() as restore:  # each restored, whatever raises
      for s, handler in previous.items():
        restore.callback(signal.signal, s,
                         signal.SIG_DFL if handler is None else handler)
    if held:
      _deliver(held[0], previous[held[0]])


def _deliver(signum: int, handler) -> None:
  """Acts on ``signum`` as ``handler`` (what ``signal.signal`` returned;
  ``None``, a handler set outside Python, is restored as the default)."""
  if callable(handler):
    handler(signum, None)
  elif handler in (signal.SIG_DFL, None):
    os.kill(os.getpid(), signum)
  # SIG_IGN: nothing to do.


def write_atomic(path: str, text: str) -> None:
  """Writes ``text`` to ``path`` by a synced temporary file and a rename."""
  tmp = f"{path}.tmp{os.getpid()}"
  try:
    with open(tmp, "w") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  sync_dir(os.path.dirname(path) or ".")


class WorkdirLock:
  """Holds ``<workdir>/.lock`` while a run (or a sweep) uses the workdir.

  Use as a context manager, or ``acquire()`` / ``release()``.
  """

  def __init__(self, workdir: str, what: str = "a run"):
    self.workdir, self.what = workdir, what
    self.path = os.path.join(workdir, LOCK_FILE)
    self._fd = None

  def acquire(self) -> "WorkdirLock":
    os.makedirs(self.workdir, exist_ok=True)
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      try:
        holder = os.read(fd, 200).decode(errors="replace").strip()
      finally:
        os.close(fd)
      raise WorkdirError(
          f"--workdir={self.workdir} is in use by another process "
          f"({holder or 'unknown'}); two processes writing one workdir would "
          "mix their checkpoints and metrics. Wait for it to finish or stop "
          "it, or choose another --workdir. Nothing in the workdir was "
          "changed.") from None
    os.ftruncate(fd, 0)
    os.write(fd, (f"pid {os.getpid()} on {socket.gethostname()}, {self.what}"
                  f" since {time.strftime('%Y-%m-%d %H:%M:%S')}").encode())
    self._fd = fd
    return self

  def release(self) -> None:
    if self._fd is not None:
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None

  def __enter__(self):
    return self.acquire()

  def __exit__(self, *exc):
    self.release()
