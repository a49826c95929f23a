"""Data: local-file loaders on fixture files in the real formats, real MNIST,
tensorflow-datasets through mock_data and through its real reader on files
the tests prepare, generated binary addition, batching."""

import gzip
import hashlib
import importlib.util
import os
import pickle

import numpy as np
import pytest
import tensorflow_datasets as tfds_lib

from dni_jax import data
from dni_jax.data import binary_addition
from dni_jax.data import cifar
from dni_jax.data import idx
from dni_jax.data import tfds_source
from dni_jax.data.dataset import batch_at
from dni_jax.errors import DataError

SHARED_MNIST = os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                            "data", "mnist")


def _idx_bytes(array: np.ndarray) -> bytes:
  magic = {3: 2051, 1: 2049}[array.ndim]
  header = magic.to_bytes(4, "big") + b"".join(
      d.to_bytes(4, "big") for d in array.shape)
  return header + array.astype(np.uint8).tobytes()


def write_mnist(folder, n_train=40, n_test=20, gz=True, seed=0):
  """Fixture MNIST IDX files of the given sizes; returns their contents."""
  rng = np.random.default_rng(seed)
  contents = {}
  for split, n in (("train", n_train), ("test", n_test)):
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    for stem, array in zip(idx.MNIST_FILES[split], (images, labels)):
      raw = _idx_bytes(array)
      path = os.path.join(folder, stem + (".gz" if gz else ""))
      with (gzip.open if gz else open)(path, "wb") as f:
        f.write(raw)
    contents[split] = (images, labels)
  return contents


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_round_trip(tmp_path, gz):
  contents = write_mnist(tmp_path, gz=gz)
  for split in ("train", "test"):
    images, labels = idx.load_mnist(str(tmp_path), split)
    np.testing.assert_array_equal(images[..., 0], contents[split][0])
    np.testing.assert_array_equal(labels, contents[split][1])
    assert images.shape[-1] == 1 and labels.dtype == np.int32


def test_mnist_missing_truncated_or_wrong_files(tmp_path):
  with pytest.raises(DataError, match="train-images-idx3-ubyte.*not found"):
    idx.load_mnist(str(tmp_path), "train")
  write_mnist(tmp_path, gz=False)
  path = tmp_path / "train-images-idx3-ubyte"
  raw = path.read_bytes()
  path.write_bytes(raw[:-100])
  with pytest.raises(DataError, match="truncated"):
    idx.load_mnist(str(tmp_path), "train")
  path.write_bytes((2049).to_bytes(4, "big") + raw[4:])
  with pytest.raises(DataError, match="magic number 2049"):
    idx.load_mnist(str(tmp_path), "train")
  gz_path = tmp_path / "t10k-labels-idx1-ubyte.gz"
  gz_path.write_bytes(b"not a gzip file")
  with pytest.raises(DataError, match="corrupt or truncated"):
    idx.load_mnist(str(tmp_path), "test")


@pytest.mark.skipif(not os.path.isdir(SHARED_MNIST),
                    reason="../shared/data/mnist not present")
def test_real_mnist_checksums_and_statistics():
  # Lines: "<sha256 of the decompressed file>  <name>.gz (decompressed)".
  sums = {line.split()[1]: line.split()[0] for line in
          open(os.path.join(SHARED_MNIST, "SHA256SUMS")) if line.strip()}
  with gzip.open(os.path.join(SHARED_MNIST, "train-images-idx3-ubyte.gz")) as f:
    digest = hashlib.sha256(f.read()).hexdigest()
  assert digest == sums["train-images-idx3-ubyte.gz"]
  train = data.load_dataset("mnist", "train", SHARED_MNIST)
  test = data.load_dataset("mnist", "test", SHARED_MNIST)
  assert (len(train), len(test)) == (60000, 10000)
  pixels = train.inputs.astype(np.float64) / 255
  assert pixels.mean() == pytest.approx(0.1307, abs=1e-4)
  assert pixels.std() == pytest.approx(0.3081, abs=1e-4)
  assert sorted(np.unique(train.labels)) == list(range(10))


def write_cifar(folder, per_file=12, binary=False, seed=0):
  rng = np.random.default_rng(seed)
  sub = folder / ("cifar-10-batches-bin" if binary else "cifar-10-batches-py")
  sub.mkdir()
  written = {}
  for stem in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
    pixels = rng.integers(0, 256, (per_file, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, per_file, dtype=np.uint8)
    if binary:
      (sub / (stem + ".bin")).write_bytes(
          np.concatenate([labels[:, None], pixels], 1).tobytes())
    else:
      with open(sub / stem, "wb") as f:
        pickle.dump({b"data": pixels, b"labels": labels.tolist()}, f)
    written[stem] = (pixels, labels)
  return written


@pytest.mark.parametrize("binary", [False, True])
def test_cifar10_local_formats(tmp_path, binary):
  written = write_cifar(tmp_path, binary=binary)
  images, labels = cifar.load_cifar10(str(tmp_path), "train")
  assert images.shape == (60, 32, 32, 3) and labels.shape == (60,)
  pixels, first_labels = written["data_batch_1"]
  # Channel-major rows become HWC images: red plane first.
  np.testing.assert_array_equal(images[0, :, :, 0].ravel(), pixels[0, :1024])
  np.testing.assert_array_equal(labels[:12], first_labels)
  images, _ = cifar.load_cifar10(str(tmp_path), "test")
  assert images.shape == (12, 32, 32, 3)


def test_cifar10_bad_files(tmp_path):
  with pytest.raises(DataError, match="no CIFAR-10 files"):
    cifar.load_cifar10(str(tmp_path), "train")
  write_cifar(tmp_path, binary=True)
  path = tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin"
  path.write_bytes(path.read_bytes()[:-7])
  with pytest.raises(DataError, match="data_batch_3.bin.*truncated"):
    cifar.load_cifar10(str(tmp_path), "train")
  (tmp_path / "cifar-10-batches-bin" / "test_batch.bin").unlink()
  with pytest.raises(DataError, match="test_batch.bin"):
    cifar.load_cifar10(str(tmp_path), "test")


def test_cifar10_corrupt_pickle(tmp_path):
  write_cifar(tmp_path)
  (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"\x80garbage")
  with pytest.raises(DataError, match="data_batch_2.*corrupt"):
    cifar.load_cifar10(str(tmp_path), "train")


@pytest.mark.parametrize("name,shape", [("mnist", (28, 28, 1)),
                                        ("cifar10", (32, 32, 3))])
def test_tfds_through_mock_data(name, shape, mock_tfds):
  with mock_tfds(num_examples=12):
    ds = data.load_dataset(name, "train")
  assert ds.inputs.shape == (12,) + shape and ds.inputs.dtype == np.uint8
  assert ds.labels.shape == (12,) and ds.labels.dtype == np.int32


def test_unknown_dataset_and_missing_dir():
  with pytest.raises(DataError, match="unknown dataset 'mnsit'"):
    data.load_dataset("mnsit", "train")
  with pytest.raises(DataError, match="does not exist"):
    data.load_dataset("mnist", "train", "/no/such/folder")


def test_binary_addition_is_addition_and_split_is_disjoint():
  train_x, train_y = binary_addition.binary_addition("train", num_bits=6)
  test_x, test_y = binary_addition.binary_addition("test", num_bits=6)
  assert len(train_x) + len(test_x) == 32 * 32
  for x, y in ((train_x, train_y), (test_x, test_y)):
    a, b = binary_addition.from_bits(x[:, :6]), binary_addition.from_bits(x[:, 6:])
    np.testing.assert_array_equal(a + b, binary_addition.from_bits(y))
    assert a.max() < 32 and b.max() < 32
  pairs = lambda x: set(map(bytes, x.astype(np.uint8)))
  assert not pairs(train_x) & pairs(test_x)


def test_batches_are_deterministic_and_reshuffled_each_epoch():
  ds = data.ArrayDataset(np.arange(10, dtype=np.float32)[:, None],
                         np.arange(10))
  epoch0 = [batch_at(ds, s, 3, seed=1)["labels"] for s in range(3)]
  epoch1 = [batch_at(ds, s, 3, seed=1)["labels"] for s in range(3, 6)]
  np.testing.assert_array_equal(np.concatenate(epoch0),
                                np.concatenate([batch_at(ds, s, 3, seed=1)[
                                    "labels"] for s in range(3)]))
  assert len(set(np.concatenate(epoch0))) == 9  # a permutation, remainder dropped
  assert not np.array_equal(np.concatenate(epoch0), np.concatenate(epoch1))
  assert not np.array_equal(batch_at(ds, 0, 3, seed=2)["labels"], epoch0[0])
  with pytest.raises(ValueError, match="exceeds the dataset"):
    batch_at(ds, 0, 11, seed=0)



def test_interleaved_seeds_draw_each_epoch_order_once(monkeypatch):
  """A sweep group of 8 seeds asks for 8 orders every step; each seed's
  permutation is drawn once per epoch, not once per step (the orders are
  the same as a lone run's)."""
  from dni_jax.data import dataset as dataset_lib  # pylint: disable=g-import-not-at-top
  lone = {s: [dataset_lib.batch_indices(100, i, 10, s).copy()
              for i in range(20)] for s in range(8)}
  dataset_lib._ORDERS.clear()  # pylint: disable=protected-access
  draws = []
  real = np.random.default_rng
  monkeypatch.setattr(np.random, "default_rng",
                      lambda seed: draws.append(tuple(seed)) or real(seed))
  for i in range(20):  # 2 epochs of 10 steps
    for s in range(8):
      np.testing.assert_array_equal(
          dataset_lib.batch_indices(100, i, 10, s), lone[s][i])
  assert sorted(draws) == [(s, e) for s in range(8) for e in range(2)]
  with pytest.raises(ValueError, match="read-only"):
    dataset_lib.batch_indices(100, 0, 10, 0)[0] = 1

class DniTestDigits(tfds_lib.core.GeneratorBasedBuilder):
  """Ten-class 28×28×1 uint8 images written by the test, no TensorFlow."""
  VERSION = tfds_lib.core.Version("1.0.0")

  def _info(self):
    return tfds_lib.core.DatasetInfo(
        builder=self, features=tfds_lib.features.FeaturesDict({
            "image": tfds_lib.features.Tensor(shape=(28, 28, 1),
                                              dtype=np.uint8),
            "label": tfds_lib.features.ClassLabel(num_classes=10)}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(12, 0),
            "test": self._generate_examples(5, 1)}

  def _generate_examples(self, n, seed):
    rng = np.random.default_rng(seed)
    for i in range(n):
      yield i, {"image": rng.integers(0, 256, (28, 28, 1), dtype=np.uint8),
                "label": i % 10}


class DniTestPngDigits(DniTestDigits):
  """The same as PNG images, as MNIST's builder writes them."""

  def _info(self):
    return tfds_lib.core.DatasetInfo(
        builder=self, features=tfds_lib.features.FeaturesDict({
            "image": tfds_lib.features.Image(shape=(28, 28, 1)),
            "label": tfds_lib.features.ClassLabel(num_classes=10)}))


@pytest.mark.usefixtures("tfds_scratch")
def test_tfds_data_source_reads_prepared_array_record_files(tmp_path):
  """The real reader (tfds.data_source, no mock) on files the test wrote."""
  DniTestDigits(data_dir=str(tmp_path),
                file_format="array_record").download_and_prepare()
  images, labels = tfds_source.load_tfds("dni_test_digits", "train",
                                         str(tmp_path), download=False)
  expected = np.random.default_rng(0).integers(0, 256, (28, 28, 1),
                                               dtype=np.uint8)
  assert images.shape == (12, 28, 28, 1) and images.dtype == np.uint8
  assert sorted(labels.tolist()) == sorted(i % 10 for i in range(12))
  assert any((im == expected).all() for im in images)


@pytest.mark.usefixtures("tfds_scratch")
def test_tfds_download_failure_names_the_cause_and_a_local_way(
    tmp_path, monkeypatch):
  """The download host answers the reachability check, the download fails."""
  def no_network(*args, **kwargs):
    raise ConnectionError("Failed to resolve host (no network in this test)")
  for name in ("download", "download_and_extract"):
    monkeypatch.setattr(tfds_lib.download.DownloadManager, name, no_network)
  monkeypatch.setattr(tfds_source, "unreachable", lambda *args: None)
  with pytest.raises(DataError) as e:
    data.load_dataset("mnist", "train", tfds_data_dir=str(tmp_path))
  message = str(e.value)
  assert "could not download 'mnist'" in message
  assert "(no network in this test)" in message
  assert "--config.data.dir" in message and "IDX" in message
  assert "importlib" not in message


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None,
                    reason="TensorFlow is installed: preparing works")
@pytest.mark.usefixtures("tfds_scratch")
def test_preparing_without_tensorflow_says_so(tmp_path):
  with pytest.raises(DataError, match="needs TensorFlow.*tensorflow-cpu"):
    tfds_source.load_tfds("dni_test_png_digits", "train", str(tmp_path),
                          download=True)
