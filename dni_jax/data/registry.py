"""One entry point for every dataset: ``load_dataset(name, split, ...)``."""

from __future__ import annotations

import os

from dni_jax.data import binary_addition as binary_addition_lib
from dni_jax.data import cifar
from dni_jax.data import idx
from dni_jax.data.dataset import ArrayDataset
from dni_jax.errors import DataError

DATASETS = ("mnist", "cifar10", "binary_addition")
# Sequence tasks, trained with recurrent DNI (see dni_jax.training.recurrent).
SEQUENCE_TASKS = ("copy", "repeat_copy", "ptb_char", "tiny_shakespeare")
SPLITS = ("train", "test")
_IMAGE_STATS = {"mnist": (idx.MNIST_MEAN, idx.MNIST_STD),
                "cifar10": (cifar.CIFAR_MEAN, cifar.CIFAR_STD)}


def load_dataset(name: str, split: str, data_dir: str = "", *,
                 tfds_data_dir: str | None = None, download: bool = True,
                 seed: int = 0, num_bits: int = 8) -> ArrayDataset:
  """Loads ``split`` of dataset ``name`` into memory.

  Args:
    name: one of ``DATASETS``.
    split: "train" or "test".
    data_dir: a folder with the dataset's original files (MNIST IDX,
      CIFAR-10 pickles or binaries); empty to use tensorflow-datasets.
    tfds_data_dir: tensorflow-datasets' own data folder (its default if None).
    download: let tensorflow-datasets download and prepare missing data.
    seed: the held-out split of generated data.
    num_bits: binary addition's number width.

  Returns:
    The ``ArrayDataset``, with its normalisation constants.
  """
  if name not in DATASETS:
    raise DataError(f"unknown dataset {name!r}; choose one of {DATASETS}")
  if split not in SPLITS:
    raise DataError(f"unknown split {split!r}; choose one of {SPLITS}")
  if name == "binary_addition":
    return ArrayDataset(*binary_addition_lib.binary_addition(
        split, num_bits=num_bits, seed=seed))
  if data_dir:
    if not os.path.isdir(data_dir):
      raise DataError(f"data.dir {data_dir!r} does not exist; point "
                      "--config.data.dir at the folder with the dataset's "
                      "files, or leave it empty to use tensorflow-datasets.")
    loader = idx.load_mnist if name == "mnist" else cifar.load_cifar10
    images, labels = loader(data_dir, split)
  else:
    from dni_jax.data import tfds_source  # pylint: disable=g-import-not-at-top
    images, labels = tfds_source.load_tfds(name, split, tfds_data_dir, download)
  mean, std = _IMAGE_STATS[name]
  return ArrayDataset(images, labels, mean, std)
