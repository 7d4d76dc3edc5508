"""The evaluation job: scores every member of a workdir's latest checkpoint.

It rebuilds the experiment from the config stored in the checkpoint,
restores the stacked state, and scores all members at once with the primary
metric (`config.eval.metric`, MIG by default; once per representation the
objective scores, e.g. DeVAE's layers) and the battery (`config.eval.battery`,
or every registered metric with battery 'full'), each through
`metric.score(members, rng)`.  It writes WORKDIR/results/ (see
disentax.results), the time each metric took (results/timings.json) and
latent traversal PNGs of the best, median and worst member
(results/traversals/).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from disentax import backend, checkpoint, results
from disentax import config as config_lib
from disentax.evaluation.members import MemberFunctions, finite_members
from disentax.experiment import Experiment, build
from disentax.metrics import full_battery, make_battery
from disentax.metrics.base import Metric, RepresentationFn, TrainedMembers
from disentax.reporting import pictures
from disentax.reporting.report import run_summary
from disentax.training.train_state import restore_members
from disentax.workdir import (check_writable, locked, remove_temporaries,
                              results_dir, timings_path, traversals_dir,
                              write_json)

BATTERIES = ("config", "full", "none")
TRAVERSAL_STEPS = 10
TRAVERSAL_RANGE = 2.0  # latent values from -2 to 2 prior standard deviations


def _battery(exp: Experiment, battery: str) -> dict[str, Metric]:
  """The metrics scored besides the primary one.  The full battery leaves
  out read-outs of a trace the run did not record."""
  if battery not in BATTERIES:
    raise ValueError(f"--battery={battery!r}; allowed: {BATTERIES}")
  chosen = {"config": exp.battery, "none": {},
            "full": make_battery(full_battery(), where="--battery=full")}
  primary = exp.config.eval.metric.name
  metrics = {k: v for k, v in chosen[battery].items() if k != primary}
  if battery == "full":
    unreadable = [n for n, m in metrics.items()
                  if m.reads_trace and n not in exp.battery]
    if unreadable:
      print(f"--battery=full: skipping {unreadable} (read-outs of a "
            "training-time trace the config did not ask for)")
    metrics = {n: m for n, m in metrics.items() if n not in unreadable}
  return metrics


def _trace_until(workdir: str, step: int) -> dict[str, np.ndarray] | None:
  """The workdir's training-time trace up to `step` (None without one)."""
  trace = results.load_trace(workdir)
  if trace is None:
    return None
  keep = trace["step"] <= step
  return {name: values[keep] if name != "factor_names" else values
          for name, values in trace.items()}


@backend.program_settings()
def evaluate(workdir: str, battery: str = "config",
             traversals: bool | None = None
             ) -> tuple[list[dict[str, Any]], ml_collections.ConfigDict]:
  """Scores the newest readable checkpoint of `workdir` (an unreadable
  newer one is reported, and left as it is), writes the results files and
  returns (rows, the run's config).

  The results directory is checked writable, and the workdir locked
  (`workdir.locked`: training would rotate the checkpoint away, and a
  second evaluation would write the same files), before anything is
  scored.

  Raises:
    FileNotFoundError: the workdir has no finished checkpoint.
    PermissionError: its results directory is not writable.
    workdir.WorkdirInUse: another process is writing the workdir.
  """
  manager, _ = checkpoint.latest_step_or_fail(workdir)
  check_writable(results_dir(workdir), "the results directory")
  with locked(workdir):
    remove_temporaries(workdir)
    try:
      return _evaluate(workdir, manager, battery, traversals)
    finally:
      manager.close()


def _evaluate(workdir: str, manager: Any, battery: str,
              traversals: bool | None
              ) -> tuple[list[dict[str, Any]], ml_collections.ConfigDict]:
  """`evaluate` once the workdir is locked."""

  def restore(step: int) -> tuple[dict[str, Any], Experiment,
                                  dict[str, Metric], Any]:
    meta = checkpoint.restore_meta(manager, step)
    exp = build(config_lib.from_dict(meta["config"]))
    metrics = _battery(exp, battery)  # bad names fail before the state
    return meta, exp, metrics, restore_members(manager, step, exp)

  step, (meta, exp, metrics, state), skipped = checkpoint.restore_newest(
      manager, restore)
  for error in skipped:
    print(f"{error}; scoring step {step} instead (the unreadable checkpoint "
          "is left as it is)", flush=True)
  score_primary = True
  if not exp.dataset.labelled:  # no ground truth: unsupervised metrics only
    dropped = [n for n, m in metrics.items() if m.supervised]
    metrics = {n: m for n, m in metrics.items() if not m.supervised}
    score_primary = not exp.metric.supervised
    print(f"{exp.dataset.name} has no ground-truth factors: skipping "
          f"{dropped + ([] if score_primary else [exp.config.eval.metric.name])}")
  trace = (_trace_until(workdir, step)
           if any(m.reads_trace for m in metrics.values()) else None)
  members, representations = MemberFunctions(exp).at(state, step, trace)
  rng = jax.random.key(exp.config.eval.seed)
  primary = exp.config.eval.metric.name
  print(f"scoring {len(exp.members)} members of {workdir} at step {step} "
        f"with {[primary, *metrics]}", flush=True)
  scores, outcomes, timings = {}, {}, {}

  def timed(label: str, metric: Metric, scored_members: TrainedMembers,
            suffix: str = "") -> None:
    start = time.perf_counter()
    scored = metric.score(scored_members, rng)
    (outcomes if metric.nan_is_outcome else scores).update(
        {f"{k}{suffix}": v for k, v in scored.items()})
    timings[label] = time.perf_counter() - start
    print(f"  {label}: {timings[label]:.1f} s", flush=True)

  for name, representation in (representations.items() if score_primary
                               else ()):
    timed(f"{primary}{name}", exp.metric,
          dataclasses.replace(members, representation_fn=representation),
          suffix=name)
  for name, metric in metrics.items():
    timed(name, metric, members)
  rows = results.make_rows(
      method=meta["method"], dataset=meta["dataset"],
      config_hash=meta["config_hash"], step=step, members=meta["members"],
      scores=_per_member(scores), outcome_scores=_per_member(outcomes),
      finite_params=finite_members(state.params, len(exp.members)),
      diverged_at=np.asarray(state.diverged_at))
  results.write(workdir, rows, factor_names=exp.dataset.factor_names)
  results.write_arrays(workdir, {k: v for k, v in {**scores,
                                                   **outcomes}.items()
                                 if np.ndim(v) > 1})
  write_json(timings_path(workdir), {"step": step, "members": len(exp.members),
                                     "seconds": timings})
  if exp.config.eval.traversals if traversals is None else traversals:
    write_traversals(workdir, exp, members, rows)
  return rows, exp.config


def _per_member(scores: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The scalar-per-member scores ([M]) of `scores`."""
  return {k: v for k, v in scores.items() if np.ndim(v) == 1}


def summary(workdir: str, config: ml_collections.ConfigDict,
            threshold: float | None = None) -> str:
  """The evaluated run's summary (reporting.report.run_summary) at the
  config's failure threshold unless `threshold` is given."""
  if threshold is None:
    threshold = config.eval.failure_threshold
  return run_summary(results.load_run(workdir), config.eval.metric.name,
                     threshold, nmi_table=config.eval.nmi_table)


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
                     rows: list[dict[str, Any]]) -> list[str]:
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
  representation: RepresentationFn = members.representation_fn
  codes = np.asarray(representation(x))[:, 0]  # [M, d]
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
