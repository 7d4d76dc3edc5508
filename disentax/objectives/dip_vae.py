"""DIP-VAE-I and DIP-VAE-II (Kumar et al. 2018): the VAE loss plus a penalty
that moves a covariance of the aggregate posterior towards the identity.

  loss = recon + KL + lambda_od * sum_{i != j} Cov_ij^2
                    + lambda_d  * sum_i (Cov_ii - 1)^2,
  lambda_d = lambda_d_factor * lambda_od

  DIP-VAE-I:  Cov = Cov_batch(mu)                           (factor 10)
  DIP-VAE-II: Cov = mean_batch(diag(exp(logvar))) + Cov_batch(mu)  (factor 1)

As in dlib-google, Cov_batch is the biased batch covariance (divided by the
batch size) and the regulariser is added to the batch-mean loss.  The two
objectives share all code; only the covariance and the default factor
differ.
"""

from __future__ import annotations

import functools
from typing import Iterable, Mapping

import jax
import jax.numpy as jnp

from disentax.models import VAEOutput
from disentax.objectives import OBJECTIVES
from disentax.objectives.base import (Objective, check_reconstruction,
                                      gaussian_kl, hyperparameter_grid,
                                      reconstruction_loss)

DIP_KINDS = ("i", "ii")


def dip_covariance(mean: jax.Array, logvar: jax.Array, kind: str) -> jax.Array:
  """[d, d] covariance that DIP-VAE-`kind` pushes towards I."""
  centred = mean - mean.mean(axis=0, keepdims=True)
  cov = centred.T @ centred / mean.shape[0]  # biased, as dlib-google
  if kind == "i":
    return cov
  if kind == "ii":
    return cov + jnp.diag(jnp.exp(logvar).mean(axis=0))
  raise ValueError(f"DIP-VAE kind {kind!r}; allowed: {DIP_KINDS}")


def dip_terms(cov: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(sum of squared off-diagonal entries, sum of (diagonal - 1)^2)."""
  diag = jnp.diagonal(cov)
  off_diagonal = jnp.where(jnp.eye(cov.shape[0], dtype=bool), 0.0, cov)
  return jnp.sum(jnp.square(off_diagonal)), jnp.sum(jnp.square(diag - 1.0))


def dip_vae_loss(output: VAEOutput, x: jax.Array,
                 hparams: Mapping[str, jax.Array], step: jax.Array,
                 aux: None = None, *, kind: str,
                 reconstruction: str = "bernoulli"
                 ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Batch mean recon + KL, plus the DIP regulariser of this batch."""
  del step, aux
  recon = reconstruction_loss(output.logits, x, reconstruction).mean()
  kl = gaussian_kl(output.mean, output.logvar).sum(axis=1).mean()
  off_diagonal, diagonal = dip_terms(
      dip_covariance(output.mean, output.logvar, kind))
  lambda_od = hparams["lambda_od"]
  lambda_d = hparams["lambda_d_factor"] * lambda_od
  regulariser = lambda_od * off_diagonal + lambda_d * diagonal
  loss = recon + kl + regulariser
  return loss, {"loss": loss, "recon": recon, "kl": kl,
                "dip_regulariser": regulariser,
                "dip_off_diagonal": off_diagonal, "dip_diagonal": diagonal}


def _dip_vae(kind: str, lambda_od, lambda_d_factor,
             reconstruction: str) -> Objective:
  reconstruction = check_reconstruction(reconstruction)
  return Objective(
      name=f"dip_vae_{kind}", reconstruction=reconstruction,
      loss=functools.partial(dip_vae_loss, kind=kind,
                             reconstruction=reconstruction),
      hyperparameters={
          "lambda_od": hyperparameter_grid("lambda_od", lambda_od,
                                           non_negative=True),
          "lambda_d_factor": hyperparameter_grid(
              "lambda_d_factor", lambda_d_factor, non_negative=True)})


@OBJECTIVES.register("dip_vae_i")
def dip_vae_i(lambda_od: float | Iterable[float] = 1.0,
              lambda_d_factor: float | Iterable[float] = 10.0,
              reconstruction: str = "bernoulli") -> Objective:
  """DIP-VAE-I, Cov = Cov(mu).  `lambda_od`, `lambda_d_factor`: one value
  or a grid each (each >= 0); lambda_d = lambda_d_factor * lambda_od."""
  return _dip_vae("i", lambda_od, lambda_d_factor, reconstruction)


@OBJECTIVES.register("dip_vae_ii")
def dip_vae_ii(lambda_od: float | Iterable[float] = 1.0,
               lambda_d_factor: float | Iterable[float] = 1.0,
               reconstruction: str = "bernoulli") -> Objective:
  """DIP-VAE-II, Cov = E[diag(exp(logvar))] + Cov(mu).  Arguments as
  dip_vae_i."""
  return _dip_vae("ii", lambda_od, lambda_d_factor, reconstruction)
