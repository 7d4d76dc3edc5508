"""From an evaluated annealing test to a DEFT config (beyond the DEFT paper,
whose authors pick the stage pressures by hand and name "an automatic way
to adjust the best separation of IFP distribution" as missing).

`propose(workdir)` groups the factors whose IFP distributions separate
(`disentax.ifp.propose_stages`); `write_config` writes a config file whose
`get_config()` is the DEFT dSprites preset with the proposed G, K and
pressures.  The command line is `python -m disentax.propose`.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np

from disentax import config as config_lib
from disentax import ifp, results
from disentax.data import make_dataset
from disentax.workdir import config_path, write_text

CONFIG_TEMPLATE = '''"""DEFT with stages proposed from measured IFP distributions.

Written by `python -m disentax.propose --workdir={workdir}`:
{plan_comment}
"""

from experiments import deft


def get_config(preset=None):
  config = deft.get_config(preset or "{base_preset}")
  config.model.num_groups = {num_groups}
  config.model.num_latents = {num_latents}
  config.objective.pressures = {pressures}
  return config
'''


def ifp_samples(rows: Sequence[dict[str, Any]], factor_names: Sequence[str]
                ) -> dict[str, np.ndarray]:
  """Factor name -> the IFP of every seed that trained on its sub-dataset
  (NaN where the KL never rose above the threshold)."""
  samples: dict[str, list[float]] = {}
  for row in rows:
    factor = int(row["hparams"].get("factor", -1))
    value = (row.get("metrics") or {}).get("ifp", "missing")
    if value == "missing":
      raise ValueError("a results row without metric 'ifp': evaluate an "
                       "annealing-test run (experiments/annealing_test.py)")
    if factor < 0:
      continue  # a whole-dataset member has no factor
    samples.setdefault(factor_names[factor], []).append(
        float("nan") if value is None else float(value))
  if not samples:
    raise ValueError("no per-factor annealing-test rows (hyperparameter "
                     "'factor' >= 0); run experiments/annealing_test.py with "
                     "factors='all'")
  return {name: np.asarray(v) for name, v in samples.items()}


def write_config(path: str, plan: ifp.StagePlan, workdir: str,
                 base_preset: str = "dsprites") -> None:
  overrides = plan.to_config_overrides()
  plan_comment = "\n".join(
      f"  stage {j}: beta {beta:g} lets through {', '.join(group)}"
      for j, (beta, group) in enumerate(zip(plan.betas, plan.groups)))
  text = CONFIG_TEMPLATE.format(
      workdir=workdir, plan_comment=plan_comment, base_preset=base_preset,
      num_groups=overrides["model.num_groups"],
      num_latents=overrides["model.num_latents"],
      pressures=tuple(round(b, 2) for b in overrides["objective.pressures"]))
  write_text(path, text)


def propose(workdir: str, quantile: float = 0.1
            ) -> tuple[ifp.StagePlan, dict[str, np.ndarray]]:
  """The stage plan of an evaluated annealing-test workdir."""
  with open(config_path(workdir)) as f:
    config = config_lib.from_dict(json.load(f))
  factor_names = make_dataset(config.dataset).factor_names
  samples = ifp_samples(results.load_rows([workdir]), factor_names)
  return ifp.propose_stages(samples, quantile=quantile), samples
