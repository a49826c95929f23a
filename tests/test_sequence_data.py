"""Copy / Repeat Copy generators, the curriculum, character corpora."""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from dni_jax.data import char_corpus
from dni_jax.data import copy_tasks
from dni_jax.errors import DataError

SHARED_PTB = os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                          "data", "ptb")


def _stream(task, length, steps):
  """Concatenates the windows of ``steps`` consecutive steps: [B, steps·T]."""
  windows = [task.window_at(length, 0, k) for k in range(steps)]
  return {key: np.concatenate([np.asarray(w[key]) for w in windows], axis=1)
          for key in windows[0]}


@pytest.mark.parametrize("unroll", [2, 3, 5])
def test_copy_episodes_are_what_they_claim(unroll):
  n, bits = 4, 8
  task = copy_tasks.CopyTask(batch_size=3, unroll=unroll, num_bits=bits)
  period = 2 * n + 1
  s = _stream(task, n, steps=(3 * period) // unroll + 1)
  assert s["inputs"].shape[-1] == bits + 1 and s["targets"].shape[-1] == bits
  for b in range(3):
    for e in range(3):
      ep = slice(e * period, (e + 1) * period)
      x, y = s["inputs"][b, ep], s["targets"][b, ep]
      mask, end = s["mask"][b, ep], s["episode_end"][b, ep]
      np.testing.assert_array_equal(x[n + 1:], 0)  # silent while answering
      np.testing.assert_array_equal(x[:n, bits], 0)  # delimiter only at n
      assert x[n, bits] == 1 and not x[n, :bits].any()
      np.testing.assert_array_equal(y[n + 1:], x[:n, :bits])  # the copy
      np.testing.assert_array_equal(y[:n + 1], 0)
      np.testing.assert_array_equal(mask, np.arange(period) > n)
      np.testing.assert_array_equal(end, np.arange(period) == 2 * n)
  # Random bits: streams and episodes differ.
  assert not np.array_equal(s["inputs"][0, :n], s["inputs"][1, :n])
  assert not np.array_equal(s["inputs"][0, :n], s["inputs"][0, period:period + n])
  assert 0.3 < s["inputs"][:, :n, :bits].mean() < 0.7


def test_repeat_copy_episodes_are_what_they_claim():
  n, bits, max_r = 3, 8, 3
  task = copy_tasks.CopyTask(batch_size=8, unroll=4, repeat=True,
                             num_bits=bits, max_repeats=max_r)
  period = n + 2 + max_r * n
  assert task.period(n) == period
  s = _stream(task, n, steps=(4 * period) // 4)
  seen = set()
  for b in range(8):
    for e in range(4):
      ep = slice(e * period, (e + 1) * period)
      x, y = s["inputs"][b, ep], s["targets"][b, ep]
      mask, end = s["mask"][b, ep], s["episode_end"][b, ep]
      r = int(round(x[n, bits + 1] * max_r))
      seen.add(r)
      assert 1 <= r <= max_r and x[n, bits] == 1
      np.testing.assert_array_equal(x[n + 1:], 0)
      np.testing.assert_array_equal(x[:n, bits:], 0)
      answer = slice(n + 1, n + 1 + r * n)
      np.testing.assert_array_equal(y[answer, :bits],
                                    np.tile(x[:n, :bits], (r, 1)))
      marker = np.zeros(period)
      marker[n + 1 + r * n] = 1
      np.testing.assert_array_equal(y[:, bits], marker)
      np.testing.assert_array_equal(mask, (np.arange(period) > n) &
                                    (np.arange(period) <= n + 1 + r * n))
      np.testing.assert_array_equal(end, marker.astype(bool))
      np.testing.assert_array_equal(y[n + 2 + r * n:], 0)
  assert seen == {1, 2, 3}


def test_curriculum_lengthens_only_when_solved():
  task = copy_tasks.CopyTask(batch_size=2, unroll=3, check_every=4,
                             threshold=0.15)
  state = task.init_state()
  good = {"bit_errors": jnp.float32(0.0), "episodes": jnp.float32(2.0)}
  bad = {"bit_errors": jnp.float32(1.0), "episodes": jnp.float32(2.0)}
  for step in range(3):  # no check before step 3
    state, _ = task.update(state, good, step)
  assert int(state["length"]) == 1
  state, metrics = task.update(state, good, 3)
  assert int(state["length"]) == 2 and int(state["level_start"]) == 4
  assert metrics["max_length_solved"] == 1
  for step in range(4, 8):  # 4 errors over 8 episodes: 0.5 bits per episode
    state, _ = task.update(state, bad, step)
  assert int(state["length"]) == 2 and int(state["max_length_solved"]) == 1
  assert float(state["errors"]) == 0.0  # counters restart at each check
  # A new level starts a new stream of episodes at its first step.
  w = task.window_at(jnp.int32(2), jnp.int32(4), jnp.int32(4))
  assert bool(w["inputs"][0, 2, 8])  # the delimiter of a length-2 episode


def _write_ptb(folder, train="a b _ c\nb a _ a c\n", valid="a _ b\n",
               test="c a\n"):
  for split, text in (("train", train), ("valid", valid), ("test", test)):
    with open(os.path.join(folder, f"ptb.char.{split}.txt"), "w") as f:
      f.write(text)


def test_ptb_char_files_vocab_and_ids(tmp_path):
  _write_ptb(tmp_path)
  corpus = char_corpus.load_ptb_char(str(tmp_path))
  assert corpus.vocab == ("\n", "_", "a", "b", "c")
  decode = lambda ids: "".join(corpus.vocab[i] for i in ids)
  assert decode(corpus.splits["train"]) == "ab_c\nba_ac\n"
  assert decode(corpus.splits["valid"]) == "a_b\n"
  assert decode(corpus.splits["test"]) == "ca\n"


def test_ptb_char_bad_files(tmp_path):
  with pytest.raises(DataError, match="ptb.char.train.txt not found"):
    char_corpus.load_ptb_char(str(tmp_path))
  _write_ptb(tmp_path, valid="a z\n")
  with pytest.raises(DataError, match="not in the training split.*'z'"):
    char_corpus.load_ptb_char(str(tmp_path))
  _write_ptb(tmp_path, train="the cat sat\n")
  with pytest.raises(DataError, match="word-level"):
    char_corpus.load_ptb_char(str(tmp_path))


def test_char_stream_windows_are_consecutive_and_shifted():
  tokens = np.arange(2 * 23, dtype=np.int32)
  rows = char_corpus.streams(tokens, 2)
  task = char_corpus.CharStreamTask(2, 4, vocab_size=64,
                                    stream_length=rows.shape[1])
  data = jnp.asarray(rows)
  seq = np.concatenate([np.asarray(task.window_at(data, k)["inputs"])
                        for k in range(5)], axis=1)
  np.testing.assert_array_equal(seq, rows[:, :20])
  w = task.window_at(data, 2)
  np.testing.assert_array_equal(w["targets"], np.asarray(w["inputs"]) + 1)
  # 22 usable characters per stream → 20 in whole windows; step 5 wraps.
  np.testing.assert_array_equal(task.window_at(data, 5)["inputs"], rows[:, :4])


def test_tiny_shakespeare_through_tfds_mock_data(mock_tfds):
  with mock_tfds(num_examples=2):
    corpus = char_corpus.load_tiny_shakespeare()
  assert corpus.vocab_size > 1
  assert all(len(corpus.splits[s]) > 0 for s in char_corpus.SPLITS)


@pytest.mark.skipif(not os.path.isdir(SHARED_PTB),
                    reason="../shared/data/ptb not present")
def test_real_ptb_char():
  import hashlib  # pylint: disable=g-import-not-at-top
  sums = dict(reversed(line.split()) for line in
              open(os.path.join(SHARED_PTB, "SHA256SUMS")) if line.strip())
  with open(os.path.join(SHARED_PTB, "ptb.char.valid.txt"), "rb") as f:
    assert hashlib.sha256(f.read()).hexdigest() == sums["ptb.char.valid.txt"]
  corpus = char_corpus.load_ptb_char(SHARED_PTB)
  assert 45 <= corpus.vocab_size <= 60 and "_" in corpus.vocab
  assert 4_000_000 < len(corpus.splits["train"]) < 6_000_000
  n_lines = {"train": 42068, "valid": 3370, "test": 3761}
  eol = corpus.vocab.index("\n")
  for split, lines in n_lines.items():
    assert int((corpus.splits[split] == eol).sum()) == lines
