"""DIP-VAE-I and -II: the regularisers equal a numpy reference (and hand
values) on small fixed batches, the loss is recon + KL + regulariser, bad
hyperparameters are refused before anything compiles, and training reduces
the loss of every member."""

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
from disentax.objectives.dip_vae import dip_covariance, dip_vae_i, dip_vae_ii
from experiments import dip_vae_i as dip_i_config
from experiments import dip_vae_ii as dip_ii_config
from experiments.common import PRESETS

BUILDERS = {"i": dip_vae_i, "ii": dip_vae_ii}
CONFIGS = {"i": dip_i_config, "ii": dip_ii_config}
DEFAULT_FACTOR = {"i": 10.0, "ii": 1.0}

# A fixed VAE output: 6 examples, 4 latents, 2x2x1 images.
_rng = np.random.default_rng(7)
MEAN = _rng.normal(size=(6, 4)).astype(np.float32)
LOGVAR = _rng.normal(scale=0.7, size=(6, 4)).astype(np.float32)
LOGITS = _rng.normal(scale=2.0, size=(6, 2, 2, 1)).astype(np.float32)
TARGETS = (_rng.uniform(size=(6, 2, 2, 1)) > 0.5).astype(np.float32)


def make_output(mean, logvar, logits=None):
  logits = np.zeros((len(mean), 2, 2, 1), np.float32) if logits is None else (
      logits)
  return VAEOutput(mean=jnp.asarray(mean, jnp.float32),
                   logvar=jnp.asarray(logvar, jnp.float32),
                   z=jnp.zeros(np.shape(mean)), logits=jnp.asarray(logits))


def numpy_regulariser(mean, logvar, kind, lambda_od, factor):
  """The DIP penalty from its definition, in float64, with numpy's biased
  covariance and explicit loops over the entries."""
  mean, logvar = np.asarray(mean, float), np.asarray(logvar, float)
  cov = np.cov(mean, rowvar=False, bias=True)
  if kind == "ii":
    cov = cov + np.diag(np.exp(logvar).mean(axis=0))
  d = cov.shape[0]
  off = sum(cov[i, j] ** 2 for i in range(d) for j in range(d) if i != j)
  diag = sum((cov[i, i] - 1.0) ** 2 for i in range(d))
  return lambda_od * off + factor * lambda_od * diag, off, diag


def numpy_recon_and_kl():
  logits, x = LOGITS.astype(float), TARGETS.astype(float)
  recon = (np.maximum(logits, 0) - logits * x
           + np.log1p(np.exp(-np.abs(logits)))).reshape(6, -1).sum(1)
  mean, logvar = MEAN.astype(float), LOGVAR.astype(float)
  kl = 0.5 * (mean ** 2 + np.exp(logvar) - logvar - 1).sum(1)
  return recon.mean(), kl.mean()


@pytest.mark.parametrize("kind, expected", [
    ("i", [[1.0, 1.0], [1.0, 1.0]]),    # Cov(mu) of +-(1, 1), biased
    ("ii", [[2.0, 1.0], [1.0, 2.0]])])  # + E[diag(exp(0))] = + I
def test_covariance_by_hand(kind, expected):
  mean = [[1.0, 1.0], [-1.0, -1.0]]
  cov = dip_covariance(jnp.asarray(mean), jnp.zeros((2, 2)), kind)
  np.testing.assert_allclose(cov, expected, rtol=1e-6)


@pytest.mark.parametrize("kind, factor, expected", [
    # I:  off-diagonal 1^2 + 1^2 = 2, diagonal (1-1)^2 * 2 = 0.
    ("i", 10.0, 3.0 * 2.0),
    # II: off-diagonal 2, diagonal (2-1)^2 * 2 = 2, lambda_d = factor * 3.
    ("ii", 1.0, 3.0 * 2.0 + 3.0 * 2.0),
    ("ii", 0.5, 3.0 * 2.0 + 1.5 * 2.0)])
def test_regulariser_by_hand(kind, factor, expected):
  objective = BUILDERS[kind](lambda_od=3.0, lambda_d_factor=factor)
  output = make_output([[1.0, 1.0], [-1.0, -1.0]], np.zeros((2, 2)))
  _, metrics = objective.loss(output, jnp.zeros((2, 2, 2, 1)),
                              {"lambda_od": jnp.float32(3.0),
                               "lambda_d_factor": jnp.float32(factor)},
                              jnp.int32(0))
  np.testing.assert_allclose(metrics["dip_regulariser"], expected, rtol=1e-6)


@pytest.mark.parametrize("kind", ["i", "ii"])
@pytest.mark.parametrize("lambda_od", [0.0, 1.0, 20.0])
def test_loss_is_recon_plus_kl_plus_regulariser(kind, lambda_od):
  factor = DEFAULT_FACTOR[kind]
  objective = BUILDERS[kind](lambda_od=lambda_od)
  assert objective.name == f"dip_vae_{kind}"
  loss, metrics = jax.jit(objective.loss)(
      make_output(MEAN, LOGVAR, LOGITS), jnp.asarray(TARGETS),
      {"lambda_od": jnp.float32(lambda_od),
       "lambda_d_factor": jnp.float32(factor)}, jnp.int32(123))
  regulariser, off, diag = numpy_regulariser(MEAN, LOGVAR, kind, lambda_od,
                                             factor)
  recon, kl = numpy_recon_and_kl()
  assert sorted(metrics) == ["dip_diagonal", "dip_off_diagonal",
                             "dip_regulariser", "kl", "loss", "recon"]
  np.testing.assert_allclose(metrics["dip_off_diagonal"], off, rtol=1e-5)
  np.testing.assert_allclose(metrics["dip_diagonal"], diag, rtol=1e-5)
  np.testing.assert_allclose(metrics["dip_regulariser"], regulariser,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(metrics["recon"], recon, rtol=1e-6)
  np.testing.assert_allclose(metrics["kl"], kl, rtol=1e-6)
  np.testing.assert_allclose(loss, recon + kl + regulariser, rtol=1e-5)


def test_the_two_covariances_differ_on_the_fixed_batch():
  """I ignores the encoder variances, II adds their batch mean."""
  reg_i = numpy_regulariser(MEAN, LOGVAR, "i", 1.0, 1.0)[0]
  reg_ii = numpy_regulariser(MEAN, LOGVAR, "ii", 1.0, 1.0)[0]
  assert not math.isclose(reg_i, reg_ii, rel_tol=1e-3)
  loss_i, _ = dip_vae_i(lambda_d_factor=1.0).loss(
      make_output(MEAN, LOGVAR), jnp.asarray(TARGETS),
      {"lambda_od": 1.0, "lambda_d_factor": 1.0}, 0)
  loss_ii, _ = dip_vae_ii().loss(
      make_output(MEAN, LOGVAR), jnp.asarray(TARGETS),
      {"lambda_od": 1.0, "lambda_d_factor": 1.0}, 0)
  np.testing.assert_allclose(loss_ii - loss_i, reg_ii - reg_i, rtol=1e-4)


@pytest.mark.parametrize("kind", ["i", "ii"])
def test_loss_reads_lambdas_from_each_member(kind):
  objective = BUILDERS[kind](lambda_od=(1.0, 10.0))
  lambdas = [(1.0, 10.0), (10.0, 10.0), (10.0, 1.0)]
  _, metrics = jax.vmap(objective.loss, in_axes=(None, None, 0, None))(
      make_output(MEAN, LOGVAR, LOGITS), jnp.asarray(TARGETS),
      {"lambda_od": jnp.array([l for l, _ in lambdas]),
       "lambda_d_factor": jnp.array([f for _, f in lambdas])}, jnp.int32(0))
  expected = [numpy_regulariser(MEAN, LOGVAR, kind, l, f)[0]
              for l, f in lambdas]
  np.testing.assert_allclose(metrics["dip_regulariser"], expected, rtol=1e-5)


@pytest.mark.parametrize("kind", ["i", "ii"])
def test_builder_grid_and_config_keys(kind):
  objective = make_objective({"name": f"dip_vae_{kind}",
                              "lambda_od": (1, 2, 50)}, dataset_size=100)
  assert objective.hyperparameters == {
      "lambda_od": (1.0, 2.0, 50.0),
      "lambda_d_factor": (DEFAULT_FACTOR[kind],)}
  assert OBJECTIVES.allowed_keys(f"dip_vae_{kind}") == [
      "lambda_od", "lambda_d_factor", "reconstruction"]


@pytest.mark.parametrize("kind", ["i", "ii"])
@pytest.mark.parametrize("kwargs, pattern", [
    ({"lambda_od": -1.0}, r"lambda_od.*\[-1\.0\].*>= 0"),
    ({"lambda_od": (1.0, -2.0)}, r"lambda_od.*\[-2\.0\].*>= 0"),
    ({"lambda_od": ()}, r"lambda_od is empty"),
    ({"lambda_od": math.nan}, r"lambda_od.*finite"),
    ({"lambda_d_factor": -0.5}, r"lambda_d_factor.*\[-0\.5\].*>= 0"),
    ({"lambda_d_factor": math.inf}, r"lambda_d_factor.*finite"),
    ({"reconstruction": "l1"}, r"reconstruction='l1'.*bernoulli")])
def test_bad_hyperparameters_are_refused(kind, kwargs, pattern):
  with pytest.raises(ValueError, match=pattern):
    BUILDERS[kind](**kwargs)


@pytest.mark.parametrize("kind", ["i", "ii"])
def test_zero_lambda_is_allowed_and_gives_the_vae_loss(kind):
  objective = BUILDERS[kind](lambda_od=0.0)
  loss, _ = objective.loss(make_output(MEAN, LOGVAR, LOGITS),
                           jnp.asarray(TARGETS),
                           {"lambda_od": 0.0, "lambda_d_factor": 10.0}, 0)
  np.testing.assert_allclose(loss, sum(numpy_recon_and_kl()), rtol=1e-6)


def test_bad_config_fails_before_compiling_or_writing(tmp_path):
  config = dip_i_config.get_config("tiny")
  config.objective.lambda_od = (1.0, -1.0)
  with pytest.raises(ValueError, match=r"lambda_od.*-1\.0"):
    trainer.train(config, str(tmp_path))
  assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["i", "ii"])
@pytest.mark.parametrize("preset", PRESETS)
def test_config_builds_for_every_preset(kind, preset):
  exp = build(CONFIGS[kind].get_config(preset))
  assert exp.method == f"dip_vae_{kind}"
  grid = exp.objective.hyperparameters
  assert grid["lambda_d_factor"] == (DEFAULT_FACTOR[kind],)
  if preset == "paper":
    assert grid["lambda_od"] == (1.0, 2.0, 5.0, 10.0, 20.0, 50.0)
    assert len(exp.members) == 6 * 50
  else:
    assert len(grid["lambda_od"]) == 2


@pytest.mark.parametrize("kind", ["i", "ii"])
def test_training_reduces_the_loss_of_every_member(kind, tmp_path):
  """The tiny preset (lambda_od 1 and 10), 40 steps at lr 1e-3, but batch 16:
  with the preset's batch of 8 the batch covariance of 10 latents has rank
  <= 7, so Cov = I is out of reach and DIP-VAE-I's penalty (x100 for
  lambda_od 10) makes the loss jump between chunks.  Members are vmapped
  (not unrolled) only to compile faster: the same function."""
  config = CONFIGS[kind].get_config("tiny")
  config.train.batch_size = 16
  _, lines = short_run(config, tmp_path, 40)
  first, last = np.array(lines[0]["loss"]), np.array(lines[-1]["loss"])
  assert np.all(last < 0.8 * first), (first, last)
  assert all(len(l["dip_regulariser"]) == 4 for l in lines)
