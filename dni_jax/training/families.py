"""The kinds of training, each declared once.

A ``Family`` says which configs it takes, its methods, how its config is
checked, the module whose ``make_loop(config) -> run.Loop`` trains it (and,
where a sweep group can be one vmapped program, ``make_batched_loop``), the
table its results print as, and whether its runs can be vmapped. A config
belongs to the first family in ``FAMILIES`` that takes it:

- ``two_networks``: configs with a ``two_networks`` block (A and B at two
  timescales);
- ``recurrent``: sequence tasks (``data.name`` in ``SEQUENCE_TASKS``);
- ``pipelined``: feed-forward configs with ``parallel.num_devices > 0``;
- ``feedforward``: the rest (images, bits).

Adding a kind of training is one entry here and its own loop module.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Callable

import jax
import ml_collections

from dni_jax import data as data_lib
from dni_jax.core import gradient_sources
from dni_jax.core import tbptt
from dni_jax.core import two_networks as two_networks_core
from dni_jax.errors import ConfigError
from dni_jax.training import experiment
from dni_jax.training import feedforward
from dni_jax.training import pipelined
from dni_jax.training import recurrent
from dni_jax.training import report
from dni_jax.training import two_networks

Config = ml_collections.ConfigDict


def _feedforward_vmappable(config: Config) -> bool:
  """Feed-forward runs vmap, except CNNs on a CPU: there a convolution
  vmapped over the members' kernels becomes a grouped convolution, which
  XLA:CPU runs 2.4-4x slower than the members' own convolutions one after
  another (``python -m experiments.benchmark --model=cnn --members=3``,
  docs/performance.md); on an H200 three vmapped members cost 0.81-0.93x
  three separate steps (batch 64)."""
  return config.model.kind != "cnn" or jax.default_backend() != "cpu"


@dataclasses.dataclass(frozen=True)
class Family:
  """One kind of training.

  Attributes:
    name: its name.
    takes: ``config -> bool``, whether a config is of this family.
    methods: the ``config.method`` names it trains.
    validate: ``config -> None``, raising ``ConfigError`` for the first
      unusable value (after the methods are checked).
    loop: the module with ``make_loop`` (and ``make_batched_loop`` where
      ``vmappable`` can be true).
    table: ``summaries -> str``, the results table.
    vmappable: ``config -> bool``, whether a sweep may train the config as a
      member of a vmapped group.
    should_stop: ``config -> (records -> reason or None) or None``, the
      run's early stopping (``run.Loop.should_stop``), read by a sweep to
      tell a member that stopped early from one to resume.
  """
  name: str
  takes: Callable[[Config], bool]
  methods: tuple[str, ...]
  validate: Callable[[Config], None]
  loop: types.ModuleType
  table: Callable[[dict], str]
  vmappable: Callable[[Config], bool]
  should_stop: Callable[[Config], Callable | None] = lambda c: None


FAMILIES = (
    Family("two_networks", lambda c: "two_networks" in c,
           two_networks_core.METHODS, experiment.validate_two_networks,
           two_networks, report.two_networks_table, lambda c: True),
    Family("recurrent", lambda c: c.data.name in data_lib.SEQUENCE_TASKS,
           tbptt.METHODS, experiment.validate_sequence_or_images, recurrent,
           report.recurrent_table, lambda c: True, recurrent.should_stop),
    Family("pipelined", lambda c: bool(c.parallel.num_devices),
           tuple(sorted(gradient_sources.METHODS)),
           experiment.validate_sequence_or_images, pipelined,
           report.comparison_table, lambda c: False),
    Family("feedforward", lambda c: True,
           tuple(sorted(gradient_sources.METHODS)),
           experiment.validate_sequence_or_images, feedforward,
           report.comparison_table, _feedforward_vmappable),
)


def family_of(config: Config) -> Family:
  """The family that trains ``config``."""
  return next(f for f in FAMILIES if f.takes(config))


def methods(config: Config) -> list[str]:
  """``config.method`` split at commas: one method, or several to compare,
  each a method of the config's family (else ``ConfigError``)."""
  return experiment.check_methods(config, family_of(config).methods)


def validate(config: Config) -> None:
  """Raises ``ConfigError`` for the first unusable value in ``config``."""
  if "timescale" in config:
    raise ConfigError(
        "this config has a `timescale` block: it is the two-timescale "
        "variant, which configs/two_networks.py (the paper's two-network "
        "system) replaced; its runs cannot be resumed or evaluated by this "
        "version. Train the two-network system with --config="
        "configs/two_networks.py into a new --workdir.")
  experiment.validate_tuple_fields(config)
  methods(config)
  family_of(config).validate(config)
