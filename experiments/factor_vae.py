"""FactorVAE on dSprites: seeds x the dlib-google gamma grid, one program.

Each member trains its VAE and its own discriminator (6 x dense 1000,
leaky ReLU; Adam lr 1e-4, b1 0.5, b2 0.9) in the same step.

Presets (`experiments/factor_vae.py:PRESET`, see experiments/common.py):
  paper (default) gamma in {10, 20, 30, 40, 50, 100} x 50 seeds = 300 models.
  cpu   gamma in {10, 40} x 3 seeds, 32x32, the full discriminator.
  tiny  gamma in {10, 40} x 2 seeds, seconds; a 2 x 64 discriminator.

  python -m disentax.main --config=experiments/factor_vae.py:cpu --workdir=runs/factor
  python -m disentax.evaluate --workdir=runs/factor
"""

from experiments.common import dsprites_config


def get_config(preset: str | None = None):
  config, preset = dsprites_config(preset)
  config.objective.name = "factor_vae"
  # disentanglement_lib FactorVAE sweep (Locatello et al. 2019, Table 2;
  # unsupervised_study_v1/sweep.py): gamma in {10, 20, 30, 40, 50, 100}.
  config.objective.gamma = {
      "paper": (10.0, 20.0, 30.0, 40.0, 50.0, 100.0),
      "cpu": (10.0, 40.0),
      "tiny": (10.0, 40.0)}[preset]
  # dlib-google fc_discriminator and discriminator optimiser.
  config.objective.discriminator_width = 64 if preset == "tiny" else 1000
  config.objective.discriminator_depth = 2 if preset == "tiny" else 6
  config.objective.discriminator_learning_rate = 1e-4
  config.objective.discriminator_b1 = 0.5
  config.objective.discriminator_b2 = 0.9
  return config
