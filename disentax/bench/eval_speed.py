"""How the evaluation item times both sides (`disentax.bench.evaluation`).

The same trained members are scored twice with the same metric battery at
the same sample sizes:

1. disentax: every metric scores all N members in one call (the battery is
   built with `disentax.metrics.make_battery`, the members' functions are
   `disentax.evaluation.members.MemberFunctions`, exactly what `python -m
   disentax.evaluate` scores; the job itself is not used because it writes
   results into the workdir and takes no size overrides);
2. the baseline (`disentax.bench.reference_pipeline`): dlib-google's
   numpy / scikit-learn pipeline, one seed after the other, each seed with
   its own single-member encoder (one `jax.jit`, compiled once per input
   shape and shared by the seeds, which is the cheapest setting for the
   baseline), encoding `reference_batch_size` observations per call.

Both timings include sampling, rendering, encoding, compilation on first use
and the scoring itself, metric by metric; disentax's metrics are also timed
a second time, compiled, since at small sizes their first call is mostly
compilation.  Metric names are the reference's (`reference_pipeline.
BATTERY_SIZES`); `disentax_name` / `disentax_options` translate them.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from disentax import checkpoint
from disentax import config as config_lib
from disentax.bench import reference_pipeline as reference
from disentax.experiment import Experiment, build
from disentax.metrics import METRICS, make_battery
from disentax.metrics.base import TrainedMembers
from disentax.training.train_state import restore_members

# Reference metric -> the disentax metric names that score the same thing,
# the first registered one wins.
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
