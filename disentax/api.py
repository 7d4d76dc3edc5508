"""The Python API for notebooks and scripts: train, evaluate, read results.

  train(config, workdir)       trains every member (`training.trainer`),
                               resuming from the workdir's checkpoint
  evaluate(workdir)            scores the latest checkpoint
                               (`evaluation.job`), writes WORKDIR/results/
  load_results(workdirs)       the results of evaluated workdirs
  load_config("path:preset")   a config file, as `--config` loads it

Results come back as pandas DataFrames, one row per member (`results.
frame`: the columns of results.csv, `hp.<name>` per hyperparameter and
`metric.<name>` per score, a missing score NaN) after a `workdir` column.
They are the same calls the command lines make (`python -m disentax.main`,
`disentax.evaluate`), so a notebook's run and a command line's are
interchangeable.  `disentax.evaluate_representation` scores a model disentax
did not train (`evaluation.external`).
"""

from __future__ import annotations

from typing import Sequence

import ml_collections
import pandas as pd

from disentax import results
from disentax.config import load_config
from disentax.evaluation import job
from disentax.training import trainer

__all__ = ["train", "evaluate", "load_results", "load_config"]


def train(config: ml_collections.ConfigDict | str, workdir: str) -> str:
  """Trains every member of `config` (a ConfigDict, or a config file
  "path[:preset]" read relative to the working directory, e.g.
  "experiments/beta_vae.py:tiny") in `workdir`, resuming from its latest
  checkpoint; returns `workdir`, so `evaluate(train(config, workdir))`
  chains.  Everything is validated before anything compiles."""
  if isinstance(config, str):
    config = load_config(config)
  elif not isinstance(config, ml_collections.ConfigDict):
    raise ValueError(f"config={config!r}; give an ml_collections.ConfigDict "
                     "or a config file 'path[:preset]'")
  trainer.train(config, workdir)
  return workdir


def evaluate(workdir: str, battery: str = "config",
             traversals: bool | None = None) -> pd.DataFrame:
  """Scores the latest checkpoint of `workdir` with the primary metric and
  `battery` ("config": the config's eval.battery; "full": every metric;
  "none"), writes WORKDIR/results/ and returns its rows as a DataFrame (as
  `load_results(workdir)` reads them back).  `traversals` overrides the
  config's eval.traversals."""
  rows, _ = job.evaluate(workdir, battery=battery, traversals=traversals)
  return results.frame(rows, [workdir] * len(rows))


def load_results(workdirs: str | Sequence[str] = (),
                 sweep_root: str | None = None) -> pd.DataFrame:
  """Every results row of `workdirs` and of the evaluated workdirs under
  `sweep_root`, one per member, in that order, as a DataFrame (module
  docstring: the columns).

  Raises:
    FileNotFoundError: a workdir has not been evaluated.
    ValueError: no workdirs; a file of an unknown schema.
  """
  if isinstance(workdirs, str):
    workdirs = [workdirs]
  rows, owners = [], []
  for workdir in results.resolve_workdirs(list(workdirs), sweep_root):
    read = results.load_rows([workdir])
    rows += read
    owners += [workdir] * len(read)
  return results.frame(rows, owners)
