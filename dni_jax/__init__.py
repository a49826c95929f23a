"""dni_jax: Decoupled Neural Interfaces (synthetic gradients) in JAX.

The public API (see README.md for a runnable example)::

  net = dni_jax.decouple(stages, dni_jax.LinearSynthesizer())
  source = dni_jax.get_source("dni")            # or "backprop", "cdni"
  opt = dni_jax.Optimizers(stage=optax.adam(1e-3), synth=optax.adam(1e-3))
  state = dni_jax.init_train_state(net, opt, source, rng, batch)
  step = dni_jax.make_train_step(net, opt, source)
  state, metrics = step(state, batch)

Recurrent DNI (truncated BPTT with a synthetic gradient at the boundary)
lives in ``dni_jax.tbptt`` (``RecurrentDNI``, ``train_step``) on the cores of
``dni_jax.rnn``.
"""

from dni_jax.gradient_sources import Backprop
from dni_jax.gradient_sources import get_source
from dni_jax.gradient_sources import label_context
from dni_jax.gradient_sources import METHODS
from dni_jax.gradient_sources import SourceOutput
from dni_jax.gradient_sources import SyntheticGradients
from dni_jax.losses import bit_metrics
from dni_jax.losses import classification_metrics
from dni_jax.losses import cosine_similarity
from dni_jax.losses import relative_error
from dni_jax.losses import sigmoid_binary_cross_entropy
from dni_jax.losses import softmax_cross_entropy
from dni_jax.models import cnn_stages
from dni_jax.models import ConvBlock
from dni_jax.models import DenseBlock
from dni_jax.models import fcn_stages
from dni_jax.models import mlp_stages
from dni_jax.network import decouple
from dni_jax.network import DecoupledNetwork
from dni_jax.rnn import RecurrentCore
from dni_jax.staged import backprop_grads
from dni_jax.staged import decoupled_grads
from dni_jax.staged import forward
from dni_jax.staged import ForwardPass
from dni_jax.step import eval_step
from dni_jax.step import make_eval_step
from dni_jax.step import make_train_step
from dni_jax.step import predict
from dni_jax.step import train_step
from dni_jax.synthesizers import ConvSynthesizer
from dni_jax.synthesizers import LinearSynthesizer
from dni_jax.synthesizers import MLPSynthesizer
from dni_jax.tbptt import RecurrentDNI
from dni_jax.tbptt import RecurrentTrainState
from dni_jax.train_state import init_train_state
from dni_jax.train_state import Optimizers
from dni_jax.train_state import TrainState

__version__ = "0.1.0"
