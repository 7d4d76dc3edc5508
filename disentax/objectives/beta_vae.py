"""beta-VAE (Higgins et al. 2017): reconstruction + beta * KL."""

from __future__ import annotations

import functools
from typing import Iterable, Mapping

import jax

from disentax.models import VAEOutput
from disentax.objectives import OBJECTIVES
from disentax.objectives.base import (Objective, check_reconstruction,
                                      elbo_loss, hyperparameter_grid)


def beta_vae_loss(output: VAEOutput, x: jax.Array,
                  hparams: Mapping[str, jax.Array], step: jax.Array,
                  aux: None = None, *, reconstruction: str = "bernoulli"
                  ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Batch mean of recon + beta * KL; no schedule, no state."""
  del step, aux
  return elbo_loss(output, x, hparams["beta"], reconstruction)


@OBJECTIVES.register("beta_vae")
def beta_vae(beta: float | Iterable[float] = 1.0,
             reconstruction: str = "bernoulli") -> Objective:
  """`beta`: one value or the grid of values to sweep (each > 0)."""
  reconstruction = check_reconstruction(reconstruction)
  return Objective(
      name="beta_vae", reconstruction=reconstruction,
      loss=functools.partial(beta_vae_loss, reconstruction=reconstruction),
      hyperparameters={"beta": hyperparameter_grid("beta", beta, positive=True)},
      per_example_mean=True)
