"""The ELBO and its TC decomposition (Chen et al., 2018, eq. 2), per member.

With the data index n uniform over a sample of points and
q(z|n) = N(mean_n, exp(logvar_n)) the encoder's posterior, the average KL
term of the ELBO splits into

  E_n KL(q(z|n) || p(z)) = I_q(z; n)                      index-code MI
                           + KL(q(z) || prod_j q(z_j))    total correlation
                           + sum_j KL(q(z_j) || p(z_j))   dimension-wise KL

where q(z) = 1/N sum_n q(z|n) is the aggregate posterior.  Next to the
reconstruction error this tells *where* a model spends its KL budget:
information about the input, dependence between latents, or marginals
that differ from the prior.

Estimator (Chen et al.'s, on a sample): N points drawn uniformly from the
dataset, one z_n ~ q(z|n) per point, and the aggregate posterior taken as the
mixture over the *same* N points (self term included), so
log q(z_n) = logsumexp_m log q(z_n|m) - log N, and likewise for every
marginal q(z_nj).  The three terms then sum exactly to the single-sample
Monte Carlo estimate of the KL, whose expectation is the closed-form `kl`.
They describe the sample's empirical distribution, so the index-code MI is
at most log N.

Cost: every z_n is scored under every component, N^2 d log-densities per
member, hence a default of 2000 points (not dlib's 10000) and chunks of
`chunk_size` query points (memory members x chunk_size x N x d floats).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar

import chex
import jax
import jax.numpy as jnp
import numpy as np

from disentax.metrics import METRICS
from disentax.metrics.base import Metric, TrainedMembers
from disentax.metrics.sampling import (jitted_dataset, map_in_batches,
                                       sample_factors)

_LOG_2PI = math.log(2 * math.pi)


def gaussian_log_density(z: jax.Array, mean: jax.Array,
                         logvar: jax.Array) -> jax.Array:
  """Elementwise log N(z; mean, exp(logvar)) (broadcasting)."""
  return -0.5 * (_LOG_2PI + logvar + jnp.square(z - mean) * jnp.exp(-logvar))


def aggregate_log_densities(z: jax.Array, mean: jax.Array, logvar: jax.Array,
                            chunk_size: int) -> tuple[jax.Array, jax.Array]:
  """Log densities of z under the mixture of the N posteriors.

  Args:
    z: [N, d] query points; mean, logvar: [N, d] the mixture components
      (uniform weights 1/N).
    chunk_size: query points scored at a time (memory chunk_size * N * d).

  Returns:
    (log q(z_n) [N], log q(z_nj) [N, d]): the joint and every marginal of the
    mixture at each query point.
  """
  chex.assert_rank([z, mean, logvar], 2)
  chex.assert_equal_shape([mean, logvar])
  n, d = z.shape
  chunk = min(chunk_size, n)
  num_chunks = -(-n // chunk)
  padded = jnp.concatenate(
      [z, jnp.zeros((num_chunks * chunk - n, d), z.dtype)]).reshape(
          num_chunks, chunk, d)
  log_n = jnp.log(jnp.float32(mean.shape[0]))

  def score(queries: jax.Array) -> tuple[jax.Array, jax.Array]:
    per_dim = gaussian_log_density(queries[:, None, :], mean[None],
                                   logvar[None])  # [chunk, N, d]
    joint = jax.nn.logsumexp(jnp.sum(per_dim, axis=2), axis=1) - log_n
    marginal = jax.nn.logsumexp(per_dim, axis=1) - log_n
    return joint, marginal

  joint, marginal = jax.lax.map(score, padded)
  return joint.reshape(-1)[:n], marginal.reshape(-1, d)[:n]


@functools.partial(jax.jit, static_argnames="chunk_size")
def elbo_decomposition(mean: jax.Array, logvar: jax.Array, noise: jax.Array,
                       chunk_size: int = 100) -> dict[str, jax.Array]:
  """The KL term of one member and its decomposition, from posteriors of N
  uniformly sampled points.

  Args:
    mean, logvar: [N, d] posterior q(z|x_n) of every point.
    noise: [N, d] standard normal draws; z_n = mean_n + exp(logvar_n/2) *
      noise_n (one sample per point).
    chunk_size: static; query points per chunk of the N^2 d log-densities.

  Returns:
    {"kl": E_n KL(q(z|x_n) || N(0, I)) in closed form, "kl_per_latent": [d],
     "index_code_mi", "total_correlation", "dimwise_kl": scalars, nats};
    index_code_mi + total_correlation + dimwise_kl equals the Monte Carlo
    estimate of "kl" from the same z.  NaN for a non-finite posterior.
  """
  chex.assert_rank([mean, logvar, noise], 2)
  chex.assert_equal_shape([mean, logvar, noise])
  finite = jnp.all(jnp.isfinite(mean) & jnp.isfinite(logvar))
  mean = jnp.where(finite, mean, 0.0)
  logvar = jnp.where(finite, logvar, 0.0)
  z = mean + jnp.exp(0.5 * logvar) * noise
  log_qz_x = jnp.sum(gaussian_log_density(z, mean, logvar), axis=1)  # [N]
  log_pz_j = gaussian_log_density(z, 0.0, 0.0)  # [N, d]
  log_qz, log_qz_j = aggregate_log_densities(z, mean, logvar, chunk_size)
  kl_per_latent = jnp.mean(
      0.5 * (jnp.square(mean) + jnp.exp(logvar) - logvar - 1.0), axis=0)
  scores = {
      "kl": jnp.sum(kl_per_latent),
      "kl_per_latent": kl_per_latent,
      "index_code_mi": jnp.mean(log_qz_x - log_qz),
      "total_correlation": jnp.mean(log_qz - jnp.sum(log_qz_j, axis=1)),
      "dimwise_kl": jnp.sum(jnp.mean(log_qz_j - log_pz_j, axis=0)),
  }
  return {k: jnp.where(finite, v, jnp.nan) for k, v in scores.items()}


@functools.partial(jax.jit, static_argnames="chunk_size")
def _score_members(means: jax.Array, logvars: jax.Array, errors: jax.Array,
                   noise: jax.Array, chunk_size: int) -> dict[str, jax.Array]:
  """`elbo_decomposition` of every member ([M, N, d]) plus the mean
  reconstruction error ([M, N]); the same noise for every member, so a
  member's numbers do not depend on which others share the call."""
  scores = jax.vmap(lambda m, v: elbo_decomposition(m, v, noise, chunk_size))(
      means, logvars)
  scores["reconstruction_error"] = jnp.mean(errors, axis=1)
  # A member with any non-finite output is NaN throughout.
  finite = (jnp.all(jnp.isfinite(errors), axis=1)
            & jnp.all(jnp.isfinite(means) & jnp.isfinite(logvars),
                      axis=(1, 2)))
  return {k: jnp.where(finite.reshape((-1,) + (1,) * (v.ndim - 1)), v,
                       jnp.nan) for k, v in scores.items()}


@METRICS.register("elbo_decomposition")
@dataclasses.dataclass(frozen=True)
class ELBODecomposition(Metric):
  """Reconstruction error, KL and its TC decomposition for all members.

  Attributes:
    num_points: uniformly sampled observations (2000, not dlib's usual
      10000: the aggregate posterior costs num_points^2 * d log-densities
      per member).
    chunk_size: query points whose log-densities are computed at a time.
    batch_size: observations per `posterior_fn` and
      `reconstruction_error_fn` call.
  """

  supervised: ClassVar[bool] = False  # needs no ground-truth factors
  needs: ClassVar[tuple[str, ...]] = ("dataset", "posterior_fn",
                                      "reconstruction_error_fn")
  name = "elbo_decomposition"
  int_fields = {"num_points": 2, "chunk_size": 1, "batch_size": 1}

  num_points: int = 2000
  chunk_size: int = 100
  batch_size: int = 1000

  def score(self, members: TrainedMembers,
            rng: jax.Array) -> dict[str, np.ndarray]:
    """Scores every member on `num_points` uniformly sampled observations.

    Reads `members.posterior_fn` and `members.reconstruction_error_fn` (the
    means come with the log-variances, so `members.representation_fn` is not
    used).  `rng` draws the points and the one z per point (the same draws
    for every member).

    Returns:
      {"reconstruction_error", "kl", "index_code_mi", "total_correlation",
       "dimwise_kl": [members], "kl_per_latent": [members, d]} as numpy,
      in nats (reconstruction error: the decoder NLL summed over pixels).
    """
    members.require(self.name, *self.needs)
    points_rng, noise_rng = jax.random.split(rng)
    factors = sample_factors(members.dataset, points_rng, self.num_points)

    def posterior_and_error(observations):
      mean, logvar = members.posterior_fn(observations)
      return mean, logvar, members.reconstruction_error_fn(observations)

    means, logvars, errors = map_in_batches(
        posterior_and_error, jitted_dataset(members.dataset)[1],
        factors, self.batch_size, "elbo_decomposition")
    num_members, _, d = means.shape
    chex.assert_shape(logvars, means.shape)
    chex.assert_shape(errors, means.shape[:2])
    noise = jax.random.normal(noise_rng, (self.num_points, d))
    scores = _score_members(means, logvars, errors, noise, self.chunk_size)
    for name in ("reconstruction_error", "kl", "index_code_mi",
                 "total_correlation", "dimwise_kl"):
      chex.assert_shape(scores[name], (num_members,))
    chex.assert_shape(scores["kl_per_latent"], (num_members, d))
    return {name: np.asarray(value) for name, value in scores.items()}
