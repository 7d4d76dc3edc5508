"""Two-job sweep over the tiny beta-VAE (experiments/beta_vae.py:tiny):
beta 1 and beta 4 as separate jobs, 2 seeds each, 10 steps; seconds per job.
For tests and for trying the launchers:

  python -m disentax.sweep plan --sweep=experiments/sweeps/tiny.py \\
      --root=runs/sweep_tiny
  launch/sweep_local.sh runs/sweep_tiny
  python -m disentax.sweep merge --root=runs/sweep_tiny
"""

import ml_collections


def get_sweep(arg=None):
  del arg  # no options
  sweep = ml_collections.ConfigDict(convert_dict=False)  # dotted keys
  sweep.configs = ("experiments/beta_vae.py:tiny",)
  sweep.datasets = ({},)  # the config's own dSprites
  # One beta per job (the tiny preset vmaps both in one program).
  sweep.grid = {"objective.beta": ((1.0,), (4.0,))}
  sweep.num_seeds = 2
  sweep.seeds_per_job = 2
  sweep.overrides = {"train.num_steps": 10, "train.steps_per_chunk": 5,
                     "train.checkpoint_every": 10, "eval.traversals": False}
  return sweep
