"""DeVAE (decremental information bottleneck, DeVAE paper) on dSprites.

Presets (`experiments/devae.py:PRESET`):
  paper (default)  section 3.1: 3 latent layers, betas [1, 10, 40], s = 1,
        Adam lr 1e-4 (b1 .9, b2 .999), batch 256, 300,000 steps; 10 seeds
        ("each trail was repeated 10 times").
  latent1024  section 3.2 / Fig. 5 / A.7: the same with 1,024 latents.
  betas_redundant, betas_insufficient  Table 3: betas [1, 10, 20, 40, 80]
        and [1, 10] (5 and 2 layers; [1, 10, 40] is `paper`); 5 seeds.
  scale  Table 4: s swept (values ours: the table's s values are not in our
        copy of the paper), betas [1, 10, 40]; 5 seeds.
  cpu   minutes on 2 CPU cores: 32x32, 3 layers, 3 seeds, 1,500 steps.
  tiny  seconds; for tests.

Evaluation scores every layer (`mig_layer0`, ...); the layers' mean codes
differ only by positive per-latent factors, so their MIGs agree (DeVAE
Table 2, DiT row) - a check, not a coincidence.

  python -m disentax.main --config=experiments/devae.py:cpu --workdir=runs/devae
"""

from experiments.common import check_preset, dsprites_config

PRESETS = ("paper", "latent1024", "betas_redundant", "betas_insufficient",
           "scale", "cpu", "tiny")


def get_config(preset: str | None = None):
  preset = check_preset(preset, PRESETS, "paper")
  config, _ = dsprites_config(preset if preset in ("cpu", "tiny")
                              else "paper")
  config.model = {"name": "devae", "num_latents": 10, "num_layers": 3,
                  "encoder_kernel_sizes": (4, 4, 2, 2)}
  config.objective = {"name": "devae", "betas": (1.0, 10.0, 40.0),  # 3.1
                      "scale": (1.0,),                               # s = 1
                      # Algorithm 1 samples one layer per step; 'summed'
                      # is the authors' code (every layer, weighted s^i).
                      "layers": "sampled"}
  if preset in ("cpu", "tiny"):
    return config
  config.num_seeds = 10
  config.train.batch_size = 256   # DeVAE 3.1
  config.train.learning_rate = 1e-4
  if preset == "latent1024":
    config.model.num_latents = 1024
  elif preset == "betas_redundant":
    config.num_seeds = 5
    config.model.num_layers = 5
    config.objective.betas = (1.0, 10.0, 20.0, 40.0, 80.0)
  elif preset == "betas_insufficient":
    config.num_seeds = 5
    config.model.num_layers = 2
    config.objective.betas = (1.0, 10.0)
  elif preset == "scale":
    config.num_seeds = 5
    config.objective.scale = (0.5, 1.0, 2.0)
  return config
