"""Fields shared by the sequence tasks (recurrent DNI, docs/method.md).

Not an experiment itself: copy.py, repeat_copy.py and ptb_char.py start from
it. An LSTM(256) trained on windows of ``unroll`` steps by truncated BPTT,
DNI (a linear synthesizer on the LSTM's output ``h``, λ = 0.1) or DNI+Aux, with
Adam and gradient clipping at norm 1, 32 parallel streams.
"""

from configs import base


def get_config():
  config = base.get_config()
  config.method = "bptt,dni,dni_aux"
  config.model.kind = "lstm"
  config.model.width = 256
  # the LSTM: a constant added to the forget gate's pre-activation
  # (TensorFlow/Sonnet: 1) and peephole connections from the cell state to
  # the gates, each on its own; with either, the cell is the LSTM of Graves
  # (2013), with neither (0, False) Flax's OptimizedLSTMCell
  config.model.forget_bias = 0.0
  config.model.peepholes = False
  config.dni.synthesizer = "linear"
  # an mlp synthesizer's hidden layers without BatchNorm: with it, DNI on
  # Copy diverged on every seed (docs/results.md, Copy at T = 3)
  config.dni.use_batch_norm = False
  config.dni.sg_scale = 0.1  # the paper's λ for RNNs
  # where the synthetic gradient sits: h, the core's output (the paper's
  # choice); ch, the LSTM's whole state (c, h) (diverges on some seeds); or
  # h_ch, the whole state's gradient predicted from h alone
  config.dni.sg_state = "h"
  # what the synthesizer's bootstrapped target carries back from a window's
  # end: scaled, the λ·M(h_end) the core was updated with (M learns the future
  # gradient discounted by λ per window); unscaled, M(h_end) (the paper's
  # target: M learns the undiscounted future gradient, λ scales what the core
  # receives)
  config.dni.bootstrap = "scaled"
  # a target network for the bootstrap: 0, the target reads M itself at a
  # window's end; in (0, 1), an exponential moving average of M's parameters
  # with this decay per window (the core still receives λ·M(h_end))
  config.dni.target_decay = 0.0
  # the synthesizer's optax steps per window, each on the window's one
  # target from M's latest parameters (1: the paper's single step)
  config.dni.synth_steps = 1
  # λ grows linearly from 0 over this many windows (0: λ from the first
  # window; docs/results.md, PTB at 1024 units)
  config.dni.sg_warmup = 0
  # a control: each stream gets the synthetic gradient predicted for the
  # previous stream of the batch (sizes and batch mean kept, the per-stream
  # information lost); False: DNI itself
  config.dni.sg_shuffle = False
  # with sg_shuffle: True, M's bootstrapped target reads the rolled
  # prediction too; False, only the core's synthetic gradient (and the Aux
  # target) is rolled and M regresses onto DNI's own per-stream target
  config.dni.sg_shuffle_target = True
  config.dni.aux_weight = 1.0
  config.opt.learning_rate = 1e-3
  config.opt.clip_norm = 1.0
  config.batch_size = 32
  # windows trained per jitted call (a lax.scan over windows: no host round
  # trip between them; the same updates as one window per call)
  config.windows_per_call = 8
  return config
