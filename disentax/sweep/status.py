"""The state of every job of a plan (`job_states`, from each job.json and
checkpoint) and the `status` table (`format_status`).
"""

from __future__ import annotations

import os
import socket
from typing import Any, Iterable, Mapping, Sequence

from disentax.sweep.plan import job_workdir, load_jobs
from disentax.sweep.run import _pid_alive, read_job_file
from disentax.workdir import checkpoint_dir, job_path

# How `status` counts the states job.json records (run.RECORDED_STATES).
STATES = ("done", "running", "failed", "missing")


def last_checkpoint_step(workdir: str) -> int | None:
  """The latest finished checkpoint step in `workdir`, or None."""
  if not os.path.isdir(checkpoint_dir(workdir)):
    return None
  from disentax import checkpoint  # pylint: disable=g-import-not-at-top
  manager = checkpoint.make_manager(workdir, read_only=True)
  try:
    return manager.latest_step()
  finally:
    manager.close()


def job_states(root: str) -> list[dict[str, Any]]:
  """One dict per planned job: index, name, workdir, state (done | running
  | failed | missing), recorded (job.json's state, or None), detail (a
  readable line) and step (latest checkpoint of a job not done, or None).

  missing = never started, preempted, interrupted, or trained but not yet
  evaluated: the job still has to be (re)run, and resumes from its
  checkpoint.  A `running` record whose pid is dead on this host is failed
  (the process died without recording why, e.g. killed).
  """
  host = socket.gethostname()
  states = []
  for job in load_jobs(root):
    workdir = job_workdir(root, job)
    entry = {"index": job.index, "name": job.name, "workdir": workdir,
             "recorded": None, "step": None}
    try:
      record = read_job_file(workdir)
    except (OSError, ValueError) as e:
      record = {"state": "unreadable", "error": str(e)}
    recorded = None if record is None else record.get("state")
    entry["recorded"] = recorded
    if recorded != "done" and os.path.isdir(workdir):
      entry["step"] = last_checkpoint_step(workdir)
    where = "" if record is None else (
        f"{record.get('host')}:{record.get('pid')}")
    if record is None:
      state, detail = "missing", "never started"
    elif recorded == "done":
      state, detail = "done", f"finished {record.get('finished')}"
    elif recorded == "running":
      if record.get("host") == host and not _pid_alive(record.get("pid")):
        state, detail = "failed", (f"stale: {where} died without recording "
                                   f"an end (killed?)")
      else:
        state, detail = "running", f"on {where} since {record.get('started')}"
    elif recorded == "failed":
      state, detail = "failed", str(record.get("error"))
    elif recorded == "preempted":
      state, detail = "missing", f"preempted at step {record.get('step')}"
    elif recorded == "interrupted":
      state, detail = "missing", f"interrupted ({record.get('error')})"
    elif recorded == "trained":
      state, detail = "missing", "trained, not yet evaluated"
    else:
      state, detail = "failed", (f"unknown state {recorded!r} in "
                                 f"{job_path(workdir)}: {record.get('error')}")
    if entry["step"] is not None:
      detail += f"; checkpoint at step {entry['step']}"
    entry.update(state=state, detail=detail)
    states.append(entry)
  return states


def count_states(states: Iterable[Mapping[str, Any]]) -> dict[str, int]:
  counts = dict.fromkeys(STATES, 0)
  for entry in states:
    counts[entry["state"]] += 1
  return counts


def format_status(states: Sequence[Mapping[str, Any]]) -> str:
  """One line per job (index, state, name, detail), then the counts."""
  width = len(str(max(len(states) - 1, 0)))
  lines = [f"{s['index']:>{width}} {s['state']:<8} {s['name']}  ({s['detail']})"
           for s in states]
  counts = count_states(states)
  lines.append(f"{len(states)} jobs: " + ", ".join(
      f"{counts[name]} {name}" for name in STATES))
  return "\n".join(lines) + "\n"
