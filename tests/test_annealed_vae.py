"""AnnealedVAE: the capacity schedule C(step) and the loss recon +
gamma * |KL - C| have their known values; bad hyperparameters are refused
before anything compiles; training makes KL follow C for every member."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from disentax.experiment import build
from disentax.training import trainer
from tests.conftest import short_run
from disentax.models import VAEOutput
from disentax.objectives import OBJECTIVES, make_objective
from disentax.objectives.annealed_vae import annealed_capacity, annealed_vae
from experiments import annealed_vae as annealed_config
from experiments.common import PRESETS

# A fixed VAE output: 2 examples, 3 latents, 2x2x1 images.
MEAN = np.array([[1.0, 0.0, -0.5], [0.0, -2.0, 0.3]], np.float32)
LOGVAR = np.array([[0.0, math.log(2.0), -1.0], [0.5, 0.0, 0.0]], np.float32)
LOGITS = np.array([[[[0.0], [2.0]], [[-1.0], [3.0]]],
                   [[[-2.0], [0.5]], [[4.0], [-3.0]]]], np.float32)
TARGETS = np.array([[[[1.0], [0.0]], [[0.0], [1.0]]],
                    [[[0.0], [1.0]], [[1.0], [0.0]]]], np.float32)
OUTPUT = VAEOutput(mean=jnp.asarray(MEAN), logvar=jnp.asarray(LOGVAR),
                   z=jnp.zeros((2, 3)), logits=jnp.asarray(LOGITS))


def numpy_recon_and_kl():
  """Batch means, written independently of disentax in float64."""
  logits, x = LOGITS.astype(float), TARGETS.astype(float)
  p = 1.0 / (1.0 + np.exp(-logits))
  recon = -(x * np.log(p) + (1 - x) * np.log(1 - p)).reshape(2, -1).sum(1)
  mean, logvar = MEAN.astype(float), LOGVAR.astype(float)
  kl = 0.5 * (mean ** 2 + np.exp(logvar) - logvar - 1).sum(1)
  return recon.mean(), kl.mean()


@pytest.mark.parametrize("step, expected", [
    (0, 0.0), (1, 25.0 / 100_000), (50_000, 12.5), (99_999, 24.99975),
    (100_000, 25.0), (200_000, 25.0), (3_000_000, 25.0)])
def test_capacity_rises_linearly_to_c_max_and_stays(step, expected):
  """C = min(c_max, c_max * step / iteration_threshold), c_max 25, 100k;
  evaluated with the step traced (as the trainer calls it)."""
  capacity = jax.jit(annealed_capacity, static_argnums=2)(
      jnp.int32(step), jnp.float32(25.0), 100_000)
  # optax computes 1 - (1 - step/T) in float32: absolute error ~ c_max * 1e-7.
  np.testing.assert_allclose(float(capacity), expected, rtol=1e-6, atol=1e-5)


def test_capacity_is_per_member():
  """vmapped over members, each member's C uses its own c_max."""
  capacity = jax.vmap(annealed_capacity, in_axes=(None, 0, None))(
      jnp.int32(25), jnp.array([5.0, 10.0, 100.0]), 100)
  np.testing.assert_allclose(capacity, [1.25, 2.5, 25.0], rtol=1e-6)


@pytest.mark.parametrize("step, capacity", [
    (0, 0.0), (10, 0.5), (50, 2.5), (100, 5.0), (500, 5.0)])
@pytest.mark.parametrize("gamma", [1000.0, 3.0])
def test_loss_is_recon_plus_gamma_times_abs_kl_minus_capacity(
    step, capacity, gamma):
  """KL of the fixed output is ~1.8: below C at later steps, above at the
  first ones, so the absolute value is exercised on both sides."""
  objective = annealed_vae(c_max=5.0, gamma=gamma, iteration_threshold=100)
  loss, metrics = jax.jit(objective.loss)(
      OUTPUT, jnp.asarray(TARGETS),
      {"c_max": jnp.float32(5.0), "gamma": jnp.float32(gamma)},
      jnp.int32(step))
  recon, kl = numpy_recon_and_kl()
  assert 1.0 < kl < 2.5  # both sides of the |.| are reached above
  expected = recon + gamma * abs(kl - capacity)
  assert sorted(metrics) == ["capacity", "kl", "kl_capacity_gap", "loss",
                             "recon"]
  np.testing.assert_allclose(metrics["recon"], recon, rtol=1e-6)
  np.testing.assert_allclose(metrics["kl"], kl, rtol=1e-6)
  np.testing.assert_allclose(metrics["capacity"], capacity, rtol=1e-6)
  np.testing.assert_allclose(metrics["kl_capacity_gap"], abs(kl - capacity),
                             rtol=1e-5)
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  assert float(metrics["loss"]) == float(loss)


def test_loss_reads_c_max_and_gamma_from_each_member():
  objective = annealed_vae(c_max=(5.0, 25.0), gamma=(1.0, 10.0),
                           iteration_threshold=100)
  losses, _ = jax.vmap(objective.loss, in_axes=(None, None, 0, None))(
      OUTPUT, jnp.asarray(TARGETS),
      {"c_max": jnp.array([5.0, 25.0, 25.0]),
       "gamma": jnp.array([1.0, 1.0, 10.0])}, jnp.int32(100))
  recon, kl = numpy_recon_and_kl()
  np.testing.assert_allclose(
      losses, [recon + abs(kl - 5), recon + abs(kl - 25),
               recon + 10 * abs(kl - 25)], rtol=1e-5)


def test_builder_grid_and_config_keys():
  objective = make_objective({"name": "annealed_vae", "c_max": (5, 25),
                              "iteration_threshold": 7}, dataset_size=100)
  assert objective.name == "annealed_vae"
  assert objective.hyperparameters == {"c_max": (5.0, 25.0),
                                       "gamma": (1000.0,)}
  assert OBJECTIVES.allowed_keys("annealed_vae") == [
      "c_max", "gamma", "iteration_threshold", "reconstruction"]


@pytest.mark.parametrize("kwargs, pattern", [
    ({"c_max": 0.0}, r"c_max.*\[0\.0\].*> 0"),
    ({"c_max": (5.0, -1.0)}, r"c_max.*\[-1\.0\].*> 0"),
    ({"c_max": ()}, r"c_max is empty"),
    ({"c_max": math.nan}, r"c_max.*finite"),
    ({"gamma": 0.0}, r"gamma.*\[0\.0\].*> 0"),
    ({"gamma": -1000.0}, r"gamma.*\[-1000\.0\].*> 0"),
    ({"iteration_threshold": 0}, r"iteration_threshold=0.*integer >= 1"),
    ({"iteration_threshold": 1.5}, r"iteration_threshold=1\.5.*integer"),
    ({"iteration_threshold": True}, r"iteration_threshold=True.*integer"),
    ({"reconstruction": "l1"}, r"reconstruction='l1'.*bernoulli")])
def test_bad_hyperparameters_are_refused(kwargs, pattern):
  with pytest.raises(ValueError, match=pattern):
    annealed_vae(**kwargs)


def test_bad_config_fails_before_compiling_or_writing(tmp_path):
  config = annealed_config.get_config("tiny")
  config.objective.c_max = (5.0, -5.0)
  with pytest.raises(ValueError, match=r"c_max.*-5\.0"):
    trainer.train(config, str(tmp_path))
  assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("preset", PRESETS)
def test_config_builds_for_every_preset(preset):
  exp = build(annealed_config.get_config(preset))
  assert exp.method == "annealed_vae"
  grid = exp.objective.hyperparameters
  assert grid["gamma"] == (1000.0,)
  if preset == "paper":
    assert grid["c_max"] == (5.0, 10.0, 25.0, 50.0, 75.0, 100.0)
    assert len(exp.members) == 6 * 50
  else:
    assert len(grid["c_max"]) == 2


def test_training_makes_kl_follow_the_capacity_of_every_member(tmp_path):
  """The tiny preset (c_max 5 and 25, C reaching c_max at step 10), 60 steps.

  The total loss is not expected to fall here: at the start KL ~ C ~ 0, so
  the loss is just the reconstruction, and once C has risen the loss carries
  gamma * |KL - C| = 1000 x (a noisy gap of a few nats), which is larger
  than the start.  So this checks what AnnealedVAE promises instead: the
  reconstruction falls, and KL rises from ~0 to about each member's own
  c_max (members with c_max 25 end with several times the KL of c_max 5).
  Members are vmapped (not unrolled) only to compile faster: same function.
  """
  config = annealed_config.get_config("tiny")
  _, lines = short_run(config, tmp_path, 60)
  c_max = np.array([5.0, 5.0, 25.0, 25.0])  # hparam-major: 2 seeds each
  # The logged C: mean over steps 0..4 of c_max * step / 10, then c_max.
  np.testing.assert_allclose(lines[0]["capacity"], 0.2 * c_max, rtol=1e-6)
  np.testing.assert_allclose(lines[-1]["capacity"], c_max, rtol=1e-6)

  first_recon = np.array(lines[0]["recon"])
  last_recon = np.array(lines[-1]["recon"])
  assert np.all(last_recon < 0.8 * first_recon), (first_recon, last_recon)

  kl = np.array([l["kl"] for l in lines])  # [chunks, members]
  assert np.all(kl[0] < 0.1 * c_max), kl[0]
  late_kl = kl[len(kl) // 2:].mean(axis=0)  # steps 30..60, C = c_max
  assert np.all(late_kl > 0.4 * c_max) and np.all(late_kl < 1.6 * c_max), (
      late_kl)
  assert np.all(late_kl[2:] > 2 * late_kl[:2]), late_kl  # same seeds
