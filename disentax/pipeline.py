"""One run from start to end: distributed init -> train -> evaluate -> summary.

`python -m disentax.main` and the sweep runner (`python -m disentax.sweep
run`) both call `run`; what it returns says how the run ended and the exit
status a process should report:

  done         trained and evaluated (results written, summary printed)
  trained      trained; evaluation left to its own job (asked for, or
               several processes trained together: evaluation runs in one)
  preempted    SIGTERM while training: checkpointed, rerun to resume (143)
  interrupted  SIGTERM while evaluating: rerun to evaluate again (143)

Any other failure propagates as an exception.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import ml_collections

from disentax import preemption, sharding
from disentax.evaluation import job
from disentax.training import trainer

PHASES = ("train", "evaluate")
ENDINGS = ("done", "trained", "preempted", "interrupted")


@dataclasses.dataclass(frozen=True)
class Distributed:
  """How this process joins a multi-process run (`sharding.
  initialize_distributed`): nothing under SLURM, else all three."""
  coordinator: str | None = None
  num_processes: int | None = None
  process_id: int | None = None


@dataclasses.dataclass(frozen=True)
class Outcome:
  ending: str                # one of ENDINGS
  exit_code: int             # what the process should exit with
  step: int | None = None    # the checkpoint step a preempted run stopped at
  rows: list[dict[str, Any]] | None = None  # results rows when evaluated


def run(config: ml_collections.ConfigDict | None, workdir: str, *,
        phases: Sequence[str] = PHASES,
        distributed: Distributed | None = None,
        on_start: Callable[[], None] | None = None,
        on_save: trainer.OnSave | None = None,
        battery: str = "config") -> Outcome:
  """Runs `phases` of one workdir: trains `config` in it (resuming from its
  latest checkpoint) and evaluates the final checkpoint, printing the
  summary.  `config` may be None when only evaluating (the checkpoint holds
  it).  With `distributed`, joins the multi-process runtime first (before
  anything touches a device); `on_start` is called once the runtime is up,
  before any phase.  `battery` picks the metrics scored besides the
  primary one (`evaluation.job.BATTERIES`)."""
  if battery not in job.BATTERIES:
    raise ValueError(f"battery={battery!r}; allowed: {job.BATTERIES}")
  unknown = sorted(set(phases) - set(PHASES))
  if unknown or not phases:
    raise ValueError(f"phases={tuple(phases)}; allowed: a non-empty subset "
                     f"of {PHASES}")
  if distributed is not None:
    sharding.initialize_distributed(distributed.coordinator,
                                    distributed.num_processes,
                                    distributed.process_id)
  single = sharding.is_single_process()
  if "train" not in phases and not single:
    raise ValueError("evaluation runs in one process; launch it as one task "
                     "(e.g. srun --ntasks=1)")
  if on_start is not None:
    on_start()
  if "train" in phases:
    if config is None:
      raise ValueError("training needs a config")
    try:
      trainer.train(config, workdir, on_save=on_save)
    except preemption.Preempted as stopped:
      print(stopped, flush=True)
      return Outcome("preempted", preemption.PREEMPTED_EXIT, step=stopped.step)
  if "evaluate" not in phases or not single:
    if sharding.is_writer():
      print(f"trained; evaluate with: python -m disentax.evaluate "
            f"--workdir={workdir}", flush=True)
    return Outcome("trained", 0)
  try:
    with preemption.sigterm_interrupts():
      rows, evaluated_config = job.evaluate(workdir, battery=battery)
  except preemption.Interrupted as stopped:
    print(f"{workdir}: {stopped}; rerun to evaluate", flush=True)
    return Outcome("interrupted", preemption.PREEMPTED_EXIT)
  try:
    print(job.summary(workdir, evaluated_config))
  except Exception as error:  # pylint: disable=broad-except
    # The results are written; a table that cannot be drawn is no failure.
    print(f"(no summary table: {type(error).__name__}: {error})", flush=True)
  return Outcome("done", 0, rows=rows)
