"""The evaluation job, as its own process:

  python -m disentax.evaluate --workdir=DIR [--battery=config|full|none]
      [--checkpoint=last|best] [--failure_threshold=0.1] [--notraversals]

Scores every member of DIR's latest checkpoint (or, with --checkpoint=best,
each member's checkpoint with the best traced primary metric) with the
primary metric and the battery, writes DIR/results/ and prints the
failure-rate table (disentax/evaluation/job.py).
"""

from absl import app, flags, logging

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
  logging.set_verbosity(logging.WARNING)  # Orbax logs every restore at INFO
  _, config = job.evaluate(_WORKDIR.value, battery=_BATTERY.value,
                           traversals=_TRAVERSALS.value,
                           checkpoint_selection=_CHECKPOINT.value)
  print(job.summary(_WORKDIR.value, config, _FAILURE_THRESHOLD.value))


if __name__ == "__main__":
  app.run(main)
