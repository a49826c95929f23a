"""dni_jax: Decoupled Neural Interfaces (synthetic gradients) in JAX.

The public API (see README.md for a runnable example)::

  net = dni_jax.decouple(stages, dni_jax.LinearSynthesizer())
  source = dni_jax.get_source("dni")            # or "backprop", "cdni"
  opt = dni_jax.Optimizers(stage=optax.adam(1e-3), synth=optax.adam(1e-3))
  state = dni_jax.init_train_state(net, opt, source, rng, batch)
  step = dni_jax.make_train_step(net, opt, source)
  state, metrics = step(state, batch)

Recurrent DNI (truncated BPTT with a synthetic gradient at the boundary)
lives in ``dni_jax.core.tbptt`` (``RecurrentDNI``, ``train_step``) on the
cores of ``dni_jax.models.rnn``.

The package's layers, each a folder: ``core`` (the method), ``models``,
``data``, ``training`` (config → objects, loops, run bookkeeping,
checkpoints). Importing ``dni_jax`` loads the core and the models only:
neither tensorflow-datasets, Orbax, ml_collections nor matplotlib.
"""

from dni_jax.core.gradient_sources import Backprop
from dni_jax.core.gradient_sources import get_source
from dni_jax.core.gradient_sources import label_context
from dni_jax.core.gradient_sources import METHODS
from dni_jax.core.gradient_sources import SourceOutput
from dni_jax.core.gradient_sources import SyntheticGradients
from dni_jax.core.losses import bit_metrics
from dni_jax.core.losses import classification_metrics
from dni_jax.core.losses import cosine_similarity
from dni_jax.core.losses import relative_error
from dni_jax.core.losses import sigmoid_binary_cross_entropy
from dni_jax.core.losses import softmax_cross_entropy
from dni_jax.core.network import decouple
from dni_jax.core.network import DecoupledNetwork
from dni_jax.core.staged import backprop_grads
from dni_jax.core.staged import decoupled_grads
from dni_jax.core.staged import forward
from dni_jax.core.staged import ForwardPass
from dni_jax.core.step import eval_step
from dni_jax.core.step import make_eval_step
from dni_jax.core.step import make_train_step
from dni_jax.core.step import predict
from dni_jax.core.step import train_step
from dni_jax.core.synthesizers import ConvSynthesizer
from dni_jax.core.synthesizers import LinearSynthesizer
from dni_jax.core.synthesizers import MLPSynthesizer
from dni_jax.core.tbptt import RecurrentDNI
from dni_jax.core.tbptt import RecurrentTrainState
from dni_jax.core.train_state import init_train_state
from dni_jax.core.train_state import Optimizers
from dni_jax.core.train_state import TrainState
from dni_jax.models.feedforward import cnn_stages
from dni_jax.models.feedforward import ConvBlock
from dni_jax.models.feedforward import DenseBlock
from dni_jax.models.feedforward import fcn_stages
from dni_jax.models.feedforward import mlp_stages
from dni_jax.models.rnn import RecurrentCore

__version__ = "0.1.0"
