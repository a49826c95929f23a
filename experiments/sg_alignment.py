"""Is a recurrent run's synthetic gradient aligned with what it stands for?

  python -m experiments.sg_alignment <workdir> [--probes=100] [--horizon=4]

Restores the run's newest complete checkpoint (bptt, dni or dni_aux on Copy,
Repeat Copy or PTB) and, at those fixed parameters, probes ``--probes``
consecutive windows of its own data stream (every window, so that no phase
of a periodic task is favoured; the state carried on from window to window,
the task's own state, e.g. Copy's curriculum, held, and λ held at the value
the run's step used at the checkpoint, below ``dni.sg_scale`` during a
``dni.sg_warmup``): for each, the core's
parameter gradient from the window's loss (truncated BPTT's), from the
synthetic term (DNI's addition; zero for bptt), from the losses of the next
``--horizon`` windows through the window's end output ``h_T`` (what the
synthetic gradient stands for, exact to that horizon) and from what ``M``'s
own regression converges to (the same, discounted by λ per window and with
``c`` cut at every boundary), as ``dni_jax.core.sg_alignment`` defines them.
It prints their mean cosines and norms over the probes, the cosines of the
same gradients summed over all probes (the expected directions, with the
per-window noise averaged out), for a run trained with Adam the mean
cosines and norms of the steps they make (each gradient times the
checkpoint's per-coordinate ``1/(√ν̂+ε)``: Adam can let a term that is
small in norm decide the step where the others are small), and the
held-out R² of the best linear map from what ``M`` reads to each target
(fitted on the first four fifths of the probes); with ``--mlp_hidden``,
also that of an MLP (``sg_alignment.held_out_mlp_fit``), which asks whether anything nonlinear
in what ``M`` reads predicts the target where no linear map does. With
``--online_lrs``, a map of ``M``'s form trained online on the same windows
(``sg_alignment.online_linear_fit``: what ``M``'s regression would learn
if the core held still); with ``--score_on``, later checkpoints of the same
run, where the maps fitted here are scored again (how fast ``M``'s target
moves with the core).
Nothing in the workdir is written.
"""

import os

from absl import app
from absl import flags

from experiments import cli

_PROBES = flags.DEFINE_integer("probes", 100, "Windows to probe.")
_HORIZON = flags.DEFINE_integer(
    "horizon", 4, "Later windows whose losses make the future gradient.")
_MLP_HIDDEN = flags.DEFINE_list(
    "mlp_hidden", [],
    "Also fit an MLP of these hidden widths (e.g. 256,256) from what M reads "
    "to each target, and print its held-out R² (empty: the linear fit only).")
_MLP_STEPS = flags.DEFINE_integer("mlp_steps", 3000,
                                  "Adam steps of each MLP fit.")
_ONLINE_LRS = flags.DEFINE_list(
    "online_lrs", [],
    "Also train an affine map online on the probed windows as M is trained "
    "(zero start, one Adam step per window) at each of these learning rates, "
    "and print its held-out R² on M's fixed point (empty: not run).")
_SCORE_ON = flags.DEFINE_list(
    "score_on", [],
    "Later checkpoints of the same run (copies of its workdir trained on): "
    "score there the maps of M's fixed point fitted on this run's probes, "
    "beside a map fitted there (how fast the target moves with the core).")
_TRACEBACK = flags.DEFINE_bool(
    "traceback", False, "On an error, show the Python traceback too.")

_SUMS = ("g_win", "g_syn", "g_fut", "g_all", "g_fix")


def _probe_run(workdir: str, probes: int, horizon: int):
  """Restores ``workdir`` and probes ``probes`` consecutive windows of its
  stream: ``(config, step, rows, sums, examples, part)``, per window the
  ``compare`` figures and the per-example arrays, the gradients summed
  over the windows, and ``sg_alignment.part_names`` of the run's core."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from dni_jax.core import sg_alignment  # pylint: disable=g-import-not-at-top
  from dni_jax.core import tbptt  # pylint: disable=g-import-not-at-top
  from dni_jax.training import evaluate  # pylint: disable=g-import-not-at-top
  config, task, data, rdni, _, state, step = evaluate.restore_run(
      workdir, synthesizer=False)
  span = horizon + 1
  # λ as the run's train step used it at the checkpoint (below its
  # configured value while dni.sg_warmup lasts).
  sg_scale = tbptt.warmed_scale(rdni, state)

  # Adam's per-coordinate step size at the checkpoint (None without Adam).
  scale = sg_alignment.adam_scale(state.opt_state)

  @jax.jit
  def probe(carry, first, sums, data):
    batches = sg_alignment.stream_windows(task, data, state.task, first,
                                          span)
    grads, end = sg_alignment.gradients(
        rdni, state.params, carry, batches, state.synth_params,
        state.synth_state, sg_scale)
    sums = {k: sums[k] + grads[k] for k in _SUMS}
    examples = {k: grads[k] for k in ("input_B", "state_B", "future_B",
                                      "fixed_B", "sg_B")}
    return end, sums, sg_alignment.compare(grads, scale), examples

  part = sg_alignment.part_names(rdni.core)
  carry = state.carry
  size = sum(x.size for x in jax.tree_util.tree_leaves(state.params))
  sums = {k: jnp.zeros((size,), jnp.float32) for k in _SUMS}
  rows, examples = [], []
  for i in range(probes):
    carry, sums, row, seen = probe(carry, state.step + i, sums, data)
    rows.append(jax.device_get(row))
    examples.append(jax.device_get(seen))
  return config, step, rows, sums, examples, part


def measure(workdir: str, probes: int, horizon: int,
            mlp_hidden: tuple[int, ...] = (), mlp_steps: int = 3000,
            online_lrs: tuple[float, ...] = (),
            score_on: tuple[str, ...] = ()) -> dict:
  """The probes' mean ``sg_alignment.compare`` figures (``mean_<name>``),
  the cosines of the summed gradients (``sum_<name>``), the held-out fits
  (``r2_linear``/``r2_own`` of the future gradient, ``fix_r2_*`` of M's
  fixed point; ``r2_mlp``/``fix_r2_mlp`` with ``mlp_hidden``, and from the
  whole state ``*_state``; ``online_r2``, one per ``online_lrs``;
  ``score_on``, per later checkpoint the held-out R² there of the maps
  fitted here beside one fitted there), ``step``, ``method``, and
  ``sg_on`` and ``sg_reads``, ``sg_alignment.part_names`` of the run's
  core, and ``has_cell``, whether its state has an LSTM's cell state."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from dni_jax.core import sg_alignment  # pylint: disable=g-import-not-at-top
  from dni_jax.core.losses import cosine_similarity  # pylint: disable=g-import-not-at-top
  from dni_jax.core.losses import r_squared  # pylint: disable=g-import-not-at-top
  from dni_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  from dni_jax.training import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  if probes < 1 or horizon < 1 or mlp_steps < 1:
    raise ConfigError(f"--probes={probes}, --horizon={horizon}, "
                      f"--mlp_steps={mlp_steps}: give at least 1 of each.")
  if (online_lrs or score_on) and (
      probes < 2 or any(not lr > 0 for lr in online_lrs)):
    raise ConfigError(f"--online_lrs={','.join(map(str, online_lrs))}, "
                      f"--score_on with --probes={probes}: give positive "
                      "learning rates and at least 2 probes (the fits train "
                      "on the first four fifths and score the rest).")
  if mlp_hidden and (probes < 10 or any(h < 1 for h in mlp_hidden)):
    raise ConfigError(f"--mlp_hidden={','.join(map(str, mlp_hidden))} with "
                      f"--probes={probes}: an MLP fit needs widths of at least "
                      "1 and at least 10 probes (it fits on the first "
                      "four fifths, stops early on the last fifth of those, "
                      "and scores the rest).")
  config, step, rows, total, examples, part = _probe_run(workdir, probes,
                                                         horizon)
  got = {f"mean_{k}": float(np.mean([r[k] for r in rows])) for k in rows[0]}

  def cos(a, b):
    return float(cosine_similarity(a, b))

  longer = total["g_win"] + total["g_all"]
  got.update(sum_cos_syn_fut=cos(total["g_syn"], total["g_fut"]),
             sum_cos_syn_all=cos(total["g_syn"], total["g_all"]),
             sum_cos_syn_fix=cos(total["g_syn"], total["g_fix"]),
             sum_cos_bptt=cos(total["g_win"], longer),
             sum_cos_dni=cos(total["g_win"] + total["g_syn"], longer))
  # The offline fits: the first probes' examples to fit, the last fifth's
  # (later in the stream) to score.
  if probes > 1:
    split = probes - max(1, probes // 5)

    def stack(k, part):
      return np.concatenate([e[k] for e in part])

    train, held = examples[:split], examples[split:]
    synth = config.method != "bptt"
    for target, prefix in (("future_B", ""), ("fixed_B", "fix_")):
      got.update({prefix + k: float(v) for k, v in sg_alignment.held_out_fit(
          stack("input_B", train), stack(target, train),
          stack("input_B", held), stack(target, held),
          stack("sg_B", train) if synth else None,
          stack("sg_B", held) if synth else None).items()})
      reads = ["input_B"]
      if examples[0]["state_B"].shape[-1] != examples[0]["input_B"].shape[-1]:
        reads.append("state_B")  # M reads h alone: would (c, h) tell more?
        got[prefix + "r2_linear_state"] = float(sg_alignment.held_out_fit(
            stack("state_B", train), stack(target, train),
            stack("state_B", held), stack(target, held))["r2_linear"])
      for read in reads if mlp_hidden else ():
        got[prefix + "r2_mlp" + ("_state" if read == "state_B" else "")] = (
            sg_alignment.held_out_mlp_fit(
                stack(read, train), stack(target, train),
                stack(read, held), stack(target, held),
                hidden=tuple(mlp_hidden), steps=mlp_steps))
    # Maps of M's fixed point, to score here and at later checkpoints (the
    # linear one is held_out_fit's above, fitted again for --score_on).
    fitted = {}
    if score_on:
      fitted["linear"] = sg_alignment.ridge_map(stack("input_B", train),
                                                stack("fixed_B", train))
    if online_lrs:
      fitted["online"] = sg_alignment.online_linear_fit(
          np.stack([e["input_B"] for e in train]),
          np.stack([e["fixed_B"] for e in train]), online_lrs,
          config.opt.get("clip_norm"))
      got["online_r2"] = _online_r2(fitted["online"], stack("input_B", held),
                                    stack("fixed_B", held))
    got["score_on"] = []
    for other in score_on:
      o_config, o_step, _, _, o_examples, _ = _probe_run(other, probes,
                                                         horizon)
      differ, what = workdir_lib.difference(
          os.path.join(other, workdir_lib.CONFIG_FILE), config)
      if differ:
        raise ConfigError(
            f"--score_on={other} is not a later checkpoint of the run in "
            f"{workdir}: its config differs ({what}). Give later checkpoints "
            "of the same run (a copy of its workdir trained on).")
      o_train, o_held = o_examples[:split], o_examples[split:]
      x, y = stack("input_B", o_held), stack("fixed_B", o_held)
      o_synth = o_config.method != "bptt"
      here = sg_alignment.held_out_fit(
          stack("input_B", o_train), stack("fixed_B", o_train), x, y,
          stack("sg_B", o_train) if o_synth else None,
          stack("sg_B", o_held) if o_synth else None)
      got["score_on"].append({
          "workdir": other, "step": o_step,
          "linear": float(r_squared(sg_alignment.affine(fitted["linear"], x),
                                    y)),
          "linear_here": float(here["r2_linear"]),
          "own_here": float(here["r2_own"]) if o_synth else None,
          "online": (_online_r2(fitted["online"], x, y) if online_lrs
                     else None)})
  return {"step": step, "method": str(config.method), "sg_on": part[0],
          "sg_reads": part[1],
          "has_cell": config.model.kind == "lstm", **got}


def _online_r2(maps, x, y) -> list[float]:
  """Held-out R² of each of ``online_linear_fit``'s maps on ``x``, ``y``."""
  from dni_jax.core.losses import r_squared  # pylint: disable=g-import-not-at-top
  weights, biases = maps
  return [float(r_squared(x @ w + b, y)) for w, b in zip(weights, biases)]


def report(workdir: str, got: dict, probes: int, horizon: int,
           mlp_hidden: tuple[int, ...] = (),
           online_lrs: tuple[float, ...] = ()) -> str:
  """The printed lines."""
  fitted_on = probes - max(1, probes // 5)
  synth = got["method"] != "bptt"
  on, reads = got.get("sg_on", "h_T"), got.get("sg_reads", "h_T")
  own = got.get("mean_cos_state_own", float("nan"))
  lines = [f"{workdir} ({got['method']}): from step {got['step']}, {probes} "
           f"probes, horizon {horizon} windows"]
  if synth:
    lines += [
        f"  synthetic vs future gradient (the next {horizon} windows' losses "
        f"through {on}): cosine {got['mean_cos_syn_fut']:.4f} per window, "
        f"{got['sum_cos_syn_fut']:.4f} summed over probes"]
    # Only where the synthetic gradient sits on h_T of an LSTM is the whole
    # state's gradient another one.
    if on == "h_T" and got.get("has_cell", True):
      lines.append(
          f"  synthetic vs future gradient through the whole state (c, h): "
          f"cosine {got['mean_cos_syn_all']:.4f} per window, "
          f"{got['sum_cos_syn_all']:.4f} summed")
    lines += [
        f"  synthetic vs M's fixed point (discounted per window, c cut): "
        f"cosine {got['mean_cos_syn_fix']:.4f} per window, "
        f"{got['sum_cos_syn_fix']:.4f} summed",
        f"  norms per window: synthetic {got['mean_norm_syn']:.4g}, future "
        f"{got['mean_norm_fut']:.4g}, window {got['mean_norm_win']:.4g}",
        f"  per example, λ·M({reads}) vs ∂(future)/∂{on}: cosine "
        f"{got['mean_cos_state']:.4f}; vs M's fixed point "
        f"{got['mean_cos_state_fix']:.4f}; each with its batch mean "
        "removed (the stream's own part) "
        + ("n/a (one stream)" if own != own else f"{own:.4f}")]
  else:
    lines.append(f"  norms per window: future {got['mean_norm_fut']:.4g}, "
                 f"window {got['mean_norm_win']:.4g}")
  lines.append(
      f"  vs the update over {horizon} more windows: truncated BPTT's cosine "
      f"{got['mean_cos_bptt']:.4f} per window ({got['sum_cos_bptt']:.4f} "
      "summed)" + ("" if not synth else
                   f", with the synthetic gradient {got['mean_cos_dni']:.4f} "
                   f"({got['sum_cos_dni']:.4f})"))
  if "mean_adam_cos_bptt" in got:
    lines.append(
        "  as steps of Adam (each gradient times the run's 1/(√ν̂+ε) per "
        f"coordinate): truncated BPTT's cosine {got['mean_adam_cos_bptt']:.4f}"
        + ("" if not synth else
           f", with the synthetic gradient {got['mean_adam_cos_dni']:.4f}; "
           f"synthetic vs future cosine {got['mean_adam_cos_syn_fut']:.4f}; "
           f"norms per window: synthetic {got['mean_adam_norm_syn']:.4g}, "
           f"future {got['mean_adam_norm_fut']:.4g}, window "
           f"{got['mean_adam_norm_win']:.4g}"))
  if got["method"] == "dni_aux":
    lines.append("  (dni_aux: the Aux loss's gradient is in neither update)")
  if "r2_linear" in got:
    width = "-".join(map(str, mlp_hidden))

    def own(p):
      line = ((f", an MLP {width} {got[p + 'r2_mlp']:.4f}"
               if p + "r2_mlp" in got else "")
              + (f", the run's own λ·M (best factor) {got[p + 'r2_own']:.4f}"
                 if synth else ""))
      if p + "r2_linear_state" in got:
        line += (f"; from the whole state (c, h): linear "
                 f"{got[p + 'r2_linear_state']:.4f}"
                 + (f", an MLP {width} {got[p + 'r2_mlp_state']:.4f}"
                    if p + "r2_mlp_state" in got else ""))
      return line
    lines += [
        f"  held-out R² (the last fifth of the probes) of ∂(future)/∂{on}: the "
        f"best linear map from what M reads {got['r2_linear']:.4f}" + own(""),
        f"  held-out R² of M's fixed point: the best linear map "
        f"{got['fix_r2_linear']:.4f}" + own("fix_")]
  if "online_r2" in got:
    lines.append(
        f"  held-out R² of M's fixed point, an affine map trained online on "
        f"the first {fitted_on} probes as M is (from zero, one Adam step per "
        "window): " + ", ".join(f"lr {lr:g} {r:.4f}" for lr, r in zip(
            online_lrs, got["online_r2"])))
  for later in got.get("score_on", ()):
    lines.append(
        f"  at {later['workdir']} (step {later['step']}), held-out R² of M's "
        f"fixed point: the linear map fitted at step {got['step']} "
        f"{later['linear']:.4f}, one fitted there {later['linear_here']:.4f}"
        + ("" if later["own_here"] is None else
           f", its own λ·M (best factor) {later['own_here']:.4f}")
        + ("" if later["online"] is None else
           "; the online maps fitted at step " + str(got["step"]) + ": "
           + ", ".join(f"lr {lr:g} {r:.4f}" for lr, r in zip(
               online_lrs, later["online"]))))
  return "\n".join(lines)


def main(argv):
  def probe(workdir):
    hidden = tuple(int(h) for h in _MLP_HIDDEN.value)
    online = tuple(float(lr) for lr in _ONLINE_LRS.value)
    return hidden, online, measure(workdir, _PROBES.value, _HORIZON.value,
                                   hidden, _MLP_STEPS.value, online,
                                   tuple(_SCORE_ON.value))
  hidden, online, got = cli.run_on_workdir(
      argv, "python -m experiments.sg_alignment <workdir>", probe,
      _TRACEBACK.value)
  print(report(argv[1], got, _PROBES.value, _HORIZON.value, hidden, online))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
