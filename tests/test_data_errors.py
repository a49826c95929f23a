"""Damaged local data files and tensorflow-datasets without a network.

Every way a local file can be damaged ends in a DataError that names the
file and the fix; tensorflow-datasets fails within seconds when its download
host cannot be reached, and leaves no unfinished download behind.
"""

import gzip
import os
import pickle
import socket
import time
import zlib

import numpy as np
import pytest
from tensorflow_datasets.core.download import downloader as tfds_downloader

from dni_jax import data
from dni_jax.data import char_corpus
from dni_jax.data import cifar
from dni_jax.data import idx
from dni_jax.data import tfds_source
from dni_jax.errors import DataError

_TRAIN_IMAGES = "train-images-idx3-ubyte"
_TRAIN_LABELS = "train-labels-idx1-ubyte"


def _idx_bytes(array: np.ndarray) -> bytes:
  magic = {3: 2051, 1: 2049}[array.ndim]
  header = magic.to_bytes(4, "big") + b"".join(
      d.to_bytes(4, "big") for d in array.shape)
  return header + array.astype(np.uint8).tobytes()


def _write_mnist_train(folder, n=30, gz=True):
  """Compressible fixture images (stripes), so that gzip uses Huffman codes."""
  images = np.zeros((n, 28, 28), np.uint8)
  images[:, ::3] = np.arange(n, dtype=np.uint8)[:, None, None] * 7
  labels = (np.arange(n) % 10).astype(np.uint8)
  paths = {}
  for stem, array in ((_TRAIN_IMAGES, images), (_TRAIN_LABELS, labels)):
    raw = _idx_bytes(array)
    path = folder / (stem + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(raw, mtime=0) if gz else raw)
    paths[stem] = path
  return paths


def _damage(kind: str, paths: dict):
  """Damages one file of ``paths`` as ``kind`` says; returns its name."""
  images = paths[_TRAIN_IMAGES]
  raw = images.read_bytes()
  if kind == "deflate_stream":  # first deflate block: reserved type 11
    images.write_bytes(raw[:10] + b"\xff" + raw[11:])
  elif kind == "bytes_flipped_in_the_middle":
    middle = len(raw) // 2
    images.write_bytes(raw[:middle] + bytes(b ^ 0xFF for b in
                                            raw[middle:middle + 8])
                       + raw[middle + 8:])
  elif kind == "truncated_gz":
    images.write_bytes(raw[:len(raw) // 2])
  elif kind == "not_gzip":
    images.write_bytes(b"<html>404 Not Found</html>")
  elif kind == "uncompressed_but_named_gz":
    images.write_bytes(gzip.decompress(raw))
  elif kind == "crc":  # last 8 bytes: CRC-32 and size of the data
    images.write_bytes(raw[:-8] + bytes(b ^ 0x55 for b in raw[-8:-4])
                       + raw[-4:])
  elif kind == "bad_magic":
    body = gzip.decompress(raw)
    images.write_bytes(gzip.compress((1234).to_bytes(4, "big") + body[4:]))
  elif kind == "header_cut":
    images.write_bytes(gzip.compress(gzip.decompress(raw)[:6]))
  elif kind == "too_short":
    images.write_bytes(gzip.compress(gzip.decompress(raw)[:-50]))
  elif kind == "too_long":
    images.write_bytes(gzip.compress(gzip.decompress(raw) + b"\0" * 9))
  elif kind == "not_28x28":
    images.write_bytes(gzip.compress(_idx_bytes(
        np.zeros((30, 14, 56), np.uint8))))
  elif kind == "labels_out_of_range":
    labels = paths[_TRAIN_LABELS]
    labels.write_bytes(gzip.compress(_idx_bytes(np.full(30, 200, np.uint8))))
    return labels.name
  elif kind == "a_folder":
    images.unlink()
    images.mkdir()
  else:
    raise ValueError(kind)
  return images.name


@pytest.mark.parametrize("kind", [
    "deflate_stream", "bytes_flipped_in_the_middle", "truncated_gz",
    "not_gzip", "uncompressed_but_named_gz", "crc", "bad_magic", "header_cut",
    "too_short", "too_long", "not_28x28", "labels_out_of_range", "a_folder"])
def test_damaged_mnist_file_names_the_file_and_the_fix(tmp_path, kind):
  name = _damage(kind, _write_mnist_train(tmp_path))
  with pytest.raises(DataError) as e:
    data.load_dataset("mnist", "train", str(tmp_path))
  message = str(e.value)
  assert os.path.join(str(tmp_path), name) in message
  fix = {"uncompressed_but_named_gz": "Rename it without .gz",
         "a_folder": "make it a readable file"}.get(kind, "fresh copy")
  assert fix in message
  assert "\n" not in message


def test_corrupt_deflate_stream_is_a_data_error_not_a_zlib_error(tmp_path):
  paths = _write_mnist_train(tmp_path)
  _damage("deflate_stream", paths)
  with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz.*corrupt"
                     ) as e:
    idx.read_idx(str(paths[_TRAIN_IMAGES]), 3)
  assert isinstance(e.value.__cause__, zlib.error)


@pytest.mark.parametrize("kind", ["too_short", "too_long", "bad_magic"])
def test_damaged_uncompressed_mnist_file(tmp_path, kind):
  paths = _write_mnist_train(tmp_path, gz=False)
  raw = paths[_TRAIN_IMAGES].read_bytes()
  paths[_TRAIN_IMAGES].write_bytes({
      "too_short": raw[:-50], "too_long": raw + b"\0" * 9,
      "bad_magic": (1234).to_bytes(4, "big") + raw[4:]}[kind])
  with pytest.raises(DataError, match=r"train-images-idx3-ubyte'.*fresh copy"
                     r".*and gunzip it"):
    idx.read_idx(str(paths[_TRAIN_IMAGES]), 3)


def _write_ptb(folder, train="a b _ c\nb a _ a c\n", valid="a _ b\n",
               test="c _ a\n"):
  for split, text in (("train", train), ("valid", valid), ("test", test)):
    (folder / f"ptb.char.{split}.txt").write_text(text)


@pytest.mark.parametrize("content,says", [
    (b"a b _ c\n\x00\x00\x00\x00\x00\x00\n", "control character"),
    (b"a b _ c\n\xff\xfe\x00\x81 b\n", "not UTF-8"),
    (gzip.compress(b"a b _ c\n", mtime=0), "gzip-compressed"),
    (np.random.default_rng(0).bytes(64), "not text"),
    (b"", "is empty"),
], ids=["zero_filled", "not_utf8", "gzipped", "random_bytes", "empty"])
def test_ptb_file_that_is_not_text(tmp_path, content, says):
  _write_ptb(tmp_path)
  path = tmp_path / "ptb.char.valid.txt"
  path.write_bytes(content)
  with pytest.raises(DataError) as e:
    char_corpus.load_ptb_char(str(tmp_path))
  message = str(e.value)
  assert str(path) in message and says in message
  assert "fresh copy" in message or "gunzip it" in message


def test_ptb_split_with_foreign_characters_names_its_file(tmp_path):
  _write_ptb(tmp_path, test="c _ \u00e9\n")
  with pytest.raises(DataError, match=r"ptb\.char\.test\.txt has characters "
                     r"not in the training split.*fresh copy"):
    char_corpus.load_ptb_char(str(tmp_path))


def test_ptb_file_that_is_a_folder(tmp_path):
  _write_ptb(tmp_path)
  (tmp_path / "ptb.char.test.txt").unlink()
  (tmp_path / "ptb.char.test.txt").mkdir()
  with pytest.raises(DataError, match=r"ptb\.char\.test\.txt.*readable file"):
    char_corpus.load_ptb_char(str(tmp_path))


def _write_cifar_py(folder):
  sub = folder / "cifar-10-batches-py"
  sub.mkdir()
  rng = np.random.default_rng(0)
  for stem in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
    with open(sub / stem, "wb") as f:
      pickle.dump({b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                   b"labels": [1, 2, 3, 4]}, f)
  return sub


@pytest.mark.parametrize("content", [
    b"\x80\x04cno_such_module\nthing\n.",
    b"\x80\x04]q\x00(K\x01K\x02e.",
    pickle.dumps({b"data": [[300] * 3072], b"labels": [0]}),
], ids=["unknown_module", "a_list_not_a_dict", "pixels_beyond_uint8"])
def test_damaged_cifar_pickle(tmp_path, content):
  sub = _write_cifar_py(tmp_path)
  (sub / "data_batch_4").write_bytes(content)
  with pytest.raises(DataError, match=r"data_batch_4'.*fresh copy.*"
                     r"cifar-10-python\.tar\.gz"):
    cifar.load_cifar10(str(tmp_path), "train")


def test_cifar_labels_out_of_range(tmp_path):
  sub = _write_cifar_py(tmp_path)
  with open(sub / "test_batch", "wb") as f:
    pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [3, 77]},
                f)
  with pytest.raises(DataError, match=r"test_batch'.*labels from 3 to 77"):
    cifar.load_cifar10(str(tmp_path), "test")
  binary = tmp_path / "bin" / "cifar-10-batches-bin"
  binary.mkdir(parents=True)
  record = np.zeros(3073, np.uint8)
  record[0] = 200
  (binary / "test_batch.bin").write_bytes(record.tobytes())
  with pytest.raises(DataError, match=r"test_batch\.bin'.*labels from 200.*"
                     r"cifar-10-binary\.tar\.gz"):
    cifar.load_cifar10(str(tmp_path / "bin"), "test")
  (binary / "test_batch.bin").unlink()
  (binary / "test_batch.bin").mkdir()
  with pytest.raises(DataError, match=r"test_batch\.bin.*readable file"):
    cifar.load_cifar10(str(tmp_path / "bin"), "test")


def _no_dns(monkeypatch):
  """No name resolves, as on a machine without a network; tensorflow-datasets
  gives up at once instead of retrying for minutes."""
  def getaddrinfo(host, *args, **kwargs):
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
  monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
  monkeypatch.setattr(tfds_downloader, "MAX_RETRIES", 0)


def _files(folder) -> set:
  return {os.path.relpath(os.path.join(parent, name), folder)
          for parent, dirs, files in os.walk(folder) for name in dirs + files}


@pytest.mark.usefixtures("tfds_scratch")
def test_tfds_without_network_fails_fast_and_leaves_nothing(
    tmp_path, monkeypatch, capfd):
  _no_dns(monkeypatch)
  tfds_dir = tmp_path / "tfds"
  (tfds_dir / "downloads").mkdir(parents=True)
  (tfds_dir / "downloads" / "other.zip").write_bytes(b"kept")
  start = time.monotonic()
  with pytest.raises(DataError) as e:
    data.load_dataset("mnist", "train", tfds_data_dir=str(tfds_dir))
  assert time.monotonic() - start < 5
  message = str(e.value)
  assert ("storage.googleapis.com cannot be reached from this machine "
          "(cannot resolve storage.googleapis.com: [Errno -2] Name or service "
          "not known); nothing was downloaded") in message
  assert "--config.data.dir" in message and "IDX" in message
  assert "--config.data.tfds_data_dir" in message
  assert _files(tfds_dir) == {"downloads", os.path.join("downloads",
                                                        "other.zip")}
  printed = capfd.readouterr()
  assert "Retrying" not in printed.err + printed.out
  assert "Dl Completed" not in printed.err + printed.out


@pytest.mark.usefixtures("tfds_scratch")
def test_tfds_without_network_through_a_proxy(tmp_path, monkeypatch):
  _no_dns(monkeypatch)
  for var in ("no_proxy", "NO_PROXY", "HTTPS_PROXY"):
    monkeypatch.delenv(var, raising=False)
  monkeypatch.setenv("https_proxy", "http://proxy.invalid:3128")
  with pytest.raises(DataError, match=r"the proxy proxy\.invalid:3128 \(set "
                     r"in the environment\) cannot be reached"):
    data.load_dataset("mnist", "train", tfds_data_dir=str(tmp_path / "tfds"))
  assert not (tmp_path / "tfds").exists()


@pytest.mark.usefixtures("tfds_scratch")
def test_tiny_shakespeare_without_network_fails_fast(tmp_path, monkeypatch):
  _no_dns(monkeypatch)
  start = time.monotonic()
  with pytest.raises(DataError, match=r"'tiny_shakespeare'.*raw\."
                     r"githubusercontent\.com cannot be reached.*ptb_char"):
    char_corpus.load_tiny_shakespeare(str(tmp_path / "tfds"))
  assert time.monotonic() - start < 5
  assert not (tmp_path / "tfds").exists()


@pytest.mark.usefixtures("tfds_scratch")
def test_failed_download_removes_only_its_unfinished_files(
    tmp_path, monkeypatch):
  """The host passes the check, then the download fails: the ``*.tmp.*``
  folders of this attempt go; an earlier attempt's and finished files stay."""
  _no_dns(monkeypatch)
  monkeypatch.setattr(tfds_source, "unreachable", lambda *args: None)
  tfds_dir = tmp_path / "tfds"
  mnist_downloads = tfds_dir / "downloads" / "mnist"
  mnist_downloads.mkdir(parents=True)
  earlier = "old.gz.tmp." + "0" * 32
  (mnist_downloads / earlier).mkdir()
  (mnist_downloads / "finished.gz").write_bytes(b"done")
  before = _files(tfds_dir)
  with pytest.raises(DataError) as e:
    data.load_dataset("mnist", "train", tfds_data_dir=str(tfds_dir))
  assert ("could not download 'mnist' (cannot resolve storage.googleapis.com:"
          " [Errno -2] Name or service not known)") in str(e.value)
  assert _files(tfds_dir) == before


@pytest.mark.usefixtures("tfds_scratch")
def test_interrupted_download_removes_its_unfinished_files(
    tmp_path, monkeypatch):
  """Ctrl-C in the middle of a download: its partial files go, an earlier
  attempt's stay, and the KeyboardInterrupt goes on."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tfds_dir = tmp_path / "tfds"
  earlier = tfds_dir / "mnist" / "incomplete.ABC123_3.0.1"
  earlier.mkdir(parents=True)
  before = _files(tfds_dir)

  def interrupted(*args, **kwargs):
    partial = (tfds_dir / "downloads" / "mnist" /
               ("train-images-idx3-ubyte.gz.tmp." + "f" * 32))
    partial.mkdir(parents=True)
    (partial / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b half")
    (tfds_dir / "downloads" / "extracted" /
     ("incomplete." + "e" * 32 + "_x")).mkdir(parents=True)
    (tfds_dir / "mnist" / "incomplete.XYZ789_3.0.1").mkdir()
    raise KeyboardInterrupt

  for name in ("download", "download_and_extract"):
    monkeypatch.setattr(tfds.download.DownloadManager, name, interrupted)
  monkeypatch.setattr(tfds_source, "unreachable", lambda *args: None)
  with pytest.raises(KeyboardInterrupt):
    data.load_dataset("mnist", "train", tfds_data_dir=str(tfds_dir))
  assert _files(tfds_dir) == before


@pytest.mark.usefixtures("tfds_scratch")
def test_tfds_not_prepared_and_download_off(tmp_path):
  with pytest.raises(DataError) as e:
    data.load_dataset("mnist", "train", tfds_data_dir=str(tmp_path),
                      download=False)
  message = str(e.value)
  assert "has not prepared 'mnist'" in message
  assert "download is false" in message and "TFRecord" not in message


def test_reachability_check_is_bounded_in_time(monkeypatch):
  monkeypatch.setattr(socket, "getaddrinfo",
                      lambda *args, **kwargs: time.sleep(3))
  start = time.monotonic()
  reason = tfds_source.unreachable("slow.example", 443, 0.2)
  assert time.monotonic() - start < 1
  assert reason == "looking up slow.example took more than 0.2 s"


def test_reachability_check_on_loopback():
  with socket.socket() as server:
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    assert tfds_source.unreachable("127.0.0.1", port, 1.0) is None
  reason = tfds_source.unreachable("127.0.0.1", port, 1.0)
  assert reason.startswith(f"cannot connect to 127.0.0.1:{port}: ")
  assert "refused" in reason
