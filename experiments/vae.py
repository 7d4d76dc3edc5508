"""The VAE on dSprites: the baseline, seeds only (no hyperparameter grid).

Presets (`experiments/vae.py:PRESET`, see experiments/common.py):
  paper (default) 50 seeds at dlib-google's training.
  cpu   3 seeds, 32x32, a few minutes on 2 CPU cores.
  tiny  2 seeds, seconds.

  python -m disentax.main --config=experiments/vae.py:cpu --workdir=runs/vae
  python -m disentax.evaluate --workdir=runs/vae
"""

from experiments.common import dsprites_config


def get_config(preset: str | None = None):
  config, _ = dsprites_config(preset)
  config.objective.name = "vae"
  return config
