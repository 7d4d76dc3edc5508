"""Failure-rate tables (and the report CLI) from evaluation results files.

The question this answers is the one a single-seed number hides: for each
(method, dataset, hyperparameters) cell of a sweep, how many seeds *fail* to
disentangle (metric below a threshold), and how spread out are the rest?
Seeds whose training or evaluation went non-finite are counted and listed
separately, never silently dropped.

Input is what `python -m disentax.evaluate` writes (schema in
`disentax.results`): `WORKDIR/results/results.json` =
`{"schema_version": 1, "rows": [...], "factor_names": [...] (optional)}`, one
row per (member, step) with `method, dataset, config_hash, step, member,
seed, hparams, status ("ok" | "non_finite" | "diverged"), metrics`;
optionally the
per-member arrays `WORKDIR/results/arrays.npz` and the training-time trace
`WORKDIR/trace.npz` (used by `disentax.figures`).  No model is loaded.

Two layouts of the same counts:
  * per group (`failure_rate_table`, `format_markdown`, `write_csv`): one
    line per (method, dataset, hyperparameters) with mean/median/std;
  * DEFT journal Table 4 (`pivot_by_dataset`, `format_pivot_markdown`,
    `write_pivot_csv`, `format_pivot_latex`): rows = method with its
    hyperparameters, columns = datasets, cell = failure % (failed/scored)
    plus the non-finite count.  (The paper puts datasets on the rows; a sweep
    has more method x hyperparameter rows than datasets, so they go down.)

Usage:
  python -m disentax.report --workdirs=runs/a,runs/b [--sweep_root=runs] \\
      --metric=mig --threshold=0.1 [--out=DIR] [--step=N] [--nofigures]
writes OUT/report.md (printed too), report.csv and report.tex (Table 4
layout), report_groups.csv (per group) and OUT/figures/*.png.
"""

from __future__ import annotations

import csv
import math
import os
import statistics
import sys
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from disentax.results import (STATUSES, RunResults, load_run,
                              resolve_workdirs)
from disentax.workdir import results_dir
# What run_report writes into its output directory.
MARKDOWN_NAME, CSV_NAME, LATEX_NAME = "report.md", "report.csv", "report.tex"
GROUPS_CSV_NAME, FIGURES_DIR = "report_groups.csv", "figures"

Row = dict[str, Any]
Entry = dict[str, Any]


def metric_names(rows: Iterable[Row]) -> list[str]:
  """Every metric name that occurs in `rows`, sorted."""
  return sorted({name for row in rows for name in (row.get("metrics") or {})})


def check_metric(rows: Sequence[Row], metric: str) -> None:
  """Raises ValueError naming the metrics present when `metric` is in no
  row (a typo would otherwise surface as a missing-metric error on row 0)."""
  names = metric_names(rows)
  if metric not in names:
    raise ValueError(f"unknown metric {metric!r}; the results rows have: "
                     f"{', '.join(names) or '(no metrics)'}")


# --------------------------------------------------------------------------
# Grouping rows.


def _hparam_value(value: Any) -> float | tuple[float, ...]:
  """A number, or a tuple for a sequence-valued hyperparameter."""
  if isinstance(value, (list, tuple)):
    return tuple(float(v) for v in value)
  return float(value)


def hparams_key(hparams: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
  """Hashable, sortable form of a row's hyperparameters (for grouping)."""
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
  return ", ".join(f"{k}={_format_value(v)}" for k, v in hparams_key(hparams))


def metric_label(metric: str) -> str:
  """Acronym metrics read better upper-case ("MIG < 0.1"); long names stay."""
  return metric.upper() if len(metric) <= 4 else metric


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
# The failure-rate table, one entry per group.


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


def _number(value: float | None, digits: int = 4) -> str:
  return "n/a" if value is None else f"{value:.{digits}f}"


def _diverged_text(entry: Entry) -> str:
  """"; diverged: seed 3 at step 120" for seeds training froze, else ""."""
  diverged = entry.get("diverged_seeds") or {}
  if not diverged:
    return ""
  return "; diverged: " + ", ".join(
      f"seed {seed} at step {step}" for seed, step in sorted(diverged.items()))


def _non_finite_cell(entry: Entry) -> str:
  if not entry["n_non_finite"]:
    return "0"
  seeds = ", ".join(str(s) for s in entry["non_finite_seeds"])
  return f"{entry['n_non_finite']} (seeds {seeds}{_diverged_text(entry)})"


def _totals(table: Sequence[Entry]) -> str:
  n = {k: sum(e[k] for e in table)
       for k in ("n_seeds", "n_scored", "n_failed", "n_non_finite")}
  return (f"{n['n_seeds']} seeds in {len(table)} groups, {n['n_scored']} "
          f"scored, {n['n_failed']} failed, {n['n_non_finite']} non-finite")


def format_markdown(table: Sequence[Entry], metric: str,
                    threshold: float) -> str:
  """The per-group table as Markdown, headed by what "failure" means and the
  seed counts."""
  name = metric_label(metric)
  lines = [
      f"Failure rate by {name} (failure = {name} < {threshold:g}): "
      f"{_totals(table)} "
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


def _csv_cell(value: Any) -> Any:
  """Lists space-separated, None empty, floats at full precision."""
  if isinstance(value, list):
    return " ".join(str(v) for v in value)
  if value is None:
    return ""
  if isinstance(value, float):
    return repr(value)
  return value


def write_csv(table: Sequence[Entry], path: str) -> None:
  """The per-group table as CSV (full precision; list cells space-separated,
  undefined statistics empty)."""
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(CSV_COLUMNS)
    for e in table:
      writer.writerow([format_hparams(e[c]) if c == "hparams" else
                       _csv_cell(e[c]) for c in CSV_COLUMNS])


# --------------------------------------------------------------------------
# DEFT journal Table 4 layout: methods (with hyperparameters) x datasets.


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


def _pivot_cell(entry: Entry | None) -> str | None:
  """"33.3 (1/3; 1 non-finite)"; None when there is no such group."""
  if entry is None:
    return None
  text = (f"{_number(entry['failure_rate'], 1)} "
          f"({entry['n_failed']}/{entry['n_scored']}")
  if entry["n_non_finite"]:
    text += f"; {entry['n_non_finite']} non-finite"
  return text + ")"


def _step_text(step: int | None) -> str:
  return ("each seed's latest evaluated step" if step is None
          else f"step {step}")


def pivot_caption(table: Sequence[Entry], metric: str, threshold: float,
                  step: int | None = None) -> str:
  """What the Table 4 layout shows: metric, threshold, cell format, seeds."""
  name = metric_label(metric)
  sizes = [e["n_seeds"] for e in table]
  per_cell = (f"; {min(sizes)}-{max(sizes)} seeds per cell"
              if sizes and min(sizes) != max(sizes) else
              f"; {sizes[0]} seeds per cell" if sizes else "")
  return (f"Failure rate (%) by {name}: a seed fails when {name} < "
          f"{threshold:g} (at {_step_text(step)}). Rows: method "
          f"(hyperparameters); columns: dataset; cell: failure % "
          f"(failed/scored), non-finite seeds are not scored and are counted "
          f"apart. {_totals(table)}{per_cell}.")


def _non_finite_notes(table: Sequence[Entry]) -> list[str]:
  return [f"{e['method']} ({format_hparams(e['hparams'])}) on "
          f"{e['dataset']}: seed{'s' if e['n_non_finite'] > 1 else ''} "
          f"{', '.join(str(s) for s in e['non_finite_seeds'])}"
          f"{_diverged_text(e)}"
          for e in table if e["n_non_finite"]]


def format_pivot_markdown(table: Sequence[Entry], metric: str,
                          threshold: float, step: int | None = None) -> str:
  """The Table 4 layout as Markdown: caption, table, non-finite seeds."""
  datasets, rows = pivot_by_dataset(table)
  lines = [pivot_caption(table, metric, threshold, step), "",
           "| method | hyperparameters | " + " | ".join(datasets) + " |",
           "|---|---|" + "---:|" * len(datasets)]
  for row in rows:
    cells = [_pivot_cell(row["cells"].get(d)) or "-" for d in datasets]
    lines.append(f"| {row['method']} | {format_hparams(row['hparams'])} | "
                 + " | ".join(cells) + " |")
  notes = _non_finite_notes(table)
  lines += ["", "Non-finite seeds (not scored): "
            + ("; ".join(notes) if notes else "none") + "."]
  return "\n".join(lines) + "\n"


PIVOT_FIELDS = ("failure_rate", "n_failed", "n_scored", "n_non_finite",
                "non_finite_seeds", "n_seeds")


def write_pivot_csv(table: Sequence[Entry], path: str, metric: str,
                    threshold: float) -> None:
  """The Table 4 layout as CSV: one line per (method, hparams), and per
  dataset the columns `DATASET:failure_rate` (%), `:n_failed`, `:n_scored`,
  `:n_non_finite`, `:non_finite_seeds` (space-separated), `:n_seeds`; empty
  where the row was not run on that dataset.  `metric` and `threshold` are
  columns too, so the file says what "failure" meant."""
  datasets, rows = pivot_by_dataset(table)
  header = ["metric", "threshold", "method", "hparams"]
  header += [f"{d}:{field}" for d in datasets for field in PIVOT_FIELDS]
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    for row in rows:
      cells = [metric, repr(float(threshold)), row["method"],
               format_hparams(row["hparams"])]
      for d in datasets:
        entry = row["cells"].get(d)
        cells += [_csv_cell(entry[field]) if entry else ""
                  for field in PIVOT_FIELDS]
      writer.writerow(cells)


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%",
                  "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "<": r"\textless{}", ">": r"\textgreater{}"}


def latex_escape(text: str) -> str:
  """`text` with LaTeX's special characters escaped (beta_vae -> beta\\_vae)."""
  return "".join(_LATEX_SPECIAL.get(c, c) for c in text)


def format_pivot_latex(table: Sequence[Entry], metric: str, threshold: float,
                       step: int | None = None) -> str:
  """The Table 4 layout as a LaTeX `table` with a booktabs `tabular`
  (needs \\usepackage{booktabs}), captioned like the Markdown, non-finite
  seeds listed under it."""
  datasets, rows = pivot_by_dataset(table)
  lines = [
      "% Failure-rate table (DEFT journal Table 4 layout), written by "
      "disentax.report; needs \\usepackage{booktabs}.",
      "\\begin{table}[t]",
      "  \\centering",
      "  \\caption{" + latex_escape(pivot_caption(table, metric, threshold,
                                                step)) + "}",
      "  \\label{tab:failure-rate-" + latex_escape(metric) + "}",
      "  \\begin{tabular}{ll" + "r" * len(datasets) + "}",
      "    \\toprule",
      "    Method & Hyperparameters & "
      + " & ".join(latex_escape(d) for d in datasets) + " \\\\",
      "    \\midrule",
  ]
  for row in rows:
    cells = [latex_escape(_pivot_cell(row["cells"].get(d)) or "--")
             for d in datasets]
    lines.append(f"    {latex_escape(row['method'])} & "
                 f"{latex_escape(format_hparams(row['hparams']))} & "
                 + " & ".join(cells) + " \\\\")
  notes = _non_finite_notes(table)
  lines += ["    \\bottomrule", "  \\end{tabular}",
            "  \\par\\smallskip\\footnotesize Non-finite seeds (not scored): "
            + latex_escape("; ".join(notes) if notes else "none") + ".",
            "\\end{table}"]
  return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# Further tables: NMI matrices and information freezing points.


def metric_summary(rows: Sequence[Row], step: int | None = None) -> str:
  """Every metric of the rows, per (method, dataset, hparams) group: the
  median over the group's finite seeds and its 10-90% range, as Markdown
  (one row per group and metric, so a battery of twenty metrics stays
  readable).  Seeds without a finite value are counted, not dropped."""
  names = metric_names(rows)
  lines = ["| method | dataset | hyperparameters | metric | median | "
           "10% | 90% | finite / seeds |", "|---|---|---|---|---:|---:|---:|"
           "---:|"]
  for (method, dataset, hparams), group in group_rows(
      select_rows(rows, step)).items():
    for name in names:
      values = np.asarray([v for v in ((r.get("metrics") or {}).get(name)
                                       for r in group)
                           if v is not None and math.isfinite(v)], float)
      if values.size:
        low, median, high = np.quantile(values, [0.1, 0.5, 0.9])
        stats = f"{median:.4g} | {low:.4g} | {high:.4g}"
      else:
        stats = "n/a | n/a | n/a"
      lines.append(f"| {method} | {dataset} | "
                   f"{format_hparams(dict(hparams))} | {name} | {stats} | "
                   f"{values.size}/{len(group)} |")
  return "\n".join(lines) + "\n"


def format_nmi_matrices(rows: Sequence[Row], arrays: dict[str, np.ndarray],
                        factor_names: Sequence[str]) -> str:
  """Each group's NMI matrix I(z_j; c_k) / H(c_k) averaged over its
  finite seeds (DEFT journal Fig. 11b), one Markdown table per group."""
  if "nmi_matrix" not in arrays:
    raise ValueError("no nmi_matrix in the results arrays; the metric must "
                     "be 'mig' (it reports the NMI matrix)")
  nmi = arrays["nmi_matrix"]  # [M, d, F]
  out = []
  for (method, dataset, hparams), group in group_rows(rows).items():
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


# --------------------------------------------------------------------------
# The whole report, and the CLI.


def _run_sections(runs: Sequence[RunResults]) -> list[str]:
  """Markdown sections for each run's NMI matrices and IFP table (their
  arrays belong to the latest evaluated step, so rows are taken there)."""
  sections = []
  for run in runs:
    latest = select_rows(run.rows)
    if run.arrays is not None and "nmi_matrix" in run.arrays:
      labels = run.factor_labels(run.arrays["nmi_matrix"].shape[-1])
      sections.append(f"## NMI matrices of {run.workdir} (latest evaluated "
                      f"step)\n\n"
                      + format_nmi_matrices(latest, run.arrays, labels))
    ifp_rows = [r for r in latest if "ifp" in (r.get("metrics") or {})
                and "factor" in r["hparams"]]
    if ifp_rows:
      num_factors = 1 + max(int(r["hparams"]["factor"]) for r in ifp_rows)
      labels = (run.factor_names if run.factor_names
                and len(run.factor_names) >= num_factors
                else run.factor_labels(num_factors))
      sections.append(f"## Information freezing points of {run.workdir}\n\n"
                      + ifp_table(ifp_rows, labels) + "\n")
  return sections


def run_report(workdirs: Sequence[str], out: str, *, metric: str = "mig",
               threshold: float = 0.1, step: int | None = None,
               figures: bool = True,
               note: Callable[[str], None] | None = None
               ) -> tuple[str, list[str]]:
  """Reads `workdirs`, writes the report into `out`; returns (the Markdown
  report, the paths written).

  Writes report.md (Table 4 layout, the per-group table, NMI matrices / IFP
  tables where the runs have them, and the list of figures), report.csv and
  report.tex (Table 4 layout), report_groups.csv (per group) and, with
  `figures`, OUT/figures/*.png (`disentax.figures.write_figures`; `note`
  receives one line per figure skipped, default stderr).  The results are
  read and checked before anything is written (a bad call leaves no
  half-made report), and the tables are written before the figures.

  Raises:
    ValueError / FileNotFoundError: no workdirs, a workdir without results,
      an unknown metric, inconsistent rows.
  """
  if isinstance(workdirs, str):
    workdirs = [workdirs]
  if not workdirs:
    raise ValueError("no workdirs given; pass --workdirs=A,B,... or "
                     "--sweep_root=DIR")
  runs = [load_run(w) for w in workdirs]
  rows = [row for run in runs for row in run.rows]
  if not rows:
    raise ValueError(f"the results files of {', '.join(workdirs)} hold no "
                     f"rows")
  check_metric(rows, metric)
  table = failure_rate_table(rows, metric, threshold, step)
  if not table:
    raise ValueError(f"no results rows at step {step}")

  # Tables first: they stand even if a figure fails to draw.
  os.makedirs(out, exist_ok=True)
  paths = [os.path.join(out, name) for name in
           (CSV_NAME, LATEX_NAME, GROUPS_CSV_NAME)]
  write_pivot_csv(table, paths[0], metric, threshold)
  with open(paths[1], "w") as f:
    f.write(format_pivot_latex(table, metric, threshold, step))
  write_csv(table, paths[2])

  sections = [
      "# Failure rates\n\n" + format_pivot_markdown(table, metric, threshold,
                                                    step),
      "## Per group\n\n" + format_markdown(table, metric, threshold),
      "## Every metric\n\n" + metric_summary(rows, step),
      *_run_sections(runs),
  ]
  if figures:
    # Imported here: matplotlib is only needed (and paid for) with figures.
    from disentax import figures as figures_lib
    notes: list[str] = []

    def keep_note(line: str) -> None:
      notes.append(line)
      (note or (lambda s: print(s, file=sys.stderr)))(line)

    drawn = figures_lib.write_figures(
        workdirs, os.path.join(out, FIGURES_DIR), metric=metric,
        threshold=threshold, step=step, note=keep_note)
    paths += drawn
    lines = [f"- ![{os.path.basename(p)}]"
             f"({os.path.relpath(p, out).replace(os.sep, '/')})"
             for p in drawn]
    lines += [f"- not drawn: {n}" for n in notes]
    sections.append("## Figures\n\n" + "\n".join(lines) + "\n")
  markdown = "\n".join(sections)
  paths.append(os.path.join(out, MARKDOWN_NAME))
  with open(paths[-1], "w") as f:
    f.write(markdown)
  return markdown, paths


def main(argv: Sequence[str]) -> None:
  """The CLI (flags from `_define_flags`): prints report.md, lists files."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  if len(argv) > 1:
    raise SystemExit(f"error: unexpected arguments {list(argv[1:])}")
  flag_values = flags.FLAGS
  try:
    workdirs = resolve_workdirs(flag_values.workdirs or [],
                                flag_values.sweep_root)
    out = flag_values.out or (
        results_dir(flag_values.workdirs[0])
        if flag_values.workdirs and flag_values.workdirs[0]
        else os.path.join(flag_values.sweep_root, "report"))
    markdown, paths = run_report(
        workdirs, out, metric=flag_values.metric,
        threshold=flag_values.threshold, step=flag_values.step,
        figures=flag_values.figures)
  except (OSError, ValueError) as e:
    raise SystemExit(f"error: {e}") from None
  print(markdown, end="")
  print(f"\nwrote {len(paths)} files to {out}: "
        + ", ".join(os.path.relpath(p, out) for p in paths), file=sys.stderr)


def _define_flags() -> None:
  """CLI flags, defined only when run as a program (so importing this module
  never clashes with another tool's flags)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_list("workdirs", [],
                    "Comma-separated run directories holding "
                    "results/results.json.")
  flags.DEFINE_string("sweep_root", None,
                      "Also report every directory under this one that holds "
                      "results/results.json.")
  flags.DEFINE_string("metric", "mig", "Metric to threshold.")
  flags.DEFINE_float("threshold", 0.1,
                     "A seed fails when its metric is below this.")
  flags.DEFINE_string("out", None,
                      "Output directory (default: the first workdir's "
                      "results/, or SWEEP_ROOT/report).")
  flags.DEFINE_integer("step", None,
                       "Use the rows of this checkpoint step (default: each "
                       "seed's latest evaluated step).")
  flags.DEFINE_bool("figures", True,
                    "Draw the figures into OUT/figures/ (--nofigures: "
                    "tables only).")


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  _define_flags()
  app.run(main)
