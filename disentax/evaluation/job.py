"""The evaluation job: scores every member of a workdir's checkpoints.

Which checkpoint (`eval.checkpoint`, or `--checkpoint`): 'last', the latest;
or 'best' (best of run, as CascadeVAE's code keeps its best checkpoint):
per member, the step with the highest primary-metric score in the
training-time trace among the steps that still have a checkpoint, each
member restored from its own step (ties: the earliest step).

It rebuilds the experiment from the config stored in the checkpoint,
restores the stacked state, and scores all members at once with the primary
metric (`config.eval.metric`, MIG by default; once per representation the
objective scores, e.g. DeVAE's layers, and with `config.eval.representations`
naming 'sampled' again on a posterior sample of each, suffixed _sampled) and
the battery (`config.eval.battery`, or every registered metric with battery
'full'; on the means), each through `metric.score(members, rng)`.  It
writes WORKDIR/results/ (see disentax.results), the time each metric took
(results/timings.json) and latent traversal PNGs of the best, median and
worst member (results/traversals/, drawn as `python -m disentax.visualize`
draws them).  `Scores` collects the scores and writes those files
(`evaluation.external` writes through it too).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Mapping, Sequence

import jax
import ml_collections
import numpy as np

from disentax import backend, checkpoint, results
from disentax import config as config_lib
from disentax.cli import UsageError
from disentax.evaluation.members import MemberFunctions, finite_members
from disentax.experiment import Experiment, build
from disentax.metrics import full_battery, make_battery
from disentax.metrics.base import Metric, TrainedMembers
from disentax.reporting import visualize
from disentax.reporting.report import run_summary
from disentax.training.train_state import (restore_member_steps,
                                           restore_members)
from disentax.workdir import (check_writable, locked, remove_temporaries,
                              results_dir, timings_path, traversals_dir,
                              write_json)

BATTERIES = ("config", "full", "none")


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


def best_steps(trace: Mapping[str, np.ndarray] | None, score: str,
               saved_steps: Any, num_members: int,
               where: str = "") -> np.ndarray:
  """int [M]: per member, the traced step with the highest `score` among
  the `saved_steps` (those with a checkpoint); ties go to the earliest
  step, a member whose scores there are all NaN gets the latest one.

  Raises:
    ValueError: no trace, no `score` [T, M] in it, or no traced step with a
      checkpoint.
  """
  if trace is None:
    raise ValueError(
        f"best-of-run evaluation of {where or 'this run'} needs the "
        f"training-time trace of {score!r} (trace.npz): set "
        f"config.eval.trace_every > 0 and config.eval.trace.{score} when "
        "training, or evaluate with --checkpoint=last")
  values = trace.get(score)
  if values is None or values.ndim != 2 or values.shape[1] != num_members:
    per_member = sorted(name for name, v in trace.items()
                        if v.ndim == 2 and v.shape[1] == num_members)
    raise ValueError(
        f"best-of-run evaluation of {where or 'this run'} selects by the "
        f"primary metric {score!r}, which its trace does not hold per "
        f"member (it has {per_member}); trace {score!r} "
        f"(config.eval.trace) or evaluate with --checkpoint=last")
  saved = {int(s) for s in saved_steps}
  usable = np.flatnonzero([int(s) in saved for s in trace["step"]])
  if not usable.size:
    raise ValueError(
        f"best-of-run evaluation of {where or 'this run'}: no traced step "
        f"{sorted(int(s) for s in trace['step'])} has a checkpoint (saved: "
        f"{sorted(saved)}); train with config.train.checkpoint_every a "
        "multiple of config.eval.trace_every and enough "
        "config.train.keep_checkpoints, or evaluate with --checkpoint=last")
  order = usable[np.argsort(trace["step"][usable], kind="stable")]
  steps, scores = trace["step"][order], values[order]
  best = np.argmax(np.where(np.isnan(scores), -np.inf, scores), axis=0)
  never = np.all(np.isnan(scores), axis=0)
  return np.where(never, steps[-1], steps[best]).astype(np.int64)


@backend.program_settings()
def evaluate(workdir: str, battery: str = "config",
             traversals: bool | None = None,
             checkpoint_selection: str | None = None
             ) -> tuple[list[dict[str, Any]], ml_collections.ConfigDict]:
  """Scores the newest readable checkpoint of `workdir` (an unreadable
  newer one is reported, and left as it is) or, with `checkpoint_selection`
  'best' (default: the config's eval.checkpoint), each member at the traced
  step with its best primary metric among those with a checkpoint; writes
  the results files and returns (rows, the run's config).

  The results directory is checked writable, and the workdir locked
  (`workdir.locked`: training would rotate the checkpoint away, and a
  second evaluation would write the same files), before anything is
  scored.

  Raises:
    FileNotFoundError: the workdir has no finished checkpoint.
    PermissionError: its results directory is not writable.
    workdir.WorkdirInUse: another process is writing the workdir.
  """
  if checkpoint_selection not in (None, *config_lib.CHECKPOINT_SELECTIONS):
    raise UsageError(f"--checkpoint={checkpoint_selection!r}; allowed: "
                     f"{config_lib.CHECKPOINT_SELECTIONS}")
  manager, _ = checkpoint.latest_step_or_fail(workdir)
  check_writable(results_dir(workdir), "the results directory")
  with locked(workdir):
    remove_temporaries(workdir)
    try:
      return _evaluate(workdir, manager, battery, traversals,
                       checkpoint_selection)
    finally:
      manager.close()


def _evaluate(workdir: str, manager: Any, battery: str,
              traversals: bool | None, checkpoint_selection: str | None
              ) -> tuple[list[dict[str, Any]], ml_collections.ConfigDict]:
  """`evaluate` once the workdir is locked."""

  def restore(step: int) -> tuple[dict[str, Any], Experiment,
                                  dict[str, Metric], str, Any, Any]:
    meta = checkpoint.restore_meta(manager, step)
    exp = build(config_lib.from_dict(meta["config"]))
    metrics = _battery(exp, battery)  # bad names fail before the state
    selection = checkpoint_selection or exp.config.eval.checkpoint
    if selection == "last":
      return meta, exp, metrics, selection, step, restore_members(
          manager, step, exp)
    steps = best_steps(results.load_trace(workdir),
                       exp.config.eval.metric.name, manager.all_steps(),
                       len(exp.members), where=workdir)
    return meta, exp, metrics, selection, steps, restore_member_steps(
        manager, steps, exp)

  step, (meta, exp, metrics, selection, steps, state), skipped = (
      checkpoint.restore_newest(manager, restore))
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
  functions = MemberFunctions(exp)
  members, representations = functions.at(
      state, steps, trace,
      sampled="sampled" in exp.config.eval.representations)
  rng = jax.random.key(exp.config.eval.seed)
  primary = exp.config.eval.metric.name
  at = (f"step {step}" if selection == "last" else
        f"each one's best traced {primary} (steps "
        f"{np.asarray(steps).tolist()})")
  print(f"scoring {len(exp.members)} members of {workdir} at {at} "
        f"with {[primary, *metrics]}", flush=True)
  scored = Scores()
  for name, representation in (representations.items() if score_primary
                               else ()):
    scored.add(f"{primary}{name}", exp.metric,
               dataclasses.replace(members, representation_fn=representation),
               rng, suffix=name)
  for name, metric in metrics.items():
    scored.add(name, metric, members, rng)
  rows = scored.rows(
      method=meta["method"], dataset=meta["dataset"],
      config_hash=meta["config_hash"], step=steps, members=meta["members"],
      finite_params=finite_members(state.params, len(exp.members)),
      diverged_at=np.asarray(state.diverged_at))
  scored.write(workdir, rows, exp.dataset.factor_names,
               dataset_procedural=exp.dataset.procedural,
               checkpoint_selection=selection)
  if exp.config.eval.traversals if traversals is None else traversals:
    write_traversals(workdir, exp, functions, state, steps, rows)
  return rows, exp.config


@dataclasses.dataclass
class Scores:
  """Every score of an evaluation, {score name: [M, ...]}, and the seconds
  each metric took: what the results files are written from."""
  scores: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  # Scores where NaN is an outcome, not a failure (`Metric.nan_is_outcome`).
  outcomes: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  seconds: dict[str, float] = dataclasses.field(default_factory=dict)

  def add(self, label: str, metric: Metric, members: TrainedMembers,
          rng: jax.Array, suffix: str = "") -> None:
    """Scores `members` with `metric`, its score names suffixed with
    `suffix`, timed under `label`."""
    start = time.perf_counter()
    scored = metric.score(members, rng)
    (self.outcomes if metric.nan_is_outcome else self.scores).update(
        {f"{k}{suffix}": np.asarray(v) for k, v in scored.items()})
    self.seconds[label] = time.perf_counter() - start
    print(f"  {label}: {self.seconds[label]:.1f} s", flush=True)

  @classmethod
  def concatenate(cls, parts: Sequence[Scores]) -> Scores:
    """The scores of `parts` (evaluations of the same metrics on different
    members) along the members axis, their seconds summed."""
    def stacked(name: str) -> dict[str, np.ndarray]:
      return {k: np.concatenate([getattr(p, name)[k] for p in parts])
              for k in getattr(parts[0], name)}
    seconds = {k: sum(p.seconds[k] for p in parts) for k in parts[0].seconds}
    return cls(stacked("scores"), stacked("outcomes"), seconds)

  def rows(self, **row_fields: Any) -> list[dict[str, Any]]:
    """Results rows (`results.make_rows` with `row_fields`) of the
    per-member scalar scores ([M])."""
    def per_member(scores: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
      return {k: v for k, v in scores.items() if np.ndim(v) == 1}
    return results.make_rows(scores=per_member(self.scores),
                             outcome_scores=per_member(self.outcomes),
                             **row_fields)

  def write(self, workdir: str, rows: Sequence[Mapping[str, Any]],
            factor_names: Sequence[str],
            dataset_procedural: bool | None = None,
            checkpoint_selection: str | None = None) -> None:
    """Writes `rows`, the per-member arrays and the timings into
    WORKDIR/results/ (`dataset_procedural`: whether disentax rendered the
    images, recorded for the report's note; the timings record the
    evaluated step, a list when members were scored at their own steps,
    and `checkpoint_selection`)."""
    results.write(workdir, rows, factor_names=factor_names,
                  dataset_procedural=dataset_procedural)
    results.write_arrays(workdir, {k: v for k, v in {**self.scores,
                                                     **self.outcomes}.items()
                                   if np.ndim(v) > 1})
    steps = [row["step"] for row in rows]
    write_json(timings_path(workdir), {
        "step": steps[0] if len(set(steps)) == 1 else steps,
        "checkpoint": checkpoint_selection, "members": len(rows),
        "seconds": self.seconds})


def summary(workdir: str, config: ml_collections.ConfigDict,
            threshold: float | None = None) -> str:
  """The evaluated run's summary (reporting.report.run_summary) at the
  config's failure threshold unless `threshold` is given."""
  if threshold is None:
    threshold = config.eval.failure_threshold
  return run_summary(results.load_run(workdir), config.eval.metric.name,
                     threshold, nmi_table=config.eval.nmi_table)


def write_traversals(workdir: str, exp: Experiment,
                     functions: MemberFunctions, state: Any,
                     step: int | np.ndarray,
                     rows: list[dict[str, Any]]) -> list[str]:
  """Traversal grids of the best, median and worst finite member by the
  primary metric, as `python -m disentax.visualize` draws them
  (`reporting.visualize`: around the posterior mean of one observation,
  latents sorted by their KL)."""
  metric = exp.config.eval.metric.name
  ranked = visualize.ranked_members(rows, metric)
  if not ranked:
    print("traversals: no member with a finite score; none drawn")
    return []
  ids = sorted({member for _, member in ranked.values()})
  members, _ = functions.at(state, step, ids=ids)
  views = visualize.member_views(members,
                                 jax.random.key(exp.config.eval.seed))
  directory = traversals_dir(workdir)
  paths = []
  for rank, (value, member) in ranked.items():
    seed = rows[member]["seed"]
    i = ids.index(member)
    paths.append(visualize.write_traversal_png(
        views.traversals[i], views.kl[i],
        os.path.join(directory, f"{rank}_member{member}_seed{seed}.png"),
        visualize.member_title(exp, member, seed, rank, metric, value)))
  print("latent traversals:\n" + "\n".join(f"  {path}" for path in paths),
        flush=True)
  return paths
