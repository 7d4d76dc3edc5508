"""AnnealedVAE on dSprites: seeds x the dlib-google c_max grid, one program.

Presets (`experiments/annealed_vae.py:PRESET`, see experiments/common.py):
  paper (default) c_max in {5, 10, 25, 50, 75, 100} x 50 seeds = 300 models;
        gamma 1000, C reaches c_max at step 100,000 of 300,000.
  cpu   c_max in {5, 25} x 3 seeds, 32x32; C reaches c_max at step 500 of
        1,500 (the paper's fraction, 1/3 of training).
  tiny  c_max in {5, 25} x 2 seeds, seconds; C reaches c_max at step 10.

  python -m disentax.main --config=experiments/annealed_vae.py:cpu --workdir=runs/annealed
  python -m disentax.evaluate --workdir=runs/annealed
"""

from experiments.common import dsprites_config


def get_config(preset: str | None = None):
  config, preset = dsprites_config(preset)
  config.objective.name = "annealed_vae"
  # disentanglement_lib AnnealedVAE sweep (Locatello et al. 2019, Table 2):
  # gamma 1000, iteration_threshold 100,000, c_max in {5, 10, 25, 50, 75,
  # 100}.  The DEFT journal (Table 3) uses c_max 5 on dSprites.
  config.objective.gamma = 1000.0
  config.objective.c_max = {
      "paper": (5.0, 10.0, 25.0, 50.0, 75.0, 100.0),
      "cpu": (5.0, 25.0),
      "tiny": (5.0, 25.0)}[preset]
  config.objective.iteration_threshold = {
      "paper": 100_000, "cpu": 500, "tiny": 10}[preset]
  return config
