"""What every entry point shares: one-paragraph errors, --help exiting 0."""

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
