"""Calling a Flax module as a pure function of ``(params, state, inputs)``.

Stages and synthesizers keep their mutable collections (BatchNorm's
``batch_stats``) outside the module, in the train state. These helpers split a
module's variables into trainable ``params`` and the rest (``state``), and
thread ``state`` through ``apply`` so that it is carried functionally.

A module whose ``__call__`` has a ``train`` argument gets ``train=...``; other
modules (``nn.Dense``, ``nn.Sequential`` of parameter-free layers, ...) are
called without it, so any Flax module can be a stage.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import flax.linen as nn
import jax

Params = Any
ModuleState = dict  # collection name -> pytree, e.g. {"batch_stats": ...}


@functools.lru_cache(maxsize=None)
def _accepts_train(module_type: type) -> bool:
  try:
    params = inspect.signature(module_type.__call__).parameters
  except (TypeError, ValueError):
    return False
  return "train" in params


def _train_kwargs(module: nn.Module, train: bool) -> dict:
  return {"train": train} if _accepts_train(type(module)) else {}


def init(module: nn.Module, rng: jax.Array, *inputs) -> tuple[Params, ModuleState]:
  """Initialises ``module`` on ``inputs``; returns ``(params, state)``."""
  variables = dict(
      module.init({"params": rng, "dropout": rng}, *inputs,
                  **_train_kwargs(module, False)))
  params = variables.pop("params", {})
  return params, variables


def apply(module: nn.Module, params: Params, state: ModuleState, *inputs,
          train: bool, rng: jax.Array | None = None) -> tuple[Any, ModuleState]:
  """Applies ``module``; returns ``(outputs, new_state)``.

  In training mode every state collection is mutable and its new value is
  returned; in evaluation mode ``state`` is returned unchanged.
  """
  variables = {"params": params, **state}
  rngs = {"dropout": rng} if (train and rng is not None) else None
  kwargs = _train_kwargs(module, train)
  if train and state:
    outputs, new_state = module.apply(variables, *inputs, rngs=rngs,
                                      mutable=list(state), **kwargs)
    return outputs, dict(new_state)
  return module.apply(variables, *inputs, rngs=rngs, **kwargs), state
