"""Merging every done job's results and report into ROOT/merged/ (`merge`).

(Named `merging`, not `merge`, so the submodule does not share its name with
the `merge` function that `disentax.sweep` exports.)
"""

from __future__ import annotations

import csv
import io
import os
from typing import Any

from disentax import report, results, run_log
from disentax.sweep.plan import plan_path
from disentax.sweep.status import job_states

MERGED_DIR = "merged"


def merge(root: str, out: str | None = None, *, metric: str = "mig",
          threshold: float = 0.1, figures: bool = True) -> dict[str, Any]:
  """Merges every done job's results into OUT (default ROOT/merged):
  results.json ({"schema_version", "rows" (each with its "job"), "jobs",
  "missing"}), results.csv (a `job` column, then the results.csv columns)
  and the `disentax.report` report over the done jobs' workdirs (the same
  workdirs `python -m disentax.report --sweep_root=ROOT` finds), with the
  jobs not merged listed at the end of report.md.

  Returns {"rows", "merged" (job names), "missing" (dicts with name, state,
  detail), "paths", "markdown"}.

  Raises:
    ValueError: no done job, or OUT named `results` (the report's
      workdir search would take it for a run).
  """
  out = out or os.path.join(root, MERGED_DIR)
  if os.path.basename(os.path.normpath(out)) == results.RESULTS_DIR:
    raise ValueError(f"--out={out}: a directory named {results.RESULTS_DIR!r} "
                     f"would be read as a run's results by the report; "
                     f"choose another name")
  rows, merged, missing, workdirs = [], [], [], []
  for entry in job_states(root):
    has_results = os.path.isfile(report.results_file(entry["workdir"]))
    if entry["state"] != "done" or not has_results:
      detail = entry["detail"] if has_results or entry["state"] != "done" \
          else "done but no results file"
      missing.append({"index": entry["index"], "name": entry["name"],
                      "state": entry["state"], "detail": detail})
      continue
    job_rows = report.load_rows([entry["workdir"]])
    rows += [{"job": entry["name"], **row} for row in job_rows]
    merged.append(entry["name"])
    workdirs.append(entry["workdir"])
  if not merged:
    raise ValueError(f"no job of {plan_path(root)} is done with results yet "
                     f"({len(missing)} missing); see `python -m "
                     f"disentax.sweep status --root={root}`")

  os.makedirs(out, exist_ok=True)
  json_path = os.path.join(out, results.JSON_NAME)
  run_log.write_json(json_path, {
      "schema_version": results.SCHEMA_VERSION, "rows": rows,
      "jobs": merged, "missing": missing})
  flat = [{"job": row["job"], **results.flatten(
      {k: v for k, v in row.items() if k != "job"})} for row in rows]
  columns = list(dict.fromkeys(k for row in flat for k in row))
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, columns)
  writer.writeheader()
  writer.writerows(flat)
  csv_path = os.path.join(out, results.CSV_NAME)
  with open(csv_path + ".tmp", "w", newline="") as f:
    f.write(buffer.getvalue())
  os.replace(csv_path + ".tmp", csv_path)

  markdown, paths = report.run_report(workdirs, out, metric=metric,
                                      threshold=threshold, figures=figures)
  section = f"\n## Jobs merged: {len(merged)} of {len(merged) + len(missing)}\n"
  if missing:
    section += ("\nNot merged (not done, so not in the tables above):\n\n"
                + "".join(f"- {m['index']} {m['name']}: {m['state']} "
                          f"({m['detail']})\n" for m in missing))
  markdown += section
  with open(os.path.join(out, report.MARKDOWN_NAME), "w") as f:
    f.write(markdown)
  return {"rows": rows, "merged": merged, "missing": missing,
          "paths": [json_path, csv_path, *paths], "markdown": markdown}
