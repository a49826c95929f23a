"""Character-level corpora for language modelling: Penn Treebank, tiny_shakespeare.

- **PTB characters** from local files: ``ptb.char.{train,valid,test}.txt`` in
  ``data_dir`` (Mikolov's ``simple-examples/data``): characters separated by
  spaces, ``_`` marks a word boundary; each line ends with an end-of-line
  token. The vocabulary is the training split's.
- **tiny_shakespeare** from tensorflow-datasets (one text per split).

``CharStreamTask`` trains on the training split cut into ``B`` contiguous
streams: window ``k`` is characters ``kT … kT+T-1`` of every stream (wrapping
at the end), with the next characters as targets. It is sliced inside the
jitted step from the corpus passed as an argument.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import re

import jax
import numpy as np
import optax

from dni_jax.errors import DataError

SPLITS = ("train", "valid", "test")
EOL = "\n"
_TFDS_SPLITS = {"train": "train", "valid": "validation", "test": "test"}


@dataclasses.dataclass(frozen=True)
class Corpus:
  """Token ids of every split and the vocabulary (index → character)."""
  splits: dict
  vocab: tuple

  @property
  def vocab_size(self) -> int:
    return len(self.vocab)


def _ptb_path(data_dir: str, split: str) -> str:
  return os.path.join(data_dir, f"ptb.char.{split}.txt")


def _replace_ptb(path: str) -> str:
  """The fix for a damaged PTB file: get that file again."""
  return (f"replace {os.path.basename(path)} with a fresh copy (extract "
          "simple-examples/data/ from Mikolov's simple-examples.tgz again, "
          "or copy the file again from where you got it)")


# Control characters other than the line and word separators: binary data.
_BINARY = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _read_ptb_split(data_dir: str, split: str) -> list[str]:
  path = _ptb_path(data_dir, split)
  if not os.path.exists(path):
    raise DataError(
        f"{path} not found; --config.data.dir must hold ptb.char.train.txt, "
        "ptb.char.valid.txt and ptb.char.test.txt (Mikolov's "
        "simple-examples/data).")
  try:
    with open(path, "rb") as f:
      raw = f.read()
  except OSError as e:
    raise DataError(f"cannot read {path} ({e}); make it a readable "
                    "file.") from e
  if raw[:2] == b"\x1f\x8b":
    raise DataError(f"{path} is gzip-compressed, not text; gunzip it (keep "
                    f"the name {os.path.basename(path)}), or "
                    f"{_replace_ptb(path)}.")
  try:
    text = raw.decode("utf-8")
  except UnicodeDecodeError as e:
    raise DataError(f"{path} is not text (byte {e.start} is not UTF-8: "
                    f"{e.reason}); the file is damaged or not the character "
                    f"level PTB file: {_replace_ptb(path)}.") from e
  binary = _BINARY.search(text)
  if binary:
    raise DataError(f"{path} is not text (it holds the control character "
                    f"{binary.group()!r} at character {binary.start()}); the "
                    f"file is damaged: {_replace_ptb(path)}.")
  tokens = []
  for line in text.splitlines():
    chars = line.split()
    if any(len(c) != 1 for c in chars):
      bad = next(c for c in chars if len(c) != 1)
      raise DataError(f"{path}: token {bad!r} is not one character; the "
                      "character-level files separate characters by spaces "
                      "(did you pass the word-level ptb.*.txt?); point "
                      "--config.data.dir at the folder with "
                      "ptb.char.{train,valid,test}.txt.")
    if chars:
      tokens.extend(chars)
      tokens.append(EOL)
  if not tokens:
    raise DataError(f"{path} is empty; {_replace_ptb(path)}.")
  return tokens


def _encode(texts: dict, source: str, files: dict | None = None) -> Corpus:
  vocab = tuple(sorted(set(texts["train"])))
  index = {c: i for i, c in enumerate(vocab)}
  splits = {}
  for split, tokens in texts.items():
    unknown = sorted(set(tokens) - set(index))
    if unknown:
      if files:
        raise DataError(f"{files[split]} has characters not in the training "
                        f"split ({files['train']}): {unknown[:10]}; one of "
                        "the two is damaged or from another corpus: "
                        f"{_replace_ptb(files[split])}.")
      raise DataError(f"{source}: split {split!r} has characters not in the "
                      f"training split: {unknown[:10]}")
    splits[split] = np.fromiter((index[c] for c in tokens), np.int32,
                                len(tokens))
  return Corpus(splits, vocab)


def load_ptb_char(data_dir: str) -> Corpus:
  """The three PTB character splits from ``data_dir``."""
  texts = {split: _read_ptb_split(data_dir, split) for split in SPLITS}
  return _encode(texts, data_dir,
                 {split: _ptb_path(data_dir, split) for split in SPLITS})


def load_tiny_shakespeare(data_dir: str | None = None,
                          download: bool = True) -> Corpus:
  """tiny_shakespeare from tensorflow-datasets (splits train/validation/test)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from dni_jax.data import tfds_source  # pylint: disable=g-import-not-at-top

  def read(download_now):
    texts = {}
    for split, tfds_split in _TFDS_SPLITS.items():
      source = tfds.data_source("tiny_shakespeare", split=tfds_split,
                                data_dir=data_dir, download=download_now)
      text = "".join(_as_str(source[i]["text"]) for i in range(len(source)))
      texts[split] = list(text)
    return texts

  texts = tfds_source.read_or_prepare(
      tfds, "tiny_shakespeare", data_dir, download,
      "use --config.data.name=ptb_char with --config.data.dir (PTB "
      "characters from local files)", read)
  return _encode(texts, "tiny_shakespeare")


def _as_str(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def fingerprint(tokens: np.ndarray) -> str:
  return hashlib.sha256(tokens.tobytes()).hexdigest()[:12]


def streams(tokens: np.ndarray, num_streams: int) -> np.ndarray:
  """``tokens`` cut into ``num_streams`` equal contiguous rows (tail dropped)."""
  length = len(tokens) // num_streams
  if length < 2:
    raise DataError(f"{len(tokens)} characters cannot fill {num_streams} "
                    "streams; lower the batch size.")
  return tokens[:num_streams * length].reshape(num_streams, length)


@dataclasses.dataclass(frozen=True)
class CharStreamTask:
  """Next-character prediction on ``B`` contiguous streams of a corpus.

  Attributes:
    batch_size: parallel streams.
    unroll: characters per training step (the truncation ``T``).
    vocab_size: number of distinct characters.
    stream_length: characters per stream (fixed by the corpus).
  """
  batch_size: int
  unroll: int
  vocab_size: int
  stream_length: int

  @property
  def num_outputs(self) -> int:
    return self.vocab_size

  def __post_init__(self):
    if self.stream_length < self.unroll + 1:
      raise DataError(f"streams of {self.stream_length} characters are "
                      f"shorter than one window ({self.unroll}) plus one; "
                      "lower --config.batch_size (streams) or "
                      "--config.unroll")

  def init_state(self) -> dict:
    return {}

  def window_at(self, data_BxL: jax.Array, step) -> dict:
    usable = (self.stream_length - 1) // self.unroll * self.unroll
    offset = (step * self.unroll) % usable
    take = lambda o: jax.lax.dynamic_slice_in_dim(data_BxL, o, self.unroll, 1)
    return {"inputs": take(offset), "targets": take(offset + 1)}

  def window(self, task_state, data_BxL, step) -> dict:
    del task_state
    return self.window_at(data_BxL, step)

  def loss(self, logits_BxTxV: jax.Array, batch: dict):
    """Per-example cross-entropy (nats) summed over the window."""
    xent = optax.softmax_cross_entropy_with_integer_labels(
        logits_BxTxV, batch["targets"])
    return xent.sum(-1), {}

  def update(self, task_state, metrics, step):
    del metrics, step
    return task_state, {}


def bits_per_char(nats: float) -> float:
  return nats / math.log(2.0)
