"""MNIST, the paper's CNN: 3 stages of 5×5 conv(128)→BN→ReLU→max-pool, conv synthesizers.

  python -m experiments.main --config=configs/mnist_cnn.py --workdir=/tmp/dni/mnist_cnn \
      --config.method=cdni --config.data.dir=../shared/data/mnist

The synthesizers are the paper's conv stack (two 5×5 conv layers with BN+ReLU,
then a zero-initialised 5×5 conv). Slow on a CPU (tens of ms per step); a GPU
run of the default takes a few minutes.
"""

from configs import mnist_fcn


def get_config():
  config = mnist_fcn.get_config()
  config.model.kind = "cnn"
  config.model.features = 128
  config.dni.synthesizer = "conv"
  config.dni.hidden = (128, 128)
  return config
