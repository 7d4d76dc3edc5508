"""Failure-rate tables from evaluation results rows.

The question this answers is the one a single-seed number hides: for each
(method, dataset, hyperparameters) cell of a sweep, how many seeds *fail* to
disentangle (metric below a threshold), and how spread out are the rest?
Seeds whose training or evaluation went non-finite are counted and listed
separately, never silently dropped.

Input is what `python -m disentax.evaluate` writes to
`WORKDIR/results/results.json`: `{"schema_version": 1, "rows": [...]}`, one
row per (member, step) with `method, dataset, config_hash, step, member, seed,
hparams, status ("ok" | "non_finite"), metrics`.

Usage:
  python -m disentax.report --workdirs=runs/a,runs/b --metric=mig \\
      --threshold=0.1 [--out=DIR] [--step=N]
"""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
import sys
from typing import Any, Iterable, Sequence

import numpy as np

from disentax.results import JSON_NAME, RESULTS_DIR, SCHEMA_VERSION

STATUSES = ("ok", "non_finite")

Row = dict[str, Any]


def results_file(workdir: str) -> str:
  """Where the evaluation job of `workdir` writes its rows."""
  return os.path.join(workdir, RESULTS_DIR, JSON_NAME)


def load_rows(workdirs: Sequence[str]) -> list[Row]:
  """All results rows of `workdirs`, concatenated in the given order.

  Raises:
    FileNotFoundError: a workdir has no results file yet (the message says
      which path, and how to produce it).
    ValueError: a file is not a results file of a known schema version.
  """
  if isinstance(workdirs, str):
    workdirs = [workdirs]
  if not workdirs:
    raise ValueError("load_rows: no workdirs given")
  rows: list[Row] = []
  for workdir in workdirs:
    path = results_file(workdir)
    if not os.path.isfile(path):
      raise FileNotFoundError(
          f"no results file at {path}; evaluate the run first with "
          f"`python -m disentax.evaluate --workdir={workdir}`")
    with open(path) as f:
      try:
        data = json.load(f)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(data, dict) or "rows" not in data:
      raise ValueError(
          f"{path} is not a results file (expected an object with "
          f"'schema_version' and 'rows')")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
      raise ValueError(
          f"{path} has schema_version {version!r}; this disentax reads "
          f"schema_version {SCHEMA_VERSION} only")
    for i, row in enumerate(data["rows"]):
      row_version = row.get("schema_version", SCHEMA_VERSION)
      if row_version != SCHEMA_VERSION:
        raise ValueError(
            f"{path}: row {i} has schema_version {row_version!r}; expected "
            f"{SCHEMA_VERSION}")
      rows.append(row)
  return rows


def _hparam_value(value: Any) -> float | tuple[float, ...]:
  """A number, or a tuple for a sequence-valued hyperparameter."""
  if isinstance(value, (list, tuple)):
    return tuple(float(v) for v in value)
  return float(value)


def _hparams_key(hparams: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
  return tuple(sorted((str(k), _hparam_value(v)) for k, v in hparams.items()))


def _format_value(value: float | tuple[float, ...]) -> str:
  if isinstance(value, tuple):
    return "/".join(f"{v:g}" for v in value)
  return f"{value:g}"


def format_hparams(hparams: dict[str, Any]) -> str:
  """`{"beta": 4.0, "pressures": [70, 30]}` -> `"beta=4, pressures=70/30"`
  (`"-"` if none)."""
  if not hparams:
    return "-"
  return ", ".join(f"{k}={_format_value(v)}" for k, v in _hparams_key(hparams))


def _metric_value(row: Row, metric: str, where: str) -> float | None:
  """The row's finite metric value, or None when the seed is non-finite."""
  status = row.get("status")
  if status not in STATUSES:
    raise ValueError(f"{where}: unknown status {status!r}; expected one of "
                     f"{list(STATUSES)}")
  metrics = row.get("metrics") or {}
  if status == "ok" and metric not in metrics:
    raise ValueError(
        f"{where}: metric {metric!r} missing from an 'ok' row; it has "
        f"{sorted(metrics)}")
  value = metrics.get(metric)
  if status != "ok" or value is None:
    return None
  value = float(value)
  return value if math.isfinite(value) else None


def _select_rows(rows: Iterable[Row], step: int | None) -> list[Row]:
  """One row per (method, dataset, hparams, seed): at `step`, or the latest.

  Several evaluated checkpoints of one run would otherwise count a seed
  several times; two rows claiming the same seed at the same step (e.g. one
  workdir passed twice, or two runs with overlapping seeds) are an error.
  """
  chosen: dict[tuple, Row] = {}
  for row in rows:
    if step is not None and int(row["step"]) != step:
      continue
    key = (row["method"], row["dataset"], _hparams_key(row["hparams"]),
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


def failure_rate_table(rows: Sequence[Row], metric: str = "mig",
                       threshold: float = 0.1,
                       step: int | None = None) -> list[dict[str, Any]]:
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
  groups: dict[tuple, list[Row]] = {}
  for row in _select_rows(rows, step):
    key = (row["method"], row["dataset"], _hparams_key(row["hparams"]))
    groups.setdefault(key, []).append(row)
  table = []
  for key in sorted(groups):
    method, dataset, hparams = key
    members = sorted(groups[key], key=lambda r: int(r["seed"]))
    values, failed_seeds, non_finite_seeds = [], [], []
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
        "failed_seeds": failed_seeds,
        "steps": sorted({int(r["step"]) for r in members}),
        "config_hashes": sorted({str(r.get("config_hash")) for r in members}),
    })
  return table


def _number(value: float | None, digits: int = 4) -> str:
  return "n/a" if value is None else f"{value:.{digits}f}"


def _non_finite_cell(entry: dict[str, Any]) -> str:
  if not entry["n_non_finite"]:
    return "0"
  seeds = ", ".join(str(s) for s in entry["non_finite_seeds"])
  return f"{entry['n_non_finite']} (seeds {seeds})"


def format_markdown(table: Sequence[dict[str, Any]], metric: str,
                    threshold: float) -> str:
  """The table as Markdown, headed by what "failure" means and seed counts."""
  # Acronym metrics read better upper-case ("MIG < 0.1"); long names stay.
  name = metric.upper() if len(metric) <= 4 else metric
  n_seeds = sum(e["n_seeds"] for e in table)
  n_scored = sum(e["n_scored"] for e in table)
  n_failed = sum(e["n_failed"] for e in table)
  n_non_finite = sum(e["n_non_finite"] for e in table)
  lines = [
      f"Failure rate by {name} (failure = {name} < {threshold:g}): "
      f"{n_seeds} seeds in {len(table)} groups, {n_scored} scored, "
      f"{n_failed} failed, {n_non_finite} non-finite "
      f"(failure % = failed / scored; non-finite seeds are listed apart).",
      "",
      "| method | dataset | hyperparameters | seeds | failed | failure % | "
      "mean | median | std | non-finite |",
      "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
  ]
  for e in table:
    rate = _number(e["failure_rate"], 1)
    lines.append(
        f"| {e['method']} | {e['dataset']} | {format_hparams(e['hparams'])} "
        f"| {e['n_seeds']} | {e['n_failed']}/{e['n_scored']} | {rate} "
        f"| {_number(e['mean'])} | {_number(e['median'])} "
        f"| {_number(e['std'])} | {_non_finite_cell(e)} |")
  return "\n".join(lines) + "\n"


CSV_COLUMNS = ("method", "dataset", "hparams", "n_seeds", "n_scored",
               "n_failed", "failure_rate", "mean", "median", "std",
               "n_non_finite", "non_finite_seeds", "failed_seeds", "steps",
               "config_hashes")


def write_csv(table: Sequence[dict[str, Any]], path: str) -> None:
  """The table as CSV (full precision; list cells space-separated, undefined
  statistics empty)."""
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(CSV_COLUMNS)
    for e in table:
      cells = []
      for column in CSV_COLUMNS:
        value = e[column]
        if column == "hparams":
          value = format_hparams(value)
        elif isinstance(value, list):
          value = " ".join(str(v) for v in value)
        elif value is None:
          value = ""
        elif isinstance(value, float):
          value = repr(value)
        cells.append(value)
      writer.writerow(cells)


def main(argv: Sequence[str]) -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  if len(argv) > 1:
    raise SystemExit(f"error: unexpected arguments {list(argv[1:])}")
  flag_values = flags.FLAGS
  workdirs = [w for w in flag_values.workdirs if w]
  if not workdirs:
    raise SystemExit("error: --workdirs is empty; give at least one run "
                     "directory")
  out = flag_values.out or os.path.join(workdirs[0], "results")
  try:
    rows = load_rows(workdirs)
    table = failure_rate_table(rows, flag_values.metric,
                               flag_values.threshold, flag_values.step)
  except (OSError, ValueError) as e:
    raise SystemExit(f"error: {e}") from None
  markdown = format_markdown(table, flag_values.metric, flag_values.threshold)
  print(markdown, end="")
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "report.md"), "w") as f:
    f.write(markdown)
  write_csv(table, os.path.join(out, "report.csv"))
  print(f"\nwrote {os.path.join(out, 'report.md')} and "
        f"{os.path.join(out, 'report.csv')}", file=sys.stderr)


def _define_flags() -> None:
  """CLI flags, defined only when run as a program (so importing this module
  never clashes with another tool's flags)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_list("workdirs", None,
                    "Comma-separated run directories holding "
                    "results/results.json.")
  flags.DEFINE_string("metric", "mig", "Metric to threshold.")
  flags.DEFINE_float("threshold", 0.1,
                     "A seed fails when its metric is below this.")
  flags.DEFINE_string("out", None,
                      "Directory for report.md and report.csv (default: the "
                      "first workdir's results/).")
  flags.DEFINE_integer("step", None,
                       "Use the rows of this checkpoint step (default: each "
                       "seed's latest evaluated step).")
  flags.mark_flag_as_required("workdirs")


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  _define_flags()
  app.run(main)


def _groups(rows: Sequence[Row]) -> dict[tuple, list[Row]]:
  """Rows grouped by (method, dataset, hparams), in first-seen order."""
  groups: dict[tuple, list[Row]] = {}
  for row in rows:
    key = (row["method"], row["dataset"], _hparams_key(row["hparams"]))
    groups.setdefault(key, []).append(row)
  return groups


def format_nmi_matrices(rows: Sequence[Row], arrays: dict[str, np.ndarray],
                        factor_names: Sequence[str]) -> str:
  """Each group's NMI matrix I(z_j; c_k) / H(c_k) averaged over its
  finite seeds (DEFT journal Fig. 11b), one Markdown table per group."""
  if "nmi_matrix" not in arrays:
    raise ValueError("no nmi_matrix in the results arrays; the metric must "
                     "be 'mig' (it reports the NMI matrix)")
  nmi = arrays["nmi_matrix"]  # [M, d, F]
  out = []
  for (method, dataset, hparams), group in _groups(rows).items():
    members = [r["member"] for r in group if r["status"] == "ok"]
    title = (f"NMI matrix, {method} on {dataset} "
             f"({format_hparams(dict(hparams))}), mean of {len(members)} "
             "seeds")
    if not members:
      out.append(f"{title}: no finite seed\n")
      continue
    mean = np.nanmean(nmi[members], axis=0)
    header = "| latent | " + " | ".join(factor_names) + " |"
    lines = [title, "", header, "|---" * (mean.shape[1] + 1) + "|"]
    lines += [f"| z{j} | " + " | ".join(f"{v:.2f}" for v in mean[j]) + " |"
              for j in range(mean.shape[0])]
    out.append("\n".join(lines) + "\n")
  return "\n".join(out)


def ifp_table(rows: Sequence[Row], factor_names: Sequence[str]) -> str:
  """Per factor (the annealing test's `factor` hyperparameter; -1 = whole
  dataset): the IFP distribution over seeds, and for the whole dataset the
  medians of the increment's change points (the unsupervised variant), as a
  Markdown table."""
  by_factor: dict[int, list[Row]] = {}
  for row in rows:
    by_factor.setdefault(int(row["hparams"]["factor"]), []).append(row)

  def values(group: list[Row], name: str) -> np.ndarray:
    return np.asarray([np.nan if (r.get("metrics") or {}).get(name) is None
                       else float(r["metrics"][name]) for r in group])

  lines = ["| factor | seeds | froze | IFP median | 10% | 90% | "
           "change points (median) |", "|---|---|---|---|---|---|---|"]
  for factor in sorted(by_factor):
    group = by_factor[factor]
    ifps = values(group, "ifp")
    finite = ifps[np.isfinite(ifps)]
    name = "whole dataset" if factor < 0 else factor_names[factor]
    stats = (" | ".join(f"{q:.1f}" for q in np.quantile(finite, [.5, .1, .9]))
             if finite.size else "n/a | n/a | n/a")
    points = []
    i = 0
    while any(f"change_point_{i}" in (r.get("metrics") or {}) for r in group):
      found = values(group, f"change_point_{i}")
      if np.isfinite(found).any():
        points.append(f"{np.nanmedian(found):.1f}")
      i += 1
    lines.append(f"| {name} | {ifps.size} | {finite.size} | {stats} | "
                 f"{', '.join(points) or '-'} |")
  return "\n".join(lines)
