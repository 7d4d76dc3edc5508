"""Trains every member of a config:

  python -m disentax.main --config=experiments/beta_vae.py:cpu --workdir=DIR \
      [--config.train.num_steps=5000 ...]

Rerunning on the same DIR resumes from its latest checkpoint.  Evaluate with
`python -m disentax.evaluate --workdir=DIR`.
"""

from absl import app, flags
from ml_collections import config_flags

from disentax import train

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "experiment config file[:preset]", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "directory for checkpoints "
                               "and logs (resumed if it has a checkpoint)")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  train.train(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
