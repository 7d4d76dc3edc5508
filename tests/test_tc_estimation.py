"""TC-estimation study (DeVAE Table 1): closed form, sampler, a short
training with known answers, table formatting and flag validation."""

import math

import jax
import numpy as np
import pytest

from conftest import run_module
from disentax.studies import tc_estimation as tc


def test_true_tc_known_values():
  # -(D/4) log(1 - rho^2), by hand.
  assert tc.true_tc(10, 0.6) == pytest.approx(2.5 * math.log(1 / 0.64))
  assert tc.true_tc(10, 0.6) == pytest.approx(1.1157177566)
  assert tc.true_tc(2, 0.5) == pytest.approx(0.5 * math.log(4 / 3))
  assert tc.true_tc(1000, 0.9) == pytest.approx(250 * math.log(1 / 0.19))


def test_paper_true_tc_column_matches_closed_form():
  for (dim, rho), (_, paper_true, _) in tc.PAPER_TABLE_1.items():
    assert tc.true_tc(dim, rho) == pytest.approx(paper_true, abs=0.006)


def test_sample_correlated_halves_covariance():
  dim, rho = 6, 0.6
  x = np.asarray(tc.sample_correlated_halves(jax.random.PRNGKey(0), 20000,
                                             dim, rho))
  assert x.shape == (20000, dim)
  expected = np.eye(dim)
  for i in range(dim // 2):  # Cov(x1_i, x2_i) = rho, all other pairs 0
    expected[i, i + dim // 2] = expected[i + dim // 2, i] = rho
  np.testing.assert_allclose(np.cov(x, rowvar=False), expected, atol=0.03)
  np.testing.assert_allclose(x.mean(0), 0, atol=0.03)


@pytest.fixture(scope="module")
def short_estimates():
  """D=10, rho in (0.01, 0.6), 3 repeats of 500 steps of a smaller
  discriminator (256 x 3) at lr 1e-3, batch 64: one compiled program.
  Observed (seed 0): rho 0.01 -> 0.02, -0.02, 0.02 (true 0.0003);
  rho 0.6 -> 1.06, 0.87, 1.06, mean 0.997 (true 1.116)."""
  return tc.estimate_tc_grid(jax.random.PRNGKey(0), 10, [0.01, 0.6],
                             num_repeats=3, num_steps=500, batch_size=64,
                             eval_batches=16, learning_rate=1e-3, width=256,
                             depth=3)


def test_short_training_estimates_true_tc(short_estimates):
  assert short_estimates.shape == (2, 3)
  assert np.all(np.isfinite(short_estimates))
  # An untrained or rho-blind discriminator gives ~0; a trained one
  # (slightly under-)estimates the true 1.116.
  assert short_estimates[1].mean() == pytest.approx(tc.true_tc(10, 0.6),
                                                    abs=0.3)


def test_near_independent_halves_estimate_near_zero(short_estimates):
  np.testing.assert_allclose(short_estimates[0], 0, atol=0.1)


@pytest.mark.slow  # CI time; run with -m slow
def test_chunked_checkpointed_training_matches_and_resumes(tmp_path):
  kwargs = dict(num_repeats=2, num_steps=8, batch_size=8, eval_batches=1,
                learning_rate=1e-3, width=16, depth=1)
  key = jax.random.PRNGKey(1)
  # (One call of 8 steps gives the same numbers too; not compiled here.)
  whole = tc.estimate_tc_grid(key, 4, [0.3, 0.9], steps_per_call=4, **kwargs)
  path = str(tmp_path / "ck.npz")

  class Killed(Exception):
    pass

  def kill_after_4(done):
    if done == 4:
      raise Killed

  with pytest.raises(Killed):  # checkpoints at step 4, then dies
    tc.estimate_tc_grid(key, 4, [0.3, 0.9], steps_per_call=4,
                        checkpoint_path=path, progress=kill_after_4, **kwargs)
  done = []
  resumed = tc.estimate_tc_grid(key, 4, [0.3, 0.9], steps_per_call=4,
                                checkpoint_path=path, progress=done.append,
                                **kwargs)
  assert done == [8]  # resumed at step 4
  np.testing.assert_array_equal(resumed, whole)
  # Finished: the checkpoint holds the estimates, a rerun trains nothing.
  again = tc.estimate_tc_grid(key, 4, [0.3, 0.9], steps_per_call=4,
                              checkpoint_path=path, progress=done.append,
                              **kwargs)
  assert done == [8]
  np.testing.assert_array_equal(again, whole)
  # A different study ignores the checkpoint.
  other = tc.estimate_tc_grid(jax.random.PRNGKey(2), 4, [0.3, 0.9],
                              steps_per_call=4, checkpoint_path=path,
                              **kwargs)
  assert not np.array_equal(other, whole)


def test_format_table_row():
  table = tc.format_table({10: {0.6: np.array([1.0, 1.2])}})
  lines = table.splitlines()
  assert lines[0].startswith("| D | rho | true TC |")
  # true 1.116; ours 1.10 ± 0.14 (ddof 1); paper 1.08 / 1.12 / 0.03.
  assert lines[2] == ("| 10 | 0.6 | 1.12 | 1.10 ± 0.14 | 1.08 | 1.12 | "
                      "0.01 | 0.03 |")
  table = tc.format_table({4: {0.5: np.array([0.1])}})
  assert "| 4 | 0.5 | 0.29 | 0.10 ± 0.00 | — | — | 0.65 | — |" in table


def test_check_study_args_parses_flag_strings():
  assert tc.check_study_args(["10", "100"], ["0.3", "0.9"], 10, 2000,
                             64) == ((10, 100), (0.3, 0.9))


@pytest.mark.parametrize("dims, rhos, message", [
    (["10", "7"], ["0.3"], "dims [7]"),
    (["0"], ["0.3"], "dims [0]"),
    (["-4", "ten"], ["0.3"], "dims [-4, 'ten']"),
    ([], ["0.3"], "dims (none)"),
    (["10"], ["0", "0.5", "1"], "rhos [0.0, 1.0]"),
    (["10"], ["1.5", "-0.2"], "rhos [1.5, -0.2]"),
])
def test_check_study_args_rejects_bad_dims_and_rhos(dims, rhos, message):
  with pytest.raises(ValueError, match="must be") as info:
    tc.check_study_args(dims, rhos)
  assert message in str(info.value)


def test_check_study_args_rejects_bad_counts():
  with pytest.raises(ValueError, match=r"repeats=0.*batch_size=1"):
    tc.check_study_args([10], [0.5], repeats=0, steps=5, batch_size=1)


def test_cli_rejects_odd_dim_before_compiling():
  result = run_module("disentax.studies.tc_estimation", "--dims=10,15",
                      "--rhos=0.3,1.2", check=False)
  assert result.returncode != 0
  assert "dims [15]" in result.stderr and "rhos [1.2]" in result.stderr
  assert "D=10" not in result.stderr  # nothing ran
