"""Trains every member of a config, then evaluates the final checkpoint:

  python -m disentax.main --config=experiments/beta_vae.py:cpu --workdir=DIR \
      [--config.train.num_steps=5000 ...] [--noevaluate]

With no flags it runs the embedded default, the CPU-sized beta-VAE preset, in
runs/beta_vae_cpu.  Rerunning on the same DIR resumes from its latest
checkpoint.  The evaluation reads only the checkpoint in DIR (the same code
as the separate job `python -m disentax.evaluate --workdir=DIR`) and prints
the failure-rate table; it scores the primary metric (MIG) unless
--battery=config|full asks for the metric battery too.  With --noevaluate,
run that job yourself (e.g. on another machine).

Members are split over every device JAX sees (`--config.train.num_devices`
to choose fewer).  Several processes train one run together with
--distributed: under SLURM (one task per node) nothing else is needed,
otherwise give --coordinator=HOST:PORT --num_processes=N --process_id=I to
each.  On SIGTERM (SLURM's preemption / time-limit signal) the run
checkpoints and exits with status 143; rerunning the command resumes it.

One process trains a workdir at a time: a second one is refused at once
("workdir in use by pid N on host H").  Errors end in one line, `error:
...`, with exit status 2 for a bad flag or config value and 1 for any
other failure; --verbose prints the traceback too (`disentax.cli`).
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from disentax import cli, pipeline
from disentax.evaluation import job

# Relative to the working directory, as every config path (the README runs
# it from the repository's root).
DEFAULT_CONFIG = os.path.join("experiments", "beta_vae.py") + ":cpu"
DEFAULT_WORKDIR = os.path.join("runs", "beta_vae_cpu")

_CONFIG = config_flags.DEFINE_config_file(
    "config", DEFAULT_CONFIG, "experiment config file[:preset]",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", DEFAULT_WORKDIR, "directory for "
                               "checkpoints and logs (resumed if it has a "
                               "checkpoint)")
_EVALUATE = flags.DEFINE_bool("evaluate", True, "evaluate the final "
                              "checkpoint and print the failure-rate table")
_BATTERY = flags.DEFINE_enum(
    "battery", "none", job.BATTERIES, "metrics scored besides the primary "
    "one: none (the quick default), the config's eval.battery (config), or "
    "every registered metric (full)")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "join a multi-process run (jax.distributed; "
    "auto-detected under SLURM)")
_COORDINATOR = flags.DEFINE_string(
    "coordinator", None, "with --distributed outside SLURM: host:port of "
    "process 0")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None,
                                      "with --coordinator: process count")
_PROCESS_ID = flags.DEFINE_integer("process_id", None,
                                   "with --coordinator: this process's id")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
  given = [f"--{flag.name}={flag.value}"
           for flag in (_COORDINATOR, _NUM_PROCESSES, _PROCESS_ID)
           if flag.value is not None]
  if given and not _DISTRIBUTED.value:
    raise cli.UsageError(f"{' '.join(given)} without --distributed: this "
                         "process would train alone; add --distributed to "
                         "join a multi-process run, or drop them")
  distributed = None
  if _DISTRIBUTED.value:
    distributed = pipeline.Distributed(_COORDINATOR.value,
                                       _NUM_PROCESSES.value,
                                       _PROCESS_ID.value)
  phases = ("train", "evaluate") if _EVALUATE.value else ("train",)
  outcome = pipeline.run(_CONFIG.value, _WORKDIR.value, phases=phases,
                         distributed=distributed, battery=_BATTERY.value)
  if outcome.ending == "done" and _BATTERY.value == "none":
    print(f"metric battery: rerun with --battery=config (this config's) or "
          f"--battery=full, or python -m disentax.evaluate "
          f"--workdir={_WORKDIR.value} --battery=config", flush=True)
  sys.exit(outcome.exit_code)


if __name__ == "__main__":
  cli.run(main)
