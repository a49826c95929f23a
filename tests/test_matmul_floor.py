"""experiments.matmul_floor: a step's dot products, counted and rebuilt."""

import jax
import jax.numpy as jnp
import numpy as np

from experiments import matmul_floor

B, K, N, T = 4, 6, 6, 5


def _unroll(h, w):
  """T steps of h ← tanh(h·W) under jax.lax.scan; the sum of the end state."""
  def body(h, _):
    return jnp.tanh(h @ w), None
  return jax.lax.scan(body, h, None, length=T)[0].sum()


def _args():
  return jnp.ones((B, K)), jnp.ones((K, N))


def test_a_scan_body_counts_once_per_iteration():
  dots = matmul_floor.step_dots(_unroll, *_args())
  assert sum(dots.values()) == T
  assert matmul_floor.flops(dots) == T * 2 * B * K * N


def test_the_gradient_adds_two_products_per_iteration():
  # d/dh and d/dW of each h·W: three products of the same size per step.
  dots = matmul_floor.step_dots(jax.grad(_unroll, argnums=(0, 1)), *_args())
  assert sum(dots.values()) == 3 * T
  assert matmul_floor.flops(dots) == 3 * T * 2 * B * K * N


def test_vmapped_members_multiply_the_flops():
  members = 3
  h, w = (jnp.stack([x] * members) for x in _args())
  dots = matmul_floor.step_dots(jax.vmap(_unroll), h, w)
  assert sum(dots.values()) == T  # one batched product per step
  assert matmul_floor.flops(dots) == members * T * 2 * B * K * N


def test_a_cond_counts_its_cheaper_branch():
  def f(pred, h, w):
    return jax.lax.cond(pred, lambda: (h @ w @ w.T).sum(),
                        lambda: (h @ w).sum())
  dots = matmul_floor.step_dots(f, True, *_args())
  assert matmul_floor.flops(dots) == 2 * B * K * N


def test_the_program_computes_the_counted_products():
  dots = matmul_floor.step_dots(jax.grad(_unroll, argnums=(0, 1)), *_args())
  program, operands = matmul_floor.dots_program(dots)
  outputs = program(operands)
  assert len(outputs) == len(operands) == 3 * T
  # Each product has its own operands (nothing for XLA to share).
  assert len({np.asarray(a).tobytes() for a, _ in operands}) == len(operands)
  for (a, b), (dot, _), out in zip(
      operands, [(d, n) for d, n in dots.items() for _ in range(n)], outputs):
    (contract, batch) = dot[3]
    assert batch == ((), ())
    expected = np.tensordot(np.asarray(a, np.float64),
                            np.asarray(b, np.float64), contract)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def _window_step_flops(method: str, unroll: int) -> int:
  """Matmul FLOPs of one recurrent window step (benchmark_recurrent's)."""
  import optax  # pylint: disable=g-import-not-at-top
  from dni_jax.core import synthesizers  # pylint: disable=g-import-not-at-top
  from dni_jax.core import tbptt  # pylint: disable=g-import-not-at-top
  from dni_jax.core.train_state import Optimizers  # pylint: disable=g-import-not-at-top
  from dni_jax.data import char_corpus  # pylint: disable=g-import-not-at-top
  from dni_jax.models import rnn  # pylint: disable=g-import-not-at-top
  batch, vocab, width = 2, 5, 4
  task = char_corpus.CharStreamTask(batch, unroll, vocab, 4 * unroll + 1)
  core = rnn.RecurrentCore("lstm", width, vocab, vocab)
  rdni = tbptt.build(method, core, task.loss,
                     synthesizers.LinearSynthesizer())
  opt = Optimizers(optax.sgd(0.1), optax.sgd(0.1))
  state = tbptt.init_train_state(rdni, opt, jax.random.PRNGKey(0), batch,
                                 jnp.zeros((batch,), jnp.int32), {})
  data = jnp.zeros((batch, 4 * unroll + 1), jnp.int32)
  return matmul_floor.flops(matmul_floor.step_dots(
      tbptt.make_train_step(rdni, opt, task), state, data))


def test_a_bptt_window_twice_as_long_costs_twice_the_matmuls():
  # Every product of a BPTT window sits in its lax.scan (XLA's cost_analysis
  # counts that body once, and would give equal counts).
  assert _window_step_flops("bptt", 4) == 2 * _window_step_flops("bptt", 2)
  # DNI adds the synthesizer's products, once per window.
  assert _window_step_flops("dni", 2) > _window_step_flops("bptt", 2)
