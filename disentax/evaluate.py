"""The evaluation job: scores every member of a workdir's latest checkpoint.

  python -m disentax.evaluate --workdir=DIR [--failure_threshold=0.1]

Runs as its own process: it rebuilds the experiment from the config stored in
the checkpoint, restores the stacked parameters, encodes the mean
representation of every member in one vmapped call, computes the configured
metric (MIG by default), writes DIR/results/ (see disentax.results) and prints
the failure-rate table.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import app, flags, logging

from disentax import checkpoint, report, results, run_log
from disentax import config as config_lib
from disentax.data import make_dataset
from disentax.experiment import build, over_members
from disentax.train import init_state


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

  hparams = {k: jax.numpy.asarray(v) for k, v in exp.members.hparams.items()}
  representations = (exp.objective.representations
                     or (lambda member_hparams, at_step: {"": None}))

  def encode_member(p, member_hparams, x):
    controls = representations(member_hparams, step)
    return {name: exp.model.apply({"params": p}, x, control,
                                  method="encode")[0]
            for name, control in controls.items()}

  encode_all = jax.jit(over_members(encode_member, exp.member_execution,
                                    in_axes=(0, 0, None)))
  probe = jax.ShapeDtypeStruct((1, *exp.dataset.observation_shape),
                               jax.numpy.float32)
  names = sorted(jax.eval_shape(encode_all, params, hparams, probe))
  print(f"scoring {len(exp.members)} members of {workdir} at step {step}",
        flush=True)
  scores = {}
  for name in names:
    scored = exp.metric(exp.dataset,
                        lambda x, name=name: encode_all(params, hparams, x)[name],
                        jax.random.key(exp.config.eval.seed))
    scores.update({f"{k}{name}": v for k, v in scored.items()})
  trace_scores = {}
  if exp.objective.trace_scores is not None:
    lines = [line for line in run_log.read_lines(
        os.path.join(workdir, run_log.FILENAME)) if line["step"] <= step]
    trace_scores = exp.objective.trace_scores(lines, exp.members.hparams)
  rows = results.make_rows(
      method=meta["method"], dataset=meta["dataset"],
      config_hash=meta["config_hash"], step=step, members=meta["members"],
      scores={k: v for k, v in scores.items() if np.ndim(v) == 1},
      finite_params=finite_members(params, len(exp.members)),
      trace_scores=trace_scores)
  results.write(workdir, rows)
  results.write_arrays(workdir, {k: v for k, v in scores.items()
                                 if np.ndim(v) > 1})
  return rows, exp.config


def print_summary(rows: list[dict[str, Any]],
                  config: ml_collections.ConfigDict, workdir: str,
                  threshold: float | None = None) -> None:
  """The failure-rate table, plus the IFP distribution per factor and the
  NMI matrices when the run has them."""
  if threshold is None:
    threshold = config.eval.failure_threshold
  metric = config.eval.metric.name
  table = report.failure_rate_table(rows, metric=metric, threshold=threshold)
  print(report.format_markdown(table, metric=metric, threshold=threshold))
  factor_names = make_dataset(config.dataset).factor_names
  if any("ifp" in (row.get("metrics") or {}) for row in rows):
    print(report.ifp_table(rows, factor_names))
  if config.eval.nmi_table:
    print(report.format_nmi_matrices(rows, results.read_arrays(workdir),
                                     factor_names))
  print(f"results: {results.results_dir(workdir)}/"
        f"{{{results.JSON_NAME},{results.CSV_NAME}}}")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # Orbax logs every restore at INFO
  workdir = flags.FLAGS.workdir
  rows, config = evaluate(workdir)
  print_summary(rows, config, workdir, flags.FLAGS.failure_threshold)


if __name__ == "__main__":
  # Flags are defined only when run as the job, so disentax.main can import
  # this module (and define its own --workdir).
  flags.DEFINE_string("workdir", None, "training workdir to evaluate")
  flags.DEFINE_float(
      "failure_threshold", None, "failure = metric below this (default: the "
      "config's eval.failure_threshold, 0.1 for MIG as in the DEFT papers)")
  flags.mark_flag_as_required("workdir")
  app.run(main)
