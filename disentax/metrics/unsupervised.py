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

The d x d Gaussian statistics are float64 numpy on the host, member by
member (float32 cancels catastrophically in 2 tr C - 2 sum sqrt(lambda));
the mutual information score is JAX, vmapped over the members axis.
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

# Codes arrive in float32 (the models' precision): a correlation-matrix
# eigenvalue below float32's resolution of the largest one, times d, cannot
# be told from 0, so the covariance counts as singular (TC +inf).
_SINGULAR_TOLERANCE = float(np.finfo(np.float32).eps)


def code_covariance(codes: np.ndarray) -> np.ndarray:
  """Sample covariance [d, d] of codes [n, d] in float64 (ddof 1, as
  `np.cov`).

  The d x d statistics below subtract numbers of the size of tr C (the
  Wasserstein correlation is 2 tr C - 2 sum sqrt(lambda)), so they are
  computed on the host in float64: in float32 that difference loses ~16%
  of an identity code's score and the determinant of a singular matrix
  comes out finite.
  """
  codes = np.asarray(codes, np.float64)
  chex.assert_rank(codes, 2)
  n = codes.shape[0]
  centred = codes - codes.mean(axis=0, keepdims=True)
  return centred.T @ centred / max(n - 1, 1)


def _correlation(cov: np.ndarray) -> np.ndarray:
  """Correlation matrix of `cov`; a latent with zero variance is uncorrelated
  with everything (its row and column become those of the identity)."""
  variance = np.diag(cov)
  positive = variance > 0
  inv_std = np.where(positive, 1.0 / np.sqrt(np.where(positive, variance,
                                                        1.0)), 0.0)
  corr = cov * inv_std[:, None] * inv_std[None, :]
  return np.where(np.diag(~positive), 1.0, corr)


def gaussian_total_correlation(cov: np.ndarray) -> float:
  """Total correlation of N(0, cov): KL(N(0, C) || N(0, diag C)), float64.

  dlib's 0.5 (sum log diag C - log det C), computed as -0.5 sum log lambda
  over the eigenvalues of the correlation matrix R (the same value, without
  subtracting two large log-determinants).  A constant latent (zero
  variance) is independent of the others and adds 0 (dlib: NaN from log 0).
  Linearly dependent latents make C singular and the total correlation
  infinite: +inf when the smallest eigenvalue of R is below d x float32's
  epsilon times the largest (`_SINGULAR_TOLERANCE`).
  """
  cov = np.asarray(cov, np.float64)
  chex.assert_rank(cov, 2)
  eigenvalues = np.linalg.eigvalsh(_correlation(cov))
  if eigenvalues[0] <= len(cov) * _SINGULAR_TOLERANCE * eigenvalues[-1]:
    return float("inf")
  return float(-0.5 * np.sum(np.log(eigenvalues)))


def gaussian_wasserstein_correlation(cov: np.ndarray) -> float:
  """Squared 2-Wasserstein distance between N(0, C) and N(0, diag C),
  float64.

  W^2 = tr C + tr D - 2 tr (D^1/2 C D^1/2)^1/2 with D = diag C, which is
  dlib's 2 tr C - 2 tr sqrtm(D C): D C is similar to the symmetric PSD
  D^1/2 C D^1/2, so tr sqrtm is the sum of square roots of its eigenvalues
  (a symmetric eigendecomposition instead of a general matrix square root;
  rounding below 0 is clipped).
  """
  cov = np.asarray(cov, np.float64)
  chex.assert_rank(cov, 2)
  sqrt_diag = np.sqrt(np.maximum(np.diag(cov), 0.0))
  scaled = cov * sqrt_diag[:, None] * sqrt_diag[None, :]
  eigenvalues = np.linalg.eigvalsh(0.5 * (scaled + scaled.T))
  return float(2 * np.trace(cov)
               - 2 * np.sum(np.sqrt(np.maximum(eigenvalues, 0.0))))


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


def gaussian_scores(codes: np.ndarray) -> dict[str, float]:
  """The covariance-based scores of one member's codes [n, d], in float64.

  Codes with NaN/inf (a diverged member) give NaN.  The Wasserstein norm of
  codes without any variance (tr C = 0) is 0, not 0/0.
  """
  names = ("gaussian_total_correlation", "gaussian_wasserstein_correlation",
           "gaussian_wasserstein_correlation_norm")
  if not np.all(np.isfinite(codes)):
    return dict.fromkeys(names, float("nan"))
  cov = code_covariance(codes)
  trace = float(np.trace(cov))
  wasserstein = gaussian_wasserstein_correlation(cov)
  return dict(zip(names, (gaussian_total_correlation(cov), wasserstein,
                          wasserstein / trace if trace > 0 else 0.0)))


@functools.partial(jax.jit, static_argnums=1)
def _mutual_info_of_members(codes: jax.Array, num_bins: int) -> jax.Array:
  """`mutual_info_score` of every member, codes [members, n, d]; NaN for a
  member whose codes are not all finite."""

  def one(member_codes):
    finite = jnp.all(jnp.isfinite(member_codes))
    safe = jnp.where(finite, member_codes, 0.0)
    return jnp.where(finite, mutual_info_score(safe, num_bins), jnp.nan)

  return jax.vmap(one)(codes)


def unsupervised_scores(codes: np.ndarray,
                        num_bins: int = 20) -> dict[str, np.ndarray]:
  """All unsupervised scores of every member, codes [members, n, d] ->
  {name: [members]}: the Gaussian ones in float64 on the host, the
  mutual information score vmapped in JAX."""
  chex.assert_rank(codes, 3)
  per_member = [gaussian_scores(member) for member in np.asarray(codes)]
  scores = {name: np.array([s[name] for s in per_member])
            for name in per_member[0]}
  scores["mutual_info_score"] = np.asarray(
      _mutual_info_of_members(jnp.asarray(codes), num_bins), np.float64)
  return scores


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
    scores = unsupervised_scores(np.asarray(codes), self.num_bins)
    for value in scores.values():
      chex.assert_shape(value, (codes.shape[0],))
    return scores
