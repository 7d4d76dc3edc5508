"""The results of evaluated runs: the schema, written and read here only.

Writing (the evaluation job, `evaluation.external`): `make_rows`, `write`
and `write_arrays`.  Reading (reports, sweeps, proposals; no model is
loaded): `load_rows`, `load_arrays`, `load_trace`, `load_run` (all of one
workdir, as a `RunResults`, its training curves from metrics.jsonl
included), `find_workdirs` / `resolve_workdirs` (which workdirs to read)
and `frame` (rows as a pandas DataFrame).  Every file is checked against
its schema as it is read, so a consumer never sees a malformed row or misaligned arrays.

`WORKDIR/results/results.json` = {"schema_version": 1, "rows": [row, ...],
"factor_names": [...] (optional), "dataset_procedural": bool (optional:
the images were rendered by disentax in place of a dataset published as
files, `GroundTruthDataset.procedural`)}
and `WORKDIR/results/results.csv` (same rows, flattened), one row per member
(= seed x hyperparameter values) and evaluated step.  Schema version 1,
stable:

  schema_version  int    1
  method          str    objective name, e.g. "beta_vae"
  dataset         str    dataset name, e.g. "dsprites"
  config_hash     str    12 hex chars identifying what the run computes
  step            int    training step of the evaluated checkpoint (the
                         member's own with eval.checkpoint 'best')
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
axis first, in member order.  The training-time trace `WORKDIR/trace.npz`
(written by `disentax.evaluation.trace`) is read here too, the shapes of
the arrays the figures draw checked against `TRACE_SHAPES`.

Files are replaced atomically (`disentax.workdir`), so a failed evaluation
never leaves a half-written results file behind.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
from typing import Any, Mapping, Sequence

import numpy as np

from disentax import run_log
from disentax.cli import UsageError
from disentax.workdir import (RESULTS_DIR, RESULTS_JSON_NAME, arrays_path,
                              read_json, results_csv_path, results_dir,
                              results_json_path, run_log_path, trace_path,
                              write_json, write_npz, write_text)

SCHEMA_VERSION = 1
STATUSES = ("ok", "non_finite", "diverged")
# The columns every row has (`diverged_at_step` came later in version 1: a
# row without it never diverged; a row's own schema_version defaults to the
# file's).
COLUMNS = ("method", "dataset", "config_hash", "step", "member", "seed",
           "hparams", "status", "metrics")
# Each trace array's axes: T trace points, M members, d latents, F factors.
TRACE_SHAPES = {"step": "T", "mig": "T,M", "nmi_matrix": "T,M,d,F",
                "stage": "T,M", "factor_names": "F"}

Row = dict[str, Any]


def make_rows(*, method: str, dataset: str, config_hash: str,
              step: int | Sequence[int],
              members: Sequence[Mapping[str, Any]],
              scores: Mapping[str, Sequence[float]],
              finite_params: Sequence[bool],
              outcome_scores: Mapping[str, Sequence[float]] | None = None,
              diverged_at: Sequence[int] | None = None
              ) -> list[dict[str, Any]]:
  """Rows for every member from per-member scalar scores.  A member is
  "diverged" when training froze it (`diverged_at` >= 0: its metrics are
  those of its last finite state, kept for inspection), else "non_finite"
  when its parameters or its `scores` are; `outcome_scores` (where NaN
  means "never happened", e.g. an IFP) are reported but do not decide the
  status.  `step`: the evaluated step, one for all or one per member."""
  steps = np.broadcast_to(np.asarray(step), (len(members),))
  rows = []
  for member in members:
    m = member["member"]
    values = {name: float(v[m]) for name, v in scores.items()}
    finite = finite_params[m] and all(math.isfinite(v) for v in values.values())
    values.update({name: float(v[m])
                   for name, v in (outcome_scores or {}).items()})
    frozen_at = None if diverged_at is None or diverged_at[m] < 0 \
        else int(diverged_at[m])
    status = ("diverged" if frozen_at is not None
              else "ok" if finite else "non_finite")
    rows.append({
        "schema_version": SCHEMA_VERSION, "method": method, "dataset": dataset,
        "config_hash": config_hash, "step": int(steps[m]), "member": m,
        "seed": member["seed"], "hparams": dict(member["hparams"]),
        "status": status, "diverged_at_step": frozen_at,
        "metrics": {k: (v if math.isfinite(v) else None)
                    for k, v in values.items()}})
  return rows


def flatten(row: Mapping[str, Any], missing: Any = "") -> dict[str, Any]:
  """A row as one CSV line: hparams as "hp.<name>" (a sequence joined by
  "/"), metrics as "metric.<name>" (null as `missing`)."""
  flat = {k: v for k, v in row.items() if k not in ("hparams", "metrics")}
  flat.update({f"hp.{k}": ("/".join(f"{x:g}" for x in v)
                            if isinstance(v, (list, tuple)) else v)
               for k, v in row["hparams"].items()})
  flat.update({f"metric.{k}": (missing if v is None else v)
               for k, v in row["metrics"].items()})
  return flat


def frame(rows: Sequence[Mapping[str, Any]],
          workdirs: Sequence[str] | None = None):
  """Rows as a pandas DataFrame, one line per row: the columns of
  results.csv (`flatten`, a null metric NaN), after a `workdir` column
  when `workdirs` (one per row) are given.  pandas is imported here, so
  reading results needs it only when a DataFrame is asked for."""
  import pandas as pd  # pylint: disable=import-outside-toplevel
  flat = [flatten(row, missing=math.nan) for row in rows]
  if workdirs is not None:
    if len(workdirs) != len(flat):
      raise ValueError(f"frame: {len(workdirs)} workdirs for {len(flat)} "
                       "rows")
    flat = [{"workdir": w, **f} for w, f in zip(workdirs, flat)]
  return pd.DataFrame(flat, columns=list(dict.fromkeys(
      k for f in flat for k in f)))


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


def write(workdir: str, rows: Sequence[Mapping[str, Any]],
          factor_names: Sequence[str] | None = None,
          dataset_procedural: bool | None = None) -> str:
  """Writes results.json (with the dataset's factor names, so reports can
  label factors without the model, and whether its images were procedural,
  so they can say the scores are not comparable to published ones) and
  results.csv; returns the results directory."""
  document = {"schema_version": SCHEMA_VERSION, "rows": list(rows)}
  if factor_names is not None:
    document["factor_names"] = list(factor_names)
  if dataset_procedural is not None:
    document["dataset_procedural"] = bool(dataset_procedural)
  write_json(results_json_path(workdir), document)
  write_text(results_csv_path(workdir), csv_text([flatten(r) for r in rows]))
  return results_dir(workdir)


# --------------------------------------------------------------------------
# Reading.


def _read_results(workdir: str) -> dict[str, Any]:
  """The parsed, schema-checked results.json of `workdir`."""
  path = results_json_path(workdir)
  data = read_json(path, "evaluate the run first with `python -m "
                   f"disentax.evaluate --workdir={workdir}`")
  if not isinstance(data, dict) or "rows" not in data:
    raise ValueError(
        f"{path} is not a results file (expected an object with "
        f"'schema_version' and 'rows')")
  version = data.get("schema_version")
  if version != SCHEMA_VERSION:
    raise ValueError(
        f"{path} has schema_version {version!r}; this disentax reads "
        f"schema_version {SCHEMA_VERSION} only")
  if not isinstance(data["rows"], list):
    raise ValueError(f"{path}: 'rows' must be a list of rows, got "
                     f"{type(data['rows']).__name__}")
  for i, row in enumerate(data["rows"]):
    if not isinstance(row, dict):
      raise ValueError(f"{path}: row {i} is not an object: {row!r:.80}")
    missing = [column for column in COLUMNS if column not in row]
    if missing:
      raise ValueError(
          f"{path}: row {i} has no column {missing[0]!r}"
          f"{f' (nor {missing[1:]})' if missing[1:] else ''}; every row has "
          f"{list(COLUMNS)} (schema version {SCHEMA_VERSION}, "
          "disentax/results.py)")
    if not isinstance(row["hparams"], dict):
      raise ValueError(f"{path}: row {i} column 'hparams' must be an object "
                       f"(name -> value), got {row['hparams']!r:.80}")
    row_version = row.get("schema_version", SCHEMA_VERSION)
    if row_version != SCHEMA_VERSION:
      raise ValueError(
          f"{path}: row {i} has schema_version {row_version!r}; expected "
          f"{SCHEMA_VERSION}")
  names = data.get("factor_names")
  if names is not None and (not isinstance(names, list)
                            or not all(isinstance(n, str) for n in names)):
    raise ValueError(f"{path}: factor_names must be a list of strings, got "
                     f"{names!r}")
  procedural = data.get("dataset_procedural")
  if procedural is not None and not isinstance(procedural, bool):
    raise ValueError(f"{path}: dataset_procedural must be true or false, got "
                     f"{procedural!r}")
  return data


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
    rows.extend(_read_results(workdir)["rows"])
  return rows


def _read_npz(path: str) -> dict[str, np.ndarray] | None:
  """Every array of the .npz at `path` (no pickles), or None if absent."""
  if not os.path.isfile(path):
    return None
  with np.load(path, allow_pickle=False) as data:
    return {k: data[k] for k in data.files}


def load_arrays(workdir: str) -> dict[str, np.ndarray] | None:
  """`WORKDIR/results/arrays.npz` (per-member arrays, member axis first),
  or None if the evaluation wrote none."""
  return _read_npz(arrays_path(workdir))


def load_trace(workdir: str) -> dict[str, np.ndarray] | None:
  """`WORKDIR/trace.npz` (training-time metric trace), or None if absent.

  Arrays (each optional but `step`): step int [T], mig float [T, M],
  nmi_matrix float [T, M, d, F], stage int [T, M] (the objective's stage
  index, -1 for objectives without stages), factor_names str [F].  Shapes
  are checked against each other so a figure never plots misaligned axes.
  """
  path = trace_path(workdir)
  trace = _read_npz(path)
  if trace is None:
    return None
  if "step" not in trace:
    raise ValueError(f"{path}: no 'step' array (has {sorted(trace)})")
  sizes: dict[str, int] = {}
  for name, axes in TRACE_SHAPES.items():
    if name not in trace:
      continue
    shape = trace[name].shape
    axes = axes.split(",")
    if len(shape) != len(axes):
      raise ValueError(f"{path}: {name} has shape {shape}; expected "
                       f"[{', '.join(axes)}]")
    for axis, size in zip(axes, shape):
      if sizes.setdefault(axis, size) != size:
        raise ValueError(f"{path}: {name} has {axis}={size} but another "
                         f"array has {axis}={sizes[axis]}")
  return trace


@dataclasses.dataclass
class RunResults:
  """Everything the evaluation and training left in one workdir that a
  report reads (no model)."""
  workdir: str
  rows: list[Row]
  factor_names: list[str] | None  # results.json, else trace.npz, else None
  arrays: dict[str, np.ndarray] | None
  trace: dict[str, np.ndarray] | None
  # The images were rendered by disentax (None: results written before
  # this was recorded).
  dataset_procedural: bool | None = None
  # metrics.jsonl as arrays (`run_log.read_curves`), None without one.
  curves: dict[str, np.ndarray] | None = None

  def factor_labels(self, num_factors: int) -> list[str]:
    """The factor names when known and of the right length, else c0, c1..."""
    if self.factor_names and len(self.factor_names) == num_factors:
      return list(self.factor_names)
    return [f"c{k}" for k in range(num_factors)]


def load_run(workdir: str) -> RunResults:
  """Reads the results, arrays, trace and training curves of one
  workdir."""
  data = _read_results(workdir)
  trace = load_trace(workdir)
  names = data.get("factor_names")
  if names is None and trace is not None and "factor_names" in trace:
    names = [str(n) for n in trace["factor_names"]]
  return RunResults(workdir=workdir, rows=list(data["rows"]),
                    factor_names=names, arrays=load_arrays(workdir),
                    trace=trace,
                    dataset_procedural=data.get("dataset_procedural"),
                    curves=run_log.read_curves(run_log_path(workdir)))


def find_workdirs(sweep_root: str) -> list[str]:
  """Every directory under `sweep_root` (itself included) holding
  results/results.json, in sorted path order; not descending into a found
  workdir (its checkpoints can be large trees)."""
  if not os.path.isdir(sweep_root):
    raise UsageError(f"sweep root {sweep_root} is not a directory")
  found = []
  for path, dirnames, _ in os.walk(sweep_root):
    if os.path.isfile(results_json_path(path)):
      found.append(path)
      dirnames[:] = []
    else:
      dirnames.sort()
  return found


def resolve_workdirs(workdirs: Sequence[str],
                     sweep_root: str | None = None) -> list[str]:
  """The explicit `workdirs` then those found under `sweep_root`, each once.

  Raises:
    ValueError: nothing to read, or a sweep root without results.
  """
  found = [w for w in workdirs if w]
  if sweep_root:
    under = find_workdirs(sweep_root)
    if not under:
      raise ValueError(
          f"no directory under {sweep_root} holds "
          f"{RESULTS_DIR}/{RESULTS_JSON_NAME}; evaluate each run first with "
          f"`python -m disentax.evaluate --workdir=RUN`")
    found += under
  if not found:
    raise UsageError("no workdirs given; pass --workdirs=A,B,... or "
                     "--sweep_root=DIR")
  unique, seen = [], set()
  for workdir in found:
    key = os.path.realpath(workdir)
    if key not in seen:
      seen.add(key)
      unique.append(workdir)
  return unique
