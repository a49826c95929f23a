"""Fields shared by every experiment; each experiment's config overrides some.

Not an experiment itself: see binary_addition.py, mnist_fcn.py, ... Every
field can be overridden on the command line, e.g.
``--config.opt.learning_rate=1e-4 --config.dni.synthesizer=mlp``.
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  # backprop | dni | cdni; several comma-separated runs each in
  # workdir/<method> and prints a comparison table.
  config.method = "dni"
  config.seed = 0  # parameters, data order and held-out split

  config.data = ml_collections.ConfigDict()
  config.data.name = "mnist"  # mnist | cifar10 | binary_addition
  config.data.dir = ""  # folder with the original files; "" = tensorflow-datasets
  config.data.tfds_data_dir = ""  # tensorflow-datasets' data_dir; "" = its default
  config.data.download = True  # let tensorflow-datasets download missing data
  config.data.num_bits = 8  # binary_addition: bits per number

  config.model = ml_collections.ConfigDict()
  config.model.kind = "fcn"  # fcn | cnn | mlp (one stage per hidden width + output stage)
  config.model.depth = 3  # fcn/cnn: number of stages (boundaries = depth - 1)
  config.model.width = 256  # fcn: units per stage
  config.model.features = 128  # cnn: filters per stage
  config.model.hidden = (128, 64)  # mlp: hidden widths
  config.model.activation = "relu"  # mlp: relu | sigmoid | tanh
  config.model.use_batch_norm = True  # BatchNorm in every stage

  config.dni = ml_collections.ConfigDict()
  config.dni.synthesizer = "linear"  # linear | mlp | conv (cnn only)
  config.dni.hidden = (1024, 1024)  # mlp/conv synthesizers: hidden widths/filters
  config.dni.use_batch_norm = True  # mlp/conv synthesizers: BatchNorm in hidden layers
  config.dni.sg_scale = 1.0  # λ: synthetic gradient = λ·M(h, c)
  config.dni.track_alignment = False  # log cosine(δ̂, ∂L/∂h) per boundary (costs a backward pass)

  config.opt = ml_collections.ConfigDict()
  config.opt.name = "adam"  # adam | sgd | momentum
  config.opt.learning_rate = 3e-5  # stages (the paper's FF setting)
  config.opt.synth_learning_rate = config_dict.placeholder(float)  # None = learning_rate
  config.opt.momentum = 0.9  # momentum optimiser only
  config.opt.decay_steps = ()  # steps at which both learning rates are multiplied by decay_factor
  config.opt.decay_factor = 0.1

  config.batch_size = 256
  config.eval_batch_size = 1000
  config.num_steps = 10_000
  config.log_every = 100  # train-metric averages + progress line
  config.eval_every = 1000  # evaluation on the test split
  config.checkpoint_every = 5000
  return config
