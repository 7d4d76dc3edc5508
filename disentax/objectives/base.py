"""What every objective shares: its spec, and the terms all VAEs use.

An objective is a pure loss `loss(output, x, hparams, step, aux) -> (loss,
metrics)`.  `hparams` holds this member's hyperparameters as scalars; the
trainer vmaps over members, so one compiled program trains a whole
hyperparameter grid x seeds.  `hyperparameters` lists the grid values of each
hyperparameter (the trainer takes their Cartesian product with the seeds).

Objectives that carry state of their own between steps (a FactorVAE
discriminator and its optimiser, a PI controller's beta and integral) give
`init_aux(key, probe_output) -> aux` and `update_aux(aux, output, hparams,
step, key) -> (aux, metrics)`.  The trainer keeps `aux` per member inside the
train state (so it is vmapped, checkpointed and resumed like the parameters),
passes it to `loss`, and calls `update_aux` after the VAE update with the
step's (gradient-stopped) output.  Everything that varies over steps is data
in the compiled program, never a recompile.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterable, Mapping

import chex
import jax
import jax.numpy as jnp
import optax

from disentax.models import VAEOutput

Metrics = dict[str, jax.Array]
LossFn = Callable[..., tuple[jax.Array, Metrics]]
InitAux = Callable[[jax.Array, VAEOutput], Any]
UpdateAux = Callable[[Any, VAEOutput, Mapping[str, jax.Array], jax.Array,
                      jax.Array], tuple[Any, Metrics]]

RECONSTRUCTIONS = ("bernoulli", "gaussian")


@dataclasses.dataclass(frozen=True)
class Objective:
  """A training method.  Beyond its loss, an objective may steer the model
  and the data of each member, always as pure functions of the member's
  hyperparameters and the traced step:

  model_control(hparams, step, key) -> the model's `control` for this step
      (e.g. DEFT's LatentGate of the current stage, DeVAE's layer index).
  representations(hparams, step) -> {suffix: control}: the representations
      evaluation scores at a checkpoint of `step` (metric names get the
      suffix; "" is the primary one).  Default: the plain encoder mean.
  sample_batch(dataset, hparams, member_key, key, batch_size) -> x: the
      member's training batch, when it is not a uniform draw from the dataset
      (e.g. the annealing test's one-factor sub-datasets).
  scale_updates(updates, hparams, step) -> updates: rescales the optimiser's
      parameter updates (e.g. DEFT's smaller learning rate for old groups).
  trace_scores(lines, hparams) -> {name: [M] values}: scores read off the
      training curves (the run's metrics.jsonl lines; hparams: the members'
      [M] hyperparameter arrays), e.g. the annealing test's IFP.
  stage(step) -> int: the training stage at a step, for objectives that
      train in stages (DEFT), so traces and reports can show scores per stage.
  per_example_mean: the loss and every metric are batch means of
      per-example terms (given the member's hyperparameters, step, aux and
      control), so a batch's gradient is the mean of its equal slices'
      gradients: what `train.micro_batches` needs.  Not so for losses of
      batch statistics (|KL - C| of the mean KL, minibatch TC estimators,
      covariances, permuted batches).
  """
  name: str
  loss: LossFn  # (output, x, hparams, step, aux=None) -> (loss, metrics)
  hyperparameters: Mapping[str, tuple]
  init_aux: InitAux | None = None
  update_aux: UpdateAux | None = None
  model_control: Callable[..., Any] | None = None
  representations: Callable[..., Mapping[str, Any]] | None = None
  sample_batch: Callable[..., jax.Array] | None = None
  scale_updates: Callable[..., Any] | None = None
  trace_scores: Callable[..., Mapping[str, Any]] | None = None
  stage: Callable[[Any], Any] | None = None
  per_example_mean: bool = False


def hyperparameter_grid(name: str, values: float | Iterable[float], *,
                        positive: bool = False,
                        non_negative: bool = False) -> tuple[float, ...]:
  """Normalises a config value (one number or a sequence) to grid values,
  rejecting empty grids and, if `positive`, values <= 0."""
  grid = (tuple(float(v) for v in values) if isinstance(values, Iterable)
          else (float(values),))
  if not grid:
    raise ValueError(f"config.objective.{name} is empty; give one value or a "
                     "sequence of values")
  bad = [v for v in grid if not math.isfinite(v) or (positive and v <= 0)
         or (non_negative and v < 0)]
  if bad:
    raise ValueError(f"config.objective.{name}={grid}: value(s) {bad} not "
                     "allowed; must be finite"
                     f"{' and > 0' if positive else ''}"
                     f"{' and >= 0' if non_negative else ''}")
  return grid


def sequence_grid(name: str, values: Iterable, *, positive: bool = False,
                  non_negative: bool = False) -> tuple[tuple[float, ...], ...]:
  """Grid values of a sequence-valued hyperparameter (e.g. DEFT's pressure
  per stage): one sequence of numbers, or a sequence of such sequences (the
  grid), all of one length."""
  items = list(values) if isinstance(values, Iterable) else [values]
  if items and all(isinstance(v, Iterable) for v in items):
    sequences = [tuple(v) for v in items]
  else:
    sequences = [tuple(items)]
  lengths = sorted({len(s) for s in sequences})
  if not sequences or lengths[0] == 0 or len(lengths) > 1:
    raise ValueError(
        f"config.objective.{name}={values!r}: give one non-empty sequence of "
        "numbers or a sequence of such sequences of one length (got lengths "
        f"{lengths})")
  return tuple(hyperparameter_grid(name, s, positive=positive,
                                   non_negative=non_negative)
               for s in sequences)


def gaussian_kl(mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """KL(N(mean, exp(logvar)) || N(0, I)) per example and latent, [b, d]."""
  return 0.5 * (jnp.square(mean) + jnp.exp(logvar) - logvar - 1.0)


def reconstruction_loss(logits: jax.Array, x: jax.Array,
                        kind: str = "bernoulli") -> jax.Array:
  """Negative log-likelihood per example [b], summed over pixels/channels.

  'bernoulli': sigmoid cross-entropy with logits (dSprites);
  'gaussian': sum of squares against sigmoid(logits) (dlib-deft, colour data).
  """
  chex.assert_equal_shape([logits, x])
  if kind == "bernoulli":
    per_pixel = optax.sigmoid_binary_cross_entropy(logits, x)
  elif kind == "gaussian":
    per_pixel = jnp.square(jax.nn.sigmoid(logits) - x)
  else:
    raise ValueError(f"reconstruction {kind!r}; allowed: {RECONSTRUCTIONS}")
  return per_pixel.reshape(x.shape[0], -1).sum(axis=1)


def check_reconstruction(kind: str) -> str:
  if kind not in RECONSTRUCTIONS:
    raise ValueError(f"config.objective.reconstruction={kind!r}; allowed: "
                     f"{RECONSTRUCTIONS}")
  return kind


def check_steps(name: str, value: int, minimum: int = 1) -> int:
  """A step count (or other count) from a config: an int, not a bool,
  >= minimum."""
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise ValueError(f"config.objective.{name}={value!r}; must be an integer "
                     f">= {minimum}")
  return value


def check_finite(name: str, value: float, *, sign: int = 0) -> float:
  """`value` as a float; sign +1 requires > 0, -1 requires < 0."""
  if isinstance(value, bool) or not isinstance(value, (int, float)) or (
      not math.isfinite(value)):
    raise ValueError(f"config.objective.{name}={value!r}; must be a finite "
                     "number")
  if (sign > 0 and value <= 0) or (sign < 0 and value >= 0):
    raise ValueError(f"config.objective.{name}={value!r}; must be "
                     f"{'> 0' if sign > 0 else '< 0'}")
  return float(value)
