"""Unsupervised scores of the code distribution (Locatello et al., 2019), as in
disentanglement_lib's `unsupervised_metrics`.

They need no ground-truth factors, only the mean codes of uniformly sampled
observations, and say how *dependent* the latents are (a factorised code
scores 0 on all of them):

* gaussian_total_correlation: the KL divergence between a Gaussian with the
  codes' covariance C and the product of its marginals,
  0.5 (sum_i log C_ii - log det C) = -0.5 log det(correlation matrix).
* gaussian_wasserstein_correlation: the squared 2-Wasserstein distance
  between N(0, C) and N(0, diag C), 2 tr C - 2 tr sqrtm(diag(C) C); the
  `_norm` variant divides it by tr C, which makes it scale free.
* mutual_info_score: the mean discrete mutual information between two
  different (histogram-discretised) latents, the off-diagonal mean of the
  d x d matrix.

The math is pure JAX on one member's codes, vmapped over the members axis in
one `jax.jit`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, ClassVar

import chex
import jax
import jax.numpy as jnp
import numpy as np

from disentax.metrics import METRICS
from disentax.metrics.discrete import discrete_mutual_info, discretize
from disentax.metrics.base import Metric, RepresentationFn
from disentax.metrics.sampling import sample_codes

if TYPE_CHECKING:  # only for annotations; keeps metrics free of dataset imports
  from disentax.data.base import GroundTruthDataset

_HIGHEST = jax.lax.Precision.HIGHEST


def code_covariance(codes: jax.Array) -> jax.Array:
  """Sample covariance [d, d] of codes [n, d] (ddof 1, as `np.cov`)."""
  chex.assert_rank(codes, 2)
  n = codes.shape[0]
  centred = codes - jnp.mean(codes, axis=0, keepdims=True)
  return jnp.matmul(centred.T, centred, precision=_HIGHEST) / max(n - 1, 1)


def _correlation(cov: jax.Array) -> jax.Array:
  """Correlation matrix of `cov`; a latent with zero variance is uncorrelated
  with everything (its row and column become those of the identity)."""
  variance = jnp.diag(cov)
  positive = variance > 0
  inv_std = jnp.where(positive, jax.lax.rsqrt(jnp.where(positive, variance,
                                                         1.0)), 0.0)
  corr = cov * inv_std[:, None] * inv_std[None, :]
  return jnp.where(jnp.diag(~positive), 1.0, corr)


def gaussian_total_correlation(cov: jax.Array) -> jax.Array:
  """Total correlation of N(0, cov): KL(N(0, C) || N(0, diag C)).

  dlib's 0.5 (sum log diag C - log det C), computed as -0.5 log det R of the
  correlation matrix R (the same value, but without subtracting two large
  log-determinants).  A constant latent (zero variance) is independent of
  the others and adds 0 (dlib: NaN from log 0).  Exactly dependent latents
  make C singular and the total correlation infinite: +inf when the
  determinant is not positive.
  """
  chex.assert_rank(cov, 2)
  sign, logdet = jnp.linalg.slogdet(_correlation(cov))
  return jnp.where(sign > 0, -0.5 * logdet, jnp.inf)


def gaussian_wasserstein_correlation(cov: jax.Array) -> jax.Array:
  """Squared 2-Wasserstein distance between N(0, C) and N(0, diag C).

  W^2 = tr C + tr D - 2 tr (D^1/2 C D^1/2)^1/2 with D = diag C, which is
  dlib's 2 tr C - 2 tr sqrtm(D C): D C is similar to the symmetric PSD
  D^1/2 C D^1/2, so tr sqrtm is the sum of square roots of its eigenvalues
  (a symmetric eigendecomposition instead of a general matrix square root).
  """
  chex.assert_rank(cov, 2)
  sqrt_diag = jnp.sqrt(jnp.maximum(jnp.diag(cov), 0.0))
  scaled = cov * sqrt_diag[:, None] * sqrt_diag[None, :]
  scaled = 0.5 * (scaled + scaled.T)  # exactly symmetric for eigvalsh
  eigenvalues = jnp.linalg.eigvalsh(scaled)
  return 2 * jnp.trace(cov) - 2 * jnp.sum(jnp.sqrt(jnp.maximum(eigenvalues,
                                                                0.0)))


def mutual_info_score(codes: jax.Array, num_bins: int = 20) -> jax.Array:
  """Mean discrete MI (nats) over ordered pairs of different latents.

  Each latent is discretised into `num_bins` equal-width bins (dlib's
  histogram discretizer); the score is the sum of the off-diagonal entries
  of the d x d MI matrix over d^2 - d.  With one latent there is no pair:
  0 (dlib divides 0 by 0).
  """
  chex.assert_rank(codes, 2)
  d = codes.shape[1]
  bins = discretize(codes, num_bins)
  mi = discrete_mutual_info(bins, bins, num_bins, num_bins)  # [d, d]
  off_diagonal = jnp.sum(mi) - jnp.sum(jnp.diag(mi))
  return off_diagonal / max(d * d - d, 1)


@functools.partial(jax.jit, static_argnums=1)
def unsupervised_scores(codes: jax.Array,
                        num_bins: int = 20) -> dict[str, jax.Array]:
  """All unsupervised scores of one member's codes [n, d] (scalars).

  Codes with NaN/inf (a diverged member) give NaN scores.  The Wasserstein
  norm of codes without any variance (tr C = 0) is 0, not 0/0.
  """
  chex.assert_rank(codes, 2)
  finite = jnp.all(jnp.isfinite(codes))
  safe = jnp.where(finite, codes, 0.0)
  cov = code_covariance(safe)
  trace = jnp.trace(cov)
  wasserstein = gaussian_wasserstein_correlation(cov)
  scores = {
      "gaussian_total_correlation": gaussian_total_correlation(cov),
      "gaussian_wasserstein_correlation": wasserstein,
      "gaussian_wasserstein_correlation_norm": jnp.where(
          trace > 0, wasserstein / jnp.where(trace > 0, trace, 1.0), 0.0),
      "mutual_info_score": mutual_info_score(safe, num_bins),
  }
  return {k: jnp.where(finite, v, jnp.nan) for k, v in scores.items()}


@functools.partial(jax.jit, static_argnums=1)
def _score_members(codes: jax.Array, num_bins: int) -> dict[str, jax.Array]:
  """`unsupervised_scores` of every member, codes [members, n, d]."""
  return jax.vmap(lambda c: unsupervised_scores(c, num_bins))(codes)


@METRICS.register("unsupervised")
@dataclasses.dataclass(frozen=True)
class Unsupervised(Metric):
  """The unsupervised scores over a dataset for all members at once.

  Attributes:
    num_train: uniformly sampled observations scored (dlib: 10000).
    num_bins: equal-width histogram bins per latent for the mutual
      information score (dlib: 20).
    batch_size: observations per `representation_fn` call.
  """

  supervised: ClassVar[bool] = False  # needs no ground-truth factors
  name = "unsupervised"
  int_fields = {"num_train": 2, "num_bins": 2, "batch_size": 1}

  num_train: int = 10000
  num_bins: int = 20
  batch_size: int = 1000

  def evaluate(self, dataset: GroundTruthDataset,
               representation_fn: RepresentationFn,
               rng: jax.Array) -> dict[str, np.ndarray]:
    """Scores every member on `num_train` uniformly sampled observations.

    Returns:
      {"gaussian_total_correlation", "gaussian_wasserstein_correlation",
       "gaussian_wasserstein_correlation_norm", "mutual_info_score":
       [members]} as numpy.
    """
    _, codes = sample_codes(dataset, representation_fn, rng, self.num_train,
                            self.batch_size, "unsupervised")
    scores = _score_members(codes, self.num_bins)
    for value in scores.values():
      chex.assert_shape(value, (codes.shape[0],))
    return {name: np.asarray(value) for name, value in scores.items()}
