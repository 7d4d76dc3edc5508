"""The fully connected VAE of the beta-TCVAE paper on dSprites (Chen et al.
2018, section 6; beta-tcvae-ref): encoder 1200-1200 ReLU, decoder
1200-1200-1200 tanh, Bernoulli logits per pixel."""

from __future__ import annotations

from typing import Sequence

import chex
import flax.linen as nn
import jax

from disentax.models import MODELS
from disentax.models.vae import VAE

ENCODER_WIDTHS = (1200, 1200)
DECODER_WIDTHS = (1200, 1200, 1200)


class FCEncoder(nn.Module):
  num_latents: int
  widths: Sequence[int] = ENCODER_WIDTHS

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    h = x.reshape(x.shape[0], -1)
    for width in self.widths:
      h = nn.relu(nn.Dense(width)(h))
    mean = nn.Dense(self.num_latents, name="mean")(h)
    logvar = nn.Dense(self.num_latents, name="logvar")(h)
    chex.assert_shape([mean, logvar], (x.shape[0], self.num_latents))
    return mean, logvar


class FCDecoder(nn.Module):
  observation_shape: tuple[int, int, int]
  widths: Sequence[int] = DECODER_WIDTHS

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    h = z
    for width in self.widths:
      h = nn.tanh(nn.Dense(width)(h))
    size = 1
    for side in self.observation_shape:
      size *= side
    return nn.Dense(size)(h).reshape(z.shape[0], *self.observation_shape)


@MODELS.register("fc_vae")
def fc_vae(*, observation_shape: tuple[int, int, int],
           num_latents: int = 10) -> VAE:
  """The beta-TCVAE paper's dSprites architecture for any image size."""
  if isinstance(num_latents, bool) or not isinstance(num_latents, int) or (
      num_latents < 1):
    raise ValueError(f"num_latents={num_latents!r}; must be an integer >= 1")
  return VAE(FCEncoder(num_latents), FCDecoder(tuple(observation_shape)))
