"""From a config to the objects of one run: data, network, method, optimisers.

Every config value is checked here, before anything is built, so that a bad
value ends in a ``ConfigError`` naming the field and the fix.
"""

from __future__ import annotations

import math
import os

import ml_collections
import optax

import jax.numpy as jnp

from dni_jax import data as data_lib
from dni_jax.core import gradient_sources
from dni_jax.core import losses
from dni_jax.core import network
from dni_jax.core import stochastic
from dni_jax.core import synthesizers
from dni_jax.core import synthetic_inputs
from dni_jax.core import tbptt
from dni_jax.core import two_networks
from dni_jax.core.train_state import Optimizers
from dni_jax.data import char_corpus
from dni_jax.data import copy_tasks
from dni_jax.data import digit_stream
from dni_jax.errors import ConfigError
from dni_jax.models import feedforward as models
from dni_jax.models import rnn

# The tuple fields: the type of their elements (ConfigDict checks a tuple
# field's type, not its elements') and an example value.
TUPLE_FIELDS = {
    "model.hidden": (int, "(128,64)"),
    "dni.hidden": (int, "(1024,1024)"),
    "dni.input_hidden": (int, "(1024,)"),
    "dni.stage_update_probs": (float, "(1.0,0.5,1.0)"),
    "opt.decay_steps": (int, "(24000,32000)"),
    "parallel.stages_per_device": (int, "(2,1)"),
}
MODEL_KINDS = ("fcn", "cnn", "mlp")
# The synthesizers: name -> (its module from config.dni, the activations it
# reads: "vectors" (flat activations, recurrent states) and/or "maps"
# (feature maps [B, H, W, C])). Adding a synthesizer: its module in
# dni_jax/core/synthesizers.py, its entry here, its test.
SYNTHESIZERS = {
    "linear": (lambda d: synthesizers.LinearSynthesizer(),
               ("vectors", "maps")),
    "mlp": (lambda d: synthesizers.MLPSynthesizer(tuple(d.hidden),
                                                  d.use_batch_norm),
            ("vectors", "maps")),
    "conv": (lambda d: synthesizers.ConvSynthesizer(tuple(d.hidden), (5, 5),
                                                    d.use_batch_norm),
             ("maps",)),
}
INPUT_MODELS = ("linear", "mlp", "conv")
OPTIMIZERS = ("adam", "sgd", "momentum")
_MAX_LINEAR_SYNTH_PARAMS = 50_000_000
COPY_TASKS = ("copy", "repeat_copy")


def is_recurrent(config: ml_collections.ConfigDict) -> bool:
  """Whether ``config.data.name`` is a sequence task (recurrent DNI)."""
  return config.data.name in data_lib.SEQUENCE_TASKS


def method_names(config: ml_collections.ConfigDict) -> list[str]:
  """``config.method`` split at commas (``families.methods`` checks them)."""
  return [m.strip() for m in str(config.method).split(",") if m.strip()]


def check_methods(config: ml_collections.ConfigDict, known) -> list[str]:
  """``method_names(config)``, each one of ``known`` and none twice."""
  names = method_names(config)
  if not names:
    raise ConfigError(f"config.method is empty; use one of {list(known)} "
                      "(or several, comma-separated, to compare them).")
  for name in names:
    if name not in known:
      raise ConfigError(f"unknown method {name!r} in --config.method for "
                        f"data.name={config.data.name!r}; choose from "
                        f"{list(known)}, or several comma-separated (e.g. "
                        f"{','.join(known)}).")
  if len(set(names)) != len(names):
    raise ConfigError(f"config.method names a method twice: {config.method!r}")
  return names


def _require(condition: bool, message: str) -> None:
  if not condition:
    raise ConfigError(message)


def _require_whole(value, field: str, minimum: int, meaning: str = "") -> None:
  """``config.<field>`` is a whole number (an int, not a bool) >= minimum."""
  _require(isinstance(value, int) and not isinstance(value, bool)
           and value >= minimum,
           f"{field} must be a whole number of at least {minimum}, got "
           f"{value!r}" + (f": {meaning}" if meaning else "."))


def _validate_optimizer(config: ml_collections.ConfigDict) -> None:
  """``opt``'s name, learning rates, decay factor, clip norm and momentum."""
  _require(config.opt.name in OPTIMIZERS,
           f"unknown optimiser {config.opt.name!r}; choose one of "
           f"{OPTIMIZERS}")
  for field in ("learning_rate", "synth_learning_rate"):
    value = config.opt.get(field)
    _require(value is None or (math.isfinite(value) and value > 0),
             f"opt.{field} must be a positive number, got {value}")
  factor = config.opt.decay_factor
  _require(math.isfinite(factor) and factor >= 0,
           f"opt.decay_factor must be a finite number, 0 or more, got "
           f"{factor}: it multiplies both learning rates at each of "
           "opt.decay_steps (0 stops learning there).")
  clip = config.opt.clip_norm
  _require(math.isfinite(clip) and clip >= 0,
           f"opt.clip_norm must be a finite number, 0 or more, got {clip}: "
           "the global norm gradients are clipped to (0: no clipping).")
  momentum = config.opt.momentum
  _require(math.isfinite(momentum) and 0 <= momentum < 1,
           f"opt.momentum must lie in [0, 1), got {momentum}: the momentum "
           "optimiser's decay of its running gradient.")


def _validate_counts_and_scale(config: ml_collections.ConfigDict) -> None:
  """The run's batch sizes and step counts (whole numbers >= 1) and a finite
  λ (``dni.sg_scale``), as every family has them."""
  for field in ("batch_size", "eval_batch_size", "eval_every", "log_every",
                "checkpoint_every", "num_steps"):
    _require_whole(config[field], f"config.{field}", 1)
  _require(math.isfinite(config.dni.sg_scale),
           f"dni.sg_scale must be finite, got {config.dni.sg_scale}")


def validate_tuple_fields(config: ml_collections.ConfigDict) -> None:
  """Every element of a ``TUPLE_FIELDS`` field has the field's element type."""
  for field, (kind, example) in TUPLE_FIELDS.items():
    node, leaf = config, field
    while "." in leaf:
      head, leaf = leaf.split(".", 1)
      node = node.get(head) if hasattr(node, "get") else None
    if node is None or leaf not in node:
      continue
    value = node[leaf]
    allowed = (int,) if kind is int else (int, float)
    bad = [v for v in value if isinstance(v, bool) or
           not isinstance(v, allowed)]
    if bad:
      what = "whole numbers" if kind is int else "numbers"
      raise ConfigError(
          f"--config.{field}={value!r}: the field {field} takes a tuple of "
          f"{what} ({kind.__name__}), e.g. --config.{field}={example}, "
          f"and {bad[0]!r} is not one.")


def validate_sequence_or_images(config: ml_collections.ConfigDict) -> None:
  """The checks of a feed-forward (image, bit), pipelined or sequence-task
  config (its methods already checked); ``ConfigError`` for the first
  unusable value."""
  _require(config.data.name in data_lib.DATASETS + data_lib.SEQUENCE_TASKS,
           f"unknown dataset {config.data.name!r} in --config.data.name; "
           f"choose one of {data_lib.DATASETS + data_lib.SEQUENCE_TASKS}")
  _require(not config.data.dir or os.path.isdir(config.data.dir),
           f"--config.data.dir={config.data.dir!r} does not exist; point it "
           "at the folder with the dataset's files, or leave it empty to use "
           "tensorflow-datasets.")
  if is_recurrent(config):
    _validate_recurrent(config)
  else:
    _require(config.model.kind in MODEL_KINDS,
             f"unknown model kind {config.model.kind!r} for data.name="
             f"{config.data.name!r}; choose one of {MODEL_KINDS}")
    _validate_stages(config)
  _validate_synthesizer(config, "maps" if config.model.kind == "cnn"
                        else "vectors")
  _validate_optimizer(config)
  _validate_counts_and_scale(config)
  _validate_parallel(config)
  _validate_update_probs(config)
  _validate_unlocking(config)


def _num_stages(config: ml_collections.ConfigDict) -> int:
  if config.model.kind == "mlp":
    return len(config.model.hidden) + 1
  return config.model.depth


def _validate_stages(config: ml_collections.ConfigDict) -> None:
  """A network of at least one stage, and two where a method decouples."""
  m = config.model
  if m.kind == "mlp":
    size = (f"model.kind='mlp' with model.hidden={tuple(m.hidden)} has "
            f"{_num_stages(config)} stage")
    fix = ("give model.hidden at least one width (e.g. "
           "--config.model.hidden=(128,64))")
  else:
    _require_whole(m.depth, "model.depth", 1, "the stages of the network.")
    size = (f"model.kind={m.kind!r} with model.depth={m.depth} has "
            f"{_num_stages(config)} stage")
    fix = "raise --config.model.depth to 2 or more"
  decoupled = [name for name in method_names(config)
               if gradient_sources.get_source(name).uses_synthesizers]
  names = " and ".join(decoupled)
  _require(_num_stages(config) >= 2 or not decoupled,
           f"method{'s' if len(decoupled) > 1 else ''} {names} "
           f"need{'' if len(decoupled) > 1 else 's'} at least two stages: "
           "synthetic gradients decouple the network at the boundaries "
           f"between stages, but {size} (no boundary, nothing decoupled). "
           f"To use {names}, {fix}; or train this network with "
           "--config.method=backprop.")


def _validate_unlocking(config: ml_collections.ConfigDict) -> None:
  """``dni.synth_delay`` and complete unlock's ``dni.input_*`` fields."""
  d = config.dni
  _require_whole(d.synth_delay, "dni.synth_delay", 0,
                 "the steps by which the synthesizers a stage uses lag "
                 "behind (0: the current ones).")
  unlocked = [m for m in method_names(config) if m.endswith("_unlocked")]
  _require(not unlocked or not config.parallel.num_devices,
           "the unlocked methods run on one device; set "
           "parallel.num_devices=0.")
  _require(d.input_targets in network.INPUT_TARGETS,
           f"unknown input targets {d.input_targets!r} in "
           f"dni.input_targets; choose one of {network.INPUT_TARGETS}: "
           "neighbour (the paper's: each input model regresses onto its "
           "stage's output on that stage's own synthetic input) or "
           "real_chain (onto the composed stages' output on x).")
  synth_fit_at = _synth_fit_at(config)
  _require(synth_fit_at in network.SYNTH_FITS,
           f"unknown dni.synth_fit_at {synth_fit_at!r}; choose one of "
           f"{network.SYNTH_FITS}: output (each synthesizer regresses at the "
           "output of the stage below it) or input_model (at that "
           "boundary's synthetic input I(x)).")
  if not unlocked:
    return
  _require(d.input_model in INPUT_MODELS,
           f"unknown input model {d.input_model!r} in dni.input_model; "
           f"choose one of {INPUT_MODELS}")
  _require(d.input_model != "conv" or config.model.kind == "cnn",
           "dni.input_model=conv predicts feature maps: use it with "
           "model.kind=cnn, or choose linear/mlp.")
  _require(not d.get("input_pool", False) or d.input_model == "conv",
           "dni.input_pool max-pools a conv input model's hidden maps; "
           f"dni.input_model is {d.input_model!r}: set "
           "--config.dni.input_model=conv or drop dni.input_pool.")


def validate_two_networks(config: ml_collections.ConfigDict) -> None:
  """The checks of a two-network config (its methods already checked)."""
  tn = config.two_networks
  for field in ("T", "message_width", "b_width"):
    _require_whole(tn[field], f"two_networks.{field}", 1)
  _require(tn.sg_slots in two_networks.SG_SLOTS,
           f"unknown two_networks.sg_slots {tn.sg_slots!r}; choose one of "
           f"{two_networks.SG_SLOTS} (one synthesizer per message slot, or "
           "one shared that reads the slot)")
  _require(tn.sg_context in two_networks.SG_CONTEXTS,
           f"unknown two_networks.sg_context {tn.sg_context!r}; choose one "
           f"of {two_networks.SG_CONTEXTS} (what the synthesizer reads "
           "beside the message)")
  _require(isinstance(tn.oracle, bool),
           f"two_networks.oracle must be True or False, got {tn.oracle!r}")
  _require(not tn.oracle or config.method == "dni",
           "two_networks.oracle replaces dni's synthetic gradient with B's "
           f"true one; it needs --config.method=dni, got {config.method!r}.")
  _require(config.data.name in digit_stream.SOURCES,
           f"unknown digit source {config.data.name!r} for the two-network "
           f"system; choose one of {digit_stream.SOURCES}")
  _require(not config.data.dir or os.path.isdir(config.data.dir),
           f"--config.data.dir={config.data.dir!r} does not exist; point it "
           "at the folder with MNIST's files, or leave it empty.")
  _require(config.model.kind in rnn.CELLS,
           f"unknown model kind {config.model.kind!r} for the two-network "
           f"system; choose one of {rnn.CELLS}")
  _validate_synthesizer(config, "vectors")
  _validate_optimizer(config)
  _validate_counts_and_scale(config)
  _require_whole(config.model.width, "config.model.width", 1)
  _require(not config.parallel.num_devices,
           "parallel.num_devices applies to feed-forward configs; set it to "
           "0 for the two-network system.")
  probs = update_probs(config)
  _require(all(float(p) == 1.0 for p in (
      probs if isinstance(probs, tuple) else (probs,))),
           "dni.update_prob and dni.stage_update_probs apply to "
           "feed-forward configs; leave them at 1 and () for the two-network "
           "system (its networks update on a schedule of their own: "
           "two_networks.T).")
  _require_whole(config.dni.synth_delay, "dni.synth_delay", 0,
                 "the episodes by which the synthesizers A uses lag behind "
                 "B's (0: those B has just trained; 1: as on two devices).")
  _require(not config.dni.synth_delay or (
      "dni" in method_names(config) and not tn.oracle),
           f"dni.synth_delay={config.dni.synth_delay} makes the "
           "synthesizers A uses stale; it needs dni among the methods and "
           f"two_networks.oracle off (got method {config.method!r}, oracle "
           f"{tn.oracle}). Set dni.synth_delay=0 otherwise.")


def _validate_recurrent(config: ml_collections.ConfigDict) -> None:
  _require(config.model.kind in rnn.CELLS,
           f"unknown model kind {config.model.kind!r} for the sequence task "
           f"{config.data.name!r}; choose one of {rnn.CELLS}")
  _require(not config.dni.synth_delay,
           "dni.synth_delay applies to the feed-forward step; set it to 0 "
           "for sequence tasks.")
  _require(config.dni.sg_state in rnn.SG_PARTS,
           f"unknown dni.sg_state {config.dni.sg_state!r}: the synthetic "
           "gradient sits on the core's output h (the paper's choice), on "
           "the LSTM's whole state ch, or on the whole state predicted from "
           f"h alone (h_ch); choose one of {rnn.SG_PARTS}.")
  _require(config.model.kind == "lstm" or not (
      config.model.forget_bias or config.model.peepholes),
           "model.forget_bias and model.peepholes are the LSTM's; set them "
           "to 0 and False for model.kind=rnn.")
  _require(math.isfinite(config.model.forget_bias),
           f"model.forget_bias must be a finite number, got "
           f"{config.model.forget_bias}; TensorFlow's and Sonnet's LSTMs use "
           "1.0, Flax's 0.0.")
  _require(config.dni.bootstrap in tbptt.BOOTSTRAPS,
           f"unknown dni.bootstrap {config.dni.bootstrap!r}: the "
           "synthesizer's target carries back the scaled synthetic gradient "
           "λ·M(h_end) (scaled) or M(h_end) itself (unscaled); choose one of "
           f"{tbptt.BOOTSTRAPS}.")
  _require(0.0 <= config.dni.target_decay < 1.0,
           f"dni.target_decay must be in [0, 1), got "
           f"{config.dni.target_decay}: 0 bootstraps the synthesizer's target "
           "from the synthesizer itself, a value such as 0.99 from a target "
           "network that averages its parameters with that decay per window.")
  _require_whole(config.dni.synth_steps, "dni.synth_steps", 1,
                 "the synthesizer's optax steps per window on that window's "
                 "target (1: the paper's one step).")
  _require_whole(config.dni.sg_warmup, "dni.sg_warmup", 0,
                 "the windows over which λ grows linearly from 0 (0: λ from "
                 "the first window, the paper's).")
  _require(not config.dni.sg_shuffle or config.batch_size >= 2,
           "dni.sg_shuffle gives each stream the synthetic gradient of "
           "another stream of the batch, and batch_size is 1: with one "
           "stream it would be DNI itself. Set batch_size to 2 or more.")
  _require(config.dni.sg_shuffle or config.dni.sg_shuffle_target,
           "dni.sg_shuffle_target=False keeps M's own target in the shuffled "
           "control, and dni.sg_shuffle is off, so it would change nothing. "
           "Set dni.sg_shuffle=True as well, or leave sg_shuffle_target at "
           "True.")
  for field, value in (("unroll", config.unroll),
                       ("model.width", config.model.width),
                       ("windows_per_call", config.windows_per_call)):
    _require_whole(value, f"config.{field}", 1)
  _require(config.data.name != "ptb_char" or config.data.dir,
           "data.name=ptb_char reads ptb.char.{train,valid,test}.txt from "
           "--config.data.dir; set it (e.g. ../shared/data/ptb), or use "
           "data.name=tiny_shakespeare (tensorflow-datasets).")
  if config.data.name in ("copy", "repeat_copy"):
    _require_whole(config.data.start_length, "data.start_length", 1,
                   "the curriculum's first sequence length.")
    _require_whole(config.data.max_repeats, "data.max_repeats", 1,
                   "Repeat Copy's largest number of repeats.")
    _require(1 <= config.data.start_repeats <= config.data.max_repeats,
             "data.start_repeats must be in 1..data.max_repeats "
             f"({config.data.max_repeats}), got {config.data.start_repeats}")
    _require_whole(config.data.check_every, "data.check_every", 1,
                   "the windows between the curriculum's checks.")
    _require(config.data.error_measure in copy_tasks.ERROR_MEASURES,
             "data.error_measure must be one of "
             f"{', '.join(copy_tasks.ERROR_MEASURES)} "
             f"(how the curriculum reads the paper's \"averaging below 0.15 "
             f"bits error\"), got {config.data.error_measure!r}")


def update_probs(config: ml_collections.ConfigDict):
  """``dni.stage_update_probs`` if given, else ``dni.update_prob``."""
  return tuple(config.dni.stage_update_probs) or config.dni.update_prob


def schedule_clock(config: ml_collections.ConfigDict) -> str:
  """``dni.schedule_clock``; "steps" for a config read from a run made
  before the field (it matters only at ``update_prob < 1``, and such a run
  is compared with its config under ``workdir.ADDED_FIELDS`` first)."""
  return config.dni.get("schedule_clock", "steps")


def _validate_update_probs(config: ml_collections.ConfigDict) -> None:
  probs = update_probs(config)
  values = probs if isinstance(probs, tuple) else (probs,)
  _require(all(0.0 <= float(p) <= 1.0 for p in values),
           f"dni.update_prob / dni.stage_update_probs must lie in [0, 1], "
           f"got {probs}")
  clock = schedule_clock(config)
  _require(clock in stochastic.CLOCKS,
           f"unknown dni.schedule_clock {clock!r}; choose one of "
           f"{stochastic.CLOCKS}: what a unit's learning-rate schedule counts "
           "under stochastic updates (steps: global steps, every unit alike; "
           "updates: its own updates).")
  if all(float(p) == 1.0 for p in values):
    return
  _require(not is_recurrent(config) and not config.parallel.num_devices,
           "stochastic updates (dni.update_prob < 1) apply to the "
           "feed-forward step on one device, not to sequence tasks or "
           "pipelines.")
  _require(not ("backprop" in method_names(config) and len(set(values)) > 1),
           "backprop updates the whole network at once (one coin per "
           "step); give it one dni.update_prob, not per-stage values.")
  _require(not isinstance(probs, tuple) or len(probs) == _num_stages(config),
           f"dni.stage_update_probs has {len(values)} values for the "
           f"network's {_num_stages(config)} stages; give one per stage, "
           "or one dni.update_prob for all.")


def _validate_parallel(config: ml_collections.ConfigDict) -> None:
  """The ``parallel.*`` fields (a pipelined run)."""
  par = config.parallel
  if par.num_devices < 0:
    raise ConfigError(f"parallel.num_devices must be >= 0 (0 = no pipeline), "
                      f"got {par.num_devices}")
  if par.microbatches < 1:
    raise ConfigError(f"parallel.microbatches must be >= 1, got "
                      f"{par.microbatches}")
  if not par.num_devices:
    return
  if is_recurrent(config):
    raise ConfigError("parallel.num_devices applies to feed-forward configs; "
                      f"data.name={config.data.name!r} is a sequence task.")
  if "backprop" in method_names(config) and config.batch_size % par.microbatches:
    raise ConfigError(
        f"batch_size={config.batch_size} does not split into "
        f"parallel.microbatches={par.microbatches} equal micro-batches; "
        "choose a batch size that is a multiple of it.")
  if config.dni.track_alignment:
    raise ConfigError("dni.track_alignment needs the true gradient of every "
                      "boundary in one program; turn it off for a pipeline.")


def load_data(config: ml_collections.ConfigDict):
  """``(train, test)`` ``ArrayDataset``s of ``config.data``."""
  kwargs = dict(data_dir=config.data.dir,
                tfds_data_dir=config.data.tfds_data_dir or None,
                download=config.data.download, seed=config.seed,
                num_bits=config.data.num_bits)
  return (data_lib.load_dataset(config.data.name, "train", **kwargs),
          data_lib.load_dataset(config.data.name, "test", **kwargs))


def _stages(config, num_outputs):
  m = config.model
  if m.kind == "fcn":
    return models.fcn_stages(m.depth, m.width, num_outputs, m.use_batch_norm)
  if m.kind == "cnn":
    return models.cnn_stages(m.depth, m.features, num_outputs,
                             use_batch_norm=m.use_batch_norm)
  return models.mlp_stages(tuple(m.hidden), num_outputs, m.activation,
                           m.use_batch_norm)


def _validate_synthesizer(config: ml_collections.ConfigDict,
                          activations: str) -> None:
  """``dni.synthesizer`` names a registered synthesizer that reads
  ``activations`` ("vectors" or "maps")."""
  name = config.dni.synthesizer
  _require(name in SYNTHESIZERS, f"unknown synthesizer {name!r}; choose one "
           f"of {tuple(SYNTHESIZERS)}")
  fits = [n for n, (_, reads) in SYNTHESIZERS.items() if activations in reads]
  _require(activations in SYNTHESIZERS[name][1],
           f"dni.synthesizer={name} reads "
           f"{' or '.join(SYNTHESIZERS[name][1])}"
           + (" (it needs feature maps: use it with model.kind=cnn)"
              if activations == "vectors" else "")
           + f"; this run's activations are {activations}: choose one of "
           f"{fits}.")


def make_synthesizer(config: ml_collections.ConfigDict):
  """The synthesizer module ``config.dni.synthesizer`` names."""
  return SYNTHESIZERS[config.dni.synthesizer][0](config.dni)


def _synthesizer(config):
  if config.dni.synthesizer != "linear":
    return make_synthesizer(config)
  if config.model.kind == "cnn":
    flat = (config.model.features * 28 * 28) ** 2 / 4  # first boundary, pooled
    _require(flat <= _MAX_LINEAR_SYNTH_PARAMS,
             "a linear synthesizer on flattened CNN feature maps would have "
             f"~{flat / 1e6:.0f}M parameters; use dni.synthesizer=conv.")
  return make_synthesizer(config)


def build_network(config: ml_collections.ConfigDict,
                  train: data_lib.ArrayDataset) -> network.DecoupledNetwork:
  """The stages, a synthesizer per boundary (unless backprop), task loss."""
  classification = train.labels.ndim == 1
  num_outputs = (int(train.labels.max()) + 1 if classification
                 else train.labels.shape[-1])
  stages = _stages(config, num_outputs)
  source = gradient_sources.get_source(config.method)
  uses_synths = source.uses_synthesizers
  return network.decouple(
      stages, _synthesizer(config) if uses_synths else None,
      loss_fn=(losses.softmax_cross_entropy if classification
               else losses.sigmoid_binary_cross_entropy),
      metrics_fn=(losses.classification_metrics if classification
                  else losses.bit_metrics),
      sg_scale=config.dni.sg_scale,
      input_model=_input_model(config) if source.unlocked else None,
      input_targets=config.dni.input_targets,
      synth_fit_at=_synth_fit_at(config))


def _synth_fit_at(config: ml_collections.ConfigDict) -> str:
  """``dni.synth_fit_at``; "output" for a config read from a run made
  before the field (the behaviour then)."""
  return config.dni.get("synth_fit_at", "output")


def _input_model(config):
  d = config.dni
  if d.input_model == "conv":
    return synthetic_inputs.ConvInputModel(tuple(d.input_hidden),
                                           pool=d.get("input_pool", False))
  if d.input_model == "mlp":
    return synthetic_inputs.MLPInputModel(tuple(d.input_hidden))
  return synthetic_inputs.LinearInputModel()


def _optimizer(opt, learning_rate):
  """``opt``'s transformation, its base learning rate kept in its state.

  ``optax.inject_hyperparams`` stores the learning rate in the optimiser
  state (``state.hyperparams["learning_rate"]``), so the transformation is
  the same static object for every member of a sweep that varies it; the
  decay schedule multiplies that stored value.
  """
  boundaries = {int(s): opt.decay_factor for s in opt.decay_steps}

  def transformation(learning_rate):
    schedule = optax.piecewise_constant_schedule(learning_rate, boundaries)
    if opt.name == "adam":
      tx = optax.adam(schedule)
    elif opt.name == "momentum":
      tx = optax.sgd(schedule, momentum=opt.momentum)
    else:
      tx = optax.sgd(schedule)
    if opt.get("clip_norm"):
      tx = optax.chain(optax.clip_by_global_norm(opt.clip_norm), tx)
    return tx

  return optax.inject_hyperparams(transformation, hyperparam_dtype=jnp.float32)(
      learning_rate=learning_rate)


def build_optimizers(config: ml_collections.ConfigDict) -> Optimizers:
  """One transformation for the stages, one for the synthesizers (and the
  input models of complete unlock).

  Each keeps its learning rate in its state (``_optimizer``): a state
  initialised from a member's config carries that member's rates.
  """
  opt = config.opt
  synth_lr = opt.get("synth_learning_rate") or opt.learning_rate
  return Optimizers(_optimizer(opt, opt.learning_rate),
                    _optimizer(opt, synth_lr))


def load_digit_streams(config: ml_collections.ConfigDict):
  """``(train, test)`` ``DigitStream``s of a two-network config."""
  if config.data.name == "synthetic_digits":
    splits = [digit_stream.synthetic_digits(s)  # one set for every seed
              for s in ("train", "test")]
  else:
    splits = load_data(config)
  return tuple(digit_stream.DigitStream.from_dataset(d) for d in splits)


def build_two_networks(
    config: ml_collections.ConfigDict) -> two_networks.TwoNetworks:
  """Network A (digits → odd count and message), network B (messages → count
  of 3s), the method and its synthesizer."""
  tn = config.two_networks
  core_a = rnn.RecurrentCore(config.model.kind, config.model.width,
                             tn.T + 1 + tn.message_width)
  core_b = rnn.RecurrentCore(config.model.kind, tn.b_width, tn.T * tn.T + 1)
  synth = make_synthesizer(config) if config.method == "dni" else None
  return two_networks.TwoNetworks(
      core_a, core_b, tn.T, tn.message_width, config.method, synth,
      config.dni.sg_scale, tn.sg_slots,
      tn.reset_a, tn.sg_context, tn.oracle,
      config.dni.synth_delay if config.method == "dni" else 0)


def load_corpus(config: ml_collections.ConfigDict) -> char_corpus.Corpus:
  """The character corpus of ``config.data`` (PTB from data.dir, or tfds)."""
  if config.data.name == "ptb_char":
    return char_corpus.load_ptb_char(config.data.dir)
  return char_corpus.load_tiny_shakespeare(config.data.tfds_data_dir or None,
                                           config.data.download)


def build_task(config: ml_collections.ConfigDict):
  """``(task, data, corpus)``: the task, its device arrays, the corpus (LM)."""
  if config.data.name in COPY_TASKS:
    d = config.data
    task = copy_tasks.CopyTask(
        config.batch_size, config.unroll, repeat=d.name == "repeat_copy",
        num_bits=d.num_bits, max_repeats=d.max_repeats,
        start_length=d.start_length, start_repeats=d.start_repeats,
        threshold=d.threshold, check_every=d.check_every, seed=config.seed,
        error_measure=d.error_measure)
    return task, {}, None
  corpus = load_corpus(config)
  train_streams = char_corpus.streams(corpus.splits["train"],
                                      config.batch_size)
  task = char_corpus.CharStreamTask(config.batch_size, config.unroll,
                                    corpus.vocab_size, train_streams.shape[1])
  return task, jnp.asarray(train_streams), corpus


def build_recurrent(config: ml_collections.ConfigDict,
                    task) -> tbptt.RecurrentDNI:
  """The core, synthesizer and method of a sequence-task config."""
  core = rnn.RecurrentCore(config.model.kind, config.model.width,
                           task.num_outputs, task.vocab_size,
                           forget_bias=config.model.forget_bias,
                           peepholes=config.model.peepholes)
  d = config.dni
  synth = make_synthesizer(config)
  return tbptt.build(config.method, core, task.loss, synth,
                     d.sg_scale,
                     d.aux_weight, sg_on=d.sg_state, bootstrap=d.bootstrap,
                     target_decay=d.target_decay, synth_steps=d.synth_steps,
                     sg_shuffle=d.sg_shuffle,
                     shuffle_target=d.sg_shuffle_target,
                     sg_warmup=d.sg_warmup)
