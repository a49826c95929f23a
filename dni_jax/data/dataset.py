"""An in-memory dataset and its deterministic, resumable batching.

The batch of step ``n`` is a pure function of ``(seed, n)``: epoch
``e = n // steps_per_epoch`` is a permutation drawn from ``(seed, e)`` (a
different order every epoch), and the step takes its slice. So a run resumed at
step ``n`` sees exactly the batches an uninterrupted run would, with no
iterator state to checkpoint.
"""

from __future__ import annotations

import dataclasses
import numpy as np


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
  """Examples as numpy arrays.

  Attributes:
    inputs: ``[N, ...]``, uint8 images or float features.
    labels: ``[N]`` integer classes or ``[N, K]`` float targets.
    mean, std: normalisation applied to ``inputs`` in every batch (after
      scaling uint8 to [0, 1]).
  """
  inputs: np.ndarray
  labels: np.ndarray
  mean: float = 0.0
  std: float = 1.0

  def __post_init__(self):
    if len(self.inputs) != len(self.labels):
      raise ValueError(f"{len(self.inputs)} inputs but {len(self.labels)} "
                       "labels")

  def __len__(self) -> int:
    return len(self.labels)

  def batch(self, indices: np.ndarray) -> dict:
    """``{"inputs": float32, "labels": ...}`` for ``indices``, normalised."""
    return {"inputs": self.normalize(self.inputs[indices], np),
            "labels": self.labels[indices]}

  def normalize(self, x, xp=np):
    """uint8 to [0, 1], then ``(x − mean) / std`` in float32 (``xp``: numpy
    on the host, ``jax.numpy`` inside a jitted step)."""
    if x.dtype == xp.uint8:
      x = x.astype(xp.float32) / 255.0
    return ((x - self.mean) / self.std).astype(xp.float32)


# The current epoch's permutation per (size, seed): a run, or each member of
# a vmapped sweep group, draws its permutation once per epoch, however many
# seeds are in flight.
_ORDERS: dict[tuple[int, int], tuple[int, np.ndarray]] = {}
_MAX_ORDERS = 256


def _epoch_order(size: int, seed: int, epoch: int) -> np.ndarray:
  cached = _ORDERS.get((size, seed))
  if cached is not None and cached[0] == epoch:
    return cached[1]
  order = np.random.default_rng([seed, epoch]).permutation(size)
  order.flags.writeable = False  # shared by every caller
  if len(_ORDERS) >= _MAX_ORDERS and (size, seed) not in _ORDERS:
    _ORDERS.pop(next(iter(_ORDERS)))
  _ORDERS[(size, seed)] = (epoch, order)
  return order


def batch_indices(size: int, step: int, batch_size: int,
                  seed: int) -> np.ndarray:
  """The example indices of ``step``'s batch in a dataset of ``size``."""
  steps_per_epoch = size // batch_size
  if steps_per_epoch == 0:
    raise ValueError(f"batch_size={batch_size} exceeds the dataset's "
                     f"{size} examples; lower --config.batch_size")
  epoch, index = divmod(step, steps_per_epoch)
  order = _epoch_order(size, seed, epoch)
  return order[index * batch_size:(index + 1) * batch_size]


def batch_at(dataset: ArrayDataset, step: int, batch_size: int,
             seed: int) -> dict:
  """The training batch of ``step``: shuffled per epoch, remainder dropped."""
  return dataset.batch(batch_indices(len(dataset), step, batch_size, seed))


def eval_batches(dataset: ArrayDataset, batch_size: int):
  """Every example once, in order; the last batch may be smaller."""
  for start in range(0, len(dataset), batch_size):
    yield dataset.batch(np.arange(start, min(start + batch_size, len(dataset))))
