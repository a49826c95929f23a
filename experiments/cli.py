"""What every entry point shares: one-paragraph errors, --help exiting 0."""

from __future__ import annotations

import sys

from absl import flags

HELP_FLAGS = frozenset(("--help", "-help", "-?", "--helpshort", "--helpfull"))


def fail(message: str, code: int = 1):
  """Prints ``error: message`` on stderr and exits with ``code``."""
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(code)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, for ``app.run(main, flags_parser=parse_flags)``:
  a bad flag is one ``error:`` line, and --help exits with 0 (absl's: 1)."""
  try:
    return flags.FLAGS(argv)
  except SystemExit as e:
    if e.code == 1 and HELP_FLAGS.intersection(argv[1:]):
      sys.exit(0)
    raise
  except flags.Error as e:
    fail(f"{e} (see --help)", 2)


def run_on_workdir(argv: list[str], usage: str, measure, traceback: bool):
  """The shape every tool that reads one run shares: ``argv`` holds exactly
  one workdir (else ``error: give one workdir: <usage>``), Orbax's INFO logs
  are quieted unless ``--verbosity`` is given, and whatever ``measure``
  raises is one paragraph (``--traceback``: the traceback). Returns
  ``measure(workdir)``."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  if len(argv) != 2:
    fail(f"give one workdir: {usage}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every restore at INFO
  try:
    return measure(argv[1])
  except Exception as e:  # pylint: disable=broad-except
    if traceback:
      raise
    fail(error_paragraph(e))


def error_paragraph(error: Exception, workdir: str | None = None) -> str:
  """The one paragraph an entry point prints for ``error``: a ``DNIError``'s
  own message, the system's refusal of a write (a full disk), or the first
  line of anything unexpected."""
  from dni_jax.errors import DNIError  # pylint: disable=g-import-not-at-top
  if isinstance(error, DNIError):
    return str(error)
  system = os_error(error)
  if system is not None:
    return os_error_message(system, workdir)
  first = (str(error).strip().splitlines() or [""])[0][:400]
  kept = "; checkpoints already saved are kept" if workdir else ""
  return (f"unexpected {type(error).__name__}: {first} (rerun with "
          f"--traceback for the full traceback{kept})")


def os_error(error: BaseException):
  """The operating system's error behind ``error`` (a full disk, a file-size
  limit, a permission), however deep a library wrapped it, or ``None``."""
  seen = set()
  stack = [error]
  while stack:
    e = stack.pop()
    if e is None or id(e) in seen:
      continue
    seen.add(id(e))
    if isinstance(e, OSError) and e.errno is not None:
      return e
    stack += [e.__cause__, e.__context__,
              *getattr(e, "exceptions", ())]  # ExceptionGroup
  text = str(error)
  for errno_, name in ((28, "No space left on device"),
                       (27, "File too large"), (122, "Disk quota exceeded")):
    if name in text:
      return OSError(errno_, name)
  return None


def os_error_message(e: OSError, workdir: str | None) -> str:
  where = f" ({e.filename})" if getattr(e, "filename", None) else ""
  kept = f" in {workdir}" if workdir else ""
  return (f"the system refused a write{where}: {e.strerror or e} [errno "
          f"{e.errno}]. The run stopped there; the checkpoints it saved "
          f"before are kept{kept}. Free space (or fix the cause) and "
          "rerun the same command to resume from the last checkpoint.")
