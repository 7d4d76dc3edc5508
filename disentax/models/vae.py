"""A VAE = a Gaussian encoder, the reparameterisation, and a decoder."""

from __future__ import annotations

import math
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp


class VAEOutput(NamedTuple):
  mean: jax.Array     # [b, d] encoder mean (the representation evaluated)
  logvar: jax.Array   # [b, d] encoder log-variance
  z: jax.Array        # [b, d] reparameterised sample
  logits: jax.Array   # [b, H, W, C] decoder output for z


def check_noise_correlation(correlation: float) -> float:
  """s must be a number in [0, 1) (at 1 the covariance is singular)."""
  if isinstance(correlation, bool) or not isinstance(
      correlation, (int, float)) or not math.isfinite(correlation) or not (
          0.0 <= correlation < 1.0):
    raise ValueError(f"noise_correlation={correlation!r}; must be a number "
                     "in [0, 1)")
  return float(correlation)


def reparameterisation_noise(rng: jax.Array, shape: tuple[int, ...],
                             dtype=jnp.float32,
                             correlation: float = 0.0) -> jax.Array:
  """eps ~ N(0, (1 - s) I + s 11^T) over the last axis, i.i.d. elsewhere.

  s = 0 is exactly the standard `jax.random.normal(rng, shape)`.  For s > 0,
  eps = sqrt(1 - s) n + sqrt(s) c 1 with n that same standard draw and c one
  N(0, 1) scalar per example (from fold_in(rng, 1)), shared by all latents:
  Cov = (1 - s) I + s 11^T (split-encoder paper, 5.1; ablation s = 0.9).
  """
  correlation = check_noise_correlation(correlation)
  noise = jax.random.normal(rng, shape, dtype)
  if correlation == 0.0:
    return noise
  common = jax.random.normal(jax.random.fold_in(rng, 1), (*shape[:-1], 1),
                             dtype)
  return (math.sqrt(1.0 - correlation) * noise
          + math.sqrt(correlation) * common)


class VAE(nn.Module):
  """Any encoder (x -> mean, logvar) with any decoder (z -> logits).

  `noise_correlation` s: the reparameterisation noise is N(0, (1-s)I +
  s 11^T) across latents (0: the standard independent noise)."""
  encoder: nn.Module
  decoder: nn.Module
  noise_correlation: float = 0.0

  def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    return self.encoder(x)

  def decode(self, z: jax.Array) -> jax.Array:
    return self.decoder(z)

  def __call__(self, x: jax.Array, rng: jax.Array) -> VAEOutput:
    mean, logvar = self.encoder(x)
    noise = reparameterisation_noise(rng, mean.shape, mean.dtype,
                                     self.noise_correlation)
    z = mean + jnp.exp(0.5 * logvar) * noise
    return VAEOutput(mean, logvar, z, self.decoder(z))
