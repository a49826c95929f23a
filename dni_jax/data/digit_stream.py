"""The two-timescale task: a stream of digits; A names each, B counts odd ones.

Network A sees one digit image per step and must name its class (10-way).
Network B ticks every ``k`` steps, reads only A's state, and must say how
many of the last ``k`` digits were odd (``k + 1``-way). Only A sees the
images, and A's own task never needs more than the current digit, so A
learns to keep a count in its state only through the gradient that comes
back from B: the A→B interface is what the system has to learn (the paper's
multi-network experiment, §3.3, in the same spirit).

The digits are MNIST (``data.dir`` or tensorflow-datasets) or generated
(``synthetic_digits``: ten fixed random 28×28 prototypes plus Gaussian
noise, no download). A step's digits are drawn uniformly, with replacement,
from a pure function of ``(seed, step)``, on the device.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from dni_jax.data.dataset import ArrayDataset

SOURCES = ("synthetic_digits", "mnist")
_PROTOTYPE_SEED = 20170801  # the generated digits' classes: fixed for everyone
_NOISE = 1.0
_SIZES = {"train": 20_000, "test": 5_000}
_DATA_STREAM = 0x64617461  # "data": the stream's keys off the run's seed


def synthetic_digits(split: str, seed: int = 0) -> ArrayDataset:
  """Ten fixed random prototypes (28×28) plus Gaussian noise, labels 0–9.

  The prototypes are the same for every seed; ``seed`` draws the examples
  (the test split from a stream of its own).
  """
  prototypes = np.random.default_rng(_PROTOTYPE_SEED).uniform(
      size=(10, 28, 28, 1)).astype(np.float32)
  rng = np.random.default_rng([seed, 0 if split == "train" else 1])
  labels = rng.integers(0, 10, _SIZES[split]).astype(np.int32)
  noise = rng.normal(size=(len(labels), 28, 28, 1)).astype(np.float32)
  return ArrayDataset(prototypes[labels] + _NOISE * noise, labels, 0.5, 1.0)


@dataclasses.dataclass(frozen=True)
class DigitStream:
  """Digits on the device and the windows cut from them.

  Attributes:
    images: ``[N, D]`` float32, normalised and flattened.
    labels: ``[N]`` int32 classes.
  """
  images: jax.Array
  labels: jax.Array

  @classmethod
  def from_dataset(cls, dataset: ArrayDataset) -> "DigitStream":
    batch = dataset.batch(np.arange(len(dataset)))
    images = batch["inputs"].reshape(len(dataset), -1)
    return cls(jnp.asarray(images), jnp.asarray(batch["labels"], jnp.int32))

  @property
  def input_size(self) -> int:
    return self.images.shape[1]


def data_key(seed: int) -> jax.Array:
  """The stream's own key (the parameters use ``PRNGKey(seed)`` itself)."""
  return jax.random.fold_in(jax.random.PRNGKey(seed), _DATA_STREAM)


def window(stream: DigitStream, key: jax.Array, batch_size: int, k: int,
           ticks: int) -> dict:
  """``ticks`` windows of ``k`` digits per stream, with both tasks' labels.

  Returns:
    ``inputs [B, ticks·k, D]``, ``a_labels [B, ticks·k]`` (the digits'
    classes) and ``b_labels [B, ticks]`` (odd digits in each window of
    ``k``, 0…k).
  """
  index = jax.random.randint(key, (batch_size, ticks * k), 0,
                             stream.labels.shape[0])
  a_labels = stream.labels[index]
  odd = (a_labels % 2).reshape(batch_size, ticks, k)
  return {"inputs": stream.images[index], "a_labels": a_labels,
          "b_labels": odd.sum(-1).astype(jnp.int32)}
