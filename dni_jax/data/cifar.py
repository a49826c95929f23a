"""CIFAR-10 from local files: the python pickles or the binary version.

- ``cifar-10-batches-py/``: ``data_batch_1..5`` and ``test_batch``, pickled
  dicts with ``data`` (``[10000, 3072]`` uint8, channel-major) and ``labels``.
- ``cifar-10-batches-bin/``: ``data_batch_1..5.bin`` and ``test_batch.bin``,
  10000 records of 1 label byte + 3072 pixel bytes.

``data_dir`` may be the batches folder itself or its parent.
"""

from __future__ import annotations

import os
import pickle

import numpy as np

from dni_jax.errors import DataError

_SPLIT_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)],
                "test": ["test_batch"]}
_RECORD = 1 + 3072
CIFAR_MEAN, CIFAR_STD = 0.4734, 0.2516


def _to_nhwc(data: np.ndarray) -> np.ndarray:
  return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _replace(path: str, archive: str) -> str:
  """The fix for a damaged CIFAR-10 file: get that file again."""
  return (f"replace {os.path.basename(path)} with a fresh copy (download "
          f"{archive} again from https://www.cs.toronto.edu/~kriz/cifar.html "
          "and extract it, or copy the file again from where you got it)")


def _check_labels(path: str, labels: np.ndarray, archive: str):
  if labels.size and (labels.min() < 0 or labels.max() > 9):
    raise DataError(f"{path!r} holds labels from {labels.min()} to "
                    f"{labels.max()}, expected 0-9; the file is damaged: "
                    f"{_replace(path, archive)}.")


def _read_pickle(path: str) -> tuple[np.ndarray, np.ndarray]:
  archive = "cifar-10-python.tar.gz"
  try:
    with open(path, "rb") as f:
      batch = pickle.load(f, encoding="bytes")
    data = np.asarray(batch[b"data"], np.uint8)
    labels = np.asarray(batch[b"labels"], np.int64)
  except (PermissionError, IsADirectoryError) as e:
    raise DataError(f"cannot read {path!r} ({e}); make it a readable "
                    "file.") from e
  except Exception as e:  # pylint: disable=broad-except
    # A damaged pickle fails in many ways (EOFError, UnpicklingError,
    # KeyError, ImportError, OverflowError, ...): all say the same.
    raise DataError(f"cannot read CIFAR-10 batch {path!r} ({e!r}); the file "
                    f"is corrupt or truncated: {_replace(path, archive)}."
                    ) from e
  if data.ndim != 2 or data.shape[1] != 3072 or labels.shape != data.shape[:1]:
    raise DataError(f"{path!r} holds data {data.shape} and labels "
                    f"{labels.shape}, expected (N, 3072) and (N,); it is "
                    "damaged or not a CIFAR-10 batch file: "
                    f"{_replace(path, archive)}.")
  _check_labels(path, labels, archive)
  return _to_nhwc(data), labels.astype(np.int32)


def _read_binary(path: str) -> tuple[np.ndarray, np.ndarray]:
  archive = "cifar-10-binary.tar.gz"
  try:
    raw = np.fromfile(path, np.uint8)
  except OSError as e:
    raise DataError(f"cannot read {path!r} ({e}); make it a readable "
                    "file.") from e
  if raw.size == 0 or raw.size % _RECORD:
    raise DataError(f"{path!r} has {raw.size} bytes, not a whole number of "
                    f"{_RECORD}-byte records (1 label + 3072 pixels); the file "
                    f"is truncated: {_replace(path, archive)}.")
  records = raw.reshape(-1, _RECORD)
  labels = records[:, 0].astype(np.int32)
  _check_labels(path, labels, archive)
  return _to_nhwc(records[:, 1:]), labels


def _locate(data_dir: str) -> tuple[str, str]:
  for folder, kind in (("cifar-10-batches-py", "py"),
                       ("cifar-10-batches-bin", "bin")):
    for candidate in (os.path.join(data_dir, folder), data_dir):
      if os.path.basename(os.path.normpath(candidate)) == folder and \
          os.path.isdir(candidate):
        return candidate, kind
  if os.path.exists(os.path.join(data_dir, "data_batch_1")):
    return data_dir, "py"
  if os.path.exists(os.path.join(data_dir, "data_batch_1.bin")):
    return data_dir, "bin"
  raise DataError(
      f"no CIFAR-10 files in {data_dir!r}: expected cifar-10-batches-py/ or "
      "cifar-10-batches-bin/ (the extracted official archives); or unset "
      "--config.data.dir to use tensorflow-datasets.")


def load_cifar10(data_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """``(images [N, 32, 32, 3] uint8, labels [N] int32)`` of ``split``."""
  folder, kind = _locate(data_dir)
  images, labels = [], []
  for stem in _SPLIT_FILES[split]:
    name = stem + (".bin" if kind == "bin" else "")
    path = os.path.join(folder, name)
    if not os.path.exists(path):
      raise DataError(f"CIFAR-10 file {name!r} missing from {folder!r}; "
                      "extract the whole official archive there.")
    x, y = (_read_binary if kind == "bin" else _read_pickle)(path)
    images.append(x)
    labels.append(y)
  return np.concatenate(images), np.concatenate(labels)
