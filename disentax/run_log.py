"""Per-member training curves as JSON lines, safe across resumption.

Each line: {"step": s, "<metric>": [value per member], ...}, the mean over the
chunk of steps that ended at s.  A resumed run first drops lines past the step
it resumes from (they will be recomputed identically), so the file always
describes one uninterrupted history.  Each line is written with one write
call and flushed; a process killed in the middle of one (or a full disk)
can still leave the last line cut short, which readers skip and a resumed
run drops.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import numpy as np

from disentax.workdir import write_text


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


def _finite_or_none(values: np.ndarray) -> list[float | None]:
  return [float(v) if np.isfinite(v) else None for v in np.ravel(values)]


class RunLog:
  """Appends chunk summaries; on resume keeps only lines up to resume_step
  (and drops a last line cut short)."""

  def __init__(self, path: str, resume_step: int = 0):
    self.path = path
    lines, torn = _parse(path)
    if torn:
      print(f"{path}: dropped its last line, cut short by an interrupted "
            "write", flush=True)
    kept = [l for l in lines if l["step"] <= resume_step]
    write_text(path, "".join(json.dumps(l) + "\n" for l in kept))

  def append(self, step: int, metrics: Mapping[str, np.ndarray]) -> None:
    line = {"step": int(step)}
    line.update({k: _finite_or_none(v) for k, v in metrics.items()})
    data = (json.dumps(line) + "\n").encode()
    fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
      written = os.write(fd, data)
      while written < len(data):  # a regular file takes it all at once
        written += os.write(fd, data[written:])
    finally:
      os.close(fd)
