"""Per-member training curves as JSON lines, safe across resumption.

Each line: {"step": s, "<metric>": [value per member], ...}, the mean over the
chunk of steps that ended at s.  A resumed run first drops lines past the step
it resumes from (they will be recomputed identically), so the file always
describes one uninterrupted history.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Mapping

import numpy as np

FILENAME = "metrics.jsonl"


def write_json(path: str, data: Any) -> None:
  """Writes atomically: a crash leaves the old file or the new, never half."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  with tempfile.NamedTemporaryFile("w", dir=directory, delete=False,
                                   suffix=".tmp") as f:
    json.dump(data, f, indent=1, allow_nan=False)
    tmp = f.name
  os.replace(tmp, path)


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


def read_lines(path: str) -> list[dict[str, Any]]:
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _finite_or_none(values: np.ndarray) -> list[float | None]:
  return [float(v) if np.isfinite(v) else None for v in np.ravel(values)]


class RunLog:
  """Appends chunk summaries; on resume keeps only lines up to resume_step."""

  def __init__(self, path: str, resume_step: int = 0):
    self.path = path
    kept = [l for l in read_lines(path) if l["step"] <= resume_step]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      f.writelines(json.dumps(l) + "\n" for l in kept)
    os.replace(tmp, path)

  def append(self, step: int, metrics: Mapping[str, np.ndarray]) -> None:
    line = {"step": int(step)}
    line.update({k: _finite_or_none(v) for k, v in metrics.items()})
    with open(self.path, "a") as f:
      f.write(json.dumps(line) + "\n")
