"""Which loop trains a config: feed-forward, pipelined, sequence or two-network.

Each loop module has ``make_loop(config) -> run.Loop``; the feed-forward,
sequence and two-network loops also ``make_batched_loop(configs)`` for a
vmapped sweep group.
"""

from __future__ import annotations

import ml_collections

from dni_jax.training import experiment
from dni_jax.training import feedforward
from dni_jax.training import pipelined
from dni_jax.training import recurrent
from dni_jax.training import two_networks


def loop_module(config: ml_collections.ConfigDict):
  """The module whose ``make_loop(config)`` trains this kind of config."""
  if experiment.is_two_networks(config):
    return two_networks
  if experiment.is_recurrent(config):
    return recurrent
  return pipelined if config.parallel.num_devices else feedforward
