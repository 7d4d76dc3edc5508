"""Disentanglement, Completeness and Informativeness (DCI; Eastwood &
Williams, 2018), as in disentanglement_lib's `dci.py`.

One gradient-boosted-trees classifier per factor predicts the factor from
all latents; its absolute feature importances form the importance matrix
R [d, F] (latent i, factor k).  From R:

* disentanglement = sum_i rho_i (1 - H_F(P_i.)): each latent should matter
  for one factor only (entropy of its normalised row, base F), weighted by
  its share of the total importance rho_i = sum_k R_ik / sum R;
* completeness = sum_k rho_k (1 - H_d(P_.k)): each factor should be
  captured by one latent only (entropy of its normalised column, base d),
  weighted by the factor's share of the importance;
* informativeness = mean over factors of the classifiers' accuracy (train
  and test).

Parallelism: the (member, factor) classifier fits run in parallel with
joblib (`n_jobs`, default all cores); the entropy arithmetic on R is numpy
vectorised over members.  Fits use a fixed `random_state`, so results do not
depend on `n_jobs`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import chex
import numpy as np

from disentax.metrics import METRICS
from disentax.metrics.estimators import (RANDOM_STATE, ScoreFn,
                                         TrainTestMetric,
                                         fit_members_and_factors,
                                         varied_factors)

# dlib adds this to every importance before taking entropies, so all-zero
# rows/columns become uniform (entropy 1, score 0) instead of 0/0.
_EPSILON = 1e-11
def _one_minus_entropy(importance: np.ndarray, axis: int) -> np.ndarray:
  """1 - H(P) of `importance` normalised along `axis`, in base = that axis's
  length, so the result lies in [0, 1].

  dlib's `1 - scipy.stats.entropy(R + 1e-11, base=n)`.  An axis of length 1
  has nothing to be spread over: its score is 1 (dlib divides by log 1 = 0
  and gets NaN).
  """
  size = importance.shape[axis]
  shape = list(importance.shape)
  del shape[axis]
  if size == 1:
    return np.where(np.isnan(importance).any(axis), np.nan, np.ones(shape))
  p = importance + _EPSILON
  p = p / np.sum(p, axis=axis, keepdims=True)
  entropy = -np.sum(p * np.log(p), axis=axis) / np.log(size)
  return 1.0 - entropy


def _importance_weights(importance: np.ndarray, axis: int) -> np.ndarray:
  """Share of the total importance of every latent (axis=-1: summing over
  factors) or factor (axis=-2).  A matrix without importance (e.g. constant
  codes) weighs every row/column equally, as dlib does."""
  total = np.sum(importance, axis=(-2, -1), keepdims=True)
  source = np.where(total == 0, 1.0, importance)
  return np.sum(source, axis=axis) / np.sum(source, axis=(-2, -1))[..., None]


def disentanglement_per_code(importance: np.ndarray) -> np.ndarray:
  """1 - H_F(P_i.) of every latent: importance [..., d, F] -> [..., d]."""
  importance = np.asarray(importance, np.float64)
  return _one_minus_entropy(importance, axis=-1)


def completeness_per_factor(importance: np.ndarray) -> np.ndarray:
  """1 - H_d(P_.k) of every factor: importance [..., d, F] -> [..., F]."""
  importance = np.asarray(importance, np.float64)
  return _one_minus_entropy(importance, axis=-2)


def disentanglement(importance: np.ndarray) -> np.ndarray:
  """DCI disentanglement of importance matrices [..., d, F] -> [...].

  sum_i rho_i (1 - H_F(P_i.)): 1 when every latent is important for a single
  factor; latents without importance get weight 0; NaN importance gives NaN.
  """
  importance = np.asarray(importance, np.float64)
  if importance.ndim < 2:
    raise ValueError(f"importance must be [..., d, F], got {importance.shape}")
  per_code = disentanglement_per_code(importance)
  return np.sum(per_code * _importance_weights(importance, axis=-1), axis=-1)


def completeness(importance: np.ndarray) -> np.ndarray:
  """DCI completeness of importance matrices [..., d, F] -> [...].

  sum_k rho_k (1 - H_d(P_.k)): 1 when every factor is captured by a single
  latent; a factor split evenly over two of d latents scores 1 - ln2/ln d.
  """
  importance = np.asarray(importance, np.float64)
  if importance.ndim < 2:
    raise ValueError(f"importance must be [..., d, F], got {importance.shape}")
  per_factor = completeness_per_factor(importance)
  return np.sum(per_factor * _importance_weights(importance, axis=-2),
                axis=-1)


def _fit_gbt(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
             y_test: np.ndarray) -> tuple[np.ndarray, float, float]:
  """One factor's classifier on one member's codes: (|importances| [d],
  train accuracy, test accuracy).  Runs in a joblib worker."""
  # Imported when used: sklearn adds ~2 s to every start of the package.
  from sklearn.ensemble import GradientBoostingClassifier
  model = GradientBoostingClassifier(random_state=RANDOM_STATE)
  model.fit(x_train, y_train)
  return (np.abs(model.feature_importances_),
          float(np.mean(model.predict(x_train) == y_train)),
          float(np.mean(model.predict(x_test) == y_test)))


def importance_gbt(codes_train: np.ndarray, factors_train: np.ndarray,
                   codes_test: np.ndarray, factors_test: np.ndarray,
                   n_jobs: int = -1
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Importance matrices and accuracies of every member (dlib's
  `compute_importance_gbt`, one `GradientBoostingClassifier()` per factor).

  Args:
    codes_train, codes_test: [M, n_train, d] and [M, n_test, d].
    factors_train, factors_test: int [n_train, F] and [n_test, F], shared by
      all members.
    n_jobs: joblib workers for the M x F fits.

  Returns:
    importance [M, d, F], train accuracy [M, F], test accuracy [M, F].
    Members with non-finite codes are not fitted and get NaN; a factor with a
    single training value is not fitted either: importance 0 (nothing is
    needed to predict it) and the accuracy of always predicting that value.
  """
  fits, finite, varied = fit_members_and_factors(
      _fit_gbt, codes_train, factors_train, codes_test, factors_test, n_jobs)
  members, _, num_codes = np.shape(codes_train)
  num_factors = np.shape(factors_train)[1]
  factors_train = np.asarray(factors_train)
  factors_test = np.asarray(factors_test)
  importance = np.zeros((members, num_codes, num_factors))
  train_acc = np.zeros((members, num_factors))
  test_acc = np.zeros((members, num_factors))
  for k in np.flatnonzero(~varied):  # the constant prediction's accuracy
    train_acc[:, k] = 1.0
    test_acc[:, k] = np.mean(factors_test[:, k] == factors_train[0, k])
  for (m, k), (importances, train, test) in fits.items():
    importance[m, :, k] = importances
    train_acc[m, k] = train
    test_acc[m, k] = test
  importance[~finite] = np.nan
  train_acc[~finite] = np.nan
  test_acc[~finite] = np.nan
  return importance, train_acc, test_acc


def dci_scores(codes_train: np.ndarray, factors_train: np.ndarray,
               codes_test: np.ndarray, factors_test: np.ndarray,
               n_jobs: int = -1) -> dict[str, np.ndarray]:
  """DCI of every member from its codes [M, n, d] and the shared factors.

  Factors with a single training value are left out of the scores (their
  importance column is 0; dlib would crash): disentanglement and
  completeness use the importance of the varied factors only (so the entropy
  base is their number, as for dlib's dSprites, which omits the size-1
  colour factor), and informativeness averages over them.

  Returns:
    {"dci_disentanglement", "dci_completeness", "dci_informativeness_train",
     "dci_informativeness_test": [M], "dci_importance": [M, d, F]}; NaN for
    members with non-finite codes.
  """
  factors_train = np.asarray(factors_train)
  varied = varied_factors(factors_train)
  if not varied.any():
    raise ValueError("dci: every factor takes a single value in the training "
                     "sample; there is nothing to predict")
  importance, train_acc, test_acc = importance_gbt(
      codes_train, factors_train, codes_test, factors_test, n_jobs)
  members = importance.shape[0]
  scores = {
      "dci_disentanglement": disentanglement(importance[..., varied]),
      "dci_completeness": completeness(importance[..., varied]),
      "dci_informativeness_train": np.mean(train_acc[:, varied], axis=1),
      "dci_informativeness_test": np.mean(test_acc[:, varied], axis=1),
      "dci_importance": importance,
  }
  for name, value in scores.items():
    if name != "dci_importance":
      chex.assert_shape(value, (members,))
  return scores


@METRICS.register("dci")
@dataclasses.dataclass(frozen=True)
class DCI(TrainTestMetric):
  """The DCI metric over a ground-truth dataset for all members at once:
  one gradient-boosted-trees classifier per (member, factor), fitted on
  `num_train` points and tested on `num_test` (see `TrainTestMetric` for the
  options, `dci_scores` for the outputs)."""

  name: ClassVar[str] = "dci"
  score_fn: ClassVar[ScoreFn] = staticmethod(dci_scores)
