"""Test configuration: CPU, and fast compiles for the tiny test networks."""

import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Fake CPU devices for the pipeline tests (kept beside any --xla_cpu_max_isa
# of the ISA matrix).
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS",
                                                                ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_force_host_platform_device_count=4"
                             ).strip()

# Compile time dominates the tiny networks of the tests. Set in the
# environment, before jax is imported, so that the commands the tests run in
# subprocesses compile the same way.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

# Many tests compile the same tiny programs again: in a new closure, a new
# process (the commands run in subprocesses) or another xdist worker. One
# persistent compilation cache for the whole test session, keyed by JAX on the
# program, the compile options and the XLA flags, compiles each only once. It
# is made here, before the xdist workers start, so that they and every command
# they run inherit it, and removed when the session ends.
_OWN_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _OWN_CACHE = tempfile.mkdtemp(prefix="dni_jax_test_jit_cache_")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import pytest  # noqa: E402


def pytest_unconfigure(config):
  del config
  if _OWN_CACHE is not None:
    shutil.rmtree(_OWN_CACHE, ignore_errors=True)


@pytest.fixture
def tfds_scratch(tmp_path_factory, monkeypatch):
  """tensorflow-datasets' scratch folders kept under pytest's.

  tensorflow-datasets makes ``tmp*tfds`` folders with ``tempfile.mkdtemp``
  (dataset metadata) and never removes them; pointing ``tempfile`` at the
  test's own folder keeps them out of the system temp directory.
  """
  scratch = tmp_path_factory.mktemp("tfds_scratch")
  monkeypatch.setattr(tempfile, "tempdir", str(scratch))
  return scratch


@pytest.fixture
def mock_tfds(tfds_scratch):
  """``tfds.testing.mock_data``, its scratch folders kept under pytest's."""
  del tfds_scratch
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return tfds.testing.mock_data
