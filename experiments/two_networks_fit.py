"""How much of B's gradient a synthesizer can predict, per message slot.

  python -m experiments.two_networks_fit <run folder> [--episodes=32768]

Restores a two-network run's newest complete checkpoint (any method: what
is read is its A, which sends the messages, and its B, whose gradients are
the targets) and holds both fixed. It draws ``--episodes`` episodes from
the training digits and ``--eval_episodes`` from the held-out ones, and
for each slot ``w`` and each context (what ``M`` reads beside message
``w``: nothing, B's label, B's state before the message, or both) fits a
fresh MLP (``--hidden``, Adam ``--learning_rate``, ``--steps`` minibatches
of ``--batch_size``) by least squares onto B's true gradient of message
``w`` on the training episodes, and prints its R² on the held-out ones
(1 − squared error over the target's variance: 0 for the best constant,
1 for a perfect fit). For a dni run with a synthesizer it first prints its
own ``M``'s R² per slot on the same held-out episodes.

Why per slot: the last message's target is a function of B's state, the
message and the label, so a model reading all three can predict it
exactly; an earlier message's target also depends on the messages A has
not yet sent, which nothing ``M`` reads tells it, so part of it cannot be
predicted. What an offline fit reaches, with the networks fixed, is a
measure of what the context holds; what the run's own ``M`` reaches is
what online training got of it. Nothing in the run folder is written.
"""

import os

from absl import app
from absl import flags

from experiments import cli

_EPISODES = flags.DEFINE_integer("episodes", 32768,
                                 "Training episodes to fit on.")
_EVAL_EPISODES = flags.DEFINE_integer("eval_episodes", 4096,
                                      "Held-out episodes to score on.")
_STEPS = flags.DEFINE_integer("steps", 3000, "Adam steps of each fit.")
_BATCH = flags.DEFINE_integer("batch_size", 512, "Examples per Adam step.")
_LR = flags.DEFINE_float("learning_rate", 1e-3, "Adam's learning rate.")
_HIDDEN = flags.DEFINE_list("hidden", ["256", "256"],
                            "Hidden widths of the fitted MLPs.")
_CONTEXTS = flags.DEFINE_list(
    "contexts", ["none", "label", "b_state", "b_state_label"],
    "What the fitted models read beside the message (two_networks.sg_context "
    "values).")
_TRACEBACK = flags.DEFINE_bool(
    "traceback", False, "On an error, show the Python traceback too.")

READS = {"none": (), "label": ("label",), "b_state": ("b_state",),
         "b_state_label": ("b_state", "label")}


def _fit_slots(x_train, y_train, x_eval, y_eval, *, hidden, steps,
               batch_size, learning_rate, seed=0):
  """One MLP per slot (vmapped), fitted on ``x_train [T, N, D] -> y_train
  [T, N, M]``; held-out R² per slot, ``[T]``."""
  import functools  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from dni_jax.core import offline_fit  # pylint: disable=g-import-not-at-top

  fit = functools.partial(offline_fit.mlp_r2, hidden=hidden, steps=steps,
                          batch_size=batch_size, learning_rate=learning_rate)
  keys = jax.random.split(jax.random.PRNGKey(seed), x_train.shape[0])
  return jax.jit(jax.vmap(fit))(x_train, y_train, x_eval, y_eval, keys)


def measure(run_dir: str, *, episodes: int, eval_episodes: int, steps: int,
            batch_size: int, learning_rate: float, hidden: tuple[int, ...],
            contexts: tuple[str, ...]) -> dict:
  """``{"step", "target_norm": [T], "own": [T] or None, "fits": {context:
  [T]}}``: the targets' mean norm per slot, and held-out R² per slot."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from dni_jax.core import interface  # pylint: disable=g-import-not-at-top
  from dni_jax.core import two_networks as tn_lib  # pylint: disable=g-import-not-at-top
  from dni_jax.data import digit_stream  # pylint: disable=g-import-not-at-top
  from dni_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  from dni_jax.training import experiment  # pylint: disable=g-import-not-at-top
  from dni_jax.training import families  # pylint: disable=g-import-not-at-top
  from dni_jax.training import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  from dni_jax.training.checkpoint import restore_newest_complete  # pylint: disable=g-import-not-at-top

  unknown = [c for c in contexts if c not in READS]
  if unknown:
    raise ConfigError(f"--contexts: unknown {', '.join(unknown)}; choose "
                      f"from {', '.join(READS)}.")
  for name, value in (("episodes", episodes), ("eval_episodes",
                                               eval_episodes),
                      ("steps", steps), ("batch_size", batch_size)):
    if value < 1:
      raise ConfigError(f"--{name}={value}: give at least 1.")
  config = workdir_lib.read_one_run_config(run_dir)
  families.validate(config)
  family = families.family_of(config)
  if family.name != "two_networks":
    raise ConfigError(
        f"{run_dir} is a {config.method} run of {config.data.name}, not of "
        "the two-network system; give the folder of a two_networks run (a "
        "sweep's: one member's folder, e.g. <workdir>/seed=0).")
  tn = experiment.build_two_networks(config)
  loop = family.loop.make_loop(config)
  state, step = restore_newest_complete(
      os.path.join(run_dir, "checkpoints"), loop.init(),
      f"{run_dir} holds no complete checkpoint yet; train it on, then "
      "measure.")
  train, held_out = experiment.load_digit_streams(config)

  def draw(images, digits, n, seed):
    batch = digit_stream.episodes(digit_stream.DigitStream(images, digits),
                                  jax.random.PRNGKey(seed), n, tn.T)
    messages = tn_lib.a_episode(tn, state.a_params, batch)[0]
    labels = batch["b_labels"]
    targets, _ = tn_lib.message_grads(tn, state.b_params, messages, labels)
    parts = {"b_state": tn_lib.b_states_before(tn, state.b_params,
                                                 messages),
             "label": jnp.broadcast_to(
                 jax.nn.one_hot(labels, tn.episode + 1),
                 (tn.T, n, tn.episode + 1))}
    inputs = {c: jnp.concatenate([messages, *(parts[p] for p in READS[c])],
                                 -1) for c in contexts}
    return batch, inputs, targets

  draw = jax.jit(draw, static_argnums=(2, 3))
  _, train_x, train_y = draw(train.images, train.labels, episodes, 1)
  eval_batch, eval_x, eval_y = draw(held_out.images, held_out.labels,
                                    eval_episodes, 2)
  own = None
  if tn.synthesizer is not None and not tn.oracle:
    fit = tn_lib.evaluate(tn, state.a_params, state.b_params, eval_batch,
                          interface.state_of(state))
    own = [float(fit[f"sg_r2_slot{w}"]) for w in range(tn.T)]
  fits = {c: [float(r) for r in _fit_slots(
      train_x[c], train_y, eval_x[c], eval_y, hidden=hidden, steps=steps,
      batch_size=batch_size, learning_rate=learning_rate)]
          for c in contexts}
  norms = np.linalg.norm(np.asarray(eval_y), axis=-1).mean(-1)
  return {"step": step, "target_norm": [float(v) for v in norms],
          "own": own, "context": str(tn.sg_context), "fits": fits}


def report(run_dir: str, got: dict, hidden) -> str:
  """The table ``main`` prints."""
  slots = len(got["target_norm"])
  head = "".join(f"{f'slot {w}':>9}" for w in range(slots))
  row = lambda name, values: f"{name:<42}" + "".join(  # noqa: E731
      f"{v:9.3f}" for v in values) + f"{sum(values) / slots:9.3f}"
  lines = [f"{run_dir}: step {got['step']}, A and B fixed; held-out R² of "
           "B's gradient of each message",
           f"{'':<42}{head}{'mean':>9}",
           row("target's mean norm", got["target_norm"])]
  if got["own"] is not None:
    lines.append(row(f"the run's own M ({got['context']})", got["own"]))
  width = "-".join(str(h) for h in hidden) or "linear"
  for context, values in got["fits"].items():
    lines.append(row(f"MLP {width} fitted, reads {context}", values))
  return "\n".join(lines)


def main(argv):
  def fit(workdir):
    hidden = tuple(int(h) for h in _HIDDEN.value)
    return hidden, measure(workdir, episodes=_EPISODES.value,
                           eval_episodes=_EVAL_EPISODES.value,
                           steps=_STEPS.value, batch_size=_BATCH.value,
                           learning_rate=_LR.value, hidden=hidden,
                           contexts=tuple(_CONTEXTS.value))
  hidden, got = cli.run_on_workdir(
      argv, "python -m experiments.two_networks_fit <workdir>/seed=0", fit,
      _TRACEBACK.value)
  print(report(argv[1], got, hidden))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
