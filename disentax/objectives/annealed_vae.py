"""AnnealedVAE (Burgess et al. 2018): recon + gamma * |KL - C(step)|.

The capacity C grows linearly from 0 to `c_max` over `iteration_threshold`
steps and then stays there: C = min(c_max, c_max * step / iteration_threshold)
(dlib-google's AnnealedVAE).  KL is the batch mean of the KL summed over
latents, as in beta-VAE.  `c_max` (and `gamma`) are per-member
hyperparameters; `iteration_threshold` is shared by every member.  C is
computed from the traced step, so it changes inside the compiled program.
"""

from __future__ import annotations

import functools
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


def annealed_capacity(step: jax.Array, c_max: jax.Array,
                      iteration_threshold: int) -> jax.Array:
  """C = min(c_max, c_max * step / iteration_threshold); `c_max` and `step`
  may be traced."""
  fraction = schedules.linear(step, 0.0, 1.0, 0, iteration_threshold)
  return jnp.asarray(c_max, jnp.float32) * fraction


def annealed_vae_loss(output: VAEOutput, x: jax.Array,
                      hparams: Mapping[str, jax.Array], step: jax.Array,
                      aux: None = None, *, iteration_threshold: int,
                      reconstruction: str = "bernoulli"
                      ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Batch mean recon + gamma * |batch mean KL - C(step)|."""
  del aux
  recon = reconstruction_loss(output.logits, x, reconstruction).mean()
  kl = gaussian_kl(output.mean, output.logvar).sum(axis=1).mean()
  capacity = annealed_capacity(step, hparams["c_max"], iteration_threshold)
  gap = jnp.abs(kl - capacity)
  loss = recon + hparams["gamma"] * gap
  return loss, {"loss": loss, "recon": recon, "kl": kl,
                "capacity": capacity, "kl_capacity_gap": gap}


@OBJECTIVES.register("annealed_vae")
def annealed_vae(c_max: float | Iterable[float] = 5.0,
                 gamma: float | Iterable[float] = 1000.0,
                 iteration_threshold: int = 100_000,
                 reconstruction: str = "bernoulli") -> Objective:
  """`c_max`: the final capacity in nats, one value or a grid (each > 0);
  `gamma`: the weight of |KL - C|, one value or a grid (each > 0);
  `iteration_threshold`: steps over which C rises from 0 to c_max (>= 1).
  Defaults: gamma and iteration_threshold of dlib-google, c_max of the DEFT
  journal's Table 3 (dSprites)."""
  reconstruction = check_reconstruction(reconstruction)
  return Objective(
      name="annealed_vae", reconstruction=reconstruction,
      loss=functools.partial(
          annealed_vae_loss,
          iteration_threshold=check_steps("iteration_threshold",
                                          iteration_threshold),
          reconstruction=reconstruction),
      hyperparameters={
          "c_max": hyperparameter_grid("c_max", c_max, positive=True),
          "gamma": hyperparameter_grid("gamma", gamma, positive=True)})
