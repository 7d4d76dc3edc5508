"""The results files the evaluation job writes and the report tools read.

`WORKDIR/results/results.json` = {"schema_version": 1, "rows": [row, ...],
"factor_names": [...]}
and `WORKDIR/results/results.csv` (same rows, flattened), one row per member
(= seed x hyperparameter values).  Schema version 1, stable:

  schema_version  int    1
  method          str    objective name, e.g. "beta_vae"
  dataset         str    dataset name, e.g. "dsprites"
  config_hash     str    12 hex chars identifying what the run computes
  step            int    training step of the evaluated checkpoint
  member          int    position on the vmapped member axis
  seed            int    the member's seed
  hparams         dict   hyperparameter name -> value, a list for a
                         sequence-valued one such as DEFT's pressures (CSV:
                         "hp.<name>", a sequence joined by "/")
  status          str    "ok"; "diverged" (training froze it at its first
                         non-finite step, see diverged_at_step); or
                         "non_finite" (parameters or scores not finite);
                         listed, never dropped
  diverged_at_step int|null the step a diverged member was frozen at
  metrics         dict   metric name -> float, null when not finite
                         (CSV: "metric.<name>")

Per-member arrays (e.g. the NMI matrix I(z_j; c_k) / H(c_k), [M, d, F], and
MIG per factor) go to `WORKDIR/results/arrays.npz`, each with the member
axis first, in member order.

Files are replaced atomically, so a failed evaluation never leaves a
half-written results file behind.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any, Mapping, Sequence

import numpy as np

from disentax.workdir import (arrays_path, results_csv_path, results_dir,
                              results_json_path, write_json, write_npz,
                              write_text)

SCHEMA_VERSION = 1


def make_rows(*, method: str, dataset: str, config_hash: str, step: int,
              members: Sequence[Mapping[str, Any]],
              scores: Mapping[str, Sequence[float]],
              finite_params: Sequence[bool],
              trace_scores: Mapping[str, Sequence[float]] | None = None,
              diverged_at: Sequence[int] | None = None
              ) -> list[dict[str, Any]]:
  """Rows for every member from per-member scalar scores.  A member is
  "diverged" when training froze it (`diverged_at` >= 0: its metrics are
  those of its last finite state, kept for inspection), else "non_finite"
  when its parameters or its `scores` are; `trace_scores` (read off
  training curves, e.g. an IFP, where NaN means "never happened") are
  reported but do not decide the status."""
  rows = []
  for member in members:
    m = member["member"]
    values = {name: float(v[m]) for name, v in scores.items()}
    finite = finite_params[m] and all(math.isfinite(v) for v in values.values())
    values.update({name: float(v[m]) for name, v in (trace_scores or {}).items()})
    frozen_at = None if diverged_at is None or diverged_at[m] < 0 \
        else int(diverged_at[m])
    status = ("diverged" if frozen_at is not None
              else "ok" if finite else "non_finite")
    rows.append({
        "schema_version": SCHEMA_VERSION, "method": method, "dataset": dataset,
        "config_hash": config_hash, "step": int(step), "member": m,
        "seed": member["seed"], "hparams": dict(member["hparams"]),
        "status": status, "diverged_at_step": frozen_at,
        "metrics": {k: (v if math.isfinite(v) else None)
                    for k, v in values.items()}})
  return rows


def flatten(row: Mapping[str, Any]) -> dict[str, Any]:
  """A row as one CSV line: hparams as "hp.<name>" (a sequence joined by
  "/"), metrics as "metric.<name>" (null empty)."""
  flat = {k: v for k, v in row.items() if k not in ("hparams", "metrics")}
  flat.update({f"hp.{k}": ("/".join(f"{x:g}" for x in v)
                            if isinstance(v, (list, tuple)) else v)
               for k, v in row["hparams"].items()})
  flat.update({f"metric.{k}": ("" if v is None else v)
               for k, v in row["metrics"].items()})
  return flat


def csv_text(flat_rows: Sequence[Mapping[str, Any]]) -> str:
  """CSV of flattened rows; the columns are every key, in first-seen order
  (a metric only some rows have is an empty cell in the others)."""
  columns = list(dict.fromkeys(k for r in flat_rows for k in r))
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, columns)
  writer.writeheader()
  writer.writerows(flat_rows)
  return buffer.getvalue()


def write_arrays(workdir: str, arrays: Mapping[str, np.ndarray]) -> str:
  """Writes the per-member arrays; returns the file's path."""
  path = arrays_path(workdir)
  write_npz(path, arrays)
  return path


def read_arrays(workdir: str) -> dict[str, np.ndarray]:
  with np.load(arrays_path(workdir)) as data:
    return {k: data[k] for k in data.files}


def write(workdir: str, rows: Sequence[Mapping[str, Any]],
          factor_names: Sequence[str] | None = None) -> str:
  """Writes results.json (with the dataset's factor names, so reports can
  label factors without the model) and results.csv; returns the results
  directory."""
  document = {"schema_version": SCHEMA_VERSION, "rows": list(rows)}
  if factor_names is not None:
    document["factor_names"] = list(factor_names)
  write_json(results_json_path(workdir), document)
  write_text(results_csv_path(workdir), csv_text([flatten(r) for r in rows]))
  return results_dir(workdir)
