"""Step time of truncated BPTT, DNI and DNI+Aux on the PTB-character LSTM.

  python -m experiments.benchmark_recurrent [--unroll=8 --width=256 --batch_size=32]

Random tokens over a 50-character vocabulary (timing only), the shapes of
configs/ptb_char.py. Each method's jitted window step is compiled first, then
the methods are timed in interleaved rounds (experiments.timing).
Prints the median time per step (one window of ``--unroll`` characters per
stream), the FLOPs of the step's matmuls (``experiments.matmul_floor``,
which counts the window's ``lax.scan`` body T times; XLA's
``cost_analysis`` counts it once), and, as the last line,
``ratio dni/bptt=<x> dni_aux/bptt=<y>``.
"""

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import optax

from dni_jax.core import synthesizers
from dni_jax.core import tbptt
from dni_jax.core.train_state import Optimizers
from dni_jax.data import char_corpus
from dni_jax.models import rnn
from dni_jax.training import host_memory
from experiments import matmul_floor
from experiments import timing

_UNROLL = flags.DEFINE_integer("unroll", 8, "T, characters per window.")
_WIDTH = flags.DEFINE_integer("width", 256, "LSTM units.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Streams.")
_VOCAB = flags.DEFINE_integer("vocab", 50, "Vocabulary size.")
_ROUNDS = flags.DEFINE_integer("rounds", 20, "Timed rounds per method.")
_STEPS = flags.DEFINE_integer("steps", 50, "Steps per timed round.")


def _compiled(method, task, data):
  core = rnn.RecurrentCore("lstm", _WIDTH.value, task.vocab_size,
                           task.vocab_size)
  rdni = tbptt.build(method, core, task.loss, synthesizers.LinearSynthesizer())
  opt = Optimizers(optax.adam(1e-3), optax.adam(1e-3))
  state = tbptt.init_train_state(rdni, opt, jax.random.PRNGKey(0),
                                 _BATCH.value,
                                 jnp.zeros((_BATCH.value,), jnp.int32), {})
  step = tbptt.make_train_step(rdni, opt, task)
  flops = matmul_floor.flops(matmul_floor.step_dots(step, state, data))
  state, metrics = step(state, data)
  jax.block_until_ready((state, metrics))
  return step, state, flops


def main(argv):
  del argv
  timing.quiet_logs()
  host_memory.keep_freed_memory()
  length = 100 * _UNROLL.value + 1
  data = jax.random.randint(jax.random.PRNGKey(0), (_BATCH.value, length), 0,
                            _VOCAB.value)
  task = char_corpus.CharStreamTask(_BATCH.value, _UNROLL.value, _VOCAB.value,
                                    length)
  runs, flops = {}, {}
  for m in tbptt.METHODS:
    step, state, flops[m] = _compiled(m, task, data)
    runs[m] = (step, state)
  samples = timing.interleaved_samples(runs, data, _ROUNDS.value,
                                       _STEPS.value)
  print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, "
        f"LSTM {_WIDTH.value}, batch {_BATCH.value}, T={_UNROLL.value}, "
        f"{_ROUNDS.value} rounds x {_STEPS.value} steps")
  timing.report(samples, flops, "bptt", flop_label="matmul MFLOP")


if __name__ == "__main__":
  app.run(main)
