"""The files of a run's workdir, each named here once, and the atomic writers
that produce them.

  WORKDIR/
    config.json          the run's config (written by training)
    metrics.jsonl        per-member training curves (`disentax.run_log`)
    tensorboard/<member>/  the same curves (and image panels) as TensorBoard
                         event files, one run per member
                         (`disentax.tracking`)
    wandb/               W&B's files when config.log.wandb is on
    checkpoints/<step>/  Orbax checkpoints (`disentax.checkpoint`)
    trace.npz            evaluators scored while training
                         (`disentax.evaluation.trace`)
    job.json             a sweep job's recorded state (`disentax.sweep`)
    results/             what the evaluation job writes (`disentax.results`)
      results.json       one row per member and evaluated step
      results.csv        the same rows, flattened
      arrays.npz         per-member arrays, member axis first
      timings.json       seconds each metric took
      traversals/        latent traversal PNGs
    pictures/            `python -m disentax.visualize` (`--out` elsewhere)
      metric_correlations.png   metrics against each other over members
      member<m>_seed<s>/ one chosen member's pictures: reconstructions.png,
                         samples.png, traversals.png, traversals.gif,
                         responses.png

Every other module asks this one for a path, so the layout is read and
written in one place (old workdirs keep reading as long as these names
stay).  The writers replace a file atomically: a crash leaves the old file
or the new one, never half of one, which is what lets a preempted job be
rerun over its own workdir (files outside a workdir that must never be
half-written, such as a sweep's plan, use them too).
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import IO, Any, Callable, Mapping

import numpy as np

CONFIG_NAME = "config.json"
RUN_LOG_NAME = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
TRACE_NAME = "trace.npz"
JOB_NAME = "job.json"
RESULTS_DIR = "results"
RESULTS_JSON_NAME = "results.json"
RESULTS_CSV_NAME = "results.csv"
ARRAYS_NAME = "arrays.npz"
TIMINGS_NAME = "timings.json"
TRAVERSALS_DIR = "traversals"
PICTURES_DIR = "pictures"
METRIC_CORRELATIONS_NAME = "metric_correlations.png"
RECONSTRUCTIONS_NAME = "reconstructions.png"
SAMPLES_NAME = "samples.png"
TRAVERSALS_NAME = "traversals.png"
TRAVERSALS_GIF_NAME = "traversals.gif"
RESPONSES_NAME = "responses.png"
TENSORBOARD_DIR = "tensorboard"
WANDB_DIR = "wandb"


def config_path(workdir: str) -> str:
  """The run's config, as training saved it (JSON)."""
  return os.path.join(workdir, CONFIG_NAME)


def run_log_path(workdir: str) -> str:
  """The per-member training curves (JSON lines)."""
  return os.path.join(workdir, RUN_LOG_NAME)


def tensorboard_dir(workdir: str) -> str:
  """The TensorBoard log directory: one subdirectory (a TensorBoard run)
  per member."""
  return os.path.join(workdir, TENSORBOARD_DIR)


def wandb_dir(workdir: str) -> str:
  """Where W&B keeps its files of the run's members."""
  return os.path.join(workdir, WANDB_DIR)


def checkpoint_dir(workdir: str) -> str:
  """The Orbax checkpoint directory, absolute (Orbax requires it)."""
  return os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)


def trace_path(workdir: str) -> str:
  """The training-time trace of NMI and MIG."""
  return os.path.join(workdir, TRACE_NAME)


def job_path(workdir: str) -> str:
  """The state a sweep job records in its workdir."""
  return os.path.join(workdir, JOB_NAME)


def results_dir(workdir: str) -> str:
  """The directory the evaluation job writes into."""
  return os.path.join(workdir, RESULTS_DIR)


def results_json_path(workdir: str) -> str:
  """The evaluated rows (schema in `disentax.results`)."""
  return os.path.join(results_dir(workdir), RESULTS_JSON_NAME)


def results_csv_path(workdir: str) -> str:
  """The evaluated rows, flattened into CSV."""
  return os.path.join(results_dir(workdir), RESULTS_CSV_NAME)


def arrays_path(workdir: str) -> str:
  """The per-member result arrays (member axis first)."""
  return os.path.join(results_dir(workdir), ARRAYS_NAME)


def timings_path(workdir: str) -> str:
  """Seconds each metric of the last evaluation took."""
  return os.path.join(results_dir(workdir), TIMINGS_NAME)


def traversals_dir(workdir: str) -> str:
  """The latent traversal PNGs of the last evaluation."""
  return os.path.join(results_dir(workdir), TRAVERSALS_DIR)


def pictures_dir(workdir: str) -> str:
  """Where `python -m disentax.visualize` draws by default."""
  return os.path.join(workdir, PICTURES_DIR)


def member_pictures_dir(pictures: str, member: int, seed: int) -> str:
  """One member's folder of a pictures directory: member<m>_seed<s>, the
  member index zero-padded to two digits so a listing sorts."""
  return os.path.join(pictures, f"member{member:02d}_seed{seed}")


def _replace(path: str, write: Callable[[IO], None], binary: bool,
             suffix: str) -> None:
  """Calls `write` on a new temporary file beside `path` (creating the
  directory), then renames it onto `path`; removes it if `write` fails."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  f = tempfile.NamedTemporaryFile("wb" if binary else "w", dir=directory,
                                  newline=None if binary else "",
                                  delete=False, suffix=suffix)
  try:
    with f:
      write(f)
  except BaseException:
    os.remove(f.name)
    raise
  os.replace(f.name, path)


def write_json(path: str, data: Any) -> None:
  """Writes `data` as indented JSON (NaN refused: JSON has none)."""
  _replace(path, lambda f: json.dump(data, f, indent=1, allow_nan=False),
           binary=False, suffix=".tmp")


def write_text(path: str, text: str) -> None:
  """Writes `text` as it is (no newline translation, so CSV stays CSV)."""
  _replace(path, lambda f: f.write(text), binary=False, suffix=".tmp")


def write_bytes(path: str, data: bytes) -> None:
  """Writes `data` as it is."""
  _replace(path, lambda f: f.write(data), binary=True, suffix=".tmp")


def write_npz(path: str, arrays: Mapping[str, Any]) -> None:
  """Writes `arrays` (name -> array-like) as an uncompressed .npz."""
  _replace(path, lambda f: np.savez(f, **arrays), binary=True,
           suffix=".tmp.npz")


def read_json(path: str, missing: str) -> Any:
  """The parsed JSON file at `path`; FileNotFoundError saying `missing` (how
  to make it) when there is none, ValueError naming the file when it is not
  JSON."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no {os.path.basename(path)} at {path}; "
                            f"{missing}")
  with open(path) as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path} is not valid JSON: {e}") from e
