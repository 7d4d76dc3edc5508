"""The evaluation job: scores every member of a workdir's latest checkpoint.

  python -m disentax.evaluate --workdir=DIR [--battery=config|full|none]
      [--failure_threshold=0.1] [--notraversals]

Runs as its own process: it rebuilds the experiment from the config stored in
the checkpoint, restores the stacked parameters, and scores all members of
the sweep at once with the primary metric (`config.eval.metric`, MIG by
default) and the battery (`config.eval.battery`, or every registered metric
with `--battery=full`).  It writes DIR/results/ (see disentax.results), the
time each metric took (results/timings.json), latent traversal PNGs of the
best, median and worst member (results/traversals/), and prints the
failure-rate table.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags, logging

from disentax import checkpoint, results, run_log
from disentax import config as config_lib
from disentax.data import make_dataset
from disentax.experiment import (Experiment, build, make_encode_members,
                                 member_hparams)
from disentax.metrics import full_battery, make_battery
from disentax.metrics.base import Metric, TrainedMembers
from disentax.objectives.base import reconstruction_loss
from disentax.reporting import pictures, render, tables
from disentax.training.layouts import over_members
from disentax.training.train_state import restore_members
from disentax.workdir import (RESULTS_CSV_NAME, RESULTS_JSON_NAME,
                              results_dir, run_log_path, timings_path,
                              traversals_dir, write_json)

BATTERIES = ("config", "full", "none")
TRAVERSAL_STEPS = 10
TRAVERSAL_RANGE = 2.0  # latent values from -2 to 2 prior standard deviations


def finite_members(params: Any, num_members: int) -> np.ndarray:
  """[M] bool: every parameter of the member is finite."""
  finite = np.ones(num_members, bool)
  for leaf in jax.tree.leaves(params):
    finite &= np.isfinite(np.asarray(leaf)).reshape(num_members, -1).all(1)
  return finite


def hyperparameter_groups(exp: Experiment) -> np.ndarray:
  """int [M]: members with equal hyperparameter values share a group."""
  values = [np.asarray(v).reshape(len(exp.members), -1)
            for _, v in sorted(exp.members.hparams.items())]
  flat = (np.concatenate(values, axis=1) if values
          else np.zeros((len(exp.members), 0)))
  return np.unique(flat, axis=0, return_inverse=True)[1].reshape(-1)


def trained_members(exp: Experiment, params: Any, step: int
                    ) -> TrainedMembers:
  """The members' posterior, reconstruction and decoder functions (with the
  primary representation's control, e.g. DEFT's gate at `step`)."""
  kind = exp.objective.reconstruction
  noise_key = jax.random.key(exp.config.eval.seed)

  def control_of(member_hparams):
    return exp.objective.representations(member_hparams,
                                         jnp.int32(step)).get("")

  def posterior(p, member_hparams, x):
    return exp.model.apply({"params": p}, x, control_of(member_hparams),
                           method="encode")

  def reconstruction_error(p, member_hparams, x):
    # The ELBO's reconstruction term with one posterior sample per image.
    output = exp.model.apply({"params": p}, x, noise_key,
                             control_of(member_hparams))
    return reconstruction_loss(output.logits, x, kind)

  def decode(p, member_hparams, z):
    return jax.nn.sigmoid(exp.model.apply({"params": p}, z,
                                          control_of(member_hparams),
                                          method="decode"))

  hparams = member_hparams(exp)

  def bind(fn: Callable, mapped_input: bool = False) -> Callable:
    all_members = jax.jit(over_members(
        fn, exp.layout.members,
        in_axes=(0, 0, 0 if mapped_input else None)))
    return lambda x: all_members(params, hparams, x)

  return TrainedMembers(posterior_fn=bind(posterior),
                        reconstruction_error_fn=bind(reconstruction_error),
                        decode_fn=bind(decode, mapped_input=True),
                        groups=hyperparameter_groups(exp))


def _battery(exp: Experiment, battery: str) -> dict[str, Metric]:
  if battery not in BATTERIES:
    raise ValueError(f"--battery={battery!r}; allowed: {BATTERIES}")
  chosen = {"config": exp.battery, "none": {},
            "full": make_battery(full_battery(), where="--battery=full")}
  primary = exp.config.eval.metric.name
  return {k: v for k, v in chosen[battery].items() if k != primary}


def evaluate(workdir: str, battery: str = "config",
             traversals: bool | None = None
             ) -> tuple[list[dict[str, Any]], ml_collections.ConfigDict]:
  """Scores the latest checkpoint of `workdir`, writes the results files and
  returns (rows, the run's config)."""
  manager, step = checkpoint.latest_step_or_fail(workdir)
  meta = checkpoint.restore_meta(manager, step)
  exp = build(config_lib.from_dict(meta["config"]))
  metrics = _battery(exp, battery)  # bad names fail before any restore
  score_primary = True
  if not exp.dataset.labelled:  # no ground truth: unsupervised metrics only
    dropped = [n for n, m in metrics.items() if m.supervised]
    metrics = {n: m for n, m in metrics.items() if not m.supervised}
    score_primary = not exp.metric.supervised
    print(f"{exp.dataset.name} has no ground-truth factors: skipping "
          f"{dropped + ([] if score_primary else [exp.config.eval.metric.name])}")
  state = restore_members(manager, step, exp)
  params, diverged_at = state.params, np.asarray(state.diverged_at)
  manager.close()

  encode = make_encode_members(exp)
  hparams = member_hparams(exp)
  at_step = jnp.int32(step)

  def representation(name: str) -> Callable[[jax.Array], jax.Array]:
    return lambda x: encode(params, hparams, x, at_step)[name]

  probe = jax.ShapeDtypeStruct((1, *exp.dataset.observation_shape),
                               jnp.float32)
  names = sorted(jax.eval_shape(encode, params, hparams, probe, at_step))
  rng = jax.random.key(exp.config.eval.seed)
  print(f"scoring {len(exp.members)} members of {workdir} at step {step} "
        f"with {[exp.config.eval.metric.name, *metrics]}", flush=True)
  members = dataclasses.replace(trained_members(exp, params, step),
                                dataset=exp.dataset,
                                representation_fn=representation(""))
  scores, timings = {}, {}
  for name in names if score_primary else ():
    start = time.perf_counter()
    scored = exp.metric.score(dataclasses.replace(
        members, representation_fn=representation(name)), rng)
    scores.update({f"{k}{name}": v for k, v in scored.items()})
    label = f"{exp.config.eval.metric.name}{name}"
    timings[label] = time.perf_counter() - start
    print(f"  {label}: {timings[label]:.1f} s", flush=True)
  for metric_name, metric in metrics.items():
    start = time.perf_counter()
    scores.update(metric.score(members, rng))
    timings[metric_name] = time.perf_counter() - start
    print(f"  {metric_name}: {timings[metric_name]:.1f} s", flush=True)
  trace_scores = {}
  if exp.objective.trace_scores is not None:
    lines = [line for line in run_log.read_lines(run_log_path(workdir))
             if line["step"] <= step]
    trace_scores = exp.objective.trace_scores(lines, exp.members.hparams)
  rows = results.make_rows(
      method=meta["method"], dataset=meta["dataset"],
      config_hash=meta["config_hash"], step=step, members=meta["members"],
      scores={k: v for k, v in scores.items() if np.ndim(v) == 1},
      finite_params=finite_members(params, len(exp.members)),
      trace_scores=trace_scores, diverged_at=diverged_at)
  results.write(workdir, rows, factor_names=exp.dataset.factor_names)
  results.write_arrays(workdir, {k: v for k, v in scores.items()
                                 if np.ndim(v) > 1})
  write_json(timings_path(workdir), {"step": step, "members": len(exp.members),
                                     "seconds": timings})
  if exp.config.eval.traversals if traversals is None else traversals:
    write_traversals(workdir, exp, members, representation(""), rows)
  return rows, exp.config


def traversal_codes(code: np.ndarray, steps: int = TRAVERSAL_STEPS,
                    span: float = TRAVERSAL_RANGE) -> np.ndarray:
  """[d * steps, d] codes: for each latent j (rows j*steps..), `code` with
  latent j swept over `steps` values from -span to span."""
  d = code.shape[-1]
  grid = np.repeat(code[None, :], d * steps, axis=0)
  values = np.linspace(-span, span, steps)
  for j in range(d):
    grid[j * steps:(j + 1) * steps, j] = values
  return grid


def write_traversals(workdir: str, exp: Experiment, members: TrainedMembers,
                     representation_fn: Callable, rows: list[dict[str, Any]]
                     ) -> list[str]:
  """Traversal grids of the best, median and worst finite member by the
  primary metric, each around the code of one fixed observation."""
  metric = exp.config.eval.metric.name
  scored = sorted((row["metrics"][metric], row["member"]) for row in rows
                  if row["status"] == "ok"
                  and row["metrics"].get(metric) is not None)
  if not scored:
    print("traversals: no member with a finite score; none drawn")
    return []
  chosen = {"best": scored[-1], "median": scored[len(scored) // 2],
            "worst": scored[0]}
  _, x = exp.dataset.sample(jax.random.key(exp.config.eval.seed), 1)
  codes = np.asarray(representation_fn(x))[:, 0]  # [M, d]
  directory = traversals_dir(workdir)
  os.makedirs(directory, exist_ok=True)
  paths = []
  for label, (value, member) in chosen.items():
    grid = traversal_codes(codes[member])
    stacked = np.repeat(grid[None], len(exp.members), axis=0)
    images = np.asarray(members.decode_fn(jnp.asarray(stacked)))[member]
    d = codes.shape[1]
    images = images.reshape(d, TRAVERSAL_STEPS, *images.shape[1:])
    seed = rows[member]["seed"]
    path = os.path.join(directory, f"{label}_member{member}_seed{seed}.png")
    pictures.traversal_figure(
        images, path, title=f"{exp.method} on {exp.dataset.name}: {label} "
        f"{metric} {value:.3f} (member {member}, seed {seed}); latent "
        f"values {-TRAVERSAL_RANGE:g}..{TRAVERSAL_RANGE:g}")
    paths.append(path)
  print(f"traversals: {directory}/", flush=True)
  return paths


def print_summary(rows: list[dict[str, Any]],
                  config: ml_collections.ConfigDict, workdir: str,
                  threshold: float | None = None) -> None:
  """The failure-rate table, plus the IFP distribution per factor and the
  NMI matrices when the run has them."""
  if threshold is None:
    threshold = config.eval.failure_threshold
  metric = config.eval.metric.name
  if metric in tables.metric_names(rows):
    table = tables.failure_rate_table(rows, metric=metric,
                                      threshold=threshold)
    print(render.format_markdown(table, metric=metric, threshold=threshold))
  if len(tables.metric_names(rows)) > 1:
    print(render.format_metric_summary(tables.metric_summary(rows)))
  factor_names = make_dataset(config.dataset).factor_names
  if any("ifp" in (row.get("metrics") or {}) for row in rows):
    print(render.format_ifp_table(tables.ifp_summary(rows), factor_names))
  if config.eval.nmi_table:
    print(render.format_nmi_matrices(
        tables.nmi_matrix_means(rows, results.load_arrays(workdir)),
        factor_names))
  print(f"results: {results_dir(workdir)}/"
        f"{{{RESULTS_JSON_NAME},{RESULTS_CSV_NAME}}}")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # Orbax logs every restore at INFO
  workdir = flags.FLAGS.workdir
  rows, config = evaluate(workdir, battery=flags.FLAGS.battery,
                          traversals=flags.FLAGS.traversals)
  print_summary(rows, config, workdir, flags.FLAGS.failure_threshold)


if __name__ == "__main__":
  # Flags are defined only when run as the job, so disentax.main can import
  # this module (and define its own --workdir).
  flags.DEFINE_string("workdir", None, "training workdir to evaluate")
  flags.DEFINE_enum("battery", "config", BATTERIES,
                    "metrics besides eval.metric: the config's eval.battery, "
                    "every registered metric (full), or none")
  flags.DEFINE_float(
      "failure_threshold", None, "failure = metric below this (default: the "
      "config's eval.failure_threshold, 0.1 for MIG as in the DEFT papers)")
  flags.DEFINE_boolean("traversals", None, "draw latent traversal PNGs "
                       "(default: the config's eval.traversals)")
  flags.mark_flag_as_required("workdir")
  app.run(main)
