"""What every objective shares: its contract, and the terms all VAEs use.

An objective is a pure loss `loss(output, x, hparams, step, aux) -> (loss,
metrics)`; the metrics hold at least "loss" (the trainer's divergence check
and logs read it) and whatever terms the objective has ("recon", "kl",
...).  `hparams` holds this member's hyperparameters as scalars; the
trainer maps over members, so one compiled program trains a whole
hyperparameter grid x seeds.  `hyperparameters` lists the grid values of each
hyperparameter (the trainer takes their Cartesian product with the seeds).
Everything that varies over steps is data in the compiled program, never a
recompile.

Terms every VAE objective shares (the Gaussian KL, the reconstruction
likelihood, their beta-weighted sum `elbo_loss`) live here, so no objective
imports another.

The contract is a small required core (`name`, `loss`, `hyperparameters`,
`per_example_mean`, `reconstruction`) plus typed optional capabilities, each
`None` when an objective does not have it:

  aux               `AuxState`: state of its own carried between steps per
                    member (a FactorVAE discriminator and its optimiser, a
                    PI controller), kept in the train state like the
                    parameters (checkpointed, resumed, frozen on divergence).
  control           `StagedControl`: steers the model per step (DEFT's stage
                    gate, DeVAE's layer) and says which representations
                    evaluation scores.
  stage             the training stage at a step, for objectives that train
                    in stages (DEFT, CascadeVAE-C): traces record it and
                    `train.reset_adam_at_stage` starts a fresh Adam state
                    when it changes.
  batch_sampler     the member's training batch, when it is not a uniform
                    draw from the dataset (the annealing test's one-factor
                    sub-datasets).
  update_transform  rescales the optimiser's parameter updates through the
                    model's parameter groups (DEFT's smaller learning rate
                    for old groups, or their freeze in the fork's mode).

The trainer and the evaluator only ever ask for these; no objective knows
another objective's internals or addresses parameters by path.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterable, Mapping

import chex
import jax
import jax.numpy as jnp
import optax

from disentax.models import LatentVariableModel, ModelControl, VAEOutput

Metrics = dict[str, jax.Array]
Hparams = Mapping[str, jax.Array]
# (output, x, hparams, step, aux) -> (loss, metrics)
LossFn = Callable[..., tuple[jax.Array, Metrics]]

RECONSTRUCTIONS = ("bernoulli", "gaussian")


@dataclasses.dataclass(frozen=True)
class AuxState:
  """An objective's own per-member state.

  init(key, probe_output) -> aux: the initial state (probe_output: the
      model's output on one blank observation, for shapes).
  update(aux, output, hparams, step, key) -> (aux, metrics): called after
      the parameter update with the step's gradient-stopped output.
  """
  init: Callable[[jax.Array, VAEOutput], Any]
  update: Callable[[Any, VAEOutput, Hparams, jax.Array, jax.Array],
                   tuple[Any, Metrics]]


@dataclasses.dataclass(frozen=True)
class StagedControl:
  """How an objective steers the model, as pure functions of the member's
  hyperparameters and the traced step.

  for_step(hparams, step, key) -> the model's `control` for a training step
      (e.g. DEFT's LatentGate of the current stage, DeVAE's layer drawn from
      `key`).
  representations(hparams, step) -> {suffix: control}: the representations
      evaluation scores at a checkpoint of `step` (metric names get the
      suffix; "" is the primary one).
  """
  for_step: Callable[[Hparams, jax.Array, jax.Array | None], ModelControl]
  representations: Callable[[Hparams, jax.Array], Mapping[str, ModelControl]]


# (dataset, hparams, member_key, key, batch_size) -> observations
BatchSampler = Callable[..., jax.Array]
# step -> int32 stage index, the same for every member (a pure function of
# the traced step)
StageFn = Callable[[jax.Array], jax.Array]
# (updates, hparams, step, model) -> updates
UpdateTransform = Callable[[Any, Hparams, jax.Array, LatentVariableModel],
                           Any]


@dataclasses.dataclass(frozen=True)
class Objective:
  """A training method (module docstring).

  per_example_mean: the loss and every metric are batch means of
      per-example terms (given the member's hyperparameters, step, aux and
      control), so a batch's gradient is the mean of its equal slices'
      gradients: what `train.micro_batches` needs.  Not so for losses of
      batch statistics (|KL - C| of the mean KL, minibatch TC estimators,
      covariances, permuted batches).
  reconstruction: the decoder likelihood the loss uses ('bernoulli' or
      'gaussian'), which evaluation uses for the ELBO's reconstruction term.
  stage: step -> the training stage (int32), for objectives that train in
      stages; None otherwise.
  """
  name: str
  loss: LossFn
  hyperparameters: Mapping[str, tuple]
  per_example_mean: bool = False
  reconstruction: str = "bernoulli"
  aux: AuxState | None = None
  control: StagedControl | None = None
  stage: StageFn | None = None
  batch_sampler: BatchSampler | None = None
  update_transform: UpdateTransform | None = None

  def representations(self, hparams: Hparams, step: jax.Array
                      ) -> Mapping[str, ModelControl]:
    """{suffix: model control} of the representations to score at `step`:
    the objective's, or the plain encoder mean as the primary one ("")."""
    if self.control is None:
      return {"": None}
    return self.control.representations(hparams, step)


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


def elbo_loss(output: VAEOutput, x: jax.Array, beta: float | jax.Array,
              reconstruction: str = "bernoulli") -> tuple[jax.Array, Metrics]:
  """Batch mean of reconstruction + beta * KL(q(z|x) || N(0, I)): the
  negative ELBO at beta 1, the beta-VAE loss otherwise; a batch mean of
  per-example terms.  Returns (loss, {"loss", "recon", "kl"})."""
  recon = reconstruction_loss(output.logits, x, reconstruction).mean()
  kl = gaussian_kl(output.mean, output.logvar).sum(axis=1).mean()
  loss = recon + beta * kl
  return loss, {"loss": loss, "recon": recon, "kl": kl}


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
