"""Standard datasets through tensorflow-datasets, read into numpy.

``tfds.data_source`` reads prepared (ArrayRecord) data without TensorFlow;
where TensorFlow is installed and the data source cannot be opened (e.g. data
prepared as TFRecord), ``tfds.load`` is tried instead. tensorflow_datasets is
imported only here, so the rest of dni_jax never loads it.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from dni_jax.errors import DataError


def _via_data_source(tfds, name, split, data_dir, download):
  source = tfds.data_source(name, split=split, data_dir=data_dir,
                            download=download)
  items = [source[i] for i in range(len(source))]
  return (np.stack([item["image"] for item in items]),
          np.asarray([item["label"] for item in items], np.int32))


def _via_load(tfds, name, split, data_dir, download):
  data = tfds.as_numpy(tfds.load(name, split=split, data_dir=data_dir,
                                 download=download, batch_size=-1))
  return np.asarray(data["image"]), np.asarray(data["label"], np.int32)


def load_tfds(name: str, split: str, data_dir: str | None = None,
              download: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """``(images uint8 [N, H, W, C], labels int32 [N])`` of a tfds dataset."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  readers = [_via_data_source]
  if importlib.util.find_spec("tensorflow") is not None:
    readers.append(_via_load)
  errors = []
  for reader in readers:
    try:
      return reader(tfds, name, split, data_dir, download)
    except Exception as e:  # pylint: disable=broad-except
      errors.append(f"{reader.__name__}: {type(e).__name__}: {e}")
  raise DataError(
      f"could not read {name!r} split {split!r} from tensorflow-datasets "
      f"({'; '.join(errors)[:800]}). Prepare it on a machine with internet "
      f"access (`tfds build {name}`) or set --config.data.dir to a folder "
      "with the dataset's original files.")
