"""The training loop: every member of a config, chunk after chunk.

`train(config, workdir)` builds the experiment, resumes from the workdir's
latest checkpoint (or initialises every member from its seed), and runs
chunks of steps (`layouts.train_chunk` of the member step), waking up
between chunks to log (the chunk's metrics, the trace's scores and the
image panels, to the writers of `disentax.tracking`), trace, checkpoint
and show progress.  A SIGTERM checkpoints after the current chunk and
raises `preemption.Preempted`.  Everything is validated before anything
compiles or is written.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from tqdm import tqdm

from disentax import checkpoint
from disentax import config as config_lib
from disentax import backend, preemption, sharding, tracking
from disentax import workdir as workdir_lib
from disentax.cli import UsageError
from disentax.evaluation import trace as trace_lib
from disentax.evaluation.members import MemberFunctions
from disentax.evaluation.panels import Panels
from disentax.experiment import Experiment, build
from disentax.training import layouts
from disentax.training.step import make_member_step
from disentax.training.train_state import (TrainState, init_state,
                                           member_inputs, restore_members,
                                           single_device, unpadded)

# Metrics the progress bar shows, those of them an objective reports: every
# objective reports its loss; a KL term only those that have one.
PROGRESS_METRICS = ("loss", "kl")
# The traced score the progress bar shows (its median), when traced.
TRACE_MIG = trace_lib.CURVE_PREFIX + "mig"
# Called after each checkpoint save has been issued (it may still be being
# written): (step, checkpoint manager).
OnSave = Callable[[int, ocp.CheckpointManager], None]


def make_train_chunk(exp: Experiment,
                     devices: sharding.MemberLayout | None = None
                     ) -> Callable:
  """(state, hparams, keys, num_steps) -> (state, chunk-mean metrics [M]):
  the member step of `exp` laid out as its config says, members split over
  `devices` (default: one device)."""
  devices = devices or single_device(exp)
  member_step = make_member_step(
      exp, layouts.batch_gradient(exp.layout.micro_batches))
  chunk = layouts.train_chunk(member_step, exp.layout, devices)

  def train_chunk(state: TrainState, hparams, keys, num_steps: int):
    members, step, metrics = chunk(state.members, hparams, keys, state.step,
                                   num_steps)
    return TrainState.of(step, members), metrics

  return train_chunk


def checkpoint_meta(exp: Experiment) -> dict[str, Any]:
  return {"config": config_lib.to_dict(exp.config),
          "config_hash": config_lib.config_hash(exp.config),
          "method": exp.method, "dataset": exp.dataset.name,
          "members": exp.members.table()}


def _check_same_run(saved: dict[str, Any], current: dict[str, Any],
                    workdir: str) -> None:
  saved_id, current_id = (
      config_lib.identity(config_lib.with_defaults(saved["config"])),
      config_lib.identity(current["config"]))
  if saved_id != current_id:
    differing = sorted(_diff_keys(saved_id, current_id))
    raise UsageError(
        f"{workdir} holds a run of a different config (differing keys: "
        f"{differing}); resume it with its own config or use a new --workdir")


def _diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
  keys = []
  for key in set(a) | set(b):
    if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
      keys += _diff_keys(a[key], b[key], f"{prefix}{key}.")
    elif a.get(key) != b.get(key):
      keys.append(prefix + key)
  return keys


def _report_divergence(exp: Experiment, before: np.ndarray,
                       after: np.ndarray) -> None:
  for m in np.flatnonzero((before < 0) & (after >= 0)):
    row = exp.members.table()[m]
    print(f"member {m} (seed {row['seed']}, {row['hparams']}) diverged at "
          f"step {after[m]}: frozen, the others continue", flush=True)


def _restore_newest(manager: ocp.CheckpointManager, exp: Experiment,
                    devices: sharding.MemberLayout, meta: dict[str, Any],
                    workdir: str) -> tuple[TrainState | None,
                                           ocp.CheckpointManager]:
  """The state of the newest readable checkpoint (None without one) and
  the manager to go on with.  Unreadable newer steps are reported, set
  aside (`checkpoint.set_aside`: kept, and out of the way of saving those
  steps again) and the manager reopened without them."""
  if manager.latest_step() is None:
    return None, manager

  def restore(step: int) -> TrainState:
    _check_same_run(checkpoint.restore_meta(manager, step), meta, workdir)
    return restore_members(manager, step, exp, devices)

  step, state, skipped = checkpoint.restore_newest(manager, restore,
                                                   sharding.any_process)
  if skipped:
    manager.close()
    if sharding.is_writer():
      moved = checkpoint.set_aside(workdir, [e.step for e in skipped])
      for error, target in zip(skipped, moved):
        print(f"{error}; resuming from step {step} (the unreadable "
              f"checkpoint is kept in {target})", flush=True)
    sharding.barrier("disentax: unreadable checkpoints set aside")
    manager = checkpoint.make_manager(workdir,
                                      exp.config.train.keep_checkpoints)
  return state, manager


@backend.program_settings()
def train(config: ml_collections.ConfigDict, workdir: str, *,
          on_save: OnSave | None = None) -> TrainState:
  """Trains all members of `config` in `workdir`, resuming if it has a
  checkpoint, and returns their final state.

  Members are split over `config.train.num_devices` devices (0: all of
  every process).  On SIGTERM the run checkpoints after the current chunk
  and raises `preemption.Preempted`; rerunning resumes.  `on_save` is
  called after each checkpoint save is issued (tests use it to kill the
  process at a chosen point).

  The config is validated before anything is written; then the workdir's
  lock is taken (`sharding.writer_lock`) before the checkpoints, the run
  log or config.json are touched.

  Raises:
    workdir.WorkdirInUse: another process is writing `workdir`.
    checkpoint.SaveFailed: a checkpoint could not be written (full disk).
  """
  exp = build(config)
  devices = sharding.member_layout(len(exp.members), config.train.num_devices)
  meta = checkpoint_meta(exp)
  with sharding.writer_lock(workdir):
    if sharding.is_writer():
      workdir_lib.remove_temporaries(workdir)
    manager = checkpoint.make_manager(workdir, config.train.keep_checkpoints)
    writer = None
    try:
      state, manager = _restore_newest(manager, exp, devices, meta, workdir)
      if sharding.is_writer():  # before anything compiles: a missing extra
        writer = tracking.make_writer(  # fails here
            config, workdir, meta, 0 if state is None else int(state.step))
      return _train(exp, devices, meta, workdir, manager, state, writer,
                    on_save)
    except BaseException:
      with contextlib.suppress(Exception):  # the error says what went wrong
        manager.close()
      raise
    finally:
      if writer is not None:
        writer.close()


def _train(exp: Experiment, devices: sharding.MemberLayout,
           meta: dict[str, Any], workdir: str,
           manager: ocp.CheckpointManager, state: TrainState | None,
           writer: tracking.Writer | None, on_save: OnSave | None
           ) -> TrainState:
  """`train` once the workdir is locked and its writer made, from the
  restored `state` (None: from the start; `writer` None on the processes
  that do not write)."""
  config = exp.config
  is_writer = writer is not None
  if state is None:
    state = init_state(exp, devices)
  elif is_writer:  # restored straight into the layout; no initialisation
    print(f"resuming {workdir} from step {int(state.step)}", flush=True)
  start = int(state.step)
  trace_every, images_every = (config.eval.trace_every,
                               config.log.images_every)
  trace = panels = None
  if is_writer:
    workdir_lib.write_json(workdir_lib.config_path(workdir), meta["config"])
    if trace_every or images_every:
      functions = MemberFunctions(exp)
      trace = (trace_lib.Trace(exp, workdir, start, functions)
               if trace_every else None)
      panels = Panels(functions) if images_every else None

  def observe(state: TrainState, step: int, traced: bool, drawn: bool
              ) -> tuple[dict[str, np.ndarray], tracking.Images]:
    """The trace's per-member scalars and the image panels at `step`
    (every process gathers the state; the writer scores and draws)."""
    if not (traced or drawn):
      return {}, {}
    params, aux = sharding.to_host((state.params, state.aux), devices)
    if not is_writer:
      return {}, {}
    on_host = TrainState(step, params, None, None, aux)
    scores = (trace_lib.scalars(trace(on_host, step), len(exp.members))
              if traced else {})
    return scores, (panels(on_host, step) if drawn else {})

  if start == 0:  # the untrained models, the series' origin
    scores, images = observe(state, 0, bool(trace_every), bool(images_every))
    if scores:
      writer.scalars(0, scores)
    if images:
      writer.images(0, images)

  train_chunk = make_train_chunk(exp, devices)
  advice = layouts.compile_advice(exp.layout, len(exp.members))
  if advice and is_writer and start < config.train.num_steps:
    print(advice, flush=True)
  hparams, keys = member_inputs(exp, devices)
  diverged = sharding.to_host(state.diverged_at, devices)
  total, chunk = config.train.num_steps, config.train.steps_per_chunk
  on_devices = (f" on {devices.num_devices} devices"
                if devices.num_devices > 1 else "")
  with tqdm(total=total, initial=start, unit="step",
            desc=f"{exp.method} x {len(exp.members)} members{on_devices}",
            disable=not (config.train.progress and is_writer)) as progress, \
      preemption.SigtermFlag() as sigterm:
    step = start
    while step < total:
      num_steps = min(chunk, total - step)
      state, metrics = train_chunk(state, hparams, keys, num_steps)
      step += num_steps
      metrics = sharding.to_host(metrics, devices)
      now_diverged = sharding.to_host(state.diverged_at, devices)
      postfix = {name: f"{np.nanmean(metrics[name]):.2f}"
                 for name in PROGRESS_METRICS if name in metrics}
      if np.any(now_diverged >= 0):
        postfix["diverged"] = int(np.sum(now_diverged >= 0))
      scores, images = observe(
          state, step, bool(trace_every) and step % trace_every == 0,
          bool(images_every) and step % images_every == 0)
      if TRACE_MIG in scores:
        postfix["mig"] = f"{np.nanmedian(scores[TRACE_MIG]):.2f}"
      if is_writer:
        writer.scalars(step, {**metrics, **scores})
        if images:
          writer.images(step, images)
        _report_divergence(exp, diverged, now_diverged)
      diverged = now_diverged
      progress.update(num_steps)
      progress.set_postfix(**postfix)
      stop = sharding.any_process(sigterm.received)
      if step % config.train.checkpoint_every == 0 or step == total or stop:
        checkpoint.save(manager, step, state, meta)
        if on_save is not None:
          on_save(step, manager)
      if stop and step < total:
        checkpoint.close(manager, step)
        raise preemption.Preempted(workdir, step)
  checkpoint.close(manager, step)
  return unpadded(state, devices)
