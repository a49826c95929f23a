"""``metrics.jsonl``: one JSON object per line, appended as training goes.

Each record has ``step`` and ``split`` ("train" or "test") and the scalar
metrics (``loss``, ``accuracy``, ``synth_loss/i``, ...). A resumed run first
drops the records past the step it resumes from, so that the file of an
interrupted-and-resumed run equals the file of an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os


def read_metrics(path: str) -> list[dict]:
  """All records of a ``metrics.jsonl``, in order."""
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


class MetricsLog:
  """Appends records to ``path``; starts from the records up to ``resume_step``.

  ``records`` holds every record of the file, as written (the values the
  file will read back as).
  """

  def __init__(self, path: str, resume_step: int = 0):
    self.path = path
    self.records = [r for r in read_metrics(path) if r["step"] <= resume_step]
    with open(path, "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in self.records)

  def write(self, step: int, split: str, metrics: dict) -> None:
    record = {"step": int(step), "split": split}
    record.update({k: _json_float(v) for k, v in metrics.items()})
    line = json.dumps(record)
    with open(self.path, "a") as f:
      f.write(line + "\n")
    self.records.append(json.loads(line))


def _json_float(value) -> float | None:
  value = float(value)
  return value if math.isfinite(value) else None
