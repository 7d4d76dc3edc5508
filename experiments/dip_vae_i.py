"""DIP-VAE-I on dSprites: seeds x the dlib-google lambda_od grid, one program.

Cov = Cov(mu); lambda_d = 10 * lambda_od.

Presets (`experiments/dip_vae_i.py:PRESET`, see experiments/common.py):
  paper (default) lambda_od in {1, 2, 5, 10, 20, 50} x 50 seeds = 300 models.
  cpu   lambda_od in {1, 10} x 3 seeds, 32x32.
  tiny  lambda_od in {1, 10} x 2 seeds, seconds.

  python -m disentax.main --config=experiments/dip_vae_i.py:cpu --workdir=runs/dip_i
  python -m disentax.evaluate --workdir=runs/dip_i
"""

from experiments.common import dsprites_config


def get_config(preset: str | None = None):
  config, preset = dsprites_config(preset)
  config.objective.name = "dip_vae_i"
  # disentanglement_lib DIP-VAE-I sweep (Locatello et al. 2019, Table 2):
  # lambda_od in {1, 2, 5, 10, 20, 50}, lambda_d_factor 10.
  config.objective.lambda_d_factor = 10.0
  config.objective.lambda_od = {
      "paper": (1.0, 2.0, 5.0, 10.0, 20.0, 50.0),
      "cpu": (1.0, 10.0),
      "tiny": (1.0, 10.0)}[preset]
  return config
