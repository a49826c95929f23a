"""The two-network system's table: final errors and steps to locked's error.

  python -m experiments.two_networks_table <root> [<root> ...]
      [--last=3 --within=0.1 --per_seed]

Reads every run under the roots (``experiments.sweep`` or ``experiments.main``
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

With ``--per_seed`` a second table follows: one row per seed of every
method but locked, each set against the locked run of the *same* seed at
the same ``T``: B's final error minus that run's (points; the paper: within
2) and the ratio of the steps each needs to A's target (the table's; the
paper: under 0.5), then per method the mean, sample std and Student-t 95 %
interval of both over the seeds, and how many seeds miss each claim (a
seed that never reaches A's target misses it, and is left out of the
mean). Give several roots to pool seeds run in different folders; then
A's target is read from all their locked runs. Two runs of one method at
one seed (e.g. a copy) are refused, not averaged.
"""

import collections
import sys

from absl import app
from absl import flags

from dni_jax.training import results
from experiments import cli

_LAST = flags.DEFINE_integer("last", 3, "Evaluations averaged as 'final'.")
_WITHIN = flags.DEFINE_float("within", 0.1, "Relative margin of the target.")
_PER_SEED = flags.DEFINE_bool(
    "per_seed", False, "Also print each seed against the locked run of the "
    "same seed, with the spread over seeds.")


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


def _as_list(roots) -> list[str]:
  return [roots] if isinstance(roots, str) else list(roots)


def _runs(roots) -> dict:
  """``{(T, label): {seed: test series}}`` of every two-network run."""
  roots = _as_list(roots)
  configs = {run: results.flat_config(run)
             for root in roots for run in results.find_runs(root)}
  configs = {r: c for r, c in configs.items() if "two_networks.T" in c}
  varying = results.varying_fields(list(configs.values()))
  runs = collections.defaultdict(dict)
  for run, config in configs.items():
    group = runs[_group(config, varying)]
    seed = int(config.get("seed", 0))
    if seed in group:
      raise ValueError(f"two runs of {_group(config, varying)[1]} at seed "
                       f"{seed} (one is {run}); give roots that hold each "
                       "seed of a method once")
    group[seed] = results.metric_series(run, "test")
  if not runs:
    raise FileNotFoundError(f"no two-network runs under {', '.join(roots)}")
  return runs


def _final(series: dict, metric: str, last: int):
  values = series[metric][1][-last:] if metric in series else []
  return sum(values) / len(values) if values else None


def table(roots, last: int = 3, within: float = 0.1) -> str:
  """The markdown table of the runs under ``roots`` (a folder or several)."""
  runs = {k: list(v.values()) for k, v in _runs(roots).items()}
  final = {}
  for key, series in runs.items():
    final[key] = {m: [_final(s, m, last) for s in series if m in s]
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


def _show(value, fmt: str, scale: float = 1.0, missing: str = "—") -> str:
  return missing if value is None else f"{scale * value:{fmt}}"


def _spread(values: list[float], fmt: str) -> str:
  if not values:
    return "—"
  s = results.stats(values)
  text = f"mean {s['mean']:{fmt}}"
  if s["n"] > 1:
    low, high = results.t_interval(values)
    text += (f", sd {s['std']:{fmt}}, 95 % interval {low:{fmt}} to "
             f"{high:{fmt}}")
  return text + f" (n = {s['n']})"


def per_seed(roots, last: int = 3, within: float = 0.1) -> str:
  """Each seed of every method but locked against the locked run of the
  same seed and ``T``; then the spread over the seeds (module docstring)."""
  runs = _runs(roots)
  lines = ["| T | method | seed | A's error % | B's error % | B − locked B "
           "(points) | steps to A's target | ÷ locked's (same seed) |",
           "|---" * 8 + "|"]
  notes = []
  for key in sorted(runs, key=lambda k: (k[0], k[1])):
    T, method = key
    locked = runs.get((T, "locked"), {})
    if method == "locked" or not locked:
      continue
    finals = [_final(s, "a_error", last) for s in locked.values()]
    finals = [v for v in finals if v is not None]
    target = (1 + within) * sum(finals) / len(finals) if finals else None
    gaps, ratios, unreached = [], [], 0
    for seed, series in sorted(runs[key].items()):
      a, b = _final(series, "a_error", last), _final(series, "b_error", last)
      own = locked.get(seed)
      gap = step = own_step = None
      if own is not None and b is not None:
        locked_b = _final(own, "b_error", last)
        gap = None if locked_b is None else 100 * (b - locked_b)
      evaluated = target is not None and "a_error" in series
      if evaluated:
        step = _reach(*series["a_error"], target)
        own_step = (_reach(*own["a_error"], target)
                    if own is not None and "a_error" in own else None)
      ratio = "—"
      if evaluated and own_step:  # against the same seed's locked run
        if step is None:  # the worst miss of the claim: counted, not averaged
          ratio, unreached = "not reached", unreached + 1
        else:
          ratios.append(step / own_step)
          ratio = f"{ratios[-1]:.2f}"
      gaps += [gap] if gap is not None else []
      lines.append(
          f"| {T} | {method} | {seed} | {_show(a, '.2f', 100)} "
          f"| {_show(b, '.2f', 100)} | {_show(gap, '+.2f')} "
          f"| {'—' if not evaluated else _show(step, 'd', 1, 'not reached')} "
          f"| {ratio} |")
    over = sum(r > 0.5 for r in ratios) + unreached
    notes.append(
        f"- T = {T}, {method}: B − locked B {_spread(gaps, '.2f')}, "
        f"{sum(g > 2 for g in gaps)} of {len(gaps)} over 2 points; "
        f"A's steps ÷ locked's {_spread(ratios, '.2f')}, {over} of "
        f"{len(ratios) + unreached} over 0.5"
        + (f" ({unreached} never reached A's target)." if unreached else "."))
  if not notes:
    raise FileNotFoundError(
        "--per_seed sets each seed against the locked run of the same seed "
        "and T, and there is no method with locked runs beside it under "
        f"{', '.join(_as_list(roots))}; give a root that also holds the "
        "locked runs (--config.method=locked, same T and seeds), or leave "
        "out --per_seed")
  return "\n".join(lines + [""] + notes)


def main(argv):
  if len(argv) < 2:
    cli.fail("give a folder of two-network runs (or several, to pool their "
             "seeds), e.g. python -m experiments.two_networks_table "
             "/tmp/two_networks", 2)
  try:
    out = table(argv[1:], _LAST.value, _WITHIN.value)
    if _PER_SEED.value:
      out += "\n\n" + per_seed(argv[1:], _LAST.value, _WITHIN.value)
    print(out)
  except (FileNotFoundError, ValueError) as e:
    cli.fail(str(e), 2)
  sys.stdout.flush()


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
