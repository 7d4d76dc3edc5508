"""Running one job of a plan (`run_job`: train, then evaluate, in
ROOT/<name>/) and its record there, job.json (`read_job_file`).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import sys
import traceback
from typing import Any

import ml_collections

from disentax import config as config_lib
from disentax import preemption, sharding
from disentax.sweep.plan import Job, job_config, job_workdir, load_jobs
from disentax.cli import UsageError
from disentax.workdir import WorkdirInUse, job_path, write_json

# What job.json records (`status` counts it in status.STATES).
RECORDED_STATES = ("running", "done", "failed", "preempted", "interrupted",
                   "trained")
PHASES = ("all", "train", "evaluate")


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec="seconds")


def read_job_file(workdir: str) -> dict[str, Any] | None:
  """WORKDIR/job.json, or None when the job never started there."""
  path = job_path(workdir)
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return json.load(f)


def _pid_alive(pid: Any) -> bool:
  try:
    os.kill(int(pid), 0)
  except ProcessLookupError:
    return False
  except (PermissionError, OSError, TypeError, ValueError):
    return True  # someone else's process, or unknown: assume alive
  return True


def planned_config(job: Job) -> ml_collections.ConfigDict:
  """`job_config(job)`, checked against the hash recorded when planning.

  Raises:
    ValueError: the config differs from the planned one (its experiment
      file changed after planning; resuming would mix two configs).
  """
  config = job_config(job)
  found = config_lib.config_hash(config)
  if found != job.config_hash:
    raise ValueError(
        f"the config of job {job.index} ({job.config} with its overrides) has "
        f"hash {found}, but the plan was made with {job.config_hash}: its "
        f"experiment file changed after planning; restore it, or plan the "
        f"sweep into a new root")
  return config


def _job_index(job: int | None, num_jobs: int) -> int:
  if job is None:
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    if task is None:
      raise UsageError("no --job given and $SLURM_ARRAY_TASK_ID is not set")
    try:
      job = int(task)
    except ValueError:
      raise UsageError(f"$SLURM_ARRAY_TASK_ID={task!r} is not an "
                       f"integer") from None
  if not 0 <= job < num_jobs:
    raise UsageError(f"job {job} is not in the plan; allowed: "
                     f"0..{num_jobs - 1}")
  return job


class _AlreadyDone(Exception):
  """The job was done by the time this process claimed it."""


def run_job(root: str, job: int | None = None, *, distributed: bool = False,
            phase: str = "all") -> int:
  """Runs job `job` (default: $SLURM_ARRAY_TASK_ID) of ROOT's plan: trains
  it in ROOT/<name> (resuming from its checkpoint) and, with `phase` all
  and one process, evaluates it; records its state in job.json.  Returns
  the exit code: 0 done (or already done), 1 failed, 143 preempted (the
  state was checkpointed; rerunning resumes), 130 interrupted.

  `phase` train (several processes, `distributed`: `jax.distributed.
  initialize()` first, auto-detecting SLURM) ends in state `trained`;
  `phase` evaluate (one process) then evaluates and ends in `done`.
  Only process 0 writes job.json.

  A job is claimed by taking its workdir's lock (`sharding.writer_lock`),
  held until it ends, before job.json is read for the last time and
  written: of two processes started on one job, one runs it and the other
  is refused (WorkdirInUse) without writing anything.

  Raises:
    UsageError: the job is not in the plan, or not ready for `phase`.
    WorkdirInUse: another process holds the job's workdir.
  """
  if phase not in PHASES:
    raise UsageError(f"phase={phase!r}; allowed: {PHASES}")
  jobs = load_jobs(root)
  the_job = jobs[_job_index(job, len(jobs))]
  workdir = job_workdir(root, the_job)
  previous = read_job_file(workdir) or {}
  if previous.get("state") == "done":
    print(f"job {the_job.index} ({the_job.name}) is already done", flush=True)
    return 0

  from disentax import pipeline  # pylint: disable=g-import-not-at-top
  record = {"job": the_job.index, "name": the_job.name, "phase": phase,
            "host": socket.gethostname(), "pid": os.getpid()}

  def write_state(state: str, **extra: Any) -> None:
    # Process 0 writes; before the runtime is up (a config that fails to
    # load) every process would fail alike, and each may say so.
    if "processes" not in record or sharding.is_writer():
      write_json(job_path(workdir), {**record, "state": state, **extra})

  def claim_job() -> None:
    """Takes the workdir (for the rest of the job), then reads job.json as
    it is now that no one else can write it."""
    if "attempt" in record:
      return
    claim.enter_context(sharding.writer_lock(workdir))
    claimed = read_job_file(workdir) or {}
    if claimed.get("state") == "done":
      raise _AlreadyDone()
    if phase == "evaluate" and claimed.get("state") != "trained":
      raise UsageError(f"job {the_job.index} ({the_job.name}) is "
                       f"{claimed.get('state', 'not started')}, not trained; "
                       f"--phase=evaluate follows a finished --phase=train")
    record["attempt"] = int(claimed.get("attempt", 0)) + 1

  def started() -> None:  # the runtime (and the process count) is known
    import jax  # pylint: disable=g-import-not-at-top
    claim_job()
    record.update(processes=jax.process_count(), started=_now())
    write_state("running")
    last_seed = the_job.first_seed + the_job.num_seeds - 1
    print(f"job {the_job.index}/{len(jobs)}: {the_job.name} "
          f"({the_job.config}, seeds {the_job.first_seed}..{last_seed}) in "
          f"{workdir}", flush=True)

  phases = {"all": ("train", "evaluate"), "train": ("train",),
            "evaluate": ("evaluate",)}[phase]
  with contextlib.ExitStack() as claim:
    try:
      if not distributed:  # else once the runtime is up (`started`)
        claim_job()
      config = planned_config(the_job)
      outcome = pipeline.run(
          config, workdir, phases=phases, on_start=started,
          distributed=pipeline.Distributed() if distributed else None)
    except _AlreadyDone:
      print(f"job {the_job.index} ({the_job.name}) is already done",
            flush=True)
      return 0
    except (WorkdirInUse, UsageError):
      if "attempt" not in record:  # refused its claim: nothing written
        raise
      write_state("failed", finished=_now(), error=_one_line(),
                  traceback=traceback.format_exc())
      return 1
    except KeyboardInterrupt:
      write_state("interrupted", finished=_now(), error="KeyboardInterrupt")
      return preemption.INTERRUPTED_EXIT
    except Exception:  # pylint: disable=broad-except
      write_state("failed", finished=_now(), error=_one_line(),
                  traceback=traceback.format_exc())
      print(f"job {the_job.index} ({the_job.name}) failed: {_one_line()} "
            f"(the traceback is in {job_path(workdir)})", file=sys.stderr,
            flush=True)
      return 1
    if outcome.ending == "preempted":
      write_state("preempted", step=outcome.step, finished=_now())
    elif outcome.ending == "interrupted":
      write_state("interrupted", finished=_now(),
                  error="SIGTERM during evaluation")
    else:  # done, or trained (evaluation left to --phase=evaluate)
      write_state(outcome.ending, finished=_now())
    return outcome.exit_code


def _one_line() -> str:
  """The exception being handled, "Type: message", as job.json records it."""
  error = sys.exc_info()[1]
  return f"{type(error).__name__}: {error}"
