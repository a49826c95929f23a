"""Copy / Repeat Copy generators, the curriculum, character corpora."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import repeat_copy as repeat_copy_config
from dni_jax.data import char_corpus
from dni_jax.data import copy_tasks
from dni_jax.errors import ConfigError
from dni_jax.errors import DataError
from dni_jax.training import experiment
from dni_jax.training import families

SHARED_PTB = os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                          "data", "ptb")


def _stream(task, length, steps, repeats=None):
  """Concatenates the windows of ``steps`` consecutive steps: [B, steps·T]."""
  windows = [task.window_at(length, 0, k, repeats) for k in range(steps)]
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


@pytest.mark.parametrize("max_r, level_r", [(3, 3), (10, 2), (10, 4)])
def test_repeat_copy_episodes_are_what_they_claim(max_r, level_r):
  """A level with ``R_max = level_r`` draws R in 1..level_r per episode."""
  n, bits = 3, 8
  task = copy_tasks.CopyTask(batch_size=8, unroll=4, repeat=True,
                             num_bits=bits, max_repeats=max_r)
  period = n + 2 + level_r * n  # follows the level's R_max, not the cap
  assert task.period(n, level_r) == period
  s = _stream(task, n, steps=(4 * period) // 4, repeats=level_r)
  seen = set()
  for b in range(8):
    for e in range(4):
      ep = slice(e * period, (e + 1) * period)
      x, y = s["inputs"][b, ep], s["targets"][b, ep]
      mask, end = s["mask"][b, ep], s["episode_end"][b, ep]
      r = int(round(x[n, bits + 1] * max_r))  # input R / max_repeats
      seen.add(r)
      assert 1 <= r <= level_r and x[n, bits] == 1
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
  assert seen == set(range(1, level_r + 1))


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


def test_loss_reports_the_cross_entropy_and_the_bits_it_scores():
  task = copy_tasks.CopyTask(batch_size=3, unroll=5, repeat=True)
  batch = task.window_at(jnp.int32(2), jnp.int32(0), jnp.int32(1),
                         jnp.int32(2))
  logits = jax.random.normal(jax.random.PRNGKey(0), batch["targets"].shape)
  per_example, metrics = task.loss(logits, batch)
  mask = np.asarray(batch["mask"], np.float64)[..., None]
  p = 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))
  y = np.asarray(batch["targets"], np.float64)
  xent = -(y * np.log(p) + (1 - y) * np.log(1 - p)) * mask
  assert mask.sum() > 0  # the window holds scored steps
  np.testing.assert_allclose(float(metrics["xent_bits"]),
                             xent.sum() / np.log(2), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(per_example), xent.sum(axis=(1, 2)),
                             rtol=1e-5)
  assert float(metrics["scored_bits"]) == mask.sum() * task.num_outputs


@pytest.mark.parametrize("measure, solved", [
    ("wrong_bits", [False, True]),
    ("xent_bits", [False, False]),
    ("xent_bits_per_bit", [True, False]),
])
def test_the_error_measure_decides_what_counts_as_solved(measure, solved):
  """Two checks of two episodes and 40 scored bits each: one wrong bit at a
  low cross-entropy (0.5 wrong bits, 1 bit of cross-entropy per episode,
  0.05 per bit), then none wrong at a high one (0, 0.5, 0.25)."""
  task = copy_tasks.CopyTask(batch_size=2, unroll=3, check_every=1,
                             threshold=0.15, error_measure=measure)
  checks = [{"bit_errors": 1.0, "xent_bits": 2.0, "scored_bits": 40.0,
             "episodes": 2.0},
            {"bit_errors": 0.0, "xent_bits": 10.0, "scored_bits": 40.0,
             "episodes": 2.0}]
  for step, m in enumerate(checks):
    state = task.init_state()
    state, _ = task.update(state, {k: jnp.float32(v) for k, v in m.items()},
                           step)
    assert (int(state["length"]) == 2) == solved[step], (measure, step)


def test_an_unknown_error_measure_is_refused():
  config = repeat_copy_config.get_config()
  config.data.error_measure = "bits"
  with pytest.raises(ConfigError, match="data.error_measure"):
    families.validate(config)
  with pytest.raises(ValueError, match="error_measure"):
    copy_tasks.CopyTask(batch_size=2, unroll=3, error_measure="bits")


_SOLVED = {"bit_errors": jnp.float32(0.0), "episodes": jnp.float32(2.0)}


def _levels(task, checks):
  """``[(N, R_max, max_task_length_solved)]`` over ``checks`` solved checks.

  ``update`` runs jitted, so the curriculum's state is traced.
  """
  update = jax.jit(task.update)
  state = task.init_state()
  levels = [(int(state["length"]), int(state["repeats"]),
             int(state["max_task_length_solved"]))]
  for step in range(checks * task.check_every):
    state, metrics = update(state, _SOLVED, step)
    if (step + 1) % task.check_every == 0:
      assert int(state["level_start"]) == step + 1  # a new level each check
      assert metrics["max_task_length_solved"] == levels[-1][0] * (
          levels[-1][1] if task.repeat else 1) + 3
      levels.append((int(state["length"]), int(state["repeats"]),
                     int(state["max_task_length_solved"])))
  return levels, metrics


def test_repeat_copy_curriculum_alternates_n_and_r_up_to_the_cap():
  task = copy_tasks.CopyTask(batch_size=2, unroll=3, repeat=True,
                             max_repeats=3, check_every=2)
  levels, metrics = _levels(task, checks=7)
  assert [(n, r) for n, r, _ in levels] == [
      (1, 1), (2, 1), (2, 2), (3, 2), (3, 3),  # N, R, N, R: R reaches the cap
      (4, 3), (5, 3), (6, 3)]                  # then only N grows
  assert set(metrics) == {"length", "repeats", "max_length_solved",
                          "max_task_length_solved"}
  assert metrics["repeats"] == 3 and metrics["length"] == 6
  assert metrics["max_length_solved"] == 5


def test_repeat_copy_curriculum_starts_at_start_repeats():
  task = copy_tasks.CopyTask(batch_size=2, unroll=3, repeat=True,
                             max_repeats=4, start_length=2, start_repeats=3,
                             check_every=1)
  levels, _ = _levels(task, checks=4)
  assert [(n, r) for n, r, _ in levels] == [(2, 3), (3, 3), (3, 4), (4, 4),
                                            (5, 4)]


def test_max_task_length_solved_is_the_papers_t_task():
  # Copy: N + 3 of the longest N solved; 0 while nothing is solved.
  copy = copy_tasks.CopyTask(batch_size=2, unroll=3, check_every=2)
  levels, metrics = _levels(copy, checks=3)
  assert [t for _, _, t in levels] == [0, 4, 5, 6]
  assert [r for _, r, _ in levels] == [1, 1, 1, 1]  # Copy never repeats
  assert "repeats" not in metrics
  # Repeat Copy: N·R_max + 3 of the level solved.
  repeat = copy_tasks.CopyTask(batch_size=2, unroll=3, repeat=True,
                               max_repeats=10, check_every=2)
  levels, _ = _levels(repeat, checks=5)
  # Solved (1, 1), (2, 1), (2, 2), (3, 2), (3, 3).
  assert [t for _, _, t in levels] == [0, 4, 5, 7, 9, 12]
  # Unsolved checks keep the level and the score.
  state = repeat.init_state()
  bad = {"bit_errors": jnp.float32(1.0), "episodes": jnp.float32(2.0)}
  for step in range(4):
    state, metrics = repeat.update(state, bad, step)
  assert metrics["max_task_length_solved"] == 0
  assert (int(state["length"]), int(state["repeats"])) == (1, 1)


def test_copy_window_is_a_pure_function_of_state_and_step():
  task = copy_tasks.CopyTask(batch_size=3, unroll=5, repeat=True,
                             max_repeats=5, seed=7)
  state = dict(task.init_state(), length=jnp.int32(3), repeats=jnp.int32(4),
               level_start=jnp.int32(10))
  window = jax.jit(task.window)
  a = window(state, {}, jnp.int32(17))
  b = window(dict(state), {}, jnp.int32(17))
  c = copy_tasks.CopyTask(batch_size=3, unroll=5, repeat=True, max_repeats=5,
                          seed=7).window(state, {}, 17)  # a fresh task, eager
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])
    np.testing.assert_array_equal(a[key], c[key])
  # The counters do not enter the window; R_max and the step do.
  counted = dict(state, errors=jnp.float32(3.0), episodes=jnp.float32(9.0))
  np.testing.assert_array_equal(window(counted, {}, 17)["inputs"],
                                a["inputs"])
  assert not np.array_equal(window(dict(state, repeats=jnp.int32(2)), {},
                                   17)["mask"], a["mask"])
  assert not np.array_equal(window(state, {}, 18)["inputs"], a["inputs"])


@pytest.mark.parametrize("start_repeats", [0, 11])
def test_start_repeats_must_lie_within_the_cap(start_repeats):
  config = repeat_copy_config.get_config()
  assert config.data.max_repeats == 10
  config.data.start_repeats = start_repeats
  with pytest.raises(ConfigError, match="data.start_repeats"):
    families.validate(config)


def test_repeat_copy_config_builds_its_curriculum():
  config = repeat_copy_config.get_config()
  config.data.start_repeats = 2
  task, _, _ = experiment.build_task(config)
  assert (task.repeat, task.max_repeats, task.start_repeats) == (True, 10, 2)
  assert int(task.init_state()["repeats"]) == 2


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
