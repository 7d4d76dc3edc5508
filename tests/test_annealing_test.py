"""The annealing test: its beta schedules, the one-factor sub-datasets every
member trains on, and the IFP read off the training curves."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from disentax import schedules
from disentax.data import make_dataset
from disentax.objectives import make_objective
from disentax.experiment import build
from disentax.metrics import METRICS
from disentax.metrics.base import TrainedMembers
from experiments import annealing_test as annealing_experiment

DSPRITES = make_dataset({"name": "dsprites", "image_size": 16})


def annealing(**options):
  return make_objective({"name": "annealing_test", **options},
                        factor_names=DSPRITES.factor_names)


def test_exponential_anneal_is_dlib_deft_schedule():
  # beta = 70 exp(-15 t) + 1, t = step / 8000.
  for step in (0, 400, 2000, 8000, 9000):
    t = min(step / 8000, 1.0)
    np.testing.assert_allclose(
        schedules.exponential_anneal(step, 71.0, 1.0, 15.0, 8000),
        70 * np.exp(-15 * t) + 1, rtol=1e-6)


def test_loss_anneals_beta():
  objective = annealing(schedule="linear", beta_start=200.0, beta_end=0.0,
                        anneal_steps=100)
  from disentax.models import VAEOutput
  output = VAEOutput(jnp.ones((2, 1)), jnp.zeros((2, 1)), jnp.ones((2, 1)),
                     jnp.zeros((2, 16, 16, 1)))
  x = jnp.zeros((2, 16, 16, 1))
  for step, beta in ((0, 200.0), (25, 150.0), (100, 0.0)):
    _, metrics = objective.loss(output, x, {"factor": 0.0}, step)
    np.testing.assert_allclose(metrics["beta"], beta, rtol=1e-6)


@pytest.mark.parametrize("factor", [0, 1, 2, 3, 4])
def test_sub_dataset_varies_only_its_factor(factor):
  base_key, key = jax.random.key(1), jax.random.key(2)
  factors, images = DSPRITES.sample_varying_one_factor(
      base_key, key, jnp.int32(factor), 500)
  factors = np.asarray(factors)
  for k, size in enumerate(DSPRITES.factor_sizes):
    values = np.unique(factors[:, k])
    if k == factor:  # all of its values (500 draws cover up to 40)
      assert len(values) == size
    else:
      assert len(values) == 1
  # The fixed values come from the base key alone: same for another key.
  other, _ = DSPRITES.sample_varying_one_factor(base_key, jax.random.key(3),
                                                jnp.int32(factor), 4)
  keep = [k for k in range(5) if k != factor]
  np.testing.assert_array_equal(np.asarray(other)[:, keep],
                                factors[:4, keep])
  np.testing.assert_array_equal(
      images, DSPRITES.observations_from_factors(jnp.asarray(factors)))


def test_whole_dataset_member_varies_every_factor():
  factors, _ = DSPRITES.sample_varying_one_factor(
      jax.random.key(1), jax.random.key(2), jnp.int32(-1), 2000)
  assert [len(np.unique(c)) for c in np.asarray(factors).T] == [
      3, 6, 40, 32, 32]


def test_members_are_factors_times_repeats_and_sample_their_sub_dataset():
  assert annealing().hyperparameters == {"factor": (0., 1., 2., 3., 4.)}
  assert annealing(factors="dataset").hyperparameters == {"factor": (-1.,)}
  assert annealing(factors=("scale", "posY")).hyperparameters == {
      "factor": (1., 4.)}
  assert annealing(factors="scale,posY").hyperparameters == {
      "factor": (1., 4.)}
  objective = annealing()
  member_key = jax.random.key(7)
  x = objective.batch_sampler(DSPRITES, {"factor": jnp.float32(2)}, member_key,
                             jax.random.key(8), 64)
  # The member's sub-dataset: its fixed factors come from its own key.
  from disentax.objectives.annealing_test import BASE_FACTORS_STREAM
  _, expected = DSPRITES.sample_varying_one_factor(
      jax.random.fold_in(member_key, BASE_FACTORS_STREAM), jax.random.key(8),
      jnp.int32(2), 64)
  np.testing.assert_array_equal(x, expected)
  assert len({np.asarray(im).tobytes() for im in x}) > 3


@pytest.mark.parametrize("options, match", [
    ({"factors": ("colour",)}, r"unknown factor\(s\) \['colour'\]"),
    ({"schedule": "cosine"}, "schedule='cosine'; allowed"),
    ({"beta_end": 80.0}, "must be >= 0 and < beta_start=71.0"),
    ({"anneal_steps": 0}, "anneal_steps=0"),
])
def test_bad_settings(options, match):
  with pytest.raises(ValueError, match=match):
    annealing(**options)


def ifp_of_trace(betas, kls, factor, **options):
  """The `ifp` evaluator's scores of a synthetic trace: betas and kls [T, M]
  (one point per trace step), the members' `factor` hyperparameter."""
  metric = METRICS.build({"name": "ifp", **options})
  trace = {"step": np.arange(len(betas)), "beta": np.asarray(betas),
           "kl": np.asarray(kls)}
  return metric.score(TrainedMembers(trace=trace,
                                     hparams={"factor": np.asarray(factor)}),
                      jax.random.key(0))


def test_ifp_read_off_the_traced_curves_recovers_a_known_threshold():
  """Synthetic curves of 3 members: KL rises 0.05 nats per unit of beta
  below thresholds 40, 25 and 10, so KL exceeds 0.1 below 38, 23 and 8;
  beta falls 1 per trace point, on a half-integer grid the true crossing
  avoids.  Recovered within 0.05 (linear interpolation is exact on a
  linear ramp)."""
  betas = np.arange(70.5, 0, -1.0)
  thresholds = np.array([40.0, 25.0, 10.0])
  kls = 0.05 * np.maximum(thresholds[None, :] - betas[:, None], 0.0)
  ifp = ifp_of_trace(np.repeat(betas[:, None], 3, axis=1), kls,
                     np.zeros(3), threshold=0.1)["ifp"]
  np.testing.assert_allclose(ifp, thresholds - 2.0, atol=0.05)
  never = ifp_of_trace([[5.0], [1.0]], [[0.0], [0.05]], np.zeros(1))
  assert np.isnan(never["ifp"][0])
  # A NaN IFP ("never froze") is an outcome, not a broken member.
  assert METRICS.get("ifp").nan_is_outcome


def test_ifp_needs_the_traced_loss_terms():
  metric = METRICS.build({"name": "ifp"})
  with pytest.raises(ValueError, match=r"'loss_terms'"):
    metric.score(TrainedMembers(trace={"step": np.arange(2),
                                       "mig": np.zeros((2, 1))}),
                 jax.random.key(0))
  config = annealing_experiment.get_config("tiny")
  config.eval.trace_every = 0
  with pytest.raises(ValueError, match=r"config.eval.battery.ifp: 'ifp' "
                     r"reads the training-time trace"):
    build(config)
  config.eval.trace_every = 2
  config.eval.trace = {"ifp": {}}
  with pytest.raises(ValueError, match=r"config.eval.trace.ifp: 'ifp' reads "
                     r"the training-time trace, so it scores in the "
                     r"evaluation job"):
    build(config)


def test_whole_dataset_members_get_change_points_of_the_increment():
  """KL(beta) with kinks at 36 and 16 (slope 0.02 below 36, 0.1 below 16),
  traced every 0.5 beta from 80 down to 1: the unsupervised variant finds
  both within 0.5; per-factor members get none."""
  betas = np.arange(80.0, 0.9, -0.5)
  kl = 0.02 * np.maximum(36 - betas, 0) + 0.08 * np.maximum(16 - betas, 0)
  scores = ifp_of_trace(np.stack([betas, betas], 1), np.stack([kl, kl], 1),
                        [-1.0, 2.0], threshold=0.1)
  np.testing.assert_allclose([scores["change_point_0"][0],
                              scores["change_point_1"][0]], [36, 16],
                             atol=0.5)
  assert np.isnan(scores["change_point_2"][0])
  assert all(np.isnan(scores[f"change_point_{i}"][1]) for i in range(3))


def test_ifp_table():
  from disentax.reporting import render, tables
  rows = [{"hparams": {"factor": -1.0},
           "metrics": {"ifp": 30.0, "change_point_0": 36.0,
                       "change_point_1": 16.0, "change_point_2": None}},
          {"hparams": {"factor": 1.0}, "metrics": {"ifp": None}},
          {"hparams": {"factor": 1.0}, "metrics": {"ifp": 12.0}},
          {"hparams": {"factor": 1.0}, "metrics": {"ifp": 14.0}}]
  summary = tables.ifp_summary(rows)
  table = render.format_ifp_table(summary, DSPRITES.factor_names).splitlines()
  # One seed has no interval; two give the bootstrap's range of resamples.
  assert table[2] == ("| whole dataset | 1 | 1 | 30.0 | n/a | 30.0 | 30.0 | "
                      "36.0, 16.0 |")
  assert table[3] == "| scale | 3 | 2 | 13.0 | [12.0, 14.0] | 12.2 | 13.8 | - |"
  assert [(e["factor"], e["n_seeds"], e["n_froze"], e["median"],
           e["change_points"]) for e in summary] == [
               (-1, 1, 1, 30.0, [36.0, 16.0]), (1, 3, 2, 13.0, [])]
