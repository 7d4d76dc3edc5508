"""Trains every member of a config, then evaluates the final checkpoint:

  python -m disentax.main --config=experiments/beta_vae.py:cpu --workdir=DIR \
      [--config.train.num_steps=5000 ...] [--noevaluate]

With no flags it runs the embedded default, the CPU-sized beta-VAE preset, in
runs/beta_vae_cpu.  Rerunning on the same DIR resumes from its latest
checkpoint.  The evaluation reads only the checkpoint in DIR (the same code
as the separate job `python -m disentax.evaluate --workdir=DIR`) and prints
the failure-rate table; with --noevaluate, run that job yourself (e.g. on
another machine).
"""

import os

from absl import app, flags, logging
from ml_collections import config_flags

from disentax import evaluate, train

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(_REPO, "experiments", "beta_vae.py") + ":cpu"
DEFAULT_WORKDIR = os.path.join("runs", "beta_vae_cpu")

_CONFIG = config_flags.DEFINE_config_file(
    "config", DEFAULT_CONFIG, "experiment config file[:preset]",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", DEFAULT_WORKDIR, "directory for "
                               "checkpoints and logs (resumed if it has a "
                               "checkpoint)")
_EVALUATE = flags.DEFINE_bool("evaluate", True, "evaluate the final "
                              "checkpoint and print the failure-rate table")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
  train.train(_CONFIG.value, _WORKDIR.value)
  if not _EVALUATE.value:
    print(f"trained; evaluate with: python -m disentax.evaluate "
          f"--workdir={_WORKDIR.value}")
    return
  rows, config = evaluate.evaluate(_WORKDIR.value)
  evaluate.print_summary(rows, config, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
