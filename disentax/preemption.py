"""Preemption: what SIGTERM means, for every entry point.

Clusters send SIGTERM before preempting a job or at its time limit (the
rendered SLURM script asks for it 2 minutes early).  While training, it is
recorded (`SigtermFlag`) and the trainer checkpoints after the current chunk
and raises `Preempted`; during evaluation, which keeps no state worth
saving, it raises `Interrupted` at once (`sigterm_interrupts`).  Either way
the process exits with `PREEMPTED_EXIT`, the status SLURM's requeue and the
sweep runner treat as "run me again": rerunning resumes.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

# What a shell reports for a process ended by SIGTERM / SIGINT.
PREEMPTED_EXIT = 128 + signal.SIGTERM
INTERRUPTED_EXIT = 128 + signal.SIGINT


class Preempted(Exception):
  """Training stopped by SIGTERM: the current state was checkpointed at
  `step`, and rerunning the same command resumes from there."""

  def __init__(self, workdir: str, step: int):
    super().__init__(f"{workdir}: stopped by SIGTERM, checkpointed at step "
                     f"{step}; rerun the same command to resume")
    self.workdir, self.step = workdir, step


class Interrupted(Exception):
  """SIGTERM outside training (during evaluation): nothing to save."""


class SigtermFlag:
  """Records SIGTERM instead of dying, while training (main thread only:
  elsewhere Python cannot install handlers, and the flag stays False)."""

  def __enter__(self) -> "SigtermFlag":
    self.received = False
    self._previous = None
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame) -> None:
    del signum, frame
    self.received = True

  def __exit__(self, *exc_info) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
  """SIGTERM raises `Interrupted` inside the block (main thread only)."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return

  def interrupt(signum, frame):
    del signum, frame
    raise Interrupted("SIGTERM during evaluation")

  previous = signal.signal(signal.SIGTERM, interrupt)
  try:
    yield
  finally:
    signal.signal(signal.SIGTERM, previous)
