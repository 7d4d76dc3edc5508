"""Merging every done job's results and report into ROOT/merged/ (`merge`).

(Named `merging`, not `merge`, so the submodule does not share its name with
the `merge` function that `disentax.sweep` exports.)
"""

from __future__ import annotations

import os
from typing import Any

from disentax import results
from disentax.reporting.report import MARKDOWN_NAME, run_report
from disentax.sweep.plan import plan_path
from disentax.sweep.status import job_states
from disentax.workdir import (RESULTS_CSV_NAME, RESULTS_DIR,
                              RESULTS_JSON_NAME, results_json_path,
                              write_json, write_text)

MERGED_DIR = "merged"


def merge(root: str, out: str | None = None, *, metric: str = "mig",
          threshold: float = 0.1, figures: bool = True) -> dict[str, Any]:
  """Merges every done job's results into OUT (default ROOT/merged):
  results.json ({"schema_version", "rows" (each with its "job"), "jobs",
  "missing"}), results.csv (a `job` column, then the results.csv columns)
  and the report (`run_report`) over the done jobs' workdirs (the same
  workdirs `python -m disentax.report --sweep_root=ROOT` finds), with the
  jobs not merged listed at the end of report.md.

  Returns {"rows", "merged" (job names), "missing" (dicts with name, state,
  detail), "paths", "markdown"}.

  Raises:
    ValueError: no done job, or OUT named `results` (the report's
      workdir search would take it for a run).
  """
  out = out or os.path.join(root, MERGED_DIR)
  if os.path.basename(os.path.normpath(out)) == RESULTS_DIR:
    raise ValueError(f"--out={out}: a directory named {RESULTS_DIR!r} "
                     f"would be read as a run's results by the report; "
                     f"choose another name")
  rows, merged, missing, workdirs = [], [], [], []
  for entry in job_states(root):
    has_results = os.path.isfile(results_json_path(entry["workdir"]))
    if entry["state"] != "done" or not has_results:
      detail = entry["detail"] if has_results or entry["state"] != "done" \
          else "done but no results file"
      missing.append({"index": entry["index"], "name": entry["name"],
                      "state": entry["state"], "detail": detail})
      continue
    job_rows = results.load_rows([entry["workdir"]])
    rows += [{"job": entry["name"], **row} for row in job_rows]
    merged.append(entry["name"])
    workdirs.append(entry["workdir"])
  if not merged:
    raise ValueError(f"no job of {plan_path(root)} is done with results yet "
                     f"({len(missing)} missing); see `python -m "
                     f"disentax.sweep status --root={root}`")

  os.makedirs(out, exist_ok=True)
  json_path = os.path.join(out, RESULTS_JSON_NAME)
  write_json(json_path, {
      "schema_version": results.SCHEMA_VERSION, "rows": rows,
      "jobs": merged, "missing": missing})
  flat = [{"job": row["job"], **results.flatten(
      {k: v for k, v in row.items() if k != "job"})} for row in rows]
  csv_path = os.path.join(out, RESULTS_CSV_NAME)
  write_text(csv_path, results.csv_text(flat))

  markdown, paths = run_report(workdirs, out, metric=metric,
                               threshold=threshold, figures=figures)
  section = f"\n## Jobs merged: {len(merged)} of {len(merged) + len(missing)}\n"
  if missing:
    section += ("\nNot merged (not done, so not in the tables above):\n\n"
                + "".join(f"- {m['index']} {m['name']}: {m['state']} "
                          f"({m['detail']})\n" for m in missing))
  markdown += section
  with open(os.path.join(out, MARKDOWN_NAME), "w") as f:
    f.write(markdown)
  return {"rows": rows, "merged": merged, "missing": missing,
          "paths": [json_path, csv_path, *paths], "markdown": markdown}
