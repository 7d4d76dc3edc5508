"""Presets shared by the dSprites experiment configs.

Every `experiments/<method>.py` starts from `dsprites_config(preset)` and only
sets its objective and sweep grid, so the presets mean the same thing for
every method:

  paper  dlib-google training (Locatello et al. 2019): 64x64 dSprites, the
         standard conv architecture, batch 64, 300k steps, Adam lr 1e-4
         (b1 .9, b2 .999), 50 seeds; evaluated with the whole metric
         battery at dlib's sizes; NMI/MIG traced every 5,000 steps;
         reconstructions and traversals to TensorBoard as often.
  cpu    a few minutes on 2 CPU cores: 32x32 dSprites, batch 32, 1,500 steps,
         3 seeds (methods shrink their grid to two values); the battery at
         reduced sizes; traced every 100 steps, images every 500.
  tiny   seconds; for tests of the whole path (MIG only, no tracing, no
         images: they would compile the decoder).
"""

from disentax.config import base_config

PRESETS = ("paper", "cpu", "tiny")


def check_preset(preset: str | None, presets: tuple[str, ...],
                 default: str) -> str:
  """`preset` (or the default when empty), if it is one of `presets`."""
  preset = preset or default
  if preset not in presets:
    raise ValueError(f"unknown preset {preset!r}; allowed: "
                     f"{', '.join(presets)}")
  return preset


def battery(num_train: int | None = None, num_test: int | None = None
            ) -> dict[str, dict[str, int]]:
  """Every metric besides MIG (config.eval.battery): at dlib-google's sizes
  (10,000 train / 5,000 test points) when no size is given, else with
  `num_train` / `num_test` points, and a fifth as many BetaVAE/FactorVAE
  votes (each vote encodes a batch of 64 (pairs of) images, so they cost
  ~100x a point: 1,000 votes of 50 members take ~10 minutes on 2 cores)."""
  names = ("beta_vae_score", "factor_vae_score", "modularity_explicitness",
           "dci", "sap", "irs", "unsupervised", "active_latents", "udr",
           "elbo_decomposition")
  if num_train is None:
    return {name: {} for name in names}
  test = {"num_test": num_test}
  votes = {"num_train": max(num_train // 5, 2), "num_eval": max(num_test // 5,
                                                                 2)}
  return {
      "beta_vae_score": votes,
      "factor_vae_score": {**votes, "num_variance_estimate": num_train},
      "modularity_explicitness": {"num_train": num_train, **test},
      "dci": {"num_train": num_train, **test},
      "sap": {"num_train": num_train, **test},
      "irs": {"num_train": num_train},
      "unsupervised": {"num_train": num_train},
      "active_latents": {"num_points": num_train},
      "udr": {"num_points": min(num_train, 1_000)},
      "elbo_decomposition": {"num_points": min(num_train, 2_000)},
  }


def dsprites_config(preset: str | None):
  preset = check_preset(preset, PRESETS, "paper")
  config = base_config()
  config.dataset.image_size = 64
  config.model.num_latents = 10
  config.model.encoder_kernel_sizes = (4, 4, 2, 2)  # dlib-google conv_encoder
  # dlib-google training: batch 64, 300k steps, Adam lr 1e-4, b1 .9, b2 .999.
  config.num_seeds = 50
  config.train.batch_size = 64
  config.train.num_steps = 300_000
  config.train.learning_rate = 1e-4
  config.eval.trace_every = 5_000
  config.eval.battery = battery()
  config.log.images_every = 5_000
  if preset == "cpu":
    config.dataset.image_size = 32
    config.num_seeds = 3
    config.train.batch_size = 32
    config.train.num_steps = 1_500
    config.train.learning_rate = 1e-3
    config.train.steps_per_chunk = 100
    config.train.checkpoint_every = 500
    config.eval.metric.num_points = 5_000
    config.eval.trace_every = 100
    config.log.images_every = 500
    config.eval.battery = battery(num_train=1_000, num_test=500)
  elif preset == "tiny":
    config.dataset.image_size = 16
    config.num_seeds = 2
    config.train.batch_size = 8
    config.train.num_steps = 20
    config.train.steps_per_chunk = 5
    config.train.checkpoint_every = 10
    config.train.progress = False
    # vmap compiles one step for all members (unroll compiles one per member);
    # at 16 px and batch 8 its CPU run-time cost does not matter.
    config.train.member_execution = "vmap"
    config.eval.metric.num_points = 500
    config.eval.metric.batch_size = 500  # one encoder call, no padding
    config.eval.trace_every = 0
    config.log.images_every = 0
    config.eval.battery = {}
    config.eval.traversals = False  # drawn in tests/test_evaluate.py
  return config, preset
