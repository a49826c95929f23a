"""Summaries of finished runs and the comparison table of several methods."""

from __future__ import annotations

from typing import Callable, Sequence

import jax


def summarize(records: list[dict], seconds: float | None = None) -> dict:
  """Final train/test metrics and the first step each test target was hit.

  ``steps_to_100`` is the first evaluated step with test accuracy 1.0 (for
  binary addition: every bit of every held-out sum right), else ``None``.
  """
  train = [r for r in records if r["split"] == "train"]
  test = [r for r in records if r["split"] == "test"]
  perfect = [r["step"] for r in test
             if r.get("exact_match", r.get("accuracy")) == 1.0]
  return {
      "step": max((r["step"] for r in records), default=0),
      "train": train[-1] if train else {},
      "test": test[-1] if test else {},
      "best_test_accuracy": max((r.get("accuracy") or 0.0 for r in test),
                                default=None),
      "steps_to_100": perfect[0] if perfect else None,
      "seconds": seconds,
  }


def _fmt(value, digits: int) -> str:
  return "-" if value is None else f"{value:.{digits}f}"


# A column: (title, width, summary -> cell text); cells are right-aligned.
Column = tuple[str, int, Callable[[dict], str]]


def table(summaries: dict[str, dict], columns: Sequence[Column]) -> str:
  """A plain-text table, one row per method, one column per ``Column``."""
  width = max([10] + [len(m) + 1 for m in summaries])
  header = f"{'method':<{width}}" + "".join(f"{t:>{w}}"
                                            for t, w, _ in columns)
  rows = [header, "-" * len(header)]
  for method, s in summaries.items():
    rows.append(f"{method:<{width}}" + "".join(f"{cell(s):>{w}}"
                                               for _, w, cell in columns))
  return "\n".join(rows)


def _test_error(s: dict) -> str:
  acc = s["test"].get("accuracy")
  return _fmt(None if acc is None else 100 * (1 - acc), 2)


COMPARISON_COLUMNS: tuple[Column, ...] = (
    ("steps", 8, lambda s: str(s["step"])),
    ("train loss", 12, lambda s: _fmt(s["train"].get("loss"), 4)),
    ("test loss", 11, lambda s: _fmt(s["test"].get("loss"), 4)),
    ("test acc", 10, lambda s: _fmt(s["test"].get("accuracy"), 4)),
    ("test err %", 12, _test_error),
    ("exact", 8, lambda s: _fmt(s["test"].get("exact_match"), 3)),
    ("steps to 100%", 15, lambda s: str(s["steps_to_100"] or "-")),
    ("time s", 9, lambda s: _fmt(s["seconds"], 1)),
)

RECURRENT_COLUMNS: tuple[Column, ...] = (
    ("steps", 9, lambda s: str(s["step"])),
    ("chars", 13, lambda s: _fmt(s.get("chars"), 0)),
    ("train loss", 12, lambda s: _fmt(s["train"].get("loss"), 4)),
    ("max len solved", 16, lambda s: _fmt(s.get("max_length_solved"), 0)),
    ("T_task solved", 15,
     lambda s: _fmt(s.get("max_task_length_solved"), 0)),
    ("best valid bpc", 16, lambda s: _fmt(s.get("best_valid_bpc"), 4)),
    ("test bpc", 10, lambda s: _fmt(s.get("test_bpc_at_best_valid"), 4)),
    ("time s", 9, lambda s: _fmt(s["seconds"], 1)),
)


TWO_NETWORKS_COLUMNS: tuple[Column, ...] = (
    ("steps", 8, lambda s: str(s["step"])),
    ("A updates", 10, lambda s: _fmt(s["test"].get("a_updates"), 0)),
    ("A test err %", 14, lambda s: _pct(s["test"].get("a_error"))),
    ("B test err %", 14, lambda s: _pct(s["test"].get("b_error"))),
    ("B majority %", 14, lambda s: _pct(s["test"].get("b_majority_error"))),
    ("time s", 9, lambda s: _fmt(s["seconds"], 1)),
)


def _pct(value) -> str:
  return _fmt(None if value is None else 100 * value, 2)


def comparison_table(summaries: dict[str, dict]) -> str:
  """One row per feed-forward method: test accuracy, error, exact match."""
  return table(summaries, COMPARISON_COLUMNS)


def recurrent_table(summaries: dict[str, dict]) -> str:
  """One row per recurrent method: curriculum length or bits per character."""
  return table(summaries, RECURRENT_COLUMNS)


def two_networks_table(summaries: dict[str, dict]) -> str:
  """One row per two-network method: A's and B's test errors."""
  return table(summaries, TWO_NETWORKS_COLUMNS)


def devices_line(shown: int = 4) -> str:
  """The JAX backend and devices, e.g. ``backend: cpu, devices: 1 (cpu:0)``.

  With several processes: the devices of all of them, the process count and
  this process's own devices.
  """
  local = jax.local_devices()
  names = [str(d) for d in local[:shown]] + (["…"] if len(local) > shown
                                             else [])
  kind = local[0].device_kind if local else ""
  if kind and kind.lower() != jax.default_backend():
    names[0] = f"{names[0]} {kind}"
  line = f"backend: {jax.default_backend()}, devices: {jax.device_count()}"
  if jax.process_count() > 1:
    line += (f" in {jax.process_count()} processes (process "
             f"{jax.process_index()}: {len(local)} local")
    return line + f", {', '.join(names)})"
  return line + f" ({', '.join(names)})"
