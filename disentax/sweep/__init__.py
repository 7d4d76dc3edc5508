"""Sweep plans: methods x datasets x hyperparameter grid x seed chunks as jobs.

A *sweep file* is a Python module (e.g. `experiments/sweeps/tiny.py`) whose
`get_sweep(arg=None)` returns a ConfigDict (`ConfigDict(convert_dict=False)`,
so dotted keys stay keys) with
  configs    tuple of config specs "path[:preset]" (path relative to the repo
             root), loaded as `--config=` loads them: import the file, call
             `get_config(preset)`;
  datasets   tuple of dicts of dotted overrides, one per dataset
             (default `({},)`: the config's own dataset);
  grid       dict dotted key -> tuple of values; each combination of values
             is its own job (a value may itself be a tuple, e.g.
             `objective.beta` -> `((1.0,), (4.0,))`; a grid left inside the
             config is vmapped inside each job's program);
  num_seeds, seeds_per_job   seeds 0..num_seeds-1 in chunks of seeds_per_job
             (one job each; the last chunk may be smaller);
  overrides  dict of dotted overrides applied to every job (optional);
  config_overrides  dict config spec -> dotted overrides for that config's
             jobs only (optional, e.g. a data_dir only one dataset takes);
  description  one line printed when planning (optional).

`expand` turns it into jobs in a fixed order (configs, datasets, grid
combinations in sorted-key product order, seed chunks); each job has an
index, a readable unique name (its workdir under the sweep root, e.g.
`beta_vae-dsprites-beta=4-seeds_000-009`), its config spec and every
override it applies (first_seed / num_seeds included).

Usage:
  python -m disentax.sweep plan --sweep=experiments/sweeps/tiny.py[:ARG] \\
      --root=ROOT          # writes ROOT/plan.json (every job config built)
  python -m disentax.sweep run --root=ROOT [--job=K] [--distributed] \\
      [--phase=all|train|evaluate]   # K defaults to $SLURM_ARRAY_TASK_ID
  python -m disentax.sweep status --root=ROOT [--todo]
  python -m disentax.sweep merge --root=ROOT [--out=DIR] [--metric=mig] \\
      [--threshold=0.1] [--nofigures]
  python -m disentax.sweep slurm --root=ROOT [--out=FILE] [--partition=P] \\
      [--time=24:00:00] [--gpus_per_job=1] [--nodes_per_job=1] \\
      [--max_concurrent=0] [--cpus_per_task=8] [--missing_only]
and `launch/sweep_local.sh ROOT [SWEEP]` runs the plan on this machine.

Each job trains in `ROOT/<name>/` (resuming from its checkpoint) and
evaluates there, recording its state in `ROOT/<name>/job.json`: `running`
(host, pid, start time), `done`, `failed` (the error), `preempted` (the step
checkpointed after a SIGTERM; exit code 143 so the SLURM script requeues
it), `interrupted`, or `trained` (multi-node training finished, evaluation
is the next step).  A runner claims its job by locking the job's workdir
(`disentax.workdir.locked`) before it reads job.json for the last time: a
second runner of the same job is refused ("workdir in use by pid N on host
H", exit status 1) without writing anything.  `merge` collects every done job's results into
ROOT/merged/ (results.json / results.csv with a `job` column, and the
report of `disentax.report` over the same workdirs).

The package's modules: `spec` (loading sweep and config files, overrides),
`plan` (jobs, expansion, plan.json), `run` (one job, job.json), `status`,
`merging` (`merge`), `slurm` and `__main__` (the CLI, not imported here);
`disentax.sweep` re-exports their public names (`sweep.expand`,
`sweep.run_job`, ...).
"""

from disentax.sweep.spec import apply_overrides, load_sweep
from disentax.sweep.plan import (PLAN_NAME, PLAN_VERSION, SEED_KEYS,
                                 SWEEP_FIELDS, Job, expand, job_config,
                                 job_workdir, load_jobs, make_plan, plan_path,
                                 read_plan, seed_chunks, validate_jobs,
                                 write_plan)
from disentax.sweep.run import (PHASES, RECORDED_STATES, planned_config,
                                read_job_file, run_job)
from disentax.sweep.status import (STATES, count_states, format_status,
                                   job_states, last_checkpoint_step)
from disentax.sweep.merging import MERGED_DIR, merge
from disentax.sweep.slurm import LOGS_DIR, array_spec, render_slurm

__all__ = [
    "LOGS_DIR",
    "MERGED_DIR", "PHASES", "PLAN_NAME", "PLAN_VERSION",
    "RECORDED_STATES", "SEED_KEYS", "STATES",
    "SWEEP_FIELDS", "Job", "apply_overrides", "array_spec", "count_states",
    "expand", "format_status", "job_config", "job_states",
    "job_workdir", "last_checkpoint_step", "load_jobs",
    "load_sweep", "make_plan", "merge", "plan_path", "planned_config",
    "read_job_file", "read_plan", "render_slurm", "run_job", "seed_chunks",
    "validate_jobs", "write_plan",
]

