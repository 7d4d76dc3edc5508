"""Uncertainty of numbers over seeds: intervals, tests and sample sizes.

A failure rate of 50 seeds is an estimate; the tables and figures print it
with the interval and tests below, so two methods whose rates differ by
chance are not ranked.  Pure functions on numpy arrays (no rows, no
formatting):

  * `wilson_interval`: the Wilson score interval of a binomial proportion
    (failed / scored).  Unlike the normal ("Wald") interval it stays inside
    [0, 1] and is not empty at 0 or n failures, the common cases here.
  * `bootstrap_median_interval`: the percentile bootstrap interval of a
    median, seeded.  Percentile rather than BCa: BCa's acceleration is a
    jackknife estimate, which is inconsistent for the median, and it is
    undefined (NaN) on the tied values a handful of seeds often have.  The
    resampling is numpy's `Generator.integers` drawn exactly as
    `scipy.stats.bootstrap(method="percentile")` draws it (the tests check
    the two agree), written out so that a report's intervals are the same
    numbers whatever scipy version is installed.
  * `fisher_exact_p`, `mann_whitney_p`: two-sided p-values of two groups'
    failure counts (Fisher's exact test on the 2 x 2 table) and of their
    metric values (Mann-Whitney U), from `scipy.stats`.
  * `holm`: Holm's step-down adjustment of a family of p-values (controls
    the family-wise error rate without assuming independence).
  * `seeds_needed`: seeds per group for a two-sided test at level `alpha`
    with power `power` to tell failure rates p1 and p2 apart, by the
    arcsine (Cohen's h) normal approximation
        n = 2 ((z_{1-alpha/2} + z_{power}) / h)^2,
        h = |2 arcsin sqrt(p1) - 2 arcsin sqrt(p2)|,
    rounded up (infinite when p1 == p2).  It drops the opposite tail's
    rejection probability, which changes n by less than 1e-4 relative at
    any n a sweep uses (statsmodels' `NormalIndPower`, which keeps it, is
    the tests' oracle).  Arcsine rather than Fleiss's form because it is
    defined at rates 0 and 1.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

CONFIDENCE = 0.95            # every interval of a report
BOOTSTRAP_RESAMPLES = 9999   # scipy.stats.bootstrap's default
ALPHA, POWER = 0.05, 0.8     # what `seeds_needed` plans for


def _check_level(name: str, value: float) -> None:
  if not 0.0 < value < 1.0:
    raise ValueError(f"{name} must be in (0, 1), got {value!r}")


def wilson_interval(failures: ArrayLike, n: ArrayLike,
                    confidence: float = CONFIDENCE
                    ) -> tuple[np.ndarray, np.ndarray]:
  """(low, high) fractions: the Wilson score interval of failures / n,
  elementwise; NaN where n == 0 (nothing scored).

  With z the two-sided normal quantile and p = failures / n:
    centre = (p + z^2 / 2n) / (1 + z^2 / n),
    half = z / (1 + z^2 / n) sqrt(p (1 - p) / n + z^2 / 4n^2),
  clipped to [0, 1] (so 0/n starts at exactly 0 and n/n ends at 1).

  Raises:
    ValueError: a count outside 0 <= failures <= n, or a bad `confidence`.
  """
  _check_level("confidence", confidence)
  k = np.asarray(failures, float)
  n = np.asarray(n, float)
  if np.any(k < 0) or np.any(k > n):
    raise ValueError(f"failures must be in [0, n]; got failures={failures!r}, "
                     f"n={n!r}")
  z = stats.norm.ppf(0.5 + confidence / 2)
  with np.errstate(divide="ignore", invalid="ignore"):
    p = k / n
    scale = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / scale
    half = z / scale * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
  low = np.where(k == 0, 0.0, np.clip(centre - half, 0.0, 1.0))
  high = np.where(k == n, 1.0, np.clip(centre + half, 0.0, 1.0))
  empty = n == 0
  return np.where(empty, np.nan, low), np.where(empty, np.nan, high)


def bootstrap_median_interval(values: ArrayLike, seed: int = 0,
                              confidence: float = CONFIDENCE,
                              resamples: int = BOOTSTRAP_RESAMPLES
                              ) -> tuple[float, float] | None:
  """(low, high): the percentile bootstrap interval of the median of the
  finite `values`, from `resamples` resamples drawn by
  `np.random.default_rng(seed)`; None with fewer than 2 finite values (one
  value has no spread to resample).

  Each call starts its own generator from `seed`, so a group's interval
  does not depend on which other groups a report holds.  The quantiles are
  numpy's linear interpolation of the sorted bootstrap medians.
  """
  _check_level("confidence", confidence)
  if resamples < 1:
    raise ValueError(f"resamples must be >= 1, got {resamples}")
  x = np.asarray(values, float).ravel()
  x = x[np.isfinite(x)]
  if x.size < 2:
    return None
  rng = np.random.default_rng(seed)
  medians = np.median(x[rng.integers(0, x.size, (resamples, x.size))],
                      axis=-1)
  tail = (1.0 - confidence) / 2
  low, high = np.quantile(medians, [tail, 1.0 - tail])
  return float(low), float(high)


def fisher_exact_p(failed_a: int, scored_a: int, failed_b: int,
                   scored_b: int) -> float:
  """Two-sided p-value of Fisher's exact test that groups a and b fail at
  the same rate (2 x 2 table failed / not failed); NaN when a group scored
  nothing."""
  for failed, scored in ((failed_a, scored_a), (failed_b, scored_b)):
    if not 0 <= failed <= scored:
      raise ValueError(f"failed must be in [0, scored]; got {failed} of "
                       f"{scored}")
  if not scored_a or not scored_b:
    return math.nan
  table = [[failed_a, scored_a - failed_a], [failed_b, scored_b - failed_b]]
  return float(stats.fisher_exact(table, alternative="two-sided").pvalue)


def mann_whitney_p(a: ArrayLike, b: ArrayLike) -> float:
  """Two-sided p-value of the Mann-Whitney U test that the finite values of
  `a` and `b` come from one distribution (scipy's default method: exact
  for small untied samples, else the normal approximation with tie
  correction); NaN when a side has no finite value."""
  a = np.asarray(a, float).ravel()
  b = np.asarray(b, float).ravel()
  a, b = a[np.isfinite(a)], b[np.isfinite(b)]
  if not a.size or not b.size:
    return math.nan
  return float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)


def holm(p_values: ArrayLike) -> np.ndarray:
  """Holm-adjusted p-values, in the order given.  NaN entries (tests that
  could not be made) stay NaN and are not counted in the family.

  With the m finite p-values sorted ascending p_(1) <= ... <= p_(m):
    adjusted_(i) = min(1, max_{j <= i} (m - j + 1) p_(j)).
  """
  p = np.asarray(p_values, float)
  out = np.full(p.shape, np.nan)
  finite = np.flatnonzero(np.isfinite(p))
  if np.any((p[finite] < 0) | (p[finite] > 1)):
    raise ValueError(f"p-values must be in [0, 1]; got {p_values!r}")
  order = finite[np.argsort(p[finite], kind="stable")]
  m = order.size
  scaled = (m - np.arange(m)) * p[order]
  out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
  return out


def seeds_needed(p1: ArrayLike, p2: ArrayLike, alpha: float = ALPHA,
                 power: float = POWER) -> np.ndarray:
  """Seeds per group to tell failure rates p1 and p2 (fractions) apart in
  a two-sided test at level `alpha` with `power`: the arcsine formula of
  the module docstring, rounded up; inf where p1 == p2."""
  _check_level("alpha", alpha)
  _check_level("power", power)
  p1, p2 = np.asarray(p1, float), np.asarray(p2, float)
  for p in (p1, p2):
    if np.any((p < 0) | (p > 1)):
      raise ValueError(f"rates must be fractions in [0, 1]; got {p1!r}, "
                       f"{p2!r}")
  h = np.abs(2 * np.arcsin(np.sqrt(p1)) - 2 * np.arcsin(np.sqrt(p2)))
  z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
  with np.errstate(divide="ignore"):
    return np.ceil(2 * (z / h) ** 2)
