"""Orbax checkpoints of the stacked per-member train state.

A checkpoint holds the state (step, stacked params and optimiser state) and a
JSON `meta` item (the config, the member table, the config hash).  Orbax
writes each step into a temporary directory and renames it only once the save
has finished, so an interrupted save never shows up as a restorable step.
"""

from __future__ import annotations

import os
from typing import Any

import orbax.checkpoint as ocp

from disentax.workdir import checkpoint_dir


def make_manager(workdir: str, keep: int = 3,
                 read_only: bool = False) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, create=not read_only, read_only=read_only)
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options,
                               item_names=("state", "meta"))


def save(manager: ocp.CheckpointManager, step: int, state: Any,
         meta: dict[str, Any]) -> None:
  manager.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))


def restore_meta(manager: ocp.CheckpointManager, step: int) -> dict[str, Any]:
  return manager.restore(step, args=ocp.args.Composite(
      meta=ocp.args.JsonRestore())).meta


def restore_state(manager: ocp.CheckpointManager, step: int,
                  abstract_state: Any) -> Any:
  """The state of `step` placed as `abstract_state`'s shardings say.  The
  member axis may be longer or shorter than saved (it is padded to a
  multiple of the device count, see disentax.sharding): extra rows are
  dropped, missing ones are zeros (padding, never reported)."""
  return manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract_state, strict=False))).state


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
