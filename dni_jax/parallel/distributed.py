"""Several processes, as on a cluster: ``jax.distributed`` set-up and checks.

Every process runs the same program; ``initialize`` connects them through
the coordinator (process 0's address) before JAX starts its backends. On CPU
the collectives between processes are gloo's. ``experiments.launch`` starts
N local processes with the environment variables read by ``from_env``.
"""

from __future__ import annotations

import os
import socket

import jax

from dni_jax.errors import ConfigError

ENV_COORDINATOR = "DNI_COORDINATOR"  # host:port of process 0
ENV_NUM_PROCESSES = "DNI_NUM_PROCESSES"
ENV_PROCESS_ID = "DNI_PROCESS_ID"


def port_in_use(address: str) -> bool:
  """Whether ``host:port`` is already bound on this machine."""
  host, port = address.rsplit(":", 1)
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
      s.bind((host, int(port)))
    except OSError:
      return True
  return False


def initialize(coordinator: str, num_processes: int, process_id: int,
               timeout_s: int = 120) -> None:
  """Joins this process to a run of ``num_processes`` processes.

  Args:
    coordinator: ``host:port`` where process 0 serves the coordination.
    num_processes: processes in the run; 1 does nothing.
    process_id: this process's index, ``0 … num_processes-1``.
    timeout_s: how long to wait for the others.

  Raises:
    ConfigError: a bad count or id, or process 0's port already in use.
  """
  if num_processes <= 1:
    return
  if not 0 <= process_id < num_processes:
    raise ConfigError(f"process id {process_id} is outside 0..{num_processes - 1}"
                      f" for {num_processes} processes.")
  if ":" not in coordinator:
    raise ConfigError(f"coordinator {coordinator!r} must be host:port, e.g. "
                      "127.0.0.1:8476.")
  if process_id == 0 and port_in_use(coordinator):
    raise ConfigError(
        f"the coordinator port {coordinator} is already in use (another run "
        "still going?); choose a free one, e.g. "
        "--coordinator=127.0.0.1:<another port>.")
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator,
                             num_processes=num_processes,
                             process_id=process_id,
                             initialization_timeout=timeout_s)


def from_env() -> tuple[str, int, int] | None:
  """``(coordinator, num_processes, process_id)`` set by ``experiments.launch``."""
  if ENV_NUM_PROCESSES not in os.environ:
    return None
  try:
    return (os.environ.get(ENV_COORDINATOR, "127.0.0.1:8476"),
            int(os.environ[ENV_NUM_PROCESSES]),
            int(os.environ.get(ENV_PROCESS_ID, "0")))
  except ValueError as e:
    raise ConfigError(f"bad {ENV_NUM_PROCESSES}/{ENV_PROCESS_ID} in the "
                      f"environment: {e}") from e


def pipeline_devices(num_devices: int) -> list[jax.Device]:
  """The first ``num_devices`` devices of the run, process by process.

  Raises:
    ConfigError: the run has fewer devices, or a process would hold none of
      them (the process count disagrees with ``parallel.num_devices``).
  """
  devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
  chosen = devices[:num_devices]
  procs = jax.process_count()
  idle = sorted(set(range(procs)) - {d.process_index for d in chosen})
  if len(devices) < num_devices or idle:
    problem = (f"this run has {len(devices)} device(s) in {procs} process(es)"
               f" ({len(jax.local_devices())} per process)")
    if idle and len(devices) >= num_devices:
      problem += f", and process(es) {idle} would hold no stage"
    raise ConfigError(
        f"parallel.num_devices={num_devices}, but {problem}. Make them "
        f"agree: start {num_devices} processes with experiments.launch (one "
        "CPU device each), or fake devices on one CPU with XLA_FLAGS="
        f"--xla_force_host_platform_device_count={num_devices}, or set "
        "--config.parallel.num_devices to the devices you have.")
  return chosen
