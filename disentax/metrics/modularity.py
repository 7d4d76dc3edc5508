"""Modularity and explicitness (Ridgeway & Mozer, 2018), as in
disentanglement_lib's `modularity_explicitness`.

Modularity asks whether each latent depends on at most one factor.  With
m_ik the mutual information between (histogram-discretised) latent i and
factor k over `num_train` uniform points, theta_i = max_k m_ik and K factors:

  modularity_i = 1 - sum_{k != argmax} m_ik^2 / (theta_i^2 (K - 1))

and the score is the mean over latents.  A latent with zero MI to every
factor (a dead latent) scores 0 and still counts in the mean, as in dlib
(whose own tests expect [[1, 0], [0, 1], [0, 0]] -> 2/3), so collapsing
latents is penalised rather than ignored.

Explicitness asks whether each factor is linearly decodable: the codes are
standardised with the training mean and standard deviation (ddof=0), then per
factor a logistic regression (sklearn `LogisticRegression()` defaults, solved
exactly by `logistic.fit`) predicts the factor's value from all latents; its
score is the ROC-AUC of the predicted class probabilities, one-vs-rest per
class and macro-averaged over classes (dlib: `roc_auc_score` of the
`MultiLabelBinarizer` one-hot labels).  Explicitness is the mean over
factors, on the training and on `num_test` held-out points.

Edge cases (dlib would crash or return NaN in each), chosen so that a sweep
table never reads wrong silently:
* a factor with zero empirical entropy in the training sample (e.g. a size-1
  factor such as dSprites' colour) is left out of modularity's K and of its
  max, and a factor whose labels hold a single class in a set has no AUC
  there and is left out of that set's explicitness mean (NaN if no factor
  is left);
* a class present in a set but never seen in training has predicted
  probability 0 for every point, so its one-vs-rest AUC is 0.5 (chance), and
  classes absent from a set are not averaged (dlib's binarizer only makes
  columns for present classes);
* a latent with zero standard deviation is standardised by 1 instead of 0;
* codes containing NaN or inf give NaN for every output of that member.

Pure JAX: every member is scored by one vmapped, jitted call; the factors'
regressions are vmapped over factors of equal size.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np

from disentax.metrics import METRICS
from disentax.metrics import logistic
from disentax.metrics.discrete import (_static_sizes, discrete_entropy,
                                       discrete_mutual_info, discretize)
from disentax.metrics.base import Metric, RepresentationFn
from disentax.metrics.sampling import sample_codes

if TYPE_CHECKING:  # only for annotations; keeps metrics free of dataset imports
  from disentax.data.base import GroundTruthDataset


def modularity_per_latent(mutual_information: jax.Array,
                          informative: jax.Array | None = None) -> jax.Array:
  """Modularity of every latent from the MI matrix [d, K]: [d].

  `informative` (bool [K], default all) marks the factors that count (K is
  their number); a latent whose largest MI is 0 scores 0, and with a single
  counted factor every latent with non-zero MI scores 1.
  """
  chex.assert_rank(mutual_information, 2)
  if informative is None:
    informative = jnp.ones(mutual_information.shape[1], bool)
  chex.assert_shape(informative, (mutual_information.shape[1],))
  squared = jnp.where(informative[None, :], jnp.square(mutual_information), 0)
  max_squared = jnp.max(squared, axis=1)
  num_factors = jnp.sum(informative)
  numerator = jnp.sum(squared, axis=1) - max_squared
  defined = (max_squared > 0) & (num_factors > 1)
  denominator = jnp.where(defined, max_squared * (num_factors - 1), 1.0)
  deviation = jnp.where(defined, numerator / denominator, 0.0)
  return jnp.where(max_squared > 0, 1.0 - deviation, 0.0)


def modularity(mutual_information: jax.Array,
               informative: jax.Array | None = None) -> jax.Array:
  """Modularity score: the mean of `modularity_per_latent` over latents."""
  return jnp.mean(modularity_per_latent(mutual_information, informative))


def roc_auc(targets: jax.Array, scores: jax.Array
            ) -> tuple[jax.Array, jax.Array]:
  """Area under the ROC curve of binary `targets` [n] ranked by `scores` [n].

  Rank-based (Mann-Whitney): tied scores get their average rank, i.e. a tied
  positive/negative pair counts 1/2, which equals sklearn's `roc_auc_score`.
  Ranks are kept doubled, as integers, so the rank sums are exact (a
  float32 rank sum gave 0.49996 for all-tied scores); the one division at
  the end makes all-tied scores exactly 0.5 and a perfect separation
  exactly 1.  Returns (auc, valid); valid is False (and auc 0.5) unless
  both classes occur, where sklearn raises.
  """
  chex.assert_rank([targets, scores], 1)
  chex.assert_equal_shape([targets, scores])
  n = scores.shape[0]
  if n * (n + 1) >= 2 ** 31:  # the doubled rank sum must fit in int32
    raise ValueError(f"roc_auc: {n} points; at most 46,340 fit int32 ranks")
  ordered = jnp.sort(scores)
  below = jnp.searchsorted(ordered, scores, side="left")
  at_or_below = jnp.searchsorted(ordered, scores, side="right")
  doubled_ranks = (below + at_or_below + 1).astype(jnp.int32)  # 2 x 1-based
  positive = targets.astype(jnp.int32)
  num_positive = jnp.sum(positive)
  num_negative = n - num_positive
  valid = (num_positive > 0) & (num_negative > 0)
  # 2 U = sum of doubled positive ranks - P (P + 1); AUC = 2 U / (2 P N).
  doubled_u = jnp.sum(doubled_ranks * positive) - num_positive * (
      num_positive + 1)
  auc = doubled_u / jnp.maximum(2 * num_positive * num_negative, 1)
  return jnp.where(valid, auc, 0.5), valid


def macro_roc_auc(labels: jax.Array, probabilities: jax.Array
                  ) -> tuple[jax.Array, jax.Array]:
  """One-vs-rest ROC-AUC averaged over the classes present in int `labels`
  [n] (classes = columns of `probabilities` [n, c]); as sklearn's
  `roc_auc_score(MultiLabelBinarizer().fit_transform(labels[:, None]), p)`.
  Returns (auc, valid): valid is False when fewer than 2 classes occur."""
  chex.assert_rank(labels, 1)
  chex.assert_rank(probabilities, 2)
  num_classes = probabilities.shape[1]
  targets = labels[:, None] == jnp.arange(num_classes)[None, :]
  aucs, valid = jax.vmap(roc_auc, in_axes=(1, 1))(targets, probabilities)
  count = jnp.sum(valid)
  auc = jnp.sum(jnp.where(valid, aucs, 0.0)) / jnp.maximum(count, 1)
  return auc, count > 0


def standardize(train: jax.Array, test: jax.Array
                ) -> tuple[jax.Array, jax.Array]:
  """Both code sets [n, d] standardised with the training mean and std
  (ddof=0); a constant latent is divided by 1."""
  mean = jnp.mean(train, axis=0)
  std = jnp.std(train, axis=0)
  std = jnp.where(std > 0, std, 1.0)
  return (train - mean) / std, (test - mean) / std


def explicitness_per_factor(train_codes: jax.Array, train_factors: jax.Array,
                            test_codes: jax.Array, test_factors: jax.Array,
                            factor_sizes: Sequence[int]
                            ) -> dict[str, jax.Array]:
  """Per-factor explicitness (macro ROC-AUC) of one member.

  Args:
    train_codes, test_codes: [n, d] codes (standardised here).
    train_factors, test_factors: int [n, F].
    factor_sizes: static sizes (each factor's number of classes).

  Returns:
    {"train", "test": [F] AUCs, "train_valid", "test_valid": bool [F]}.
  """
  return _explicitness_per_factor(train_codes, train_factors, test_codes,
                                  test_factors, _static_sizes(factor_sizes))


@functools.partial(jax.jit, static_argnums=4)
def _explicitness_per_factor(train_codes, train_factors, test_codes,
                             test_factors, factor_sizes):
  chex.assert_rank([train_codes, train_factors, test_codes, test_factors], 2)
  chex.assert_axis_dimension(train_factors, 1, len(factor_sizes))
  chex.assert_axis_dimension(test_factors, 1, len(factor_sizes))
  x_train, x_test = standardize(train_codes, test_codes)
  num_factors = len(factor_sizes)
  out = {key: [None] * num_factors
         for key in ("train", "test", "train_valid", "test_valid")}
  # Factors of equal size share one vmapped fit (one compiled solver each).
  for size in sorted(set(factor_sizes)):
    index = [k for k, s in enumerate(factor_sizes) if s == size]
    y_train = train_factors[:, np.array(index)].T  # [g, n]
    y_test = test_factors[:, np.array(index)].T
    params = jax.vmap(lambda y, size=size: logistic.fit(x_train, y, size))(
        y_train)
    for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
      proba = jax.vmap(logistic.predict_proba, in_axes=(0, None))(params, x)
      auc, valid = jax.vmap(macro_roc_auc)(y, proba)
      for position, k in enumerate(index):
        out[name][k] = auc[position]
        out[f"{name}_valid"][k] = valid[position]
  return {key: jnp.stack(values) for key, values in out.items()}


def _valid_mean(values: jax.Array, valid: jax.Array) -> jax.Array:
  """Mean of `values` where `valid`; NaN when none is."""
  count = jnp.sum(valid)
  return jnp.where(count > 0,
                   jnp.sum(jnp.where(valid, values, 0)) / jnp.maximum(count, 1),
                   jnp.nan)


def modularity_explicitness(train_codes: jax.Array, train_factors: jax.Array,
                            test_codes: jax.Array, test_factors: jax.Array,
                            factor_sizes: Sequence[int],
                            num_bins: int = 20) -> dict[str, jax.Array]:
  """Modularity and explicitness of one member (pure JAX; vmappable).

  Args:
    train_codes, test_codes: [n, d] codes of uniform points.
    train_factors, test_factors: int [n, F] their factors.
    factor_sizes: static factor sizes.
    num_bins: static number of histogram bins per latent for the MI.

  Returns:
    {"modularity", "explicitness_train", "explicitness_test"} scalars, NaN
    for non-finite codes.
  """
  return _modularity_explicitness(train_codes, train_factors, test_codes,
                                  test_factors, _static_sizes(factor_sizes),
                                  int(num_bins))


@functools.partial(jax.jit, static_argnums=(4, 5))
def _modularity_explicitness(train_codes, train_factors, test_codes,
                             test_factors, factor_sizes, num_bins):
  finite = (jnp.all(jnp.isfinite(train_codes))
            & jnp.all(jnp.isfinite(test_codes)))
  train_codes = jnp.where(jnp.isfinite(train_codes), train_codes, 0.0)
  test_codes = jnp.where(jnp.isfinite(test_codes), test_codes, 0.0)
  bins = discretize(train_codes, num_bins)
  mi = discrete_mutual_info(bins, train_factors, num_bins, factor_sizes)
  informative = discrete_entropy(train_factors, factor_sizes) > 0
  explicit = _explicitness_per_factor(train_codes, train_factors, test_codes,
                                      test_factors, factor_sizes)
  scores = {
      "modularity": modularity(mi, informative),
      "explicitness_train": _valid_mean(explicit["train"],
                                        explicit["train_valid"]),
      "explicitness_test": _valid_mean(explicit["test"],
                                       explicit["test_valid"]),
  }
  return {name: jnp.where(finite, value, jnp.nan)
          for name, value in scores.items()}


@functools.partial(jax.jit, static_argnums=(4, 5))
def _score_members(train_codes, train_factors, test_codes, test_factors,
                   factor_sizes, num_bins):
  """`modularity_explicitness` of every member: codes [M, n, d]."""
  return jax.vmap(
      lambda tr, te: _modularity_explicitness(tr, train_factors, te,
                                              test_factors, factor_sizes,
                                              num_bins))(train_codes,
                                                         test_codes)


@METRICS.register("modularity_explicitness")
@dataclasses.dataclass(frozen=True)
class ModularityExplicitness(Metric):
  """Modularity and explicitness over a ground-truth dataset, all members.

  Attributes:
    num_train: uniform points for the mutual information and the
      regressions' fit (dlib: 10000).
    num_test: other uniform points for the held-out explicitness (dlib:
      5000).
    num_bins: equal-width histogram bins per latent for the mutual
      information (dlib: 20).
    batch_size: observations per `representation_fn` call.
  """

  name = "modularity_explicitness"
  int_fields = {"num_train": 2, "num_test": 2, "num_bins": 2,
                "batch_size": 1}

  num_train: int = 10000
  num_test: int = 5000
  num_bins: int = 20
  batch_size: int = 1000

  def evaluate(self, dataset: GroundTruthDataset,
               representation_fn: RepresentationFn,
               rng: jax.Array) -> dict[str, np.ndarray]:
    """Scores every member of `representation_fn`.

    Args:
      dataset: samples factors and renders observations.
      representation_fn: observations [b, H, W, C] -> codes [members, b, d],
        always called with exactly `batch_size` observations.
      rng: PRNG key (the same points for all members).

    Returns:
      {"modularity", "explicitness_train", "explicitness_test"}: [members]
      numpy arrays.
    """
    # Training and test points in one draw and one encoding pass (they are
    # independent uniform points, so splitting equals drawing twice), so the
    # sampler and the renderer compile once per evaluation.
    factors, codes = sample_codes(
        dataset, representation_fn, rng, self.num_train + self.num_test,
        self.batch_size, "modularity_explicitness")
    split = self.num_train
    train_factors, test_factors = factors[:split], factors[split:]
    train_codes, test_codes = codes[:, :split], codes[:, split:]
    factor_sizes = tuple(int(s) for s in dataset.factor_sizes)
    scores = _score_members(train_codes, train_factors, test_codes,
                            test_factors, factor_sizes, self.num_bins)
    members = train_codes.shape[0]
    for value in scores.values():
      chex.assert_shape(value, (members,))
    return {name: np.asarray(value) for name, value in scores.items()}
