"""The whole report over evaluated runs (`run_report`): every table and
figure their results files support, written into one directory.

OUT/report.md (printed by `python -m disentax.report`): the failure rates
in the DEFT Table 4 layout, the per-group table, every metric's spread,
each run's NMI matrices and IFP table where it has them, and the figures
(linked, with a line for each one that could not be drawn);
report.csv and report.tex (Table 4 layout), report_groups.csv (per group)
and OUT/figures/*.png.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Callable, Sequence

from disentax.cli import UsageError

from disentax.reporting.figures import write_figures
from disentax.reporting.render import (format_ifp_table, format_markdown,
                                       format_metric_summary,
                                       format_nmi_matrices,
                                       format_pivot_latex,
                                       format_pivot_markdown, write_csv,
                                       write_pivot_csv)
from disentax.reporting.tables import (check_metric, failure_rate_table,
                                       ifp_rows, ifp_summary, metric_names,
                                       metric_summary, nmi_matrix_means,
                                       select_rows)
from disentax.results import RunResults, load_run
from disentax.workdir import (RESULTS_CSV_NAME, RESULTS_JSON_NAME,
                              check_writable, results_dir)

# What run_report writes into its output directory.
MARKDOWN_NAME, CSV_NAME, LATEX_NAME = "report.md", "report.csv", "report.tex"
GROUPS_CSV_NAME, FIGURES_DIR = "report_groups.csv", "figures"
# The output directory of a report over a sweep root (SWEEP_ROOT/report).
SWEEP_REPORT_DIR = "report"


def default_out(workdirs: Sequence[str], sweep_root: str | None) -> str:
  """Where a report goes unless told: the first workdir's results
  directory, else SWEEP_ROOT/report."""
  if workdirs and workdirs[0]:
    return results_dir(workdirs[0])
  return os.path.join(sweep_root, SWEEP_REPORT_DIR)


def _run_sections(runs: Sequence[RunResults]) -> list[str]:
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
    ifp_table = _ifp_table(run, latest)
    if ifp_table:
      sections.append(f"## Information freezing points of {run.workdir}\n\n"
                      + ifp_table + "\n")
  return sections


def _ifp_table(run: RunResults, rows: Sequence[dict]) -> str | None:
  """The IFP distribution per factor of an annealing test's `rows` of
  `run`, None for rows of other runs."""
  annealing = ifp_rows(rows)
  if not annealing:
    return None
  num_factors = 1 + max(int(r["hparams"]["factor"]) for r in annealing)
  labels = (run.factor_names if run.factor_names
            and len(run.factor_names) >= num_factors
            else run.factor_labels(num_factors))
  return format_ifp_table(ifp_summary(annealing), labels)


def run_summary(run: RunResults, metric: str, threshold: float,
                nmi_table: bool = False) -> str:
  """What the evaluation of one run prints: its failure-rate table, every
  metric's spread, the IFP distribution per factor when it has one and,
  with `nmi_table`, each group's NMI matrix."""
  sections = []
  rows = run.rows
  if metric in metric_names(rows):
    sections.append(format_markdown(failure_rate_table(rows, metric=metric,
                                                       threshold=threshold),
                                    metric=metric, threshold=threshold))
  if len(metric_names(rows)) > 1:
    sections.append(format_metric_summary(metric_summary(rows)))
  ifp_table = _ifp_table(run, rows)
  if ifp_table:
    sections.append(ifp_table)
  if nmi_table and run.arrays is not None and "nmi_matrix" in run.arrays:
    labels = run.factor_labels(run.arrays["nmi_matrix"].shape[-1])
    sections.append(format_nmi_matrices(nmi_matrix_means(rows, run.arrays),
                                        labels))
  sections.append(f"results: {results_dir(run.workdir)}/"
                  f"{{{RESULTS_JSON_NAME},{RESULTS_CSV_NAME}}}")
  return "\n".join(sections)


def _stderr(line: str) -> None:
  print(line, file=sys.stderr)


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
  `figures`, OUT/figures/*.png (`figures.write_figures`; `note` receives
  one line per figure skipped, default stderr).  The results are read and
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
  table = failure_rate_table(rows, metric, threshold, step)
  if not table:
    raise UsageError(f"no results rows at step {step}")

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
      "## Every metric\n\n" + format_metric_summary(
          metric_summary(rows, step)),
      *_run_sections(runs),
  ]
  if figures:
    notes: list[str] = []

    def keep_note(line: str) -> None:
      notes.append(line)
      (note or _stderr)(line)

    drawn = write_figures(runs, os.path.join(out, FIGURES_DIR),
                          metric=metric, threshold=threshold, step=step,
                          note=keep_note)
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
