"""TC-estimation study (DeVAE Table 1): closed form, sampler, the
settings, a short training converging to the closed form at D = 2,
reproducibility, table formatting and validation."""

import dataclasses
import math
import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import REPO, run_module
from disentax.preemption import Preempted
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


def test_settings_are_the_documented_values():
  # The DeVAE authors' fork: torch.optim.Adam() defaults, nn.Linear init,
  # nn.LeakyReLU() slope, probabilities clamped at 1e-6, the batch itself
  # shuffled; the DeVAE paper's batch 256.
  assert tc.DEVAE_CODE == tc.Setting(
      batch_size=256, learning_rate=1e-3, b1=0.9, b2=0.999, leaky_slope=0.01,
      initializer="torch", permuted="same_batch", probability_clip=1e-6,
      width=1000, depth=6)
  # This repo's FactorVAE discriminator and Adam (dlib-google's).
  assert tc.DLIB_GOOGLE == tc.Setting(
      batch_size=64, learning_rate=1e-4, b1=0.5, b2=0.9, leaky_slope=0.2,
      initializer="glorot", permuted="same_batch", probability_clip=0.0,
      width=1000, depth=6)
  assert tc.SETTINGS == {"devae_code": tc.DEVAE_CODE,
                         "dlib_google": tc.DLIB_GOOGLE}


# D = 2 (one pair): a small discriminator (64 x 2) trained 600 steps at batch
# 256 with the DeVAE code's Adam betas, init, slope and clip, at lr 3e-4: at
# 1e-3 the last step's discriminator still scatters by +-0.1 (0.66 - 0.94
# over 8 runs), at 3e-4 by +-0.03 (0.78 - 0.84).
SMALL = dataclasses.replace(tc.DEVAE_CODE, width=64, depth=2,
                            learning_rate=3e-4)


@pytest.fixture(scope="module")
def d2_estimates():
  """rho in (0.01, 0.9), 2 repeats.  Observed (key 0): rho 0.01 -> 0.000,
  -0.000 (true 0.0001); rho 0.9 -> 0.827, 0.836 (true 0.830)."""
  return tc.estimate_tc_grid(jax.random.PRNGKey(0), 2, [0.01, 0.9],
                             num_repeats=2, num_steps=600, setting=SMALL,
                             eval_batches=16)


def test_trained_estimate_converges_to_the_closed_form_at_d2(d2_estimates):
  assert d2_estimates.shape == (2, 2)
  # An untrained discriminator (or one blind to rho) gives ~0.
  np.testing.assert_allclose(d2_estimates[1], tc.true_tc(2, 0.9), atol=0.08)
  np.testing.assert_allclose(d2_estimates[0], 0, atol=0.03)


def test_same_key_same_estimates_other_key_others(d2_estimates):
  again = tc.estimate_tc_grid(jax.random.PRNGKey(0), 2, [0.01, 0.9],
                              num_repeats=2, num_steps=600, setting=SMALL,
                              eval_batches=16)
  np.testing.assert_array_equal(again, d2_estimates)
  other = tc.estimate_tc_grid(jax.random.PRNGKey(1), 2, [0.01, 0.9],
                              num_repeats=2, num_steps=600, setting=SMALL,
                              eval_batches=16)
  assert not np.any(other == d2_estimates)


def test_second_batch_permutation_estimates_the_closed_form_too():
  """Kim & Mnih's second batch: the same expected gradient, the same
  answer (observed 0.838)."""
  second = dataclasses.replace(SMALL, permuted="second_batch")
  estimate = tc.estimate_tc(jax.random.PRNGKey(0), 2, 0.9, 600, second)
  assert estimate == pytest.approx(tc.true_tc(2, 0.9), abs=0.08)


def test_chunked_checkpointed_training_matches_and_resumes(tmp_path):
  setting = dataclasses.replace(tc.DEVAE_CODE, batch_size=8, width=16,
                                depth=1)
  kwargs = dict(num_repeats=2, num_steps=8, setting=setting, eval_batches=1)
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
  with pytest.raises(Preempted, match="checkpointed at step 6"):
    tc.estimate_tc_grid(key, 4, [0.3, 0.9], steps_per_call=2,
                        checkpoint_path=path, progress=done.append,
                        stop=lambda: True, **kwargs)  # (a SIGTERM)
  assert done == [6]  # resumed at 4, stopped after one call of 2
  done = []
  resumed = tc.estimate_tc_grid(key, 4, [0.3, 0.9], steps_per_call=4,
                                checkpoint_path=path, progress=done.append,
                                **kwargs)
  assert done == [8]  # resumed at step 6: chunks 4 + 2 + 2 = one of 8
  np.testing.assert_array_equal(resumed, whole)
  # Finished: the checkpoint holds the estimates, a rerun trains nothing.
  again = tc.estimate_tc_grid(key, 4, [0.3, 0.9], steps_per_call=4,
                              checkpoint_path=path, progress=done.append,
                              **kwargs)
  assert done == [8]
  np.testing.assert_array_equal(again, whole)
  # A different study (another key, or another setting) ignores it.
  other = tc.estimate_tc_grid(jax.random.PRNGKey(2), 4, [0.3, 0.9],
                              steps_per_call=4, checkpoint_path=path,
                              **kwargs)
  assert not np.array_equal(other, whole)
  slower = dict(kwargs, setting=dataclasses.replace(setting,
                                                    learning_rate=1e-4))
  other = tc.estimate_tc_grid(key, 4, [0.3, 0.9], steps_per_call=4,
                              checkpoint_path=path, **slower)
  assert not np.array_equal(other, whole)


def test_format_table_row():
  table = tc.format_table({10: {0.6: np.array([1.0, 1.2])}})
  lines = table.splitlines()
  assert lines[0] == ("| D | rho | true TC | paper | ours mean ± sd | "
                      "ours min – max | runs | (paper − mean) / sd | "
                      "paper rel. error | our rel. error |")
  # true 1.116; ours 1.10 ± 0.14 (ddof 1); paper 1.08 is (1.08 - 1.1) /
  # 0.1414 = -0.1 sd away; paper error 0.03, ours |1.1 - 1.116| / 1.116.
  assert lines[2] == ("| 10 | 0.6 | 1.12 | 1.08 | 1.10 ± 0.14 | "
                      "1.00 – 1.20 | 2 | -0.1 | 0.03 | 0.01 |")
  table = tc.format_table({4: {0.5: np.array([0.1])}})
  assert ("| 4 | 0.5 | 0.29 | — | 0.10 ± 0.00 | 0.10 – 0.10 | 1 | — | — | "
          "0.65 |") in table


def test_check_study_args_parses_flag_strings():
  assert tc.check_study_args(["10", "100"], ["0.3", "0.9"], 10,
                             2000) == ((10, 100), (0.3, 0.9))


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
  with pytest.raises(ValueError, match=r"repeats=0.*eval_batches=0"):
    tc.check_study_args([10], [0.5], repeats=0, steps=5, eval_batches=0)


@pytest.mark.parametrize("change, message", [
    ({"batch_size": 1}, "batch_size=1: must be an int >= 2"),
    ({"learning_rate": 0.0}, "learning_rate=0.0: must be a finite number > 0"),
    ({"b1": 1.0}, "b1=1.0: must be in [0, 1)"),
    ({"b2": -0.5}, "b2=-0.5: must be in [0, 1)"),
    ({"leaky_slope": float("nan")}, "leaky_slope=nan: must be a finite"),
    ({"probability_clip": 0.5}, "probability_clip=0.5: must be in [0, 0.5)"),
    ({"initializer": "he"}, "initializer='he': must be one of ('glorot', "
                            "'torch')"),
    ({"permuted": "other"}, "permuted='other': must be one of ('same_batch', "
                            "'second_batch')"),
    ({"width": 0, "depth": 2.5}, "width=0: must be an int >= 1; depth=2.5"),
])
def test_check_setting_names_each_bad_value(change, message):
  with pytest.raises(ValueError) as info:
    tc.check_setting(dataclasses.replace(tc.DEVAE_CODE, **change))
  assert message in str(info.value)


def test_cli_rejects_bad_values_before_compiling():
  result = run_module("disentax.studies.tc_estimation", "--dims=10,15",
                      "--rhos=0.3,1.2", "--setting=dlib_google",
                      "--learning_rate=0", "--b2=1", check=False)
  assert result.returncode == 2
  for bad in ("dims [15]", "rhos [1.2]", "learning_rate=0.0", "b2=1.0"):
    assert bad in result.stderr
  assert "D=10" not in result.stderr  # nothing ran


def test_cli_sigterm_checkpoints_exits_143_and_a_rerun_resumes(tmp_path):
  """The house's preemption contract: SIGTERM while training saves the state
  after the current call and exits 143; the same command then finishes."""
  args = ["-m", "disentax.studies.tc_estimation", "--dims=4", "--rhos=0.5",
          "--repeats=1", "--steps=2000", "--steps_per_call=2",
          "--batch_size=8", "--width=8", "--depth=1", "--eval_batches=1",
          f"--checkpoint_dir={tmp_path}"]
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
  process = subprocess.Popen([sys.executable, *args], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
  lines = []
  for line in process.stderr:  # the first call done: training is under way
    lines.append(line)
    if "step 2/2000" in line:
      process.send_signal(signal.SIGTERM)
      break
  _, rest = process.communicate(timeout=300)
  assert process.returncode == 143, "".join(lines) + rest
  assert "stopped by SIGTERM, checkpointed at step" in rest
  assert "rerun the same command to resume" in rest
  stopped_at = int(rest.split("checkpointed at step ")[1].split(";")[0])
  assert 2 <= stopped_at < 2000
  result = subprocess.run([sys.executable, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  progress = [l for l in result.stderr.splitlines() if "step " in l]
  assert progress[0].startswith(f"D=4: step {stopped_at + 2}/2000")
  assert "| 4 | 0.5 |" in result.stdout
