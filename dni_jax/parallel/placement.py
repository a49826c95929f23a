"""Which consecutive stages each device of a pipeline holds.

A placement cuts the ``N`` stages of a ``DecoupledNetwork`` into ``K``
groups of consecutive stages, group ``k`` on device ``k``. Device ``k`` holds
its stages' parameters, mutable state and optimiser states, the synthesizers
of the boundaries inside its group, and the synthesizer at its output
boundary (every group but the last), with theirs (docs/method.md).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from dni_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Group:
  """Stages ``start … stop-1`` of an ``num_stages``-stage network on device ``index``."""
  index: int
  start: int
  stop: int
  num_stages: int
  num_groups: int

  @property
  def is_first(self) -> bool:
    return self.index == 0

  @property
  def is_last(self) -> bool:
    return self.index == self.num_groups - 1

  @property
  def stages(self) -> range:
    return range(self.start, self.stop)

  @property
  def boundaries(self) -> range:
    """The boundaries (after stage ``b``) whose synthesizers this group holds.

    Those inside the group, and the output boundary ``stop - 1`` unless the
    group is the last (whose last stage has the loss instead).
    """
    return range(self.start, self.stop - 1 if self.is_last else self.stop)


def balanced(num_stages: int, num_devices: int) -> tuple[int, ...]:
  """Stages per device, as even as possible, earlier devices one more."""
  base, extra = divmod(num_stages, num_devices)
  return tuple(base + (k < extra) for k in range(num_devices))


def place(num_stages: int, num_devices: int,
          stages_per_device: Sequence[int] = ()) -> tuple[Group, ...]:
  """The groups of a pipeline over ``num_devices`` devices.

  Args:
    num_stages: stages of the network.
    num_devices: devices of the pipeline (``K``).
    stages_per_device: how many consecutive stages each device holds, in
      order; empty: ``balanced``.

  Raises:
    ConfigError: more devices than stages, or an assignment that misses,
      repeats or reorders stages.
  """
  if num_devices < 1:
    raise ConfigError(f"parallel.num_devices must be >= 1, got {num_devices}")
  if num_devices > num_stages:
    raise ConfigError(
        f"a pipeline over {num_devices} devices needs at least {num_devices} "
        f"stages, but the network has {num_stages}; lower "
        "--config.parallel.num_devices or deepen the network "
        "(--config.model.depth).")
  counts = tuple(stages_per_device) or balanced(num_stages, num_devices)
  if len(counts) != num_devices or any(c < 1 for c in counts) or sum(
      counts) != num_stages:
    covered = sum(counts)
    problem = ("misses stages" if covered < num_stages else
               "repeats stages" if covered > num_stages else
               "gives a device no stage" if any(c < 1 for c in counts) else
               "does not name one count per device")
    raise ConfigError(
        f"parallel.stages_per_device={tuple(counts)} {problem}: it must give "
        f"each of the {num_devices} devices at least one stage, in order, "
        f"{num_stages} stages in all (e.g. {balanced(num_stages, num_devices)}"
        "), or be empty for a balanced split.")
  groups, start = [], 0
  for k, count in enumerate(counts):
    groups.append(Group(k, start, start + count, num_stages, num_devices))
    start += count
  return tuple(groups)
