"""The two-network task: episodes of digits; A counts odd ones, B counts 3s.

Network A sees one digit image per step and every ``T`` steps must say how
many of its last ``T`` digits were odd (``T + 1``-way). Network B reads only
the messages A sends it at those steps and, after ``T`` of them (``T²``
digits), must say how many of the episode's digits were 3s (``T² + 1``-way):
information only A sees (the paper's multi-network experiment, its §3.2 and
Fig. 5; ``dni_jax.core.two_networks``).

The digits are MNIST (``data.dir`` or tensorflow-datasets) or generated
(``synthetic_digits``: ten fixed random 28×28 prototypes plus Gaussian
noise, no download). An episode's digits are drawn uniformly, with
replacement, from a pure function of ``(seed, step)``, on the device.
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


def episodes(stream: DigitStream, key: jax.Array, batch_size: int,
             T: int) -> dict:
  """``batch_size`` episodes of ``T²`` digits with both networks' labels.

  Returns:
    ``inputs [B, T², D]``, ``a_labels [B, T]`` (odd digits in each window of
    ``T``, 0…T) and ``b_labels [B]`` (3s among the episode's ``T²`` digits,
    0…T²).
  """
  index = jax.random.randint(key, (batch_size, T * T), 0,
                             stream.labels.shape[0])
  digits = stream.labels[index]
  odd = (digits % 2).reshape(batch_size, T, T)
  return {"inputs": stream.images[index],
          "a_labels": odd.sum(-1).astype(jnp.int32),
          "b_labels": (digits == 3).sum(-1).astype(jnp.int32)}
