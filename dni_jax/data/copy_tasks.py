"""Copy and Repeat Copy (Graves et al., 2014) as endless streams, on device.

Each of the ``B`` streams is an endless run of episodes. An episode at
curriculum length ``N``:

- **Copy** (period ``2N + 1``): ``N`` random ``num_bits``-bit vectors, then
  one step with the delimiter channel on, then ``N`` silent steps in which
  the targets are the ``N`` vectors in order.
- **Repeat Copy** (period ``N + 2 + max_repeats·N``): the ``N`` vectors, then
  the delimiter step, which also carries the repeat count ``R`` (uniform in
  ``1…max_repeats``) as ``R / max_repeats`` on its own channel; then ``R·N``
  steps whose targets are the vectors repeated ``R`` times, then one step
  whose target is the end marker (an extra output channel); then silent,
  unscored steps up to the period.

Only output steps are scored (``mask``). The window of training step ``k`` is
a pure function of ``(seed, length, level_start, k)``, computed inside the
jitted step: no host data pipeline, and resumption is exact.

The curriculum (``update``): over every ``check_every`` steps the task counts
wrong bits on scored steps and finished episodes; when the average error per
episode is below ``threshold`` (0.15 bits), that length counts as solved and
the next episode starts at length ``N + 1``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

# fold_in salt of an episode's repeat count; vector i of an episode uses salt
# i, and no episode is 2^31 - 1 vectors long.
_REPEATS_SALT = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class CopyTask:
  """Copy / Repeat Copy with a length curriculum.

  Attributes:
    batch_size: parallel streams.
    unroll: time steps per training step (the truncation ``T``).
    repeat: Repeat Copy instead of Copy.
    num_bits: width of the random vectors.
    max_repeats: Repeat Copy's largest repeat count.
    start_length: the first curriculum length.
    threshold: error (bits per episode) under which a length is solved.
    check_every: steps between curriculum checks.
    seed: the data's seed.
  """
  batch_size: int
  unroll: int
  repeat: bool = False
  num_bits: int = 8
  max_repeats: int = 3
  start_length: int = 1
  threshold: float = 0.15
  check_every: int = 200
  seed: int = 0

  @property
  def input_size(self) -> int:
    return self.num_bits + (2 if self.repeat else 1)

  @property
  def num_outputs(self) -> int:
    return self.num_bits + (1 if self.repeat else 0)

  vocab_size = None

  def period(self, length):
    if self.repeat:
      return length + 2 + self.max_repeats * length
    return 2 * length + 1

  def init_state(self) -> dict:
    return {"length": jnp.asarray(self.start_length, jnp.int32),
            "level_start": jnp.zeros((), jnp.int32),
            "max_length_solved": jnp.asarray(self.start_length - 1, jnp.int32),
            "errors": jnp.zeros((), jnp.float32),
            "episodes": jnp.zeros((), jnp.float32)}

  def data(self) -> dict:
    return {}  # everything is generated in the step

  def _time_step(self, key, length, tau):
    """Input, target, mask and episode end at position ``tau`` of a stream."""
    n = length
    e, p = tau // self.period(n), tau % self.period(n)
    episode_key = jax.random.fold_in(key, e)
    if self.repeat:
      repeats = jax.random.randint(
          jax.random.fold_in(episode_key, _REPEATS_SALT), (), 1,
          self.max_repeats + 1)
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
      x.append((is_delim * repeats / self.max_repeats)[None].astype(jnp.float32))
      y.append(is_end[None].astype(jnp.float32))
    else:
      is_end = p == 2 * n
    return (jnp.concatenate(x), jnp.concatenate(y), is_out | is_end,
            is_end)

  def window_at(self, length, level_start, step) -> dict:
    """The batch of ``step`` at curriculum ``length`` begun at ``level_start``."""
    level_key = jax.random.fold_in(jax.random.PRNGKey(self.seed), level_start)
    tau = (step - level_start) * self.unroll + jnp.arange(self.unroll)

    def stream(b):
      key = jax.random.fold_in(level_key, b)
      return jax.vmap(lambda t: self._time_step(key, length, t))(tau)

    x, y, mask, end = jax.vmap(stream)(jnp.arange(self.batch_size))
    return {"inputs": x, "targets": y, "mask": mask, "episode_end": end}

  def window(self, task_state: dict, data: dict, step) -> dict:
    del data
    return self.window_at(task_state["length"], task_state["level_start"],
                          step)

  def loss(self, logits_BxTxK: jax.Array, batch: dict):
    """Per-example masked bit cross-entropy, summed over the window."""
    mask = batch["mask"][..., None].astype(jnp.float32)
    xent = optax.sigmoid_binary_cross_entropy(logits_BxTxK, batch["targets"])
    wrong = ((logits_BxTxK > 0) != (batch["targets"] > 0.5)) * mask
    metrics = {"bit_errors": jnp.sum(wrong),
               "episodes": jnp.sum(batch["episode_end"]).astype(jnp.float32)}
    return jnp.sum(xent * mask, axis=(1, 2)), metrics

  def update(self, task_state: dict, metrics: dict, step):
    """Counts errors; at every check, lengthens the sequence if solved."""
    errors = task_state["errors"] + metrics["bit_errors"]
    episodes = task_state["episodes"] + metrics["episodes"]
    check = (step + 1) % self.check_every == 0
    solved = check & (episodes > 0) & (
        errors < self.threshold * jnp.maximum(episodes, 1.0))
    length = task_state["length"]
    new = {
        "length": jnp.where(solved, length + 1, length),
        "level_start": jnp.where(solved, step + 1, task_state["level_start"]),
        "max_length_solved": jnp.where(solved, length,
                                       task_state["max_length_solved"]),
        "errors": jnp.where(check, 0.0, errors),
        "episodes": jnp.where(check, 0.0, episodes),
    }
    return new, {"length": new["length"].astype(jnp.float32),
                 "max_length_solved":
                     new["max_length_solved"].astype(jnp.float32)}
