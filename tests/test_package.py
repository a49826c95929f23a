"""The package's layers: what importing the public API loads."""

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_NOT_FOR_THE_CORE = ("tensorflow_datasets", "orbax", "ml_collections",
                     "matplotlib")


def _loaded_after(statement: str) -> list[str]:
  """Top-level packages of ``_NOT_FOR_THE_CORE`` loaded by ``statement``."""
  code = (f"import sys\n{statement}\nimport json\n"
          f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}}"
          f" & set({_NOT_FOR_THE_CORE!r}))))")
  done = subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                        capture_output=True, text=True, timeout=120,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert done.returncode == 0, done.stderr[-2000:]
  return json.loads(done.stdout.strip().splitlines()[-1])


def test_public_api_loads_no_training_dependency():
  assert _loaded_after("import dni_jax") == []


def test_the_check_sees_the_training_layer():
  # The same check on the training layer does find them: it can fail.
  assert {"orbax", "ml_collections"} <= set(
      _loaded_after("import dni_jax.training"))


@pytest.mark.parametrize("layer,allowed", [
    ("core", ("dni_jax.core",)),
    ("parallel", ("dni_jax.core", "dni_jax.parallel", "dni_jax.errors")),
])
def test_method_layers_import_only_the_method(layer, allowed):
  """``dni_jax/core`` and ``dni_jax/parallel`` import no data or training."""
  folder = os.path.join(ROOT, "dni_jax", layer)
  for name in sorted(os.listdir(folder)):
    if not name.endswith(".py"):
      continue
    with open(os.path.join(folder, name)) as f:
      for line in f:
        words = line.split()
        if words[:1] in (["import"], ["from"]) and words[1].startswith(
            "dni_jax"):
          assert words[1].startswith(allowed), (name, line)


def test_built_wheel_contains_every_subpackage(tmp_path):
  src = tmp_path / "src"
  shutil.copytree(os.path.join(ROOT, "dni_jax"), src / "dni_jax",
                  ignore=shutil.ignore_patterns("__pycache__"))
  for name in ("pyproject.toml", "README.md"):
    shutil.copy(os.path.join(ROOT, name), src / name)
  done = subprocess.run(
      [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps",
       "--no-build-isolation", "--disable-pip-version-check", "-q", "-w",
       str(tmp_path / "wheel")], capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  (wheel,) = (tmp_path / "wheel").glob("dni_jax-*.whl")
  packaged = {os.path.dirname(n) for n in zipfile.ZipFile(wheel).namelist()
              if n.endswith("/__init__.py")}
  expected = {os.path.relpath(d, ROOT) for d, _, files in
              os.walk(os.path.join(ROOT, "dni_jax")) if "__init__.py" in files}
  assert packaged == expected and {"dni_jax/data", "dni_jax/core"} <= packaged
