"""The deterministic autoencoder (AE): the decoder reconstructs the
encoder's posterior mean, with no sampling noise and no KL term.

The baseline other libraries ship beside the VAE: what the architecture
learns from reconstruction alone.  Its control is a `LatentGate` that keeps
every latent and takes no noise (z = mean exactly), for training and for
the representation evaluation scores (the encoder mean, as for every VAE;
the log-variance head is unused and gets no gradient).  It needs a model
whose control is a `LatentGate` (conv_vae, fc_vae).  No hyperparameter to
sweep: its members are seeds.
"""

from __future__ import annotations

import functools
from typing import Mapping

import jax
import jax.numpy as jnp

from disentax.models import LatentGate, VAEOutput
from disentax.objectives import OBJECTIVES
from disentax.objectives.base import (Hparams, Metrics, Objective,
                                      StagedControl, check_reconstruction,
                                      reconstruction_loss)


def mean_gate(num_latents: int) -> LatentGate:
  """Every latent kept, its gradient unscaled, no reparameterisation
  noise: the model decodes z = mean."""
  ones = jnp.ones(num_latents, jnp.float32)
  return LatentGate(keep=ones, grad_scale=ones, sample=0.0)


def autoencoder_loss(output: VAEOutput, x: jax.Array,
                     hparams: Mapping[str, jax.Array], step: jax.Array,
                     aux: None = None, *, reconstruction: str = "bernoulli"
                     ) -> tuple[jax.Array, Metrics]:
  """Batch mean of the reconstruction of z (the posterior mean under the
  AE's gate); no KL term."""
  del hparams, step, aux
  recon = reconstruction_loss(output.logits, x, reconstruction).mean()
  return recon, {"loss": recon, "recon": recon}


@OBJECTIVES.register("autoencoder")
def autoencoder(reconstruction: str = "bernoulli", *,
                num_latents: int) -> Objective:
  """`reconstruction`: the decoder likelihood, 'bernoulli' or 'gaussian'."""
  reconstruction = check_reconstruction(reconstruction)

  def control(hparams: Hparams, step: jax.Array,
              key: jax.Array | None = None) -> LatentGate:
    del hparams, step, key
    return mean_gate(num_latents)

  return Objective(
      name="autoencoder", reconstruction=reconstruction,
      loss=functools.partial(autoencoder_loss,
                             reconstruction=reconstruction),
      hyperparameters={},
      control=StagedControl(
          for_step=control,
          representations=lambda hparams, step: {"": control(hparams, step)}),
      per_example_mean=True)
