"""beta-VAE on dSprites: 50 seeds x the dlib-google beta grid, one program.

Presets (`experiments/beta_vae.py:PRESET`, see experiments/common.py):
  paper (default) beta in {1, 2, 4, 6, 8, 16} x 50 seeds = 300 models.
  cpu   beta in {1, 8} x 3 seeds, 32x32, ~4 minutes on 2 CPU cores.
  tiny  beta in {1, 4} x 2 seeds, seconds.

  python -m disentax.main --config=experiments/beta_vae.py:cpu --workdir=runs/bvae
  python -m disentax.evaluate --workdir=runs/bvae
"""

from experiments.common import dsprites_config


def get_config(preset: str | None = None):
  config, preset = dsprites_config(preset)
  config.objective.name = "beta_vae"
  # disentanglement_lib beta-VAE sweep (Locatello et al. 2019, Table 2).
  config.objective.beta = {
      "paper": (1.0, 2.0, 4.0, 6.0, 8.0, 16.0),
      "cpu": (1.0, 8.0),
      "tiny": (1.0, 4.0)}[preset]
  return config
