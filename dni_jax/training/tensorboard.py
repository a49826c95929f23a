"""Scalars to TensorBoard event files in the workdir, beside ``metrics.jsonl``.

Written with tensorboardX (no TensorFlow needed). Every record of a run
becomes scalars tagged ``<split>/<metric>`` (``train/loss``,
``test/accuracy``, ``valid/bpc``, ...), so ``tensorboard --logdir=<workdir>``
shows each method of a comparison (``<workdir>/<method>``) as its own run. A
resumed run purges the events past the step it resumes from, as
``metrics.jsonl`` does.
"""

from __future__ import annotations

import math


class EventLog:
  """Appends a run's scalars to an event file in ``workdir``."""

  def __init__(self, workdir: str, resume_step: int = 0):
    import tensorboardX  # pylint: disable=g-import-not-at-top
    self._writer = tensorboardX.SummaryWriter(
        workdir, purge_step=resume_step or None, flush_secs=30)

  def write(self, step: int, split: str, metrics: dict) -> None:
    for name, value in metrics.items():
      value = float(value)
      if math.isfinite(value):
        self._writer.add_scalar(f"{split}/{name}", value, int(step))

  def flush(self) -> None:
    """Writes what is buffered (the run calls it at every checkpoint, so a
    killed run's event file holds every scalar up to its last checkpoint)."""
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()


def _events(path: str):
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  with open(path, "rb") as f:
    data = f.read()
  offset = 0
  while offset + 12 <= len(data):
    length = int.from_bytes(data[offset:offset + 8], "little")
    record = data[offset + 12:offset + 12 + length]
    offset += 12 + length + 4  # length, its crc, the record, its crc
    yield event_pb2.Event.FromString(record)


def start_time(path: str) -> float:
  """Wall time of an event file's first event (the writer's creation)."""
  return min(float(e.wall_time) for e in _events(path))


def read_scalars(path: str, wall_time: bool = False) -> dict[str, list]:
  """``{tag: [(step, value), ...]}`` of one event file (for tests and tools).

  With ``wall_time``, each entry is ``(step, value, seconds since epoch)``.

  Reads the TFRecord framing and the ``Event`` protos with tensorboardX's
  own compiled protos: no TensorFlow, no tensorboard package.
  """
  scalars = {}
  for event in _events(path):
    for value in event.summary.value:
      entry = (int(event.step), float(value.simple_value))
      scalars.setdefault(value.tag, []).append(
          entry + (float(event.wall_time),) if wall_time else entry)
  return scalars
