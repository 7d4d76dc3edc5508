"""The VAE (Kingma & Welling 2014): reconstruction + KL, the negative ELBO.

The baseline every disentanglement method is measured against (beta-VAE
at beta 1), with no hyperparameter to sweep: its members are seeds.
"""

from __future__ import annotations

import functools
from typing import Mapping

import jax

from disentax.models import VAEOutput
from disentax.objectives import OBJECTIVES
from disentax.objectives.base import (Metrics, Objective,
                                      check_reconstruction, elbo_loss)


def vae_loss(output: VAEOutput, x: jax.Array,
             hparams: Mapping[str, jax.Array], step: jax.Array,
             aux: None = None, *, reconstruction: str = "bernoulli"
             ) -> tuple[jax.Array, Metrics]:
  """Batch mean of recon + KL; no hyperparameter, schedule or state."""
  del hparams, step, aux
  return elbo_loss(output, x, 1.0, reconstruction)


@OBJECTIVES.register("vae")
def vae(reconstruction: str = "bernoulli") -> Objective:
  """`reconstruction`: the decoder likelihood, 'bernoulli' or 'gaussian'."""
  reconstruction = check_reconstruction(reconstruction)
  return Objective(
      name="vae", reconstruction=reconstruction,
      loss=functools.partial(vae_loss, reconstruction=reconstruction),
      hyperparameters={}, per_example_mean=True)
