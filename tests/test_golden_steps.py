"""Golden steps: the first steps of every method of every family, pinned.

Each case trains a tiny config for four steps through the public entry point
(``train.train_and_evaluate`` or the sweep runner) and compares every
recorded number (each step's train metrics, then the test metrics, which
depend on every parameter) with values stored in ``goldens/steps.json``.
Moving the method between modules must leave them unchanged; a change of the
method itself updates them deliberately:

  DNI_REGENERATE_GOLDENS=1 python -m pytest tests/test_golden_steps.py

The values were recorded on one CPU; XLA rounds differently on another
instruction set, so they are compared with a relative tolerance (``RTOL``)
that holds under ``.ci/isa_matrix`` and is still far below any change of
the method (a different update moves these numbers by percents).
"""

import json
import math
import os
import pathlib

import pytest

from dni_jax.training import sweep as sweep_lib
from dni_jax.training import train
from dni_jax.training.metrics_log import read_metrics
import test_train

GOLDENS = pathlib.Path(__file__).parent / "goldens" / "steps.json"
REGENERATE = os.environ.get("DNI_REGENERATE_GOLDENS") == "1"
RTOL, ATOL = 5e-4, 1e-6
# Counts of discrete outcomes (a prediction on either side of a threshold)
# may flip for an example whose logit sits at the threshold when rounding
# differs; they are compared to within a few examples, the losses tightly.
DISCRETE = ("accuracy", "error", "exact_match", "bit", "length", "solved")
DISCRETE_ATOL = 0.05
STEPS = 4

_FF = {"model.hidden": (8, 8), "opt.synth_learning_rate": 1e-2}
_RECURRENT = {"model.width": 8, "dni.hidden": (4,), "data.check_every": 2}
_TWO = {"model.width": 8, "two_networks.b_width": 8, "two_networks.T": 2,
        "two_networks.message_width": 3}

# name: (config, overrides). Every family, every method, the unlocking modes.
CASES = {
    "ff_backprop": ("binary_addition", dict(_FF, method="backprop")),
    "ff_dni": ("binary_addition", dict(_FF, method="dni")),
    "ff_cdni": ("binary_addition", dict(_FF, method="cdni")),
    "ff_cdni_mlp_synth": ("binary_addition",
                          dict(_FF, method="cdni",
                               **{"dni.synthesizer": "mlp"})),
    "ff_cdni_stochastic": ("binary_addition",
                           dict(_FF, method="cdni",
                                **{"dni.update_prob": 0.5})),
    "ff_backprop_stochastic": ("binary_addition",
                               dict(_FF, method="backprop",
                                    **{"dni.update_prob": 0.5})),
    "ff_cdni_stale": ("binary_addition",
                      dict(_FF, method="cdni", **{"dni.synth_delay": 1})),
    "ff_dni_unlocked": ("binary_addition",
                        dict(_FF, method="dni_unlocked",
                             **{"dni.input_hidden": (4,)})),
    "ff_cdni_unlocked": ("binary_addition",
                         dict(_FF, method="cdni_unlocked",
                              **{"dni.input_hidden": (4,)})),
    "pipeline_cdni": ("binary_addition",
                      dict(_FF, method="cdni",
                           **{"parallel.num_devices": 2})),
    "pipeline_dni": ("binary_addition",
                     dict(_FF, method="dni", **{"parallel.num_devices": 2})),
    "pipeline_backprop": ("binary_addition",
                          dict(_FF, method="backprop",
                               **{"parallel.num_devices": 2})),
    "recurrent_bptt": ("copy", dict(_RECURRENT, method="bptt")),
    "recurrent_dni": ("copy", dict(_RECURRENT, method="dni")),
    "recurrent_dni_aux": ("copy", dict(_RECURRENT, method="dni_aux")),
    "two_networks_locked": ("two_networks", dict(_TWO, method="locked")),
    "two_networks_dni": ("two_networks", dict(_TWO, method="dni")),
    "two_networks_no_dni": ("two_networks", dict(_TWO, method="no_dni")),
}
SWEEP_CASE = "sweep_group_cdni_2_seeds"


def _config(name, overrides):
  return test_train.tiny(name, num_steps=STEPS, log_every=1,
                         eval_every=STEPS, checkpoint_every=STEPS,
                         **overrides)


def _numbers(records) -> list[dict]:
  """Every finite-or-not float of every record, keyed by split and name."""
  out = []
  for r in records:
    out.append({k: float(v) for k, v in r.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)
                and k not in ("wall_time", "elapsed", "time",
                              "steps_per_sec", "step_time")})
    out[-1]["split"] = r["split"]
  return out


def _record(workdir) -> list[dict]:
  return _numbers(read_metrics(os.path.join(workdir, "metrics.jsonl")))


def _run_case(name, tmp_path):
  if name == SWEEP_CASE:
    config = _config("binary_addition", dict(_FF, method="cdni"))
    sweep_lib.run_sweep(config, [{"seed": 0}, {"seed": 1}], str(tmp_path))
    return {member: _record(tmp_path / member)
            for member in sorted(os.listdir(tmp_path))
            if (tmp_path / member / "metrics.jsonl").exists()}
  config_name, overrides = CASES[name]
  train.train_and_evaluate(_config(config_name, overrides), str(tmp_path))
  return {"run": _record(tmp_path / overrides["method"])
          if (tmp_path / overrides["method"]).is_dir() else
          _record(tmp_path)}


def _load() -> dict:
  return json.loads(GOLDENS.read_text()) if GOLDENS.exists() else {}


def _close(key, a, b) -> bool:
  if math.isnan(a) or math.isnan(b):
    return math.isnan(a) and math.isnan(b)
  if any(word in key for word in DISCRETE):
    return abs(a - b) <= DISCRETE_ATOL * max(1.0, abs(b))
  return abs(a - b) <= ATOL + RTOL * abs(b)


@pytest.mark.parametrize("name", [*CASES, SWEEP_CASE])
def test_golden_step(name, tmp_path):
  got = _run_case(name, tmp_path)
  if REGENERATE:
    goldens = _load()
    goldens[name] = got
    GOLDENS.parent.mkdir(exist_ok=True)
    GOLDENS.write_text(json.dumps(goldens, indent=1, sort_keys=True) + "\n")
    pytest.skip(f"regenerated {name}")
  goldens = _load()
  assert name in goldens, (f"no golden values for {name}: run with "
                           "DNI_REGENERATE_GOLDENS=1 once")
  want = goldens[name]
  assert sorted(got) == sorted(want)
  mismatches = []
  for run, want_records in want.items():
    got_records = got[run]
    assert [(r["split"], r["step"]) for r in got_records] == [
        (r["split"], r["step"]) for r in want_records], run
    for g, w in zip(got_records, want_records):
      for key, value in w.items():
        if key == "split":
          continue
        assert key in g, f"{run}: step {w['step']} lacks {key}"
        if not _close(key, g[key], value):
          mismatches.append(f"{run} {w['split']} step {w['step']} {key}: "
                            f"{g[key]!r} != golden {value!r}")
  assert not mismatches, "\n".join(mismatches)
