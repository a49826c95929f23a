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

``read_or_prepare`` reads what is prepared without touching the network,
and downloads only when the data is missing: first it checks, within
seconds, that the download hosts can be reached (tensorflow-datasets itself
retries an unreachable host for minutes), and when the download or the
preparation fails it removes the incomplete files that attempt left in the
data folder.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import shutil
import socket
import threading
import time
import urllib.parse
import urllib.request

import numpy as np

from dni_jax.errors import DataError

# Seconds the reachability check of a download host may take in all.
REACH_TIMEOUT_S = 2.0
_DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21}
# What tensorflow-datasets names unfinished downloads (<file>.tmp.<uuid>),
# extractions and preparations (incomplete.<random>_<name>, ...).
_UNFINISHED = re.compile(r"\.tmp\.[0-9a-f]{32}$|^incomplete\.")


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


def _network_cause(text: str) -> str:
  """The reason in a requests/urllib3 connection error, whole but short."""
  resolve = re.search(r"Failed to resolve '([^']+)' \(([^)]*)\)", text)
  if resolve:
    return f"cannot resolve {resolve.group(1)}: {resolve.group(2)}"
  host = re.search(r"host='([^']+)'", text)
  reason = re.search(r"(?:Failed to establish a new connection|"
                     r"Connection to \S+ timed out[^:]*|"
                     r"Read timed out)[^'\"]*", text)
  if reason:
    where = f"{host.group(1)}: " if host else ""
    return where + reason.group(0).rstrip(" .)")
  first = text.splitlines()[0]
  return first if len(first) <= 400 else first[:400].rsplit(" ", 1)[0] + " ..."


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
              f"({_network_cause(text)}). Without internet access, "
              f"{local_hint}.")
  first = f"{type(error).__name__}: {error}".splitlines()[0][:300]
  return (f"could not read {name!r} from tensorflow-datasets ({first}). "
          f"Check --config.data.tfds_data_dir, or {local_hint}.")


@contextlib.contextmanager
def _quiet_absl():
  """Hides tensorflow-datasets' warnings about a folder not prepared yet."""
  logger = logging.getLogger("absl")
  level = logger.level
  logger.setLevel(logging.ERROR)
  try:
    yield
  finally:
    logger.setLevel(level)


def _download_hosts(builder) -> list[tuple[str, int, bool]]:
  """``(host, port, is_proxy)`` that downloading ``builder``'s files needs.

  The hosts come from the URLs registered in the builder's checksums; a
  proxy set in the environment (https_proxy, ...) stands for the hosts it
  serves. Empty when the builder registers no URLs.
  """
  try:
    urls = list(builder.url_infos or ())
  except Exception:  # pylint: disable=broad-except
    return []
  proxies = urllib.request.getproxies()
  hosts = []
  for url in urls:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
      continue
    target = (parts.hostname, parts.port or _DEFAULT_PORTS[parts.scheme],
              False)
    proxy = proxies.get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname):
      proxy_parts = urllib.parse.urlsplit(
          proxy if "://" in proxy else "http://" + proxy)
      if proxy_parts.hostname:
        target = (proxy_parts.hostname, proxy_parts.port or
                  _DEFAULT_PORTS.get(proxy_parts.scheme, 80), True)
    if target not in hosts:
      hosts.append(target)
  return hosts


def unreachable(host: str, port: int, timeout: float) -> str | None:
  """Why ``host:port`` cannot be reached within ``timeout`` s; None if it can.

  Resolves the name (in a thread, since ``getaddrinfo`` has no timeout of its
  own) and opens one TCP connection; sends nothing.
  """
  deadline = time.monotonic() + timeout
  found = {}

  def resolve():
    try:
      found["addresses"] = socket.getaddrinfo(host, port,
                                              type=socket.SOCK_STREAM)
    except OSError as e:
      found["error"] = e

  thread = threading.Thread(target=resolve, daemon=True)
  thread.start()
  thread.join(timeout)
  if thread.is_alive():
    return f"looking up {host} took more than {timeout:g} s"
  if "error" in found:
    return f"cannot resolve {host}: {found['error']}"
  error = None
  for family, kind, proto, _, address in found["addresses"]:
    left = deadline - time.monotonic()
    if left <= 0:
      break
    try:
      with socket.socket(family, kind, proto) as sock:
        sock.settimeout(left)
        sock.connect(address)
      return None
    except OSError as e:
      error = e
  if error is None or isinstance(error, TimeoutError):
    return f"connecting to {host}:{port} took more than {timeout:g} s"
  return f"cannot connect to {host}:{port}: {error}"


def _check_reachable(builder, name: str, local_hint: str):
  """A DataError, within seconds, if a host to download ``name`` from is
  unreachable."""
  for host, port, is_proxy in _download_hosts(builder):
    reason = unreachable(host, port, REACH_TIMEOUT_S)
    if reason is None:
      continue
    what = (f"the proxy {host}:{port} (set in the environment)" if is_proxy
            else host)
    needs_tf = ("" if importlib.util.find_spec("tensorflow") is not None else
                " with TensorFlow installed there (`pip install "
                "tensorflow-cpu`: preparing needs it, reading does not)")
    raise DataError(
        f"tensorflow-datasets has not prepared {name!r} in "
        f"{builder.data_dir_root} and would have to download it, but "
        f"{what} cannot be reached from this machine ({reason}); nothing "
        f"was downloaded. Either {local_hint}; or run once where the network "
        f"is reachable{needs_tf}, then copy that machine's "
        "tensorflow-datasets folder here and point "
        "--config.data.tfds_data_dir at it.")


def _listing(folder: str) -> set[str] | None:
  try:
    return set(os.listdir(folder))
  except OSError:
    return None


def _remove_unfinished(folders: list[str], before: dict):
  """Removes what appeared in ``folders`` since ``before`` and is unfinished
  or empty, then the folders that did not exist before and are now empty."""
  for folder in folders:
    now = _listing(folder)
    if now is None:
      continue
    for entry in sorted(now - (before[folder] or set())):
      path = os.path.join(folder, entry)
      try:
        if _UNFINISHED.search(entry):
          if os.path.isdir(path):
            shutil.rmtree(path)
          else:
            os.remove(path)
        elif os.path.isdir(path) and not os.listdir(path):
          os.rmdir(path)
      except OSError:
        pass  # in use or gone: the error being reported matters more
    if before[folder] is None and not _listing(folder):
      try:
        os.rmdir(folder)
      except OSError:
        pass


@contextlib.contextmanager
def _removing_unfinished_files(builder):
  """On failure, removes what this download left unfinished in the data folder.

  Only entries that appeared during the attempt go: the ``<file>.tmp.<uuid>``
  download folders and ``incomplete.*`` extraction and preparation folders it
  made, then the folders it created that are left empty. Finished downloads
  stay (a rerun reuses them), and so does whatever was there before.
  """
  root = os.fspath(builder.data_dir_root)
  if "://" in root:  # a bucket: nothing local to clean
    yield
    return
  downloads = os.path.join(root, "downloads")
  # Deepest first, so that a folder emptied here can go too.
  folders = [os.path.join(downloads, builder.name),
             os.path.join(downloads, "extracted"),
             os.path.join(root, builder.name), downloads, root]
  before = {folder: _listing(folder) for folder in folders}
  try:
    yield
  except BaseException:
    _remove_unfinished(folders, before)
    raise


def read_or_prepare(tfds, name: str, data_dir: str | None, download: bool,
                    local_hint: str, read):
  """``read(download)``, downloading ``name`` first only where needed.

  Reads what is prepared without the network; when ``name`` is not prepared
  and ``download`` is set, checks that its download hosts can be reached,
  then reads with downloading on, cleaning up after a failed download.

  Args:
    tfds: the tensorflow_datasets module.
    name: the tfds dataset name.
    data_dir: tensorflow-datasets' data folder (its default if None).
    download: whether downloading and preparing is allowed.
    local_hint: how to use local files instead, for the error messages.
    read: ``read(download) -> data``, raising whatever tensorflow-datasets
      raises.

  Returns:
    What ``read`` returns.

  Raises:
    DataError: the data cannot be read, naming the cause and a fix.
  """
  try:
    with _quiet_absl():
      return read(False)
  except Exception as e:  # pylint: disable=broad-except
    offline_error = e
  builder, prepared = None, False
  try:
    with _quiet_absl():
      builder = tfds.builder(name, data_dir=data_dir)
      prepared = builder.is_prepared()
  except Exception:  # pylint: disable=broad-except
    builder = None  # the read below reports it
  if builder is not None and (prepared or not download):
    if prepared:
      raise DataError(explain_failure(name, offline_error, local_hint)
                      ) from offline_error
    raise DataError(
        f"tensorflow-datasets has not prepared {name!r} in "
        f"{builder.data_dir_root}, and --config.data.download is false so it "
        "may not download it. Set --config.data.download=true where the "
        "network is reachable, or point --config.data.tfds_data_dir at a "
        f"folder where it is prepared, or {local_hint}.") from offline_error
  guard = contextlib.nullcontext()
  if builder is not None:
    _check_reachable(builder, name, local_hint)
    guard = _removing_unfinished_files(builder)
  try:
    with guard:
      return read(download)
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(explain_failure(name, e, local_hint)) from e


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

  def read(download_now):
    first_error = None
    for reader in readers:
      try:
        return reader(tfds, name, split, data_dir, download_now)
      except Exception as e:  # pylint: disable=broad-except
        first_error = first_error or e
    raise first_error

  hint = _LOCAL_HINT.get(name, "use a local copy of the files")
  return read_or_prepare(tfds, name, data_dir, download, hint, read)
