"""Benchmark `evaluation`: the metric battery for all trained members at once versus seed by
seed.

A thin wrapper of `disentax.bench.eval_speed` (read it for the details):
the same trained members are scored twice at the same sample sizes,

  disentax      every metric of `disentax.metrics` scores all N members in
                one call (the vmapped encoder of all members, what
                `python -m disentax.evaluate` scores);
  seed by seed  `disentax.bench.reference_pipeline`: dlib-google's numpy /
                scikit-learn pipeline, one member after the other, each
                encoding 16 observations per call where dlib does.

Both timings include sampling, rendering, encoding, compilation on first
use and scoring.  One row per metric and a total: disentax's first call
(with compilation: what one evaluation job pays) against the seed-by-seed
seconds, with the warm (compiled) second call in the note, and a second
total row for the warm calls.

The trained members come from, in order: the `workdir` size, the
environment variable DISENTAX_BENCH_EVAL_WORKDIR (e.g. /work/runs/bvae50 on
the development machine: 50 members of experiments/beta_vae.py:cpu), or a
run trained here into a temporary directory (quick: experiments/
beta_vae.py:tiny, 4 members; full: beta_vae.py:cpu with 25 seeds x 2 betas
= 50 members for `steps` steps, members vmapped).

  python -m disentax.bench --items=evaluation \\
      [--sizes=workdir=DIR,steps=300,battery=small|dlib] [--quick]
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from typing import Any, Iterator, Mapping

import jax

from disentax.bench import Row
from disentax.config import load_config
from disentax.evaluation.members import MemberFunctions
from disentax.experiment import member_hparams
from disentax.bench import eval_speed
from disentax.bench import reference_pipeline as reference
from disentax.training import trainer

ENV_WORKDIR = "DISENTAX_BENCH_EVAL_WORKDIR"
# The reference metrics at sizes small enough for seconds on 2 cores; not
# dci, whose gradient-boosted trees cost ~20 s a side even at 100 points.
TINY_BATTERY: dict[str, dict[str, Any]] = {
    "mig": {"num_train": 200},
    "beta_vae_score": {"batch_size": 8, "num_train": 20, "num_eval": 10},
    "factor_vae_score": {"batch_size": 8, "num_train": 20, "num_eval": 10,
                         "num_variance_estimate": 200},
    "sap": {"num_train": 100, "num_test": 50},
    "modularity_explicitness": {"num_train": 100, "num_test": 50},
    "irs": {"num_train": 200},
    "unsupervised": {"num_train": 200},
}


@dataclasses.dataclass(frozen=True)
class Sizes:
  """One run of the item.

  workdir: a trained workdir to score (None: the environment variable,
    else train `preset` with `members` members for `steps` steps);
  battery: reference metric name -> sample sizes (both sides), or the name
    of a `reference_pipeline.BATTERY_SIZES` entry ('small', 'dlib');
  reference_batch_size: observations per encoder call, seed by seed."""
  workdir: str | None = None
  preset: str = "cpu"
  members: int = 50
  steps: int = 300
  battery: str | Mapping[str, Mapping[str, Any]] = "small"
  reference_batch_size: int = 16
  warm: bool = True


FULL = Sizes()
QUICK = Sizes(preset="tiny", members=4, steps=20, battery=TINY_BATTERY)


def train_members(preset: str, members: int, steps: int, workdir: str
                  ) -> None:
  """Trains experiments/beta_vae.py:`preset` with `members` members (its
  betas x members / len(betas) seeds) for `steps` steps into `workdir`,
  members vmapped, one checkpoint at the end."""
  config = load_config(f"experiments/beta_vae.py:{preset}")
  config.num_seeds = max(1, members // len(config.objective.beta))
  config.train.num_steps = config.train.checkpoint_every = steps
  config.train.steps_per_chunk = min(config.train.steps_per_chunk, steps)
  config.train.member_execution = "vmap"
  config.eval.trace_every = 0
  config.train.progress = False
  config.eval.battery = {}
  trainer.train(config, workdir)


@contextlib.contextmanager
def trained_workdir(sizes: Sizes) -> Iterator[str]:
  """The workdir to score (see the module docstring), trained into a
  temporary directory, removed after, when none is given."""
  given = sizes.workdir or os.environ.get(ENV_WORKDIR)
  if given:
    yield given
    return
  with tempfile.TemporaryDirectory(prefix="disentax_bench_eval_") as tmp:
    train_members(sizes.preset, sizes.members, sizes.steps, tmp)
    yield tmp


def battery_sizes(battery: str | Mapping[str, Mapping[str, Any]]
                  ) -> dict[str, dict[str, Any]]:
  """Reference metric name -> sizes, from a name or a mapping."""
  if isinstance(battery, str):
    return {k: dict(v) for k, v in reference.BATTERY_SIZES[battery].items()}
  return {k: dict(v) for k, v in battery.items()}


def score_both(workdir: str, sizes: Mapping[str, Mapping[str, Any]],
               reference_batch_size: int, warm: bool
               ) -> tuple[int, int, dict[str, tuple[float | None,
                                                   float | None, float]]]:
  """(members, step, metric -> (disentax first s or None, warm s or None,
  seed-by-seed s)) of scoring every member of `workdir` both ways, as
  `eval_speed.compare` does."""
  exp, state, step = eval_speed.restore(workdir)
  members, _ = MemberFunctions(exp).at(state, step)
  ours_battery, theirs_battery = {}, {}
  for name, options in sizes.items():
    theirs_battery[name] = eval_speed.reference_options(
        name, options, reference_batch_size)
    ours = eval_speed.disentax_name(name)
    if ours is not None:
      ours_battery[ours] = eval_speed.disentax_options(ours, options)[0]
  rng_seed = int(exp.config.eval.seed)
  _, first, second = eval_speed.time_disentax(
      members, ours_battery, jax.random.key(rng_seed), warm)
  _, theirs = reference.score_seed_by_seed(
      exp.dataset, eval_speed.seed_representations(
          exp, state.params, member_hparams(exp), step),
      rng_seed, theirs_battery)
  timings = {}
  for name in sizes:
    ours = eval_speed.disentax_name(name)
    timings[name] = (first.get(ours), second.get(ours), theirs[name])
  return len(exp.members), step, timings


def measure_sizes(sizes: Sizes) -> list[Row]:
  """One row per metric, a total of first calls and a total of warm ones."""
  battery = battery_sizes(sizes.battery)
  with trained_workdir(sizes) as workdir:
    num, step, timings = score_both(workdir, battery,
                                    sizes.reference_batch_size, sizes.warm)
  label = (sizes.battery if isinstance(sizes.battery, str) else
           "tiny" if sizes.battery == TINY_BATTERY else "custom")
  baseline_name = f"seed by seed, {num} members"
  rows = []
  for name, (first, warm, theirs) in timings.items():
    if first is None:
      continue  # no disentax metric registered under this name
    rows.append(Row(
        item="evaluation", case=f"{name}, {num} members, {label} sizes",
        disentax=first, baseline=theirs, unit="s", baseline_name=baseline_name,
        note=("first call (compiles)" + (
            f"; warm {warm:.3g} s, ratio {warm / theirs:.3g}"
            if warm is not None else ""))))
  both = [t for t in timings.values() if t[0] is not None]
  theirs_total = sum(t[2] for t in both)
  rows.append(Row(
      item="evaluation", case=f"total, {num} members, {label} sizes",
      disentax=sum(t[0] for t in both), baseline=theirs_total, unit="s",
      baseline_name=baseline_name,
      note=f"first calls; step {step}, {len(both)} metrics"))
  if sizes.warm:
    rows.append(Row(
        item="evaluation", case=f"total warm, {num} members, {label} sizes",
        disentax=sum(t[1] for t in both), baseline=theirs_total, unit="s",
        baseline_name=baseline_name, note="second (compiled) calls"))
  return rows


def measure(quick: bool, sizes: Sizes | None = None) -> list[Row]:
  """Tiny trained run and tiny sizes when `quick`; else 50 members
  (the given or environment workdir, or trained here) at the 'small'
  battery sizes."""
  return measure_sizes(sizes or (QUICK if quick else FULL))
