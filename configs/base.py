"""Fields shared by every experiment; each experiment's config overrides some.

Not an experiment itself: see binary_addition.py, mnist_fcn.py, ... Every
field can be overridden on the command line, e.g.
``--config.opt.learning_rate=1e-4 --config.dni.synthesizer=mlp``.
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  # backprop | dni | cdni | dni_unlocked | cdni_unlocked (sequence tasks:
  # bptt | dni | dni_aux; two_networks: locked | dni | no_dni); several
  # comma-separated runs each in workdir/<method> and prints a comparison table.
  config.method = "dni"
  config.seed = 0  # parameters, data order and held-out split

  config.data = ml_collections.ConfigDict()
  # mnist | cifar10 | binary_addition; sequence tasks (recurrent DNI):
  # copy | repeat_copy | ptb_char | tiny_shakespeare
  config.data.name = "mnist"
  config.data.dir = ""  # folder with the original files; "" = tensorflow-datasets
  config.data.tfds_data_dir = ""  # tensorflow-datasets' data_dir; "" = its default
  config.data.download = True  # let tensorflow-datasets download missing data
  config.data.num_bits = 8  # binary_addition: bits per number; copy tasks: bits per vector
  config.data.start_length = 1  # copy tasks: first curriculum length
  config.data.threshold = 0.15  # copy tasks: the error (data.error_measure) under which a length is solved
  # copy tasks: the error the curriculum averages: wrong_bits (per episode) |
  # xent_bits (cross-entropy in bits per episode) | xent_bits_per_bit (per scored bit)
  config.data.error_measure = "wrong_bits"
  config.data.check_every = 200  # copy tasks: steps between curriculum checks
  config.data.max_repeats = 10  # repeat_copy: cap of the curriculum's R_max (R is uniform in 1..R_max; input R/max_repeats)
  config.data.start_repeats = 1  # repeat_copy: first R_max (the curriculum alternates growing N and R_max)

  config.model = ml_collections.ConfigDict()
  # fcn | cnn | mlp (one stage per hidden width + output stage);
  # sequence tasks: lstm | rnn
  config.model.kind = "fcn"
  config.model.depth = 3  # fcn/cnn: number of stages (boundaries = depth - 1)
  config.model.width = 256  # fcn: units per stage; lstm/rnn: hidden units
  config.model.features = 128  # cnn: filters per stage
  config.model.hidden = (128, 64)  # mlp: hidden widths
  config.model.activation = "relu"  # mlp: relu | sigmoid | tanh
  config.model.use_batch_norm = True  # BatchNorm in every stage

  config.dni = ml_collections.ConfigDict()
  config.dni.synthesizer = "linear"  # linear | mlp | conv (cnn only)
  config.dni.hidden = (1024, 1024)  # mlp/conv synthesizers: hidden widths/filters
  config.dni.use_batch_norm = True  # mlp/conv synthesizers: BatchNorm in hidden layers
  config.dni.sg_scale = 1.0  # λ: synthetic gradient = λ·M(h, c) (recurrent configs: 0.1)
  config.dni.aux_weight = 1.0  # dni_aux: weight of the Aux head's L2 loss
  # Stochastic updates: each stage applies its update with this probability,
  # independently of the others; the synthesizer below a stage regresses when
  # that stage updates (backprop: the whole network at once). Unlocked
  # methods: a stage that does not update is busy (it does not run at all).
  config.dni.update_prob = 1.0
  config.dni.stage_update_probs = ()  # one probability per stage; () = update_prob for all
  config.dni.schedule_clock = "steps"  # what a unit's learning-rate schedule counts under stochastic updates: steps (global, every unit alike) | updates (its own)
  # Stale interface: the stages' synthetic gradients come from the
  # synthesizers of synth_delay steps before (a slow link); 0 = current.
  # Two networks (dni): A reads B's synthesizers of synth_delay episodes
  # before; 1 = as when A and B run side by side on two devices.
  config.dni.synth_delay = 0
  # Complete unlock (methods dni_unlocked / cdni_unlocked): a synthetic-input
  # model I_i(x) ≈ h_i per boundary; stage i+1 trains on I_i(x).
  # linear | mlp | conv (cnn only).
  config.dni.input_model = "mlp"
  config.dni.input_hidden = (1024,)  # mlp: hidden widths; conv: hidden channels
  # conv: max-pool after each hidden layer while the maps are at least twice
  # the target's size (as the stages pool); False: resize at the end only
  config.dni.input_pool = False
  # What I_i regresses onto: neighbour (the paper's: stage i's output on its
  # own synthetic input I_{i-1}(x); no real chain in training) | real_chain
  # (the composed stages' h_i on x).
  config.dni.input_targets = "neighbour"
  # Where the synthesizer M_i regresses under complete unlock: output (at
  # stage i's output h_i, where the stage reads it; a busy stage i holds M_i
  # back) | input_model (at I_i(x), where stage i+1 took M_i's target).
  config.dni.synth_fit_at = "output"
  config.dni.track_alignment = False  # log cosine(δ̂, ∂L/∂h) per boundary (costs a backward pass)

  config.opt = ml_collections.ConfigDict()
  config.opt.name = "adam"  # adam | sgd | momentum
  config.opt.learning_rate = 3e-5  # the stages' learning rate (3e-5: the paper's FF setting)
  config.opt.synth_learning_rate = config_dict.placeholder(float)  # the synthesizers' learning rate; None = learning_rate
  config.opt.momentum = 0.9  # momentum optimiser only
  config.opt.decay_steps = ()  # steps at which both learning rates are multiplied by decay_factor (training steps, also for a unit that stochastic updates hold back; but two_networks' A under dni/no_dni counts its T updates per episode, and with dni.synth_steps=k the synthesizers count k per window)
  config.opt.decay_factor = 0.1  # multiplies both learning rates at each of decay_steps (>= 0; 0 stops learning)
  config.opt.clip_norm = 0.0  # clip gradients to this global norm; 0 = off

  config.parallel = ml_collections.ConfigDict()
  # Stages on separate devices (docs/method.md): 0 = one device, no pipeline;
  # K > 0 = a pipeline over K devices (fake CPU devices, GPUs, or the
  # processes of experiments.launch). dni/cdni: the DNI pipeline (a step is a
  # tick: every device updates on a micro-batch of batch_size); backprop:
  # the backprop pipeline (GPipe fill-drain over parallel.microbatches).
  config.parallel.num_devices = 0
  config.parallel.stages_per_device = ()  # consecutive stages per device; () = balanced
  config.parallel.microbatches = 1  # backprop pipeline: micro-batches per batch (M)

  # Two networks at two timescales: configs/two_networks.py adds a
  # `two_networks` block (its presence selects that loop): T (A answers every
  # T digits, B every T messages), message_width, b_width (B's units),
  # sg_slots (each | shared), sg_context (none | b_state | label | b_state_label), reset_a;
  # data.name there: synthetic_digits | mnist.

  config.batch_size = 256  # training examples per step (sequence tasks: parallel streams)
  config.eval_batch_size = 1000  # examples per evaluation batch (character corpora: streams)
  config.num_steps = 10_000  # training steps (sequence tasks: windows of unroll time steps)
  config.log_every = 100  # train-metric averages + progress line
  config.eval_every = 1000  # evaluation on the test split
  config.checkpoint_every = 5000  # steps between Orbax checkpoints (and one at the end)
  config.unroll = 8  # sequence tasks: T, time steps per window (truncation length)
  config.patience = 0  # character corpora: stop after this many evaluations without a better valid bpc; 0 = never
  return config
