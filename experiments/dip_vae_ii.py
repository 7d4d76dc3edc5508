"""DIP-VAE-II on dSprites: seeds x the dlib-google lambda_od grid, one program.

Cov = E[diag(exp(logvar))] + Cov(mu); lambda_d = 1 * lambda_od.

Presets (`experiments/dip_vae_ii.py:PRESET`, see experiments/common.py):
  paper (default) lambda_od in {1, 2, 5, 10, 20, 50} x 50 seeds = 300 models.
  cpu   lambda_od in {1, 10} x 3 seeds, 32x32.
  tiny  lambda_od in {1, 10} x 2 seeds, seconds.

  python -m disentax.main --config=experiments/dip_vae_ii.py:cpu --workdir=runs/dip_ii
  python -m disentax.evaluate --workdir=runs/dip_ii
"""

from experiments.common import dsprites_config


def get_config(preset: str | None = None):
  config, preset = dsprites_config(preset)
  config.objective.name = "dip_vae_ii"
  # disentanglement_lib DIP-VAE-II sweep (Locatello et al. 2019, Table 2):
  # lambda_od in {1, 2, 5, 10, 20, 50}, lambda_d_factor 1.
  config.objective.lambda_d_factor = 1.0
  config.objective.lambda_od = {
      "paper": (1.0, 2.0, 5.0, 10.0, 20.0, 50.0),
      "cpu": (1.0, 10.0),
      "tiny": (1.0, 10.0)}[preset]
  return config
