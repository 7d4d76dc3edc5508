"""DEFT journal Table 4 (Wu et al., Machine Learning 2022): the failure rate
(% of 50 seeds with MIG < 0.1) of DEFT, beta-VAE, beta-TCVAE, AnnealedVAE
and CascadeVAE-C on Color-dSprites, dSprites, SmallNORB and Scream-dSprites.

One config per (method, dataset) cell: `experiments/deft.py:<dataset>`
(journal Table 2) and `experiments/deft_table3.py:<method>_<dataset>`
(journal Table 3 hyperparameters, section 5.1 training); their
hyperparameters are single values, so the grid is empty.  The 50 seeds
(section 5.3) are split into chunks of 10: 5 jobs per cell, 100 jobs.

The argument is comma-separated key=value options:
  smallnorb_dir=DIR  the TFDS data_dir holding smallnorb (nothing is
                     downloaded); without it the SmallNORB row is left out
                     (75 jobs) and planning says so.
  seeds_per_job=N    seeds per job (default 10; 50 = one job per cell).

  python -m disentax.sweep plan --root=runs/table4 \\
      --sweep=experiments/sweeps/deft_table4.py:smallnorb_dir=~/tfds
  python -m disentax.sweep slurm --root=runs/table4 \\
      --out=runs/table4/sweep.sbatch
  sbatch runs/table4/sweep.sbatch
  python -m disentax.sweep merge --root=runs/table4   # Table 4 layout
"""

import ml_collections

# DEFT journal Table 4: columns (approaches) and rows (datasets), in the
# paper's order; keys of experiments/deft_table3.py and experiments/deft.py.
METHODS = ("deft", "beta_vae", "beta_tcvae", "annealed_vae", "cascade_vae")
DATASETS = ("color", "dsprites", "smallnorb", "scream")
NUM_SEEDS = 50  # journal section 5.3
SEEDS_PER_JOB = 10
OPTIONS = ("smallnorb_dir", "seeds_per_job")


def config_spec(method, dataset):
  if method == "deft":
    return f"experiments/deft.py:{dataset}"
  return f"experiments/deft_table3.py:{method}_{dataset}"


def parse_arg(arg):
  """"key=value,..." -> dict of OPTIONS."""
  options = {}
  for item in filter(None, (arg or "").split(",")):
    key, sep, value = item.partition("=")
    if not sep or key not in OPTIONS:
      raise ValueError(f"deft_table4 option {item!r}; expected key=value with "
                       f"key in {OPTIONS}")
    options[key] = value
  return options


def get_sweep(arg=None):
  options = parse_arg(arg)
  smallnorb_dir = options.get("smallnorb_dir", "")
  datasets = [d for d in DATASETS if d != "smallnorb" or smallnorb_dir]
  sweep = ml_collections.ConfigDict(convert_dict=False)  # dotted keys
  sweep.configs = tuple(config_spec(m, d) for m in METHODS for d in datasets)
  sweep.datasets = ({},)  # each config trains on its own dataset
  sweep.grid = {}         # Table 3 / Table 2 values are single settings
  sweep.num_seeds = NUM_SEEDS
  try:
    sweep.seeds_per_job = int(options.get("seeds_per_job", SEEDS_PER_JOB))
  except ValueError:
    raise ValueError(f"deft_table4 seeds_per_job="
                     f"{options['seeds_per_job']!r}; must be an integer "
                     f"1..{NUM_SEEDS}") from None
  sweep.overrides = {}
  sweep.config_overrides = {
      config_spec(m, "smallnorb"): {"dataset.data_dir": smallnorb_dir}
      for m in METHODS if smallnorb_dir}
  sweep.description = (
      "DEFT journal Table 4: " + " x ".join(
          (f"{len(METHODS)} methods", f"{len(datasets)} datasets",
           f"{NUM_SEEDS} seeds")) + (
          "" if smallnorb_dir else "; SmallNORB left out (plan with "
          "experiments/sweeps/deft_table4.py:smallnorb_dir=TFDS_DIR to add "
          "it)"))
  return sweep
