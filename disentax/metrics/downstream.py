"""Downstream tasks, as in disentanglement_lib's `downstream_task`,
`reduced_downstream_task` and `strong_downstream_task`: how well a predictor
fitted on a representation predicts each ground-truth factor.

* `downstream_task`: for every training size in `num_train` (dlib's study
  configs: 10, 100, 1,000, 10,000) a fresh uniform training sample and a
  fresh test sample of `num_test` (5,000) points; one predictor per factor
  from all latents; train and test accuracy per factor, their mean and
  their minimum over factors.  dlib's two study configs are two registered
  names: `downstream_task` (`predictor='logistic_regression_cv'`, its
  `downstream_task_logistic_regression.gin`) and
  `downstream_task_boosted_trees` (`'gradient_boosting_classifier'`).
* `reduced_downstream_task`: per *factor of interest*, the
  `num_factors_to_remove` latents most important for it (the DCI importance
  of a gradient-boosted-trees classifier of that factor, refitted after each
  removal) are deleted from the representation; then every factor is
  predicted from what is left.  Information about the factor of interest
  that leaks into the other latents keeps its accuracy up.
* `strong_downstream_task`: generalisation under a covariate shift.  For
  every target factor and each of `n_experiment` repetitions, another factor
  (chosen at random) is fixed at one random value in the whole training
  set and takes only its other values in the test set; the predictor of the
  target factor is fitted and tested on those sets.  The generalisation gap
  is 1 - (strong test accuracy / the plain test accuracy).

Predictors (dlib's `utils.py`):

* `logistic_regression_cv`: `LogisticRegressionCV(Cs=10, cv=KFold(5))`:
  for each of 10 inverse regularisation strengths C (logspace(-4, 4)) an
  L2 logistic regression is fitted on 4 of 5 contiguous folds and scored
  on the fifth; the C with the highest summed fold accuracy (the smallest
  on ties) is refitted on all training points.  Every fit is `logistic.fit`
  (solved to the optimum, vmapped over the Cs, mapped over the folds and
  over every (member, factor) pair, one compiled program per training size
  and factor size); a fold is a sample-weight vector, so the known classes
  (binary or multinomial) are those of the whole training set, as sklearn's.
* `gradient_boosting_classifier`: sklearn's `GradientBoostingClassifier()`
  per (member, factor), fitted in parallel with joblib (`n_jobs`), as DCI's
  (`dci.importance_gbt`).

Edge cases, as the other sklearn metrics (dlib would crash): a factor with a
single value in a training sample is not fitted (accuracy of predicting that
value) and is left out of means and minima; members with non-finite codes
score NaN.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, ClassVar, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from disentax.metrics import METRICS
from disentax.metrics import logistic
from disentax.metrics.base import Metric, RepresentationFn, check_int
from disentax.metrics.dci import importance_gbt
from disentax.metrics.estimators import (check_n_jobs, finite_members,
                                         varied_factors)
from disentax.metrics.sampling import encode_factors, sample_codes

if TYPE_CHECKING:  # only for annotations; keeps metrics free of dataset imports
  from disentax.data.base import GroundTruthDataset

LOGISTIC = "logistic_regression_cv"
BOOSTED_TREES = "gradient_boosting_classifier"
PREDICTORS = (LOGISTIC, BOOSTED_TREES)
# LogisticRegressionCV(Cs=10, cv=KFold(n_splits=5)): sklearn's C grid for
# Cs=10, and unshuffled contiguous folds.
CS = np.logspace(-4, 4, 10)
NUM_FOLDS = 5
# The smallest training sample each predictor can be fitted on.
MIN_TRAIN = {LOGISTIC: NUM_FOLDS, BOOSTED_TREES: 2}


def kfold_assignment(num_points: int, folds: int = NUM_FOLDS) -> np.ndarray:
  """int [n]: each point's fold under sklearn's unshuffled `KFold(folds)`:
  contiguous chunks, the first n % folds of them one point larger."""
  sizes = np.full(folds, num_points // folds)
  sizes[:num_points % folds] += 1
  return np.repeat(np.arange(folds), sizes)


@functools.partial(jax.jit, static_argnames="num_classes")
def _cv_counts(x_train: jax.Array, y_train: jax.Array, x_test: jax.Array,
               y_test: jax.Array, weights: jax.Array, cs: jax.Array,
               num_classes: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Correct predictions of every fit of P (member, factor) pairs.

  Args:
    x_train, x_test: [P, n, d] and [P, m, d] codes.
    y_train, y_test: int [P, n] and [P, m] labels in [0, num_classes).
    weights: [W, n] sample weights of the fits (a fold's: 0 on the fold).
    cs: [C] inverse regularisation strengths.

  Returns:
    int [P, W, C] counts: correct predictions on the points of weight 0
    (a fold fit's held-out fold), on all training points, on the test set.
  """

  def pair(arrays):
    x, y, xt, yt = arrays

    def with_weights(w):
      def with_c(c):
        params = logistic.fit(x, y, num_classes, C=c, sample_weight=w)
        correct = logistic.predict(params, x) == y
        return (jnp.sum(correct & (w == 0)), jnp.sum(correct),
                jnp.sum(logistic.predict(params, xt) == yt))
      return jax.vmap(with_c)(cs)

    # Mapped, not vmapped: 10 fits at a time bound the memory of the
    # [n, classes x d] Hessian terms.
    return jax.lax.map(with_weights, weights)

  return jax.lax.map(pair, (x_train, y_train, x_test, y_test))


def logistic_cv_fits(codes_train: np.ndarray, factors_train: np.ndarray,
                     codes_test: np.ndarray, factors_test: np.ndarray,
                     factor_sizes: Sequence[int]
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """`LogisticRegressionCV(Cs=10, cv=KFold(5))` per (member, factor).

  Args:
    codes_train, codes_test: [M, n, d] and [M, m, d].
    factors_train, factors_test: int [n, F] and [m, F], shared.
    factor_sizes: [F], each factor's number of classes.

  Returns:
    train accuracy, test accuracy and the chosen C, each [M, F].  A factor
    with a single training value is not fitted (train accuracy 1, test
    accuracy that value's frequency, C NaN); non-finite members are NaN.
  """
  codes_train, codes_test = np.asarray(codes_train), np.asarray(codes_test)
  factors_train = np.asarray(factors_train)
  factors_test = np.asarray(factors_test)
  members, n, _ = codes_train.shape
  num_factors = factors_train.shape[1]
  finite = finite_members(codes_train, codes_test)
  varied = varied_factors(factors_train)
  if n < NUM_FOLDS:
    raise ValueError(f"{LOGISTIC}: {NUM_FOLDS}-fold cross-validation needs "
                     f"at least {NUM_FOLDS} training points, got {n}")
  x_train = np.where(np.isfinite(codes_train), codes_train, 0.0)
  x_test = np.where(np.isfinite(codes_test), codes_test, 0.0)
  fold = kfold_assignment(n)
  weights = np.stack([fold != f for f in range(NUM_FOLDS)]
                     + [np.ones(n, bool)]).astype(np.float32)
  fold_sizes = np.bincount(fold, minlength=NUM_FOLDS).astype(np.float64)
  train = np.ones((members, num_factors))
  test = np.broadcast_to(np.mean(factors_test == factors_train[:1], axis=0),
                         (members, num_factors)).copy()
  chosen = np.full((members, num_factors), np.nan)
  sizes = [int(s) for s in factor_sizes]
  for size in sorted({sizes[k] for k in np.flatnonzero(varied)}):
    group = [k for k in np.flatnonzero(varied) if sizes[k] == size]
    repeat = len(group)
    held_out, on_train, on_test = _cv_counts(
        np.repeat(x_train, repeat, axis=0), np.tile(factors_train[:, group].T,
                                                     (members, 1)),
        np.repeat(x_test, repeat, axis=0), np.tile(factors_test[:, group].T,
                                                   (members, 1)),
        weights, jnp.asarray(CS, jnp.float32), num_classes=size)
    held_out, on_train, on_test = (np.asarray(a) for a in (held_out, on_train,
                                                           on_test))
    # sklearn: per-fold accuracies summed over folds, the first best C.
    fold_accuracy = held_out[:, :NUM_FOLDS] / fold_sizes[None, :, None]
    best = np.argmax(fold_accuracy.sum(axis=1), axis=-1)  # [P]
    pairs = np.arange(best.shape[0])
    full = NUM_FOLDS  # the last weight vector: every training point
    train[:, group] = (on_train[pairs, full, best] / n).reshape(members,
                                                                repeat)
    test[:, group] = (on_test[pairs, full, best] / factors_test.shape[0]
                      ).reshape(members, repeat)
    chosen[:, group] = CS[best].reshape(members, repeat)
  for array in (train, test, chosen):
    array[~finite] = np.nan
  return train, test, chosen


def predictor_accuracies(predictor: str, codes_train: np.ndarray,
                         factors_train: np.ndarray, codes_test: np.ndarray,
                         factors_test: np.ndarray,
                         factor_sizes: Sequence[int], n_jobs: int = -1
                         ) -> tuple[np.ndarray, np.ndarray]:
  """Train and test accuracy [M, F] of `predictor` (one of PREDICTORS)
  fitted per (member, factor) on codes [M, n, d] and factors [n, F]."""
  if predictor == LOGISTIC:
    return logistic_cv_fits(codes_train, factors_train, codes_test,
                            factors_test, factor_sizes)[:2]
  if predictor == BOOSTED_TREES:
    return importance_gbt(codes_train, factors_train, codes_test,
                          factors_test, n_jobs)[1:]
  raise ValueError(f"predictor={predictor!r}; allowed: {PREDICTORS}")


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Mean over the trailing axes of `values` [M, ...] where `mask` [...];
  NaN where nothing is selected."""
  mask = np.broadcast_to(mask, values.shape[1:])
  count = mask.sum()
  if not count:
    return np.full(values.shape[0], np.nan)
  return np.sum(np.where(mask, values, 0.0).reshape(values.shape[0], -1),
                axis=1) / count


def intervene(factors_train: np.ndarray, factors_test: np.ndarray,
              target: int, factor_sizes: Sequence[int], rng: jax.Array
              ) -> tuple[np.ndarray, np.ndarray, int, int]:
  """dlib's `strong_downstream_task.intervene`: another factor than
  `target`, drawn uniformly, is set to one value (drawn uniformly) in every
  training tuple and to one of its other values (drawn uniformly per tuple)
  in every test tuple.  Factors with a single value cannot be intervened on
  (dlib's draw would fail) and are never chosen.

  Returns:
    (training factors, test factors, the intervened factor, its training
    value); the inputs are not modified.
  """
  candidates = [j for j, size in enumerate(factor_sizes)
                if j != target and size > 1]
  if not candidates:
    raise ValueError(
        f"strong_downstream_task: no factor besides factor {target} takes "
        f"more than one value (factor sizes {tuple(factor_sizes)}); there "
        "is nothing to intervene on")
  factor_rng, value_rng, test_rng = jax.random.split(rng, 3)
  factor = candidates[int(jax.random.randint(factor_rng, (), 0,
                                             len(candidates)))]
  size = int(factor_sizes[factor])
  value = int(jax.random.randint(value_rng, (), 0, size))
  others = np.asarray(jax.random.randint(test_rng, (len(factors_test),), 0,
                                         size - 1))
  train, test = np.array(factors_train), np.array(factors_test)
  train[:, factor] = value
  test[:, factor] = others + (others >= value)  # every value but `value`
  return train, test, factor, value


@dataclasses.dataclass(frozen=True)
class _Downstream(Metric):
  """What the downstream tasks share: a fresh training sample of each size
  in `num_train` and a fresh test sample of `num_test` points (dlib draws
  both per size), and the predictor.

  Attributes:
    num_train: the training sample sizes (a sequence of ints).
    num_test: test points per training size.
    predictor: one of PREDICTORS.
    batch_size: observations per `representation_fn` call.
    n_jobs: joblib workers for the gradient-boosted trees (-1: all cores);
      the scores do not depend on it.
  """

  int_fields = {"num_test": 1, "batch_size": 1}

  num_train: Sequence[int] = (10, 100, 1000, 10000)
  num_test: int = 5000
  predictor: str = LOGISTIC
  batch_size: int = 1000
  n_jobs: int = -1

  def check(self):
    if self.predictor not in PREDICTORS:
      raise ValueError(f"{self.name}: predictor={self.predictor!r}; "
                       f"allowed: {PREDICTORS}")
    sizes = self.num_train
    if isinstance(sizes, (str, bytes)) or not isinstance(
        sizes, Sequence) or not sizes:
      raise ValueError(f"{self.name}: num_train must be a non-empty "
                       f"sequence of training sizes, got {sizes!r}")
    for size in sizes:
      check_int(self.name, "num_train", size, MIN_TRAIN[self.predictor])
    if len(set(sizes)) != len(sizes):
      raise ValueError(f"{self.name}: num_train={tuple(sizes)} repeats a "
                       "size")
    # A config's list (JSON) becomes the tuple the dataclass compares by.
    object.__setattr__(self, "num_train", tuple(int(s) for s in sizes))
    check_n_jobs(self.name, self.n_jobs)

  def samples(self, dataset: GroundTruthDataset,
              representation_fn: RepresentationFn, rng: jax.Array
              ) -> Iterator[tuple[int, jax.Array, np.ndarray, np.ndarray,
                                  np.ndarray, np.ndarray]]:
    """For every training size: (size, a key of its own, training factors
    [n, F], codes [M, n, d], test factors [m, F], codes [M, m, d])."""
    for size, key in zip(self.num_train,
                         jax.random.split(rng, len(self.num_train))):
      train_rng, test_rng, own_rng = jax.random.split(key, 3)
      factors_train, codes_train = sample_codes(
          dataset, representation_fn, train_rng, size, self.batch_size,
          self.name)
      factors_test, codes_test = sample_codes(
          dataset, representation_fn, test_rng, self.num_test,
          self.batch_size, self.name)
      if not varied_factors(factors_train).any():
        raise ValueError(
            f"{self.name}: every factor takes a single value in the "
            f"training sample of {size} points; there is nothing to predict")
      yield (size, own_rng, factors_train, codes_train, factors_test,
             codes_test)

  def evaluate(self, dataset: GroundTruthDataset,
               representation_fn: RepresentationFn,
               rng: jax.Array) -> dict[str, np.ndarray]:
    """Scores every member: `score_sample` of each training size."""
    scores = {}
    for sample in self.samples(dataset, representation_fn, rng):
      scores.update(self.score_sample(dataset, representation_fn, *sample))
    return scores

  def score_sample(self, dataset: GroundTruthDataset,
                   representation_fn: RepresentationFn, size: int,
                   rng: jax.Array, factors_train: np.ndarray,
                   codes_train: np.ndarray, factors_test: np.ndarray,
                   codes_test: np.ndarray) -> dict[str, np.ndarray]:
    """The scores of one training size (one item of `samples`)."""
    raise NotImplementedError(f"{type(self).__name__}.score_sample")

  def accuracies(self, dataset: GroundTruthDataset, *arrays: np.ndarray,
                 factors: Sequence[int] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """`predictor_accuracies` of (codes_train, factors_train, codes_test,
    factors_test), with the options' predictor; `factors` picks columns."""
    codes_train, factors_train, codes_test, factors_test = arrays
    sizes = np.asarray(dataset.factor_sizes)
    if factors is not None:
      factors_train = factors_train[:, factors]
      factors_test = factors_test[:, factors]
      sizes = sizes[factors]
    return predictor_accuracies(self.predictor, codes_train, factors_train,
                                codes_test, factors_test, sizes, self.n_jobs)


@METRICS.register("downstream_task")
@dataclasses.dataclass(frozen=True)
class DownstreamTask(_Downstream):
  """dlib's downstream task for all members at once: a predictor per
  (member, factor) for every training size (see `_Downstream` for the
  options; defaults: dlib's `downstream_task_logistic_regression.gin`).

  Scores, for each training size N and the predictor's prefix P
  (`downstream_logistic`, `downstream_gbt`), dlib's `N:mean_test_accuracy`
  etc. as `P_N_test_accuracy`, `P_N_train_accuracy` (means over factors),
  `P_N_min_test_accuracy`, `P_N_min_train_accuracy` [M], and
  `P_N_test_accuracy_per_factor`, `P_N_train_accuracy_per_factor` [M, F].
  """

  name: ClassVar[str] = "downstream_task"
  prefixes: ClassVar[dict[str, str]] = {LOGISTIC: "downstream_logistic",
                                        BOOSTED_TREES: "downstream_gbt"}

  def score_sample(self, dataset, representation_fn, size, rng,
                   factors_train, codes_train, factors_test, codes_test):
    del representation_fn, rng  # the codes are all it needs
    prefix = f"{self.prefixes[self.predictor]}_{size}"
    varied = varied_factors(factors_train)
    train, test = self.accuracies(dataset, codes_train, factors_train,
                                  codes_test, factors_test)
    scores = {}
    for split, accuracy in (("train", train), ("test", test)):
      scores[f"{prefix}_{split}_accuracy"] = np.mean(accuracy[:, varied],
                                                     axis=1)
      scores[f"{prefix}_min_{split}_accuracy"] = np.min(accuracy[:, varied],
                                                        axis=1)
      scores[f"{prefix}_{split}_accuracy_per_factor"] = accuracy
    return scores


@METRICS.register("downstream_task_boosted_trees")
@dataclasses.dataclass(frozen=True)
class DownstreamTaskBoostedTrees(DownstreamTask):
  """`downstream_task` with dlib's `downstream_task_boosted_trees.gin`
  predictor, a gradient-boosted-trees classifier per (member, factor)."""

  name: ClassVar[str] = "downstream_task_boosted_trees"

  predictor: str = BOOSTED_TREES


@METRICS.register("reduced_downstream_task")
@dataclasses.dataclass(frozen=True)
class ReducedDownstreamTask(_Downstream):
  """dlib's reduced downstream task for all members at once (defaults:
  dlib's only shipped configuration, its test's: 100 training and 100 test
  points, one latent removed, gradient-boosted trees).

  Attributes (besides `_Downstream`'s):
    num_factors_to_remove: latents deleted per factor of interest, one at a
      time, each the most important for that factor (argmax of its DCI
      importance column; the first on ties) in what is left.

  Scores, for each training size N: `reduced_downstream_N_test_accuracy`
  and `..._train_accuracy` [M, F, F] (factor of interest i, predicted
  factor k; dlib's `N:test_accuracy_k_factor_of_interest_i`), and two
  summaries [M] over the factors that vary:
  `reduced_downstream_N_factor_of_interest_test_accuracy` (k = i: what
  the remaining latents still know of the removed factor) and
  `reduced_downstream_N_other_factors_test_accuracy` (k != i).
  """

  name: ClassVar[str] = "reduced_downstream_task"
  int_fields = {**_Downstream.int_fields, "num_factors_to_remove": 1}

  num_train: Sequence[int] = (100,)
  num_test: int = 100
  predictor: str = BOOSTED_TREES
  num_factors_to_remove: int = 1

  def score_sample(self, dataset, representation_fn, size, rng,
                   factors_train, codes_train, factors_test, codes_test):
    del representation_fn, rng  # the codes are all it needs
    members, _, num_codes = codes_train.shape
    if self.num_factors_to_remove >= num_codes:
      raise ValueError(
          f"{self.name}: num_factors_to_remove="
          f"{self.num_factors_to_remove} must be below the number of "
          f"latents ({num_codes})")
    num_factors = factors_train.shape[1]
    train = np.empty((members, num_factors, num_factors))
    test = np.empty_like(train)
    for interest in range(num_factors):
      kept = np.tile(np.arange(num_codes), (members, 1))
      for _ in range(self.num_factors_to_remove):
        importance = importance_gbt(
            _columns(codes_train, kept), factors_train[:, [interest]],
            _columns(codes_test, kept), factors_test[:, [interest]],
            self.n_jobs)[0][:, :, 0]
        drop = np.argmax(importance, axis=1)
        kept = np.stack([np.delete(row, i) for row, i in zip(kept, drop)])
      train[:, interest], test[:, interest] = self.accuracies(
          dataset, _columns(codes_train, kept), factors_train,
          _columns(codes_test, kept), factors_test)
    varied = varied_factors(factors_train)
    both = varied[:, None] & varied[None, :]
    same = np.eye(num_factors, dtype=bool)
    prefix = f"reduced_downstream_{size}"
    return {
        f"{prefix}_factor_of_interest_test_accuracy": _masked_mean(
            test, both & same),
        f"{prefix}_other_factors_test_accuracy": _masked_mean(
            test, both & ~same),
        f"{prefix}_train_accuracy": train,
        f"{prefix}_test_accuracy": test,
    }


def _columns(codes: np.ndarray, kept: np.ndarray) -> np.ndarray:
  """codes [M, n, d] restricted to each member's latents kept [M, d']."""
  return np.take_along_axis(codes, kept[:, None, :], axis=2)


@METRICS.register("strong_downstream_task")
@dataclasses.dataclass(frozen=True)
class StrongDownstreamTask(_Downstream):
  """dlib's strong (out-of-distribution) downstream task for all members at
  once (defaults: dlib's only shipped configuration, its test's: 1,000
  training and 1,000 test points, 2 repetitions, gradient-boosted trees).

  Attributes (besides `_Downstream`'s):
    n_experiment: interventions per target factor.

  Scores, for each training size N, with prefix `strong_downstream_N`:
  `_train_accuracy`, `_test_accuracy` (means over the varied factors,
  without intervention), `_strong_train_accuracy`, `_strong_test_accuracy`
  (means over every target factor and repetition),
  `_strong_generalization_gap` = 1 - strong test / test [M]; and
  `_strong_test_accuracy_per_factor` [M, F, n_experiment].  The
  interventions are drawn from the metric's rng (dlib: numpy's unseeded
  global generator), the same for all members.
  """

  name: ClassVar[str] = "strong_downstream_task"
  int_fields = {**_Downstream.int_fields, "n_experiment": 1}

  num_train: Sequence[int] = (1000,)
  num_test: int = 1000
  predictor: str = BOOSTED_TREES
  n_experiment: int = 2

  def score_sample(self, dataset, representation_fn, size, rng,
                   factors_train, codes_train, factors_test, codes_test):
    sizes = [int(s) for s in dataset.factor_sizes]
    varied = varied_factors(factors_train)
    train, test = self.accuracies(dataset, codes_train, factors_train,
                                  codes_test, factors_test)
    members, num_factors = train.shape
    strong = np.full((2, members, num_factors, self.n_experiment), np.nan)
    for target in np.flatnonzero(varied):
      for repeat in range(self.n_experiment):
        key = jax.random.fold_in(jax.random.fold_in(rng, target), repeat)
        shifted_train, shifted_test, _, _ = intervene(
            factors_train, factors_test, int(target), sizes, key)
        fitted = self.accuracies(
            dataset,
            encode_factors(dataset, representation_fn, shifted_train,
                           self.batch_size, self.name), shifted_train,
            encode_factors(dataset, representation_fn, shifted_test,
                           self.batch_size, self.name), shifted_test,
            factors=[int(target)])
        for i, accuracy in enumerate(fitted):
          strong[i, :, target, repeat] = accuracy[:, 0]
    prefix = f"strong_downstream_{size}"
    plain_test = np.mean(test[:, varied], axis=1)
    strong_test = np.mean(strong[1][:, varied], axis=(1, 2))
    return {
        f"{prefix}_train_accuracy": np.mean(train[:, varied], axis=1),
        f"{prefix}_test_accuracy": plain_test,
        f"{prefix}_strong_train_accuracy": np.mean(strong[0][:, varied],
                                                   axis=(1, 2)),
        f"{prefix}_strong_test_accuracy": strong_test,
        f"{prefix}_strong_generalization_gap": 1.0 - strong_test / plain_test,
        f"{prefix}_strong_test_accuracy_per_factor": strong[1],
    }
