"""What the metrics defined by scikit-learn estimators share (DCI's
gradient-boosted trees, SAP's linear SVMs): a fixed estimator seed, the
joblib `n_jobs` option, and which members and factors can be fitted at all.
Their fits run on the host, one task per (member, factor), in parallel.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable, ClassVar

import chex
import jax
import joblib
import numpy as np

from disentax.metrics.base import Metric, RepresentationFn
from disentax.metrics.sampling import sample_codes

if TYPE_CHECKING:  # only for annotations; keeps metrics free of dataset imports
  from disentax.data.base import GroundTruthDataset

# Fixed seed of every sklearn fit: deterministic scores whatever n_jobs is.
RANDOM_STATE = 0


def check_n_jobs(metric: str, value: int) -> None:
  """Raises a ValueError unless `value` is a joblib `n_jobs` (a nonzero int:
  k workers, or -1 for all cores, -2 all but one, ...)."""
  if (not isinstance(value, (int, np.integer)) or isinstance(value, bool)
      or value == 0):
    raise ValueError(
        f"{metric}: n_jobs must be a nonzero integer (k workers, -1 = all "
        f"cores), got {value!r}")


def varied_factors(factors: np.ndarray) -> np.ndarray:
  """bool [F]: factors taking more than one value in `factors` [n, F].

  A classifier cannot be fitted to a single class (sklearn raises, so
  disentanglement_lib would crash); such a factor carries nothing to capture
  and the sklearn metrics leave it out, as MIG leaves out zero-entropy
  factors.
  """
  factors = np.asarray(factors)
  chex.assert_rank(factors, 2)
  return np.array([np.unique(column).size > 1 for column in factors.T],
                  dtype=bool)


def finite_members(*codes: np.ndarray) -> np.ndarray:
  """bool [M]: members whose codes [M, n, d] are all finite in every array."""
  finite = np.ones(codes[0].shape[0], dtype=bool)
  for array in codes:
    finite &= np.all(np.isfinite(array), axis=(1, 2))
  return finite


def fit_members_and_factors(fit: Callable[..., object],
                            codes_train: np.ndarray,
                            factors_train: np.ndarray,
                            codes_test: np.ndarray, factors_test: np.ndarray,
                            n_jobs: int
                            ) -> tuple[dict[tuple[int, int], object],
                                       np.ndarray, np.ndarray]:
  """Runs `fit(codes_train[m], factors_train[:, k], codes_test[m],
  factors_test[:, k])` for every finite member m and every factor k that
  varies in the training sample, one joblib task each.

  Args: codes [M, n, d] and the shared factors [n, F] of the train and test
  samples; n_jobs: joblib workers.

  Returns:
    ({(m, k): fit's result}, finite members bool [M], varied factors bool
    [F]); callers fill the rest (NaN for non-finite members, their own
    constant-prediction values for factors that do not vary).
  """
  codes_train, codes_test = np.asarray(codes_train), np.asarray(codes_test)
  factors_train = np.asarray(factors_train)
  factors_test = np.asarray(factors_test)
  chex.assert_rank([codes_train, codes_test, factors_train, factors_test],
                   [3, 3, 2, 2])
  members, _, num_codes = codes_train.shape
  num_factors = factors_train.shape[1]
  chex.assert_shape(codes_test, (members, None, num_codes))
  chex.assert_shape(factors_train, (codes_train.shape[1], num_factors))
  chex.assert_shape(factors_test, (codes_test.shape[1], num_factors))
  finite = finite_members(codes_train, codes_test)
  varied = varied_factors(factors_train)
  tasks = [(m, k) for m in range(members) if finite[m]
           for k in range(num_factors) if varied[k]]
  results = joblib.Parallel(n_jobs=n_jobs)(
      joblib.delayed(fit)(codes_train[m], factors_train[:, k],
                          codes_test[m], factors_test[:, k])
      for m, k in tasks)
  return dict(zip(tasks, results)), finite, varied


# (codes_train, factors_train, codes_test, factors_test, n_jobs, **options)
# -> scores
ScoreFn = Callable[..., dict[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class TrainTestMetric(Metric):
  """A metric fitted on `num_train` points and scored on `num_test` others
  (independent uniform samples, the same for every member), its estimator
  fits spread over `n_jobs` joblib workers.  Subclasses name the metric and
  give its `score_fn`, and in `score_options` the names of their own fields
  passed to it as keywords.

  Attributes:
    num_train: uniform points the estimators are fitted on (dlib: 10000).
    num_test: other uniform points they are scored on (dlib: 5000).
    batch_size: observations per `representation_fn` call.
    n_jobs: joblib workers for the fits (-1: all cores); the scores do not
      depend on it.
  """

  score_fn: ClassVar[ScoreFn]
  score_options: ClassVar[tuple[str, ...]] = ()
  int_fields = {"num_train": 2, "num_test": 1, "batch_size": 1}

  num_train: int = 10000
  num_test: int = 5000
  batch_size: int = 1000
  n_jobs: int = -1

  def check(self):
    check_n_jobs(self.name, self.n_jobs)

  def evaluate(self, dataset: GroundTruthDataset,
               representation_fn: RepresentationFn,
               rng: jax.Array) -> dict[str, np.ndarray]:
    """Scores every member; representation_fn: observations [b, H, W, C] ->
    codes [members, b, d], always called with `batch_size` observations."""
    train_rng, test_rng = jax.random.split(rng)
    factors_train, codes_train = sample_codes(
        dataset, representation_fn, train_rng, self.num_train,
        self.batch_size, self.name)
    factors_test, codes_test = sample_codes(
        dataset, representation_fn, test_rng, self.num_test, self.batch_size,
        self.name)
    chex.assert_equal_shape_prefix([codes_train, codes_test], 1)
    return type(self).score_fn(
        codes_train, factors_train, codes_test, factors_test, self.n_jobs,
        **{option: getattr(self, option) for option in self.score_options})
