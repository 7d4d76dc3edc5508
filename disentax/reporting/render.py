"""Report tables as text: Markdown (what `python -m disentax.report` prints
and writes to report.md), CSV and LaTeX (booktabs), from the numbers of
`disentax.reporting.tables`.

  * per group: `format_markdown`, `write_csv`;
  * DEFT journal Table 4 layout: `format_pivot_markdown`, `write_pivot_csv`,
    `format_pivot_latex` (cell = failure % (failed/scored) plus the
    non-finite count);
  * every metric's spread (`format_metric_summary`), group-mean NMI
    matrices (`format_nmi_matrices`), IFPs per factor (`format_ifp_table`).

Every table says what "failure" meant and how many seeds it counts, and
lists non-finite seeds apart rather than dropping them; a report over data
disentax rendered itself carries `procedural_note`.
"""

from __future__ import annotations

import csv
from typing import Any, Sequence

from disentax.reporting.tables import Entry, format_hparams, pivot_by_dataset


def metric_label(metric: str) -> str:
  """Acronym metrics read better upper-case ("MIG < 0.1"); long names stay."""
  return metric.upper() if len(metric) <= 4 else metric


def procedural_note(datasets: Sequence[str]) -> str:
  """The line heading every table over `datasets` that disentax rendered
  itself (`GroundTruthDataset.procedural`): their numbers measure the
  method on a stand-in, not on the published files."""
  return (f"Note: procedural data ({', '.join(datasets)}): rendered by "
          f"disentax, not read from the original files; not comparable to "
          f"published numbers on the original files.")


# --------------------------------------------------------------------------
# The per-group failure-rate table.


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
                       step: int | None = None, note: str | None = None
                       ) -> str:
  """The Table 4 layout as a LaTeX `table` with a booktabs `tabular`
  (needs \\usepackage{booktabs}), captioned like the Markdown, non-finite
  seeds and then `note` (e.g. `procedural_note`) listed under it."""
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
            + latex_escape("; ".join(notes) if notes else "none") + "."]
  if note:
    lines.append("  \\par " + latex_escape(note))
  lines.append("\\end{table}")
  return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# Further tables: every metric, NMI matrices, information freezing points.


def format_metric_summary(summary: Sequence[Entry]) -> str:
  """`tables.metric_summary` as Markdown: one line per group and metric
  (so a battery of twenty metrics stays readable) with the median, the
  10-90% range and finite / seeds."""
  lines = ["| method | dataset | hyperparameters | metric | median | "
           "10% | 90% | finite / seeds |", "|---|---|---|---|---:|---:|---:|"
           "---:|"]
  for e in summary:
    stats = ("n/a | n/a | n/a" if e["median"] is None else
             f"{e['median']:.4g} | {e['low']:.4g} | {e['high']:.4g}")
    lines.append(f"| {e['method']} | {e['dataset']} | "
                 f"{format_hparams(e['hparams'])} | {e['metric']} | {stats} "
                 f"| {e['n_finite']}/{e['n_seeds']} |")
  return "\n".join(lines) + "\n"


def format_nmi_matrices(means: Sequence[Entry],
                        factor_names: Sequence[str]) -> str:
  """`tables.nmi_matrix_means` as one Markdown table per group: latents
  down, `factor_names` across, two decimals."""
  out = []
  for e in means:
    title = (f"NMI matrix, {e['method']} on {e['dataset']} "
             f"({format_hparams(e['hparams'])}), mean of "
             f"{len(e['members'])} seeds")
    mean = e["mean"]
    if mean is None:
      out.append(f"{title}: no finite seed\n")
      continue
    header = "| latent | " + " | ".join(factor_names) + " |"
    lines = [title, "", header, "|---" * (mean.shape[1] + 1) + "|"]
    lines += [f"| z{j} | " + " | ".join(f"{v:.2f}" for v in mean[j]) + " |"
              for j in range(mean.shape[0])]
    out.append("\n".join(lines) + "\n")
  return "\n".join(out)


def format_ifp_table(summary: Sequence[Entry],
                     factor_names: Sequence[str]) -> str:
  """`tables.ifp_summary` as a Markdown table (no final newline): per
  factor the seeds, how many froze, the IFP median and 10-90% range, and
  the change points' medians."""
  lines = ["| factor | seeds | froze | IFP median | 10% | 90% | "
           "change points (median) |", "|---|---|---|---|---|---|---|"]
  for e in summary:
    name = ("whole dataset" if e["factor"] < 0
            else factor_names[e["factor"]])
    stats = ("n/a | n/a | n/a" if e["median"] is None else
             f"{e['median']:.1f} | {e['low']:.1f} | {e['high']:.1f}")
    points = ", ".join(f"{p:.1f}" for p in e["change_points"])
    lines.append(f"| {name} | {e['n_seeds']} | {e['n_froze']} | {stats} | "
                 f"{points or '-'} |")
  return "\n".join(lines)
