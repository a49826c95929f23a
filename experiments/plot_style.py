"""What every figure shares: a colour per method, plain ticks, a metric series.

No flags here, so that every plotting entry point can import it.
"""

import re

from matplotlib import ticker
import numpy as np

# Fixed colours: a method looks the same in every figure. The legend
# follows METHOD_ORDER.
METHOD_COLORS = {"backprop": "C0", "bptt": "C0", "dni": "C1", "cdni": "C2",
                 "dni_aux": "C2", "locked": "C3", "dni_unlocked": "C4",
                 "cdni_unlocked": "C5"}
METHOD_ORDER = tuple(METHOD_COLORS)


def method_of(label: str) -> str:
  """The method a run's label names: its last folder (``dni``), that
  folder's ``method=`` part (a sweep member, ``method=dni,seed=0``) or its
  ``_<method>`` suffix (a reproduce cell, ``depth_3_dni``)."""
  last = label.rsplit("/", 1)[-1]
  named = re.search(r"(?:^|,)method=(\w+)", last)
  if named:
    return named.group(1)
  for method in sorted(METHOD_ORDER, key=len, reverse=True):
    if last.endswith("_" + method):
      return method
  return last


def method_color(label: str) -> str:
  """The colour of a run's method (matplotlib's cycle, by ``METHOD_ORDER``)."""
  method = method_of(label)
  return METHOD_COLORS.get(method, f"C{6 + sum(map(ord, method)) % 4}")


def sort_key(label: str):
  method = method_of(label)
  rank = METHOD_ORDER.index(method) if method in METHOD_ORDER else 99
  return (label.rsplit("/", 1)[0] if "/" in label else "", rank, method)


def plain(value: float, _=None) -> str:
  """A plain tick: 0.5, 2, 40 (never 4×10^1)."""
  return f"{value:g}"


def percent(value: float, _=None) -> str:
  """A plain percent tick: 0.5%, 2%, 40%."""
  return f"{value:g}%"


def series(records, split: str, key: str, x: str = "step"):
  """``(xs, ys)`` of ``key`` in the ``split`` records (error: 100·(1−acc))."""
  source = "accuracy" if key == "error" else key
  points = [(r.get(x), r[source]) for r in records
            if r["split"] == split and r.get(source) is not None
            and r.get(x) is not None]
  ys = [100 * (1 - y) if key == "error" else y for _, y in points]
  return [p[0] for p in points], ys


def mean_band(serieses: list[tuple[list, list]]):
  """``(xs, mean, std)`` over the xs every series has (std: n − 1)."""
  common = sorted(set.intersection(*(set(xs) for xs, _ in serieses)))
  values = np.array([[dict(zip(xs, ys))[x] for x in common]
                     for xs, ys in serieses])
  std = (values.std(0, ddof=1) if len(values) > 1
         else np.zeros(len(common)))
  return common, values.mean(0), std


def plain_log_ticks(ax, fmt) -> None:
  """Plain major ticks; minor ticks labelled at 2 and 5 only."""
  ax.yaxis.set_major_formatter(ticker.FuncFormatter(fmt))
  ax.yaxis.set_minor_formatter(ticker.FuncFormatter(
      lambda v, _: fmt(v) if f"{v:g}".lstrip("0.")[:1] in "25" else ""))


def finish(fig, axes, out: str, title: str = "", dpi: int = 120) -> None:
  """Grid and legend on every panel, the title, then the file."""
  for ax in axes:
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend()
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(out, dpi=dpi)

