"""The baselines: the VAE's loss is recon + KL; the autoencoder decodes
the posterior mean (no noise) and its loss is the reconstruction alone.
Members are seeds; a tiny run of each through the pipeline `python -m
disentax.main` calls lowers the loss and evaluates every member."""

import importlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from disentax import pipeline, results, run_log
from disentax.experiment import build
from disentax.models import VAEOutput, make_model
from disentax.objectives import make_objective
from disentax.workdir import run_log_path

LN2 = math.log(2.0)
# Two 1x2 one-channel images, decoded at logit 0 (p = 1/2 per pixel), and a
# posterior of 2 latents per image.
X = jnp.array([1.0, 0.0, 0.0, 1.0]).reshape(2, 1, 2, 1)
OUTPUT = VAEOutput(mean=jnp.array([[1.0, 0.0], [0.0, -2.0]]),
                   logvar=jnp.array([[0.0, 0.0], [LN2, 0.0]]),
                   z=jnp.array([[0.5, 0.5], [0.5, 0.5]]),
                   logits=jnp.zeros((2, 1, 2, 1)))
RECON = 2 * LN2  # per image: two pixels at p = 1/2
# KL per image, 0.5 (m^2 + e^lv - lv - 1) summed over latents: 0.5 for
# the first; (1 - ln 2) / 2 + 2 for the second.
KL = (0.5 + (0.5 * (1.0 - LN2) + 2.0)) / 2


def test_vae_loss_is_recon_plus_kl():
  objective = make_objective({"name": "vae"})
  assert objective.name == "vae" and objective.hyperparameters == {}
  assert objective.per_example_mean and objective.control is None
  loss, metrics = objective.loss(OUTPUT, X, {}, jnp.int32(3))
  assert sorted(metrics) == ["kl", "loss", "recon"]
  np.testing.assert_allclose(metrics["recon"], RECON, rtol=1e-6)
  np.testing.assert_allclose(metrics["kl"], KL, rtol=1e-6)
  np.testing.assert_allclose(loss, RECON + 1.0 * KL, rtol=1e-6)
  assert float(metrics["loss"]) == float(loss)


def test_autoencoder_decodes_the_posterior_mean():
  """The training forward pass under the AE's control: z == mean exactly
  (the sampling noise is off) and the gradient still reaches the encoder;
  the representation scored is that same gated mean."""
  objective = make_objective({"name": "autoencoder"}, num_latents=3)
  assert objective.name == "autoencoder" and objective.hyperparameters == {}
  model = make_model({"name": "fc_vae", "num_latents": 3}, (16, 16, 1))
  x = jax.random.uniform(jax.random.key(0), (4, 16, 16, 1))
  params = model.init(jax.random.key(1), x, jax.random.key(2))
  gate = objective.control.for_step({}, jnp.int32(5), jax.random.key(3))
  output = model.apply(params, x, jax.random.key(4), gate)
  np.testing.assert_array_equal(output.z, output.mean)
  plain = model.apply(params, x, jax.random.key(4))
  np.testing.assert_array_equal(output.mean, plain.mean)
  assert np.abs(np.asarray(plain.z - plain.mean)).max() > 0
  (representation,) = objective.representations({}, jnp.int32(5)).values()
  mean, _ = model.apply(params, x, representation, method="encode")
  np.testing.assert_array_equal(mean, plain.mean)
  grads = jax.grad(lambda p: objective.loss(
      model.apply(p, x, jax.random.key(4), gate), x, {}, 0)[0])(params)
  assert np.abs(np.asarray(grads["params"]["encoder"]["mean"]["kernel"])
                ).max() > 0


def test_autoencoder_loss_is_the_reconstruction_alone():
  """The hand-made output has a KL of its posterior; the AE's loss ignores
  it: loss == recon, and no KL term is reported."""
  objective = make_objective({"name": "autoencoder"}, num_latents=2)
  loss, metrics = objective.loss(OUTPUT, X, {}, jnp.int32(3))
  assert sorted(metrics) == ["loss", "recon"]
  np.testing.assert_allclose(metrics["recon"], RECON, rtol=1e-6)
  assert float(loss) == float(metrics["recon"]) == float(metrics["loss"])


@pytest.mark.parametrize("name", ["vae", "autoencoder"])
def test_members_are_seeds(name):
  config = importlib.import_module(f"experiments.{name}").get_config("tiny")
  members = build(config).members
  assert members.seeds.tolist() == [0, 1] and members.hparams == {}


@pytest.mark.parametrize("name", ["vae", "autoencoder"])
def test_tiny_run_through_the_pipeline_lowers_the_loss(name, tmp_path):
  """The tiny preset's 20 steps (at a test-friendly learning rate), trained
  and evaluated: every member's last logged loss is well below its first,
  and every member is scored."""
  config = importlib.import_module(f"experiments.{name}").get_config("tiny")
  config.train.learning_rate = 1e-3
  assert pipeline.run(config, str(tmp_path)).ending == "done"  # main's path
  lines = run_log.read_lines(run_log_path(str(tmp_path)))
  first, last = np.array(lines[0]["loss"]), np.array(lines[-1]["loss"])
  assert len(first) == 2 and np.all(last < 0.9 * first), (first, last)
  rows = results.load_rows([str(tmp_path)])
  assert [r["status"] for r in rows] == ["ok", "ok"]
  assert all(0 <= r["metrics"]["mig"] <= 1 for r in rows)
