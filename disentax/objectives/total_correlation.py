"""Minibatch estimators of the ELBO's TC-decomposition (Chen et al. 2018).

With q(z) = (1/N) sum_n q(z|n) the aggregate posterior of a dataset of N
points, the KL term of the ELBO splits into (Chen et al. eq. 2)

  E_n KL(q(z|n) || p(z)) = MI + TC + DWKL
  MI   = E_q(z,n)[log q(z|n) - log q(z)]              index-code MI
  TC   = E_q(z)[log q(z) - sum_k log q(z_k)]          total correlation
  DWKL = E_q(z)[sum_k log q(z_k) - log p(z_k)]        dimension-wise KL

q(z) needs the whole dataset, so it is estimated on the minibatch: for a
batch of M examples with z_i ~ q(z|x_i),

  log q(z_i)   ~ logsumexp_j [log w_ij + log q(z_i|x_j)]
  log q(z_ik)  ~ logsumexp_j [log w_ij + log q(z_ik|x_jk)]   (each dim k)

with importance weights w (`log_importance_weights`):

  'mws'  minibatch weighted sampling (Chen et al. eq. 3): every j the same.
  'mss'  minibatch stratified sampling (Chen et al.'s appendix; the weights
         of beta-tcvae-ref): the example's own posterior j = i weighs 1/N,
         one other example (here j = i + 1 mod M) (N - M + 1) / (N (M - 1)),
         the remaining M - 2 weigh 1 / (M - 1) each.  Needs the dataset
         size N >= M.  For i.i.d. batches this estimate of q(z_i) is
         unbiased.  (The copies of beta-tcvae-ref's weight matrix we read
         fill it with stride M, which puts 1/N in column 0 instead of on the
         diagonal; the weight belongs to the example's own posterior.)

Constants (what is kept).  Every density here is normalised: log q(z|x) and
log p(z) include -0.5 log(2 pi) per dimension, and both estimators' weights
sum to one over j, so each log q estimate is on the scale of the true
log-density and MI, TC and DWKL are estimates of the true quantities (in
nats).  For MWS that means w_ij = 1/M, i.e. log q(z_i) ~ logsumexp_j
log q(z_i|x_j) - log M.  Chen et al.'s eq. 3 writes the weight 1/(N M); those
weights sum to 1/N (the estimate is a lower bound of q(z) by a factor N), so
their log q(z) is ours - log N, their TC ours + (d - 1) log N, their MI ours +
log N and their DWKL ours - d log N.  dlib-google drops all constants: its TC
is ours - (d - 1) log M.  All three differ by constants only, so their
gradients are identical.

Both estimators are biased (the log of an average is not the average of a
log), and the estimated TC can come out negative: a known property of the
minibatch estimate, not a bug (dlib-google's dropped constant makes its TC
negative more often still).  MWS over-weights the example's own, sharply
peaked posterior (1/M instead of 1/N) and so overestimates TC; MSS weighs it
1/N and underestimates TC through the log of its average over the others.
On a finite dataset with narrow posteriors MSS has the smaller bias; on an
effectively unbounded population MWS can have the smaller one; both shrink
as M grows (tests/test_total_correlation.py measures each case).

The identity MI + TC + DWKL = mean_i [log q(z_i|x_i) - log p(z_i)] holds
exactly for either estimator (the log q estimates telescope), and the right
side is an unbiased one-sample estimate of the analytic KL.

Everything assumes z_i ~ N(mean_i, diag(exp(logvar_i))), the VAE's diagonal
posterior; reparameterisation noise correlated across latents (the VAE's
`noise_correlation` > 0) breaks that assumption.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

ESTIMATORS = ("mws", "mss")
LOG_2PI = math.log(2.0 * math.pi)


def check_estimator(estimator: str, dataset_size: int | None) -> str:
  """Validates an estimator name and, for MSS, the dataset size."""
  if estimator not in ESTIMATORS:
    raise ValueError(f"config.objective.estimator={estimator!r}; allowed: "
                     f"{ESTIMATORS}")
  if estimator == "mss":
    if dataset_size is None:
      raise ValueError("config.objective.estimator='mss' (minibatch "
                       "stratified sampling) needs the dataset size; got "
                       "dataset_size=None")
    if (isinstance(dataset_size, bool) or not isinstance(dataset_size, int)
        or dataset_size < 2):
      raise ValueError(f"dataset_size={dataset_size!r} for estimator 'mss'; "
                       "must be an int >= 2")
  return estimator


def gaussian_log_density(z: jax.Array, mean: jax.Array,
                         logvar: jax.Array) -> jax.Array:
  """log N(z; mean, exp(logvar)) elementwise (broadcasting), normalised."""
  return -0.5 * (LOG_2PI + logvar + jnp.square(z - mean) * jnp.exp(-logvar))


def log_qz_matrix(z: jax.Array, mean: jax.Array,
                  logvar: jax.Array) -> jax.Array:
  """[b, b, d]: entry [i, j, k] = log q(z_ik | x_j), the density of sample
  i's k-th latent under example j's posterior."""
  return gaussian_log_density(z[:, None, :], mean[None, :, :],
                              logvar[None, :, :])


def log_importance_weights(batch_size: int, estimator: str,
                           dataset_size: int | None = None) -> jax.Array:
  """[M, M] log w_ij (row i: the sample, column j: the posterior); each row
  sums to one in probability space (see the module docstring)."""
  check_estimator(estimator, dataset_size)
  m = int(batch_size)
  if m < 2:
    raise ValueError(f"batch size {m}: the TC estimators need >= 2 examples")
  if estimator == "mws":
    return jnp.full((m, m), -math.log(m), jnp.float32)
  n = dataset_size
  if n < m:
    raise ValueError(f"estimator 'mss' with dataset_size={n} < batch size "
                     f"{m}: the stratified weights need N >= M")
  index = jnp.arange(m)
  self_weight = jnp.eye(m, dtype=bool)
  stratum = index[None, :] == (index[:, None] + 1) % m
  # (For M = 2 the only other example is the stratum: weight (N - 1) / N.)
  weights = jnp.where(self_weight, 1.0 / n,
                      jnp.where(stratum, (n - m + 1.0) / (n * (m - 1.0)),
                                1.0 / (m - 1.0)))
  return jnp.log(weights).astype(jnp.float32)


class LogDensities(NamedTuple):
  """Per-example [b] log-densities at the sampled z_i."""
  log_qz_given_x: jax.Array   # log q(z_i | x_i)
  log_qz: jax.Array           # estimated log q(z_i)
  log_prod_qz: jax.Array      # estimated sum_k log q(z_ik)
  log_pz: jax.Array           # log p(z_i), standard normal prior


class TCDecomposition(NamedTuple):
  """Batch means (nats) of the three terms of Chen et al. eq. 2."""
  mi: jax.Array     # index-code mutual information
  tc: jax.Array     # total correlation
  dwkl: jax.Array   # dimension-wise KL


def log_densities(z: jax.Array, mean: jax.Array, logvar: jax.Array,
                  estimator: str = "mws",
                  dataset_size: int | None = None) -> LogDensities:
  """The four per-example log-densities of the decomposition, for z [b, d]
  sampled from N(mean, exp(logvar)) (all [b, d])."""
  matrix = log_qz_matrix(z, mean, logvar)                     # [b, b, d]
  log_w = log_importance_weights(z.shape[0], estimator, dataset_size)
  log_qz = jax.nn.logsumexp(matrix.sum(axis=2) + log_w, axis=1)
  log_prod_qz = jax.nn.logsumexp(matrix + log_w[:, :, None], axis=1).sum(1)
  log_qz_given_x = jnp.diagonal(matrix, axis1=0, axis2=1).sum(axis=0)
  log_pz = gaussian_log_density(z, 0.0, 0.0).sum(axis=1)
  return LogDensities(log_qz_given_x, log_qz, log_prod_qz, log_pz)


def decompose(z: jax.Array, mean: jax.Array, logvar: jax.Array,
              estimator: str = "mws",
              dataset_size: int | None = None) -> TCDecomposition:
  """Minibatch estimates of (MI, TC, DWKL); they sum exactly to
  mean_i [log q(z_i|x_i) - log p(z_i)]."""
  d = log_densities(z, mean, logvar, estimator, dataset_size)
  return TCDecomposition(mi=jnp.mean(d.log_qz_given_x - d.log_qz),
                         tc=jnp.mean(d.log_qz - d.log_prod_qz),
                         dwkl=jnp.mean(d.log_prod_qz - d.log_pz))


def total_correlation(z: jax.Array, mean: jax.Array, logvar: jax.Array,
                      estimator: str = "mws",
                      dataset_size: int | None = None) -> jax.Array:
  """The minibatch TC estimate alone (see `decompose`)."""
  return decompose(z, mean, logvar, estimator, dataset_size).tc
