"""Starts N local processes of one run, as on a cluster (jax.distributed).

  python -m experiments.launch --num_processes=2 [--pin] -- \
      --config=configs/mnist_fcn.py --workdir=workdirs/pipe \
      --config.parallel.num_devices=2 --config.method=cdni

Everything after ``--`` goes to ``experiments.main`` in every process. The
processes meet at ``--coordinator`` (127.0.0.1 and a free port by default);
each sees one CPU device (``JAX_PLATFORMS=cpu``), so ``parallel.num_devices``
equals the process count. ``--pin`` runs process ``i`` on CPU core ``i``
alone (``taskset``), single-threaded. Process 0's output is shown; the
others' go to ``<workdir>/process_<i>.log``. The exit status is the first
non-zero one.
"""

import os
import shutil
import socket
import subprocess
import sys

from absl import app
from absl import flags

_NUM = flags.DEFINE_integer("num_processes", 2, "Processes to start.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator", None, "host:port of process 0; default 127.0.0.1 and a "
    "free port.")
_PIN = flags.DEFINE_bool("pin", False, "Process i on core i alone, XLA "
                         "single-threaded (for timing).")


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def process_env(i: int, num: int, coordinator: str, pin: bool) -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu", DNI_COORDINATOR=coordinator,
             DNI_NUM_PROCESSES=str(num), DNI_PROCESS_ID=str(i))
  if pin:
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_"
                        "eigen=false intra_op_parallelism_threads=1").strip()
  return env


def launch(args: list[str], num: int, coordinator: str | None = None,
           pin: bool = False, log_dir: str | None = None) -> int:
  """Runs ``python -m experiments.main *args`` in ``num`` processes."""
  coordinator = coordinator or f"127.0.0.1:{free_port()}"
  if pin and shutil.which("taskset") is None:
    sys.exit("error: --pin needs taskset (util-linux)")
  if pin and num > os.cpu_count():
    sys.exit(f"error: --pin puts each process on its own core, but this "
             f"machine has {os.cpu_count()} cores for {num} processes.")
  procs = []
  for i in range(num):
    cmd = [sys.executable, "-m", "experiments.main", *args]
    if pin:
      cmd = ["taskset", "-c", str(i)] + cmd
    out = None
    if i and log_dir:
      os.makedirs(log_dir, exist_ok=True)
      out = open(os.path.join(log_dir, f"process_{i}.log"), "w")
    elif i:
      out = subprocess.DEVNULL
    procs.append(subprocess.Popen(
        cmd, env=process_env(i, num, coordinator, pin), stdout=out,
        stderr=subprocess.STDOUT if out else None))
  codes = [p.wait() for p in procs]
  return next((c for c in codes if c), 0)


def main(argv):
  args = argv[1:]
  workdir = next((a.split("=", 1)[1] for a in args
                  if a.startswith("--workdir=")), None)
  sys.exit(launch(args, _NUM.value, _COORDINATOR.value, _PIN.value, workdir))


if __name__ == "__main__":
  app.run(main)
