"""The numbers of a report, computed from results rows (no formatting here:
`disentax.reporting.render` writes them out).

The question the failure-rate table answers is the one a single-seed number
hides: for each (method, dataset, hyperparameters) cell of a sweep, how many
seeds *fail* to disentangle (metric below a threshold), and how spread out
are the rest?  Seeds whose training or evaluation went non-finite are counted
and listed separately, never silently dropped.

Rows are those of `disentax.results` (schema there).  Every table first
takes one row per seed (`select_rows`: at a step, or each seed's latest) and
groups them by (method, dataset, hyperparameters) (`group_rows`).

Two layouts of the same counts:
  * per group (`failure_rate_table`): one entry per (method, dataset,
    hyperparameters) with mean/median/std, the failure rate's Wilson 95%
    interval and the median's bootstrap 95% interval;
  * DEFT journal Table 4 (`pivot_by_dataset`): rows = method with its
    hyperparameters, columns = datasets, cell = that group's entry.  (The
    paper puts datasets on the rows; a sweep has more method x hyperparameter
    rows than datasets, so they go down.)
the groups compared pairwise on each dataset (`comparison_table`), and
further tables: every metric's spread per group (`metric_summary`),
group-mean NMI matrices (`nmi_matrix_means`), information freezing points
per factor (`ifp_summary`), and how the metrics agree over members
(`metric_correlations`).

Intervals and tests come from `disentax.reporting.statistics`.  Bootstrap
intervals are seeded (`seed`, default 0; each group's resampling starts
from it), so a report is the same numbers every time it is made.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import warnings
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from disentax.reporting.statistics import (bootstrap_median_interval,
                                           fisher_exact_p, holm,
                                           mann_whitney_p, seeds_needed,
                                           wilson_interval)
from disentax.cli import UsageError
from disentax.results import STATUSES, Row

Entry = dict[str, Any]  # one line of a table


def metric_names(rows: Iterable[Row]) -> list[str]:
  """Every metric name that occurs in `rows`, sorted."""
  return sorted({name for row in rows for name in (row.get("metrics") or {})})


def check_metric(rows: Sequence[Row], metric: str) -> None:
  """Raises UsageError naming the metrics present when `metric` is in no
  row (a typo would otherwise surface as a missing-metric error on row 0)."""
  names = metric_names(rows)
  if metric not in names:
    raise UsageError(f"unknown metric {metric!r}; the results rows have: "
                     f"{', '.join(names) or '(no metrics)'}")


# --------------------------------------------------------------------------
# Hyperparameters as group keys.


def _hparam_value(value: Any) -> float | tuple[float, ...]:
  """A number, or a tuple for a sequence-valued hyperparameter."""
  if isinstance(value, (list, tuple)):
    return tuple(float(v) for v in value)
  return float(value)


def hparams_key(hparams: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
  """Hashable, sortable form of a row's hyperparameters (for grouping)."""
  return tuple(sorted((str(k), _hparam_value(v)) for k, v in hparams.items()))


def _format_value(value: float | tuple[float, ...]) -> str:
  if isinstance(value, tuple):
    return "/".join(f"{v:g}" for v in value)
  return f"{value:g}"


def format_hparams(hparams: Mapping[str, Any]) -> str:
  """`{"beta": 4.0, "pressures": [70, 30]}` -> `"beta=4, pressures=70/30"`
  (`"-"` if none): how every table, figure and message names a group."""
  if not hparams:
    return "-"
  return ", ".join(f"{k}={_format_value(v)}" for k, v in hparams_key(hparams))


# --------------------------------------------------------------------------
# Values, seeds and groups.


@contextlib.contextmanager
def quiet_nan_stats() -> Iterator[None]:
  """All-NaN slices (a seed that diverged early) give NaN statistics without
  a RuntimeWarning per slice."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    yield


def finite_value(row: Row, metric: str) -> float | None:
  """The row's value of `metric` when its seed is 'ok' and the value is
  finite; None otherwise (a seed that is not scored)."""
  value = (row.get("metrics") or {}).get(metric)
  if row.get("status") != "ok" or value is None:
    return None
  value = float(value)
  return value if math.isfinite(value) else None


def _metric_value(row: Row, metric: str, where: str) -> float | None:
  """`finite_value`, after checking the row's status and that an 'ok' row
  reports `metric` (`where` names the row in the error)."""
  status = row.get("status")
  if status not in STATUSES:
    raise ValueError(f"{where}: unknown status {status!r}; expected one of "
                     f"{list(STATUSES)}")
  metrics = row.get("metrics") or {}
  if status == "ok" and metric not in metrics:
    raise ValueError(
        f"{where}: metric {metric!r} missing from an 'ok' row; it has "
        f"{sorted(metrics)}")
  return finite_value(row, metric)


def _values(rows: Iterable[Row], metric: str) -> np.ndarray:
  """float [rows]: each row's `metric` whatever its status, NaN where it
  has none."""
  return np.asarray([np.nan if (r.get("metrics") or {}).get(metric) is None
                     else float(r["metrics"][metric]) for r in rows])


def _or_none(value: float) -> float | None:
  """NaN (a statistic that cannot be computed) as None, as tables hold it."""
  return None if math.isnan(value) else float(value)


def _median_interval(values: Sequence[float] | np.ndarray, seed: int
                     ) -> dict[str, float | None]:
  """median_ci_low / median_ci_high: the bootstrap 95% interval of the
  median of the finite `values` (None with fewer than two)."""
  interval = bootstrap_median_interval(values, seed)
  low, high = interval if interval is not None else (None, None)
  return {"median_ci_low": low, "median_ci_high": high}


def _spread(values: np.ndarray, seed: int) -> dict[str, float | None]:
  """median, low (10%) and high (90%) of the finite `values` (linear
  interpolation), each None if there is none, and the median's bootstrap
  interval (`_median_interval`)."""
  finite = values[np.isfinite(values)]
  median, low, high = (np.quantile(finite, [0.5, 0.1, 0.9]).tolist()
                       if finite.size else (None, None, None))
  return {"median": median, "low": low, "high": high,
          **_median_interval(finite, seed)}


def select_rows(rows: Iterable[Row], step: int | None = None) -> list[Row]:
  """One row per (method, dataset, hparams, seed): at `step`, or the latest.

  Several evaluated checkpoints of one run would otherwise count a seed
  several times; two rows claiming the same seed at the same step (e.g. one
  workdir passed twice, or two runs with overlapping seeds) are an error.
  """
  chosen: dict[tuple, Row] = {}
  for row in rows:
    if step is not None and int(row["step"]) != step:
      continue
    key = (row["method"], row["dataset"], hparams_key(row["hparams"]),
           int(row["seed"]))
    old = chosen.get(key)
    if old is None or int(row["step"]) > int(old["step"]):
      chosen[key] = row
    elif int(row["step"]) == int(old["step"]):
      raise ValueError(
          f"two results rows for seed {key[3]} of {key[0]}/{key[1]} "
          f"({format_hparams(row['hparams'])}) at step {row['step']} "
          f"(config_hash {old.get('config_hash')} and "
          f"{row.get('config_hash')}); pass each run's workdir once and give "
          f"different runs different seeds")
  return list(chosen.values())


def group_rows(rows: Iterable[Row]) -> dict[tuple, list[Row]]:
  """Rows grouped by (method, dataset, hparams_key), in first-seen order."""
  groups: dict[tuple, list[Row]] = {}
  for row in rows:
    key = (row["method"], row["dataset"], hparams_key(row["hparams"]))
    groups.setdefault(key, []).append(row)
  return groups


# --------------------------------------------------------------------------
# The failure-rate table, one entry per group, and its Table 4 layout.


def failure_rate_table(rows: Sequence[Row], metric: str = "mig",
                       threshold: float = 0.1, step: int | None = None,
                       seed: int = 0) -> list[Entry]:
  """Per (method, dataset, hparams): how many seeds fail `metric < threshold`.

  Each seed counts once: its row at `step`, or (None) its latest step.

  Returns one dict per group, sorted by method, dataset, hparams, with
    method, dataset, hparams (dict), n_seeds (rows in the group), n_scored
    (finite metric), n_failed (finite metric < threshold), failure_rate
    (100 * n_failed / n_scored, a percentage; None if nothing was scored),
    failure_rate_ci_low / failure_rate_ci_high (its Wilson 95% interval, in
    percent; None if nothing was scored), mean / median / std (population,
    ddof 0) of the finite values (None if none), median_ci_low /
    median_ci_high (the median's percentile bootstrap 95% interval drawn
    from `seed`; None with fewer than two finite values), scored_values
    (the finite values, in seed order), n_non_finite and non_finite_seeds
    (status non_finite or metric None/NaN/inf), failed_seeds, steps and
    config_hashes (for provenance).
  """
  groups = group_rows(select_rows(rows, step))
  table = []
  for key in sorted(groups):
    method, dataset, hparams = key
    members = sorted(groups[key], key=lambda r: int(r["seed"]))
    values, failed_seeds, non_finite_seeds = [], [], []
    diverged = {int(r["seed"]): r.get("diverged_at_step") for r in members
                if r.get("status") == "diverged"}
    for row in members:
      value = _metric_value(
          row, metric, f"{method}/{dataset} seed {row['seed']} "
          f"step {row['step']}")
      if value is None:
        non_finite_seeds.append(int(row["seed"]))
        continue
      values.append(value)
      if value < threshold:
        failed_seeds.append(int(row["seed"]))
    n_scored = len(values)
    low, high = (_or_none(100.0 * bound) for bound in
                 wilson_interval(len(failed_seeds), n_scored))
    table.append({
        "method": method,
        "dataset": dataset,
        "hparams": dict(hparams),
        "n_seeds": len(members),
        "n_scored": n_scored,
        "n_failed": len(failed_seeds),
        "failure_rate": (100.0 * len(failed_seeds) / n_scored
                         if n_scored else None),
        "failure_rate_ci_low": low,
        "failure_rate_ci_high": high,
        "mean": statistics.fmean(values) if values else None,
        "median": statistics.median(values) if values else None,
        "std": statistics.pstdev(values) if values else None,
        **_median_interval(values, seed),
        "scored_values": values,
        "n_non_finite": len(non_finite_seeds),
        "non_finite_seeds": non_finite_seeds,
        # seed -> step at which training froze it (a subset of the above)
        "diverged_seeds": diverged,
        "failed_seeds": failed_seeds,
        "steps": sorted({int(r["step"]) for r in members}),
        "config_hashes": sorted({str(r.get("config_hash")) for r in members}),
    })
  return table


def pivot_by_dataset(table: Sequence[Entry]
                     ) -> tuple[list[str], list[dict[str, Any]]]:
  """(datasets sorted, rows): one row per (method, hparams), sorted, each
  {"method", "hparams", "cells": {dataset: entry of failure_rate_table}};
  a dataset the row was not run on has no cell."""
  datasets = sorted({e["dataset"] for e in table})
  rows: dict[tuple, dict[str, Any]] = {}
  for e in table:
    key = (e["method"], hparams_key(e["hparams"]))
    row = rows.setdefault(key, {"method": e["method"],
                                "hparams": e["hparams"], "cells": {}})
    row["cells"][e["dataset"]] = e
  return datasets, [rows[k] for k in sorted(rows)]


# --------------------------------------------------------------------------
# Groups compared pairwise on each dataset.


def comparison_table(table: Sequence[Entry]) -> list[Entry]:
  """Every pair of groups of `failure_rate_table` that share a dataset.

  A group is a method with its hyperparameters: a method's failure rate
  depends on them, so groups are compared as they are (two values of beta
  of one method are a pair too), never pooled.  Pairs go by dataset
  (sorted), then in the table's order.  Each entry has dataset, method_a /
  hparams_a / method_b / hparams_b, n_failed_* / n_scored_*, failure_rate_*
  (%) and median_* of both groups, and
    fisher_p: Fisher's exact test of the failure counts;
    mann_whitney_p: Mann-Whitney U of the scored metric values;
    fisher_p_holm / mann_whitney_p_holm: Holm-adjusted over every pair of
      the table (each test its own family);
    seeds_needed: seeds per group to tell the two observed failure rates
      apart (alpha 0.05, power 0.8; inf when they are equal);
  each None where a group scored nothing (seeds_needed) or the test cannot
  be made (then it is left out of the Holm family).
  """
  pairs = []
  for dataset in sorted({e["dataset"] for e in table}):
    groups = [e for e in table if e["dataset"] == dataset]
    for i, a in enumerate(groups):
      for b in groups[i + 1:]:
        rates = [e["n_failed"] / e["n_scored"] if e["n_scored"] else None
                 for e in (a, b)]
        pairs.append({
            "dataset": dataset,
            **{f"{field}_{side}": e[field] for side, e in (("a", a), ("b", b))
               for field in ("method", "hparams", "n_failed", "n_scored",
                             "failure_rate", "median")},
            "fisher_p": _or_none(fisher_exact_p(
                a["n_failed"], a["n_scored"], b["n_failed"], b["n_scored"])),
            "mann_whitney_p": _or_none(mann_whitney_p(a["scored_values"],
                                                      b["scored_values"])),
            "seeds_needed": (None if None in rates
                             else float(seeds_needed(*rates))),
        })
  for test in ("fisher_p", "mann_whitney_p"):
    adjusted = holm([math.nan if p[test] is None else p[test] for p in pairs])
    for pair, value in zip(pairs, adjusted):
      pair[f"{test}_holm"] = _or_none(value)
  return pairs


# --------------------------------------------------------------------------
# Further tables: every metric, NMI matrices, information freezing points.


def metric_summary(rows: Sequence[Row], step: int | None = None,
                   seed: int = 0) -> list[Entry]:
  """Every metric of the rows, per (method, dataset, hparams) group (first
  seen first) and metric (sorted): one entry with method, dataset, hparams
  (dict), metric, median / low (10%) / high (90%) over the group's finite
  values (None without any), median_ci_low / median_ci_high (the median's
  bootstrap 95% interval from `seed`; None with fewer than two finite
  values), n_finite and n_seeds (seeds without a finite value are counted,
  not dropped)."""
  names = metric_names(rows)
  summary = []
  for (method, dataset, hparams), group in group_rows(
      select_rows(rows, step)).items():
    for name in names:
      values = _values(group, name)
      summary.append({"method": method, "dataset": dataset,
                      "hparams": dict(hparams), "metric": name,
                      **_spread(values, seed),
                      "n_finite": int(np.isfinite(values).sum()),
                      "n_seeds": len(group)})
  return summary


def nmi_matrix_means(rows: Sequence[Row],
                     arrays: Mapping[str, np.ndarray] | None) -> list[Entry]:
  """Each group's NMI matrix I(z_j; c_k) / H(c_k) averaged over its 'ok'
  seeds (DEFT journal Fig. 11b), from the results arrays of the rows'
  evaluation.  One entry per group of `rows` (first seen first) with method,
  dataset, hparams (dict), n_seeds (rows in the group), members (the seeds
  averaged, as member indices) and mean (float [d, F], NaN entries skipped;
  None when no seed is averaged).

  Raises:
    ValueError: the arrays hold no NMI matrix.
  """
  if arrays is None or "nmi_matrix" not in arrays:
    raise ValueError("no nmi_matrix in the results arrays; the metric must "
                     "be 'mig' (it reports the NMI matrix)")
  nmi = np.asarray(arrays["nmi_matrix"])  # [M, d, F]
  means = []
  for (method, dataset, hparams), group in group_rows(rows).items():
    members = [int(r["member"]) for r in group if r["status"] == "ok"
               and int(r["member"]) < nmi.shape[0]]
    with quiet_nan_stats():
      mean = np.nanmean(nmi[members], axis=0) if members else None
    means.append({"method": method, "dataset": dataset,
                  "hparams": dict(hparams), "n_seeds": len(group),
                  "members": members, "mean": mean})
  return means


def ifp_rows(rows: Iterable[Row]) -> list[Row]:
  """The rows of an annealing test's factors: those reporting an `ifp`
  with a `factor` hyperparameter (-1 = the whole dataset)."""
  return [r for r in rows if "ifp" in (r.get("metrics") or {})
          and "factor" in r["hparams"]]


def ifp_summary(rows: Sequence[Row], seed: int = 0) -> list[Entry]:
  """Per factor (the annealing test's `factor` hyperparameter, sorted; -1 =
  whole dataset): factor, n_seeds, n_froze (a finite IFP), median / low
  (10%) / high (90%) of the finite IFPs (None without any), the median's
  bootstrap interval (median_ci_low / median_ci_high, as in
  `metric_summary`), and
  change_points: for the whole dataset, the median of each of the
  increment's change points found in some seed (the unsupervised
  variant), in order."""
  by_factor: dict[int, list[Row]] = {}
  for row in rows:
    by_factor.setdefault(int(row["hparams"]["factor"]), []).append(row)
  summary = []
  for factor in sorted(by_factor):
    group = by_factor[factor]
    ifps = _values(group, "ifp")
    points, i = [], 0
    while any(f"change_point_{i}" in (r.get("metrics") or {}) for r in group):
      found = _values(group, f"change_point_{i}")
      if np.isfinite(found).any():
        points.append(float(np.nanmedian(found)))
      i += 1
    summary.append({"factor": factor, "n_seeds": int(ifps.size),
                    "n_froze": int(np.isfinite(ifps).sum()),
                    **_spread(ifps, seed), "change_points": points})
  return summary


MIN_CORRELATION_POINTS = 3


def metric_correlations(rows: Sequence[Row], step: int | None = None
                        ) -> tuple[list[str], np.ndarray, np.ndarray]:
  """Spearman rank correlations between every two metrics of `rows` over
  the members (one row per seed: `select_rows`): (metric names, sorted;
  float [k, k] correlations; int [k, k] members each one is computed on).

  A pair is computed on the members where both metrics are finite
  (`finite_value`: 'ok' rows only), as `scipy.stats.spearmanr` of those
  values; NaN when fewer than `MIN_CORRELATION_POINTS` members have both
  or either metric is constant over them (a rank correlation is then
  undefined).  Ranks rather than values, so a metric's scale or a
  monotone transformation (e.g. a metric and its negative) does not change
  what it agrees with.
  """
  from scipy import stats  # pylint: disable=g-import-not-at-top
  selected = select_rows(rows, step)
  names = metric_names(selected)
  values = np.full((len(selected), len(names)), np.nan)
  for i, row in enumerate(selected):
    for j, name in enumerate(names):
      value = finite_value(row, name)
      values[i, j] = np.nan if value is None else value
  k = len(names)
  matrix = np.full((k, k), np.nan)
  counts = np.zeros((k, k), int)
  for a in range(k):
    for b in range(k):
      both = np.isfinite(values[:, a]) & np.isfinite(values[:, b])
      counts[a, b] = int(both.sum())
      x, y = values[both, a], values[both, b]
      if (counts[a, b] >= MIN_CORRELATION_POINTS and np.ptp(x) > 0
          and np.ptp(y) > 0):
        matrix[a, b] = float(stats.spearmanr(x, y).statistic)
  return names, matrix, counts
