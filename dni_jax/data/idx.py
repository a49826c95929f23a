"""MNIST from its four IDX files (LeCun's format), gzipped or not.

An IDX file: 2 zero bytes, a type byte (0x08 = uint8), a rank byte, one
big-endian uint32 per dimension, then the data. MNIST images carry magic number
2051 (rank 3), labels 2049 (rank 1).
"""

from __future__ import annotations

import gzip
import os
import zlib

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


def _replace(path: str) -> str:
  """The fix for a damaged MNIST file: get that file again."""
  name = os.path.basename(path)
  gz = name if name.endswith(".gz") else name + ".gz"
  unzip = "" if name == gz else " and gunzip it"
  return (f"replace {name} with a fresh copy (download {gz} again, e.g. "
          f"from https://storage.googleapis.com/cvdf-datasets/mnist/{gz}"
          f"{unzip}, or copy it again from where you got it)")


def _name(error: BaseException) -> str:
  return "zlib.error" if isinstance(error, zlib.error) else type(error).__name__


def _read_bytes(path: str) -> bytes:
  """The (decompressed) bytes of ``path``; a DataError if it cannot be read."""
  try:
    if not path.endswith(".gz"):
      with open(path, "rb") as f:
        return f.read()
    with open(path, "rb") as f:
      head = f.read(4)
      f.seek(0)
      try:
        with gzip.GzipFile(fileobj=f, mode="rb") as g:
          return g.read()
      except gzip.BadGzipFile as e:
        if head[:2] != b"\x1f\x8b" and head[:3] == b"\x00\x00\x08":
          raise DataError(
              f"{path!r} is not gzip-compressed although its name ends in "
              ".gz: it looks like an uncompressed IDX file. Rename it "
              f"without .gz ({os.path.basename(path)[:-3]}), or "
              f"{_replace(path)}.") from e
        raise
  except (PermissionError, IsADirectoryError) as e:
    raise DataError(f"cannot read {path!r} ({e}); make it a readable "
                    "file.") from e
  except (OSError, EOFError, zlib.error) as e:
    raise DataError(f"cannot read {path!r}: the file is corrupt or "
                    f"truncated ({_name(e)}: {e}); "
                    f"{_replace(path)}.") from e


def read_idx(path: str, rank: int) -> np.ndarray:
  """Reads one uint8 IDX file of the given rank, checking its header and size."""
  raw = _read_bytes(path)
  if len(raw) < 4 + 4 * rank:
    raise DataError(f"{path!r} is too short for an IDX header ({len(raw)} "
                    f"bytes); the file is truncated: {_replace(path)}.")
  magic = int.from_bytes(raw[:4], "big")
  if magic != _MAGIC[rank]:
    raise DataError(f"{path!r} has magic number {magic}, expected "
                    f"{_MAGIC[rank]} for a rank-{rank} uint8 IDX file; it is "
                    f"damaged or not this file: {_replace(path)}.")
  shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big")
                for i in range(rank))
  body = raw[4 + 4 * rank:]
  expected = int(np.prod(shape, dtype=np.int64))
  if len(body) != expected:
    damage = ("truncated" if len(body) < expected else
              f"damaged ({len(body) - expected} bytes too many)")
    raise DataError(f"{path!r} holds {len(body)} data bytes, its header "
                    f"promises {expected} (shape {shape}); the file is "
                    f"{damage}: {_replace(path)}.")
  return np.frombuffer(body, np.uint8).reshape(shape)


def load_mnist(data_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """``(images [N, 28, 28, 1] uint8, labels [N] int32)`` of ``split``."""
  image_stem, label_stem = MNIST_FILES[split]
  image_path, label_path = _find(data_dir, image_stem), _find(data_dir,
                                                              label_stem)
  images, labels = read_idx(image_path, 3), read_idx(label_path, 1)
  if len(images) != len(labels):
    raise DataError(f"MNIST {split}: {image_path!r} holds {len(images)} "
                    f"images but {label_path!r} {len(labels)} labels; the "
                    "files do not belong together: replace them with the "
                    "matching pair of the MNIST distribution.")
  if images.shape[1:] != (28, 28):
    raise DataError(f"{image_path!r} holds {images.shape[1]}x"
                    f"{images.shape[2]} images, expected 28x28; it is not "
                    f"the MNIST file: {_replace(image_path)}.")
  if labels.size and labels.max() > 9:
    raise DataError(f"{label_path!r} holds labels up to {labels.max()}, "
                    "expected 0-9; it is damaged or not the MNIST file: "
                    f"{_replace(label_path)}.")
  return images[..., None], labels.astype(np.int32)
