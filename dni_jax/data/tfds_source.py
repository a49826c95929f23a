"""Standard datasets through tensorflow-datasets, read into numpy.

``tfds.data_source`` reads prepared (ArrayRecord) data without TensorFlow;
where TensorFlow is installed and the data source cannot be opened (e.g. data
prepared as TFRecord), ``tfds.load`` is tried instead. tensorflow_datasets is
imported only here and in ``char_corpus``, so the rest of dni_jax never
loads it.

*Preparing* a dataset the first time (download, then convert) runs the
dataset's tensorflow-datasets builder, and the MNIST, CIFAR-10 and
tiny_shakespeare builders need TensorFlow for that; reading prepared data
does not. ``explain_failure`` turns tensorflow-datasets' errors into one
paragraph naming the real cause (a missing package, no network, a format
the TensorFlow-free reader cannot open) and a way out that works.
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


def _chain(error: BaseException):
  while error is not None:
    yield error
    error = error.__cause__ or error.__context__


def explain_failure(name: str, error: BaseException, local_hint: str) -> str:
  """One paragraph on why tensorflow-datasets could not give ``name``.

  Args:
    name: the tfds dataset name.
    error: what tensorflow-datasets raised.
    local_hint: how to use local files instead (e.g. ``--config.data.dir``).
  """
  for e in _chain(error):
    if isinstance(e, ModuleNotFoundError) and e.name:
      if e.name.split(".")[0] == "tensorflow":
        return (f"tensorflow-datasets has not prepared {name!r} yet, and "
                "preparing it (download, then convert) needs TensorFlow, "
                "which is not installed; reading it afterwards does not. "
                "Either `pip install tensorflow-cpu` once and rerun, or "
                f"{local_hint}.")
      return (f"tensorflow-datasets needs the Python package "
              f"{e.name.split('.')[0]!r}, which is not installed: `pip "
              "install -r requirements.txt` (or `pip install "
              f"{e.name.split('.')[0]}`), then rerun; or {local_hint}.")
    if "FileFormat.TFRECORD" in str(e):
      return (f"{name!r} is prepared in tensorflow-datasets' data folder as "
              "TFRecord files, which the TensorFlow-free reader cannot open. "
              "Install TensorFlow (`pip install tensorflow-cpu`: tfds.load "
              "then reads them), or point --config.data.tfds_data_dir at "
              f"another folder so that it is prepared anew, or {local_hint}.")
    text = f"{type(e).__name__}: {e}"
    if any(w in text for w in ("DownloadError", "ConnectionError",
                               "NameResolution", "Max retries",
                               "Failed to resolve", "Network is unreachable")):
      return (f"tensorflow-datasets could not download {name!r} "
              f"({text.splitlines()[0][:200]}). Without internet access, "
              f"{local_hint}.")
  first = f"{type(error).__name__}: {error}".splitlines()[0][:300]
  return (f"could not read {name!r} from tensorflow-datasets ({first}). "
          f"Check --config.data.tfds_data_dir, or {local_hint}.")


_LOCAL_HINT = {
    "mnist": ("set --config.data.dir to a folder with the four MNIST IDX "
              "files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
              "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz), which "
              "needs no TensorFlow"),
    "cifar10": ("set --config.data.dir to the extracted CIFAR-10 python or "
                "binary version (cifar-10-batches-py or cifar-10-batches-bin), "
                "which needs no TensorFlow"),
}


def load_tfds(name: str, split: str, data_dir: str | None = None,
              download: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """``(images uint8 [N, H, W, C], labels int32 [N])`` of a tfds dataset."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  readers = [_via_data_source]
  if importlib.util.find_spec("tensorflow") is not None:
    readers.append(_via_load)
  first_error = None
  for reader in readers:
    try:
      return reader(tfds, name, split, data_dir, download)
    except Exception as e:  # pylint: disable=broad-except
      first_error = first_error or e
  hint = _LOCAL_HINT.get(name, "use a local copy of the files")
  raise DataError(explain_failure(name, first_error, hint)) from first_error
