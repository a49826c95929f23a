"""Copy and Repeat Copy (Graves et al., 2014) as endless streams, on device.

Each of the ``B`` streams is an endless run of episodes. An episode at
curriculum length ``N``:

- **Copy** (period ``2N + 1``): ``N`` random ``num_bits``-bit vectors, then
  one step with the delimiter channel on, then ``N`` silent steps in which
  the targets are the ``N`` vectors in order.
- **Repeat Copy** at curriculum repeat count ``R_max`` (period
  ``N + 2 + R_max·N``): the ``N`` vectors, then the delimiter step, which
  also carries the episode's repeat count ``R`` (uniform in ``1…R_max``,
  drawn per episode) as ``R / max_repeats`` on its own channel; then ``R·N``
  steps whose targets are the vectors repeated ``R`` times, then one step
  whose target is the end marker (an extra output channel); then silent,
  unscored steps up to the period.

Only output steps are scored (``mask``). The window of training step ``k`` is
a pure function of ``(seed, N, R_max, level_start, k)``, computed inside the
jitted step: no host data pipeline, and resumption is exact.

The curriculum (``update``): over every ``check_every`` steps the task
measures its error on scored steps; when the average is below ``threshold``
(0.15 bits), the level counts as solved and the next one starts. The paper
says only "averaging below 0.15 bits error"; ``error_measure`` picks the
reading:

- ``wrong_bits`` (the default): wrong bits per finished episode.
- ``xent_bits``: the cross-entropy of the scored bits, in bits, per finished
  episode (the "cost per sequence" of Graves et al.'s plots); stricter than
  ``wrong_bits``, since each wrong bit costs more than one bit.
- ``xent_bits_per_bit``: the same cross-entropy averaged over the scored
  output bits, not summed per episode: the lenient reading, close to
  neuralml/bp_lambda's, which compares the batch's mean bit cross-entropy
  (in bits) with 0.15.

Copy's next level is ``N + 1``. Repeat Copy alternates
growing ``N`` and ``R_max`` (first ``N``, then ``R_max``, then ``N``, ...);
``R_max`` stops at ``max_repeats``, after which only ``N`` grows.

The score (the paper's, Jaderberg et al. 2017, Table 1) is the episode length
``T_task`` of the longest level solved, ``max_task_length_solved``:
``N + 3`` for Copy, ``N·R_max + 3`` for Repeat Copy (0 while nothing is
solved); ``max_length_solved`` is that level's ``N``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

# fold_in salt of an episode's repeat count; vector i of an episode uses salt
# i, and no episode is 2^31 - 1 vectors long.
_REPEATS_SALT = 2**31 - 1

# The error measures: (the loss metric summed, the one it is averaged over).
_ERROR_COUNTS = {"wrong_bits": ("bit_errors", "episodes"),
                 "xent_bits": ("xent_bits", "episodes"),
                 "xent_bits_per_bit": ("xent_bits", "scored_bits")}
ERROR_MEASURES = tuple(_ERROR_COUNTS)


@dataclasses.dataclass(frozen=True)
class CopyTask:
  """Copy / Repeat Copy with a length (and repeat count) curriculum.

  Attributes:
    batch_size: parallel streams.
    unroll: time steps per training step (the truncation ``T``).
    repeat: Repeat Copy instead of Copy.
    num_bits: width of the random vectors.
    max_repeats: Repeat Copy's cap on the curriculum's ``R_max``, and the
      normaliser of the repeat-count input channel.
    start_length: the first curriculum length.
    start_repeats: Repeat Copy's first ``R_max``.
    threshold: error under which a level is solved (its unit:
      ``error_measure``).
    check_every: steps between curriculum checks.
    seed: the data's seed.
    error_measure: ``wrong_bits``, ``xent_bits`` (both per episode) or
      ``xent_bits_per_bit`` (the module's docstring).
  """
  batch_size: int
  unroll: int
  repeat: bool = False
  num_bits: int = 8
  max_repeats: int = 10
  start_length: int = 1
  start_repeats: int = 1
  threshold: float = 0.15
  check_every: int = 200
  seed: int = 0
  error_measure: str = "wrong_bits"

  def __post_init__(self):
    if self.error_measure not in _ERROR_COUNTS:
      raise ValueError(
          f"error_measure must be one of {', '.join(_ERROR_COUNTS)}, got "
          f"{self.error_measure!r}")

  @property
  def input_size(self) -> int:
    return self.num_bits + (2 if self.repeat else 1)

  @property
  def num_outputs(self) -> int:
    return self.num_bits + (1 if self.repeat else 0)

  vocab_size = None

  def period(self, length, repeats=None):
    """Steps per episode at ``length`` (Repeat Copy: and ``R_max``)."""
    if self.repeat:
      repeats = self.start_repeats if repeats is None else repeats
      return length + 2 + repeats * length
    return 2 * length + 1

  def task_length(self, length, repeats):
    """The paper's ``T_task`` of a level: ``N + 3``, or ``N·R_max + 3``."""
    return length * repeats + 3 if self.repeat else length + 3

  def init_state(self) -> dict:
    return {"length": jnp.asarray(self.start_length, jnp.int32),
            "repeats": jnp.asarray(self.start_repeats, jnp.int32),
            # 1: the next solved level grows R_max (Repeat Copy), 0: N.
            "grow_repeats": jnp.zeros((), jnp.int32),
            "level_start": jnp.zeros((), jnp.int32),
            "max_length_solved": jnp.asarray(self.start_length - 1, jnp.int32),
            "max_task_length_solved": jnp.zeros((), jnp.int32),
            # the error measure's sum since the last check, and what it is
            # averaged over: finished episodes, or scored bits
            # (``xent_bits_per_bit``)
            "errors": jnp.zeros((), jnp.float32),
            "episodes": jnp.zeros((), jnp.float32)}

  def data(self) -> dict:
    return {}  # everything is generated in the step

  def _time_step(self, key, length, max_r, tau):
    """Input, target, mask and episode end at position ``tau`` of a stream."""
    n = length
    period = self.period(n, max_r)
    e, p = tau // period, tau % period
    episode_key = jax.random.fold_in(key, e)
    if self.repeat:
      repeats = jax.random.randint(
          jax.random.fold_in(episode_key, _REPEATS_SALT), (), 1, max_r + 1)
    else:
      repeats = jnp.ones((), jnp.int32)
    is_in = p < n
    is_delim = p == n
    is_out = (p > n) & (p <= n + repeats * n)
    item = jnp.where(is_in, p, (p - n - 1) % n)
    bits = jax.random.bernoulli(jax.random.fold_in(episode_key, item),
                                0.5, (self.num_bits,)).astype(jnp.float32)
    x = [bits * is_in, is_delim[None].astype(jnp.float32)]
    y = [bits * is_out]
    if self.repeat:
      is_end = p == n + repeats * n + 1
      x.append((is_delim * repeats / self.max_repeats)[None].astype(
          jnp.float32))
      y.append(is_end[None].astype(jnp.float32))
    else:
      is_end = p == 2 * n
    return (jnp.concatenate(x), jnp.concatenate(y), is_out | is_end,
            is_end)

  def window_at(self, length, level_start, step, repeats=None) -> dict:
    """The batch of ``step`` at a level begun at ``level_start``.

    Args:
      length: the level's ``N``.
      level_start: the level's first step.
      step: the training step.
      repeats: the level's ``R_max`` (Repeat Copy; ignored by Copy);
        ``None``: ``start_repeats``.
    """
    repeats = self.start_repeats if repeats is None else repeats
    level_key = jax.random.fold_in(jax.random.PRNGKey(self.seed), level_start)
    tau = (step - level_start) * self.unroll + jnp.arange(self.unroll)

    def stream(b):
      key = jax.random.fold_in(level_key, b)
      return jax.vmap(lambda t: self._time_step(key, length, repeats, t))(tau)

    x, y, mask, end = jax.vmap(stream)(jnp.arange(self.batch_size))
    return {"inputs": x, "targets": y, "mask": mask, "episode_end": end}

  def window(self, task_state: dict, data: dict, step) -> dict:
    del data
    return self.window_at(task_state["length"], task_state["level_start"],
                          step, task_state["repeats"])

  def loss(self, logits_BxTxK: jax.Array, batch: dict):
    """Per-example masked bit cross-entropy, summed over the window."""
    mask = batch["mask"][..., None].astype(jnp.float32)
    xent = optax.sigmoid_binary_cross_entropy(logits_BxTxK, batch["targets"])
    wrong = ((logits_BxTxK > 0) != (batch["targets"] > 0.5)) * mask
    metrics = {"bit_errors": jnp.sum(wrong),
               "xent_bits": jnp.sum(xent * mask) / jnp.log(2.0),
               "scored_bits": jnp.sum(mask) * logits_BxTxK.shape[-1],
               "episodes": jnp.sum(batch["episode_end"]).astype(jnp.float32)}
    return jnp.sum(xent * mask, axis=(1, 2)), metrics

  def update(self, task_state: dict, metrics: dict, step):
    """Counts errors; at every check, moves to the next level if solved."""
    error, per = _ERROR_COUNTS[self.error_measure]
    errors = task_state["errors"] + metrics[error]
    episodes = task_state["episodes"] + metrics[per]
    check = (step + 1) % self.check_every == 0
    solved = check & (episodes > 0) & (
        errors < self.threshold * jnp.maximum(episodes, 1.0))
    length, repeats = task_state["length"], task_state["repeats"]
    if self.repeat:
      grow_r = solved & (task_state["grow_repeats"] > 0) & (
          repeats < self.max_repeats)
      grow_repeats = jnp.where(solved, 1 - grow_r.astype(jnp.int32),
                               task_state["grow_repeats"])
    else:
      grow_r = jnp.zeros((), bool)
      grow_repeats = task_state["grow_repeats"]
    task_length = jnp.where(solved, self.task_length(length, repeats), 0)
    new = {
        "length": jnp.where(solved & ~grow_r, length + 1, length),
        "repeats": jnp.where(grow_r, repeats + 1, repeats),
        "grow_repeats": grow_repeats,
        "level_start": jnp.where(solved, step + 1, task_state["level_start"]),
        "max_length_solved": jnp.where(solved, length,
                                       task_state["max_length_solved"]),
        "max_task_length_solved": jnp.maximum(
            task_state["max_task_length_solved"], task_length),
        "errors": jnp.where(check, 0.0, errors),
        "episodes": jnp.where(check, 0.0, episodes),
    }
    keys = ("length", "max_length_solved", "max_task_length_solved") + (
        ("repeats",) if self.repeat else ())
    return new, {k: new[k].astype(jnp.float32) for k in keys}
