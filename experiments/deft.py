"""DEFT (Wu et al., Machine Learning 2022; arXiv 2021): one program per
dataset trains 50 seeds through all stages.

Presets (`experiments/deft.py:PRESET`):
  dsprites, color, scream, smallnorb   DEFT journal Table 2 (G, K, steps per
        stage N, pressures; gamma 0.1), trained as section 5.1 says: lite
        fractional encoder, Adam lr 5e-4, b1 0, b2 0.99, batch 256; 50 seeds
        (section 5.3).  color/scream/smallnorb need their datasets (files, see README).
  arxiv_dsprites, arxiv_color, arxiv_scream, arxiv_smallnorb   DEFT arXiv
        Table 1 (groups, epochs per stage, pressures); epochs are converted
        to steps at batch 256 (our assumption: the arXiv text gives no batch
        size); K = 3 as in the journal (the arXiv paper divides the standard
        10 latents by G, which does not divide for G = 4).
  gamma_ablation      journal 5.6 / Fig. 16-17b, arXiv Fig. 5: two stages
        (70 for 15,000 steps, then 30), gamma in {0, 0.1, 0.5, 1}; 10 seeds.
  piecewise_ablation  journal 5.6 / Fig. 15: stage 1 beta 70 for 15,000
        steps, stage 2 beta_2 swept (the values are ours: the figure gives
        none); 10 seeds.
  normal_encoder      arXiv 6.3 / Fig. 10: the Table 1 dSprites schedule on
        the standard (non-fractional) encoder, 12 latents; 10 seeds.
  tc                  DEFT(TC) (arXiv 6.5, eq. 7): base beta-TCVAE, the
        stage pressure on the MI term (alpha), beta 8 on TC, 1 on DWKL.
  fork_2022           the authors' fork after 2022-08-17 (scaling
        'fork_frozen_projection': old sub-encoders frozen, their outputs
        through a learnable projection) on the journal's dSprites setting
        (the `dsprites` preset otherwise).
  reproduce_2023      the fork's dSprites reproduction config
        (config/reproduce/dsprites_deft.gin): 10 latents in 5 sub-encoders,
        4 pressures 70, 30, 12, 1, 100,000 steps per stage, in the fork's
        mode; the 5th sub-encoder never opens (objectives/deft.py).  The gin
        sets no training length or optimiser: 4 x 100,000 steps, and the
        journal's optimiser and batch (our choice).
  cpu   a few minutes on 2 CPU cores: 32x32 dSprites, 2 stages (70, 1) x
        500 steps, 3 seeds.
  tiny  seconds; for tests.

  python -m disentax.main --config=experiments/deft.py:cpu --workdir=runs/deft
"""

from experiments.common import check_preset, dsprites_config

DSPRITES_SIZE = 737_280
# DEFT journal Table 2: (G, K, steps per stage N, pressures beta_i).
JOURNAL_TABLE_2 = {
    "color": (4, 3, 20_000, (160.0, 105.0, 30.0, 4.0)),
    "dsprites": (4, 3, 20_000, (70.0, 30.0, 12.0, 4.0)),
    "smallnorb": (2, 5, 40_000, (50.0, 1.0)),
    "scream": (2, 5, 40_000, (140.0, 1.0)),
}
# DEFT arXiv Table 1: (groups, epochs per stage, pressures).
ARXIV_TABLE_1 = {
    "dsprites": (4, (2, 2, 4, 15), (70.0, 30.0, 12.0, 1.0)),
    "color": (4, (2, 2, 4, 15), (160.0, 105.0, 30.0, 1.0)),
    "scream": (2, (4, 15), (140.0, 1.0)),
    "smallnorb": (4, (20, 40, 40, 400), (30.0, 5.0, 3.0, 1.0)),
}
# Dataset registry names and sizes (the colour variants render RGB and, as
# in dlib-deft, use the sum-of-squares reconstruction).
DATASETS = {"dsprites": ("dsprites", DSPRITES_SIZE, "bernoulli"),
            "color": ("color_dsprites", DSPRITES_SIZE, "gaussian"),
            "scream": ("scream_dsprites", DSPRITES_SIZE, "gaussian"),
            "smallnorb": ("smallnorb", 24_300, "bernoulli")}
BATCH_SIZE = 256  # journal 5.1
ABLATION_SEEDS = 10


def deft_training(config, num_groups, latents_per_group, pressures,
                  stage_steps, num_steps, gamma=(0.1,)):
  """The journal's DEFT training (section 5.1) on `config`; `gamma` None
  leaves it unset (the fork's mode has none)."""
  config.model.encoder = "fractional"
  config.model.num_groups = num_groups
  config.model.num_latents = num_groups * latents_per_group
  config.model.encoder_kernel_sizes = (4, 4, 4, 4)  # journal Table 1
  config.objective.name = "deft"
  config.objective.base = "beta_vae"
  config.objective.staged = "beta"
  config.objective.pressures = tuple(pressures)
  config.objective.stage_steps = stage_steps
  if gamma is not None:
    config.objective.gamma = gamma                   # journal Table 2: 0.1
  config.train.batch_size = BATCH_SIZE               # journal 5.1
  config.train.learning_rate = 5e-4                  # journal 5.1
  config.train.adam_b1, config.train.adam_b2 = 0.0, 0.99
  config.train.num_steps = num_steps
  # Information diffusion (journal Fig. 3) needs a finer trace than the
  # shared paper preset's every 5,000 steps.
  config.eval.trace_every = min(config.eval.trace_every, 1_000)
  return config


def use_dataset(config, key):
  name, _, reconstruction = DATASETS[key]
  config.dataset = {"name": name}
  if name == "smallnorb":  # real data: --config.dataset.data_dir=TFDS_DIR
    config.dataset["data_dir"] = ""
  config.objective.base_options = {"reconstruction": reconstruction}
  return config


# The DEFT authors' fork (dlib-deft, erow/disentanglement_lib), 2023:
# config/reproduce/dsprites_deft.gin (G, K, steps per stage, pressures).
FORK_REPRODUCE_2023 = (5,                          # frac_encoder.G=5
                       2,                          # model.num_latent=10 / G
                       100_000,                    # deft.stage_steps
                       (70.0, 30.0, 12.0, 1.0))    # deft.betas
# The fork's projection of frozen sub-encoders' log-variance in its latest
# stored form (logvar + W2; models.vae.PROJECTIONS).
FORK_PROJECTION = "logvar_shift"
FORK_PRESETS = ("fork_2022", "reproduce_2023")

PRESETS = (tuple(JOURNAL_TABLE_2) + tuple(f"arxiv_{k}" for k in ARXIV_TABLE_1)
           + ("gamma_ablation", "piecewise_ablation", "normal_encoder", "tc")
           + FORK_PRESETS + ("cpu", "tiny"))


def fork_training(config, groups, per_group, stage_steps, pressures):
  """The journal's training in the fork's mode (old sub-encoders frozen,
  their outputs through the learnable projection; no gamma), `stage_steps`
  per pressure (the fork's configs set no training length: the last stage
  as long as the others)."""
  deft_training(config, groups, per_group, pressures, stage_steps,
                len(pressures) * stage_steps, gamma=None)
  config.objective.scaling = "fork_frozen_projection"
  config.model.latent_projection = FORK_PROJECTION
  return config


def get_config(preset: str | None = None):
  preset = check_preset(preset, PRESETS, "dsprites")
  base_preset = preset if preset in ("cpu", "tiny") else "paper"
  config, _ = dsprites_config(base_preset)
  if preset in JOURNAL_TABLE_2:
    groups, per_group, steps, pressures = JOURNAL_TABLE_2[preset]
    deft_training(config, groups, per_group, pressures, steps, groups * steps)
    return use_dataset(config, preset)
  if preset == "fork_2022":
    fork_training(config, *JOURNAL_TABLE_2["dsprites"])
    return use_dataset(config, "dsprites")
  if preset == "reproduce_2023":
    fork_training(config, *FORK_REPRODUCE_2023)
    return use_dataset(config, "dsprites")
  if preset.startswith("arxiv_"):
    key = preset[len("arxiv_"):]
    groups, epochs, pressures = ARXIV_TABLE_1[key]
    steps_per_epoch = -(-DATASETS[key][1] // BATCH_SIZE)
    stage_steps = tuple(e * steps_per_epoch for e in epochs)
    deft_training(config, groups, 3, pressures, stage_steps, sum(stage_steps))
    return use_dataset(config, key)
  if preset == "cpu":
    deft_training(config, 2, 3, (70.0, 1.0), 500, 1_000)
    config.train.batch_size = 32
    config.train.learning_rate = 1e-3
    return config
  if preset == "tiny":
    deft_training(config, 2, 2, (8.0, 1.0), 10, 20)
    config.train.batch_size = 8
    config.train.learning_rate = 1e-3
    return config
  groups, per_group, steps, pressures = JOURNAL_TABLE_2["dsprites"]
  deft_training(config, groups, per_group, pressures, steps, groups * steps)
  config.num_seeds = ABLATION_SEEDS
  if preset == "gamma_ablation":
    config.model.num_groups, config.model.num_latents = 2, 6
    config.objective.pressures = (70.0, 30.0)
    config.objective.stage_steps = 15_000
    config.objective.gamma = (0.0, 0.1, 0.5, 1.0)
    config.train.num_steps = 30_000
  elif preset == "piecewise_ablation":
    config.model.num_groups, config.model.num_latents = 2, 6
    config.objective.pressures = tuple((70.0, b) for b in (1.0, 12.0, 30.0,
                                                           50.0))
    config.objective.stage_steps = 15_000
    config.train.num_steps = 30_000
  elif preset == "normal_encoder":
    config.model.encoder, config.model.num_groups = "standard", 1
  elif preset == "tc":
    config.num_seeds = 50
    config.objective.base = "beta_tcvae"
    config.objective.staged = "alpha"
    config.objective.base_options = {"beta": 8.0, "gamma": 1.0}  # arXiv 6.5
  return config
