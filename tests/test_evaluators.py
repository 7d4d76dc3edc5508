"""The evaluators that read the training itself: the objective's loss terms
on each member's own batches, traced during training, and the IFP read off
that trace by the evaluation job."""

import jax
import numpy as np
import pytest

from disentax import results
from disentax.evaluation import job
from disentax.evaluation.members import MemberFunctions
from disentax.experiment import build
from disentax.metrics import METRICS
from disentax.metrics.base import TrainedMembers
from disentax.training import trainer
from disentax.training.train_state import init_state
from experiments import annealing_test


def annealed_beta(step):
  """The tiny preset's schedule in closed form: 70 exp(-15 t) + 1, t =
  min(step / 20, 1)."""
  return 70.0 * np.exp(-15.0 * min(step / 20, 1.0)) + 1.0


def test_loss_terms_are_the_objectives_loss_at_the_step():
  exp = build(annealing_test.get_config("tiny"))
  members, _ = MemberFunctions(exp).at(init_state(exp), step=5)
  terms = METRICS.build({"name": "loss_terms", "num_points": 32,
                         "batch_size": 16}).score(members, jax.random.key(0))
  num_members = len(exp.members)
  for name in ("loss", "recon", "kl", "beta"):
    assert terms[name].shape == (num_members,), name
  np.testing.assert_allclose(terms["beta"], annealed_beta(5), rtol=1e-6)
  # The annealing test's loss is recon + beta * KL, member by member (means
  # of the per-batch terms, so the identity holds for the means).
  np.testing.assert_allclose(
      terms["loss"], terms["recon"] + terms["beta"] * terms["kl"], rtol=1e-5)
  # Members that vary different factors see different batches.
  assert len(np.unique(terms["recon"])) == num_members


def test_loss_terms_options_are_checked():
  with pytest.raises(ValueError, match="num_points=30 must be a multiple of "
                     "batch_size=16"):
    METRICS.build({"name": "loss_terms", "num_points": 30, "batch_size": 16})


@pytest.fixture(scope="module")
def annealed(tmp_path_factory):
  """The annealing test's tiny preset: 5 factors x 2 seeds, 20 steps, the
  loss terms traced every 2 steps; trained and evaluated."""
  workdir = str(tmp_path_factory.mktemp("annealed"))
  config = annealing_test.get_config("tiny")
  config.train.member_execution = "vmap"  # one compile for all members
  trainer.train(config, workdir)
  rows, _ = job.evaluate(workdir)
  return workdir, rows


def test_the_trace_is_the_kl_vs_beta_curve_at_the_configured_resolution(
    annealed):
  workdir, _ = annealed
  trace = results.load_trace(workdir)
  steps = np.arange(0, 21, 2)
  np.testing.assert_array_equal(trace["step"], steps)
  assert trace["kl"].shape == trace["beta"].shape == (len(steps), 10)
  np.testing.assert_allclose(
      trace["beta"], np.repeat([[annealed_beta(s)] for s in steps], 10, 1),
      rtol=1e-5)
  assert np.all(trace["kl"] >= 0)


def test_the_job_reads_every_members_ifp_off_the_trace(annealed):
  workdir, rows = annealed
  trace = results.load_trace(workdir)
  expected = METRICS.build({"name": "ifp", "threshold": 0.1})
  scores = expected.score(TrainedMembers(
      trace=trace, hparams={"factor": np.array(
          [r["hparams"]["factor"] for r in rows])}), jax.random.key(0))
  got = np.array([np.nan if r["metrics"]["ifp"] is None
                  else r["metrics"]["ifp"] for r in rows])
  np.testing.assert_allclose(got, scores["ifp"], rtol=1e-6)
  # A NaN IFP (never froze in 20 steps) leaves the member "ok".
  assert {r["status"] for r in rows} == {"ok"}
