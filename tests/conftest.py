"""Test configuration: CPU, and fast compiles for the tiny test networks."""

import os
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

import pytest  # noqa: E402


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
