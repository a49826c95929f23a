"""The paper's Fig. 7: a population of 4-layer FCNs on MNIST, each updating with its own probability p.

  python -m experiments.sweep --config=configs/update_population.py \\
      --workdir=/tmp/dni/population --config.data.dir=../shared/data/mnist
  python -m experiments.plot_seeds /tmp/dni/population \\
      --x_field=dni.update_prob --at_steps=4000,12000,24000,40000 \\
      --metric=error --out=/tmp/dni/population.png

The paper ran 100 networks with ``p`` drawn uniformly between 0 and 1 (its
§3.3): every layer updates after its forward pass with probability ``p``
(Fig. 7 left, DNI and cDNI), or is busy, neither running forward nor
updating (Fig. 7 right, complete unlock). This sweep has ``SIZE`` values
of ``p``, drawn once uniformly in [0, 1) and kept as numbers
(``UPDATE_PROBS``, so a rerun resumes the same members), member ``k`` at
the ``k``-th with seed ``k``, for each method. The methods are the config
argument, a comma-separated list: by default ``dni,cdni`` (Fig. 7 left);
for the right:

  python -m experiments.sweep --workdir=/tmp/dni/population \
      --config=configs/update_population.py:dni_unlocked,cdni_unlocked \
      --config.data.dir=../shared/data/mnist

Member folders are named by method, ``p`` and seed, so both panels may
share a workdir. A method's members differ only in ``p`` and the seed, so
they train as one vmapped program, each with its own coins
(``dni_jax.core.stochastic``); the methods run one after another.
``python -m experiments.main`` with this config trains the methods at
``p = 0.2`` as one comparison.

The budget is ``mnist_fcn``'s (40k steps of batch 256, Adam 1e-4, ÷10 at
24k and 32k global steps), not the paper's 500k iterations. Measured at
3 seeds for p in {0.05, 0.2, 1} (docs/results.md, "The paper's 4-layer
FCN"): test error 5.45 / 3.25 / 2.56 % for DNI and 3.17 / 1.80 / 1.57 %
for cDNI.
"""

from configs import mnist_fcn

# Drawn once, np.random.default_rng(0).uniform(size=16), to 3 decimals.
UPDATE_PROBS = (0.637, 0.27, 0.041, 0.017, 0.813, 0.913, 0.607, 0.729, 0.544,
                0.935, 0.816, 0.003, 0.857, 0.034, 0.73, 0.176)
SIZE = len(UPDATE_PROBS)  # members per method; the paper's population has 100
DEFAULT_METHODS = "dni,cdni"


def _methods(arg) -> list[str]:
  return [m.strip() for m in (arg or DEFAULT_METHODS).split(",") if m.strip()]


def get_config(arg=None):
  config = mnist_fcn.get_config()
  config.method = ",".join(_methods(arg))
  config.model.depth = 4
  config.dni.update_prob = 0.2
  return config


def get_sweep(arg=None):
  """Each method × ``SIZE`` members, member ``k`` at the ``k``-th drawn
  ``p`` with seed ``k``."""
  return [{"method": m, "dni.update_prob": p, "seed": k,
           "name": f"{m}_p{p:.3f}_seed{k}"}
          for m in _methods(arg) for k, p in enumerate(UPDATE_PROBS)]
