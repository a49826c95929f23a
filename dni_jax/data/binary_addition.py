"""Binary addition, the classic numpy demonstration of synthetic gradients.

Two random numbers below ``2**(num_bits-1)`` are written in binary
(``num_bits`` each, least significant bit first) and concatenated: the input.
The target is the ``num_bits`` bits of their sum. Every pair is enumerated
once, and a fixed fraction of the pairs, drawn from the seed, is held out.
"""

from __future__ import annotations

import numpy as np


def to_bits(values: np.ndarray, num_bits: int) -> np.ndarray:
  """``[N]`` integers -> ``[N, num_bits]`` float32 bits, LSB first."""
  return ((values[:, None] >> np.arange(num_bits)) & 1).astype(np.float32)


def from_bits(bits: np.ndarray) -> np.ndarray:
  """Inverse of ``to_bits`` (thresholded at 0.5)."""
  return ((bits > 0.5).astype(np.int64) << np.arange(bits.shape[-1])).sum(-1)


def binary_addition(split: str, num_bits: int = 8, test_fraction: float = 0.2,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """``(inputs [N, 2*num_bits], targets [N, num_bits])`` of ``split``."""
  if num_bits < 2:
    raise ValueError(f"binary addition needs num_bits >= 2, got {num_bits}")
  if not 0.0 < test_fraction < 1.0:
    raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
  operands = np.arange(2 ** (num_bits - 1))
  a, b = (x.ravel() for x in np.meshgrid(operands, operands, indexing="ij"))
  order = np.random.default_rng(seed).permutation(len(a))
  num_test = int(round(test_fraction * len(a)))
  chosen = order[:num_test] if split == "test" else order[num_test:]
  a, b = a[chosen], b[chosen]
  inputs = np.concatenate([to_bits(a, num_bits), to_bits(b, num_bits)], -1)
  return inputs, to_bits(a + b, num_bits)
