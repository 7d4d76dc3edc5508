"""Unsupervised Disentanglement Ranking (UDR; Duan et al., 2020), as
disentanglement_lib's `udr_sklearn`, with its Lasso (default) or Spearman
similarity.

UDR needs no ground truth: it rests on the observation that disentangled
representations of the same data are alike across random seeds (up to
permutation and sign of the latents) while entangled ones differ.  For two
models a and b trained with the same hyperparameters:

1. encode the same points with both; keep each model's *informative*
   latents, those whose mean KL(q(z_j|x) || N(0, 1)) over the points
   exceeds `kl_filter_threshold` (0.01);
2. similarity R(i, j) between latent i of a and latent j of b:
   * `lasso` (dlib's default, UDR_L): each model's means are standardised
     per latent (mean 0, standard deviation 1, ddof 0; a constant latent is
     only centred, as sklearn's `StandardScaler`), its uninformative latents
     set to 0, and a Lasso regression (sklearn `Lasso(alpha=0.1)`, one per
     latent of b, fitted jointly) predicts b's latents from a's:
     R(i, j) = |coefficient of a's latent i for b's latent j|;
   * `spearman` (UDR_S): |Spearman correlation| of the two latents;
3. UDR_ab = 1/(d_a + d_b) [sum_j r_j^2 / sum_i R(i, j)
                           + sum_i r_i^2 / sum_j R(i, j)],
   r_j = max_i R(i, j), r_i = max_j R(i, j), d_a, d_b the informative
   counts (the paper's eq. 3), over informative latents only: 1 when R is a
   permutation matrix, lower when a latent of one model spreads over
   several of the other.  The Lasso shrinks every coefficient by alpha, so
   two identical models score 1 - alpha (R = (1 - alpha) I), as in dlib.

`udr_matrix[a, b]` is UDR_ab; a member's score is the median of its column,
its UDR with every *other* member of its hyperparameter group
(`TrainedMembers.groups`) as the regression's target (dlib's
`model_scores`; the Spearman similarity is symmetric, the Lasso's is not).
A member alone in its group (one seed) has nobody to compare with: its
score is NaN.

Spearman is pure JAX: all M x M pairs come from one [M, M, d, d] einsum of
standardised ranks, inside one jit.  The Lasso fits run on the host with
sklearn, one joblib task per regressing member (`n_jobs`); the aggregation
of either similarity is one jitted call over all pairs.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import chex
import jax
import jax.numpy as jnp
import joblib
import numpy as np

from disentax.metrics import METRICS
from disentax.metrics.active import check_threshold
from disentax.metrics.base import Metric, TrainedMembers, check_int
from disentax.metrics.estimators import (RANDOM_STATE, check_n_jobs,
                                         finite_members)
from disentax.metrics.sampling import (jitted_dataset, map_in_batches,
                                       sample_factors)

CORRELATIONS = ("lasso", "spearman")

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
def spearman_similarities(means: jax.Array) -> jax.Array:
  """|Spearman correlation| [M, M, d, d] between every latent of every pair
  of members, from means [M, n, d] of the same points."""
  ranks = jax.vmap(_standardised_ranks)(means)  # [M, n, d]
  return jnp.abs(jnp.einsum("and,bne->abde", ranks, ranks,
                            precision=_HIGHEST))


def standardised_informative(means: np.ndarray,
                             informative: np.ndarray) -> np.ndarray:
  """dlib's Lasso inputs, float64 [M, n, d]: every latent of means [M, n, d]
  standardised over the points as sklearn's `StandardScaler` (ddof 0; a
  latent whose standard deviation is below 10 float64 epsilons is only
  centred), times the informative mask [M, d]."""
  means = np.asarray(means, np.float64)
  centred = means - means.mean(axis=1, keepdims=True)
  scale = np.sqrt(np.mean(centred ** 2, axis=1, keepdims=True))
  scale = np.where(scale < 10 * np.finfo(np.float64).eps, 1.0, scale)
  return centred / scale * np.asarray(informative, bool)[:, None, :]


def _lasso_regressions(features: np.ndarray, targets: np.ndarray,
                       alpha: float) -> np.ndarray:
  """|Lasso coefficients| [K, d, e] of targets [K, n, e] regressed on
  features [n, d] (one multi-target `Lasso(alpha)` per target model).  Runs
  in a joblib worker."""
  # Imported when used: sklearn adds ~2 s to every start of the package.
  from sklearn.linear_model import Lasso
  similarity = np.empty((targets.shape[0], features.shape[1],
                         targets.shape[2]))
  for k, target in enumerate(targets):
    model = Lasso(alpha=alpha, random_state=RANDOM_STATE)
    model.fit(features, target)
    similarity[k] = np.abs(model.coef_).T  # coef_ is [e, d]
  return similarity


def lasso_similarities(means: np.ndarray, informative: np.ndarray,
                       compared: np.ndarray, alpha: float = 0.1,
                       n_jobs: int = -1) -> np.ndarray:
  """dlib's `lasso_correlation_matrix` of every compared pair (a, b):
  |coefficients| [M, M, d, d] of b's standardised informative latents
  regressed on a's (`standardised_informative`), 0 for pairs not
  `compared` (bool [M, M]).  One joblib task per member a."""
  inputs = standardised_informative(means, informative)
  members, _, d = inputs.shape
  compared = np.asarray(compared, bool)
  tasks = [a for a in range(members) if compared[a].any()]
  fitted = joblib.Parallel(n_jobs=n_jobs)(
      joblib.delayed(_lasso_regressions)(
          inputs[a], inputs[np.flatnonzero(compared[a])], alpha)
      for a in tasks)
  similarity = np.zeros((members, members, d, d))
  for a, rows in zip(tasks, fitted):
    similarity[a, np.flatnonzero(compared[a])] = rows
  return similarity


@jax.jit
def _aggregate(similarity: jax.Array, informative: jax.Array,
               compared: jax.Array, finite: jax.Array
               ) -> dict[str, jax.Array]:
  """UDR matrix [M, M] of `similarity` [M, M, d, d] on informative latents,
  NaN where not `compared`, and each member's median over its column
  (NaN for a non-finite member or one with nobody to compare with)."""
  pair = jax.vmap(jax.vmap(udr_from_similarity, in_axes=(0, None, 0)),
                  in_axes=(0, 0, None))
  matrix = jnp.where(compared, pair(similarity, informative, informative),
                     jnp.nan)
  score = jnp.where(finite, jnp.nanmedian(matrix, axis=0), jnp.nan)
  return {"udr": score, "udr_matrix": matrix}


def udr_scores(means: np.ndarray, logvars: np.ndarray, groups: np.ndarray,
               kl_filter_threshold: float = 0.01,
               correlation_matrix: str = "lasso", lasso_alpha: float = 0.1,
               n_jobs: int = -1) -> dict[str, np.ndarray]:
  """UDR of every member from posteriors of the same points.

  Args:
    means, logvars: [M, n, d] of q(z|x) for every member.
    groups: int [M]; only members of the same group are compared.
    kl_filter_threshold: latents whose mean KL to the prior is not above it
      are uninformative: left out, and set to 0 before the Lasso (dlib sets
      them to 0 at a fixed 0.01 whatever its threshold).
    correlation_matrix: the similarity, one of CORRELATIONS.
    lasso_alpha: the Lasso's L1 weight (dlib: 0.1).
    n_jobs: joblib workers for the Lasso fits.

  Returns:
    {"udr": [M] median UDR with the other members of the group (NaN when
     there is none, or when the member is not finite),
     "udr_matrix": [M, M] pairwise UDR, NaN on the diagonal, across groups
     and for pairs with a non-finite member}, numpy.  A non-finite member is
     left out of the medians of its peers rather than making them NaN.
  """
  if correlation_matrix not in CORRELATIONS:
    raise ValueError(f"udr: correlation_matrix={correlation_matrix!r}; "
                     f"allowed: {CORRELATIONS}")
  means, logvars = np.asarray(means), np.asarray(logvars)
  chex.assert_rank([means, logvars], 3)
  chex.assert_equal_shape([means, logvars])
  num_members = means.shape[0]
  groups = np.asarray(groups)
  chex.assert_shape(groups, (num_members,))
  finite = finite_members(means, logvars)
  means = np.where(finite[:, None, None], means, 0.0).astype(np.float32)
  logvars = np.where(finite[:, None, None], logvars, 0.0).astype(np.float32)
  informative = np.asarray(gaussian_kl_per_latent(
      means, logvars)) > kl_filter_threshold
  compared = ((groups[:, None] == groups[None, :])
              & ~np.eye(num_members, dtype=bool)
              & finite[:, None] & finite[None, :])
  if correlation_matrix == "spearman":
    similarity = spearman_similarities(means)
  else:
    similarity = lasso_similarities(means, informative, compared,
                                    lasso_alpha, n_jobs)
  scores = _aggregate(jnp.asarray(similarity, jnp.float32), informative,
                      compared, finite)
  return {name: np.asarray(value) for name, value in scores.items()}


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
    correlation_matrix: the similarity of two models' latents, 'lasso'
      (dlib's default) or 'spearman'.
    lasso_alpha: the Lasso's L1 weight (dlib: 0.1).
    n_jobs: joblib workers for the Lasso fits (-1: all cores); the scores
      do not depend on it.
  """

  supervised: ClassVar[bool] = False  # needs no ground-truth factors
  needs: ClassVar[tuple[str, ...]] = ("dataset", "posterior_fn", "groups")
  name = "udr"
  int_fields = {"num_points": 2}  # batch_size after the threshold: `check`

  num_points: int = 1000
  kl_filter_threshold: float = 0.01
  batch_size: int = 1000
  correlation_matrix: str = "lasso"
  lasso_alpha: float = 0.1
  n_jobs: int = -1

  def check(self):
    check_threshold(self.name, "kl_filter_threshold",
                    self.kl_filter_threshold)
    check_int(self.name, "batch_size", self.batch_size, 1)
    if self.correlation_matrix not in CORRELATIONS:
      raise ValueError(f"udr: correlation_matrix="
                       f"{self.correlation_matrix!r}; allowed: "
                       f"{CORRELATIONS}")
    alpha = self.lasso_alpha
    if (not isinstance(alpha, (int, float, np.floating, np.integer))
        or isinstance(alpha, bool) or not np.isfinite(alpha) or alpha <= 0):
      raise ValueError(f"udr: lasso_alpha must be a finite number > 0, got "
                       f"{alpha!r}")
    check_n_jobs(self.name, self.n_jobs)

  def score(self, members: TrainedMembers,
            rng: jax.Array) -> dict[str, np.ndarray]:
    """Scores every member on `num_points` uniformly sampled observations.

    Reads `members.posterior_fn` (means for the similarities, log-variances
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
    scores = udr_scores(means, logvars, groups, self.kl_filter_threshold,
                        self.correlation_matrix, self.lasso_alpha,
                        self.n_jobs)
    chex.assert_shape(scores["udr"], (num_members,))
    chex.assert_shape(scores["udr_matrix"], (num_members, num_members))
    return scores
