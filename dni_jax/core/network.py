"""A decoupled network: a chain of stages, one synthesizer per boundary, a loss.

``h_i = f_i(h_{i-1}; θ_i)``, ``h_0 = x``, loss ``L(h_N, y)`` (docs/method.md).
Boundary ``i`` (``0 ≤ i < N-1``) sits after stage ``i`` (0-based) and carries the
synthetic gradient ``δ̂_i = λ · M_i(h_{i+1}, c)``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import flax.linen as nn

from dni_jax.core import losses

LossFn = Callable  # (outputs, labels) -> scalar batch-mean loss
MetricsFn = Callable  # (outputs, labels) -> dict of scalars

# Where complete unlock's input models get their targets (docs/method.md):
# "neighbour" (the paper's), stage i run on its own synthetic input; or
# "real_chain", the composed stages run on x (for comparison).
INPUT_TARGETS = ("neighbour", "real_chain")
# Where complete unlock's synthesizer M_i regresses (docs/method.md): at
# "output", stage i's output h_i, where the stage reads it; or at
# "input_model", I_i(x), the input on which stage i+1 took the gradient that
# is M_i's target.
SYNTH_FITS = ("output", "input_model")


@dataclasses.dataclass(frozen=True)
class DecoupledNetwork:
  """Static description of a network split into stages.

  Attributes:
    stages: Flax modules applied in order; the last one produces the outputs
      (e.g. logits) that ``loss_fn`` scores. A stage may take ``train``.
    synthesizers: one synthetic-gradient module per boundary (``N - 1`` of
      them), or ``()`` for a network trained only with backprop. A ``None``
      entry leaves that boundary coupled: gradients flow through it by
      backprop, as if its two stages were one.
    loss_fn: ``(outputs, labels) -> scalar``, the batch-mean task loss.
    metrics_fn: ``(outputs, labels) -> dict`` of extra scalar metrics.
    sg_scale: λ, the factor applied to every synthesizer output (1 for FF):
      the value a train state starts with. The state carries it
      (``TrainState.sg_scale``) and the step reads it from there, so that
      the members of a vmapped sweep may differ in it.
    input_models: complete unlock (docs/method.md): one synthetic-input
      model ``I_i(x) ≈ h_i`` per boundary (``dni_jax.core.synthetic_inputs``),
      or ``()``. Used by the unlocked methods only.
    per_example: the synthesizers predict the gradient of the *per-example*
      loss, ``B·∂L/∂h`` for a batch-mean loss ``L`` over ``B`` examples; the
      stage's cotangent is then ``λ·M(h, c)/B`` and ``M`` regresses onto ``B``
      times the bootstrapped target. The method is unchanged up to that
      constant, but the targets are O(1) and independent of the batch size,
      which Adam-trained synthesizers need (with ``False``, the paper's
      literal ``δ̂ = λ·M`` ≈ ``∂L/∂h``, targets shrink as 1/B).
    input_targets: complete unlock: what ``I_i`` regresses onto.
      "neighbour" (the paper's): stage ``i`` run in the training forward on
      its own synthetic input ``I_{i-1}(x)`` (stage 0 on ``x``), so no
      stage waits for the real chain; the stages' BatchNorm statistics come
      from that forward too. "real_chain": the real ``h_i`` of the composed
      stages on ``x``, and their statistics from it.
    synth_fit_at: complete unlock: where ``M_i`` regresses onto its target,
      the gradient stage ``i+1`` took at its input ``I_i(x)``. "output"
      (the default): at stage ``i``'s output ``h_i``, where stage ``i``
      reads ``M_i``; a busy stage ``i`` then holds ``M_i`` back. "input_model":
      at ``I_i(x)`` itself, so ``M_i`` needs only stage ``i+1`` (and its
      own input model) to learn, and learns whenever stage ``i+1`` runs.
  """
  stages: tuple[nn.Module, ...]
  synthesizers: tuple[nn.Module, ...] = ()
  loss_fn: LossFn = losses.softmax_cross_entropy
  metrics_fn: MetricsFn = losses.classification_metrics
  sg_scale: float = 1.0
  per_example: bool = True
  input_models: tuple[nn.Module, ...] = ()
  input_targets: str = "neighbour"
  synth_fit_at: str = "output"

  def __post_init__(self):
    object.__setattr__(self, "stages", tuple(self.stages))
    object.__setattr__(self, "synthesizers", tuple(self.synthesizers))
    object.__setattr__(self, "input_models", tuple(self.input_models))
    if not self.stages:
      raise ValueError("DecoupledNetwork needs at least one stage.")
    if self.synthesizers and len(self.synthesizers) != self.num_boundaries:
      raise ValueError(
          f"{len(self.stages)} stages have {self.num_boundaries} boundaries, "
          f"but {len(self.synthesizers)} synthesizers were given; pass one "
          "per boundary, or a single module to `decouple` to share its "
          "architecture across boundaries.")
    if self.input_models and len(self.input_models) != self.num_boundaries:
      raise ValueError(
          f"{len(self.stages)} stages have {self.num_boundaries} boundaries, "
          f"but {len(self.input_models)} input models were given; pass one "
          "per boundary.")
    if self.input_targets not in INPUT_TARGETS:
      raise ValueError(f"unknown input_targets {self.input_targets!r}; "
                       f"choose one of {INPUT_TARGETS}.")
    if self.synth_fit_at not in SYNTH_FITS:
      raise ValueError(f"unknown synth_fit_at {self.synth_fit_at!r}; "
                       f"choose one of {SYNTH_FITS}.")
    if not math.isfinite(self.sg_scale):
      raise ValueError(f"sg_scale must be finite, got {self.sg_scale}.")

  @property
  def num_boundaries(self) -> int:
    return len(self.stages) - 1


def decouple(stages: Sequence[nn.Module],
             synthesizer: nn.Module | Sequence[nn.Module] | None = None, *,
             loss_fn: LossFn = losses.softmax_cross_entropy,
             metrics_fn: MetricsFn = losses.classification_metrics,
             sg_scale: float = 1.0,
             per_example: bool = True,
             input_model: nn.Module | Sequence[nn.Module] | None = None,
             input_targets: str = "neighbour",
             synth_fit_at: str = "output") -> DecoupledNetwork:
  """Builds a ``DecoupledNetwork``, a synthesizer at every stage boundary.

  Args:
    stages: the network's stages, in order.
    synthesizer: one module used (with its own parameters) at every
      boundary, or a sequence with one module (or ``None``: no interface,
      backprop through it) per boundary, or ``None`` for backprop only.
    loss_fn: batch-mean task loss of the last stage's outputs.
    metrics_fn: extra metrics of the last stage's outputs.
    sg_scale: λ, multiplies every synthetic gradient: the value a train
      state starts with (``TrainState.sg_scale``, which the step reads).
    per_example: synthesizers predict per-example gradients (see
      ``DecoupledNetwork``).
    input_model: complete unlock: one synthetic-input module used (with its
      own parameters) at every boundary, or one per boundary, or ``None``.
    input_targets: complete unlock: "neighbour" or "real_chain", what the
      input models regress onto (see ``DecoupledNetwork``).
    synth_fit_at: complete unlock: "output" or "input_model", where the
      synthesizers regress (see ``DecoupledNetwork``).

  Returns:
    The network description.
  """
  stages = tuple(stages)
  if synthesizer is None:
    synthesizers = ()
  elif isinstance(synthesizer, nn.Module):
    synthesizers = (synthesizer,) * (len(stages) - 1)
  else:
    synthesizers = tuple(synthesizer)
  if input_model is None:
    input_models = ()
  elif isinstance(input_model, nn.Module):
    input_models = (input_model,) * (len(stages) - 1)
  else:
    input_models = tuple(input_model)
  return DecoupledNetwork(stages, synthesizers, loss_fn, metrics_fn, sg_scale,
                          per_example, input_models, input_targets,
                          synth_fit_at)
