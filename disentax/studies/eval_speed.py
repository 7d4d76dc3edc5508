"""How much faster is scoring a sweep at once than seed by seed?

  python -m disentax.studies.eval_speed --workdir=DIR \\
      [--battery_sizes=small|dlib] [--seeds=N] [--metrics=mig,dci,...] \\
      [--reference_batch_size=16] [--nowarm] [--out=FILE.md]

Restores the latest checkpoint of a trained workdir and scores the same
members twice with the same metric battery at the same sample sizes:

1. disentax: every metric scores all N members in one call (the battery is
   built with `disentax.metrics.make_battery`, the members' functions are
   `disentax.evaluation.members.MemberFunctions`, exactly what `python -m
   disentax.evaluate` scores; the job itself is not used because it writes
   results into the workdir and takes no size overrides);
2. the baseline (`disentax.studies.reference_pipeline`): dlib-google's
   numpy / scikit-learn pipeline, one seed after the other, each seed with
   its own single-member encoder (one `jax.jit`, compiled once per input
   shape and shared by the seeds, which is the cheapest setting for the
   baseline), encoding dlib's `--reference_batch_size` observations per
   call.

Both timings include sampling, rendering, encoding, compilation on first use
and the scoring itself, metric by metric; disentax's metrics are also timed
a second time, compiled (unless --nowarm), since at small sizes their
first call is mostly compilation.  It prints a Markdown table (metric,
disentax seconds for all seeds, first and warm call, seed-by-seed seconds,
the ratios) with the machine, date and command line, then the scores both
sides report (mean over members, and the largest per-member difference).

--battery_sizes: `dlib` runs dlib-google's sizes (10000 training points,
5000 test points, ...); `small` runs reduced sizes for a quick comparison
(see `reference_pipeline.BATTERY_SIZES`).  --seeds=N scores only the first N
members on both sides (default: all).  A disentax metric that is not
registered yet shows "n/a"; a size option it does not take is
listed under the table.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

from disentax import checkpoint
from disentax import config as config_lib
from disentax.evaluation.members import MemberFunctions
from disentax.experiment import Experiment, build, member_hparams
from disentax.metrics import METRICS, make_battery
from disentax.metrics.base import TrainedMembers
from disentax.studies import reference_pipeline as reference
from disentax.training.train_state import restore_members

# Reference metric -> the disentax metric names that score the same thing,
# first registered one wins (several disentax modules are still being
# written, so their registered names are not fixed yet).
DISENTAX_NAMES: dict[str, tuple[str, ...]] = {
    "mig": ("mig",),
    "beta_vae_score": ("beta_vae_score", "beta_vae"),
    "factor_vae_score": ("factor_vae_score", "factor_vae"),
    "dci": ("dci",),
    "sap": ("sap", "sap_score"),
    "modularity_explicitness": ("modularity_explicitness", "modularity"),
    "irs": ("irs",),
    "unsupervised": ("unsupervised", "unsupervised_metrics"),
}
# A reference size option -> other names a disentax metric may give it
# (dlib's MIG `num_train` is disentax's `num_points`).
SIZE_ALIASES: dict[str, tuple[str, ...]] = {
    "num_train": ("num_points",),
    "num_eval": ("num_test",),
    "num_test": ("num_eval",),
}


def disentax_name(reference_name: str) -> str | None:
  """The registered disentax metric for a reference metric, or None."""
  registered = set(METRICS.names())
  for name in DISENTAX_NAMES.get(reference_name, (reference_name,)):
    if name in registered:
      return name
  return None


def disentax_options(name: str, sizes: Mapping[str, Any]
                     ) -> tuple[dict[str, Any], list[str]]:
  """The reference sizes in the option names of disentax metric `name`:
  (options, the size options it takes under no name)."""
  allowed = set(METRICS.allowed_keys(name))
  options, dropped = {}, []
  for key, value in sizes.items():
    for candidate in (key, *SIZE_ALIASES.get(key, ())):
      if candidate in allowed:
        options[candidate] = value
        break
    else:
      dropped.append(key)
  return options, dropped


def reference_options(name: str, sizes: Mapping[str, Any],
                      batch_size: int) -> dict[str, Any]:
  """The reference metric's options: the sizes plus dlib's encoding batch
  where `batch_size` means that (not BetaVAE / FactorVAE's pair batch)."""
  options = dict(sizes)
  if name in reference.ENCODING_BATCH_METRICS:
    options["batch_size"] = batch_size
  return options


def restore(workdir: str) -> tuple[Experiment, Any, int]:
  """The experiment, stacked state [M, ...] and step of the latest
  checkpoint (as the evaluation job restores them)."""
  manager, step = checkpoint.latest_step_or_fail(workdir)
  meta = checkpoint.restore_meta(manager, step)
  exp = build(config_lib.from_dict(meta["config"]))
  state = restore_members(manager, step, exp)
  manager.close()
  return exp, state, step


def first_members(tree: Any, num: int) -> Any:
  """The first `num` members of every leaf [M, ...]."""
  return jax.tree.map(lambda leaf: leaf[:num], tree)


def seed_representations(exp: Experiment, params: Any,
                         hparams: Mapping[str, jax.Array], step: int
                         ) -> list[Callable[[np.ndarray], np.ndarray]]:
  """One function per member, numpy observations [b, ...] -> numpy codes
  [b, d]: the member's primary encoder mean, as a dlib evaluation process of
  that seed would load it."""
  at_step = jnp.int32(step)

  @jax.jit
  def encode_one(p: Any, h: Mapping[str, jax.Array],
                 x: jax.Array) -> jax.Array:
    control = exp.objective.representations(h, at_step).get("")
    return exp.model.apply({"params": p}, x, control, method="encode")[0]

  num = jax.tree.leaves(params)[0].shape[0]
  fns = []
  for m in range(num):
    p_m = jax.tree.map(lambda leaf, m=m: leaf[m], params)
    h_m = {k: v[m] for k, v in hparams.items()}
    fns.append(lambda x, p=p_m, h=h_m: np.asarray(encode_one(p, h, x)))
  return fns


def time_disentax(members: TrainedMembers,
                  battery: Mapping[str, Mapping[str, Any]], rng: jax.Array,
                  warm: bool = True
                  ) -> tuple[dict[str, np.ndarray], dict[str, float],
                             dict[str, float]]:
  """Scores of the members and seconds per metric, metric by metric, as
  the evaluation job calls them (`metric.score(members, rng)`).

  Returns (scores, seconds of the first call, which compiles, seconds of a
  second, warm call when `warm`, else {}).  A sweep's evaluation job pays
  the first; the second shows the cost once compiled (e.g. when several
  checkpoints or representations are scored in one process).
  """
  built = make_battery(battery, where="eval_speed")
  scores, first, second = {}, {}, {}
  for name, metric in built.items():
    for timings in (first, second) if warm else (first,):
      start = time.perf_counter()
      scores.update(metric.score(members, rng))
      timings[name] = time.perf_counter() - start
    print(f"  disentax {name}: {first[name]:.1f} s"
          + (f" (warm {second[name]:.1f} s)" if warm else ""), flush=True)
  return scores, first, second


def machine_description() -> str:
  """CPU model and count, JAX backend and device: where the timings ran."""
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          cpu = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  device = jax.devices()[0]
  return (f"{cpu} ({os.cpu_count()} cores visible), {platform.system()} "
          f"{platform.release()}; JAX {jax.__version__} on "
          f"{jax.default_backend()} ({device.device_kind})")


def _seconds(value: float | None) -> str:
  return "n/a" if value is None else f"{value:.2f}"


def _ratio(theirs: float, ours: float | None) -> str:
  return "n/a" if not ours else f"{theirs / ours:.1f}x"


def speed_table(rows: Sequence[tuple[str, float | None, float | None,
                                     float]], num_seeds: int) -> str:
  """Markdown table of (metric, disentax seconds of the first call or None,
  of a warm second call or None, seed-by-seed seconds), with the ratios
  seed-by-seed / disentax and a total over the metrics both sides ran."""
  lines = [f"| metric | disentax s, all {num_seeds} seeds at once (first "
           f"call, with compile) | disentax s (warm call) | seed-by-seed s "
           f"({num_seeds} seeds) | ratio to first call | ratio to warm "
           f"call |", "|---|---:|---:|---:|---:|---:|"]
  for name, first, warm, theirs in rows:
    lines.append(f"| {name} | {_seconds(first)} | {_seconds(warm)} | "
                 f"{theirs:.2f} | {_ratio(theirs, first)} | "
                 f"{_ratio(theirs, warm)} |")
  both = [row for row in rows if row[1] is not None]
  if both:
    first = sum(row[1] for row in both)
    warm = (sum(row[2] for row in both)
            if all(row[2] is not None for row in both) else None)
    theirs = sum(row[3] for row in both)
    lines.append(f"| **total** | {first:.2f} | {_seconds(warm)} | "
                 f"{theirs:.2f} | {_ratio(theirs, first)} | "
                 f"{_ratio(theirs, warm)} |")
  return "\n".join(lines)


def agreement_table(disentax_scores: Mapping[str, np.ndarray],
                    reference_scores: Sequence[Mapping[str, Any]]) -> str:
  """Markdown table of every scalar score both sides report: the means over
  members and the largest per-member difference."""
  num = len(reference_scores)
  lines = ["| score | disentax mean | seed-by-seed mean | max abs diff |",
           "|---|---:|---:|---:|"]
  common = [k for k in reference_scores[0]
            if np.ndim(reference_scores[0][k]) == 0 and k in disentax_scores
            and np.shape(disentax_scores[k]) == (num,)]
  for key in common:
    ours = np.asarray(disentax_scores[key], np.float64)
    theirs = np.array([float(s[key]) for s in reference_scores])
    with np.errstate(invalid="ignore"):
      diff = np.nanmax(np.abs(ours - theirs)) if np.isfinite(
          ours - theirs).any() else np.nan
    lines.append(f"| {key} | {np.mean(ours):.4f} | {np.mean(theirs):.4f} | "
                 f"{diff:.4f} |")
  if not common:
    lines.append("| (no score reported by both) | | | |")
  return "\n".join(lines)


def compare(workdir: str, battery_sizes: str = "small",
            seeds: int | None = None, metrics: Sequence[str] | None = None,
            reference_batch_size: int = 16, warm: bool = True) -> str:
  """Times both pipelines on the workdir's members; returns the report."""
  if battery_sizes not in reference.BATTERY_SIZES:
    raise ValueError(f"--battery_sizes={battery_sizes!r}; allowed: "
                     f"{sorted(reference.BATTERY_SIZES)}")
  sizes = reference.BATTERY_SIZES[battery_sizes]
  metrics = list(metrics or sizes)
  unknown = sorted(set(metrics) - set(sizes))
  if unknown:
    raise ValueError(f"--metrics: unknown {unknown}; known: {list(sizes)}")
  exp, state, step = restore(workdir)
  total = len(exp.members)
  num = total if seeds is None else seeds
  if not 1 <= num <= total:
    raise ValueError(f"--seeds={seeds}: the workdir has {total} members")
  members, _ = MemberFunctions(exp).at(state, step, num_members=num)
  params = first_members(state.params, num)
  hparams = first_members(member_hparams(exp), num)
  rng_seed = int(exp.config.eval.seed)

  ours_battery, theirs_battery, notes = {}, {}, []
  for name in metrics:
    theirs_battery[name] = reference_options(name, sizes[name],
                                             reference_batch_size)
    ours = disentax_name(name)
    if ours is None:
      notes.append(f"- {name}: no disentax metric registered under "
                   f"{DISENTAX_NAMES.get(name, (name,))}; seed-by-seed only")
      continue
    options, dropped = disentax_options(ours, sizes[name])
    ours_battery[ours] = options
    notes.append(f"- {name}: disentax `{ours}` {options}; seed-by-seed "
                 f"{theirs_battery[name]}"
                 + (f" (disentax takes no {dropped})" if dropped else ""))

  print(f"disentax: {num} of {total} members of {workdir} at step {step}",
        flush=True)
  ours_scores, ours_seconds, ours_warm = time_disentax(
      members, ours_battery, jax.random.key(rng_seed), warm)
  print("seed-by-seed reference pipeline", flush=True)
  theirs_scores, theirs_seconds = reference.score_seed_by_seed(
      exp.dataset, seed_representations(exp, params, hparams, step),
      rng_seed, theirs_battery)

  rows = []
  for name in metrics:
    ours = disentax_name(name)
    rows.append((name, ours_seconds.get(ours) if ours else None,
                 ours_warm.get(ours) if ours else None, theirs_seconds[name]))
  now = datetime.datetime.now(datetime.timezone.utc)
  command = " ".join(["python -m disentax.studies.eval_speed",
                      *map(shlex.quote, sys.argv[1:])])
  return "\n".join([
      f"# Evaluation speed: {exp.method} on {exp.dataset.name}, {num} "
      f"seeds, `{battery_sizes}` sizes",
      "",
      f"- machine: {machine_description()}",
      f"- date: {now.isoformat(timespec='seconds')}",
      f"- command: `{command}`",
      f"- workdir: {workdir} (step {step}, {num} of {total} members; "
      f"seed-by-seed encodes {reference_batch_size} observations per call "
      f"where dlib does)",
      "",
      speed_table(rows, num),
      "",
      "Options (sizes are the same on both sides):",
      *notes,
      "",
      "Scores both report (they sample different points, so sampling noise "
      "separates them; definitions are cross-checked exactly in "
      "tests/test_reference_pipeline.py):",
      "",
      agreement_table(ours_scores, theirs_scores),
  ])


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # Orbax logs every restore at INFO
  f = flags.FLAGS
  report = compare(f.workdir, f.battery_sizes, f.seeds, f.metrics,
                   f.reference_batch_size, f.warm)
  print(report)
  if f.out:
    with open(f.out, "w") as out:
      out.write(report + "\n")


if __name__ == "__main__":
  flags.DEFINE_string("workdir", None, "trained workdir to score")
  flags.DEFINE_enum("battery_sizes", "small", sorted(reference.BATTERY_SIZES),
                    "sample sizes of every metric: dlib-google's or reduced")
  flags.DEFINE_integer("seeds", None, "score only the first N members "
                       "(default: all)", lower_bound=1)
  flags.DEFINE_list("metrics", None, "metrics to time (default: all of "
                    f"{list(reference.REFERENCE_METRICS)})")
  flags.DEFINE_integer("reference_batch_size", 16, "observations per "
                       "encoder call in the seed-by-seed pipeline (dlib: 16)",
                       lower_bound=1)
  flags.DEFINE_boolean("warm", True, "also time a second, compiled call of "
                       "every disentax metric")
  flags.DEFINE_string("out", None, "also write the Markdown report here")
  flags.mark_flag_as_required("workdir")
  app.run(main)
