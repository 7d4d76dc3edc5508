"""The evaluation job: scores every member of a workdir's latest checkpoint.

  python -m disentax.evaluate --workdir=DIR [--failure_threshold=0.1]

Runs as its own process: it rebuilds the experiment from the config stored in
the checkpoint, restores the stacked parameters, encodes the mean
representation of every member in one vmapped call, computes the configured
metric (MIG by default), writes DIR/results/ (see disentax.results) and prints
the failure-rate table.
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import numpy as np
from absl import app, flags

from disentax import checkpoint, report, results
from disentax import config as config_lib
from disentax.experiment import build, over_members
from disentax.models import VAE
from disentax.train import init_state

_WORKDIR = flags.DEFINE_string("workdir", None, "training workdir to evaluate")
_THRESHOLD = flags.DEFINE_float(
    "failure_threshold", None, "failure = metric below this (default: the "
    "config's eval.failure_threshold, 0.1 for MIG as in the DEFT papers)")


def finite_members(params: Any, num_members: int) -> np.ndarray:
  """[M] bool: every parameter of the member is finite."""
  finite = np.ones(num_members, bool)
  for leaf in jax.tree.leaves(params):
    finite &= np.isfinite(np.asarray(leaf)).reshape(num_members, -1).all(1)
  return finite


def evaluate(workdir: str
             ) -> tuple[list[dict[str, Any]], ml_collections.ConfigDict]:
  """Scores the latest checkpoint of `workdir`, writes the results files and
  returns (rows, the run's config)."""
  manager, step = checkpoint.latest_step_or_fail(workdir)
  meta = checkpoint.restore_meta(manager, step)
  exp = build(config_lib.from_dict(meta["config"]))
  abstract_state = jax.eval_shape(lambda: init_state(exp))
  params = checkpoint.restore_state(manager, step, abstract_state).params
  manager.close()

  encode_all = jax.jit(over_members(
      lambda p, x: exp.model.apply({"params": p}, x, method=VAE.encode)[0],
      exp.member_execution, in_axes=(0, None)))
  print(f"scoring {len(exp.members)} members of {workdir} at step {step}",
        flush=True)
  scores = exp.metric(exp.dataset, lambda x: encode_all(params, x),
                  jax.random.key(exp.config.eval.seed))
  rows = results.make_rows(
      method=meta["method"], dataset=meta["dataset"],
      config_hash=meta["config_hash"], step=step, members=meta["members"],
      scores={k: v for k, v in scores.items() if np.ndim(v) == 1},
      finite_params=finite_members(params, len(exp.members)))
  results.write(workdir, rows)
  return rows, exp.config


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  workdir = _WORKDIR.value
  rows, config = evaluate(workdir)
  threshold = (_THRESHOLD.value if _THRESHOLD.value is not None
               else config.eval.failure_threshold)
  metric = config.eval.metric.name
  table = report.failure_rate_table(rows, metric=metric, threshold=threshold)
  print(report.format_markdown(table, metric=metric, threshold=threshold))
  print(f"results: {results.results_dir(workdir)}/"
        f"{{{results.JSON_NAME},{results.CSV_NAME}}}")


if __name__ == "__main__":
  flags.mark_flag_as_required("workdir")
  app.run(main)
