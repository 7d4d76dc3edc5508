"""The BetaVAE score (Higgins et al., 2017), as in disentanglement_lib.

Each training point picks a factor k uniformly at random and draws
`batch_size` pairs of factor tuples; the two tuples of a pair share the value
of factor k (a value drawn per pair) and are otherwise independent.  The
point's feature is the mean over the pairs of |z1 - z2| per latent, its label
is k.  If one latent (and only it) captures factor k, that latent's entry is
the feature's smallest, so a linear classifier predicts k from it easily.  The
score is the accuracy of a logistic regression (sklearn's
`LogisticRegression()` defaults, solved exactly by `logistic.fit`) on
`num_eval` fresh points; its training accuracy is reported too.

All factor tuples (training and evaluation points) are drawn in one
vectorised `sample_factors` call, encoded in big batches, and reduced to
features chunk by chunk (so a sweep's codes of 2 * batch_size *
num_points observations never sit in memory at once); the classifier of every
member is fitted in one vmapped, jitted call.  Members whose codes contain
NaN or inf score NaN.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import TYPE_CHECKING, Any, Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np

from disentax.metrics import METRICS
from disentax.metrics import logistic
from disentax.metrics.base import Metric, RepresentationFn
from disentax.metrics.sampling import (jitted_dataset, map_in_batches,
                                       sample_factors)

if TYPE_CHECKING:  # only for annotations; keeps metrics free of dataset imports
  from disentax.data.base import GroundTruthDataset


def points_per_chunk(group: int, encode_batch_size: int,
                     target_batches: int = 16) -> int:
  """How many points (of `group` observations each) to encode per chunk.

  About `target_batches` encoder batches per chunk; when a small number of
  points fills whole batches exactly (e.g. 125 points of 128 observations =
  16 batches of 1000), a multiple of it, so no batch is padded.
  """
  unit = math.lcm(group, encode_batch_size) // group
  if unit * group > 4 * target_batches * encode_batch_size:
    unit = 1
  return unit * max(1, (target_batches * encode_batch_size) // (unit * group))


def encode_groups(dataset: GroundTruthDataset,
                  representation_fn: RepresentationFn, factors: np.ndarray,
                  reduce_fn: Callable[[jax.Array], Any],
                  encode_batch_size: int, where: str = "metric",
                  render: Callable[[np.ndarray], jax.Array] | None = None
                  ) -> Any:
  """Encodes groups of factor tuples and reduces each group's codes.

  Args:
    dataset: renders the observations of factor tuples.
    representation_fn: observations [b, H, W, C] -> codes [M, b, d].
    factors: int [n, group, F], `group` factor tuples per point.
    reduce_fn: codes [M, p, group, d] -> an array or tuple of arrays, each
      [M, p, ...] (one row per point; e.g. a point's feature vector).
    encode_batch_size: observations per `representation_fn` call.
    where: the metric's name, for error messages.
    render: the jitted `dataset.observations_from_factors` to use (default:
      the dataset's cached one, `sampling.jitted_dataset`).

  Returns:
    `reduce_fn`'s structure with numpy arrays [M, n, ...].  Points are
    encoded a chunk at a time (`map_in_batches`), so only one chunk's codes
    are held.
  """
  factors = np.asarray(factors)
  if factors.ndim != 3:
    raise ValueError(f"{where}: factors must be [points, group, factors], "
                     f"got shape {factors.shape}")
  if render is None:
    render = jitted_dataset(dataset)[1]
  n, group, num_factors = factors.shape
  chunk = points_per_chunk(group, encode_batch_size)
  pieces = []
  for start in range(0, n, chunk):
    part = factors[start:start + chunk]
    codes = map_in_batches(representation_fn, render,
                           part.reshape(-1, num_factors), encode_batch_size,
                           where)
    if not isinstance(codes, np.ndarray) or codes.ndim != 3:
      raise ValueError(
          f"{where}: representation_fn must return codes [members, b, d], "
          f"got {jax.tree.map(np.shape, codes)}")
    codes = codes.reshape(codes.shape[0], part.shape[0], group, -1)
    pieces.append(jax.tree.map(np.asarray, reduce_fn(codes)))
  return jax.tree.map(lambda *xs: np.concatenate(xs, axis=1), *pieces)


def sample_pair_factors(dataset: GroundTruthDataset, rng: jax.Array,
                        num_points: int, batch_size: int
                        ) -> tuple[np.ndarray, np.ndarray]:
  """Labels int32 [n] and factor pairs int32 [n, 2, batch_size, F].

  Point i fixes factor labels[i]: factors[i, 0, j] and factors[i, 1, j] are
  uniform tuples that agree on that factor (its value drawn per pair j).
  """
  num_factors = dataset.num_factors
  k_rng, factor_rng = jax.random.split(rng)
  labels = np.asarray(jax.random.randint(k_rng, (num_points,), 0,
                                         num_factors, dtype=jnp.int32))
  # Both halves in one draw: one compile of the sampler.
  tuples = sample_factors(dataset, factor_rng, 2 * num_points * batch_size)
  first, second = tuples.reshape(2, num_points, batch_size, num_factors)
  fixed = np.arange(num_factors)[None, None, :] == labels[:, None, None]
  second = np.where(fixed, first, second)
  return labels, np.stack([first, second], axis=1)


def beta_vae_features(codes: jax.Array) -> jax.Array:
  """Feature of each point from its pairs' codes [..., 2, batch, d]: the mean
  over the batch of |z1 - z2|, [..., d]."""
  chex.assert_axis_dimension(codes, -3, 2)
  return jnp.mean(jnp.abs(codes[..., 0, :, :] - codes[..., 1, :, :]),
                  axis=-2)


@jax.jit
def _pair_features(codes: jax.Array) -> jax.Array:
  """codes [M, p, 2 * batch, d] (the two halves are the pairs) -> [M, p, d]."""
  members, points, group, d = codes.shape
  return beta_vae_features(codes.reshape(members, points, 2, group // 2, d))


def beta_vae_score(train_features: jax.Array, train_labels: jax.Array,
                   eval_features: jax.Array, eval_labels: jax.Array,
                   num_factors: int) -> dict[str, jax.Array]:
  """BetaVAE score of one member from its features (pure JAX; vmappable).

  Args:
    train_features, eval_features: float [n, d] (`beta_vae_features`).
    train_labels, eval_labels: int [n], the fixed factor of each point.
    num_factors: static number of factors (the classes).

  Returns:
    {"beta_vae_score": eval accuracy, "beta_vae_train_accuracy": train
    accuracy}, scalars; NaN when any feature is non-finite (a diverged
    member).  A factor never drawn for training is never predicted (see
    `logistic`).
  """
  return _beta_vae_score(train_features, train_labels, eval_features,
                         eval_labels, int(num_factors))


@functools.partial(jax.jit, static_argnums=4)
def _beta_vae_score(train_features, train_labels, eval_features, eval_labels,
                    num_factors):
  chex.assert_rank([train_features, eval_features], 2)
  chex.assert_rank([train_labels, eval_labels], 1)
  chex.assert_equal_shape_prefix([train_features, train_labels], 1)
  chex.assert_equal_shape_prefix([eval_features, eval_labels], 1)
  finite = (jnp.all(jnp.isfinite(train_features))
            & jnp.all(jnp.isfinite(eval_features)))
  train_features = jnp.where(jnp.isfinite(train_features), train_features, 0)
  eval_features = jnp.where(jnp.isfinite(eval_features), eval_features, 0)
  params = logistic.fit(train_features, train_labels, num_factors)
  train_accuracy = logistic.accuracy(params, train_features, train_labels)
  eval_accuracy = logistic.accuracy(params, eval_features, eval_labels)
  return {
      "beta_vae_score": jnp.where(finite, eval_accuracy, jnp.nan),
      "beta_vae_train_accuracy": jnp.where(finite, train_accuracy, jnp.nan),
  }


@functools.partial(jax.jit, static_argnums=4)
def _score_members(train_features, train_labels, eval_features, eval_labels,
                   num_factors):
  """`beta_vae_score` of every member: features [M, n, d], shared labels."""
  return jax.vmap(
      lambda tr, ev: _beta_vae_score(tr, train_labels, ev, eval_labels,
                                     num_factors))(train_features,
                                                   eval_features)


@METRICS.register("beta_vae_score")
@dataclasses.dataclass(frozen=True)
class BetaVAEScore(Metric):
  """The BetaVAE score over a ground-truth dataset for all members at once.

  Attributes:
    batch_size: pairs of factor tuples averaged into one point's feature
      (dlib: 64).
    num_train: points the classifier is fitted on (dlib: 10000).
    num_eval: fresh points it is scored on (dlib: 5000).
    encode_batch_size: observations per `representation_fn` call.
  """

  name = "beta_vae_score"
  int_fields = {"batch_size": 1, "num_train": 1, "num_eval": 1,
                "encode_batch_size": 1}

  batch_size: int = 64
  num_train: int = 10000
  num_eval: int = 5000
  encode_batch_size: int = 1000

  def features(self, dataset: GroundTruthDataset,
               representation_fn: RepresentationFn, rng: jax.Array,
               num_points: int,
               render: Callable[[np.ndarray], jax.Array] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Labels [n] and every member's features [M, n, d] for `num_points`."""
    labels, factors = sample_pair_factors(dataset, rng, num_points,
                                          self.batch_size)
    factors = factors.reshape(num_points, 2 * self.batch_size, -1)
    features = encode_groups(dataset, representation_fn, factors,
                             _pair_features, self.encode_batch_size,
                             "beta_vae_score", render)
    return labels, features

  def evaluate(self, dataset: GroundTruthDataset,
               representation_fn: RepresentationFn,
               rng: jax.Array) -> dict[str, np.ndarray]:
    """Scores every member of `representation_fn`.

    Training and evaluation points are drawn in one go (independent points,
    so splitting them is the same as drawing twice) and rendered by one
    jitted renderer, so each compiles once per evaluation.

    Args:
      dataset: samples factors and renders observations.
      representation_fn: observations [b, H, W, C] -> codes [members, b, d],
        always called with exactly `encode_batch_size` observations.
      rng: PRNG key (the same points for all members).

    Returns:
      {"beta_vae_score": [members] eval accuracy,
       "beta_vae_train_accuracy": [members]} as numpy.
    """
    render = jitted_dataset(dataset)[1]
    labels, features = self.features(dataset, representation_fn, rng,
                                     self.num_train + self.num_eval, render)
    split = self.num_train
    scores = _score_members(features[:, :split], labels[:split],
                            features[:, split:], labels[split:],
                            dataset.num_factors)
    members = features.shape[0]
    for value in scores.values():
      chex.assert_shape(value, (members,))
    return {name: np.asarray(value) for name, value in scores.items()}
