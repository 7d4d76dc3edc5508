"""Total-correlation estimators: exact pieces by hand, the exact identity of
the decomposition, the constants relative to dlib-google and Chen et al.,
and known answers on Gaussians with correlation rho (TC = -0.5 log(1-rho^2))."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from disentax.objectives.base import gaussian_kl
from disentax.objectives.total_correlation import (
    decompose, log_densities, log_importance_weights, log_qz_matrix,
    total_correlation)

N_DSPRITES = 737_280


def gaussian_tc(rho):
  return -0.5 * math.log(1.0 - rho * rho)


def random_posteriors(seed, b=6, d=3):
  rng = np.random.default_rng(seed)
  mean = rng.normal(size=(b, d)).astype(np.float32)
  logvar = rng.uniform(-2.0, 0.5, size=(b, d)).astype(np.float32)
  z = (mean + np.exp(0.5 * logvar) * rng.normal(size=(b, d))).astype(
      np.float32)
  return z, mean, logvar


def np_log_normal(z, mean, logvar):
  return -0.5 * (np.log(2 * np.pi) + logvar + (z - mean) ** 2 / np.exp(logvar))


# ------------------------------------------------------------ exact pieces

def test_log_qz_matrix_entries_by_hand():
  """[i, j, k] = log N(z_ik; mean_jk, var_jk), normalised."""
  z, mean, logvar = random_posteriors(0)
  matrix = np.asarray(log_qz_matrix(jnp.asarray(z), jnp.asarray(mean),
                                    jnp.asarray(logvar)))
  assert matrix.shape == (6, 6, 3)
  for i, j, k in [(0, 0, 0), (1, 4, 2), (5, 2, 1), (3, 3, 2)]:
    expected = np_log_normal(float(z[i, k]), float(mean[j, k]),
                             float(logvar[j, k]))
    np.testing.assert_allclose(matrix[i, j, k], expected, rtol=1e-5)
  # A standard normal at its mean: -0.5 log(2 pi).
  at_mode = log_qz_matrix(jnp.zeros((1, 1)), jnp.zeros((1, 1)),
                          jnp.zeros((1, 1)))
  np.testing.assert_allclose(at_mode[0, 0, 0], -0.5 * math.log(2 * math.pi),
                             rtol=1e-6)


@pytest.mark.parametrize("m", [2, 3, 8])
def test_importance_weights(m):
  """MWS: 1/M everywhere.  MSS (Chen et al.): the own posterior 1/N, the next
  example (N-M+1)/(N(M-1)), the others 1/(M-1).  Every row sums to one."""
  n = 1000
  mws = np.exp(np.asarray(log_importance_weights(m, "mws"), np.float64))
  np.testing.assert_allclose(mws, np.full((m, m), 1.0 / m), rtol=1e-6)
  mss = np.exp(np.asarray(log_importance_weights(m, "mss", n), np.float64))
  for i in range(m):
    for j in range(m):
      if j == i:
        expected = 1.0 / n
      elif j == (i + 1) % m:
        expected = (n - m + 1.0) / (n * (m - 1.0))
      else:
        expected = 1.0 / (m - 1.0)
      np.testing.assert_allclose(mss[i, j], expected, rtol=1e-5)
  np.testing.assert_allclose(mss.sum(axis=1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(mws.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("estimator", ["mws", "mss"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_decomposition_sums_exactly_to_the_sampled_kl(estimator, seed):
  """MI + TC + DWKL = mean_i [log q(z_i|x_i) - log p(z_i)] (telescoping)."""
  z, mean, logvar = map(jnp.asarray, random_posteriors(seed, b=9, d=4))
  terms = decompose(z, mean, logvar, estimator, N_DSPRITES)
  sampled_kl = np.mean(np_log_normal(np.asarray(z), np.asarray(mean),
                                     np.asarray(logvar)).sum(1)
                       - np_log_normal(np.asarray(z), 0.0, 0.0).sum(1))
  np.testing.assert_allclose(float(terms.mi + terms.tc + terms.dwkl),
                             sampled_kl, rtol=1e-5, atol=1e-5)
  densities = log_densities(z, mean, logvar, estimator, N_DSPRITES)
  np.testing.assert_allclose(densities.log_qz_given_x - densities.log_pz,
                             np_log_normal(np.asarray(z), np.asarray(mean),
                                           np.asarray(logvar)).sum(1)
                             - np_log_normal(np.asarray(z), 0, 0).sum(1),
                             rtol=1e-5, atol=1e-5)


def test_decomposition_has_the_analytic_kl_as_expectation():
  """Averaged over 4,000 draws of z, MI + TC + DWKL matches the closed-form
  KL to within 5 standard errors: the split is an estimate, the sum is an
  unbiased estimate of the KL."""
  _, mean, logvar = random_posteriors(3, b=8, d=3)
  mean, logvar = jnp.asarray(mean), jnp.asarray(logvar)
  keys = jax.random.split(jax.random.key(0), 4000)

  def total(key):
    z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape)
    terms = decompose(z, mean, logvar, "mws")
    return terms.mi + terms.tc + terms.dwkl

  totals = np.asarray(jax.jit(jax.vmap(total))(keys), np.float64)
  kl = float(gaussian_kl(mean, logvar).sum(1).mean())
  standard_error = totals.std() / math.sqrt(len(totals))
  assert abs(totals.mean() - kl) < 5 * standard_error
  assert 5 * standard_error < 0.05 * kl


def test_mws_constants_relative_to_dlib_google_and_chen():
  """dlib-google drops every constant: its TC is ours - (d-1) log M.  Chen et
  al.'s eq. 3 weighs 1/(NM): its TC is ours + (d-1) log N.  Both computed
  here independently in numpy."""
  b, d, n = 7, 4, N_DSPRITES
  z, mean, logvar = random_posteriors(4, b=b, d=d)
  ours = float(total_correlation(jnp.asarray(z), jnp.asarray(mean),
                                 jnp.asarray(logvar), "mws"))
  log_q = np_log_normal(z[:, None, :].astype(np.float64), mean[None],
                        logvar[None])                          # [i, j, k]

  def lse(a, axis):
    top = a.max(axis=axis, keepdims=True)
    return np.squeeze(top, axis) + np.log(np.exp(a - top).sum(axis=axis))

  dlib = np.mean(lse(log_q.sum(2), 1) - lse(log_q, 1).sum(1))
  chen = np.mean((lse(log_q.sum(2), 1) - math.log(n * b))
                 - (lse(log_q, 1) - math.log(n * b)).sum(1))
  np.testing.assert_allclose(ours - (d - 1) * math.log(b), dlib, atol=1e-4)
  np.testing.assert_allclose(ours + (d - 1) * math.log(n), chen, atol=1e-4)


# ------------------------------------------- known answers on Gaussians

def population_batches(rho, s, m, draws, seed):
  """Batches whose aggregate posterior is N(0, [[1, rho], [rho, 1]]) exactly:
  posterior means ~ N(0, Sigma - s^2 I), posteriors N(mean, s^2 I)."""
  chol = np.linalg.cholesky(np.array([[1 - s * s, rho], [rho, 1 - s * s]]))
  logvar = jnp.full((m, 2), 2.0 * math.log(s))

  def one(key):
    k_mean, k_noise = jax.random.split(key)
    mean = jax.random.normal(k_mean, (m, 2)) @ jnp.asarray(chol.T, jnp.float32)
    z = mean + s * jax.random.normal(k_noise, (m, 2))
    return z, mean, logvar

  return jax.vmap(one)(jax.random.split(jax.random.key(seed), draws))


def mean_tc(batches, estimator, dataset_size):
  tcs = jax.jit(jax.vmap(lambda z, mu, lv: total_correlation(
      z, mu, lv, estimator, dataset_size)))(*batches)
  return float(np.mean(np.asarray(tcs, np.float64)))


@pytest.mark.parametrize("rho", [0.0, 0.8])
@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_estimates_approach_the_gaussian_tc_as_the_batch_grows(rho, estimator):
  """Posterior std 0.3, a population so large (N = 1e9) that the aggregate
  posterior is the Gaussian.  Mean of 16 batches of 1,024: within 0.03 nats
  of -0.5 log(1 - rho^2) (0.511 for rho 0.8, 0 for rho 0); the bias at batch
  64 (mean of 256 batches) is larger.  Measured: rho 0.8, M 64 -> 1024:
  MWS +0.036 -> -0.000, MSS -0.029 -> -0.007."""
  truth = gaussian_tc(rho)
  big = mean_tc(population_batches(rho, 0.3, 1024, 16, seed=1), estimator,
                10**9)
  small = mean_tc(population_batches(rho, 0.3, 64, 256, seed=2), estimator,
                  10**9)
  assert abs(big - truth) < 0.03, (estimator, big, truth)
  if rho:
    assert abs(small - truth) > abs(big - truth), (small, big, truth)


def finite_dataset(rho, s, n, seed=0):
  chol = np.linalg.cholesky(np.array([[1 - s * s, rho], [rho, 1 - s * s]]))
  means = jax.random.normal(jax.random.key(seed), (n, 2)) @ jnp.asarray(
      chol.T, jnp.float32)
  return means, jnp.full((n, 2), 2.0 * math.log(s))


def exact_dataset_tc(means, logvar, s, reps=4):
  """TC of the dataset's aggregate posterior q(z) = (1/N) sum_n q(z|n),
  every q(z) evaluated over the whole dataset (the estimand)."""
  n = means.shape[0]
  tcs = []
  for r in range(reps):
    z = means + s * jax.random.normal(jax.random.key(100 + r), means.shape)
    matrix = log_qz_matrix(z, means, logvar)
    log_qz = jax.nn.logsumexp(matrix.sum(2), axis=1) - math.log(n)
    log_prod = (jax.nn.logsumexp(matrix, axis=1) - math.log(n)).sum(1)
    tcs.append(float(jnp.mean(log_qz - log_prod)))
  return float(np.mean(tcs))


def test_mss_has_lower_bias_than_mws_on_a_finite_dataset():
  """N = 2048 posteriors of std 0.05 (narrow, as a trained VAE's), rho 0.8;
  batches of 128 drawn from the dataset, 200 of them.  The estimand is the
  dataset's TC, computed over all N.  MWS overestimates (its 1/M weight on
  the example's own peaked posterior is 16x the true 1/N), MSS
  underestimates by less.  Measured: truth 0.660, MWS +0.71, MSS -0.37."""
  n, m, s = 2048, 128, 0.05
  means, logvar = finite_dataset(0.8, s, n)
  truth = exact_dataset_tc(means, logvar, s)

  def batch(key):
    k_index, k_noise = jax.random.split(key)
    index = jax.random.randint(k_index, (m,), 0, n)
    z = means[index] + s * jax.random.normal(k_noise, (m, 2))
    return z, means[index], logvar[index]

  batches = jax.vmap(batch)(jax.random.split(jax.random.key(5), 200))
  mws_bias = mean_tc(batches, "mws", n) - truth
  mss_bias = mean_tc(batches, "mss", n) - truth
  assert mws_bias > 0 > mss_bias
  assert abs(mss_bias) < 0.75 * abs(mws_bias), (mws_bias, mss_bias, truth)


def test_on_an_unbounded_population_mws_is_the_less_biased():
  """MSS's advantage is specific to finite datasets: with N = 1e9 and narrow
  posteriors (std 0.1, rho 0.8, batch 256) leaving the own posterior out
  costs more than MWS's over-weighting of it.  Measured: MWS +0.18,
  MSS -0.34.  (Documents the regime; both still shrink with the batch.)"""
  batches = population_batches(0.8, 0.1, 256, 16, seed=3)
  truth = gaussian_tc(0.8)
  mws_bias = mean_tc(batches, "mws", 10**9) - truth
  mss_bias = mean_tc(batches, "mss", 10**9) - truth
  assert mws_bias > 0 > mss_bias
  assert abs(mws_bias) < abs(mss_bias)


# --------------------------------------------------------- bad arguments

def test_rejects_bad_arguments():
  z, mean, logvar = map(jnp.asarray, random_posteriors(0))
  with pytest.raises(ValueError, match=r"'mwss'.*allowed.*mws.*mss"):
    decompose(z, mean, logvar, "mwss")
  with pytest.raises(ValueError, match=r"'mss'.*dataset size.*None"):
    decompose(z, mean, logvar, "mss")
  with pytest.raises(ValueError, match=r"dataset_size=4 < batch size 6"):
    decompose(z, mean, logvar, "mss", 4)
  with pytest.raises(ValueError, match=r"dataset_size=1.5"):
    decompose(z, mean, logvar, "mss", 1.5)
  with pytest.raises(ValueError, match=r"batch size 1"):
    log_importance_weights(1, "mws")
