"""The one synthetic-gradient interface (``dni_jax.core.interface``).

First the interface alone against plain ``jax.grad`` and optax; then every
kind of training that uses it (feed-forward, the pipeline, the recurrent
window, the two-network system) × every synthesizer kind × (dni, cdni
where it applies), a few steps on one fixed batch: finite, shapes kept, and
the synthesizer's regression loss falls (in the style of optax's
``transform_test.py``: one parameterised test over all the combinations).
"""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dni_jax as dni
from dni_jax.core import interface
from dni_jax.core import module_state
from dni_jax.core import synthesizers
from dni_jax.core import tbptt
from dni_jax.core import two_networks
from dni_jax.models import rnn
from dni_jax.parallel.pipeline import DNIPipeline
import tiny

B, D, C = 6, 5, 3

SYNTHESIZERS = {
    "linear": lambda: synthesizers.LinearSynthesizer(),
    "mlp": lambda: synthesizers.MLPSynthesizer((8,), use_batch_norm=False),
    "mlp_bn": lambda: synthesizers.MLPSynthesizer((8,), use_batch_norm=True),
}


def _randomized(sg, state, seed=0):
  return state._replace(params=tiny.randomize(state.params, seed, 0.3))


@pytest.mark.parametrize("kind", sorted(SYNTHESIZERS))
@pytest.mark.parametrize("with_context", [False, True])
def test_fit_is_the_l2_regression_gradient(kind, with_context):
  sg = interface.Interface(SYNTHESIZERS[kind](), optax.sgd(0.1), scale=0.5)
  h = jax.random.normal(jax.random.PRNGKey(0), (B, D))
  context = jax.random.normal(jax.random.PRNGKey(1), (B, C)) if with_context \
      else None
  target = jax.random.normal(jax.random.PRNGKey(2), (B, D))
  state = _randomized(sg, sg.init(jax.random.PRNGKey(3), h, context))
  pred = sg.predict(state, h, context)
  chex.assert_shape(pred.value, (B, D))
  loss, grads = interface.fit(pred, target)

  def plain(params):  # the regression written out
    value, _ = module_state.apply(
        sg.model, params, state.model_state, h, context, train=True)
    return jnp.sum(jnp.square(value - target)) / B
  expected_loss, expected = jax.value_and_grad(plain)(state.params)
  np.testing.assert_allclose(loss, expected_loss, rtol=1e-6)
  chex.assert_trees_all_close(grads, expected, rtol=1e-5, atol=1e-7)

  # regress = fit + one optax step (SGD: params - 0.1·grad).
  new, loss2 = sg.regress(state, pred, target)
  np.testing.assert_allclose(loss2, loss)
  chex.assert_trees_all_close(
      new.params, jax.tree_util.tree_map(lambda p, g: p - 0.1 * g,
                                         state.params, expected),
      rtol=1e-5, atol=1e-7)
  # The prediction's new BatchNorm statistics are the state's now.
  chex.assert_trees_all_equal(new.model_state, pred.model_state)


def test_delta_is_scaled_prediction_and_zero_init_predicts_zero():
  sg = interface.Interface(synthesizers.LinearSynthesizer(), optax.sgd(0.1),
                           scale=0.25)
  h = jnp.ones((B, D))
  state = sg.init(jax.random.PRNGKey(0), h)
  np.testing.assert_array_equal(sg.predict(state, h).value, 0.0)
  value = jnp.full((B, D), 2.0)
  np.testing.assert_allclose(sg.delta(value, units=4), 0.125)
  # The prediction never sends a gradient into the activation it reads.
  g = jax.grad(lambda x: jnp.sum(sg.predict(
      _randomized(sg, state), x).value))(h)
  np.testing.assert_array_equal(g, 0.0)


# --- every kind of training × every synthesizer kind × dni/cdni -----------

STEPS = 30


def _falls(losses):
  """The regression loss falls: the last steps' mean below the first's."""
  losses = np.asarray(losses, np.float64)
  assert np.all(np.isfinite(losses)), losses
  first = losses[losses > 0][:2].mean()
  assert losses[-3:].mean() < 0.9 * first, losses


def _feedforward(synth, method):
  net = tiny.network("fcn", depth=3)
  net = dataclasses.replace(net, synthesizers=(synth,) * net.num_boundaries)
  opt = dni.Optimizers(optax.adam(1e-3), optax.adam(1e-2))
  source = dni.get_source(method)
  batch = tiny.batch()
  state = dni.init_train_state(net, opt, source, jax.random.PRNGKey(0), batch)
  step = dni.make_train_step(net, opt, source)
  shapes = jax.tree_util.tree_map(jnp.shape, state.synth_params)
  losses = []
  for _ in range(STEPS):
    state, metrics = step(state, batch)
    losses.append(sum(float(v) for k, v in metrics.items()
                      if k.startswith("synth_loss/")))
  assert jax.tree_util.tree_map(jnp.shape, state.synth_params) == shapes
  return losses


def _feedforward_cnn(synth, method):
  del synth  # feature maps take the convolutional synthesizer
  net = tiny.network("cnn", depth=3)
  opt = dni.Optimizers(optax.adam(1e-3), optax.adam(1e-2))
  source = dni.get_source(method)
  batch = tiny.batch("cnn")
  state = dni.init_train_state(net, opt, source, jax.random.PRNGKey(0), batch)
  step = dni.make_train_step(net, opt, source)
  losses = []
  for _ in range(STEPS):
    state, metrics = step(state, batch)
    losses.append(sum(float(v) for k, v in metrics.items()
                      if k.startswith("synth_loss/")))
  return losses


def _pipeline(synth, method):
  if len(jax.devices()) < 2:
    pytest.skip("needs 2 CPU devices (XLA_FLAGS device count)")
  net = tiny.network("fcn", depth=3)
  net = dataclasses.replace(net, synthesizers=(synth,) * net.num_boundaries)
  opt = dni.Optimizers(optax.adam(1e-3), optax.adam(1e-2))
  batch = tiny.batch()
  pipe = DNIPipeline(net, opt, dni.get_source(method), jax.devices()[:2],
                     batch, jax.random.PRNGKey(0), stages_per_device=(2, 1))
  state = pipe.init()
  losses = []
  for t in range(STEPS + 2):
    state, metrics = pipe.tick(state, t, lambda m: batch)
    if "synth_loss/1" in metrics:
      losses.append(sum(float(v) for k, v in metrics.items()
                        if k.startswith("synth_loss/")))
  return losses


def _recurrent(synth, method):
  del method  # a recurrent state has no label to condition on
  core = rnn.RecurrentCore("lstm", 6, 3)
  loss_fn = lambda logits, b: (optax.sigmoid_binary_cross_entropy(
      logits, b["targets"]).sum(axis=(1, 2)), {})
  rdni = tbptt.build("dni", core, loss_fn, synth, sg_scale=0.5)
  opt = dni.Optimizers(optax.adam(1e-3), optax.adam(1e-2))
  state = tbptt.init_train_state(rdni, opt, jax.random.PRNGKey(0), B,
                                 jnp.zeros((B, D)))
  batch = {"inputs": jax.random.normal(jax.random.PRNGKey(1), (B, 4, D)),
           "targets": jax.random.bernoulli(jax.random.PRNGKey(2), 0.5,
                                           (B, 4, 3)).astype(jnp.float32)}
  start = tiny.randomize(state.carry, 3, 0.5)
  step = jax.jit(lambda s, b: tbptt.train_step(s, b, rdni=rdni,
                                                optimizers=opt))
  losses = []
  for _ in range(STEPS):  # one fixed window: the carry is reset each step
    state, metrics = step(state.replace(carry=start), batch)
    losses.append(float(metrics["synth_loss"]))
  chex.assert_shape(state.carry, start.shape)
  return losses


def _two_networks(synth, method):
  del method
  tn = two_networks.TwoNetworks(rnn.RecurrentCore("lstm", 5, 3 + 4),
                                rnn.RecurrentCore("lstm", 4, 5), T=2,
                                message_width=4, method="dni",
                                synthesizer=synth)
  opt = dni.Optimizers(optax.adam(1e-3), optax.adam(1e-2))
  state = two_networks.init_train_state(tn, opt, jax.random.PRNGKey(0), B, D)
  keys = jax.random.split(jax.random.PRNGKey(1), 3)
  batch = {"inputs": jax.random.normal(keys[0], (B, 4, D)),
           "a_labels": jax.random.randint(keys[1], (B, 2), 0, 3),
           "b_labels": jax.random.randint(keys[2], (B,), 0, 5)}
  step = jax.jit(lambda s, b: two_networks.train_step(s, b, tn=tn,
                                                       optimizers=opt))
  losses = []
  for _ in range(STEPS):
    state, metrics = step(state, batch)
    losses.append(float(metrics["synth_loss"]))
  return losses


FAMILIES = {"feedforward": _feedforward, "feedforward_cnn": _feedforward_cnn,
            "pipeline": _pipeline, "recurrent": _recurrent,
            "two_networks": _two_networks}
CASES = ([(f, s, m) for f in ("feedforward", "pipeline")
          for s in SYNTHESIZERS for m in ("dni", "cdni")] +
         [("feedforward_cnn", "conv", m) for m in ("dni", "cdni")] +
         [("recurrent", s, "dni") for s in SYNTHESIZERS] +
         [("two_networks", s, "dni") for s in SYNTHESIZERS])


@pytest.mark.parametrize("family,synth,method", CASES)
def test_every_family_trains_its_synthesizers_through_the_interface(
    family, synth, method):
  model = SYNTHESIZERS[synth]() if synth in SYNTHESIZERS else None
  _falls(FAMILIES[family](model, method))


@pytest.mark.parametrize("name", ["linear", "mlp", "conv"])
def test_every_registered_synthesizer_starts_at_zero(name):
  """The registry (``experiment.SYNTHESIZERS``): each entry builds from a
  config and, on every kind of activation it declares, predicts 0 at
  initialisation (zero-initialised output: training starts as no update)."""
  from configs import base  # pylint: disable=g-import-not-at-top
  from dni_jax.training import experiment  # pylint: disable=g-import-not-at-top
  assert set(experiment.SYNTHESIZERS) == {"linear", "mlp", "conv"}
  config = base.get_config()
  config.dni.update(synthesizer=name, hidden=(4,))
  _, reads = experiment.SYNTHESIZERS[name]
  for kind in reads:
    h = jnp.ones((B, D) if kind == "vectors" else (B, 4, 4, 2))
    sg = interface.Interface(experiment.make_synthesizer(config),
                             optax.sgd(0.1))
    state = sg.init(jax.random.PRNGKey(0), h, jnp.ones((B, C)))
    value = sg.predict(state, h, jnp.ones((B, C))).value
    chex.assert_shape(value, h.shape)
    np.testing.assert_array_equal(value, 0.0)
