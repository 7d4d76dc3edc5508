"""Sweep files for `python -m disentax.sweep` (see disentax/sweep/__init__.py).

Each module's `get_sweep(arg=None)` returns the configs, datasets,
hyperparameter grid and seed chunks of a sweep; `plan` expands it into the
jobs of ROOT/plan.json.

  tiny         2 jobs of the tiny beta-VAE (tests, trying the launchers).
  deft_table4  DEFT journal Table 4: 5 methods x 4 datasets x 50 seeds.
"""
