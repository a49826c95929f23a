"""Data: in-memory datasets (local files, tensorflow-datasets, generated) and batching.

Sequence tasks for recurrent DNI live in ``copy_tasks`` (Copy, Repeat Copy,
generated on device) and ``char_corpus`` (PTB characters, tiny_shakespeare);
the two-network digit episodes in ``digit_stream``.

Loaders know nothing of models: each returns an ``ArrayDataset`` of numpy
arrays; ``batch_at`` cuts the batch of a given step, deterministically.
"""

from dni_jax.data.dataset import ArrayDataset
from dni_jax.data.dataset import batch_at
from dni_jax.data.registry import DATASETS
from dni_jax.data.registry import load_dataset
from dni_jax.data.registry import SEQUENCE_TASKS
