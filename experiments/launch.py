"""Starts N local processes of one run, as on a cluster (jax.distributed).

  python -m experiments.launch --num_processes=2 [--pin] -- \
      --config=configs/mnist_fcn.py --workdir=workdirs/pipe \
      --config.parallel.num_devices=2 --config.method=cdni

Everything after ``--`` goes to ``experiments.main`` in every process. The
processes meet at ``--coordinator`` (127.0.0.1 and a free port by default);
each sees one CPU device (``JAX_PLATFORMS=cpu``), so ``parallel.num_devices``
equals the process count. ``--pin`` runs process ``i`` on CPU core ``i``
alone (``taskset``), single-threaded. Process 0's output is shown; the
others' are appended to ``<workdir>/process_<i>.log``. When one process
exits with an error, or is killed, the others are stopped (SIGTERM, then
SIGKILL after ``--grace`` seconds) instead of waiting at a barrier, and the
launcher exits naming it. Ctrl-C or SIGTERM to the launcher stops them all.
The exit status is the failed process's.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from absl import app
from absl import flags

from experiments import cli

_NUM = flags.DEFINE_integer("num_processes", 2, "Processes to start.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator", None, "host:port of process 0; default 127.0.0.1 and a "
    "free port.")
_PIN = flags.DEFINE_bool("pin", False, "Process i on core i alone, XLA "
                         "single-threaded (for timing).")
_GRACE = flags.DEFINE_float("grace", 10.0, "Seconds the other processes get "
                            "to stop after one fails, before SIGKILL.")


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


def _describe(code: int) -> str:
  if code < 0:
    try:
      return f"was killed by {signal.Signals(-code).name}"
    except ValueError:
      return f"was killed by signal {-code}"
  return f"exited with status {code}"


def _stop(procs, grace: float) -> None:
  """SIGTERM to every live process, SIGKILL to those alive after ``grace``."""
  for p in procs:
    if p.poll() is None:
      p.send_signal(signal.SIGTERM)
  deadline = time.time() + grace
  for p in procs:
    try:
      p.wait(timeout=max(deadline - time.time(), 0.01))
    except subprocess.TimeoutExpired:
      p.kill()
      p.wait()


def supervise(procs, grace: float = 10.0, poll: float = 0.2) -> int:
  """Waits for every process; when one fails, stops the others at once.

  Returns 0 if all exit 0, else the failing process's status (a signal as
  128 + its number), after one line on stderr naming it.
  """
  interrupted = []

  def on_signal(signum, frame):
    del frame
    interrupted.append(signum)

  old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT,
                                                   signal.SIGTERM)}
  try:
    while True:
      if interrupted:
        _stop(procs, grace)
        print(f"launch: {signal.Signals(interrupted[0]).name} received; "
              "stopped every process (rerun the same command to resume "
              "from the last checkpoint).", file=sys.stderr, flush=True)
        return 128 + interrupted[0]
      codes = [p.poll() for p in procs]
      failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
      if failed:
        i, code = failed[0]
        live = [j for j, c in enumerate(codes) if c is None]
        _stop(procs, grace)
        stopped = (f"; stopped process(es) {', '.join(map(str, live))}"
                   if live else "")
        print(f"launch: process {i} {_describe(code)}{stopped}. Its output "
              f"is {'above' if i == 0 else f'in process_{i}.log'}; rerun "
              "the same command to resume from the last checkpoint.",
              file=sys.stderr, flush=True)
        return code if code > 0 else 128 - code
      if all(c == 0 for c in codes):
        return 0
      time.sleep(poll)
  finally:
    for s, handler in old.items():
      signal.signal(s, handler)


def launch(args: list[str], num: int, coordinator: str | None = None,
           pin: bool = False, log_dir: str | None = None,
           grace: float = 10.0) -> int:
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
      out = open(os.path.join(log_dir, f"process_{i}.log"), "a")
    elif i:
      out = subprocess.DEVNULL
    procs.append(subprocess.Popen(
        cmd, env=process_env(i, num, coordinator, pin), stdout=out,
        stderr=subprocess.STDOUT if out else None))
  return supervise(procs, grace)


def main(argv):
  args = argv[1:]
  workdir = next((a.split("=", 1)[1] for a in args
                  if a.startswith("--workdir=")), None)
  sys.exit(launch(args, _NUM.value, _COORDINATOR.value, _PIN.value, workdir,
                  _GRACE.value))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
