"""MNIST from its four IDX files (LeCun's format), gzipped or not.

An IDX file: 2 zero bytes, a type byte (0x08 = uint8), a rank byte, one
big-endian uint32 per dimension, then the data. MNIST images carry magic number
2051 (rank 3), labels 2049 (rank 1).
"""

from __future__ import annotations

import gzip
import os

import numpy as np

from dni_jax.errors import DataError

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_MAGIC = {3: 2051, 1: 2049}
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def _find(data_dir: str, stem: str) -> str:
  for name in (stem + ".gz", stem):
    path = os.path.join(data_dir, name)
    if os.path.exists(path):
      return path
  raise DataError(
      f"MNIST file {stem}[.gz] not found in {data_dir!r}; put the four IDX "
      "files there (train-images-idx3-ubyte.gz, ...) or unset "
      "--config.data.dir to use tensorflow-datasets.")


def read_idx(path: str, rank: int) -> np.ndarray:
  """Reads one uint8 IDX file of the given rank, checking its header and size."""
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      raw = f.read()
  except (OSError, EOFError) as e:
    raise DataError(f"cannot read {path!r} ({e}); the file is corrupt or "
                    "truncated: download it again.") from e
  if len(raw) < 4 + 4 * rank:
    raise DataError(f"{path!r} is too short for an IDX header; download it "
                    "again.")
  magic = int.from_bytes(raw[:4], "big")
  if magic != _MAGIC[rank]:
    raise DataError(f"{path!r} has magic number {magic}, expected "
                    f"{_MAGIC[rank]} for a rank-{rank} uint8 IDX file; is it "
                    "the right file?")
  shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big")
                for i in range(rank))
  body = raw[4 + 4 * rank:]
  if len(body) != int(np.prod(shape)):
    raise DataError(f"{path!r} holds {len(body)} data bytes, its header "
                    f"promises {int(np.prod(shape))} (shape {shape}); the file "
                    "is truncated: download it again.")
  return np.frombuffer(body, np.uint8).reshape(shape)


def load_mnist(data_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """``(images [N, 28, 28, 1] uint8, labels [N] int32)`` of ``split``."""
  image_stem, label_stem = MNIST_FILES[split]
  images = read_idx(_find(data_dir, image_stem), 3)
  labels = read_idx(_find(data_dir, label_stem), 1)
  if len(images) != len(labels):
    raise DataError(f"MNIST {split}: {len(images)} images but {len(labels)} "
                    f"labels in {data_dir!r}; the files do not belong together.")
  if images.shape[1:] != (28, 28):
    raise DataError(f"MNIST {split} images in {data_dir!r} are "
                    f"{images.shape[1:]}, expected 28x28.")
  if labels.size and labels.max() > 9:
    raise DataError(f"MNIST {split} labels in {data_dir!r} go up to "
                    f"{labels.max()}, expected 0-9; is it the right file?")
  return images[..., None], labels.astype(np.int32)
