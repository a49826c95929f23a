"""The two-network system on two devices: A on device 0, B on device 1.

``dni_jax.core.two_networks`` trains A and B in one program. Here each
network has its own device (in a multi-process run, its own process), its
own jitted program, and the two meet once or twice an episode in an
``Exchange`` (one swap over a two-device mesh; gloo between processes on
CPU). What a step costs then depends on who waits for whom:

- ``locked``: A runs its episode forward (``jax.vjp``, residuals kept on
  device 0) and sends its ``T`` messages; B updates and sends back its
  gradient w.r.t. each message; A pulls it back and updates. A waits for B
  at every episode, and the two transfers are in series. The update is
  ``train_step``'s, with the same gradients.
- ``dni``: at tick ``t`` A runs episode ``t`` (``a_phase``: its ``T``
  window updates, each from its loss and the synthetic gradients) while B
  learns from episode ``t − 1`` (``b_phase``: its update and the
  synthesizers' regression onto its true gradients). Then one swap: A's
  messages of episode ``t`` go to B, the synthesizers B has just trained
  (and, where ``M`` reads B's state, B's parameters) go to A. A does not
  wait for B's gradients (the swap still meets B, so a tick costs the
  slower side plus the swap): A's episode ``t + 1`` uses synthesizers
  trained on episodes up to ``t − 1``, one episode staler than in
  ``train_step``, which runs the phases in turn (``synth_delay=1`` there
  trains this system, on one device).
- ``no_dni``: as dni, with nothing sent back to A.

A tick's inputs come from ``batch(t)``, which every process calls for
itself (the generated episodes are a function of the step, so the two
agree). After the last tick, ``drain`` lets B learn from the last episode.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from dni_jax.core import interface
from dni_jax.core import two_networks as tn_lib
from dni_jax.core.train_state import Optimizers
from dni_jax.errors import ConfigError
from dni_jax.parallel.exchange import Exchange

BatchFn = Callable[[int], dict]
A, B = 0, 1  # the devices


class _Packer:
  """A pytree of float arrays as one ``[1, 1, width]`` float32 row and back."""

  def __init__(self, example):
    flat, self._unravel = ravel_pytree(example)
    self.size = self.width = flat.size

  def pack(self, tree) -> jax.Array:
    flat = ravel_pytree(tree)[0].astype(jnp.float32)
    return jnp.pad(flat, (0, self.width - self.size))[None, None]

  def unpack(self, row: jax.Array):
    return self._unravel(row[0, 0, :self.size])


class TwoDeviceSystem:
  """A two-network system (``tn_lib.TwoNetworks``) with A and B apart.

  Args:
    tn: the static parts, any method.
    optimizers: as for ``tn_lib.train_step``.
    devices: two devices, A's then B's; in a multi-process run, every
      process's, in the same order on every process.
    example_batch: one batch (its shapes).

  The state is ``{device: TwoNetworksState}`` for the local devices; each
  is a whole state of which only its network's fields (device 1: and the
  synthesizers') are current. ``merged`` joins two of them.
  """

  def __init__(self, tn: tn_lib.TwoNetworks, optimizers: Optimizers,
               devices: Sequence[jax.Device], example_batch: dict):
    if len(devices) != 2:
      raise ConfigError(f"the two-network system puts A and B on two "
                        f"devices; got {len(devices)}. Start 2 processes "
                        "(experiments.launch --num_processes=2) or fake 2 "
                        "devices (XLA_FLAGS=--xla_force_host_platform_"
                        "device_count=2).")
    if tn.oracle:
      raise ConfigError("two_networks.oracle gives A B's true gradients, "
                        "which needs B's parameters where A runs; it is a "
                        "one-device diagnostic. Set it to False here.")
    if tn.synth_delay:
      raise ConfigError(f"synth_delay={tn.synth_delay}: on two devices "
                        "A's synthesizers are one episode stale already (as "
                        "synth_delay=1 on one device); set synth_delay=0 "
                        "here.")
    self.tn, self.optimizers = tn, optimizers
    self.devices = tuple(devices)
    self.exchange = Exchange(self.devices)
    self.local = self.exchange.local
    state = jax.eval_shape(lambda: tn_lib.init_train_state(
        tn, optimizers, jax.random.PRNGKey(0),
        example_batch["a_labels"].shape[0],
        example_batch["inputs"].shape[-1]))
    sent = jax.eval_shape(lambda s, b: tn_lib.a_phase(
        s, b, tn=tn, optimizers=optimizers)[1], state, example_batch)
    zeros = lambda tree: jax.tree_util.tree_map(  # noqa: E731
        lambda x: jnp.zeros(x.shape, x.dtype), tree)
    forward = (sent if tn.method != "locked"
               else sent.messages)  # locked: the messages (with their vjp)
    backward = (tn_lib.b_side(self.tn, state) if tn.method == "dni"
                else sent.messages)  # locked: B's gradients of them
    self._fwd = _Packer(zeros(forward))
    self._bwd = _Packer(zeros(backward))
    width = max(self._fwd.size, self._bwd.size)
    self._fwd.width = self._bwd.width = width
    self.width = width

  def _put(self, tree, k: int):
    return jax.device_put(tree, self.devices[k])

  def _empty(self, k: int) -> jax.Array:
    return self._put(jnp.zeros((1, 1, self.width), jnp.float32), k)

  def init(self, state: tn_lib.TwoNetworksState) -> dict:
    """The run's state from a one-device state (``init_train_state``)."""
    out = {"nets": {k: self._put(state, k) for k in self.local},
           "inbox": {k: self._empty(k) for k in self.local}}
    if self.tn.method == "dni" and A in self.local:
      out["inbox"][A] = self._put(
          self._bwd.pack(tn_lib.b_side(self.tn, state)), A)
    return out

  @staticmethod
  def merged(nets: dict) -> tn_lib.TwoNetworksState:
    """One state: A's fields from device 0's, the rest from device 1's.

    Both devices must belong to this process; for dni and no_dni, call it
    after ``drain`` (until then B is one episode behind A).
    """
    if A not in nets or B not in nets:
      raise ValueError("merged needs both networks' states, and this "
                       "process holds only device(s) "
                       f"{sorted(nets)}; in a run of two processes each "
                       "keeps its own network's state")
    a, b = jax.device_get(nets[A]), jax.device_get(nets[B])
    return b.replace(step=a.step, a_params=a.a_params,
                     a_opt_state=a.a_opt_state)

  # --- decoupled (dni, no_dni) -------------------------------------------

  @functools.cached_property
  def _a_tick(self):
    tn, opt = self.tn, self.optimizers

    def fn(state, inbox, batch):
      if tn.method == "dni":  # the synthesizers B trained last tick
        state = tn_lib.with_b_side(state, self._bwd.unpack(inbox))
      state, sent = tn_lib.a_phase(state, batch, tn=tn, optimizers=opt)
      return state.replace(step=state.step + 1), self._fwd.pack(sent)
    return jax.jit(fn)

  @functools.cached_property
  def _b_tick(self):
    tn, opt = self.tn, self.optimizers

    def fn(state, inbox, batch):
      sent = self._fwd.unpack(inbox)
      state, metrics = tn_lib.b_phase(state, batch, sent, tn=tn,
                                      optimizers=opt)
      state = state.replace(step=state.step + 1)
      out = (self._bwd.pack(tn_lib.b_side(tn, state)) if tn.method == "dni"
             else jnp.zeros((1, 1, self.width), jnp.float32))
      return state, metrics, out
    return jax.jit(fn)

  @functools.cached_property
  def _b_idle(self):
    return jax.jit(
        lambda state: self._bwd.pack(tn_lib.b_side(self.tn, state)))

  def tick(self, state: dict, t: int, batch: BatchFn
           ) -> tuple[dict, dict | None]:
    """A trains on episode ``t`` while B learns from episode ``t − 1``.

    Returns the state and, where B is local and ``t > 0``, episode
    ``t − 1``'s metrics (as ``train_step``'s), else ``None``.
    """
    if self.tn.method == "locked":
      raise ValueError("locked has no ticks; call step")
    nets, inbox = dict(state["nets"]), state["inbox"]
    out, metrics = {k: self._empty(k) for k in self.local}, None
    if A in self.local:
      nets[A], out[A] = self._a_tick(nets[A], inbox[A],
                                     self._put(batch(t), A))
    if B in self.local and t > 0:
      nets[B], metrics, out[B] = self._b_tick(nets[B], inbox[B],
                                              self._put(batch(t - 1), B))
    elif B in self.local and self.tn.method == "dni":  # nothing to learn yet
      out[B] = self._b_idle(nets[B])
    dni = self.tn.method == "dni"
    fwd_in, bwd_in, _ = self.exchange(out, out, forward=True, backward=dni)
    got = {k: bwd_in[k] if k == A else fwd_in[k] for k in self.local}
    if not dni and A in self.local:
      got[A] = inbox[A]
    return {"nets": nets, "inbox": got}, metrics

  def drain(self, state: dict, t: int, batch: BatchFn
            ) -> tuple[dict, dict | None]:
    """After ticks ``0 … t−1``: B learns from episode ``t − 1``; nothing
    is sent."""
    if self.tn.method == "locked":
      raise ValueError("locked has no ticks to drain")
    nets, metrics = dict(state["nets"]), None
    if B in self.local:
      nets[B], metrics, _ = self._b_tick(nets[B], state["inbox"][B],
                                         self._put(batch(t - 1), B))
    return {"nets": nets, "inbox": state["inbox"]}, metrics

  # --- locked ------------------------------------------------------------

  @functools.cached_property
  def _a_forward(self):
    tn = self.tn

    def fn(state, batch):
      def objective(a_params):  # A's part of locked_objective
        messages, loss, err = tn_lib.a_episode(tn, a_params, batch)
        return (loss.sum(0).mean(), messages), (loss, err)

      (_, messages), vjp, metric = jax.vjp(objective, state.a_params,
                                           has_aux=True)
      return vjp, metric, self._fwd.pack(messages)
    return jax.jit(fn)

  @functools.cached_property
  def _b_locked(self):
    tn, opt = self.tn, self.optimizers

    def fn(state, inbox, batch):
      messages = self._fwd.unpack(inbox)

      def b_objective(b_params, messages_TxBxM):
        loss, err = tn_lib.b_outcome(tn, b_params, messages_TxBxM,
                                     batch["b_labels"])
        return loss.mean(), (loss, err)

      (grads, message_grads), metric = jax.grad(
          b_objective, argnums=(0, 1), has_aux=True)(state.b_params, messages)
      b_params, b_opt = interface.apply_update(
          opt.stage, grads, state.b_opt_state, state.b_params)
      state = state.replace(b_params=b_params, b_opt_state=b_opt,
                            step=state.step + 1)
      return state, metric, self._bwd.pack(message_grads)
    return jax.jit(fn)

  @functools.cached_property
  def _a_backward(self):
    opt = self.optimizers

    def fn(state, vjp, inbox):
      (grads,) = vjp((jnp.ones(()), self._bwd.unpack(inbox)))
      a_params, a_opt = interface.apply_update(
          opt.stage, grads, state.a_opt_state, state.a_params)
      return state.replace(a_params=a_params, a_opt_state=a_opt,
                           step=state.step + 1)
    return jax.jit(fn)

  def step(self, state: dict, t: int, batch: BatchFn
           ) -> tuple[dict, dict | None]:
    """locked: one episode; A waits for B's gradients of its messages.

    Returns the state and the metrics of the local networks, as
    ``train_step``'s: ``a_*`` where A is local, ``b_*`` where B is.
    """
    if self.tn.method != "locked":
      raise ValueError(f"{self.tn.method} runs in ticks; call tick")
    nets = dict(state["nets"])
    out = {k: self._empty(k) for k in self.local}
    vjp = a_metric = b_metric = None
    if A in self.local:
      vjp, a_metric, out[A] = self._a_forward(nets[A],
                                              self._put(batch(t), A))
    fwd_in, _, _ = self.exchange(out, out, forward=True, backward=False)
    if B in self.local:
      nets[B], b_metric, out[B] = self._b_locked(nets[B], fwd_in[B],
                                                 self._put(batch(t), B))
    _, bwd_in, _ = self.exchange(out, out, forward=False, backward=True)
    if A in self.local:
      nets[A] = self._a_backward(nets[A], vjp, bwd_in[A])
    metrics = {}
    if a_metric is not None:
      metrics.update(a_loss=a_metric[0].mean(), a_error=a_metric[1].mean())
    if b_metric is not None:
      metrics.update(b_loss=b_metric[0].mean(), b_error=b_metric[1].mean())
    return {"nets": nets, "inbox": state["inbox"]}, metrics or None
