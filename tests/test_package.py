"""The package's layers: what importing the public API loads."""

import json
import os
import subprocess
import sys

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


def test_core_imports_nothing_outside_the_core():
  """``dni_jax/core`` imports only jax/flax/optax and ``dni_jax.core``."""
  core = os.path.join(ROOT, "dni_jax", "core")
  for name in sorted(os.listdir(core)):
    if not name.endswith(".py"):
      continue
    with open(os.path.join(core, name)) as f:
      for line in f:
        words = line.split()
        if words[:1] in (["import"], ["from"]) and words[1].startswith(
            "dni_jax"):
          assert words[1].startswith("dni_jax.core"), (name, line)
