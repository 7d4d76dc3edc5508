"""Per-member training curves as JSON lines, safe across resumption.

Each line: {"step": s, "<metric>": [value per member], ...}, the mean over the
chunk of steps that ended at s.  A resumed run first drops lines past the step
it resumes from (they will be recomputed identically), so the file always
describes one uninterrupted history.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import numpy as np

from disentax.workdir import write_text


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
    write_text(path, "".join(json.dumps(l) + "\n" for l in kept))

  def append(self, step: int, metrics: Mapping[str, np.ndarray]) -> None:
    line = {"step": int(step)}
    line.update({k: _finite_or_none(v) for k, v in metrics.items()})
    with open(self.path, "a") as f:
      f.write(json.dumps(line) + "\n")
