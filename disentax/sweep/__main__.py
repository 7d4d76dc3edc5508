"""The CLI: `python -m disentax.sweep {plan,run,status,merge,slurm} --flags`
(usage in the package docstring, disentax/sweep/__init__.py).

Run as the program, its `--help` shows the package docstring.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Sequence

from absl import flags, logging

import disentax.sweep
from disentax import cli
from disentax.cli import UsageError
from disentax.sweep.merging import MERGED_DIR, merge
from disentax.sweep.plan import plan_path, read_plan, write_plan
from disentax.sweep.run import PHASES, run_job
from disentax.sweep.slurm import render_slurm
from disentax.sweep.status import format_status, job_states


COMMANDS = ("plan", "run", "status", "merge", "slurm")

flags.DEFINE_string("root", None, "Sweep root: plan.json and one workdir "
                    "per job.")
flags.DEFINE_string("sweep", None, "plan: sweep file[:arg], e.g. "
                    "experiments/sweeps/tiny.py.")
flags.DEFINE_integer("job", None, "run: job index (default "
                     "$SLURM_ARRAY_TASK_ID).")
flags.DEFINE_bool("distributed", False, "run: call "
                  "jax.distributed.initialize() first (one process per "
                  "node; SLURM is auto-detected).")
flags.DEFINE_enum("phase", "all", PHASES, "run: train and evaluate (all), "
                  "or only one of them (multi-node jobs).")
flags.DEFINE_bool("todo", False, "status: print only the indices of the "
                  "jobs to (re)run (missing or failed).")
flags.DEFINE_string("out", None, "merge: output directory (default "
                    "ROOT/merged); slurm: write the script here (default "
                    "stdout).")
flags.DEFINE_string("metric", "mig", "merge: metric of the failure table.")
flags.DEFINE_float("threshold", 0.1, "merge: a seed fails below this.")
flags.DEFINE_bool("figures", True, "merge: draw the report's figures.")
flags.DEFINE_string("partition", "", "slurm: partition (default: the "
                    "cluster's).")
flags.DEFINE_string("time", "24:00:00", "slurm: time limit per job.")
flags.DEFINE_integer("gpus_per_job", 1, "slurm: GPUs per job, split evenly "
                     "over its nodes (0: none).")
flags.DEFINE_integer("nodes_per_job", 1, "slurm: nodes per job (one "
                     "process each).")
flags.DEFINE_integer("max_concurrent", 0, "slurm: at most this many array "
                     "tasks at once (0: no limit).")
flags.DEFINE_integer("cpus_per_task", 8, "slurm: CPUs per process.")
flags.DEFINE_string("python", "python", "slurm: the Python interpreter "
                    "the jobs run.")
flags.DEFINE_bool("missing_only", False, "slurm: array over the jobs not "
                  "done or running only.")


def _required(name: str) -> Any:
  value = flags.FLAGS[name].value
  if value in (None, ""):
    raise UsageError(f"--{name} is required")
  return value


def main(argv: Sequence[str]) -> int:
  """The CLI: `python -m disentax.sweep COMMAND --flags` (module doc)."""
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise UsageError(f"usage: python -m disentax.sweep "
                     f"{{{','.join(COMMANDS)}}} --root=ROOT ...; got "
                     f"{list(argv[1:])}")
  command, f = argv[1], flags.FLAGS
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
  root = _required("root")
  if command == "plan":
    spec = _required("sweep")
    jobs, written = write_plan(spec, root)
    description = read_plan(root).get("description")
    if description:
      print(description)
    print(f"{'planned' if written else 'plan unchanged:'} {len(jobs)} jobs "
          f"in {plan_path(root)}")
    print(f"  SLURM: python -m disentax.sweep slurm --root={root} "
          f"--out={os.path.join(root, 'sweep.sbatch')} && sbatch "
          f"{os.path.join(root, 'sweep.sbatch')}")
    print(f"  here:  launch/sweep_local.sh {root}")
    print(f"  then:  python -m disentax.sweep status --root={root}; "
          f"python -m disentax.sweep merge --root={root}")
    return 0
  if command == "run":
    logging.set_verbosity(logging.ERROR)
    return run_job(root, f.job, distributed=f.distributed, phase=f.phase)
  if command == "status":
    logging.set_verbosity(logging.ERROR)  # read-only Orbax managers warn
    states = job_states(root)
    if f.todo:
      print("\n".join(str(s["index"]) for s in states
                      if s["state"] in ("missing", "failed")))
    else:
      print(format_status(states), end="")
    return 0
  if command == "merge":
    logging.set_verbosity(logging.ERROR)
    merged = merge(root, f.out, metric=f.metric, threshold=f.threshold,
                   figures=f.figures)
    print(merged["markdown"], end="")
    out = f.out or os.path.join(root, MERGED_DIR)
    print(f"\nmerged {len(merged['rows'])} rows of {len(merged['merged'])} "
          f"jobs into {out}; {len(merged['missing'])} jobs missing",
          file=sys.stderr)
    return 0
  script = render_slurm(
      root, partition=f.partition, time=f.time, gpus_per_job=f.gpus_per_job,
      nodes_per_job=f.nodes_per_job, max_concurrent=f.max_concurrent,
      cpus_per_task=f.cpus_per_task, python=f.python,
      missing_only=f.missing_only)
  if f.out:
    with open(f.out, "w") as handle:
      handle.write(script)
    print(f"wrote {f.out}; submit with: sbatch {f.out}", file=sys.stderr)
  else:
    print(script, end="")
  return 0


if __name__ == "__main__":
  # --help prints the main module's docstring: the package's (the usage).
  __doc__ = disentax.sweep.__doc__  # pylint: disable=redefined-builtin
  cli.run(main)
