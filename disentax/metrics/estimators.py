"""What the metrics defined by scikit-learn estimators share (DCI's
gradient-boosted trees, SAP's linear SVMs): a fixed estimator seed, the
joblib `n_jobs` option, and which members and factors can be fitted at all.
Their fits run on the host, one task per (member, factor), in parallel.
"""

from __future__ import annotations

import chex
import numpy as np

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
