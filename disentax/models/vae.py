"""A VAE = a Gaussian encoder, the reparameterisation, and a decoder."""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp


class VAEOutput(NamedTuple):
  mean: jax.Array     # [b, d] encoder mean (the representation evaluated)
  logvar: jax.Array   # [b, d] encoder log-variance
  z: jax.Array        # [b, d] reparameterised sample
  logits: jax.Array   # [b, H, W, C] decoder output for z


class VAE(nn.Module):
  """Any encoder (x -> mean, logvar) with any decoder (z -> logits)."""
  encoder: nn.Module
  decoder: nn.Module

  def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    return self.encoder(x)

  def decode(self, z: jax.Array) -> jax.Array:
    return self.decoder(z)

  def __call__(self, x: jax.Array, rng: jax.Array) -> VAEOutput:
    mean, logvar = self.encoder(x)
    noise = jax.random.normal(rng, mean.shape, mean.dtype)
    z = mean + jnp.exp(0.5 * logvar) * noise
    return VAEOutput(mean, logvar, z, self.decoder(z))
