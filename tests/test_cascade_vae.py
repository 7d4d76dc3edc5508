"""CascadeVAE-C: the stage and the per-latent KL weights have their known
values at chosen steps, the loss is recon + the weighted KL, bad
hyperparameters are refused before anything compiles, and training reduces
the loss of every member."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from disentax.experiment import build, learning_rate_schedule
from disentax.models.conv import conv_vae
from disentax.models.vae import posterior_logvar
from disentax.training import trainer
from tests.conftest import short_run
from disentax.models import VAEOutput
from disentax.objectives import OBJECTIVES, make_objective
from disentax.objectives.cascade_vae import (cascade_stage, cascade_vae_c,
                                             cascade_weights)
from experiments import cascade_vae as cascade_config
from experiments.common import PRESETS

LOW, HIGH = 0.1, 10.0

# A fixed VAE output: 3 examples, 10 latents, 2x2x1 images.
_rng = np.random.default_rng(3)
MEAN = _rng.normal(size=(3, 10)).astype(np.float32)
LOGVAR = _rng.normal(scale=0.5, size=(3, 10)).astype(np.float32)
LOGITS = _rng.normal(scale=2.0, size=(3, 2, 2, 1)).astype(np.float32)
TARGETS = (_rng.uniform(size=(3, 2, 2, 1)) > 0.5).astype(np.float32)
OUTPUT = VAEOutput(mean=jnp.asarray(MEAN), logvar=jnp.asarray(LOGVAR),
                   z=jnp.zeros((3, 10)), logits=jnp.asarray(LOGITS))


def numpy_recon_and_kl_per_latent():
  """Batch-mean reconstruction and batch-mean KL of each latent [10],
  written independently of disentax in float64."""
  logits, x = LOGITS.astype(float), TARGETS.astype(float)
  recon = (np.maximum(logits, 0) - logits * x
           + np.log1p(np.exp(-np.abs(logits)))).reshape(3, -1).sum(1)
  mean, logvar = MEAN.astype(float), LOGVAR.astype(float)
  kl = 0.5 * (mean ** 2 + np.exp(logvar) - logvar - 1)
  return recon.mean(), kl.mean(axis=0)


def expected_weights(num_low, num_latents=10):
  return [LOW] * num_low + [HIGH] * (num_latents - num_low)


@pytest.mark.parametrize("step, num_low", [
    (0, 1), (1, 1), (19_999, 1), (20_000, 2), (39_999, 2), (40_000, 3),
    (170_000, 9), (180_000, 10), (250_000, 10), (10_000_000, 10)])
def test_weights_open_one_latent_per_stage(step, num_low):
  """Official schedule: stage = min(step // 20000, 9); latents 0..stage get
  beta_low, the rest beta_high.  The step is traced, as in training."""
  weights = jax.jit(cascade_weights, static_argnums=(1, 2))(
      jnp.int32(step), 20_000, 10, jnp.float32(LOW), jnp.float32(HIGH))
  np.testing.assert_allclose(weights, expected_weights(num_low), rtol=1e-7)
  stage = jax.jit(cascade_stage, static_argnums=(1, 2))(jnp.int32(step),
                                                        20_000, 10)
  assert int(stage) == num_low - 1


@pytest.mark.parametrize("step, num_low", [(0, 1), (20_000, 2),
                                           (250_000, 10)])
def test_loss_is_recon_plus_per_latent_weighted_kl(step, num_low):
  objective = cascade_vae_c(beta_low=LOW, beta_high=HIGH, stage_steps=20_000,
                            num_latents=10)
  loss, metrics = jax.jit(objective.loss)(
      OUTPUT, jnp.asarray(TARGETS),
      {"beta_low": jnp.float32(LOW), "beta_high": jnp.float32(HIGH)},
      jnp.int32(step))
  recon, kl = numpy_recon_and_kl_per_latent()
  weighted = float(np.dot(expected_weights(num_low), kl))
  assert sorted(metrics) == ["kl", "kl_opened", "loss", "recon", "stage",
                             "weighted_kl"]
  np.testing.assert_allclose(metrics["recon"], recon, rtol=1e-6)
  np.testing.assert_allclose(metrics["kl"], kl.sum(), rtol=1e-6)
  np.testing.assert_allclose(metrics["kl_opened"], kl[:num_low].sum(),
                             rtol=1e-6)
  np.testing.assert_allclose(metrics["weighted_kl"], weighted, rtol=1e-6)
  np.testing.assert_allclose(metrics["stage"], num_low - 1)
  np.testing.assert_allclose(loss, recon + weighted, rtol=1e-6)
  assert not np.isclose(weighted, kl.sum())  # the weighting matters


def test_number_of_stages_is_the_number_of_latents():
  """With 3 latents the last stage is 2, whatever the step."""
  objective = cascade_vae_c(beta_low=1.0, beta_high=4.0, stage_steps=5,
                            num_latents=3)
  output = VAEOutput(OUTPUT.mean[:, :3], OUTPUT.logvar[:, :3],
                     OUTPUT.z[:, :3], OUTPUT.logits)
  hparams = {"beta_low": jnp.float32(1.0), "beta_high": jnp.float32(4.0)}
  recon, kl = numpy_recon_and_kl_per_latent()
  for step, weights in [(4, [1, 4, 4]), (5, [1, 1, 4]), (10, [1, 1, 1]),
                        (1000, [1, 1, 1])]:
    _, metrics = objective.loss(output, jnp.asarray(TARGETS), hparams,
                                jnp.int32(step))
    np.testing.assert_allclose(metrics["weighted_kl"],
                               np.dot(weights, kl[:3]), rtol=1e-6)
    assert float(metrics["stage"]) == min(step // 5, 2)
    assert int(objective.stage(jnp.int32(step))) == min(step // 5, 2)


def test_loss_reads_betas_from_each_member():
  objective = cascade_vae_c(beta_low=(0.1, 1.0), beta_high=(5.0, 10.0),
                            num_latents=10)
  losses, _ = jax.vmap(objective.loss, in_axes=(None, None, 0, None))(
      OUTPUT, jnp.asarray(TARGETS),
      {"beta_low": jnp.array([0.1, 1.0, 0.1]),
       "beta_high": jnp.array([5.0, 5.0, 10.0])}, jnp.int32(20_000))
  recon, kl = numpy_recon_and_kl_per_latent()
  expected = [recon + lo * kl[:2].sum() + hi * kl[2:].sum()
              for lo, hi in [(0.1, 5.0), (1.0, 5.0), (0.1, 10.0)]]
  np.testing.assert_allclose(losses, expected, rtol=1e-6)


def test_builder_grid_and_config_keys():
  objective = make_objective({"name": "cascade_vae_c", "beta_high": (5, 10),
                              "stage_steps": 3}, dataset_size=100,
                             num_latents=4)
  assert objective.name == "cascade_vae_c"
  assert objective.hyperparameters == {"beta_low": (0.1,),
                                       "beta_high": (5.0, 10.0)}
  assert OBJECTIVES.allowed_keys("cascade_vae_c") == [
      "beta_low", "beta_high", "stage_steps", "reconstruction",
      "num_latents"]
  # The objective's stage: min(step // 3, 3), as the loss's.
  assert [int(objective.stage(jnp.int32(s))) for s in (0, 2, 3, 8, 9, 99)] \
      == [0, 0, 1, 2, 3, 3]


@pytest.mark.parametrize("kwargs, pattern", [
    ({"beta_low": 0.0}, r"beta_low.*\[0\.0\].*> 0"),
    ({"beta_high": (10.0, -1.0)}, r"beta_high.*\[-1\.0\].*> 0"),
    ({"beta_high": ()}, r"beta_high is empty"),
    ({"beta_low": float("inf")}, r"beta_low.*finite"),
    ({"beta_low": 20.0}, r"\(20\.0, 10\.0\).*beta_low.*<= beta_high"),
    ({"beta_low": (0.1, 6.0), "beta_high": (5.0, 10.0)},
     r"\[\(6\.0, 5\.0\)\].*<= beta_high"),
    ({"stage_steps": 0}, r"stage_steps=0.*integer >= 1"),
    ({"stage_steps": 2.5}, r"stage_steps=2\.5.*integer"),
    ({"stage_steps": -20_000}, r"stage_steps=-20000.*>= 1"),
    ({"reconstruction": "l1"}, r"reconstruction='l1'.*bernoulli")])
def test_bad_hyperparameters_are_refused(kwargs, pattern):
  with pytest.raises(ValueError, match=pattern):
    cascade_vae_c(**kwargs, num_latents=10)


def test_bad_config_fails_before_compiling_or_writing(tmp_path):
  config = cascade_config.get_config("tiny")
  config.objective.stage_steps = 0
  with pytest.raises(ValueError, match=r"stage_steps=0"):
    trainer.train(config, str(tmp_path))
  assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("preset", cascade_config.PRESETS)
def test_config_builds_for_every_preset(preset):
  exp = build(cascade_config.get_config(preset))
  assert exp.method == "cascade_vae_c"
  grid = exp.objective.hyperparameters
  assert grid["beta_low"] == (0.1,)
  assert exp.config.model.num_latents == 10
  if preset.startswith("paper"):
    assert 10.0 in grid["beta_high"]  # the published setting
    assert exp.config.objective.stage_steps == 20_000
    assert len(exp.members) == len(grid["beta_high"]) * 50
  else:
    assert len(grid["beta_high"]) == 2
  assert cascade_config.PRESETS[2:] == PRESETS[1:]


def test_paper_preset_trains_as_the_official_code_runs():
  """Constant Adam 1e-4 (the code's decay never advances), a fresh Adam
  per stage, L2 4e-5, softplus sigma, its metric every 10,000 steps with
  every checkpoint kept, and the best one scored."""
  config = cascade_config.get_config("paper")
  schedule = learning_rate_schedule(config.train)
  for step in (0, 49_999, 50_000, 100_000, 250_000, 299_999):
    assert float(schedule(step)) == np.float32(1e-4), step
  assert config.train.reset_adam_at_stage
  assert config.train.l2_regularization == 4e-5
  assert config.model.std_parameterization == "softplus"
  assert config.eval.trace_every == config.train.checkpoint_every == 10_000
  assert "mig" in config.eval.trace and config.eval.metric.name == "mig"
  # Every checkpoint a traced step has: 10k, 20k, ..., 300k.
  assert config.train.keep_checkpoints == 30
  assert config.eval.checkpoint == "best"


def test_lr_decay_preset_decays_as_the_code_intended():
  """x0.3 every 50,000 steps from 1e-4, staircase; otherwise the paper
  preset."""
  paper = cascade_config.get_config("paper")
  config = cascade_config.get_config("paper_lr_decay")
  schedule = learning_rate_schedule(config.train)
  for step, rate in [(0, 1e-4), (49_999, 1e-4), (50_000, 3e-5),
                     (100_000, 9e-6), (250_000, 1e-4 * 0.3 ** 5)]:
    np.testing.assert_allclose(float(schedule(step)), rate, rtol=1e-6)
  config.train.lr_decay_factor, config.train.lr_decay_every = 1.0, 0
  assert config.to_dict() == paper.to_dict()


def test_softplus_std_parameterisation():
  """sigma = softplus(head): the model's log-variance is 2 log(softplus(
  head) + 1e-8) of the head the log-variance model returns with the same
  parameters (the parameter tree is the same); float64 numpy reference."""
  head = np.array([-200.0, -3.0, 0.0, 0.5, 2.0, 30.0], np.float32)
  expected = 2 * np.log(np.log1p(np.exp(head.astype(float))) + 1e-8)
  np.testing.assert_allclose(posterior_logvar(jnp.asarray(head), "softplus"),
                             expected, rtol=1e-6)
  assert float(posterior_logvar(jnp.float32(-200.0), "softplus")) == (
      pytest.approx(2 * np.log(1e-8)))  # finite where softplus underflows
  np.testing.assert_array_equal(
      posterior_logvar(jnp.asarray(head), "log_variance"), head)

  x = jax.random.uniform(jax.random.key(0), (3, 16, 16, 1))
  log_variance = conv_vae(observation_shape=(16, 16, 1), kernels="reference")
  softplus = conv_vae(observation_shape=(16, 16, 1), kernels="reference",
                      std_parameterization="softplus")
  params = log_variance.init(jax.random.key(1), x, jax.random.key(2))
  assert jax.tree.structure(params) == jax.tree.structure(
      softplus.init(jax.random.key(1), x, jax.random.key(2)))
  mean, raw = log_variance.apply(params, x, method="encode")
  mean_sp, logvar = softplus.apply(params, x, method="encode")
  np.testing.assert_array_equal(mean_sp, mean)
  np.testing.assert_allclose(
      logvar, 2 * np.log(np.log1p(np.exp(np.asarray(raw, float))) + 1e-8),
      rtol=1e-5, atol=1e-6)
  # The sample uses that sigma: z = mean + exp(logvar / 2) * eps.
  output = softplus.apply(params, x, jax.random.key(3))
  eps = jax.random.normal(jax.random.key(3), mean.shape)
  np.testing.assert_allclose(
      output.z, mean + (np.log1p(np.exp(np.asarray(raw, float))) + 1e-8)
      * eps, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match=r"std_parameterization='exp'.*"
                     r"'log_variance', 'softplus'"):
    conv_vae(observation_shape=(16, 16, 1), std_parameterization="exp")


def test_training_reduces_the_loss_of_every_member(tmp_path):
  """The tiny preset (a stage every 2 steps), 40 steps at lr 1e-3.  Members
  are vmapped (not unrolled) only to compile faster: the same function."""
  config = cascade_config.get_config("tiny")
  _, lines = short_run(config, tmp_path, 40)
  # Logged stage: steps 0..4 are in stages 0,0,1,1,2; the last chunk in 9.
  np.testing.assert_allclose(lines[0]["stage"], [0.8] * 4, rtol=1e-6)
  np.testing.assert_allclose(lines[-1]["stage"], [9.0] * 4)
  first, last = np.array(lines[0]["loss"]), np.array(lines[-1]["loss"])
  assert np.all(last < 0.8 * first), (first, last)
