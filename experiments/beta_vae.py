"""beta-VAE on dSprites, 50 seeds x the dlib-google beta grid, one program.

Presets (select with `experiments/beta_vae.py:PRESET`):
  paper  (default) Locatello et al. 2019 / disentanglement_lib: 64x64 dSprites,
         batch 64, 300k steps, Adam 1e-4 (b1 .9, b2 .999), beta in
         {1, 2, 4, 6, 8, 16}, 50 seeds = 300 models.
  cpu    a few minutes on 2 CPU cores: 32x32 dSprites, 3 betas x 4 seeds,
         still a real (if short-trained) failure-rate table.
  tiny   seconds; for tests of the whole CLI path.

  python -m disentax.main --config=experiments/beta_vae.py:cpu --workdir=runs/bvae
  python -m disentax.evaluate --workdir=runs/bvae
"""

from disentax.config import base_config


def get_config(preset: str | None = None):
  preset = preset or "paper"
  config = base_config()
  config.dataset.image_size = 64
  config.model.num_latents = 10
  config.model.encoder_kernel_sizes = (4, 4, 2, 2)  # dlib-google conv_encoder
  # disentanglement_lib beta-VAE sweep (Locatello et al. 2019, Table 2).
  config.objective.beta = (1.0, 2.0, 4.0, 6.0, 8.0, 16.0)
  config.num_seeds = 50
  # dlib-google training: batch 64, 300k steps, Adam lr 1e-4, b1 .9, b2 .999.
  config.train.batch_size = 64
  config.train.num_steps = 300_000
  config.train.learning_rate = 1e-4

  if preset == "paper":
    pass
  elif preset == "cpu":
    config.dataset.image_size = 32
    config.objective.beta = (1.0, 8.0)
    config.num_seeds = 3
    config.train.batch_size = 32
    config.train.num_steps = 1_500
    config.train.learning_rate = 1e-3
    config.train.steps_per_chunk = 100
    config.train.checkpoint_every = 500
    config.train.member_execution = "unroll"  # XLA:CPU: faster than vmap
    config.train.loop = "host"  # XLA:CPU: convolutions in loops are slow
    config.eval.metric.num_points = 5_000
  elif preset == "tiny":
    config.dataset.image_size = 16
    config.objective.beta = (1.0, 4.0)
    config.num_seeds = 2
    config.train.batch_size = 8
    config.train.num_steps = 20
    config.train.steps_per_chunk = 5
    config.train.checkpoint_every = 10
    config.train.progress = False
    config.eval.metric.num_points = 500
  else:
    raise ValueError(f"unknown preset {preset!r}; allowed: paper, cpu, tiny")
  return config
