"""The report CLI: failure-rate tables and figures over evaluated runs.

  python -m disentax.report --workdirs=runs/a,runs/b [--sweep_root=runs] \
      --metric=mig --threshold=0.1 [--out=DIR] [--step=N] [--nofigures] \
      [--bootstrap_seed=0]

writes OUT/report.md (printed too), report.csv and report.tex (Table 4
layout), report_groups.csv (per group), report_comparisons.csv / .tex (the
groups compared pairwise) and OUT/figures/*.png
(`disentax.reporting.report.run_report`), then lists the files on stderr.
A bad call fails with one line, `error: ...`, before anything is written
(exit status 2 for a bad flag value, 1 for unreadable results).
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

from absl import app, flags

from disentax import cli
from disentax.reporting.report import default_out, run_report
from disentax.results import resolve_workdirs

_WORKDIRS = flags.DEFINE_list(
    "workdirs", [], "Comma-separated run directories holding "
    "results/results.json.")
_SWEEP_ROOT = flags.DEFINE_string(
    "sweep_root", None, "Also report every directory under this one that "
    "holds results/results.json.")
_METRIC = flags.DEFINE_string("metric", "mig", "Metric to threshold.")
_THRESHOLD = flags.DEFINE_float(
    "threshold", 0.1, "A seed fails when its metric is below this.")
_OUT = flags.DEFINE_string(
    "out", None, "Output directory (default: the first workdir's results/, "
    "or SWEEP_ROOT/report).")
_STEP = flags.DEFINE_integer(
    "step", None, "Use the rows of this checkpoint step (default: each "
    "seed's latest evaluated step).")
_BOOTSTRAP_SEED = flags.DEFINE_integer(
    "bootstrap_seed", 0, "Seed of the medians' bootstrap 95% intervals (the "
    "same seed gives the same report).")
_FIGURES = flags.DEFINE_bool(
    "figures", True, "Draw the figures into OUT/figures/ (--nofigures: "
    "tables only).")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {list(argv[1:])}")
  workdirs = resolve_workdirs(_WORKDIRS.value or [], _SWEEP_ROOT.value)
  out = _OUT.value or default_out(_WORKDIRS.value, _SWEEP_ROOT.value)
  markdown, paths = run_report(
      workdirs, out, metric=_METRIC.value, threshold=_THRESHOLD.value,
      step=_STEP.value, figures=_FIGURES.value,
      seed=_BOOTSTRAP_SEED.value)
  print(markdown, end="")
  print(f"\nwrote {len(paths)} files to {out}: "
        + ", ".join(os.path.relpath(p, out) for p in paths), file=sys.stderr)


if __name__ == "__main__":
  cli.run(main)
