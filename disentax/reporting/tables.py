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
    hyperparameters) with mean/median/std;
  * DEFT journal Table 4 (`pivot_by_dataset`): rows = method with its
    hyperparameters, columns = datasets, cell = that group's entry.  (The
    paper puts datasets on the rows; a sweep has more method x hyperparameter
    rows than datasets, so they go down.)
and further tables: every metric's spread per group (`metric_summary`),
group-mean NMI matrices (`nmi_matrix_means`), and information freezing
points per factor (`ifp_summary`).
"""

from __future__ import annotations

import contextlib
import math
import statistics
import warnings
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

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


def _spread(values: np.ndarray) -> dict[str, float | None]:
  """median, low (10%) and high (90%) of the finite `values` (linear
  interpolation), each None if there is none."""
  finite = values[np.isfinite(values)]
  if not finite.size:
    return {"median": None, "low": None, "high": None}
  median, low, high = (float(q) for q in np.quantile(finite, [0.5, 0.1, 0.9]))
  return {"median": median, "low": low, "high": high}


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
                       threshold: float = 0.1,
                       step: int | None = None) -> list[Entry]:
  """Per (method, dataset, hparams): how many seeds fail `metric < threshold`.

  Each seed counts once: its row at `step`, or (None) its latest step.

  Returns one dict per group, sorted by method, dataset, hparams, with
    method, dataset, hparams (dict), n_seeds (rows in the group), n_scored
    (finite metric), n_failed (finite metric < threshold), failure_rate
    (100 * n_failed / n_scored, a percentage; None if nothing was scored),
    mean / median / std (population, ddof 0) of the finite values (None if
    none), n_non_finite and non_finite_seeds (status non_finite or metric
    None/NaN/inf), failed_seeds, steps and config_hashes (for provenance).
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
    table.append({
        "method": method,
        "dataset": dataset,
        "hparams": dict(hparams),
        "n_seeds": len(members),
        "n_scored": n_scored,
        "n_failed": len(failed_seeds),
        "failure_rate": (100.0 * len(failed_seeds) / n_scored
                         if n_scored else None),
        "mean": statistics.fmean(values) if values else None,
        "median": statistics.median(values) if values else None,
        "std": statistics.pstdev(values) if values else None,
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
# Further tables: every metric, NMI matrices, information freezing points.


def metric_summary(rows: Sequence[Row], step: int | None = None
                   ) -> list[Entry]:
  """Every metric of the rows, per (method, dataset, hparams) group (first
  seen first) and metric (sorted): one entry with method, dataset, hparams
  (dict), metric, median / low (10%) / high (90%) over the group's finite
  values (None without any), n_finite and n_seeds (seeds without a finite
  value are counted, not dropped)."""
  names = metric_names(rows)
  summary = []
  for (method, dataset, hparams), group in group_rows(
      select_rows(rows, step)).items():
    for name in names:
      values = _values(group, name)
      summary.append({"method": method, "dataset": dataset,
                      "hparams": dict(hparams), "metric": name,
                      **_spread(values),
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


def ifp_summary(rows: Sequence[Row]) -> list[Entry]:
  """Per factor (the annealing test's `factor` hyperparameter, sorted; -1 =
  whole dataset): factor, n_seeds, n_froze (a finite IFP), median / low
  (10%) / high (90%) of the finite IFPs (None without any), and
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
                    "n_froze": int(np.isfinite(ifps).sum()), **_spread(ifps),
                    "change_points": points})
  return summary
