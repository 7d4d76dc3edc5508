"""The evaluation job, as its own process:

  python -m disentax.evaluate --workdir=DIR [--battery=config|full|none]
      [--checkpoint=last|best] [--failure_threshold=0.1] [--notraversals]

Scores every member of DIR's latest readable checkpoint (or, with
--checkpoint=best, each member's checkpoint with the best traced primary
metric) with the primary metric and the battery, writes DIR/results/ and
prints the failure-rate table (disentax/evaluation/job.py).  Errors end in
one line, `error: ...`: exit status 2 for a bad flag value, 1 for any other
failure (--verbose prints the traceback too).
"""

from absl import app, flags, logging

from disentax import cli
from disentax import config as config_lib
from disentax.evaluation import job

_WORKDIR = flags.DEFINE_string("workdir", None, "training workdir to evaluate")
_BATTERY = flags.DEFINE_enum(
    "battery", "config", job.BATTERIES, "metrics besides eval.metric: the "
    "config's eval.battery, every registered metric (full), or none")
_CHECKPOINT = flags.DEFINE_enum(
    "checkpoint", None, config_lib.CHECKPOINT_SELECTIONS, "which checkpoint "
    "to score: the latest (last), or per member the traced step with the "
    "best primary metric among those with a checkpoint (best: best of run); "
    "default: the config's eval.checkpoint")
_FAILURE_THRESHOLD = flags.DEFINE_float(
    "failure_threshold", None, "failure = metric below this (default: the "
    "config's eval.failure_threshold, 0.1 for MIG as in the DEFT papers)")
_TRAVERSALS = flags.DEFINE_boolean(
    "traversals", None, "draw latent traversal PNGs (default: the config's "
    "eval.traversals)")
flags.mark_flag_as_required("workdir")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  threshold = _FAILURE_THRESHOLD.value
  if threshold is not None and not 0 < threshold < 1:
    raise cli.UsageError(f"--failure_threshold={threshold}; must be in (0, 1)")
  # Orbax logs every restore at INFO, and warns that a read-only manager is.
  logging.set_verbosity(logging.ERROR)
  _, config = job.evaluate(_WORKDIR.value, battery=_BATTERY.value,
                           traversals=_TRAVERSALS.value,
                           checkpoint_selection=_CHECKPOINT.value)
  print(job.summary(_WORKDIR.value, config, threshold))


if __name__ == "__main__":
  cli.run(main)
