"""The standard convolutional VAE of disentanglement_lib (Locatello et al.).

Encoder: conv 32, 32, 64, 64 (stride 2; kernels 4,4,2,2 in dlib-google, 4,4,4,4
in the beta-VAE/DEFT papers), dense 256, Gaussian heads of size num_latents.
Decoder: dense 256, dense to (size/16)^2 x 64, four 2x upsamplings
64, 32, 32, C -> Bernoulli logits.  ReLU throughout.
"""

from __future__ import annotations

from typing import Sequence

import chex
import flax.linen as nn
import jax

from disentax.models import MODELS
from disentax.models.upsample import UPSAMPLINGS, Upsample2x
from disentax.models.vae import VAE

ENCODER_CHANNELS = (32, 32, 64, 64)
DECODER_CHANNELS = (64, 32, 32)  # then the image channels
DOWNSAMPLING = 2 ** len(ENCODER_CHANNELS)


def check_image_shape(observation_shape: Sequence[int]) -> None:
  """The four stride-2 stages need sides that are positive multiples of 16."""
  height, width, _ = observation_shape
  if height != width or height % DOWNSAMPLING or height < DOWNSAMPLING:
    raise ValueError(
        f"image size {height}x{width}: the conv architecture needs square "
        f"images whose side is a positive multiple of {DOWNSAMPLING} "
        "(e.g. 16, 32 or 64)")


class ConvEncoder(nn.Module):
  """Images [b, H, W, C] -> (mean, log-variance) [b, num_latents]."""
  num_latents: int
  kernel_sizes: Sequence[int] = (4, 4, 2, 2)

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    batch = x.shape[0]
    for channels, k in zip(ENCODER_CHANNELS, self.kernel_sizes):
      x = nn.relu(nn.Conv(channels, (k, k), strides=(2, 2), padding="SAME")(x))
    x = nn.relu(nn.Dense(256)(x.reshape(batch, -1)))
    mean = nn.Dense(self.num_latents, name="mean")(x)
    logvar = nn.Dense(self.num_latents, name="logvar")(x)
    chex.assert_shape([mean, logvar], (batch, self.num_latents))
    return mean, logvar


class DeconvDecoder(nn.Module):
  """Latents [b, num_latents] -> logits [b, *observation_shape]."""
  observation_shape: tuple[int, int, int]
  upsampling: str = "transpose"

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    height, width, channels = self.observation_shape
    side = height // DOWNSAMPLING
    x = nn.relu(nn.Dense(256)(z))
    x = nn.relu(nn.Dense(side * side * 64)(x))
    x = x.reshape(z.shape[0], side, side, 64)
    for features in DECODER_CHANNELS:
      x = nn.relu(Upsample2x(features, formulation=self.upsampling)(x))
    logits = Upsample2x(channels, formulation=self.upsampling)(x)
    chex.assert_shape(logits, (z.shape[0], height, width, channels))
    return logits


@MODELS.register("conv_vae")
def conv_vae(*, observation_shape: tuple[int, int, int], num_latents: int = 10,
             encoder_kernel_sizes: Sequence[int] = (4, 4, 2, 2),
             upsampling: str = "subpixel") -> VAE:
  """The standard architecture; `encoder_kernel_sizes` (4, 4, 2, 2) is
  dlib-google's, (4, 4, 4, 4) the beta-VAE/DEFT papers'.  `upsampling`
  'subpixel' computes the reference transposed convolutions exactly (same
  parameters), only faster to differentiate on CPU; see models/upsample.py."""
  check_image_shape(observation_shape)
  if num_latents < 1:
    raise ValueError(f"num_latents={num_latents}; must be >= 1")
  if len(encoder_kernel_sizes) != len(ENCODER_CHANNELS) or min(
      encoder_kernel_sizes) < 1:
    raise ValueError(
        f"encoder_kernel_sizes={tuple(encoder_kernel_sizes)}; need "
        f"{len(ENCODER_CHANNELS)} positive sizes, one per conv layer")
  if upsampling not in UPSAMPLINGS:
    raise ValueError(f"upsampling={upsampling!r}; allowed: {UPSAMPLINGS}")
  return VAE(ConvEncoder(num_latents, tuple(encoder_kernel_sizes)),
             DeconvDecoder(tuple(observation_shape), upsampling))
