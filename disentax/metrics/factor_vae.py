"""The FactorVAE score (Kim & Mnih, 2018), as in disentanglement_lib.

1. Global scale: the variance (ddof=1) of every latent over
   `num_variance_estimate` uniformly drawn points.  Latents whose global
   standard deviation is below `prune_threshold` (0.05) are pruned as
   collapsed to the prior.
2. Votes: each point picks a factor k uniformly, draws `batch_size` uniform
   factor tuples that all share one value of factor k, and votes
   (argmin over active latents of local variance / global variance, k); the
   local variance has ddof=1.  A latent that captures factor k alone barely
   moves in such a batch, so it gets k's votes.
3. Classifier: majority vote, each latent maps to the factor it received
   most training votes from (ties and unvoted latents -> the lowest factor
   index, as `np.argmax`).  The score is the fraction of `num_eval` fresh
   votes it classifies right; the training accuracy is reported too.

Pruning threshold (reading of the facts file): implementation-facts.md says
"prune dims with std < 0.05", which is also what disentanglement_lib's study
configs bind (`prune_dims.threshold = 0.05`, a threshold on the standard
deviation: active iff sqrt(global variance) >= threshold).  The code default
of dlib's `_prune_dims` is 0.0, i.e. no pruning; `prune_threshold=0.0`
reproduces that, except that a latent with exactly zero global variance is
always inactive (in dlib its ratio is 0/0 = NaN, which `np.argmin` picks).

If no latent is active (e.g. a collapsed, all-zero representation) the score
and training accuracy are 0, as dlib.  `factor_vae_active_dims` reports the
number of active latents (dlib's `num_active_dims` reports `len(mask)`, the
total number of latents, whenever one is active: a bug we do not copy).

Pure JAX and vmapped over members; codes are reduced to votes chunk by chunk
while encoding, so `batch_size * num_train` codes are never held at once.
Members whose codes contain NaN or inf score NaN.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import TYPE_CHECKING

import chex
import jax
import jax.numpy as jnp
import numpy as np

from disentax.metrics import METRICS
from disentax.metrics.beta_vae import encode_groups
from disentax.metrics.base import Metric, RepresentationFn
from disentax.metrics.sampling import jitted_dataset, sample_factors

if TYPE_CHECKING:  # only for annotations; keeps metrics free of dataset imports
  from disentax.data.base import GroundTruthDataset


def fix_factor(factors: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Batches int [n, batch, F] with factor labels[i] of batch i set to its
  value in the batch's first tuple (so it is one uniform value per batch)."""
  fixed = np.arange(factors.shape[-1])[None, None, :] == (
      np.asarray(labels)[:, None, None])
  return np.where(fixed, factors[:, :1, :], factors)


def sample_fixed_factor_batches(dataset: GroundTruthDataset, rng: jax.Array,
                                num_points: int, batch_size: int,
                                num_uniform: int = 0
                                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Labels int32 [n], fixed-factor batches int32 [n, batch_size, F] (point
  i's batch is uniform except that factor labels[i] takes one uniform value)
  and `num_uniform` extra uniform tuples [num_uniform, F], all drawn in one
  `sample_factors` call (one compile)."""
  num_factors = dataset.num_factors
  k_rng, factor_rng = jax.random.split(rng)
  labels = np.asarray(jax.random.randint(k_rng, (num_points,), 0,
                                         num_factors, dtype=jnp.int32))
  tuples = sample_factors(dataset, factor_rng,
                          num_uniform + num_points * batch_size)
  batches = tuples[num_uniform:].reshape(num_points, batch_size, num_factors)
  return labels, fix_factor(batches, labels), tuples[:num_uniform]


def global_variances(codes: jax.Array) -> jax.Array:
  """Variance (ddof=1) of every latent of codes [n, d]: [d]."""
  chex.assert_rank(codes, 2)
  return jnp.var(codes, axis=0, ddof=1)


def active_dims(variances: jax.Array, prune_threshold: float) -> jax.Array:
  """bool [d]: latents with std >= prune_threshold (and non-zero variance)."""
  return (variances > 0) & (jnp.sqrt(variances) >= prune_threshold)


def vote_latents(codes: jax.Array, variances: jax.Array,
                 active: jax.Array) -> jax.Array:
  """Voted latent of each point, int32 [n], from codes [n, batch, d].

  The argmin over active latents of (local variance, ddof=1) / (global
  variance); inactive latents never vote (0 when none is active).
  """
  chex.assert_rank(codes, 3)
  chex.assert_shape([variances, active], (codes.shape[-1],))
  local = jnp.var(codes, axis=1, ddof=1)  # [n, d]
  ratio = local / jnp.where(active, variances, 1.0)[None, :]
  ratio = jnp.where(active[None, :], ratio, jnp.inf)
  return jnp.argmin(ratio, axis=1).astype(jnp.int32)


def vote_table(latents: jax.Array, labels: jax.Array, num_latents: int,
               num_factors: int) -> jax.Array:
  """Vote counts int32 [num_factors, num_latents] of votes (latent, label)."""
  chex.assert_rank([latents, labels], 1)
  chex.assert_equal_shape([latents, labels])
  one_hot_f = jax.nn.one_hot(labels, num_factors, dtype=jnp.int32)
  one_hot_l = jax.nn.one_hot(latents, num_latents, dtype=jnp.int32)
  return jnp.einsum("nf,nl->fl", one_hot_f, one_hot_l)


def majority_vote_accuracy(train_votes: jax.Array,
                           eval_votes: jax.Array) -> dict[str, jax.Array]:
  """The majority-vote classifier of vote tables [F, d] and its accuracies.

  Returns:
    {"classifier": int [d], the factor each latent predicts (its most voted
     factor in `train_votes`; ties -> lowest index), "train_accuracy",
     "eval_accuracy": the fraction of each table's votes it gets right}.
  """
  chex.assert_rank([train_votes, eval_votes], 2)
  chex.assert_equal_shape([train_votes, eval_votes])
  classifier = jnp.argmax(train_votes, axis=0).astype(jnp.int32)

  def accuracy(votes):
    right = jnp.take_along_axis(votes, classifier[None, :], axis=0)
    return jnp.sum(right) / jnp.maximum(jnp.sum(votes), 1)

  return {"classifier": classifier,
          "train_accuracy": accuracy(train_votes),
          "eval_accuracy": accuracy(eval_votes)}


def _score_from_votes(train_latents, train_labels, eval_latents, eval_labels,
                      active, finite, num_factors):
  """One member's outputs from its voted latents [n] and active mask [d]."""
  num_latents = active.shape[0]
  result = majority_vote_accuracy(
      vote_table(train_latents, train_labels, num_latents, num_factors),
      vote_table(eval_latents, eval_labels, num_latents, num_factors))
  any_active = jnp.any(active)
  nan = jnp.float32(jnp.nan)
  return {
      "factor_vae_score": jnp.where(
          finite, jnp.where(any_active, result["eval_accuracy"], 0.0), nan),
      "factor_vae_train_accuracy": jnp.where(
          finite, jnp.where(any_active, result["train_accuracy"], 0.0), nan),
      "factor_vae_active_dims": jnp.where(
          finite, jnp.sum(active).astype(jnp.float32), nan),
  }


def factor_vae_score(variance_codes: jax.Array, train_codes: jax.Array,
                     train_labels: jax.Array, eval_codes: jax.Array,
                     eval_labels: jax.Array, num_factors: int,
                     prune_threshold: float = 0.05) -> dict[str, jax.Array]:
  """FactorVAE score of one member from its codes (pure JAX; vmappable).

  Args:
    variance_codes: [v, d] codes of uniform points (global variances).
    train_codes, eval_codes: [n, batch, d] codes of fixed-factor batches.
    train_labels, eval_labels: int [n], each batch's fixed factor.
    num_factors: static number of factors.
    prune_threshold: latents with global std below it are inactive.

  Returns:
    {"factor_vae_score", "factor_vae_train_accuracy",
     "factor_vae_active_dims"} scalars (NaN for non-finite codes).
  """
  return _factor_vae_score(variance_codes, train_codes, train_labels,
                           eval_codes, eval_labels, prune_threshold,
                           int(num_factors))


@functools.partial(jax.jit, static_argnums=6)
def _factor_vae_score(variance_codes, train_codes, train_labels, eval_codes,
                      eval_labels, prune_threshold, num_factors):
  variances = global_variances(variance_codes)
  active = active_dims(variances, prune_threshold)
  finite = (jnp.all(jnp.isfinite(variance_codes))
            & jnp.all(jnp.isfinite(train_codes))
            & jnp.all(jnp.isfinite(eval_codes)))
  return _score_from_votes(
      vote_latents(train_codes, variances, active), train_labels,
      vote_latents(eval_codes, variances, active), eval_labels, active,
      finite, num_factors)


@jax.jit
def _member_scales(codes: jax.Array, prune_threshold: jax.Array):
  """Global variances [M, d], active masks [M, d], finiteness [M]."""
  variances = jax.vmap(global_variances)(codes)
  active = jax.vmap(active_dims, in_axes=(0, None))(variances,
                                                    prune_threshold)
  finite = jnp.all(jnp.isfinite(codes), axis=(1, 2))
  return variances, active, finite


@jax.jit
def _vote_chunk(variances: jax.Array, active: jax.Array,
                codes: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Codes [M, p, batch, d] -> voted latents [M, p] and finiteness [M, p]."""
  latents = jax.vmap(vote_latents)(codes, variances, active)
  return latents, jnp.all(jnp.isfinite(codes), axis=(2, 3))


@functools.partial(jax.jit, static_argnums=6)
def _score_members(train_latents, train_labels, eval_latents, eval_labels,
                   active, finite, num_factors):
  """Outputs of every member from latents [M, n], active [M, d], finite [M]."""
  return jax.vmap(
      lambda tr, ev, a, f: _score_from_votes(tr, train_labels, ev, eval_labels,
                                             a, f, num_factors))(
                                                 train_latents, eval_latents,
                                                 active, finite)


@METRICS.register("factor_vae_score")
@dataclasses.dataclass(frozen=True)
class FactorVAEScore(Metric):
  """The FactorVAE score over a ground-truth dataset for all members.

  Attributes:
    batch_size: factor tuples per vote, all sharing the fixed factor's value
      (dlib's study: 64).
    num_train: votes the majority-vote classifier is built from (dlib:
      10000).
    num_eval: fresh votes it is scored on (dlib: 5000).
    num_variance_estimate: uniform points for the latents' global variances
      (dlib: 10000).
    prune_threshold: latents whose global standard deviation is below it are
      pruned (dlib's study: 0.05).
    encode_batch_size: observations per `representation_fn` call.
  """

  name = "factor_vae_score"
  int_fields = {"batch_size": 2, "num_train": 1, "num_eval": 1,
                "num_variance_estimate": 2, "encode_batch_size": 1}

  batch_size: int = 64
  num_train: int = 10000
  num_eval: int = 5000
  num_variance_estimate: int = 10000
  prune_threshold: float = 0.05
  encode_batch_size: int = 1000

  def check(self):
    threshold = self.prune_threshold
    if (isinstance(threshold, bool)
        or not isinstance(threshold, (int, float, np.integer, np.floating))
        or not math.isfinite(threshold) or threshold < 0):
      raise ValueError(
          "factor_vae_score: prune_threshold must be a finite number >= 0 "
          f"(a global standard deviation), got {threshold!r}")

  def evaluate(self, dataset: GroundTruthDataset,
               representation_fn: RepresentationFn,
               rng: jax.Array) -> dict[str, np.ndarray]:
    """Scores every member of `representation_fn`.

    Args:
      dataset: samples factors and renders observations.
      representation_fn: observations [b, H, W, C] -> codes [members, b, d],
        always called with exactly `encode_batch_size` observations.
      rng: PRNG key (the same points for all members).

    Returns:
      {"factor_vae_score": [members] eval accuracy,
       "factor_vae_train_accuracy": [members],
       "factor_vae_active_dims": [members] number of active latents} as
      numpy (float, NaN for members with non-finite codes).
    """
    num_points = self.num_train + self.num_eval
    labels, batches, uniform = sample_fixed_factor_batches(
        dataset, rng, num_points, self.batch_size,
        self.num_variance_estimate)
    render = jitted_dataset(dataset)[1]
    codes = encode_groups(dataset, representation_fn, uniform[:, None, :],
                          lambda c: c[:, :, 0, :], self.encode_batch_size,
                          "factor_vae_score", render)  # [M, v, d]
    variances, active, finite = _member_scales(
        codes, jnp.float32(self.prune_threshold))
    latents, point_finite = encode_groups(
        dataset, representation_fn, batches,
        functools.partial(_vote_chunk, variances, active),
        self.encode_batch_size, "factor_vae_score", render)
    finite = np.asarray(finite) & np.all(point_finite, axis=1)
    split = self.num_train
    scores = _score_members(latents[:, :split], labels[:split],
                            latents[:, split:], labels[split:], active,
                            finite, dataset.num_factors)
    members = codes.shape[0]
    for value in scores.values():
      chex.assert_shape(value, (members,))
    return {name: np.asarray(value) for name, value in scores.items()}
