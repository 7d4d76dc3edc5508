"""Scoring a representation disentax did not train (`evaluate_representation`).

A model trained anywhere (a PyTorch encoder, a JAX function, a lookup
table) is scored by the same metrics, with the same options, the same
draws and the same results schema as the evaluation job
(`evaluation.job`), so `disentax.load_results` and `python -m
disentax.report` read its workdir like any run's.

What it is given:

  representation_fn  observations -> codes: a numpy batch [B, H, W, C]
                     float32 in [0, 1] (a writable copy) -> [B, d] (numpy,
                     JAX, or anything `np.asarray` converts, float32 after
                     conversion).  The metrics call it on the host, never
                     inside a jitted program, so any Python function works
                     (jit a JAX one yourself for speed); each metric calls
                     it with its own `batch_size` observations exactly (a
                     last, short batch is padded and trimmed).
  posterior_fn       optional, observations -> (mean, logvar), each [B, d],
                     of a Gaussian encoder: the mean representation when
                     there is no representation_fn, the *sampled* one
                     (below), and the posterior the ELBO terms read.
  reconstruction_error_fn  optional, observations -> [B] decoder negative
                     log-likelihood in nats (with posterior_fn: the ELBO
                     decomposition).

Every output is checked (shape, finiteness) on a probe batch before any
metric runs, and on every call after.

Members are the evaluation seeds: member i is the same function scored with
rng `jax.random.key(seeds[i])`, the key every metric draws its points from
(the evaluation job scores its members with `key(config.eval.seed)`, so
`seeds=(config.eval.seed,)` and the same options give a trained member's
encoder the job's scores).

The sampled representation is disentanglement_lib's `sampled_representation`
postprocessing, z = mean + exp(logvar / 2) * eps with eps ~ N(0, I) drawn
afresh for every batch; dlib scores every metric on it besides the mean.
Here eps is drawn from `key(seed)` folded with a fixed stream and the
batch's call index, so a sampled score is reproducible; its score names end
in `_sampled`.

A metric reading what was not given (`Metric.needs`: UDR compares models
trained alike, the loss terms and the IFP read a disentax training run, the
ELBO terms need the posterior and the reconstruction error) or needing
ground-truth factors the dataset lacks is skipped with a printed note under
battery="full" and is an error when named explicitly.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

from disentax import results
from disentax.config import short_hash
from disentax.data import GroundTruthDataset, make_dataset
from disentax.evaluation.job import Scores
from disentax.metrics import full_battery, make_battery
from disentax.metrics.base import Metric, TrainedMembers
from disentax.metrics.sampling import (jitted_dataset, sample_factors,
                                       sample_representation)
from disentax.workdir import checkpoint_dir

# Representation -> the suffix of its score names.
REPRESENTATIONS = {"mean": "", "sampled": "_sampled"}
FULL = "full"  # every registered metric at disentanglement_lib's defaults
DEFAULT_NAME = "external"  # the method name of the rows
PROBE_SIZE = 2  # observations each given function is checked on first
# Folded into a seed's key for the sampled representation's noise, so it is
# drawn apart from the points the metrics draw with the same key.
NOISE_STREAM = 0x5A3D

# A field a metric needs (`Metric.needs`) -> why this caller lacks it.
MISSING = {
    "representation_fn": "pass representation_fn or posterior_fn",
    "posterior_fn": "pass posterior_fn (observations -> (mean, logvar))",
    "reconstruction_error_fn": "pass reconstruction_error_fn (observations "
                               "-> [B] decoder negative log-likelihood)",
    "groups": "it compares several models trained with the same settings; "
              "one function is one model",
    "loss_terms_fn": "it reads the training objective's loss terms, which "
                     "only a disentax run has",
    "trace": "it reads a training-time trace, which only a disentax run "
             "has",
}

HostFn = Callable[[np.ndarray], Any]


def evaluate_representation(
    representation_fn: HostFn | None,
    dataset: str | Mapping[str, Any] | GroundTruthDataset, *,
    battery: str | Sequence[str] | Mapping[str, Mapping[str, Any]] = FULL,
    seeds: int | Sequence[int] = (0,),
    representation: str | Sequence[str] = "mean",
    posterior_fn: HostFn | None = None,
    reconstruction_error_fn: HostFn | None = None,
    name: str = DEFAULT_NAME, step: int = 0, workdir: str | None = None):
  """Scores a representation function with disentax's metrics.

  Args:
    representation_fn: observations [B, H, W, C] (numpy float32 in [0, 1])
      -> codes [B, d]; may be None when `posterior_fn` is given (its mean is
      the representation).  Module docstring: how it is called.
    dataset: a registered dataset name ("dsprites"), a dataset config
      section ({"name": "dsprites", "image_size": 32}) or a
      `GroundTruthDataset`.
    battery: "full" (every registered metric at disentanglement_lib's
      options that the given functions can score; the others are skipped
      with a note), a sequence of metric names (their default options) or
      {metric name: options} (as `config.eval.battery`).  A metric named
      here that cannot be scored is an error.
    seeds: the evaluation seeds, one member each (the key the metrics draw
      with).
    representation: "mean", "sampled" (z = mean + exp(logvar / 2) * eps;
      needs `posterior_fn`; scores named `<score>_sampled`) or both.
    posterior_fn: observations -> (mean, logvar), each [B, d].
    reconstruction_error_fn: observations -> [B] reconstruction error in
      nats.
    name: the method name of the rows (the report's row label).
    step: the training step of the scored model, recorded in the rows.
    workdir: when given, the results are written to WORKDIR/results/ (the
      schema of `disentax.results`) for `disentax.load_results` and
      `python -m disentax.report` (replacing any results there); it must
      not hold a disentax training run.

  Returns:
    A pandas DataFrame, one row per seed, in the columns of
    `disentax.load_results` (`results.frame`); `.attrs["skipped"]` maps
    each skipped metric to why.

  Raises:
    ValueError: any bad argument, an unknown metric (the message lists the
      registered ones) or a function whose output has the wrong shape or
      non-finite values, all before any metric is scored.
  """
  if not isinstance(name, str) or not name:
    raise ValueError(f"name={name!r}; must be a non-empty string")
  if isinstance(step, bool) or not isinstance(step, int) or step < 0:
    raise ValueError(f"step={step!r}; must be an integer >= 0")
  seeds = _check_seeds(seeds)
  representations = _check_representations(representation, posterior_fn)
  for label, fn in (("representation_fn", representation_fn),
                    ("posterior_fn", posterior_fn),
                    ("reconstruction_error_fn", reconstruction_error_fn)):
    if fn is not None and not callable(fn):
      raise ValueError(f"{label} must be a function, got {fn!r}")
  if representation_fn is None and posterior_fn is None:
    raise ValueError("give representation_fn or posterior_fn (whose mean is "
                     "the representation)")
  if workdir is not None and os.path.isdir(checkpoint_dir(workdir)):
    raise ValueError(
        f"{workdir} holds a disentax training run (checkpoints/); its "
        "results belong to its evaluation job: choose another workdir")
  dataset, dataset_section = _dataset(dataset)
  given = {"dataset", "representation_fn"}
  given |= {"posterior_fn"} if posterior_fn is not None else set()
  given |= ({"reconstruction_error_fn"} if reconstruction_error_fn is not None
            else set())
  metrics, skipped = _metrics(battery, dataset, given)
  functions = _HostFunctions(dataset, representation_fn, posterior_fn,
                             reconstruction_error_fn, seeds[0])

  parts = []
  for seed in seeds:
    print(f"scoring {name} on {dataset.name} with seed {seed}: "
          f"{list(metrics)} x {list(representations)}", flush=True)
    part = Scores()
    for metric_name, metric in metrics.items():
      reads_codes = "representation_fn" in metric.needs
      for kind in representations if reads_codes else ("mean",):
        suffix = REPRESENTATIONS[kind]
        part.add(f"{metric_name}{suffix}", metric,
                 functions.members(kind, seed), jax.random.key(seed),
                 suffix=suffix)
    parts.append(part)
  scores = Scores.concatenate(parts)
  rows = scores.rows(
      method=name, dataset=dataset.name,
      config_hash=short_hash({
          "name": name, "dataset": dataset_section,
          "battery": {n: dataclasses.asdict(m) for n, m in metrics.items()},
          "representation": list(representations),
          "functions": sorted(given)}),
      step=step, members=[{"member": i, "seed": s, "hparams": {}}
                          for i, s in enumerate(seeds)],
      finite_params=np.ones(len(seeds), bool))
  if workdir is not None:
    scores.write(workdir, rows, dataset.factor_names,
                 dataset_procedural=dataset.procedural)
  table = results.frame(rows, None if workdir is None
                        else [workdir] * len(rows))
  table.attrs["skipped"] = skipped
  return table


def _check_seeds(seeds: int | Sequence[int]) -> list[int]:
  """The seeds as a list: distinct integers in [0, 2**32)."""
  if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
    seeds = [seeds]
  try:
    seeds = list(seeds)
  except TypeError:
    raise ValueError(f"seeds={seeds!r}; must be a sequence of integers "
                     ">= 0") from None
  if not seeds or any(isinstance(s, bool) or not isinstance(
      s, (int, np.integer)) or not 0 <= s < 2**32 for s in seeds):
    raise ValueError(f"seeds={seeds!r}; must be a non-empty sequence of "
                     "integers in [0, 2**32)")
  if len(set(seeds)) != len(seeds):
    raise ValueError(f"seeds={seeds!r}; each seed is one member, give each "
                     "once")
  return [int(s) for s in seeds]


def _check_representations(representation: str | Sequence[str],
                           posterior_fn: HostFn | None) -> list[str]:
  """The representations to score, each once, in the order given."""
  kinds = [representation] if isinstance(representation, str) else list(
      representation)
  unknown = [k for k in kinds if k not in REPRESENTATIONS]
  if unknown or not kinds:
    raise ValueError(f"representation={representation!r}; allowed: "
                     f"{', '.join(REPRESENTATIONS)} or a sequence of them")
  if "sampled" in kinds and posterior_fn is None:
    raise ValueError("representation 'sampled' draws z = mean + exp(logvar "
                     "/ 2) * eps: pass posterior_fn (observations -> (mean, "
                     "logvar))")
  return list(dict.fromkeys(kinds))


def _dataset(dataset: str | Mapping[str, Any] | GroundTruthDataset
             ) -> tuple[GroundTruthDataset, dict[str, Any]]:
  """The dataset and a JSON-ready description of it (for the hash)."""
  if isinstance(dataset, GroundTruthDataset):
    return dataset, {"name": dataset.name,
                     "factor_sizes": list(dataset.factor_sizes),
                     "observation_shape": list(dataset.observation_shape)}
  if isinstance(dataset, str):
    section = {"name": dataset}
  elif hasattr(dataset, "to_dict"):  # an ml_collections.ConfigDict
    section = dataset.to_dict()
  elif isinstance(dataset, Mapping):
    section = dict(dataset)
  else:
    raise ValueError(f"dataset={dataset!r}; give a registered dataset name, "
                     "a dataset config section {'name': ..., **options} or "
                     "a GroundTruthDataset")
  return make_dataset(section), section


def _metrics(battery: str | Sequence[str] | Mapping[str, Mapping[str, Any]],
             dataset: GroundTruthDataset, given: set[str]
             ) -> tuple[dict[str, Metric], dict[str, str]]:
  """(the metrics to score, {skipped metric: why}); an unknown metric, bad
  options or a metric named explicitly that cannot score fail here."""
  if isinstance(battery, str):
    if battery != FULL:
      raise ValueError(f"battery={battery!r}; allowed: {FULL!r}, a sequence "
                       "of metric names or {metric name: options}")
    options, explicit = full_battery(), False
  elif hasattr(battery, "to_dict") or isinstance(battery, Mapping):
    battery = battery.to_dict() if hasattr(battery, "to_dict") else battery
    options, explicit = {n: dict(o or {}) for n, o in battery.items()}, True
  else:
    options, explicit = {n: {} for n in battery}, True
  if not options:
    raise ValueError("battery is empty: name at least one metric")
  built = make_battery(options, where="battery")
  chosen, skipped = {}, {}
  for metric_name, metric in built.items():
    lacking = [f for f in metric.needs if f not in given]
    if lacking:
      skipped[metric_name] = "; ".join(f"needs {f}: {MISSING[f]}"
                                       for f in lacking)
    elif metric.supervised and not dataset.labelled:
      skipped[metric_name] = (f"needs ground-truth factors, which "
                              f"{dataset.name} has not")
    else:
      chosen[metric_name] = metric
  if skipped and explicit:
    raise ValueError("battery: cannot score " + "; ".join(
        f"{n} ({why})" for n, why in skipped.items()))
  for metric_name, why in skipped.items():
    print(f"battery={FULL}: skipping {metric_name} ({why})")
  return chosen, skipped


# dlib's sampled representation, compiled once for the host calls.
_sample = jax.jit(sample_representation)


class _HostFunctions:
  """The given functions as metrics call them (`TrainedMembers`): a JAX
  batch of observations in, arrays with a members axis of one out, every
  output checked.  Checked on a probe batch when built."""

  def __init__(self, dataset: GroundTruthDataset,
               representation_fn: HostFn | None, posterior_fn: HostFn | None,
               reconstruction_error_fn: HostFn | None, probe_seed: int):
    self.dataset = dataset
    self._representation_fn = representation_fn
    self._posterior_fn = posterior_fn
    self._reconstruction_error_fn = reconstruction_error_fn
    self.num_latents: int | None = None
    probe = jitted_dataset(dataset)[1](
        sample_factors(dataset, jax.random.key(probe_seed), PROBE_SIZE))
    for fn in (self._codes, self._posterior, self._reconstruction_error):
      fn(probe)

  def _call(self, fn: HostFn, observations: jax.Array) -> Any:
    return fn(np.array(observations, np.float32))

  def _checked(self, value: Any, what: str, batch: int,
               latents: bool = True) -> np.ndarray:
    """`value` as float32 [batch, d] (or [batch]), else a ValueError
    naming `what` and the shape it returned."""
    try:
      array = np.asarray(value, np.float32)
    except (TypeError, ValueError, RuntimeError) as error:
      raise ValueError(f"{what} must return a numeric array, got "
                       f"{type(value).__name__} ({error})") from None
    if latents:
      expected = f"[{batch}, {self.num_latents or 'd'}]"
      ok = (array.ndim == 2 and array.shape[0] == batch
            and array.shape[1] >= 1
            and array.shape[1] == (self.num_latents or array.shape[1]))
    else:
      expected, ok = f"[{batch}]", array.shape == (batch,)
    if not ok:
      raise ValueError(f"{what} returned shape {array.shape} for {batch} "
                       f"observations; expected {expected}")
    bad = int(np.size(array) - np.isfinite(array).sum())
    if bad:
      raise ValueError(f"{what} returned {bad} non-finite value(s) of "
                       f"{array.size} for a batch of {batch} observations")
    if latents:
      self.num_latents = array.shape[1]
    return array

  def _codes(self, observations: jax.Array) -> np.ndarray:
    """Codes [1, B, d] of the mean representation."""
    if self._representation_fn is None:
      return self._posterior(observations)[0]
    batch = observations.shape[0]
    return self._checked(self._call(self._representation_fn, observations),
                         "representation_fn", batch)[None]

  def _posterior(self, observations: jax.Array
                 ) -> tuple[np.ndarray, np.ndarray] | None:
    """(mean, logvar), each [1, B, d]."""
    if self._posterior_fn is None:
      return None
    value = self._call(self._posterior_fn, observations)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
      raise ValueError(f"posterior_fn must return (mean, logvar), got "
                       f"{type(value).__name__}")
    batch = observations.shape[0]
    return tuple(self._checked(v, f"posterior_fn's {what}", batch)[None]
                 for v, what in zip(value, ("mean", "logvar")))

  def _reconstruction_error(self, observations: jax.Array
                            ) -> np.ndarray | None:
    """[1, B] reconstruction errors."""
    if self._reconstruction_error_fn is None:
      return None
    return self._checked(
        self._call(self._reconstruction_error_fn, observations),
        "reconstruction_error_fn", observations.shape[0], latents=False)[None]

  def _sampled(self, seed: int) -> Callable[[jax.Array], np.ndarray]:
    """Codes [1, B, d] of the sampled representation: the noise of the
    i-th call drawn with fold_in(fold_in(key(seed), NOISE_STREAM), i)."""
    root = jax.random.fold_in(jax.random.key(seed), NOISE_STREAM)
    calls = itertools.count()

    def sampled(observations: jax.Array) -> np.ndarray:
      mean, logvar = self._posterior(observations)
      return np.asarray(_sample(mean, logvar,
                                jax.random.fold_in(root, next(calls))))

    return sampled

  def members(self, representation: str, seed: int) -> TrainedMembers:
    """One member: `representation`'s codes and the given functions (the
    sampled noise restarts for each metric, so a metric's scores do not
    depend on which metrics ran before it)."""
    codes = self._codes if representation == "mean" else self._sampled(seed)
    return TrainedMembers(
        dataset=self.dataset, representation_fn=codes,
        posterior_fn=(None if self._posterior_fn is None
                      else self._posterior),
        reconstruction_error_fn=(None if self._reconstruction_error_fn
                                 is None else self._reconstruction_error))
