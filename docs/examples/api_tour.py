"""A tour of the Python API, as a notebook would use it:

  python docs/examples/api_tour.py --workdir=runs/api_tour \
      [--config=experiments/beta_vae.py:tiny]

trains every member of a config (here the tiny beta-VAE preset: 2 betas x
2 seeds, seconds), evaluates the final checkpoint, reads the results back
as a pandas DataFrame (one row per member), summarises it with pandas and
prints the report `python -m disentax.report` would.  Run it from the
repository's root (config paths are read from the working directory).
"""

from __future__ import annotations

import os

from absl import app, flags

import disentax
from disentax.reporting.report import default_out, run_report

_CONFIG = flags.DEFINE_string(
    "config", os.path.join("experiments", "beta_vae.py") + ":tiny",
    "config file[:preset]")
_WORKDIR = flags.DEFINE_string("workdir", os.path.join("runs", "api_tour"),
                               "the run's directory (resumed if trained)")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = disentax.load_config(_CONFIG.value)
  config.eval.battery = {"unsupervised": {"num_train": 500}}
  workdir = disentax.train(config, _WORKDIR.value)
  disentax.evaluate(workdir)  # writes WORKDIR/results/, returns its rows

  table = disentax.load_results([workdir])
  print(f"{len(table)} members, columns: {', '.join(table.columns)}")
  print(table.groupby("hp.beta")[["metric.mig",
                                  "metric.gaussian_total_correlation"]]
        .median().to_string())

  # The report of `python -m disentax.report --workdirs=WORKDIR --nofigures`.
  markdown, _ = run_report([workdir], default_out([workdir], None),
                           metric=config.eval.metric.name,
                           threshold=config.eval.failure_threshold,
                           figures=False)
  print(markdown)


if __name__ == "__main__":
  app.run(main)
