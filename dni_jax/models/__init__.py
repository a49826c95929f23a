"""Models: plain Flax modules that know nothing of DNI.

- ``feedforward``: the paper's FCN / CNN stages, MLP stages.
- ``rnn``: recurrent cores (LSTM, tanh RNN) with a readout.
"""

from dni_jax.models.feedforward import cnn_stages
from dni_jax.models.feedforward import ConvBlock
from dni_jax.models.feedforward import DenseBlock
from dni_jax.models.feedforward import fcn_stages
from dni_jax.models.feedforward import mlp_stages
from dni_jax.models.rnn import RecurrentCore
