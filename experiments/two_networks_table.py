"""The two-network system's table: final errors and steps to locked's error.

  python -m experiments.two_networks_table <root> [--last=3 --within=0.1]

Reads every run under ``root`` (``experiments.sweep`` or ``experiments.main``
of ``configs/two_networks.py``), groups them by ``two_networks.T``, method
and every other field in which they differ but the seed (e.g.
``two_networks.sg_context``), and prints a markdown table, one row per
group, over its seeds:

- A's and B's final test error (%): each seed's mean over its last
  ``--last`` evaluations, then mean ± std over the seeds; B's
  majority-class error beside them;
- steps to A's and to B's target: the first evaluated step at which a
  seed's error is within ``--within`` (relative) of the locked system's
  final error at that ``T``, averaged over the seeds that reach it
  (``k/n`` says how many did); and for A the ratio of that step to the
  locked system's own (the paper: under 0.5 with DNI).
"""

import collections
import sys

from absl import app
from absl import flags

from dni_jax.training import results
from experiments import cli

_LAST = flags.DEFINE_integer("last", 3, "Evaluations averaged as 'final'.")
_WITHIN = flags.DEFINE_float("within", 0.1, "Relative margin of the target.")


_SYNTH_FIELDS = ("dni.", "opt.synth_", "two_networks.sg_",
                 "two_networks.oracle")


def _group(config: dict, varying: list[str]) -> tuple:
  """``(T, label)``: the method, with its context and any other field in
  which the runs differ (not the seed), so that only seeds are averaged."""
  parts = []
  context = config.get("two_networks.sg_context", "none")
  if config["method"] == "dni" and context != "none":
    parts.append(context)
  if config.get("two_networks.oracle"):
    parts.append("oracle")
  own = [k for k in varying  # a synthesizer's fields name only dni's runs
         if config["method"] == "dni" or not k.startswith(_SYNTH_FIELDS)]
  parts += [f"{k}={config.get(k)}" for k in own
            if k not in ("method", "two_networks.T", "two_networks.sg_context",
                         "two_networks.oracle")]
  label = config["method"] + (f" ({', '.join(parts)})" if parts else "")
  return int(config["two_networks.T"]), label


def _reach(steps, values, target):
  return next((s for s, v in zip(steps, values) if v <= target), None)


def _cell(values, scale=100.0) -> str:
  if not values:
    return "—"
  s = results.stats([scale * v for v in values])
  return f"{s['mean']:.2f} ± {s['std']:.2f}"


def table(root: str, last: int = 3, within: float = 0.1) -> str:
  """The markdown table of the runs under ``root``."""
  configs = {run: results.flat_config(run) for run in results.find_runs(root)}
  configs = {r: c for r, c in configs.items() if "two_networks.T" in c}
  varying = results.varying_fields(list(configs.values()))
  runs = collections.defaultdict(list)
  for run, config in configs.items():
    runs[_group(config, varying)].append(results.metric_series(run, "test"))
  if not runs:
    raise FileNotFoundError(f"no two-network runs under {root}")
  final = {}
  for key, series in runs.items():
    final[key] = {m: [sum(s[m][1][-last:]) / len(s[m][1][-last:])
                      for s in series if m in s]
                  for m in ("a_error", "b_error", "b_majority_error")}
  lines = ["| T | method | seeds | A's error % | B's error % | B's majority % "
           "| steps to A's target | A's steps ÷ locked's | steps to B's "
           "target |", "|---" * 9 + "|"]
  for key in sorted(runs, key=lambda k: (k[0], k[1] != "locked", k[1])):
    T, method = key
    locked = final.get((T, "locked"))
    cells = []
    for metric in ("a_error", "b_error"):
      if not locked or not locked[metric]:
        cells.append(("—", None))
        continue
      target = (1 + within) * sum(locked[metric]) / len(locked[metric])
      reached = [_reach(*s[metric], target) for s in runs[key]
                 if metric in s]  # a run not yet evaluated has none
      hit = [r for r in reached if r is not None]
      mean = sum(hit) / len(hit) if hit else None
      cells.append((f"{mean:.0f} ({len(hit)}/{len(reached)})" if hit
                    else f"not reached (0/{len(reached)})", mean))
    ratio = "—"
    if locked and cells[0][1] is not None:
      own = [_reach(*s["a_error"], (1 + within) * sum(locked["a_error"]) /
                    len(locked["a_error"])) for s in runs[(T, "locked")]
             if "a_error" in s]
      own = [r for r in own if r is not None]
      if own:
        ratio = f"{cells[0][1] / (sum(own) / len(own)):.2f}"
    f = final[key]
    lines.append(f"| {T} | {method} | {len(runs[key])} | {_cell(f['a_error'])} "
                 f"| {_cell(f['b_error'])} | {_cell(f['b_majority_error'])} "
                 f"| {cells[0][0]} | {ratio} | {cells[1][0]} |")
  return "\n".join(lines)


def main(argv):
  if len(argv) != 2:
    cli.fail("give one folder of two-network runs, e.g. python -m "
             "experiments.two_networks_table /tmp/two_networks", 2)
  try:
    print(table(argv[1], _LAST.value, _WITHIN.value))
  except FileNotFoundError as e:
    cli.fail(str(e), 2)
  sys.stdout.flush()


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
