"""The whole report over evaluated runs (`run_report`): every table and
figure their results files support, written into one directory.

OUT/report.md (printed by `python -m disentax.report`): a note when any
run's images were rendered by disentax (`render.procedural_note`: not
comparable to published numbers), the failure rates in the DEFT Table 4
layout, the per-group table, the pairwise comparisons
of groups on each dataset, every metric's spread, each run's NMI matrices
and IFP table where it has them, and the figures (linked, with a line for
each one that could not be drawn); report.csv and report.tex (Table 4
layout), report_groups.csv (per group), report_comparisons.csv and
report_comparisons.tex, and OUT/figures/*.png.  Every failure rate and
median comes with its 95% interval (`disentax.reporting.statistics`; the
bootstrap's `seed` is an argument, 0 unless told, so a report is
reproducible).
"""

from __future__ import annotations

import math
import os
import sys
from typing import Callable, Sequence

from disentax.cli import UsageError

from disentax.reporting.figures import write_figures
from disentax.reporting.render import (format_comparisons_latex,
                                       format_comparisons_markdown,
                                       format_ifp_table, format_markdown,
                                       format_metric_summary,
                                       format_nmi_matrices,
                                       format_pivot_latex,
                                       format_pivot_markdown,
                                       procedural_note, statistics_note,
                                       write_comparisons_csv, write_csv,
                                       write_pivot_csv)
from disentax.reporting.tables import (check_metric, comparison_table,
                                       failure_rate_table, ifp_rows,
                                       ifp_summary, metric_names,
                                       metric_summary, nmi_matrix_means,
                                       select_rows)
from disentax.results import RunResults, load_run
from disentax.workdir import (RESULTS_CSV_NAME, RESULTS_JSON_NAME,
                              check_writable, results_dir)

# What run_report writes into its output directory.
MARKDOWN_NAME, CSV_NAME, LATEX_NAME = "report.md", "report.csv", "report.tex"
GROUPS_CSV_NAME, FIGURES_DIR = "report_groups.csv", "figures"
COMPARISONS_CSV_NAME = "report_comparisons.csv"
COMPARISONS_LATEX_NAME = "report_comparisons.tex"
# The output directory of a report over a sweep root (SWEEP_ROOT/report).
SWEEP_REPORT_DIR = "report"


def default_out(workdirs: Sequence[str], sweep_root: str | None) -> str:
  """Where a report goes unless told: the first workdir's results
  directory, else SWEEP_ROOT/report."""
  if workdirs and workdirs[0]:
    return results_dir(workdirs[0])
  return os.path.join(sweep_root, SWEEP_REPORT_DIR)


def _procedural_note(runs: Sequence[RunResults]) -> str | None:
  """`render.procedural_note` over the datasets of the runs whose images
  disentax rendered itself (as their results files record it), else None."""
  datasets = sorted({row["dataset"] for run in runs if run.dataset_procedural
                     for row in run.rows})
  return procedural_note(datasets) if datasets else None


def _run_sections(runs: Sequence[RunResults], seed: int) -> list[str]:
  """Markdown sections for each run's NMI matrices and IFP table (their
  arrays belong to the latest evaluated step, so rows are taken there)."""
  sections = []
  for run in runs:
    latest = select_rows(run.rows)
    if run.arrays is not None and "nmi_matrix" in run.arrays:
      labels = run.factor_labels(run.arrays["nmi_matrix"].shape[-1])
      sections.append(f"## NMI matrices of {run.workdir} (latest evaluated "
                      f"step)\n\n" + format_nmi_matrices(
                          nmi_matrix_means(latest, run.arrays), labels))
    ifp_table = _ifp_table(run, latest, seed)
    if ifp_table:
      sections.append(f"## Information freezing points of {run.workdir}\n\n"
                      + ifp_table + "\n")
  return sections


def _ifp_table(run: RunResults, rows: Sequence[dict], seed: int
               ) -> str | None:
  """The IFP distribution per factor of an annealing test's `rows` of
  `run` (medians' bootstrap from `seed`), None for rows of other runs."""
  annealing = ifp_rows(rows)
  if not annealing:
    return None
  num_factors = 1 + max(int(r["hparams"]["factor"]) for r in annealing)
  labels = (run.factor_names if run.factor_names
            and len(run.factor_names) >= num_factors
            else run.factor_labels(num_factors))
  return format_ifp_table(ifp_summary(annealing, seed), labels)


def run_summary(run: RunResults, metric: str, threshold: float,
                nmi_table: bool = False, seed: int = 0) -> str:
  """What the evaluation of one run prints: the procedural-data note when
  its images were rendered by disentax, its failure-rate table with 95%
  intervals, its groups compared pairwise (when it has several), every
  metric's spread, the IFP distribution per factor when it has one and,
  with `nmi_table`, each group's NMI matrix.  `seed`: the bootstrap's."""
  note = _procedural_note([run])
  sections = [note + "\n"] if note else []
  rows = run.rows
  if metric in metric_names(rows):
    table = failure_rate_table(rows, metric=metric, threshold=threshold,
                               seed=seed)
    sections.append(format_markdown(table, metric=metric,
                                    threshold=threshold))
    pairs = comparison_table(table)
    if pairs:
      sections.append(format_comparisons_markdown(pairs, metric, threshold))
  if len(metric_names(rows)) > 1:
    sections.append(format_metric_summary(metric_summary(rows, seed=seed)))
  ifp_table = _ifp_table(run, rows, seed)
  if ifp_table:
    sections.append(ifp_table)
  if nmi_table and run.arrays is not None and "nmi_matrix" in run.arrays:
    labels = run.factor_labels(run.arrays["nmi_matrix"].shape[-1])
    sections.append(format_nmi_matrices(nmi_matrix_means(rows, run.arrays),
                                        labels))
  sections.append(statistics_note(seed) + "\n")
  sections.append(f"results: {results_dir(run.workdir)}/"
                  f"{{{RESULTS_JSON_NAME},{RESULTS_CSV_NAME}}}")
  return "\n".join(sections)


def _stderr(line: str) -> None:
  print(line, file=sys.stderr)


def run_report(workdirs: Sequence[str], out: str, *, metric: str = "mig",
               threshold: float = 0.1, step: int | None = None,
               figures: bool = True,
               note: Callable[[str], None] | None = None, seed: int = 0
               ) -> tuple[str, list[str]]:
  """Reads `workdirs`, writes the report into `out`; returns (the Markdown
  report, the paths written).

  Writes report.md (Table 4 layout, the per-group table, the comparisons,
  NMI matrices / IFP tables where the runs have them, and the list of
  figures), report.csv and report.tex (Table 4 layout), report_groups.csv
  (per group), report_comparisons.csv / .tex and, with `figures`,
  OUT/figures/*.png (`figures.write_figures`; `note` receives one line per
  figure skipped, default stderr).  Every median's bootstrap interval is
  drawn from `seed`.  The results are read and
  checked before anything is written (a bad call leaves no half-made
  report), and the tables are written before the figures.

  Raises:
    UsageError: no workdirs, an unknown metric, a threshold that is not a
      number, no rows at `step`.
    PermissionError: `out` is not writable (checked first).
    ValueError / FileNotFoundError: a workdir without results, rows that
      break the schema or are inconsistent.
  """
  if isinstance(workdirs, str):
    workdirs = [workdirs]
  if not workdirs:
    raise UsageError("no workdirs given; pass --workdirs=A,B,... or "
                     "--sweep_root=DIR")
  if not math.isfinite(threshold):
    raise UsageError(f"threshold={threshold}; give a finite number")
  check_writable(out, "the report directory")
  runs = [load_run(w) for w in workdirs]
  rows = [row for run in runs for row in run.rows]
  if not rows:
    raise ValueError(f"the results files of {', '.join(workdirs)} hold no "
                     f"rows")
  check_metric(rows, metric)
  table = failure_rate_table(rows, metric, threshold, step, seed)
  if not table:
    raise UsageError(f"no results rows at step {step}")
  pairs = comparison_table(table)

  # Tables first: they stand even if a figure fails to draw.
  os.makedirs(out, exist_ok=True)
  paths = [os.path.join(out, name) for name in
           (CSV_NAME, LATEX_NAME, GROUPS_CSV_NAME, COMPARISONS_CSV_NAME,
            COMPARISONS_LATEX_NAME)]
  write_pivot_csv(table, paths[0], metric, threshold)
  data_note = _procedural_note(runs)
  with open(paths[1], "w") as f:
    f.write(format_pivot_latex(table, metric, threshold, step, data_note))
  write_csv(table, paths[2])
  write_comparisons_csv(pairs, paths[3])
  with open(paths[4], "w") as f:
    f.write(format_comparisons_latex(pairs, metric, threshold))

  sections = [
      "# Failure rates\n\n" + (data_note + "\n\n" if data_note else "")
      + format_pivot_markdown(table, metric, threshold, step),
      statistics_note(seed) + "\n",
      "## Per group\n\n" + format_markdown(table, metric, threshold),
      "## Comparisons\n\n" + format_comparisons_markdown(pairs, metric,
                                                        threshold),
      "## Every metric\n\n" + format_metric_summary(
          metric_summary(rows, step, seed)),
      *_run_sections(runs, seed),
  ]
  if figures:
    notes: list[str] = []

    def keep_note(line: str) -> None:
      notes.append(line)
      (note or _stderr)(line)

    drawn = write_figures(runs, os.path.join(out, FIGURES_DIR),
                          metric=metric, threshold=threshold, step=step,
                          note=keep_note, seed=seed)
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
