"""How well does FactorVAE's discriminator estimate total correlation?

Reproduces Table 1 of the DeVAE paper ("scaling to high-dimensional latent
space"): the density-ratio TC estimate of FactorVAE (Kim & Mnih 2018) against
the known TC of a Gaussian, as the dimension grows.

What is measured.  x in R^D is two halves x1, x2 of D/2 standard normals
each; within a half the coordinates are independent, across halves the
paired coordinates are correlated, Cov(x1_i, x2_i) = rho, so

  TC(x) = sum_k H(x_k) - H(x) = -(D/4) log(1 - rho^2)

(D/2 independent pairs, each with mutual information -log(1 - rho^2) / 2).
We sample x1 ~ N(0, I), x2 = rho x1 + sqrt(1 - rho^2) e, e ~ N(0, I).

How.  For each (D, rho, repeat) a fresh FactorVAE discriminator
(`Discriminator`: 6 x dense 1000, leaky ReLU, 2 logits) is trained for
`num_steps` Adam steps with the FactorVAE discriminator update
(`update_discriminator`: cross-entropy of a fresh batch of x against a
per-dimension shuffle across the batch).  The estimate is then
`tc_estimate` (mean of logit_real - logit_permuted) on `eval_batches`
fresh batches of x, never seen in training.  The paper trains 2000
iterations and averages 10 repeats; so do the defaults here.  Training is
one `lax.scan`, vmapped over repeats and rho values (they share the shape),
so each D is one compiled program.

The setting (`Setting`; the paper states only the 2000 iterations).  The
default, `DEVAE_CODE`, is the DeVAE authors' code: their PyTorch
disentanglement_lib fork trains the discriminator with
`torch.optim.Adam(params)` (lr 1e-3, betas 0.9, 0.999), `nn.Linear`'s
default init, `nn.LeakyReLU()` (slope 0.01), the log of probabilities
clamped to [1e-6, 1 - 1e-6], the batch itself shuffled per column; the
batch is 256, the DeVAE paper's.  It reproduces Table 1 at D = 10 and 100
within the seed spread.  `DLIB_GOOGLE` (this repo's FactorVAE defaults: lr
1e-4, b1 0.5, b2 0.9, Glorot init, slope 0.2, exact log-softmax, batch 64)
underestimates at D = 100 by half: 2000 steps at lr 1e-4 leave the
discriminator far from trained.  The clamp matters at high TC: a sample
classified with more than 1 - 1e-6 certainty (a logit difference beyond
13.8) gives no gradient, so the estimate saturates (the paper's ~23 at
D = 100 and 1000, rho 0.9) instead of swinging as the exact loss's does at
lr 1e-3 (16 and 45 in two runs at D = 100, rho 0.9); at batch 64 the
clamped estimate runs away (58, 136).  BUILD_NOTES has the measurements.

Other choices the paper does not state:
  * evaluation: the mean over 16 fresh batches of the estimate, so the
    reported number is the trained discriminator's, with little evaluation
    noise; at lr 1e-3 the last iterate itself scatters (the seed spread);
  * the table's "relative error" is |estimate - TC| / TC, which reproduces the
    paper's "Error" column from its numbers (e.g. 1 - 23.39 / 41.52 = 0.44).

  python -m disentax.studies.tc_estimation [--dims=10,100,1000] \\
      [--rhos=0.3,0.6,0.9] [--repeats=10] [--steps=2000] \\
      [--setting=devae_code|dlib_google] [--batch_size=N] ... \\
      [--eval_batches=16] [--seed=0] [--out=FILE.md] \\
      [--steps_per_call=100] [--checkpoint_dir=DIR]

The full study is long on CPU: 30 runs of 2000 steps at batch 256 are
about 2.7 hours per D on one core; with --checkpoint_dir a stopped run
(SIGTERM) resumes where it stopped when rerun.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import os
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from disentax.models import VAEOutput
from disentax.objectives.factor_vae import (DISCRIMINATOR_INITIALIZERS,
                                            Discriminator, factor_vae,
                                            init_discriminator, tc_estimate,
                                            update_discriminator)
from disentax.preemption import Preempted
from disentax.workdir import write_npz

# DeVAE paper, Table 1: (D, rho) -> (estimated TC, true TC, "Error").
PAPER_TABLE_1: dict[tuple[int, float], tuple[float, float, float]] = {
    (10, 0.3): (0.23, 0.24, 0.03),
    (10, 0.6): (1.08, 1.12, 0.03),
    (10, 0.9): (4.14, 4.15, 0.00),
    (100, 0.3): (2.17, 2.36, 0.08),
    (100, 0.6): (10.27, 11.16, 0.08),
    (100, 0.9): (23.39, 41.52, 0.44),
    (1000, 0.3): (8.62, 23.58, 0.63),
    (1000, 0.6): (17.40, 111.57, 0.84),
    (1000, 0.9): (22.47, 415.18, 0.95),
}

_FACTOR_VAE_DEFAULTS = inspect.signature(factor_vae).parameters
PERMUTED_FROM = ("same_batch", "second_batch")


@dataclasses.dataclass(frozen=True)
class Setting:
  """How each discriminator is trained (hashable: the compiled program's
  static argument).  `leaky_slope` and `initializer` are
  `Discriminator`'s `negative_slope` and `initializer`; `b1`, `b2` Adam's; `permuted` whether the
  PERMUTED class shuffles the training batch itself ("same_batch") or a
  second fresh batch ("second_batch", Kim & Mnih's Algorithm 2);
  `probability_clip` as in `discriminator_loss` (0: exact log-softmax)."""
  batch_size: int
  learning_rate: float
  b1: float
  b2: float
  leaky_slope: float
  initializer: str
  permuted: str = "same_batch"
  probability_clip: float = 0.0
  width: int = Discriminator.width
  depth: int = Discriminator.depth


# The DeVAE authors' code: their disentanglement_lib fork (PyTorch) trains
# the FactorVAE discriminator with torch.optim.Adam's defaults, nn.Linear's
# default init, nn.LeakyReLU's default slope, probabilities clamped to
# [1e-6, 1 - 1e-6], the batch itself shuffled per column; batch 256 is the
# DeVAE paper's training batch.
DEVAE_CODE = Setting(batch_size=256, learning_rate=1e-3, b1=0.9, b2=0.999,
                     leaky_slope=0.01, initializer="torch", probability_clip=1e-6)
# This repo's FactorVAE discriminator and its Adam (dlib-google's settings,
# read from `factor_vae`'s defaults) at FactorVAE's batch 64.
DLIB_GOOGLE = Setting(
    batch_size=64,
    learning_rate=_FACTOR_VAE_DEFAULTS["discriminator_learning_rate"].default,
    b1=_FACTOR_VAE_DEFAULTS["discriminator_b1"].default,
    b2=_FACTOR_VAE_DEFAULTS["discriminator_b2"].default,
    leaky_slope=Discriminator.negative_slope, initializer="glorot")
SETTINGS: dict[str, Setting] = {"devae_code": DEVAE_CODE,
                                "dlib_google": DLIB_GOOGLE}

__all__ = ["PAPER_TABLE_1", "Setting", "SETTINGS", "DEVAE_CODE",
           "DLIB_GOOGLE", "true_tc", "sample_correlated_halves",
           "estimate_tc_grid", "estimate_tc", "check_setting",
           "check_study_args", "format_table"]


def true_tc(dim: int, rho: float) -> float:
  """TC of the two-halves Gaussian: -(D/4) log(1 - rho^2)."""
  return -(dim / 4) * math.log1p(-rho * rho)


def sample_correlated_halves(key: jax.Array, batch: int, dim: int,
                             rho: float | jax.Array) -> jax.Array:
  """[batch, dim]: x1 ~ N(0, I) in the first dim/2 columns, x2 = rho x1 +
  sqrt(1 - rho^2) e in the rest (rho may be traced)."""
  if dim % 2:
    raise ValueError(f"dim={dim}; must be even")
  k1, k2 = jax.random.split(key)
  x1 = jax.random.normal(k1, (batch, dim // 2))
  e = jax.random.normal(k2, (batch, dim // 2))
  x2 = rho * x1 + jnp.sqrt(1 - rho * rho) * e
  return jnp.concatenate([x1, x2], axis=1)


def _as_output(x: jax.Array) -> VAEOutput:
  """The FactorVAE discriminator functions read only `.z`."""
  return VAEOutput(mean=None, logvar=None, z=x, logits=None)


def _parts(setting: Setting
           ) -> tuple[Discriminator, optax.GradientTransformation]:
  return (Discriminator(width=setting.width, depth=setting.depth,
                        negative_slope=setting.leaky_slope,
                        initializer=setting.initializer),
          optax.adam(setting.learning_rate, b1=setting.b1, b2=setting.b2))


# One run is a key and a rho; its discriminator and Adam state is the FactorVAE
# `aux` ({"params", "opt_state"}).  Keys: init, step i's batch and
# permutation, evaluation are fold_in(run_key, 0 / 1 then i / 2), so training
# in chunks (to checkpoint) gives the same numbers as in one scan.

def _init_run(run_key: jax.Array, *, dim: int, setting: Setting
              ) -> dict[str, Any]:
  discriminator, optimizer = _parts(setting)
  return init_discriminator(
      jax.random.fold_in(run_key, 0),
      _as_output(jnp.zeros((setting.batch_size, dim), jnp.float32)),
      discriminator=discriminator, optimizer=optimizer)


def _train_run(aux: dict[str, Any], run_key: jax.Array, rho: jax.Array,
               first_step: jax.Array, *, num_steps: int, dim: int,
               setting: Setting) -> dict[str, Any]:
  """Steps first_step ... first_step + num_steps - 1 of one run: each the
  FactorVAE discriminator update on a fresh batch, as one lax.scan."""
  discriminator, optimizer = _parts(setting)
  train_key = jax.random.fold_in(run_key, 1)

  def step(aux, i):
    sample_key, permute_key = jax.random.split(
        jax.random.fold_in(train_key, i))
    x = sample_correlated_halves(sample_key, setting.batch_size, dim, rho)
    second = (None if setting.permuted == "same_batch" else
              sample_correlated_halves(jax.random.fold_in(sample_key, 1),
                                       setting.batch_size, dim, rho))
    aux, _ = update_discriminator(aux, _as_output(x), {}, i, permute_key,
                                  discriminator=discriminator,
                                  optimizer=optimizer, permuted_from=second,
                                  probability_clip=setting.probability_clip)
    return aux, None

  aux, _ = jax.lax.scan(step, aux, first_step + jnp.arange(num_steps))
  return aux


def _evaluate_run(aux: dict[str, Any], run_key: jax.Array, rho: jax.Array, *,
                  eval_batches: int, dim: int, setting: Setting
                  ) -> jax.Array:
  """Mean tc_estimate of the trained discriminator on eval_batches fresh
  batches."""
  discriminator, _ = _parts(setting)

  def evaluate(eval_key):
    x = sample_correlated_halves(eval_key, setting.batch_size, dim, rho)
    return tc_estimate(discriminator.apply({"params": aux["params"]}, x))

  eval_keys = jax.random.split(jax.random.fold_in(run_key, 2), eval_batches)
  return jnp.mean(jax.lax.map(evaluate, eval_keys))


# Vmapped over [rhos, repeats]: keys [R, N, 2], rhos [R], state [R, N, ...].


@functools.partial(jax.jit, static_argnames=("dim", "setting"))
def _init_grid(keys: jax.Array, *, dim: int, setting: Setting
               ) -> dict[str, Any]:
  run = functools.partial(_init_run, dim=dim, setting=setting)
  return jax.vmap(jax.vmap(run))(keys)


@functools.partial(jax.jit, static_argnames=("dim", "setting", "num_steps"))
def _train_grid(aux: dict[str, Any], keys: jax.Array, rhos: jax.Array,
                first_step: jax.Array, *, num_steps: int, dim: int,
                setting: Setting) -> dict[str, Any]:
  run = functools.partial(_train_run, num_steps=num_steps, dim=dim,
                          setting=setting)
  over_repeats = jax.vmap(run, in_axes=(0, 0, None, None))
  return jax.vmap(over_repeats, in_axes=(0, 0, 0, None))(aux, keys, rhos,
                                                         first_step)


@functools.partial(jax.jit,
                   static_argnames=("dim", "setting", "eval_batches"))
def _evaluate_grid(aux: dict[str, Any], keys: jax.Array, rhos: jax.Array, *,
                   eval_batches: int, dim: int, setting: Setting
                   ) -> jax.Array:
  run = functools.partial(_evaluate_run, eval_batches=eval_batches, dim=dim,
                          setting=setting)
  return jax.vmap(jax.vmap(run, in_axes=(0, 0, None)))(aux, keys, rhos)


def _save(path: str, aux: Any, step: int, fingerprint: str) -> None:
  leaves = jax.tree_util.tree_leaves(jax.device_get(aux))
  write_npz(path, {"step": step, "fingerprint": fingerprint,
                   **{f"leaf_{i}": leaf for i, leaf in enumerate(leaves)}})


def _load(path: str, like: Any, fingerprint: str
          ) -> tuple[Any, int] | np.ndarray | None:
  """From a checkpoint of the same study: the estimates if it finished,
  else (state, steps done); None if there is none."""
  if not os.path.exists(path):
    return None
  with np.load(path) as data:
    if str(data["fingerprint"]) != fingerprint:
      return None
    if "estimates" in data:
      return np.asarray(data["estimates"], np.float64)
    leaves, treedef = jax.tree_util.tree_flatten(like)
    loaded = [jnp.asarray(data[f"leaf_{i}"]) for i in range(len(leaves))]
    if any(a.shape != l.shape for a, l in zip(loaded, leaves)):
      return None
    return jax.tree_util.tree_unflatten(treedef, loaded), int(data["step"])


def estimate_tc_grid(key: jax.Array, dim: int, rhos: Sequence[float],
                     num_repeats: int = 10, num_steps: int = 2000,
                     setting: Setting = DEVAE_CODE, eval_batches: int = 16,
                     *, steps_per_call: int | None = None,
                     checkpoint_path: str | None = None,
                     progress: Callable[[int], None] | None = None,
                     stop: Callable[[], bool] | None = None
                     ) -> np.ndarray:
  """[len(rhos), num_repeats] TC estimates, one independent run each, all
  vmapped into one compiled program (per D), each a discriminator trained
  for `num_steps` steps as `setting` says.

  Training runs in calls of `steps_per_call` steps (default: all in one),
  the same numbers either way; with `checkpoint_path` the state is saved
  there after each call and a rerun of the same study resumes from it;
  when done the file keeps only the estimates, which a rerun returns.
  `progress(steps_done)` after each call; then, with a checkpoint, `stop()`
  true (SIGTERM, a time limit) raises `Preempted`: rerunning resumes.
  """
  check_study_args([dim], rhos, num_repeats, num_steps, eval_batches)
  check_setting(setting)
  dim = int(dim)
  keys = jax.random.split(key, len(rhos) * num_repeats).reshape(
      len(rhos), num_repeats, -1)
  rhos_array = jnp.asarray(rhos, jnp.float32)
  fingerprint = repr((np.asarray(keys).tolist(), list(map(float, rhos)),
                      num_steps, dim, setting))
  resumed = None
  if checkpoint_path:
    like = jax.eval_shape(
        functools.partial(_init_grid, dim=dim, setting=setting), keys)
    resumed = _load(checkpoint_path, like, fingerprint)
    if isinstance(resumed, np.ndarray):
      return resumed
  aux, done = resumed or (_init_grid(keys, dim=dim, setting=setting), 0)
  chunk = steps_per_call or num_steps
  while done < num_steps:
    n = min(chunk, num_steps - done)
    aux = _train_grid(aux, keys, rhos_array, jnp.asarray(done, jnp.int32),
                      num_steps=n, dim=dim, setting=setting)
    done += n
    if checkpoint_path and done < num_steps:
      _save(checkpoint_path, aux, done, fingerprint)
    if progress:
      jax.block_until_ready(aux)
      progress(done)
    if checkpoint_path and done < num_steps and stop and stop():
      raise Preempted(checkpoint_path, done)
  estimates = _evaluate_grid(aux, keys, rhos_array,
                             eval_batches=int(eval_batches), dim=dim,
                             setting=setting)
  estimates = np.asarray(estimates, np.float64)
  if checkpoint_path:
    write_npz(checkpoint_path, {"fingerprint": fingerprint,
                                "estimates": estimates})
  return estimates


def estimate_tc(key: jax.Array, dim: int, rho: float, num_steps: int = 2000,
                setting: Setting = DEVAE_CODE, eval_batches: int = 16
                ) -> float:
  """One run's TC estimate."""
  return float(estimate_tc_grid(key, dim, [rho], 1, num_steps, setting,
                                eval_batches)[0, 0])


def check_setting(setting: Setting) -> Setting:
  """Raises ValueError naming every bad field of `setting` (before anything
  compiles); returns it."""
  errors = []

  def need(name, ok, allowed):
    if not ok:
      errors.append(f"{name}={getattr(setting, name)!r}: must be {allowed}")

  def number(name):
    value = getattr(setting, name)
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))

  for name, low in (("batch_size", 2), ("width", 1), ("depth", 1)):
    need(name, _is_int(getattr(setting, name))
         and getattr(setting, name) >= low, f"an int >= {low}")
  need("learning_rate", number("learning_rate") and setting.learning_rate > 0,
       "a finite number > 0")
  for name in ("b1", "b2"):
    need(name, number(name) and 0 <= getattr(setting, name) < 1, "in [0, 1)")
  need("leaky_slope", number("leaky_slope"), "a finite number")
  need("probability_clip",
       number("probability_clip") and 0 <= setting.probability_clip < 0.5,
       "in [0, 0.5)")
  need("initializer", setting.initializer in DISCRIMINATOR_INITIALIZERS,
       f"one of {DISCRIMINATOR_INITIALIZERS}")
  need("permuted", setting.permuted in PERMUTED_FROM,
       f"one of {PERMUTED_FROM}")
  if errors:
    raise ValueError("; ".join(errors))
  return setting


def _is_int(value: Any) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _as_int(value: Any) -> Any:
  if isinstance(value, str):
    try:
      return int(value.strip())
    except ValueError:
      return value
  return value


def _as_float(value: Any) -> Any:
  if isinstance(value, str):
    try:
      return float(value.strip())
    except ValueError:
      return value
  return value


def check_study_args(dims: Sequence[Any], rhos: Sequence[Any],
                     repeats: Any = 1, steps: Any = 1, eval_batches: Any = 1
                     ) -> tuple[tuple[int, ...], tuple[float, ...]]:
  """Parses (strings, as flags give them) and checks the study's arguments
  before anything compiles; returns (dims, rhos).  Raises ValueError naming
  every bad value."""
  dims = [_as_int(d) for d in dims]
  rhos = [_as_float(r) for r in rhos]
  errors = []
  bad = [d for d in dims if not (_is_int(d) and d > 0 and d % 2 == 0)]
  if not dims or bad:
    errors.append(f"dims {bad or '(none)'}: each must be an even positive "
                  "int (two halves of D/2)")
  bad = [r for r in rhos
         if isinstance(r, bool) or not isinstance(r, (int, float))
         or not 0 < r < 1]
  if not rhos or bad:
    errors.append(f"rhos {bad or '(none)'}: each must be a number with "
                  "0 < rho < 1")
  for name, value in (("repeats", repeats), ("steps", steps),
                      ("eval_batches", eval_batches)):
    if not (_is_int(value) and value >= 1):
      errors.append(f"{name}={value!r}: must be an int >= 1")
  if errors:
    raise ValueError("; ".join(errors))
  return tuple(int(d) for d in dims), tuple(float(r) for r in rhos)


def _paper(dim: int, rho: float) -> tuple[float, float, float] | None:
  for (d, r), row in PAPER_TABLE_1.items():
    if d == dim and math.isclose(r, rho):
      return row
  return None


def format_table(results: Mapping[int, Mapping[float, np.ndarray]]) -> str:
  """Markdown table from {D: {rho: estimates over repeats}}: our mean ±
  sample standard deviation and range over the repeats beside the paper's
  estimate (a mean over its 10 repeats), and how many of our standard
  deviations the paper's estimate lies from our mean."""
  lines = ["| D | rho | true TC | paper | ours mean ± sd | ours min – max | "
           "runs | (paper − mean) / sd | paper rel. error | "
           "our rel. error |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for dim, by_rho in results.items():
    for rho, estimates in by_rho.items():
      estimates = np.asarray(estimates, np.float64)
      tc = true_tc(dim, rho)
      mean = float(estimates.mean())
      std = float(estimates.std(ddof=1)) if estimates.size > 1 else 0.0
      paper = _paper(dim, rho)
      if paper is None:
        paper_estimate = paper_error = distance = "—"
      else:
        paper_estimate, paper_error = f"{paper[0]:.2f}", f"{paper[2]:.2f}"
        distance = (f"{(paper[0] - mean) / std:+.1f}" if std > 0 else "—")
      lines.append(
          f"| {dim} | {rho:g} | {tc:.2f} | {paper_estimate} | "
          f"{mean:.2f} ± {std:.2f} | {estimates.min():.2f} – "
          f"{estimates.max():.2f} | {estimates.size} | {distance} | "
          f"{paper_error} | {abs(mean - tc) / tc:.2f} |")
  return "\n".join(lines) + "\n"
