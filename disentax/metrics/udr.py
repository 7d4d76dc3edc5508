"""Unsupervised Disentanglement Ranking (UDR; Duan et al., 2020), the
Spearman variant of disentanglement_lib's `udr_sklearn`.

UDR needs no ground truth: it rests on the observation that disentangled
representations of the same data are alike across random seeds (up to
permutation and sign of the latents) while entangled ones differ.  For two
models a and b trained with the same hyperparameters:

1. encode the same points with both; keep each model's *informative*
   latents, those whose mean KL(q(z_j|x) || N(0, 1)) over the points
   exceeds `kl_filter_threshold` (0.01);
2. similarity R(i, j) = |Spearman correlation| between latent i of a and
   latent j of b over the points (informative ones only);
3. UDR_ab = 1/(d_a + d_b) [sum_j r_j^2 / sum_i R(i, j)
                           + sum_i r_i^2 / sum_j R(i, j)],
   r_j = max_i R(i, j), r_i = max_j R(i, j), d_a, d_b the informative
   counts (the paper's eq. 3): 1 when R is a permutation matrix, lower when
   a latent of one model spreads over several of the other.

A member's score is the median of its UDR with every *other* member of its
hyperparameter group (`TrainedMembers.groups`).  A member alone in its group
(one seed) has nobody to compare with: its score is NaN.

Pure JAX: all M x M pairs come from one [M, M, d, d] einsum of standardised
ranks, inside one jit (no loop over members or pairs).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import chex
import jax
import jax.numpy as jnp
import numpy as np

from disentax.metrics import METRICS
from disentax.metrics.active import check_threshold
from disentax.metrics.base import Metric, TrainedMembers, check_int
from disentax.metrics.sampling import (jitted_dataset, map_in_batches,
                                       sample_factors)

_HIGHEST = jax.lax.Precision.HIGHEST


def average_ranks(x: jax.Array) -> jax.Array:
  """1-based ranks of x [n] with ties given their average rank (as
  `scipy.stats.rankdata`, which Spearman's correlation uses)."""
  chex.assert_rank(x, 1)
  ordered = jnp.sort(x)
  below = jnp.searchsorted(ordered, x, side="left")
  up_to = jnp.searchsorted(ordered, x, side="right")
  return (below + up_to + 1).astype(jnp.float32) / 2


def _standardised_ranks(codes: jax.Array) -> jax.Array:
  """Centred ranks of every column of codes [n, d], scaled to unit norm, so
  a dot product of two columns is their Spearman correlation.  A constant
  column becomes all zeros (correlation 0 with everything)."""
  ranks = jax.vmap(average_ranks, in_axes=1, out_axes=1)(codes)
  centred = ranks - (codes.shape[0] + 1) / 2  # their exact mean
  norm = jnp.sqrt(jnp.sum(jnp.square(centred), axis=0, keepdims=True))
  return jnp.where(norm > 0, centred / jnp.where(norm > 0, norm, 1.0), 0.0)


@jax.jit
def spearman_matrix(a: jax.Array, b: jax.Array) -> jax.Array:
  """|Spearman correlation| [d, e] between every column of a [n, d] and of
  b [n, e]; 0 for a constant column (scipy: NaN)."""
  chex.assert_rank([a, b], 2)
  chex.assert_equal_shape_prefix([a, b], 1)
  return jnp.abs(jnp.matmul(_standardised_ranks(a).T, _standardised_ranks(b),
                            precision=_HIGHEST))


@jax.jit
def udr_from_similarity(similarity: jax.Array, informative_a: jax.Array,
                        informative_b: jax.Array) -> jax.Array:
  """UDR of one pair of models from their similarity matrix R [d, e] and
  boolean informative masks [d], [e] (the paper's eq. 3, on informative
  latents only).

  A row or column whose similarities are all 0 contributes 0; a pair in
  which neither model has an informative latent scores 0 (nothing is
  represented, so nothing is disentangled; dlib: NaN from an empty mean).
  """
  chex.assert_rank(similarity, 2)
  chex.assert_shape([informative_a, informative_b], [similarity.shape[:1],
                                                     similarity.shape[1:]])
  mask = informative_a[:, None] & informative_b[None, :]
  r = jnp.where(mask, similarity, 0.0)

  def ratio(axis: int, keep: jax.Array) -> jax.Array:
    peak, total = jnp.max(r, axis=axis), jnp.sum(r, axis=axis)
    ok = keep & (total > 0)
    return jnp.sum(jnp.where(ok, peak ** 2 / jnp.where(ok, total, 1.0), 0.0))

  count = jnp.sum(informative_a) + jnp.sum(informative_b)
  score = ratio(1, informative_a) + ratio(0, informative_b)
  return jnp.where(count > 0, score / jnp.maximum(count, 1), 0.0)


def gaussian_kl_per_latent(mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """Mean over points of KL(N(mean, exp(logvar)) || N(0, 1)) per latent:
  [..., n, d] -> [..., d]."""
  kl = 0.5 * (jnp.square(mean) + jnp.exp(logvar) - logvar - 1.0)
  return jnp.mean(kl, axis=-2)


@jax.jit
def udr_scores(means: jax.Array, logvars: jax.Array, groups: jax.Array,
               kl_filter_threshold: jax.Array | float = 0.01
               ) -> dict[str, jax.Array]:
  """UDR of every member from posteriors of the same points.

  Args:
    means, logvars: [M, n, d] of q(z|x) for every member.
    groups: int [M]; only members of the same group are compared.
    kl_filter_threshold: latents whose mean KL to the prior is not above it
      are uninformative and left out.

  Returns:
    {"udr": [M] median pairwise UDR with the other members of the group (NaN
     when there is none, or when the member is not finite),
     "udr_matrix": [M, M] pairwise UDR, NaN on the diagonal, across groups
     and for pairs with a non-finite member}.  A non-finite member is left
     out of the medians of its peers rather than making them NaN.
  """
  chex.assert_rank([means, logvars], 3)
  chex.assert_equal_shape([means, logvars])
  num_members = means.shape[0]
  chex.assert_shape(groups, (num_members,))
  finite = jnp.all(jnp.isfinite(means) & jnp.isfinite(logvars), axis=(1, 2))
  means = jnp.where(finite[:, None, None], means, 0.0)
  logvars = jnp.where(finite[:, None, None], logvars, 0.0)
  informative = gaussian_kl_per_latent(means, logvars) > kl_filter_threshold
  ranks = jax.vmap(_standardised_ranks)(means)  # [M, n, d]
  similarity = jnp.abs(jnp.einsum("and,bne->abde", ranks, ranks,
                                  precision=_HIGHEST))  # [M, M, d, d]
  pair = jax.vmap(jax.vmap(udr_from_similarity, in_axes=(0, None, 0)),
                  in_axes=(0, 0, None))
  matrix = pair(similarity, informative, informative)  # [M, M]
  valid = ((groups[:, None] == groups[None, :])
           & ~jnp.eye(num_members, dtype=bool)
           & finite[:, None] & finite[None, :])
  matrix = jnp.where(valid, matrix, jnp.nan)
  score = jnp.where(finite, jnp.nanmedian(matrix, axis=1), jnp.nan)
  return {"udr": score, "udr_matrix": matrix}


@METRICS.register("udr")
@dataclasses.dataclass(frozen=True)
class UDR(Metric):
  """UDR of all members of a sweep, seeds compared within each group.

  Attributes:
    num_points: uniformly sampled observations the posteriors are compared
      on (dlib's udr config: 1000).
    kl_filter_threshold: latents whose mean KL to the prior is not above it
      are uninformative and left out (dlib: 0.01).
    batch_size: observations per `posterior_fn` call.
  """

  supervised: ClassVar[bool] = False  # needs no ground-truth factors
  needs: ClassVar[tuple[str, ...]] = ("dataset", "posterior_fn", "groups")
  name = "udr"
  int_fields = {"num_points": 2}  # batch_size after the threshold: `check`

  num_points: int = 1000
  kl_filter_threshold: float = 0.01
  batch_size: int = 1000

  def check(self):
    check_threshold(self.name, "kl_filter_threshold",
                    self.kl_filter_threshold)
    check_int(self.name, "batch_size", self.batch_size, 1)

  def score(self, members: TrainedMembers,
            rng: jax.Array) -> dict[str, np.ndarray]:
    """Scores every member on `num_points` uniformly sampled observations.

    Reads `members.posterior_fn` (means for the correlations, log-variances
    for the KL filter) and `members.groups`; the means come with the
    log-variances, so `members.representation_fn` is not used.

    Returns:
      {"udr": [members], "udr_matrix": [members, members]} as numpy.
    """
    members.require(self.name, *self.needs)
    factors = sample_factors(members.dataset, rng, self.num_points)
    means, logvars = map_in_batches(
        members.posterior_fn, jitted_dataset(members.dataset)[1],
        factors, self.batch_size, "udr")
    num_members = means.shape[0]
    groups = np.asarray(members.groups)
    if groups.shape != (num_members,):
      raise ValueError(f"udr: members.groups must have shape "
                       f"({num_members},), got {groups.shape}")
    scores = udr_scores(means, logvars, groups.astype(np.int32),
                        jnp.float32(self.kl_filter_threshold))
    chex.assert_shape(scores["udr"], (num_members,))
    chex.assert_shape(scores["udr_matrix"], (num_members, num_members))
    return {name: np.asarray(value) for name, value in scores.items()}
