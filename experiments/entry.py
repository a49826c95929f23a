"""What the config-driven entry points share (experiments.main, experiments.sweep).

The ``--config`` flag with its ``--config.<field>=<value>`` overrides and the
run's flags (``--workdir``, ``--overwrite``, ``--print_config``,
``--list_configs``, ``--traceback``, the process flags); ``parse_flags``,
absl's flag parsing with one-paragraph errors; ``run``, an action on the
resolved config with one-paragraph errors, Ctrl-C's and SIGTERM's message
and exit codes; and the config listing and printing helpers.
"""

import ast
import difflib
import glob
import io
import logging as logging_lib
import os
import re
import signal
import sys
import tokenize

from absl import flags
from absl import logging
from ml_collections import config_flags

from experiments import cli

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(_ROOT, "configs")
_DEFAULT_CONFIG = os.path.join(CONFIG_DIR, "binary_addition.py")
_NOT_EXPERIMENTS = ("__init__", "base", "recurrent")


def list_configs() -> list[tuple[str, str]]:
  """``(path, first docstring line)`` of every experiment config."""
  found = []
  for path in sorted(glob.glob(os.path.join(CONFIG_DIR, "*.py"))):
    name = os.path.splitext(os.path.basename(path))[0]
    if name in _NOT_EXPERIMENTS:
      continue
    with open(path) as f:
      doc = ast.get_docstring(ast.parse(f.read())) or ""
    found.append((os.path.relpath(path, _ROOT), doc.split("\n")[0]))
  return found


def configs_text() -> str:
  return "\n".join(f"  {path:<28} {line}" for path, line in list_configs())


WORKDIR = flags.DEFINE_string(
    "workdir", None, "Where checkpoints, metrics.jsonl and TensorBoard "
    "events go; default /tmp/dni_jax/<config name>.")
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "If --workdir holds a run made by another config, "
    "delete that run and start over (by default such a workdir is refused).")
PRINT_CONFIG = flags.DEFINE_bool(
    "print_config", False, "Print the resolved config (every field) and exit.")
LIST_CONFIGS = flags.DEFINE_bool(
    "list_configs", False, "List the experiment configs and exit.")
_TRACEBACK = flags.DEFINE_bool(
    "traceback", False, "On an error, show the Python traceback too.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator", None, "Several processes (jax.distributed): process 0's "
    "host:port; default from DNI_COORDINATOR (set by experiments.launch).")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Processes in the run; default DNI_NUM_PROCESSES "
    "or 1.")
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "This process's index; default DNI_PROCESS_ID or 0.")


fail = cli.fail  # one-paragraph errors (experiments.cli)


def _config_arg(argv) -> str:
  """``--config``'s value, ``path[:arg]``."""
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      return arg.split("=", 1)[1]
    if arg == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return _DEFAULT_CONFIG


def _config_path(argv) -> str:
  """The config file of ``--config=path[:arg]`` (the argument, as
  ml_collections reads it, goes to its ``get_config``)."""
  return _config_arg(argv).partition(":")[0]


def config_file() -> str:
  """The config file of the parsed ``--config=path[:arg]``."""
  return config_flags.get_config_filename(
      flags.FLAGS["config"]).partition(":")[0]


def _load_config(path: str):
  """``get_config()`` of the config file at ``path`` (its defaults)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location("_config_for_names", path)
  module = importlib.util.module_from_spec(spec)
  sys.path.insert(0, _ROOT)
  try:
    spec.loader.exec_module(module)
    return module.get_config()
  finally:
    sys.path.remove(_ROOT)


def _walk(node, prefix=""):
  """``(dotted name, value, type)`` of every leaf field, in name order."""
  for key in node.keys():
    value = node[key]
    if hasattr(value, "keys"):
      yield from _walk(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value, node.get_type(key)


def _field_types(path: str) -> dict:
  """``{dotted field: type}`` of the config at ``path``; ``{}`` if it cannot
  be loaded."""
  try:
    return {name: kind for name, _, kind in _walk(_load_config(path))}
  except Exception:  # pylint: disable=broad-except
    return {}


def _unknown_field_message(field: str, path: str) -> str:
  names = list(_field_types(path))
  close = difflib.get_close_matches(field, names, n=3, cutoff=0.6)
  hint = f" Did you mean {' or '.join(close)}?" if close else ""
  return (f"--config.{field}: the config {path} has no field {field!r}.{hint} "
          "--print_config lists every field with its value.")


def _overrides(argv: list[str]) -> list[str]:
  """The dotted fields of the ``--config.<field>=<value>`` arguments, in order."""
  return [a.split("=", 1)[0][len("--config."):] for a in argv
          if a.startswith("--config.")]


def _unknown_override(error: Exception, argv: list[str]) -> str:
  """The message for an override naming no field (ml_collections' error).

  The override is found by checking each one against the config's fields,
  not by reading ml_collections' message (which names only the last part of
  the field, quoted and escaped differently across versions).
  """
  path = _config_path(argv)
  overrides = _overrides(argv)
  names = set(_field_types(path))
  unknown = [o for o in overrides if o not in names and
             not any(n.startswith(o + ".") for n in names)]
  if not unknown:  # the config could not be loaded: go by the message
    text = str(error).replace("\\", "")
    key = (re.search(r"instead of \W*(\w+)", text) or
           re.search(r"'(\w+)", text))
    unknown = [o for o in overrides
               if key and o.split(".")[-1] == key.group(1)] or overrides
  return _unknown_field_message((unknown or ["?"])[0], path)


_TYPE_NAMES = {int: "a whole number (int)", float: "a number (float)",
               bool: "true or false (bool)", str: "a string (str)",
               tuple: "a tuple, e.g. (128,64)"}


def _bad_value_message(field: str, value: str, path: str) -> str:
  """The message for an override whose value does not parse as the field's
  type."""
  kind = _field_types(path).get(field)
  expected = _TYPE_NAMES.get(kind, getattr(kind, "__name__", "another type"))
  return (f"--config.{field}={value}: the field {field} takes {expected}, "
          f"and {value!r} is not one. Give a value of that type (--print_config "
          "shows every field with its value).")


def _attribute_path(node) -> list[str] | None:
  """``["opt", "learning_rate"]`` of ``config.opt.learning_rate``; else None."""
  parts = []
  while isinstance(node, ast.Attribute):
    parts.append(node.attr)
    node = node.value
  if isinstance(node, ast.Name) and node.id == "config":
    return parts[::-1]
  return None


def _file_comments(source: str) -> dict[str, str]:
  """``{dotted field: comment}`` of one config file's source.

  A field's comment is the comment at the end of the line that sets it
  (``config.x = 1  # ...``, or a keyword of ``config.update(x=1,  # ...)``),
  else the comment lines right above that line.
  """
  trailing, whole_line = {}, {}
  for token in tokenize.generate_tokens(io.StringIO(source).readline):
    if token.type == tokenize.COMMENT:
      text = token.string.lstrip("#").strip()
      if token.line.strip().startswith("#"):
        whole_line[token.start[0]] = text
      else:
        trailing[token.start[0]] = text

  def above(line):
    block = []
    while line - 1 in whole_line:
      line -= 1
      block.insert(0, whole_line[line])
    return " ".join(block)

  found = {}
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Assign):
      for target in node.targets:
        path = _attribute_path(target)
        if path:
          lines = range(node.lineno, node.end_lineno + 1)
          comment = " ".join(trailing[i] for i in lines if i in trailing)
          found[".".join(path)] = comment or above(node.lineno)
    elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
          and node.func.attr == "update"):
      prefix = _attribute_path(node.func.value)
      if prefix is None:
        continue
      ends = [k.value.end_lineno for k in node.keywords]
      for keyword in node.keywords:
        end = keyword.value.end_lineno
        if keyword.arg and ends.count(end) == 1 and end in trailing:
          found[".".join(prefix + [keyword.arg])] = trailing[end]
  return {k: v for k, v in found.items() if v}


def config_comments(path: str) -> dict[str, str]:
  """``{dotted field: comment}`` of the config file at ``path``.

  The comments written beside the fields in that file and in the config
  files it builds on (``from configs import base``); a file's own comment
  wins over its base's.
  """
  with open(path) as f:
    source = f.read()
  comments = {}
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.ImportFrom) and node.module == "configs":
      for alias in node.names:
        base = os.path.join(CONFIG_DIR, alias.name + ".py")
        if os.path.isfile(base) and os.path.abspath(base) != os.path.abspath(
            path):
          comments.update(config_comments(base))
  comments.update(_file_comments(source))
  return comments


def _value_text(value) -> str:
  if isinstance(value, str) and value and not any(c.isspace() for c in value):
    return value
  return repr(value)


def config_text(config, path: str) -> str:
  """Every field of ``config``, one a line, with its comment from the config
  files (``config_comments``)."""
  try:
    comments = config_comments(path)
  except (OSError, SyntaxError, ValueError):
    comments = {}
  rows = [(f"{name}: {_value_text(value)}", comments.get(name))
          for name, value, _ in _walk(config)]
  width = min(max(len(text) for text, _ in rows), 40)
  return "\n".join(f"{text:<{width}}   # {comment}" if comment else text
                   for text, comment in rows)


def _define_config_flag():
  """``--config``; ml_collections reads the overrides in ``sys.argv`` here."""
  try:
    return config_flags.DEFINE_config_file(
        "config", _DEFAULT_CONFIG, "Experiment config file (configs/*.py; "
        "see --list_configs). Override any field with "
        "--config.<field>=<value>.")
  except (AttributeError, KeyError) as e:
    if "--traceback" in sys.argv:
      raise
    fail(_unknown_override(e, sys.argv), 2)


CONFIG = _define_config_flag()


# absl's help flags; absl exits with status 1 after printing the help.
_HELP_FLAGS = frozenset(("--help", "-help", "-?", "--helpshort", "--helpfull",
                         "--helpxml"))


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with one-paragraph errors instead of tracebacks."""
  path = _config_path(argv)
  if not os.path.isfile(path):
    fail(f"--config={path}: no such config file. --list_configs lists the "
          "configs in configs/.", 2)
  try:
    rest = flags.FLAGS(argv)
    if not flags.FLAGS["list_configs"].value:
      CONFIG.value  # loads the config file and applies the overrides
    return rest
  except SystemExit as e:  # asking for --help is not an error
    if e.code == 1 and _HELP_FLAGS.intersection(argv[1:]):
      sys.exit(0)
    raise
  except Exception as e:  # pylint: disable=broad-except
    if "--traceback" in argv:
      raise
    text = " ".join(str(e).split())
    unknown = re.search(r"[Uu]nknown command line flag '(config\.[\w.]+)'",
                        text)
    if unknown:
      fail(_unknown_field_message(unknown.group(1)[len("config."):], path),
            2)
    bad_value = re.match(r"flag --config\.([\w.]+)=(.*?): ", text)
    if bad_value:
      fail(_bad_value_message(bad_value.group(1), bad_value.group(2), path),
            2)
    if re.search(r"get_config\(\) takes 0 positional arguments", text):
      fail(f"--config={_config_arg(argv)}: {path} takes no argument after "
            "':'; drop it (configs/update_population.py takes one: its "
            "methods).", 2)
    if re.search(r"(No such file|Failed loading config file)", text):
      fail(f"the config file {path} could not be loaded ({text[:300]}). "
            "--list_configs lists the configs in configs/.", 2)
    if isinstance(e, (AttributeError, KeyError)):
      fail(_unknown_override(e, argv), 2)
    fail(f"{text[:500]} (see --help; --list_configs, --print_config)", 2)


def run(workdir: str, action=None) -> None:
  """``action(config, workdir, overwrite)`` (default: train_and_evaluate),
  with one-paragraph errors, Ctrl-C's message and exit codes."""
  # Imported here so that --help and --list_configs answer without jax.
  from dni_jax.parallel import distributed  # pylint: disable=g-import-not-at-top
  from dni_jax.training import host_memory  # pylint: disable=g-import-not-at-top
  from dni_jax.training import report  # pylint: disable=g-import-not-at-top
  from dni_jax.training import train  # pylint: disable=g-import-not-at-top
  host_memory.keep_freed_memory()  # XLA:CPU's big scratch buffers reused
  action = action or train.train_and_evaluate
  # A cluster scheduler stops a job with SIGTERM: handled as Ctrl-C is (the
  # step and the checkpoint a rerun resumes from, files closed).
  signal.signal(signal.SIGTERM, _terminate)
  _quiet_failed_saves()
  try:
    env = distributed.from_env() or ("127.0.0.1:8476", 1, 0)
    distributed.initialize(
        _COORDINATOR.value or env[0],
        _NUM_PROCESSES.value if _NUM_PROCESSES.value is not None else env[1],
        _PROCESS_ID.value if _PROCESS_ID.value is not None else env[2])
    print(report.devices_line(), flush=True)
    action(CONFIG.value, workdir, _OVERWRITE.value)
  except KeyboardInterrupt as e:
    if _TRACEBACK.value:
      raise
    message = str(e) or ("interrupted; rerun the same command to resume "
                         "from the last checkpoint")
    print(f"\n{message}", file=sys.stderr, flush=True)
    sys.exit(130)
  except Exception as e:  # pylint: disable=broad-except
    if _TRACEBACK.value:
      raise
    cli.fail(cli.error_paragraph(e, workdir))


def _quiet_failed_saves() -> None:
  """Keeps a failed checkpoint save (a full disk) to one paragraph.

  Orbax writes through asyncio and TensorStore: when a write fails, Orbax
  logs the failure of each of its threads, every pending write logs "Future
  exception was never retrieved", and their callbacks print "Event loop is
  closed" tracebacks: hundreds of lines around the one error that matters,
  which ``run`` reports. Those, and only those, are silenced
  (``--traceback`` keeps them).
  """
  if _TRACEBACK.value:
    return
  logging_lib.getLogger("asyncio").setLevel(logging_lib.CRITICAL)
  failed_write = ("OUT_OF_RANGE", "RESOURCE_EXHAUSTED", "No space left",
                  "File too large", "Failed writing", "Disk quota")

  def drop_failed_writes(record) -> bool:
    return not ("orbax" in record.pathname and
                any(w in record.getMessage() for w in failed_write))

  logging_lib.getLogger("absl").addFilter(drop_failed_writes)

  def closed_loop(exc_type, value) -> bool:
    return exc_type is RuntimeError and str(value) == "Event loop is closed"

  excepthook, unraisablehook = sys.excepthook, sys.unraisablehook

  def quiet_excepthook(exc_type, value, tb):
    if not closed_loop(exc_type, value):
      excepthook(exc_type, value, tb)

  def quiet_unraisablehook(unraisable):
    if not closed_loop(unraisable.exc_type, unraisable.exc_value):
      unraisablehook(unraisable)

  sys.excepthook, sys.unraisablehook = quiet_excepthook, quiet_unraisablehook


def _terminate(signum, frame):
  del signum, frame
  raise KeyboardInterrupt()


def config_name() -> str:
  """The config file's name without folder and ``.py`` (e.g. mnist_fcn)."""
  return os.path.splitext(os.path.basename(config_file()))[0]


