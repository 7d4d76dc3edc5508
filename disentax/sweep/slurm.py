"""The SLURM array script of a plan (`render_slurm`, from the template
slurm.sbatch beside this module: one array task per job).
"""

from __future__ import annotations

import importlib.resources
import os
import shlex
import string
from typing import Sequence

from disentax.sweep.plan import _safe, load_jobs, plan_path
from disentax.sweep.status import job_states

LOGS_DIR = "logs"
TEMPLATE_NAME = "slurm.sbatch"  # package data of disentax.sweep


def array_spec(indices: Sequence[int]) -> str:
  """[0, 1, 2, 5, 7, 8] -> "0-2,5,7-8" (sbatch --array syntax)."""
  parts, start = [], None
  indices = sorted(indices)
  for i, index in enumerate(indices):
    if start is None:
      start = index
    if i + 1 == len(indices) or indices[i + 1] != index + 1:
      parts.append(f"{start}-{index}" if index > start else f"{start}")
      start = None
  return ",".join(parts)


def render_slurm(root: str, *, partition: str = "", time: str = "24:00:00",
                 gpus_per_job: int = 1, nodes_per_job: int = 1,
                 max_concurrent: int = 0, cpus_per_task: int = 8,
                 python: str = "python", missing_only: bool = False) -> str:
  """The sbatch script of ROOT's plan: one array task per job
  (`--array=0-{N-1}`, or with `missing_only` the jobs not done or running),
  each `srun python -m disentax.sweep run --root=ROOT` run from the working
  directory of this call (the plan's config paths are relative to it, as
  when it was planned).

  With nodes_per_job > 1 the job trains as one process per node
  (`--distributed --phase=train`, `jax.distributed.initialize()` reads the
  SLURM step) and then evaluates as one task (`--phase=evaluate`).
  `gpus_per_job` is split evenly over the nodes.  Creates ROOT/logs/ (the
  array's output files; SLURM does not create directories).
  """
  jobs = load_jobs(root)
  if nodes_per_job < 1:
    raise ValueError(f"--nodes_per_job={nodes_per_job}; must be >= 1")
  if gpus_per_job < 0 or gpus_per_job % nodes_per_job:
    raise ValueError(f"--gpus_per_job={gpus_per_job}; must be >= 0 and a "
                     f"multiple of --nodes_per_job={nodes_per_job} (split "
                     f"evenly over the nodes)")
  if max_concurrent < 0:
    raise ValueError(f"--max_concurrent={max_concurrent}; must be >= 0 "
                     f"(0 = no limit)")
  if cpus_per_task < 1:
    raise ValueError(f"--cpus_per_task={cpus_per_task}; must be >= 1")
  indices = list(range(len(jobs)))
  if missing_only:
    indices = [s["index"] for s in job_states(root)
               if s["state"] in ("missing", "failed")]
    if not indices:
      raise ValueError(f"every job of {plan_path(root)} is done or running")
  array = array_spec(indices)
  if max_concurrent:
    array += f"%{max_concurrent}"
  root = os.path.abspath(root)
  if any(c.isspace() for c in root):
    raise ValueError(f"--root={root!r}: #SBATCH lines cannot hold a path "
                     f"with spaces; choose a root without")
  logs = os.path.join(root, LOGS_DIR)
  os.makedirs(logs, exist_ok=True)
  run = (f"{python} -m disentax.sweep run --root={shlex.quote(root)}")
  if nodes_per_job == 1:
    train_command = f"srun {run}"
    evaluate_command = (": # one process: the run step above also evaluated "
                        "the job")
  else:
    train_command = f"srun {run} --distributed --phase=train"
    evaluate_command = ("forward_term srun --nodes=1 --ntasks=1 "
                        f"{run} --phase=evaluate")
  gpus = gpus_per_job // nodes_per_job
  text = importlib.resources.files("disentax.sweep").joinpath(
      TEMPLATE_NAME).read_text()
  return string.Template(text).substitute(
      job_name=_safe(os.path.basename(root)) or "sweep",
      array=array, num_jobs=len(jobs), nodes=nodes_per_job,
      cpus_per_task=cpus_per_task, time=time,
      partition=(f"#SBATCH --partition={partition}" if partition
                 else "## --partition: the cluster's default"),
      gpus=(f"#SBATCH --gpus-per-node={gpus}" if gpus
            else "## no GPUs requested"),
      logs=logs, workdir=shlex.quote(os.getcwd()),
      train_command=train_command, evaluate_command=evaluate_command)
