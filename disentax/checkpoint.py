"""Orbax checkpoints of the stacked per-member train state.

A checkpoint holds the state (step, stacked params and optimiser state) and a
JSON `meta` item (the config, the member table, the config hash).  Orbax
writes each step into a temporary directory and renames it only once the save
has finished, so an interrupted save never shows up as a restorable step.

A finished step can still be unreadable (a data file cut short or garbage in
its meta, e.g. by a disk that failed afterwards): `restore_newest` reports it
in one line, by step and path, and falls back to the newest step that reads;
nothing is ever deleted (training sets unreadable steps aside, `set_aside`,
to write those steps again).  A save that fails (a full disk) raises
`SaveFailed`, naming the step, the path and the checkpoints still intact.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sys
from typing import Any, Callable, TypeVar

import orbax.checkpoint as ocp

from disentax.preemption import Interrupted
from disentax.workdir import checkpoint_dir, unreadable_checkpoints_dir

T = TypeVar("T")
# How much of the innermost reason an error message quotes.
MAX_REASON = 300


class UnreadableCheckpoint(ValueError):
  """A finished checkpoint step that cannot be read (`step`, `path`)."""

  def __init__(self, step: int, path: str, reason: str):
    super().__init__(f"checkpoint step {step} at {path} is unreadable: "
                     f"{reason}")
    self.step, self.path, self.reason = step, path, reason


class SaveFailed(OSError):
  """Writing a checkpoint failed (its errno kept: ENOSPC for a full disk)."""

  def __str__(self) -> str:
    return self.strerror  # the whole message, without "[Errno N]"


def make_manager(workdir: str, keep: int = 3,
                 read_only: bool = False) -> ocp.CheckpointManager:
  """The workdir's manager, keeping the `keep` latest steps; `read_only`
  (for reading a run) creates, saves and deletes nothing."""
  _QuietFailures.install()
  options = (ocp.CheckpointManagerOptions(
      read_only=True, create=False, max_to_keep=None, save_interval_steps=0)
             if read_only else
             ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options,
                               item_names=("state", "meta"))


def step_path(manager: ocp.CheckpointManager, step: int) -> str:
  """The directory of checkpoint `step`."""
  return os.path.join(str(manager.directory), str(step))


def _causes(error: BaseException) -> list[BaseException]:
  """`error` and the exceptions it was raised from, outermost first."""
  chain = []
  while error is not None and error not in chain:
    chain.append(error)
    error = error.__cause__ or error.__context__
  return chain


def _reason(error: BaseException) -> str:
  """One line saying why: the innermost cause's first line (TensorStore's
  outer errors spell out a whole spec), cut at MAX_REASON."""
  inner = _causes(error)[-1]
  lines = [l.strip() for l in str(inner).splitlines() if l.strip()]
  text = f"{type(inner).__name__}: {lines[0] if lines else ''}"
  return text if len(text) <= MAX_REASON else text[:MAX_REASON] + " ..."


class _QuietFailures(logging.Filter):
  """Keeps a failed save or restore to the lines that say what failed.

  When an array read or write fails (a full disk, a file cut short),
  Orbax's background threads log the error with its traceback, TensorStore
  completes the abandoned operations after Orbax closed their event loop
  ("Event loop is closed", once per array, through `sys.unraisablehook`)
  and asyncio logs their unretrieved futures: hundreds of lines around the
  one error this module raises.  Installed (once) with the first manager:
  Orbax's records lose their tracebacks (their message stays), and the
  other two are dropped.
  """

  installed = False

  def filter(self, record: logging.LogRecord) -> bool:
    if "exception was never retrieved" in record.getMessage():
      return False
    if f"{os.sep}orbax{os.sep}" in record.pathname:
      record.exc_info, record.exc_text = None, None
    return True

  @classmethod
  def install(cls) -> None:
    if cls.installed:
      return
    cls.installed = True
    for name in ("asyncio", "absl"):
      logging.getLogger(name).addFilter(cls())
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
      value = unraisable.exc_value
      if not (isinstance(value, RuntimeError)
              and str(value) == "Event loop is closed"):
        previous(unraisable)

    sys.unraisablehook = hook


def _read(manager: ocp.CheckpointManager, step: int,
          read: Callable[[], T]) -> T:
  """`read()`, any error raised as UnreadableCheckpoint of `step`."""
  try:
    return read()
  except Interrupted:  # SIGTERM while reading: no verdict on the step
    raise
  except Exception as error:  # pylint: disable=broad-except
    raise UnreadableCheckpoint(step, step_path(manager, step),
                               _reason(error)) from error


def intact_steps(manager: ocp.CheckpointManager) -> list[int]:
  """The finished steps on disk now (an unfinished save is not one)."""
  try:
    manager.reload()
    return sorted(manager.all_steps())
  except Exception:  # pylint: disable=broad-except
    return []


def _save_failed(manager: ocp.CheckpointManager, step: int,
                 error: BaseException) -> BaseException:
  """`error` of saving `step` as SaveFailed naming the step, the path and
  the intact steps when it is an I/O error (a full disk: ENOSPC), else
  `error` itself."""
  io = [e for e in _causes(error) if isinstance(e, OSError)]
  disk_full = any("No space left on device" in str(e)
                  for e in _causes(error))
  if not io and not disk_full:
    return error
  code = errno.ENOSPC if disk_full else io[-1].errno
  intact = [s for s in intact_steps(manager) if s != step]
  kept = (f"intact checkpoints: step(s) {', '.join(map(str, intact))} "
          f"(rerunning resumes from step {intact[-1]})" if intact else
          "no intact checkpoint (rerunning starts over)")
  cause = "no space left on device" if disk_full else _reason(io[-1])
  return SaveFailed(code, f"writing checkpoint step {step} to "
                    f"{step_path(manager, step)} failed: {cause}; {kept}")


def save(manager: ocp.CheckpointManager, step: int, state: Any,
         meta: dict[str, Any]) -> None:
  """Issues the save of `step` (Orbax finishes it in the background).

  Raises:
    SaveFailed: an I/O error (of this save, or of the previous one still
      being written), e.g. a full disk.
  """
  try:
    manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
  except Exception as error:  # pylint: disable=broad-except
    raise _save_failed(manager, step, error) from error


def close(manager: ocp.CheckpointManager, step: int) -> None:
  """Waits for the save of `step` to finish and closes the manager.

  Raises:
    SaveFailed: as `save`.
  """
  try:
    manager.wait_until_finished()
    manager.close()
  except Exception as error:  # pylint: disable=broad-except
    raise _save_failed(manager, step, error) from error


def restore_meta(manager: ocp.CheckpointManager, step: int) -> dict[str, Any]:
  """The meta item of `step`.

  Raises:
    UnreadableCheckpoint: it cannot be read.
  """
  return _read(manager, step, lambda: manager.restore(
      step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta)


def restore_state(manager: ocp.CheckpointManager, step: int,
                  abstract_state: Any) -> Any:
  """The state of `step` placed as `abstract_state`'s shardings say.  The
  member axis may be longer or shorter than saved (it is padded to a
  multiple of the device count, see disentax.sharding): extra rows are
  dropped, missing ones are zeros (padding, never reported).

  Raises:
    UnreadableCheckpoint: it cannot be read (or has another tree).
  """
  return _read(manager, step, lambda: manager.restore(
      step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state, strict=False))
  ).state)


def restore_newest(manager: ocp.CheckpointManager,
                   restore: Callable[[int], T],
                   any_process: Callable[[bool], bool] = bool
                   ) -> tuple[int, T, list[UnreadableCheckpoint]]:
  """(step, restore(step), the newer steps that did not read) for the
  newest finished step that reads: a step whose `restore` raises
  UnreadableCheckpoint is skipped for the next older one (the caller says
  so, one line each).  `any_process` makes every process of a
  multi-process run skip a step when any of them could not read it.

  Raises:
    UnreadableCheckpoint: no step reads (the message names each).
  """
  skipped = []
  steps = sorted(manager.all_steps(), reverse=True)
  if not steps:
    raise FileNotFoundError(f"no finished checkpoint in {manager.directory}")
  for step in steps:
    try:
      value, error = restore(step), None
    except UnreadableCheckpoint as unreadable:
      value, error = None, unreadable
    if not any_process(error is not None):
      return step, value, skipped
    skipped.append(error or UnreadableCheckpoint(
        step, step_path(manager, step), "unreadable in another process"))
  first = skipped[0]
  raise UnreadableCheckpoint(
      first.step, first.path, first.reason + "".join(
          f"; so is step {e.step} at {e.path}: {e.reason}"
          for e in skipped[1:]) + "; no checkpoint left to fall back to")


def set_aside(workdir: str, steps: list[int]) -> list[str]:
  """Moves the checkpoints of `steps` out of the checkpoint directory into
  WORKDIR/unreadable_checkpoints/ (kept for inspection, never deleted, and
  no longer in the way of saving those steps again); returns where each
  went."""
  moved = []
  for step in steps:
    target = os.path.join(unreadable_checkpoints_dir(workdir), str(step))
    suffix = 1
    while os.path.exists(target):
      target = os.path.join(unreadable_checkpoints_dir(workdir),
                            f"{step}.{suffix}")
      suffix += 1
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.move(os.path.join(checkpoint_dir(workdir), str(step)), target)
    moved.append(target)
  return moved


def latest_step_or_fail(workdir: str) -> tuple[ocp.CheckpointManager, int]:
  """The manager and latest finished step; a clear error when there is none."""
  return step_or_fail(workdir)


def step_or_fail(workdir: str, step: int | None = None
                 ) -> tuple[ocp.CheckpointManager, int]:
  """The manager and finished checkpoint `step` (None: the latest); a clear
  error when there is none, or when `step` is not one of the finished
  steps (naming those)."""
  if not os.path.isdir(checkpoint_dir(workdir)):
    raise FileNotFoundError(
        f"no checkpoints in {checkpoint_dir(workdir)}: train first with "
        f"`python -m disentax.main --config=... --workdir={workdir}`")
  manager = make_manager(workdir, read_only=True)
  latest = manager.latest_step()
  if latest is None:
    raise FileNotFoundError(
        f"no finished checkpoint in {checkpoint_dir(workdir)} (an interrupted "
        "save is not a checkpoint): train (or resume) first with "
        f"`python -m disentax.main --config=... --workdir={workdir}`")
  if step is None:
    return manager, latest
  steps = sorted(manager.all_steps())
  if step not in steps:
    manager.close()
    raise ValueError(f"no checkpoint of step {step} in "
                     f"{checkpoint_dir(workdir)}; it has steps {steps}")
  return manager, step
