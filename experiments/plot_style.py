"""What every figure shares: a colour per method, plain ticks, a metric series.

No flags here, so that every plotting entry point can import it. A curve's
colour is a function of its method's name alone (``method_color``), so that a
method looks the same in a comparison, a sweep's bands and ``plot_seeds``.
"""

import re

from matplotlib import ticker
import numpy as np

# Fixed colours: a method looks the same in every figure. The legend
# follows METHOD_ORDER.
METHOD_COLORS = {"backprop": "C0", "bptt": "C0", "dni": "C1", "cdni": "C2",
                 "dni_aux": "C2", "locked": "C3", "dni_unlocked": "C4",
                 "cdni_unlocked": "C5", "no_dni": "C7"}
METHOD_ORDER = tuple(METHOD_COLORS)


def method_of(label: str) -> str:
  """The method a run's label names: its last folder (``dni``), that
  folder's ``method=`` part (a sweep member, ``method=dni,seed=0``) or its
  ``_<method>`` suffix (a reproduce cell, ``depth_3_dni``)."""
  last = label.rsplit("/", 1)[-1]
  named = re.search(r"(?:^|,)method=(\w+)", last)
  if named:
    return named.group(1)
  if last in METHOD_COLORS:  # no_dni is a method, not dni's cell
    return last
  for method in sorted(METHOD_ORDER, key=len, reverse=True):
    if last.endswith("_" + method):
      return method
  return last


def method_color(method: str) -> str:
  """The colour of a method (matplotlib's cycle, by ``METHOD_ORDER``).

  Give the method's name (a run's ``config.json`` ``method``); a run's label
  works too, through ``method_of``. A method outside ``METHOD_COLORS`` gets
  one of the four remaining colours of the cycle, chosen by its name.
  """
  method = method_of(method)
  return METHOD_COLORS.get(method, f"C{6 + sum(map(ord, method)) % 4}")


# Line styles that tell apart curves of one method (and so of one colour).
LINESTYLES = ("-", "--", ":", "-.")


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


def draw_curve(ax, xs, ys, std=None, **style) -> None:
  """A curve (``style``: color, label, linestyle ...) and, given ``std``, its
  ± std band. Under 30 points each is marked; one point is a large dot (a
  band of one point an error bar), so that a short run is never invisible."""
  style = {"marker": "o" if len(xs) < 30 else None,
           "markersize": 7 if len(xs) == 1 else 3, **style}
  if std is not None and len(xs) == 1:
    ax.errorbar(xs, ys, yerr=std, capsize=4, **style)
    return
  ax.plot(xs, ys, **style)
  if std is not None:
    ys, std = np.asarray(ys), np.asarray(std)
    ax.fill_between(xs, ys - std, ys + std, color=style.get("color"),
                    alpha=0.2)


class ReadableLogLocator(ticker.Locator):
  """Y ticks of a log axis that are labelled whatever its span.

  Over a decade or more: 1, 2 and 5 times a power of ten (powers of ten
  alone over many decades). Over less, where fewer than three of those
  fall in view: evenly spaced round values (0.3, 0.4, 0.5, 0.6), as on a
  linear axis; the scale stays logarithmic. Decided at draw time, from the
  view limits then.
  """

  def __init__(self, max_ticks: int = 8):
    self._max_ticks = max_ticks
    self._linear = ticker.MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10])
    self._log = ticker.LogLocator(base=10)  # its limits for a log axis

  def set_axis(self, axis):
    super().set_axis(axis)
    self._log.set_axis(axis)

  def nonsingular(self, vmin, vmax):
    return self._log.nonsingular(vmin, vmax)

  def view_limits(self, vmin, vmax):
    return self._log.view_limits(vmin, vmax)

  def __call__(self):
    return self.tick_values(*self.axis.get_view_interval())

  def tick_values(self, vmin, vmax):
    return self.ticks(vmin, vmax)[0]

  def ticks(self, vmin, vmax) -> tuple[list[float], bool]:
    """``(ticks, whether they are powers of ten times 1, 2 or 5)``."""
    vmin, vmax = sorted((vmin, vmax))
    if vmax <= 0:
      return [], False
    if vmin <= 0:
      vmin = vmax * 1e-3
    lo, hi = int(np.floor(np.log10(vmin))), int(np.ceil(np.log10(vmax)))
    decades = [10.0 ** e for e in range(lo, hi + 1)]
    for subs in ((1, 2, 5), (1,)):
      ticks = [m * d for d in decades for m in subs if vmin <= m * d <= vmax]
      if len(ticks) <= self._max_ticks:
        break
    else:  # very many decades: every k-th power of ten
      ticks = ticks[::-(-len(ticks) // self._max_ticks)]
    if len(ticks) >= 3:
      return ticks, True
    for nbins in (5, 8, 12):  # round steps, at least three in view
      self._linear.set_params(nbins=nbins)
      ticks = [t for t in self._linear.tick_values(vmin, vmax) if t > 0]
      if sum(vmin <= t <= vmax for t in ticks) >= 3:
        break
    return ticks, False


class _MinorLogLocator(ticker.Locator):
  """Unlabelled ticks at 3, 4, 6, 7, 8, 9 × 10^k where the major ticks are
  1-2-5; none where they are evenly spaced (a span under a decade)."""

  def __init__(self, major: ReadableLogLocator):
    self._major = major
    self._log = ticker.LogLocator(base=10, subs=(3, 4, 6, 7, 8, 9))

  def set_axis(self, axis):
    super().set_axis(axis)
    self._log.set_axis(axis)

  def __call__(self):
    return self.tick_values(*self.axis.get_view_interval())

  def tick_values(self, vmin, vmax):
    vmin, vmax = sorted((vmin, vmax))
    if vmin <= 0 or not self._major.ticks(vmin, vmax)[1]:
      return []
    return self._log.tick_values(vmin, vmax)


def plain_log_ticks(ax, fmt) -> None:
  """Readable y ticks on a log axis, whatever its span: plain labels
  (``fmt``: 0.5, 2, 40 or 40%) on ``ReadableLogLocator``'s ticks, unlabelled
  minor ticks in between."""
  major = ReadableLogLocator()
  ax.yaxis.set_major_locator(major)
  ax.yaxis.set_major_formatter(ticker.FuncFormatter(fmt))
  ax.yaxis.set_minor_locator(_MinorLogLocator(major))
  ax.yaxis.set_minor_formatter(ticker.NullFormatter())


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

