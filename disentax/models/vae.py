"""A VAE = a Gaussian encoder, the reparameterisation, and a decoder.

An objective may steer the forward pass per step with a *control* (computed
from the member's hyperparameters and the traced step, so it is data, never a
recompile).  The plain VAE understands a `LatentGate`: which latents are in
use (the others output exactly zero: mean 0, log-variance 0, z 0) and how
strongly the gradient flowing back into each latent's encoder outputs is
scaled.  DEFT's stages are such gates; models with other controls (DeVAE's
layer index) define their own.
"""

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
  layer: jax.Array | None = None  # the latent layer decoded (DeVAE), scalar


class LatentGate(NamedTuple):
  keep: jax.Array        # [d] 1.0: latent in use; 0.0: it outputs zeros
  grad_scale: jax.Array  # [d] factor on the gradient into its encoder outputs


@jax.custom_vjp
def scale_gradient(x: jax.Array, scale: jax.Array) -> jax.Array:
  """Identity forward; the cotangent is multiplied by `scale` (broadcast
  over the last axis) on the way back.  `scale` gets no gradient."""
  return x


def _scale_gradient_fwd(x, scale):
  return x, scale


def _scale_gradient_bwd(scale, cotangent):
  return cotangent * scale, jnp.zeros_like(scale)


scale_gradient.defvjp(_scale_gradient_fwd, _scale_gradient_bwd)


def gate_posterior(mean: jax.Array, logvar: jax.Array,
                   gate: LatentGate | None) -> tuple[jax.Array, jax.Array]:
  """Applies a LatentGate to the encoder outputs (no gate: unchanged)."""
  if gate is None:
    return mean, logvar
  keep = gate.keep.astype(mean.dtype)
  return (scale_gradient(mean, gate.grad_scale) * keep,
          scale_gradient(logvar, gate.grad_scale) * keep)


def check_noise_correlation(correlation: float) -> float:
  """s must be a number in [0, 1) (at 1 the covariance is singular)."""
  if isinstance(correlation, bool) or not isinstance(
      correlation, (int, float)) or not math.isfinite(correlation) or not (
          0.0 <= correlation < 1.0):
    raise ValueError(f"noise_correlation={correlation!r}; must be a number "
                     "in [0, 1)")
  return float(correlation)


class BatchRows(NamedTuple):
  """In place of a model's noise key: the key of a whole batch of
  `batch_size` examples, of which this call sees rows `start` onwards.  The
  model then draws exactly those rows' noise of the whole batch, so a batch
  processed in slices (`train.micro_batches`) gets the same noise as in one
  piece."""
  key: jax.Array
  start: jax.Array  # int scalar, may be traced
  batch_size: int


def reparameterisation_noise(rng: jax.Array | BatchRows,
                             shape: tuple[int, ...], dtype=jnp.float32,
                             correlation: float = 0.0) -> jax.Array:
  """eps ~ N(0, (1 - s) I + s 11^T) over the last axis, i.i.d. elsewhere.

  s = 0 is exactly the standard `jax.random.normal(rng, shape)`.  For s > 0,
  eps = sqrt(1 - s) n + sqrt(s) c 1 with n that same standard draw and c one
  N(0, 1) scalar per example (from fold_in(rng, 1)), shared by all latents:
  Cov = (1 - s) I + s 11^T (split-encoder paper, 5.1; ablation s = 0.9).
  `rng` may be `BatchRows`: the rows `shape[0]` from `start` of the whole
  batch's draw.
  """
  if isinstance(rng, BatchRows):
    whole = reparameterisation_noise(rng.key, (rng.batch_size, *shape[1:]),
                                     dtype, correlation)
    return jax.lax.dynamic_slice_in_dim(whole, rng.start, shape[0])
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

  def encode(self, x: jax.Array, control: LatentGate | None = None
             ) -> tuple[jax.Array, jax.Array]:
    return gate_posterior(*self.encoder(x), control)

  def decode(self, z: jax.Array, control: LatentGate | None = None
             ) -> jax.Array:
    del control  # the gate acts on the encoder outputs
    return self.decoder(z)

  def __call__(self, x: jax.Array, rng: jax.Array,
               control: LatentGate | None = None) -> VAEOutput:
    mean, logvar = self.encode(x, control)
    noise = reparameterisation_noise(rng, mean.shape, mean.dtype,
                                     self.noise_correlation)
    z = mean + jnp.exp(0.5 * logvar) * noise
    if control is not None:
      z = z * control.keep.astype(z.dtype)
    return VAEOutput(mean, logvar, z, self.decoder(z))
