"""Summaries of finished runs and the comparison table of several methods."""

from __future__ import annotations


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


def comparison_table(summaries: dict[str, dict]) -> str:
  """A plain-text table, one row per method."""
  header = (f"{'method':<10}{'steps':>8}{'train loss':>12}{'test loss':>11}"
            f"{'test acc':>10}{'test err %':>12}{'exact':>8}"
            f"{'steps to 100%':>15}{'time s':>9}")
  rows = [header, "-" * len(header)]
  for method, s in summaries.items():
    test, train = s["test"], s["train"]
    acc = test.get("accuracy")
    exact = test.get("exact_match")
    rows.append(
        f"{method:<10}{s['step']:>8}{_fmt(train.get('loss'), 4):>12}"
        f"{_fmt(test.get('loss'), 4):>11}{_fmt(acc, 4):>10}"
        f"{_fmt(None if acc is None else 100 * (1 - acc), 2):>12}"
        f"{_fmt(exact, 3):>8}{str(s['steps_to_100'] or '-'):>15}"
        f"{_fmt(s['seconds'], 1):>9}")
  return "\n".join(rows)


def _fmt(value, digits: int) -> str:
  return "-" if value is None else f"{value:.{digits}f}"


def recurrent_table(summaries: dict[str, dict]) -> str:
  """One row per recurrent method: curriculum length or bits per character."""
  header = (f"{'method':<10}{'steps':>9}{'chars':>13}{'train loss':>12}"
            f"{'max len solved':>16}{'best valid bpc':>16}"
            f"{'test bpc':>10}{'time s':>9}")
  rows = [header, "-" * len(header)]
  for method, s in summaries.items():
    solved = s.get("max_length_solved")
    rows.append(
        f"{method:<10}{s['step']:>9}{str(s.get('chars') or '-'):>13}"
        f"{_fmt(s['train'].get('loss'), 4):>12}"
        f"{'-' if solved is None else str(int(solved)):>16}"
        f"{_fmt(s.get('best_valid_bpc'), 4):>16}"
        f"{_fmt(s.get('test_bpc_at_best_valid'), 4):>10}"
        f"{_fmt(s['seconds'], 1):>9}")
  return "\n".join(rows)
