"""The annealing test (DEFT journal 4.1, 5.2; arXiv 5.1, 6.1): information
freezing points (IFP) on dSprites.

Presets (`experiments/annealing_test.py:PRESET`):
  per_factor (default)  Fig. 6: per-factor IFP distributions.  Each member
        trains on the sub-dataset varying one factor (the others fixed at
        values drawn from its seed); 5 factors x 50 repeats (seeds) = 250
        members in one program.  dlib-deft's test: 1 latent, batch 64,
        8,000 steps, beta = 70 exp(-15 t) + 1.
  dataset  Fig. 4 / Fig. 13a: the whole dataset, the standard model (10
        latents), beta linear from 200 to 0 over 100,000 steps (journal
        4.1); the KL curve gives the IFP and its increment change points
        (the unsupervised variant, section 5.5); 10 seeds (ours).
  cpu   minutes on 2 CPU cores: 32x32, per factor, 3 repeats, 1,500 steps.
  tiny  seconds; for tests.

Every `config.eval.trace_every` steps the `loss_terms` evaluator records
each member's KL and beta on a batch of its own sub-dataset (the resolution
of the IFP, part of the run's config); the evaluation job reads each
member's IFP off that curve (evaluator `ifp`) and prints the IFP
distribution per factor; `python -m disentax.propose --workdir=DIR` turns a
per-factor run into proposed DEFT stages.

  python -m disentax.main --config=experiments/annealing_test.py:cpu --workdir=runs/ifp
"""

from experiments.common import check_preset, dsprites_config

PRESETS = ("per_factor", "dataset", "cpu", "tiny")


def get_config(preset: str | None = None):
  preset = check_preset(preset, PRESETS, "per_factor")
  config, _ = dsprites_config(preset if preset in ("cpu", "tiny")
                              else "paper")
  config.objective.name = "annealing_test"
  config.objective.factors = "all"
  # dlib-deft: beta = 70 exp(-15 t) + 1 over 8,000 steps, batch 64, 1 latent.
  config.objective.schedule = "exponential"
  config.objective.beta_start = 71.0
  config.objective.beta_end = 1.0
  config.objective.rate = 15.0
  config.objective.anneal_steps = 8_000
  config.model.num_latents = 1
  config.train.batch_size = 64
  config.train.num_steps = 8_000
  config.train.steps_per_chunk = 50
  config.train.checkpoint_every = 8_000
  config.eval.metric.num_points = 2_000
  # The KL-vs-beta curve the IFP is read off, every 50 steps (dlib-deft logs
  # its training KL at that resolution), on 1,000 points per member.
  config.eval.trace_every = 50
  config.eval.trace = {"loss_terms": {"num_points": 1_000,
                                      "batch_size": 500}}
  config.eval.battery.ifp = {"threshold": 0.1}  # journal 4.1
  if preset == "dataset":
    # Journal 4.1: "annealing beta from 200 to 0 in 100,000 iterations".
    config.objective.factors = "dataset"
    config.objective.schedule = "linear"
    config.objective.beta_start, config.objective.beta_end = 200.0, 0.0
    config.objective.anneal_steps = 100_000
    config.model.num_latents = 10
    config.num_seeds = 10
    config.train.num_steps = config.train.checkpoint_every = 100_000
    config.train.steps_per_chunk = config.eval.trace_every = 250
    config.eval.metric.num_points = 10_000
  elif preset == "cpu":
    config.num_seeds = 3
    config.objective.anneal_steps = config.train.num_steps = 1_500
    config.train.batch_size = 32
    config.train.steps_per_chunk = config.eval.trace_every = 25
    config.train.checkpoint_every = 1_500
    config.eval.trace = {"loss_terms": {"num_points": 256,
                                        "batch_size": 256}}
  elif preset == "tiny":
    config.objective.anneal_steps = config.train.num_steps = 20
    config.train.batch_size = 8
    config.train.steps_per_chunk = config.eval.trace_every = 2
    config.train.checkpoint_every = 20
    config.eval.metric.num_points = 500
    config.eval.trace = {"loss_terms": {"num_points": 64, "batch_size": 64}}
  return config
