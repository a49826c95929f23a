"""``metrics.jsonl``: one JSON object per line, appended as training goes.

Each record has ``step`` and ``split`` ("train" or "test") and the scalar
metrics (``loss``, ``accuracy``, ``synth_loss/i``, ...). A resumed run first
drops the records past the step it resumes from, so that the file of an
interrupted-and-resumed run equals the file of an uninterrupted one. That
rewrite is atomic (a synced temporary file, then a rename) and every record
is synced as it is appended, so a kill or a full disk leaves either the old
file or the new one, at worst with its last line cut; a cut last line is
dropped on reading, with one warning (the checkpoint it belongs after is
older, so a resumed run writes it again).
"""

from __future__ import annotations

import json
import math
import os
import sys

from dni_jax.errors import WorkdirError
from dni_jax.training.files import write_atomic


def read_metrics(path: str, warn: bool = True) -> list[dict]:
  """All records of a ``metrics.jsonl``, in order.

  A last line cut short (a write interrupted by a kill or a full disk) is
  left out, with a warning on stderr; a damaged line before it is a
  ``WorkdirError`` naming the file and the line.
  """
  if not os.path.exists(path):
    return []
  with open(path, "rb") as f:
    lines = f.read().split(b"\n")
  records = []
  numbered = [(i, line) for i, line in enumerate(lines, 1) if line.strip()]
  for n, (i, line) in enumerate(numbered):
    try:
      record = json.loads(line)
      if not isinstance(record, dict) or "step" not in record:
        raise ValueError("not a record with a step")
    except ValueError as e:
      if n == len(numbered) - 1 and i == len(lines) and line:  # no newline
        if warn:
          print(f"warning: {path}: its last line is cut short (a write was "
                "interrupted); it is left out.", file=sys.stderr, flush=True)
        break
      raise WorkdirError(
          f"{path} line {i} is not a metrics record ({e}); the file is "
          "damaged. Delete that line (and any after it) by hand, and the "
          "run resumes and rewrites the records after its last checkpoint; "
          "or choose a new --workdir.") from e
    records.append(record)
  return records


class MetricsLog:
  """Appends records to ``path``; starts from the records up to ``resume_step``.

  ``records`` holds every record of the file, as written (the values the
  file will read back as).
  """

  def __init__(self, path: str, resume_step: int = 0):
    self.path = path
    self.records = [r for r in read_metrics(path) if r["step"] <= resume_step]
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in self.records))

  def write(self, step: int, split: str, metrics: dict) -> None:
    record = {"step": int(step), "split": split}
    record.update({k: _json_float(v) for k, v in metrics.items()})
    line = json.dumps(record)
    with open(self.path, "a") as f:
      f.write(line + "\n")
      f.flush()
      os.fsync(f.fileno())
    self.records.append(json.loads(line))


def _json_float(value) -> float | None:
  value = float(value)
  return value if math.isfinite(value) else None
