"""Information freezing points (IFP) and DEFT stage plans: pure numpy analysis.

DEFT (Wu et al., Machine Learning 2022, sections 4.1, 5.2, 5.5, Table 2)
trains in G stages with a piecewise pressure beta_1 > ... > beta_G = 1; stage
j only learns the factors whose information freezing point lies above
beta_j.  The IFP of a factor is found by an *annealing test*: a beta-VAE
trained while beta is annealed from a high value down to 1; the IFP is the
largest beta at which KL(q(z|x) || p(z)) (an upper bound of I(x; z)) exceeds
0.1.  Repeating the test on sub-datasets that vary one factor only (others
fixed at random), 50 times, gives a per-factor IFP distribution, and the
paper picks the stage betas by hand so that they separate these
distributions (dSprites: 70, 30, 12, 1).  The authors list "an automatic way
to adjust the best separation of IFP distribution" as missing; this module
provides it.  No training happens here: the traces (beta, KL) come from an
annealing-test run and this module only analyses them.

  * `information_freezing_point` / `freezing_points`: the IFP of one trace /
    of many traces at once, refined by linear interpolation.
  * `increment_change_points`: the unsupervised variant (paper section 5.5,
    Fig. 13): the betas where the information increment dKL/d(-beta) jumps.
  * `propose_stages`: groups factors by separable IFP distributions and
    chooses the stage betas between the groups -> `StagePlan`, with
    `StagePlan.to_config_overrides()` for a DEFT config.
  * `format_plan` / `compare_with`: Markdown summaries, the latter against
    hand-picked betas such as the paper's 70/30/12/1.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from disentax.cli import UsageError

DEFAULT_THRESHOLD = 0.1  # the paper's "I(x; z) is over 0.1"
# Fewest distinct betas on each side of a candidate for a line fit.
_MIN_FIT_POINTS = 3


# --------------------------------------------------------------------------
# Validation helpers.

def _check_threshold(threshold: float) -> float:
  if isinstance(threshold, bool) or not np.isscalar(threshold) or not (
      math.isfinite(float(threshold))):
    raise ValueError(f"threshold={threshold!r} not allowed; must be a finite "
                     "number")
  return float(threshold)


def _check_persistence(persistence: int) -> int:
  if (isinstance(persistence, bool)
      or not isinstance(persistence, (int, np.integer)) or persistence < 1):
    raise ValueError(f"persistence={persistence!r} not allowed; must be an "
                     "integer >= 1")
  return int(persistence)


def _check_betas(betas: np.ndarray, name: str = "betas") -> None:
  """Finite and non-increasing along axis 0 (time order of an anneal)."""
  if not np.all(np.isfinite(betas)):
    bad = betas[~np.isfinite(betas)].ravel()[:3].tolist()
    raise ValueError(f"{name} contains non-finite values {bad}; all betas "
                     "must be finite")
  if betas.shape[0] > 1:
    steps = np.diff(betas, axis=0)
    if np.any(steps > 0):
      t = int(np.argwhere(steps > 0)[0][0])
      raise ValueError(
          f"{name} increases at time index {t + 1} "
          f"({betas[t].ravel()[:1].tolist()} -> "
          f"{betas[t + 1].ravel()[:1].tolist()}); an annealing trace must "
          "have non-increasing betas in time order")


def _check_kls(kls: np.ndarray) -> None:
  if not np.all(np.isfinite(kls)):
    bad = kls[~np.isfinite(kls)].ravel()[:3].tolist()
    raise ValueError(f"kls contains non-finite values {bad}; all KL values "
                     "must be finite")


def _trace_1d(betas: ArrayLike, kls: ArrayLike) -> tuple[np.ndarray,
                                                         np.ndarray]:
  b = np.asarray(betas, dtype=np.float64)
  k = np.asarray(kls, dtype=np.float64)
  if b.ndim != 1 or k.ndim != 1 or b.shape != k.shape or b.size == 0:
    raise ValueError(f"betas shape {b.shape} and kls shape {k.shape} not "
                     "allowed; both must be 1-D of the same non-zero length "
                     "(one point per chunk of steps, in time order)")
  _check_betas(b)
  _check_kls(k)
  return b, k


# --------------------------------------------------------------------------
# 1. Information freezing point of annealing traces.

def information_freezing_point(betas: ArrayLike, kls: ArrayLike,
                               threshold: float = DEFAULT_THRESHOLD, *,
                               persistence: int = 1) -> float:
  """The IFP of one annealing trace: the beta at which KL first exceeds
  `threshold`.

  What: `betas` and `kls` are 1-D, in time order (beta non-increasing, one
  KL value per chunk of steps).  The IFP is the beta of the *first crossing
  in time order*: the first trace point i with kls[i] > threshold (when
  `persistence` > 1: the first i from which KL stays above the threshold
  for `persistence` consecutive points, or until the trace ends).  Since
  beta only decreases, this is the largest beta at which information starts
  to flow.  The value is refined by linear interpolation between point i-1
  (KL at/below the threshold) and point i (KL above), which resolves the IFP
  better than the trace's beta spacing.

  Why first crossing: information that has started to flow keeps flowing
  as beta decreases; a noisy trace that later dips below the threshold does
  not move the IFP, and `persistence` > 1 makes a single spurious spike
  before the onset harmless.  (Paper Definition 1 / section 4.1: "the value
  of beta where the model learns information (I(x;z) is over 0.1)".)

  The untrained encoder's KL: a fresh model often starts with KL above the
  threshold and needs the first steps to compress it away.  Points before
  the KL first falls to the threshold are that transient, not information
  flowing, so the search starts there.

  Returns nan when KL never exceeds the threshold (after the transient), and
  betas[0] when it never falls to it: the IFP is then *at least* the
  starting beta (the anneal started too low to see the crossing).
  """
  b, k = _trace_1d(betas, kls)
  threshold = _check_threshold(threshold)
  persistence = _check_persistence(persistence)
  above = k > threshold
  if above.all():
    return float(b[0])
  above[:int(np.argmin(above))] = False  # the initial transient
  for i in range(b.size):
    if above[i:i + persistence].all():
      break
  else:
    return float("nan")
  if i == 0:
    return float(b[0])
  # above[i - 1] is False here (otherwise i - 1 would qualify), so
  # k[i - 1] <= threshold < k[i] and the fraction lies in [0, 1).
  fraction = (threshold - k[i - 1]) / (k[i] - k[i - 1])
  return float(b[i - 1] + fraction * (b[i] - b[i - 1]))


def freezing_points(betas: ArrayLike, kls: ArrayLike,
                    threshold: float = DEFAULT_THRESHOLD, *,
                    persistence: int = 1) -> np.ndarray:
  """Vectorised `information_freezing_point` over M traces (same rules).

  What: `kls` is [T, M] (T trace points in time order, M runs, e.g. the 50
  repeats of one factor's annealing test, trained as one vmapped program);
  `betas` is [T] (one shared schedule) or [T, M].  Returns the [M] IFPs
  (nan where KL never exceeds the threshold after the initial transient;
  betas[0] where it never falls to it).  Why: a per-factor IFP distribution is many traces;
  this avoids a Python loop over them.
  """
  k = np.asarray(kls, dtype=np.float64)
  b = np.asarray(betas, dtype=np.float64)
  if k.ndim != 2 or k.shape[0] == 0 or b.ndim not in (1, 2) or (
      b.shape != k.shape and b.shape != k.shape[:1]):
    raise ValueError(f"betas shape {b.shape} and kls shape {k.shape} not "
                     "allowed; kls must be [T, M] with T >= 1 and betas [T] "
                     "or [T, M]")
  threshold = _check_threshold(threshold)
  persistence = _check_persistence(persistence)
  _check_betas(b)
  _check_kls(k)
  num_t, num_m = k.shape
  b = np.broadcast_to(b[:, None] if b.ndim == 1 else b, k.shape)

  above = k > threshold
  never_below = above.all(axis=0)
  settled = np.arange(num_t)[:, None] >= np.argmin(above, axis=0)[None, :]
  above &= settled  # drop each trace's initial transient (see the scalar)
  counts = np.concatenate([np.zeros((1, num_m)), np.cumsum(above, axis=0)])
  start = np.arange(num_t)
  end = np.minimum(start + persistence, num_t)
  qualifies = (counts[end] - counts[start]) == (end - start)[:, None]
  found = qualifies.any(axis=0)
  first = qualifies.argmax(axis=0)
  prev = np.maximum(first - 1, 0)
  cols = np.arange(num_m)
  k0, k1 = k[prev, cols], k[first, cols]
  b0, b1 = b[prev, cols], b[first, cols]
  interior = first > 0
  denominator = np.where(interior, k1 - k0, 1.0)
  fraction = np.where(interior, (threshold - k0) / denominator, 0.0)
  ifp = np.where(interior, b0 + fraction * (b1 - b0), b1)
  return np.where(never_below, b[0], np.where(found, ifp, np.nan))


# --------------------------------------------------------------------------
# 2. Unsupervised variant: change points of the information increment.

def _window_lines(x: np.ndarray, y: np.ndarray, lo: np.ndarray,
                  hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Least-squares (slope, intercept) of y ~ x over x[lo..hi] inclusive,
  for arrays of windows, with prefix sums (x centred for precision)."""
  c = x.mean()
  xc = x - c
  def prefix(v):
    return np.concatenate([[0.0], np.cumsum(v)])
  s1, sx, sy = prefix(np.ones_like(xc)), prefix(xc), prefix(y)
  sxx, sxy = prefix(xc * xc), prefix(xc * y)
  n = s1[hi + 1] - s1[lo]
  mx = (sx[hi + 1] - sx[lo]) / n
  my = (sy[hi + 1] - sy[lo]) / n
  var = (sxx[hi + 1] - sxx[lo]) / n - mx * mx
  cov = (sxy[hi + 1] - sxy[lo]) / n - mx * my
  slope = cov / np.where(var > 0, var, 1.0)
  intercept = my - slope * (mx + c)
  return slope, intercept


def increment_change_points(betas: ArrayLike, kls: ArrayLike,
                            num_points: int, smoothing: float = 0.15, *,
                            min_ratio: float = 1.25,
                            min_relative_jump: float = 0.1) -> list[float]:
  """Betas where the information increment dKL/d(-beta) jumps up the most.

  What (the unsupervised annealing test, paper section 5.5 / Fig. 13):
  without factor labels there are no per-factor IFPs, but when a new factor
  starts to freeze into the latents, the KL curve KL(beta) gets a kink: the
  increment dKL/d(-beta) jumps up.  The returned betas (at most
  `num_points`, sorted descending) estimate these onsets; they are upper
  bounds of the IFP distributions (the paper's 36 and 16 on 3D Chairs).

  Method: repeated betas are merged (mean KL).  For every trace beta b whose
  two windows lie inside the trace's beta range (so no kink within a factor
  1 + s of either end is found) and hold at least 3 distinct betas each,
  a straight line KL ~ beta is
  fitted by least squares to the points with beta in [b / (1 + s), b]
  ("below", later in the anneal) and to those in [b, b (1 + s)] ("above"),
  s = `smoothing`; windows are relative because IFPs behave multiplicatively
  (a kink at 8 needs as fine a window as one at 80 needs a coarse one), and
  fitting lines (rather than differencing twice) keeps noise down.  The
  jump of the increment at b is slope_above - slope_below (= increment
  below minus increment above, positive where information starts to flow
  faster; decreases, e.g. a factor saturating, are ignored), scored as
  b * (slope_above - slope_below), the jump of dKL/d(-log beta): with
  relative windows a slope's noise grows like 1 / b, and this scaling keeps
  the score's noise level the same at every beta, so small-beta noise does
  not outrank real kinks.  Local maxima of the score that are at least
  `min_relative_jump` times the largest are taken greedily, largest first,
  skipping any within a factor `min_ratio` of one already taken (the
  minimum distance, multiplicative).  Each is refined to the intersection
  of its two fitted lines (clipped to its windows), which resolves a kink
  between trace points.  Returns [] when no window has enough points or no
  jump is positive.
  """
  b, k = _trace_1d(betas, kls)
  if (isinstance(num_points, bool)
      or not isinstance(num_points, (int, np.integer)) or num_points < 1):
    raise ValueError(f"num_points={num_points!r} not allowed; must be an "
                     "integer >= 1")
  if not (isinstance(smoothing, (int, float)) and math.isfinite(smoothing)
          and smoothing > 0):
    raise ValueError(f"smoothing={smoothing!r} not allowed; must be a "
                     "finite number > 0 (relative window half-width)")
  if not (isinstance(min_ratio, (int, float)) and math.isfinite(min_ratio)
          and min_ratio >= 1):
    raise ValueError(f"min_ratio={min_ratio!r} not allowed; must be a "
                     "finite number >= 1")
  if not (isinstance(min_relative_jump, (int, float))
          and 0 <= min_relative_jump <= 1):
    raise ValueError(f"min_relative_jump={min_relative_jump!r} not allowed; "
                     "must be in [0, 1]")
  if np.any(b <= 0):
    raise ValueError(f"betas must be > 0 for relative windows; got minimum "
                     f"{b.min()}")
  x, inverse = np.unique(b, return_inverse=True)  # ascending beta
  y = np.bincount(inverse, weights=k) / np.bincount(inverse)
  n = x.size
  idx = np.arange(n)
  lo = np.searchsorted(x, x / (1 + smoothing), side="left")
  hi = np.searchsorted(x, x * (1 + smoothing), side="right") - 1
  # Only full windows: a window cut short by the trace's end fits a line to
  # a few points and its slope is noise.
  valid = (((idx - lo + 1) >= _MIN_FIT_POINTS)
           & ((hi - idx + 1) >= _MIN_FIT_POINTS)
           & (x / (1 + smoothing) >= x[0]) & (x * (1 + smoothing) <= x[-1]))
  if not valid.any():
    return []
  slope_below, icpt_below = _window_lines(x, y, lo, idx)
  slope_above, icpt_above = _window_lines(x, y, idx, hi)
  # Jump of dKL/d(-log beta) = b * jump of dKL/d(-beta): see docstring.
  jump = np.where(valid, x * (slope_above - slope_below), -np.inf)

  left = np.concatenate([[-np.inf], jump[:-1]])
  right = np.concatenate([jump[1:], [-np.inf]])
  peaks = np.flatnonzero(valid & (jump > 0) & (jump >= left)
                         & (jump >= right))
  if peaks.size == 0:
    return []
  floor = min_relative_jump * jump[peaks].max()
  chosen: list[float] = []
  for j in peaks[np.argsort(-jump[peaks], kind="stable")]:
    if jump[j] < floor or len(chosen) == num_points:
      break
    refined = (icpt_below[j] - icpt_above[j]) / (slope_above[j]
                                                 - slope_below[j])
    refined = float(np.clip(refined, x[lo[j]], x[hi[j]]))
    if all(max(refined / c, c / refined) >= min_ratio for c in chosen):
      chosen.append(refined)
  return sorted(chosen, reverse=True)


# --------------------------------------------------------------------------
# 3. Stage plans from per-factor IFP distributions.

@dataclasses.dataclass(frozen=True)
class StagePlan:
  """A DEFT stage plan derived from IFP distributions.

  groups: factor names per stage, highest IFPs first (stage j learns
    groups[j]).
  betas: the stage pressures, strictly descending; betas[-1] is the final
    beta that lets every factor through.
  latents_per_group: K = the largest group size (the paper: "K is not less
    than the size of the newly learned factors").
  separability: one dict per consecutive pair of factors (sorted by median
    IFP, descending): "higher", "lower", "higher_lower_quantile",
    "lower_upper_quantile", "overlap" (share of the lower factor's samples
    at or above the higher factor's lower quantile), "separable" (pair
    rule), "cut" (whether the plan splits there), "threshold" (the stage
    beta of that cut, else None).
  quantile: the quantile level the plan used.
  factor_stats: name -> {"median", "lower", "upper", "count", "dropped"}.
  samples: name -> the finite IFP samples used (for `compare_with`).
  warnings: human-readable notes (nan samples dropped, factors excluded...).
  """
  groups: list[list[str]]
  betas: list[float]
  latents_per_group: int
  separability: list[dict[str, Any]]
  quantile: float = 0.1
  factor_stats: dict[str, dict[str, float]] = dataclasses.field(
      default_factory=dict)
  samples: dict[str, tuple[float, ...]] = dataclasses.field(
      default_factory=dict)
  warnings: list[str] = dataclasses.field(default_factory=list)

  def __post_init__(self):
    if len(self.groups) != len(self.betas) or not self.groups:
      raise ValueError(f"StagePlan: {len(self.groups)} groups and "
                       f"{len(self.betas)} betas; need one beta per group "
                       "and at least one group")

  @property
  def num_groups(self) -> int:
    """G, the number of stages."""
    return len(self.groups)

  def to_config_overrides(self) -> dict[str, Any]:
    """Flat dotted keys for a DEFT config: the piecewise pressures, G and
    the total number of latents G * K."""
    return {"objective.pressures": tuple(float(b) for b in self.betas),
            "model.num_groups": self.num_groups,
            "model.num_latents": self.num_groups * self.latents_per_group}


def _finite_samples(ifp_samples: Mapping[str, ArrayLike]
                    ) -> tuple[dict[str, np.ndarray], list[str]]:
  if not isinstance(ifp_samples, Mapping) or not ifp_samples:
    raise ValueError(f"ifp_samples={ifp_samples!r} not allowed; must be a "
                     "non-empty mapping factor name -> 1-D IFP samples")
  kept, warnings = {}, []
  for name, values in ifp_samples.items():
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
      raise ValueError(f"ifp_samples[{name!r}] has shape {v.shape}; must be "
                       "a non-empty 1-D array (nan = never froze)")
    finite = v[~np.isnan(v)]
    if np.any(~np.isfinite(finite)) or np.any(finite <= 0):
      bad = finite[~np.isfinite(finite) | (finite <= 0)][:3].tolist()
      raise ValueError(f"ifp_samples[{name!r}] contains {bad}; IFPs must be "
                       "finite betas > 0, or nan for a run that never froze")
    dropped = v.size - finite.size
    if finite.size == 0:
      warnings.append(f"{name}: all {v.size} samples are nan (never froze); "
                      "factor excluded from the plan")
      continue
    if dropped:
      warnings.append(f"{name}: {dropped} of {v.size} samples are nan "
                      "(never froze); ignored")
    kept[name] = finite
  if not kept:
    raise ValueError("ifp_samples: no factor has a finite IFP sample; "
                     "nothing to plan")
  return kept, warnings


def propose_stages(ifp_samples: Mapping[str, ArrayLike], quantile: float = 0.1,
                   final_beta: float = 1.0,
                   min_gap_ratio: float = 1.0) -> StagePlan:
  """Groups factors into DEFT stages by separable IFP distributions.

  What: factors are sorted by median IFP (descending).  A cut between
  sorted positions i and i+1 is made when every factor above it is
  separable from every factor below it: the smallest `quantile` lower
  quantile of the upper factors exceeds `min_gap_ratio` times the largest
  (1 - quantile) upper quantile of the lower factors (at most a share
  `quantile` of either distribution on the wrong side).  For neighbours
  this is exactly "the higher factor's lower quantile is above the lower
  factor's upper quantile"; taking the whole groups also catches a wide
  distribution overlapping a non-neighbour.  Cuts split the factors into G
  groups; each cut's stage beta is the geometric mean of its two bounding
  quantiles, because IFPs behave multiplicatively (the paper's hand-picked
  betas 70/30/12 are roughly log-spaced, and a ratio margin is as hard to
  miss at 8 as at 80).  Stage betas are the cut thresholds, descending,
  then `final_beta` (the last stage lets everything through).  A cut whose
  threshold would not exceed `final_beta` is not made (warning).  K is the
  largest group size.

  Why: the paper chooses these betas by hand and names an automatic choice
  as missing.  nan samples (runs that never froze) are ignored and noted in
  `warnings`; a factor with only nan samples is left out of the plan.
  """
  if not (isinstance(quantile, (int, float)) and not isinstance(quantile, bool)
          and 0 < quantile < 0.5):
    raise UsageError(f"quantile={quantile!r} not allowed; must be in "
                     "(0, 0.5) (the lower tail level, e.g. 0.1)")
  if not (isinstance(final_beta, (int, float)) and math.isfinite(final_beta)
          and final_beta > 0):
    raise UsageError(f"final_beta={final_beta!r} not allowed; must be a "
                     "finite number > 0")
  if not (isinstance(min_gap_ratio, (int, float))
          and math.isfinite(min_gap_ratio) and min_gap_ratio >= 1):
    raise UsageError(f"min_gap_ratio={min_gap_ratio!r} not allowed; must be "
                     "a finite number >= 1")
  samples, warnings = _finite_samples(ifp_samples)
  dropped_counts = {name: int(np.isnan(np.asarray(ifp_samples[name],
                                                  np.float64)).sum())
                    for name in samples}
  stats = {}
  for name, v in samples.items():
    stats[name] = {"median": float(np.median(v)),
                   "lower": float(np.quantile(v, quantile)),
                   "upper": float(np.quantile(v, 1 - quantile)),
                   "count": int(v.size), "dropped": dropped_counts[name]}
  order = sorted(samples, key=lambda n: (-stats[n]["median"], n))
  for name in order:
    if stats[name]["median"] <= final_beta:
      warnings.append(f"{name}: median IFP {stats[name]['median']:.4g} is not "
                      f"above final_beta={final_beta:g}; it may never be "
                      "learnt")

  separability, groups, betas = [], [[order[0]]], []
  for i in range(len(order) - 1):
    higher, lower = order[i], order[i + 1]
    upper_bound = min(stats[n]["lower"] for n in order[:i + 1])
    lower_bound = max(stats[n]["upper"] for n in order[i + 1:])
    pair_separable = (stats[higher]["lower"]
                      > min_gap_ratio * stats[lower]["upper"])
    cut = upper_bound > min_gap_ratio * lower_bound
    threshold = math.sqrt(upper_bound * lower_bound) if cut else None
    if cut and threshold <= final_beta:
      warnings.append(f"cut between {higher} and {lower}: threshold "
                      f"{threshold:.4g} is not above final_beta="
                      f"{final_beta:g}; not split")
      cut, threshold = False, None
    separability.append({
        "higher": higher, "lower": lower,
        "higher_lower_quantile": stats[higher]["lower"],
        "lower_upper_quantile": stats[lower]["upper"],
        "overlap": float(np.mean(samples[lower] >= stats[higher]["lower"])),
        "separable": bool(pair_separable), "cut": bool(cut),
        "threshold": threshold})
    if cut:
      betas.append(threshold)
      groups.append([lower])
    else:
      groups[-1].append(lower)
  betas.append(float(final_beta))
  return StagePlan(
      groups=groups, betas=betas,
      latents_per_group=max(len(g) for g in groups),
      separability=separability, quantile=float(quantile),
      factor_stats=stats,
      samples={n: tuple(float(s) for s in samples[n]) for n in order},
      warnings=warnings)


# --------------------------------------------------------------------------
# 4. Markdown summaries.

def _fmt(value: Any) -> str:
  if value is None:
    return "-"
  if isinstance(value, float):
    return f"{value:.4g}"
  return str(value)


def format_plan(plan: StagePlan) -> str:
  """A Markdown summary of a plan: the stages (beta, factors with median
  and quantile IFPs), the separability of consecutive factors, warnings,
  and the config overrides.  Why: the plan is meant to be read and checked
  against the IFP plot (paper Fig. 6) before a DEFT run is launched."""
  q = plan.quantile
  lines = [f"## DEFT stage plan (G = {plan.num_groups}, "
           f"K = {plan.latents_per_group})", "",
           f"| stage | beta | factor | median IFP | q{q:g} | q{1 - q:g} | n "
           "| nan |",
           "|---|---|---|---|---|---|---|---|"]
  for stage, (group, beta) in enumerate(zip(plan.groups, plan.betas)):
    for i, name in enumerate(group):
      s = plan.factor_stats.get(name, {})
      lines.append(
          f"| {stage + 1 if i == 0 else ''} | {_fmt(beta) if i == 0 else ''} "
          f"| {name} | {_fmt(s.get('median'))} | {_fmt(s.get('lower'))} "
          f"| {_fmt(s.get('upper'))} | {_fmt(s.get('count'))} "
          f"| {_fmt(s.get('dropped'))} |")
  if plan.separability:
    lines += ["", "| higher | lower | higher q_lo | lower q_hi | overlap "
              "| separable | cut | threshold |",
              "|---|---|---|---|---|---|---|---|"]
    for p in plan.separability:
      lines.append(
          f"| {p['higher']} | {p['lower']} "
          f"| {_fmt(p['higher_lower_quantile'])} "
          f"| {_fmt(p['lower_upper_quantile'])} | {p['overlap']:.2f} "
          f"| {'yes' if p['separable'] else 'no'} "
          f"| {'yes' if p['cut'] else 'no'} | {_fmt(p['threshold'])} |")
  if plan.warnings:
    lines += ["", "Warnings:"] + [f"- {w}" for w in plan.warnings]
  lines += ["", "Config overrides:"]
  lines += [f"- `{k}` = `{v!r}`" for k, v in
            plan.to_config_overrides().items()]
  return "\n".join(lines) + "\n"


def compare_with(plan: StagePlan,
                 reference_betas: Sequence[float]) -> list[str]:
  """Markdown lines comparing the plan's betas with hand-picked ones (e.g.
  the paper's 70, 30, 12, 1 for dSprites): for each beta of both sets, the
  fraction of each factor's IFP samples above it (= the share of runs in
  which that factor would pass at that pressure).  Why: shows directly
  whether a hand-picked beta cuts through a distribution."""
  ref = np.asarray(reference_betas, dtype=np.float64)
  if ref.ndim != 1 or ref.size == 0 or not np.all(np.isfinite(ref)) or (
      np.any(ref <= 0)):
    raise ValueError(f"reference_betas={list(np.ravel(ref))} not allowed; "
                     "must be a non-empty 1-D sequence of finite betas > 0")
  if not plan.samples:
    raise ValueError("compare_with: the plan has no IFP samples (build it "
                     "with propose_stages)")
  names = [n for g in plan.groups for n in g]
  lines = ["| set | stage | beta | " + " | ".join(names) + " |",
           "|---|---|---|" + "---|" * len(names)]
  for label, betas in (("proposed", plan.betas), ("reference", ref.tolist())):
    for stage, beta in enumerate(betas):
      cells = [f"{np.mean(np.asarray(plan.samples[n]) > beta):.2f}"
               for n in names]
      lines.append(f"| {label} | {stage + 1} | {beta:.4g} | "
                   + " | ".join(cells) + " |")
  return lines
