"""Fault injection at scale: kills, damaged checkpoints, full disks, two writers.

  python -m experiments.faults --trials=30 [--workdir=/tmp/dni_jax/faults] [--seed=0]

Trains a reference run (binary addition, cDNI, ``--steps`` steps, a
checkpoint every ``--checkpoint_every``, train averages every
``--log_every``) once without faults, then repeats it ``--trials`` times,
each time with one fault drawn at random:

- ``kill``: SIGKILL at a random moment (saves included), then a rerun;
- ``kill+flip``: the same, then one random byte of the newest checkpoint's
  largest file flipped before the rerun;
- ``kill+truncate``: the same, that file cut in half;
- ``disk_full``: the run under a file-size limit (``RLIMIT_FSIZE``) small
  enough to fail a save or a metrics write, then a rerun without it;
- ``two_writers``: a second process started on the same workdir while the
  first trains, then a rerun.

A trial ends **exact** when the finished run's final checkpoint (its digest
of every array) and ``metrics.jsonl`` equal the reference's; a failing
command counts as a **clean refusal** when it printed one ``error:``
paragraph and every checkpoint older than the fault is still there. Anything
else is **lost**. Prints one table row per fault kind and exits non-zero if
anything was lost.
"""

import collections
import json
import os
import pathlib
import random
import resource
import shutil
import signal
import subprocess
import sys
import time

from absl import app
from absl import flags

from experiments import cli

_TRIALS = flags.DEFINE_integer("trials", 30, "Fault trials.")
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/dni_jax/faults",
                               "Scratch folder (emptied first).")
_SEED = flags.DEFINE_integer("seed", 0, "Draws of the faults.")
_STEPS = flags.DEFINE_integer("steps", 600, "Steps of the reference run.")
_CKPT = flags.DEFINE_integer("checkpoint_every", 100, "Checkpoint cadence.")
_LOG = flags.DEFINE_integer("log_every", 30, "Train-average cadence (not a "
                            "divisor of the checkpoint cadence, so that a "
                            "resume lands inside an interval).")
_KINDS = flags.DEFINE_list(
    "kinds", ["kill", "kill+flip", "kill+truncate", "disk_full",
              "two_writers"], "Fault kinds to draw from.")

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _args(workdir) -> list[str]:
  return [sys.executable, "-m", "experiments.main",
          "--config=configs/binary_addition.py", "--config.method=cdni",
          f"--config.num_steps={_STEPS.value}",
          f"--config.checkpoint_every={_CKPT.value}",
          f"--config.log_every={_LOG.value}",
          f"--config.eval_every={2 * _CKPT.value}", f"--workdir={workdir}"]


def _env():
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  return env


def _run(workdir, limit_bytes=None, timeout=600):
  def limit():
    if limit_bytes is not None:
      resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
  return subprocess.run(_args(workdir), cwd=ROOT, env=_env(), timeout=timeout,
                        capture_output=True, text=True, preexec_fn=limit)


def _start(workdir):
  return subprocess.Popen(_args(workdir), cwd=ROOT, env=_env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)


def _checkpoints(workdir) -> list[int]:
  folder = pathlib.Path(workdir) / "checkpoints"
  if not folder.is_dir():
    return []
  return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())


def _fingerprint(workdir):
  """(final checkpoint's digest, metrics.jsonl's records) of a run."""
  steps = _checkpoints(workdir)
  if not steps:
    return None
  digest = pathlib.Path(workdir) / "checkpoints" / str(steps[-1]) / (
      "dni_digest.json")
  metrics = pathlib.Path(workdir) / "metrics.jsonl"
  if not digest.exists() or not metrics.exists():
    return None
  records = [json.loads(line) for line in metrics.read_text().splitlines()
             if line.strip()]
  return json.loads(digest.read_text())["leaves"], records


def _clean_refusal(result, kept_before, workdir) -> bool:
  lines = [l for l in result.stderr.strip().splitlines() if l.strip()]
  errors = [l for l in lines if l.startswith("error:")]
  return (result.returncode != 0 and len(errors) == 1 and
          "Traceback" not in result.stderr and
          set(kept_before) <= set(_checkpoints(workdir)) | {
              s for s in kept_before if _aside(workdir, s)})


def _aside(workdir, step) -> bool:
  return any(any((pathlib.Path(workdir) / "checkpoints").glob(
      f"{step}.{why}*")) for why in ("damaged", "incomplete", "ahead"))


def _kill_at_random(workdir, rng, seconds) -> list[int]:
  proc = _start(workdir)
  time.sleep(rng.uniform(0.3, 1.0) * seconds)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  return _checkpoints(workdir)


def _damage_newest(workdir, rng, how) -> None:
  steps = _checkpoints(workdir)
  if not steps:
    return
  folder = pathlib.Path(workdir) / "checkpoints" / str(steps[-1])
  files = [p for p in folder.rglob("*") if p.is_file()]
  target = max(files, key=lambda p: p.stat().st_size)
  data = bytearray(target.read_bytes())
  if how == "flip" and data:
    data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
  else:
    data = data[:len(data) // 2]
  target.write_bytes(bytes(data))


def trial(kind, workdir, rng, seconds, reference):
  """Returns "exact", "refused" or "lost: <why>"."""
  shutil.rmtree(workdir, ignore_errors=True)
  if kind.startswith("kill"):
    kept = _kill_at_random(workdir, rng, seconds)
    if kind != "kill":
      _damage_newest(workdir, rng, kind.split("+")[1])
    kept = kept[:-1] if kind != "kill" else kept
  elif kind == "disk_full":
    _run(workdir, limit_bytes=rng.choice([20_000, 60_000, 200_000]))
    kept = _checkpoints(workdir)
  elif kind == "two_writers":
    first = _start(workdir)
    time.sleep(rng.uniform(0.1, 0.6) * seconds)
    second = _run(workdir)
    first.wait()
    kept = _checkpoints(workdir)
    if second.returncode and not _clean_refusal(second, [], workdir):
      return f"lost: second writer's message: {second.stderr[-300:]!r}"
  else:
    raise ValueError(kind)
  result = _run(workdir)
  if result.returncode:
    if _clean_refusal(result, kept, workdir):
      return "refused"
    return f"lost: rerun failed: {result.stderr.strip()[-400:]!r}"
  got = _fingerprint(workdir)
  if got is None:
    return "lost: no final checkpoint or metrics"
  if got[0] != reference[0]:
    return "lost: final parameters differ from the reference"
  if got[1] != reference[1]:
    return "lost: metrics.jsonl differs from the reference"
  return "exact"


def main(argv):
  del argv
  rng = random.Random(_SEED.value)
  base = pathlib.Path(_WORKDIR.value)
  shutil.rmtree(base, ignore_errors=True)
  base.mkdir(parents=True)
  start = time.time()
  ref = _run(base / "reference")
  if ref.returncode:
    sys.exit(f"error: the reference run failed: {ref.stderr[-500:]}")
  seconds = time.time() - start
  reference = _fingerprint(base / "reference")
  print(f"reference: {_STEPS.value} steps in {seconds:.1f} s; {_TRIALS.value} "
        f"trials of {', '.join(_KINDS.value)}", flush=True)
  table = collections.defaultdict(collections.Counter)
  losses = []
  for i in range(_TRIALS.value):
    kind = rng.choice(_KINDS.value)
    outcome = trial(kind, base / f"trial_{i}", rng, seconds, reference)
    table[kind]["trials"] += 1
    table[kind][outcome.split(":")[0]] += 1
    print(f"trial {i:3d} {kind:<14} {outcome}", flush=True)
    if outcome.startswith("lost"):
      losses.append((i, kind, outcome))
    else:
      shutil.rmtree(base / f"trial_{i}", ignore_errors=True)
  print("\n| fault | trials | exact finishes | clean refusals | lost |")
  print("|---|---|---|---|---|")
  for kind in _KINDS.value:
    row = table.get(kind)
    if row:
      print(f"| {kind} | {row['trials']} | {row['exact']} | {row['refused']} "
            f"| {row['lost']} |")
  total = sum(r["trials"] for r in table.values())
  print(f"\n{total} trials in {time.time() - start:.0f} s; lost: "
        f"{len(losses)} (their workdirs are kept under {base})")
  sys.exit(1 if losses else 0)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
