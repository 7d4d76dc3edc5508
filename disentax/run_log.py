"""Per-member training curves as JSON lines, safe across resumption.

Each line: {"step": s, "<name>": [value per member], ...}: the training
metrics are means over the chunk of steps that ended at s (`loss`, `recon`,
`kl` and whatever else the objective reports: a controller's `beta`, DEFT's
`stage` and `pressure`, ...); a step the trace scored also holds each
evaluator's per-member scalar scores as `trace/<score>` (the untrained
models' trace point is a line of its own at step 0).  Non-finite values
are null.  A resumed run first drops the lines it will compute again
(`survives_resume`; they are recomputed identically), so the file always
describes one uninterrupted history.  `read_curves` reads the file back as
arrays.  Each line is written with one write call and flushed; a
process killed in the middle of one (or a full disk) can still leave the
last line cut short, which readers skip and a resumed run drops.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import numpy as np

from disentax.workdir import write_text

STEP = "step"


def _parse(path: str) -> tuple[list[dict[str, Any]], bool]:
  """(the lines of the log at `path`, whether its last line was cut short
  and left out).  An unparsable line before the last is corruption no
  interrupted write leaves: ValueError naming the file and line."""
  if not os.path.exists(path):
    return [], False
  with open(path) as f:
    texts = [(number, text) for number, text in enumerate(f, 1)
             if text.strip()]
  lines = []
  for i, (number, text) in enumerate(texts):
    try:
      line = json.loads(text)
      if not isinstance(line, dict) or "step" not in line:
        raise ValueError("not an object with a 'step'")
    except ValueError as error:
      if i == len(texts) - 1:
        return lines, True
      raise ValueError(f"{path}: line {number} is not a log line ({error}); "
                       "only the last line can be cut short by an "
                       "interrupted write") from None
    lines.append(line)
  return lines, False


def read_lines(path: str) -> list[dict[str, Any]]:
  """The log's lines, without a last line cut short by an interrupted
  write (or one being written now)."""
  return _parse(path)[0]


def survives_resume(step: int, resume_step: int) -> bool:
  """Whether a record of `step` stays when training resumes from
  `resume_step`: a run resumed from its checkpoint at s > 0 computes every
  step after s again; one without a checkpoint (s = 0) computes everything
  again, the untrained models' trace point at step 0 included."""
  return 0 < resume_step and step <= resume_step


def read_curves(path: str) -> dict[str, np.ndarray] | None:
  """The run log at `path` as arrays, None if there is none: `step` int
  [T] (each logged step once, ascending) and every name float [T, M], NaN
  where a value is null or a step did not log the name (a trace score
  between trace points)."""
  lines = read_lines(path)
  if not lines:
    return None
  steps = sorted({int(line[STEP]) for line in lines})
  row = {s: t for t, s in enumerate(steps)}
  curves: dict[str, np.ndarray] = {}
  for line in lines:
    for name, values in line.items():
      if name == STEP:
        continue
      if name not in curves:
        curves[name] = np.full((len(steps), len(values)), np.nan)
      curves[name][row[int(line[STEP])]] = [np.nan if v is None else v
                                            for v in values]
  return {STEP: np.asarray(steps, np.int64), **curves}


def _finite_or_none(values: np.ndarray) -> list[float | None]:
  return [float(v) if np.isfinite(v) else None for v in np.ravel(values)]


class RunLog:
  """Appends a line per logged step; on resume keeps only the lines that
  `survives_resume` from `resume_step` (and drops a last line cut short)."""

  def __init__(self, path: str, resume_step: int = 0):
    self.path = path
    lines, torn = _parse(path)
    if torn:
      print(f"{path}: dropped its last line, cut short by an interrupted "
            "write", flush=True)
    kept = [l for l in lines if survives_resume(l[STEP], resume_step)]
    write_text(path, "".join(json.dumps(l) + "\n" for l in kept))

  def append(self, step: int, metrics: Mapping[str, np.ndarray]) -> None:
    line = {STEP: int(step)}
    line.update({k: _finite_or_none(v) for k, v in metrics.items()})
    data = (json.dumps(line) + "\n").encode()
    fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
      written = os.write(fd, data)
      while written < len(data):  # a regular file takes it all at once
        written += os.write(fd, data[written:])
    finally:
      os.close(fd)
