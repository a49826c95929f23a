"""The matrix products of a step, read from its jaxpr and timed alone.

A step cannot run faster than its matmuls do. ``step_dots`` lists the dot
products one call of a function computes (from ``jax.make_jaxpr``: a
``scan`` body's counted once per iteration, which XLA's ``cost_analysis``
does not do); ``dots_program`` builds a jitted program of only those dot
products, with the same shapes and random operands, so that timing it gives
the floor under the step's time on this device: what the step would cost if
everything but its matmuls were free.
"""

from __future__ import annotations

import collections
import math
from typing import Callable

import jax
from jax.extend import core as jex_core
import numpy as np

# (lhs shape, rhs shape, dtype, dimension_numbers, preferred_element_type)
Dot = tuple


def _jaxprs(params: dict):
  for value in params.values():
    if isinstance(value, (jex_core.Jaxpr, jex_core.ClosedJaxpr)):
      yield value


def _count(jaxpr, times: int, out: collections.Counter) -> None:
  jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "dot_general":
      lhs, rhs = (v.aval for v in eqn.invars)
      out[(lhs.shape, rhs.shape, lhs.dtype.name,
           eqn.params["dimension_numbers"],
           eqn.params.get("preferred_element_type"))] += times
    elif name == "scan":
      _count(eqn.params["jaxpr"], times * eqn.params["length"], out)
    elif name == "cond":
      # The branch with the fewest FLOPs: a floor holds whichever runs.
      branches = []
      for branch in eqn.params["branches"]:
        branches.append(collections.Counter())
        _count(branch, times, branches[-1])
      out.update(min(branches, key=flops))
    elif name == "while":
      pass  # trip count unknown at trace time: counted as zero, a floor
    else:
      for sub in _jaxprs(eqn.params):
        _count(sub, times, out)


def step_dots(fn: Callable, *args) -> collections.Counter:
  """``{dot: how many times one call of fn(*args) computes it}``."""
  out = collections.Counter()
  _count(jax.make_jaxpr(fn)(*args), 1, out)
  return out


def dot_flops(dot: Dot) -> int:
  """2·(output elements)·(contracted length) of one dot product."""
  lhs, rhs, _, ((lhs_contract, rhs_contract), (lhs_batch, rhs_batch)), _ = dot
  lhs_free = [n for d, n in enumerate(lhs)
              if d not in (*lhs_contract, *lhs_batch)]
  rhs_free = [n for d, n in enumerate(rhs)
              if d not in (*rhs_contract, *rhs_batch)]
  return 2 * math.prod(lhs[d] for d in (*lhs_contract, *lhs_batch)) * (
      math.prod(lhs_free) * math.prod(rhs_free))


def flops(dots: collections.Counter) -> int:
  """All the FLOPs of these dot products, each as often as it is counted."""
  return sum(n * dot_flops(d) for d, n in dots.items())


def dots_program(dots: collections.Counter, place=jax.device_put):
  """``(jitted program, its operands)``: every dot product, each as often
  as it is counted and each on its own random operands (so that XLA can
  neither fold nor share them), placed with ``place``."""
  rng = np.random.default_rng(0)
  specs, operands = [], []
  for (lhs, rhs, dtype, dims, out_type), times in dots.items():
    for _ in range(times):
      specs.append((dims, out_type))
      operands.append(tuple(rng.standard_normal(s).astype(dtype)
                            for s in (lhs, rhs)))

  def program(pairs):
    return [jax.lax.dot_general(a, b, dims, preferred_element_type=out_type)
            for (a, b), (dims, out_type) in zip(pairs, specs)]

  return jax.jit(program), place(operands)
