"""CascadeVAE-C (Jeong & Song 2019, continuous version): a per-latent
weighted KL whose pressure is relieved one latent per stage.

  stage  i = min(step // stage_steps, num_latents - 1)
  weight beta_low on latents 0..i, beta_high on latents i+1..d-1
  loss   = recon + batch mean of sum_j weight_j * KL_j

(official code: 20,000 steps per stage, 10 latents, beta_low 0.1, beta_high
10).  The number of latents is the model's (read from the encoder output's
static shape by the loss; given to the builder for the objective's `stage`,
which traces record and `train.reset_adam_at_stage` reads: the official
code trains each stage with its own, fresh Adam optimiser).  The stage and
the weights are computed from the traced step, so the stage changes inside
the compiled program.
"""

from __future__ import annotations

import functools
import itertools
from typing import Iterable, Mapping

import jax
import jax.numpy as jnp

from disentax import schedules
from disentax.models import VAEOutput
from disentax.objectives import OBJECTIVES
from disentax.objectives.base import (Objective, check_reconstruction,
                                      check_steps,
                                      gaussian_kl, hyperparameter_grid,
                                      reconstruction_loss)


def cascade_stage(step: jax.Array, stage_steps: int,
                  num_latents: int) -> jax.Array:
  """min(step // stage_steps, num_latents - 1), int32."""
  return schedules.stage_index_every(step, stage_steps,
                                     num_latents).astype(jnp.int32)


def cascade_weights(step: jax.Array, stage_steps: int, num_latents: int,
                    beta_low: jax.Array, beta_high: jax.Array) -> jax.Array:
  """Per-latent KL weights [num_latents]: beta_low on latents 0..stage,
  beta_high on the rest."""
  stage = cascade_stage(step, stage_steps, num_latents)
  opened = jnp.arange(num_latents) <= stage
  return jnp.where(opened, jnp.asarray(beta_low, jnp.float32),
                   jnp.asarray(beta_high, jnp.float32))


def cascade_vae_loss(output: VAEOutput, x: jax.Array,
                     hparams: Mapping[str, jax.Array], step: jax.Array,
                     aux: None = None, *, stage_steps: int,
                     reconstruction: str = "bernoulli"
                     ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Batch mean of recon + sum_j w_j(step) KL_j."""
  del aux
  num_latents = output.mean.shape[-1]
  recon = reconstruction_loss(output.logits, x, reconstruction).mean()
  kl_per_latent = gaussian_kl(output.mean, output.logvar).mean(axis=0)  # [d]
  weights = cascade_weights(step, stage_steps, num_latents,
                            hparams["beta_low"], hparams["beta_high"])
  stage = cascade_stage(step, stage_steps, num_latents)
  opened = jnp.arange(num_latents) <= stage
  weighted_kl = jnp.sum(weights * kl_per_latent)
  loss = recon + weighted_kl
  return loss, {"loss": loss, "recon": recon, "kl": kl_per_latent.sum(),
                "weighted_kl": weighted_kl,
                "kl_opened": jnp.sum(jnp.where(opened, kl_per_latent, 0.0)),
                "stage": stage.astype(jnp.float32)}


@OBJECTIVES.register("cascade_vae_c")
def cascade_vae_c(beta_low: float | Iterable[float] = 0.1,
                  beta_high: float | Iterable[float] = 10.0,
                  stage_steps: int = 20_000,
                  reconstruction: str = "bernoulli", *,
                  num_latents: int) -> Objective:
  """`beta_low` (opened latents) and `beta_high` (the others): one value or a
  grid each (each > 0, and every beta_low <= every beta_high it is paired
  with); `stage_steps`: steps per stage (>= 1).  Defaults: the official
  code's.  `num_latents` (the model's, given by the experiment) sets the
  last stage."""
  stage_steps = check_steps("stage_steps", stage_steps)
  reconstruction = check_reconstruction(reconstruction)
  lows = hyperparameter_grid("beta_low", beta_low, positive=True)
  highs = hyperparameter_grid("beta_high", beta_high, positive=True)
  inverted = [(lo, hi) for lo, hi in itertools.product(lows, highs) if lo > hi]
  if inverted:
    raise ValueError(
        f"config.objective.beta_low={lows}, beta_high={highs}: (beta_low, "
        f"beta_high) pair(s) {inverted} not allowed; beta_low (the weight of "
        "opened latents) must be <= beta_high")
  return Objective(
      name="cascade_vae_c", reconstruction=reconstruction,
      loss=functools.partial(cascade_vae_loss, stage_steps=stage_steps,
                             reconstruction=reconstruction),
      hyperparameters={"beta_low": lows, "beta_high": highs},
      per_example_mean=True,
      stage=functools.partial(cascade_stage, stage_steps=stage_steps,
                              num_latents=num_latents))
