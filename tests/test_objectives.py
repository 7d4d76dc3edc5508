"""Objectives: the KL and reconstruction terms have their closed forms, and
beta-VAE is exactly recon + beta * KL with a validated beta grid."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from disentax.models import VAEOutput
from disentax.objectives import OBJECTIVES, make_objective
from disentax.objectives.base import gaussian_kl, reconstruction_loss
from disentax.objectives.beta_vae import beta_vae

LN2 = math.log(2.0)


def sigmoid(v):
  return 1.0 / (1.0 + math.exp(-v))


@pytest.mark.parametrize("mean, logvar, expected", [
    (0.0, 0.0, 0.0),                              # q == p
    (1.0, 0.0, 0.5),                              # mean^2 / 2
    (-1.0, 0.0, 0.5),                             # symmetric in the mean
    (0.0, LN2, 0.5 * (2.0 - LN2 - 1.0)),          # variance 2
    (0.0, -LN2, 0.5 * (0.5 + LN2 - 1.0)),         # variance 1/2
    (3.0, LN2, 0.5 * (9.0 + 2.0 - LN2 - 1.0))])
def test_gaussian_kl_closed_form(mean, logvar, expected):
  """KL(N(m, s^2) || N(0, 1)) = (m^2 + s^2 - ln s^2 - 1) / 2."""
  kl = gaussian_kl(jnp.array([[mean]]), jnp.array([[logvar]]))
  assert kl.shape == (1, 1)
  np.testing.assert_allclose(float(kl[0, 0]), expected, rtol=1e-6, atol=1e-7)


def test_gaussian_kl_is_exactly_zero_for_the_prior_and_keeps_shape():
  """Per example and latent, [b, d]; exactly 0 where q is the prior."""
  mean = jnp.array([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0]])
  logvar = jnp.array([[0.0, 0.0, LN2], [0.0, 0.0, 0.0]])
  kl = np.asarray(gaussian_kl(mean, logvar))
  assert kl.shape == (2, 3)
  assert kl[0, 0] == 0.0 and kl[1, 0] == 0.0 and kl[1, 1] == 0.0
  np.testing.assert_allclose(kl[0, 1:], [0.5, 0.5 * (1.0 - LN2)], rtol=1e-6)
  np.testing.assert_allclose(kl[1, 2], 2.0, rtol=1e-6)


@pytest.mark.parametrize("mean, logvar", [(0.0, 0.0), (1.0, 0.0),
                                          (0.0, LN2), (-0.7, -1.5),
                                          (2.0, 1.0)])
def test_gaussian_kl_matches_monte_carlo(mean, logvar):
  """KL = E_q[log q(z) - log p(z)], estimated from 200k samples of q; the
  tolerance is 5 standard errors of the estimate (plus float32 rounding)."""
  num_samples = 200_000
  std = math.exp(0.5 * logvar)
  z = mean + std * np.random.default_rng(0).standard_normal(num_samples)
  log_q = -0.5 * ((z - mean) / std) ** 2 - 0.5 * logvar
  log_p = -0.5 * z ** 2  # the 0.5 ln(2 pi) terms cancel
  log_ratio = log_q - log_p
  estimate = log_ratio.mean()
  standard_error = log_ratio.std() / math.sqrt(num_samples)
  kl = float(gaussian_kl(jnp.array([[mean]]), jnp.array([[logvar]]))[0, 0])
  assert abs(kl - estimate) < 5 * standard_error + 1e-6
  # The tolerance is tight enough to tell KL from 1.1 x KL (or from 0.01).
  assert 5 * standard_error < max(0.1 * kl, 0.01)


# A tiny fixed example: 2 images of 1x2 pixels, 2 channels.
LOGITS = np.array([[[[0.0, 2.0], [-1.0, 3.0]]],
                   [[[-2.0, 0.5], [4.0, -3.0]]]], np.float32)
TARGETS = np.array([[[[1.0, 0.0], [0.5, 1.0]]],
                    [[[0.0, 1.0], [1.0, 0.25]]]], np.float32)


def hand_bernoulli(logits, x):
  """Per example: -sum [x log sigmoid(l) + (1 - x) log(1 - sigmoid(l))]."""
  return [-sum(xi * math.log(sigmoid(li)) + (1 - xi) * math.log(1 - sigmoid(li))
               for li, xi in zip(l.ravel(), t.ravel()))
          for l, t in zip(logits.astype(float), x.astype(float))]


def hand_gaussian(logits, x):
  """Per example: sum (sigmoid(l) - x)^2."""
  return [sum((sigmoid(li) - xi) ** 2 for li, xi in zip(l.ravel(), t.ravel()))
          for l, t in zip(logits.astype(float), x.astype(float))]


def test_bernoulli_reconstruction_is_the_summed_cross_entropy():
  """Checks also one term by hand: logit 0, target 1 costs ln 2."""
  loss = reconstruction_loss(jnp.asarray(LOGITS), jnp.asarray(TARGETS),
                             "bernoulli")
  assert loss.shape == (2,)
  np.testing.assert_allclose(loss, hand_bernoulli(LOGITS, TARGETS), rtol=1e-6)
  single = reconstruction_loss(jnp.zeros((1, 1, 1, 1)), jnp.ones((1, 1, 1, 1)))
  np.testing.assert_allclose(single, [LN2], rtol=1e-6)


def test_gaussian_reconstruction_is_the_sum_of_squares_of_sigmoid():
  loss = reconstruction_loss(jnp.asarray(LOGITS), jnp.asarray(TARGETS),
                             "gaussian")
  assert loss.shape == (2,)
  np.testing.assert_allclose(loss, hand_gaussian(LOGITS, TARGETS), rtol=1e-6)
  # Logit 0 is the grey value 0.5: (0.5 - 1)^2 + (0.5 - 0)^2 = 0.5.
  single = reconstruction_loss(jnp.zeros((1, 1, 2, 1)),
                               jnp.array([1.0, 0.0]).reshape(1, 1, 2, 1),
                               "gaussian")
  np.testing.assert_allclose(single, [0.5], rtol=1e-6)


def test_reconstruction_rejects_unknown_kind():
  with pytest.raises(ValueError, match=r"'poisson'.*bernoulli.*gaussian"):
    reconstruction_loss(jnp.zeros((1, 2, 2, 1)), jnp.zeros((1, 2, 2, 1)),
                        "poisson")


# A fixed VAE output for the 2 images above, with 2 latents.
MEAN = np.array([[1.0, 0.0], [0.0, -2.0]], np.float32)
LOGVAR = np.array([[0.0, LN2], [0.0, 0.0]], np.float32)
# Per-example KL (summed over latents): 0.5 + (1 - ln 2)/2, and 2.
KL_PER_EXAMPLE = [0.5 + 0.5 * (1.0 - LN2), 2.0]
OUTPUT = VAEOutput(mean=jnp.asarray(MEAN), logvar=jnp.asarray(LOGVAR),
                   z=jnp.zeros((2, 2)), logits=jnp.asarray(LOGITS))


@pytest.mark.parametrize("reconstruction, hand", [
    ("bernoulli", hand_bernoulli), ("gaussian", hand_gaussian)])
@pytest.mark.parametrize("beta", [1.0, 4.0])
def test_beta_vae_loss_is_recon_plus_beta_kl(beta, reconstruction, hand):
  """loss = mean recon + beta * mean KL; the metrics are those three."""
  objective = beta_vae(beta=beta, reconstruction=reconstruction)
  assert objective.name == "beta_vae"
  assert objective.hyperparameters == {"beta": (beta,)}
  loss, metrics = objective.loss(OUTPUT, jnp.asarray(TARGETS),
                                 {"beta": jnp.float32(beta)}, jnp.int32(7))
  recon = np.mean(hand(LOGITS, TARGETS))
  kl = np.mean(KL_PER_EXAMPLE)
  assert sorted(metrics) == ["kl", "loss", "recon"]
  np.testing.assert_allclose(metrics["recon"], recon, rtol=1e-6)
  np.testing.assert_allclose(metrics["kl"], kl, rtol=1e-6)
  np.testing.assert_allclose(loss, recon + beta * kl, rtol=1e-6)
  assert float(metrics["loss"]) == float(loss)


def test_beta_vae_loss_reads_beta_from_hparams_per_member():
  """The trainer vmaps members: each member's loss uses its own beta (the
  builder's grid is only the list of values, not baked into the loss)."""
  objective = beta_vae(beta=(1.0, 4.0))
  losses, _ = jax.vmap(objective.loss, in_axes=(None, None, 0, None))(
      OUTPUT, jnp.asarray(TARGETS), {"beta": jnp.array([1.0, 4.0, 16.0])},
      jnp.int32(0))
  recon, kl = np.mean(hand_bernoulli(LOGITS, TARGETS)), np.mean(KL_PER_EXAMPLE)
  np.testing.assert_allclose(losses, [recon + b * kl for b in (1, 4, 16)],
                             rtol=1e-6)


@pytest.mark.parametrize("beta, grid", [
    ((1, 2), (1.0, 2.0)), ((1.0, 2.0, 4.0), (1.0, 2.0, 4.0)), (4, (4.0,)),
    (0.5, (0.5,)), ([16.0, 1.0], (16.0, 1.0))])
def test_beta_vae_grid(beta, grid):
  """One number or a sequence -> a tuple of floats, order kept."""
  hyperparameters = beta_vae(beta=beta).hyperparameters
  assert hyperparameters == {"beta": grid}
  assert all(type(v) is float for v in hyperparameters["beta"])


def test_beta_vae_builds_from_a_config_section():
  objective = make_objective({"name": "beta_vae", "beta": (2.0, 8.0),
                              "reconstruction": "gaussian"},
                             dataset_size=737_280)
  assert objective.hyperparameters == {"beta": (2.0, 8.0)}
  assert OBJECTIVES.allowed_keys("beta_vae") == ["beta", "reconstruction"]


@pytest.mark.parametrize("beta, bad", [
    (0.0, "0.0"), (-1.0, "-1.0"), ((1.0, 0.0), "0.0"), ((2.0, -1.0), "-1.0"),
    (0, "0.0")])
def test_beta_vae_rejects_non_positive_beta(beta, bad):
  with pytest.raises(ValueError) as error:
    beta_vae(beta=beta)
  message = str(error.value)
  assert "beta" in message and f"[{bad}]" in message and "> 0" in message


def test_beta_vae_rejects_empty_grid():
  with pytest.raises(ValueError, match=r"beta is empty"):
    beta_vae(beta=())


def test_beta_vae_rejects_unknown_reconstruction():
  with pytest.raises(ValueError,
                     match=r"reconstruction='l2'.*bernoulli.*gaussian"):
    beta_vae(beta=1.0, reconstruction="l2")


@pytest.mark.parametrize("beta", [math.nan, (1.0, math.nan), math.inf])
def test_beta_vae_rejects_non_finite_beta(beta):
  with pytest.raises(ValueError, match="beta"):
    beta_vae(beta=beta)
