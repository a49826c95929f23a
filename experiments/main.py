"""Trains and evaluates one experiment config.

Usage, from the repository root:

  python -m experiments.main --config=configs/<name>.py --workdir=<dir> [--config.<field>=<value> ...]

For example:

  python -m experiments.main --config=configs/mnist_fcn.py --workdir=workdirs/mnist --config.method=cdni --config.data.dir=../shared/data/mnist

With no --config it runs configs/binary_addition.py (backprop vs DNI vs cDNI,
generated data, well under a minute on a 2-core CPU). Rerunning with the same
--workdir resumes or extends the run (raise --config.num_steps); a workdir
made by another config is refused (--overwrite starts it over).
--print_config prints every field of the resolved config; --list_configs
lists the configs. Errors are one paragraph; --traceback shows the Python
traceback as well.
"""

import ast
import difflib
import glob
import os
import re
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CONFIG_DIR = os.path.join(_ROOT, "configs")
_DEFAULT_CONFIG = os.path.join(_CONFIG_DIR, "binary_addition.py")
_NOT_EXPERIMENTS = ("__init__", "base", "recurrent")


def list_configs() -> list[tuple[str, str]]:
  """``(path, first docstring line)`` of every experiment config."""
  found = []
  for path in sorted(glob.glob(os.path.join(_CONFIG_DIR, "*.py"))):
    name = os.path.splitext(os.path.basename(path))[0]
    if name in _NOT_EXPERIMENTS:
      continue
    with open(path) as f:
      doc = ast.get_docstring(ast.parse(f.read())) or ""
    found.append((os.path.relpath(path, _ROOT), doc.split("\n")[0]))
  return found


def _configs_text() -> str:
  return "\n".join(f"  {path:<28} {line}" for path, line in list_configs())


# absl prints the module docstring as --help's usage text.
__doc__ += "\nConfigs:\n" + _configs_text() + "\n"

_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Where checkpoints, metrics.jsonl and TensorBoard "
    "events go; default /tmp/dni_jax/<config name>.")
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "If --workdir holds a run made by another config, "
    "delete that run and start over (by default such a workdir is refused).")
_PRINT_CONFIG = flags.DEFINE_bool(
    "print_config", False, "Print the resolved config (every field) and exit.")
_LIST_CONFIGS = flags.DEFINE_bool(
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


def _fail(message: str, code: int = 1):
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(code)


def _config_path(argv) -> str:
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      return arg.split("=", 1)[1]
    if arg == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return _DEFAULT_CONFIG


def _field_names(path: str) -> list[str]:
  """Every dotted field of the config at ``path`` (for suggestions)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location("_config_for_names", path)
  module = importlib.util.module_from_spec(spec)
  sys.path.insert(0, _ROOT)
  try:
    spec.loader.exec_module(module)
    config = module.get_config()
  finally:
    sys.path.remove(_ROOT)

  def walk(node, prefix):
    for key in node.keys():
      value = node[key]
      if hasattr(value, "keys"):
        yield from walk(value, f"{prefix}{key}.")
      else:
        yield f"{prefix}{key}"
  return list(walk(config, ""))


def _unknown_field_message(field: str, path: str) -> str:
  try:
    names = _field_names(path)
  except Exception:  # pylint: disable=broad-except
    names = []
  close = difflib.get_close_matches(field, names, n=3, cutoff=0.6)
  hint = f" Did you mean {' or '.join(close)}?" if close else ""
  return (f"--config.{field}: the config {path} has no field {field!r}.{hint} "
          "--print_config lists every field with its value.")


def _unknown_override(error: Exception, argv: list[str]) -> str:
  """The message for an override naming no field (ml_collections' error)."""
  field = re.search(r"'(\w+)'", str(error))
  overrides = [a.split("=", 1)[0][len("--config."):] for a in argv
               if a.startswith("--config.")]
  # The override whose last part is the unknown key.
  named = [o for o in overrides if field and o.split(".")[-1] ==
           field.group(1)] or overrides or ["?"]
  return _unknown_field_message(named[0], _config_path(argv))


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
    _fail(_unknown_override(e, sys.argv), 2)


_CONFIG = _define_config_flag()


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with one-paragraph errors instead of tracebacks."""
  path = _config_path(argv)
  if not os.path.isfile(path):
    _fail(f"--config={path}: no such config file. --list_configs lists the "
          "configs in configs/.", 2)
  try:
    rest = flags.FLAGS(argv)
    if not flags.FLAGS["list_configs"].value:
      _CONFIG.value  # loads the config file and applies the overrides
    return rest
  except Exception as e:  # pylint: disable=broad-except
    if "--traceback" in argv:
      raise
    text = " ".join(str(e).split())
    unknown = re.search(r"[Uu]nknown command line flag '(config\.[\w.]+)'",
                        text)
    if unknown:
      _fail(_unknown_field_message(unknown.group(1)[len("config."):], path),
            2)
    if re.search(r"(No such file|Failed loading config file)", text):
      _fail(f"the config file {path} could not be loaded ({text[:300]}). "
            "--list_configs lists the configs in configs/.", 2)
    if isinstance(e, (AttributeError, KeyError)):
      _fail(_unknown_override(e, argv), 2)
    _fail(f"{text[:500]} (see --help; --list_configs, --print_config)", 2)


def _run(workdir: str, action=None) -> None:
  """``action(config, workdir, overwrite)`` (default: train_and_evaluate),
  with one-paragraph errors, Ctrl-C's message and exit codes."""
  # Imported here so that --help and --list_configs answer without jax.
  from dni_jax.errors import DNIError  # pylint: disable=g-import-not-at-top
  from dni_jax.parallel import distributed  # pylint: disable=g-import-not-at-top
  from dni_jax.training import host_memory  # pylint: disable=g-import-not-at-top
  from dni_jax.training import train  # pylint: disable=g-import-not-at-top
  host_memory.keep_freed_memory()  # XLA:CPU's big scratch buffers reused
  action = action or train.train_and_evaluate
  try:
    env = distributed.from_env() or ("127.0.0.1:8476", 1, 0)
    distributed.initialize(
        _COORDINATOR.value or env[0],
        _NUM_PROCESSES.value if _NUM_PROCESSES.value is not None else env[1],
        _PROCESS_ID.value if _PROCESS_ID.value is not None else env[2])
    action(_CONFIG.value, workdir, _OVERWRITE.value)
  except KeyboardInterrupt as e:
    if _TRACEBACK.value:
      raise
    message = str(e) or ("interrupted; rerun the same command to resume "
                         "from the last checkpoint")
    print(f"\n{message}", file=sys.stderr, flush=True)
    sys.exit(130)
  except DNIError as e:
    if _TRACEBACK.value:
      raise
    _fail(str(e))
  except Exception as e:  # pylint: disable=broad-except
    if _TRACEBACK.value:
      raise
    first = (str(e).strip().splitlines() or [""])[0][:400]
    _fail(f"unexpected {type(e).__name__}: {first} (rerun with --traceback "
          "for the full traceback; checkpoints already saved are kept)")


def config_name() -> str:
  """The config file's name without folder and ``.py`` (e.g. mnist_fcn)."""
  return os.path.splitext(os.path.basename(
      config_flags.get_config_filename(flags.FLAGS["config"])))[0]


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}: every option is a flag, e.g. "
          "--config.num_steps=1000 (see --help)", 2)
  if _LIST_CONFIGS.value:
    print("Configs (python -m experiments.main --config=<path>):\n" +
          _configs_text())
    return
  if _PRINT_CONFIG.value:
    print(_CONFIG.value)
    return
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
  _run(_WORKDIR.value or os.path.join("/tmp/dni_jax", config_name()))


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
