"""The deterministic autoencoder on dSprites: the reconstruction-only
baseline (no KL, no sampling), seeds only (no hyperparameter grid).

Presets (`experiments/autoencoder.py:PRESET`, see experiments/common.py):
  paper (default) 50 seeds at dlib-google's training.
  cpu   3 seeds, 32x32, a few minutes on 2 CPU cores.
  tiny  2 seeds, seconds.

  python -m disentax.main --config=experiments/autoencoder.py:cpu --workdir=runs/ae
  python -m disentax.evaluate --workdir=runs/ae
"""

from experiments.common import dsprites_config


def get_config(preset: str | None = None):
  config, _ = dsprites_config(preset)
  config.objective.name = "autoencoder"
  return config
