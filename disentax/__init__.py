"""disentax: multi-seed disentangled representation learning in JAX/Flax.

The Python API, for notebooks and scripts:

  disentax.train(config, workdir)      trains every member of a config (a
                                       ConfigDict or "path[:preset]")
  disentax.evaluate(workdir)           scores its latest checkpoint
  disentax.load_results(workdirs)      results, one DataFrame row per member
  disentax.evaluate_representation(representation_fn, dataset, ...)
                                       scores a model disentax did not train
  disentax.load_config("experiments/beta_vae.py:tiny")

(`disentax/api.py`, `disentax/evaluation/external.py`).  Each name is
imported on first use, so `import disentax` loads nothing else: no JAX, no
matplotlib, no flags, no setting changed.  The command lines are modules of
the package (`python -m disentax.main`, `disentax.evaluate`,
`disentax.report`, ...); importing the module `disentax.evaluate` itself
(the command line, which defines flags) replaces the function of that name
on the package.
"""

import importlib

# API name -> the module defining it.
_API = {
    "train": "disentax.api",
    "evaluate": "disentax.api",
    "load_results": "disentax.api",
    "load_config": "disentax.api",
    "evaluate_representation": "disentax.evaluation.external",
}

__all__ = sorted(_API)


def __getattr__(name: str):
  if name not in _API:
    raise AttributeError(f"module 'disentax' has no attribute {name!r}")
  value = getattr(importlib.import_module(_API[name]), name)
  globals()[name] = value  # later look-ups skip this function
  return value


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(__all__))
