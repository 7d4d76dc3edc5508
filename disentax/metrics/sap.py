"""Separated Attribute Predictability (SAP; Kumar et al., 2018), as in
disentanglement_lib's `sap_score.py`.

The score matrix S[j, k] says how well factor k is predicted from latent j
alone.  With discrete factors (`continuous_factors=False`, the
unsupervised-study setting) a linear SVM predicts factor k from latent j and
S[j, k] is its test accuracy.  With continuous factors S[j, k] is the
squared correlation of latent j and factor k on the training points (the
R^2 of a linear regression of one on the other; 0 for a latent whose
variance is not above 1e-12, as dlib's), and the test points are not used.
SAP is the mean over factors of the gap between the best and the
second-best latent of the column: high when each factor is predictable from
exactly one latent.

Scale: the runner-up latent of a perfect code still classifies at chance
(about 1/K for a factor with K values), and a linear classifier on a single
real feature separates only the extreme values of a multi-class factor, so
discrete SAP stays well below 1 even for the identity code: about 0.5 on
binary factors.  dlib's own known-answer tests (identity 0.9-1.0) use the
continuous variant (`continuous_factors=True`).

The (member, factor) groups of SVM fits run in parallel with joblib
(`n_jobs`); the correlations and the top-two gap are numpy vectorised over
members.  Fits use a fixed `random_state`, so results do not depend on
`n_jobs`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import chex
import numpy as np

from disentax.metrics import METRICS
from disentax.metrics.estimators import (RANDOM_STATE, ScoreFn,
                                         TrainTestMetric,
                                         finite_members,
                                         fit_members_and_factors,
                                         varied_factors)


def _fit_svms(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
              y_test: np.ndarray) -> np.ndarray:
  """Test accuracy [d] of one factor predicted from each latent alone (one
  member).  Runs in a joblib worker.

  dlib's classifier: `LinearSVC(C=0.01, class_weight="balanced")`, with
  `dual=True` (sklearn's default when dlib was written; the primal and dual
  solve the same problem) and a fixed `random_state` for determinism.  A
  constant latent is fitted like any other (dlib does not special-case it):
  the SVM then predicts one class everywhere, so it scores that class's
  frequency, the same for all constant latents.
  """
  from sklearn import svm  # imported when used: it adds ~2 s to every start
  accuracies = np.empty(x_train.shape[1])
  for j in range(x_train.shape[1]):
    classifier = svm.LinearSVC(C=0.01, class_weight="balanced", dual=True,
                               random_state=RANDOM_STATE)
    classifier.fit(x_train[:, j:j + 1], y_train)
    accuracies[j] = np.mean(classifier.predict(x_test[:, j:j + 1]) == y_test)
  return accuracies


def sap_score_matrix(codes_train: np.ndarray, factors_train: np.ndarray,
                     codes_test: np.ndarray, factors_test: np.ndarray,
                     n_jobs: int = -1) -> np.ndarray:
  """Score matrices [M, d, F] of every member (dlib's `_compute_score_matrix`
  for discrete factors): test accuracy of factor k predicted from latent j.

  Args:
    codes_train, codes_test: [M, n_train, d] and [M, n_test, d].
    factors_train, factors_test: int [n_train, F] and [n_test, F], shared.
    n_jobs: joblib workers for the M x F groups of d fits.

  Members with non-finite codes are not fitted: NaN.  A factor with a single
  training value cannot be fitted (sklearn raises; dlib would crash): its
  column is the accuracy of always predicting that value, equal for every
  latent (a gap of 0).
  """
  fits, finite, varied = fit_members_and_factors(
      _fit_svms, codes_train, factors_train, codes_test, factors_test, n_jobs)
  members, _, num_codes = np.shape(codes_train)
  num_factors = np.shape(factors_train)[1]
  factors_train = np.asarray(factors_train)
  factors_test = np.asarray(factors_test)
  matrix = np.zeros((members, num_codes, num_factors))
  for k in np.flatnonzero(~varied):
    matrix[:, :, k] = np.mean(factors_test[:, k] == factors_train[0, k])
  for (m, k), accuracies in fits.items():
    matrix[m, :, k] = accuracies
  matrix[~finite] = np.nan
  return matrix


# dlib's threshold on a latent's variance (ddof 1) in the continuous case.
_MIN_VARIANCE = 1e-12


def squared_correlation_matrix(codes: np.ndarray,
                               factors: np.ndarray) -> np.ndarray:
  """Score matrices [M, d, F] for continuous factors (dlib's
  `_compute_score_matrix` with `continuous_factors=True`), in float64:

    S[j, k] = cov(z_j, v_k)^2 / (var(z_j) var(v_k))

  over the points of codes [M, n, d] and factors [n, F]; 0 where
  var(z_j) <= 1e-12 (ddof 1).  A factor with a single value has no
  correlation: its column is 0 (dlib divides by 0).  Members with
  non-finite codes are NaN.
  """
  codes = np.asarray(codes, np.float64)
  factors = np.asarray(factors, np.float64)
  if codes.ndim != 3 or factors.ndim != 2 or (codes.shape[1]
                                              != factors.shape[0]):
    raise ValueError(f"sap: codes [M, n, d] and factors [n, F] of the same "
                     f"points expected, got {codes.shape}, {factors.shape}")
  finite = finite_members(codes)
  codes = np.where(finite[:, None, None], codes, 0.0)
  n = codes.shape[1]
  centred_codes = codes - codes.mean(axis=1, keepdims=True)
  centred_factors = factors - factors.mean(axis=0)
  covariance = np.einsum("mnd,nf->mdf", centred_codes,
                         centred_factors) / (n - 1)
  code_variance = np.sum(centred_codes ** 2, axis=1) / (n - 1)  # [M, d]
  factor_variance = np.sum(centred_factors ** 2, axis=0) / (n - 1)  # [F]
  denominator = code_variance[:, :, None] * factor_variance[None, None, :]
  valid = (code_variance[:, :, None] > _MIN_VARIANCE) & (
      factor_variance[None, None, :] > 0)
  matrix = np.where(valid, covariance ** 2 / np.where(valid, denominator,
                                                        1.0), 0.0)
  matrix[~finite] = np.nan
  return matrix


def top_two_gap(score_matrix: np.ndarray) -> np.ndarray:
  """Best minus second-best latent per factor: [..., d, F] -> [..., F].

  With a single latent there is no runner-up and the gap is to 0 (dlib
  would fail to index it), as MIG does.  NaN scores give NaN.
  """
  score_matrix = np.asarray(score_matrix, np.float64)
  if score_matrix.ndim < 2:
    raise ValueError(f"score_matrix must be [..., d, F], got "
                     f"{score_matrix.shape}")
  ranked = np.sort(score_matrix, axis=-2)  # ascending; NaN sorts last
  if score_matrix.shape[-2] == 1:
    return ranked[..., -1, :]
  return ranked[..., -1, :] - ranked[..., -2, :]


def sap_from_matrix(score_matrix: np.ndarray,
                    factors: np.ndarray | None = None) -> np.ndarray:
  """SAP = mean over factors of `top_two_gap`: [..., d, F] -> [...].

  `factors` (the training factors [n, F]), if given, leave the factors with a
  single value out of the mean (nothing to separate); otherwise all count,
  as in dlib's `_compute_avg_diff_top_two`.
  """
  gaps = top_two_gap(score_matrix)
  if factors is None:
    return np.mean(gaps, axis=-1)
  return np.mean(gaps[..., varied_factors(factors)], axis=-1)


def sap_scores(codes_train: np.ndarray, factors_train: np.ndarray,
               codes_test: np.ndarray, factors_test: np.ndarray,
               n_jobs: int = -1, continuous_factors: bool = False
               ) -> dict[str, np.ndarray]:
  """SAP of every member: {"sap": [M], "sap_matrix": [M, d, F]}; with
  `continuous_factors` the matrix is `squared_correlation_matrix` of the
  training points, else `sap_score_matrix`."""
  if not varied_factors(factors_train).any():
    raise ValueError("sap: every factor takes a single value in the training "
                     "sample; there is nothing to predict")
  if continuous_factors:
    matrix = squared_correlation_matrix(codes_train, factors_train)
  else:
    matrix = sap_score_matrix(codes_train, factors_train, codes_test,
                              factors_test, n_jobs)
  score = sap_from_matrix(matrix, factors_train)
  chex.assert_shape(score, (matrix.shape[0],))
  return {"sap": score, "sap_matrix": matrix}


@METRICS.register("sap")
@dataclasses.dataclass(frozen=True)
class SAP(TrainTestMetric):
  """The SAP metric over a ground-truth dataset for all members at once
  (see `TrainTestMetric` for the sample options, `sap_scores` for the
  outputs).

  Attributes (besides `TrainTestMetric`'s):
    continuous_factors: dlib's flag: False (its study setting), a linear
      SVM per (member, latent, factor), fitted on `num_train` points and
      tested on `num_test`; True, the squared correlation of each latent
      and factor over the `num_train` points.
  """

  name: ClassVar[str] = "sap"
  score_fn: ClassVar[ScoreFn] = staticmethod(sap_scores)
  score_options: ClassVar[tuple[str, ...]] = ("continuous_factors",)

  continuous_factors: bool = False

  def check(self):
    super().check()
    if not isinstance(self.continuous_factors, (bool, np.bool_)):
      raise ValueError(f"sap: continuous_factors must be True or False, got "
                       f"{self.continuous_factors!r}")
