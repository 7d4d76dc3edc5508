"""The standard convolutional VAE of disentanglement_lib (Locatello et al.).

Encoder: conv 32, 32, 64, 64 (stride 2; kernels 4,4,2,2 in dlib-google, 4,4,4,4
in the beta-VAE/DEFT papers), dense 256, Gaussian heads of size num_latents.
Decoder: dense 256, dense to (size/16)^2 x 64, four 2x upsamplings
64, 32, 32, C -> Bernoulli logits.  ReLU throughout.

Encoder variants (`encoder=`), from the split-encoder paper ("An Information
Theoretic Perspective on Disentangled Representation Learning", ICLR 2020
submission, sections 3.2 and 5.1):

  standard  the encoder above (its parameter tree is unchanged).
  split     shared trunk conv 32, 32, 64; then per latent, with no parameter
            shared between latents, its own conv (split_channels, stride 2,
            the 4th kernel size), dense split_hidden and dense 2 (its mean
            and log-variance); outputs concatenated.  Section 3.2 says "one
            convolution layer and two fully-connected layers for each factor"
            and "without increasing the depth of encoder", but gives no
            widths: we split the standard encoder's last conv and dense layer
            at their standard widths (64, 256) by default, so the depth
            (4 conv + 2 dense) is the standard one.  All latents' sub-networks
            run as one vmapped (batched) computation.
  fractional
            DEFT's fractional encoder (DEFT journal, Table 1 "lite" and
            section 4.2): num_groups independent sub-encoders, each conv 8,
            8, 16, 16 (stride 2), dense 64, Gaussian heads of
            num_latents / num_groups latents; no parameter is shared between
            groups and the decoder sees their outputs concatenated (latent j
            belongs to group j // K).  All groups are one computation,
            compiled once for any G, never a Python loop (nn.vmap of one
            sub-encoder, each parameter stacked over groups on axis 0).
  sharing   the "sharing-parameter encoder" ablation of section 5.1: "the
            features are straightly flattened into representations".  The
            four standard convs, flattened, go straight into the mean and
            log-variance heads (no dense-256 layer).  A last conv whose
            flattened output is the 2 x num_latents representation would have
            to span the whole final map, which is this same linear map.

The layers are flax's own (nn.Conv, nn.ConvTranspose, nn.vmap).  The modules
take them as fields, so the builders can swap in other computations of the
same functions with the same parameters (`model.kernels`, models/kernels).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import chex
import flax.linen as nn
import jax

from disentax.models import MODELS
from disentax.models import kernels as kernel_lib
from disentax.models.vae import (VAE, GroupedEncoder, LatentProjection,
                                 check_noise_correlation, check_projection,
                                 check_std_parameterization, scale_stacked)

ENCODER_CHANNELS = (32, 32, 64, 64)
DECODER_CHANNELS = (64, 32, 32)  # then the image channels
DOWNSAMPLING = 2 ** len(ENCODER_CHANNELS)
ENCODERS = ("standard", "split", "sharing", "fractional")
LITE_CHANNELS = (8, 8, 16, 16)  # DEFT journal Table 1, "Lite Encoder"
LITE_HIDDEN = 64
# The fractional encoder's vmapped sub-encoders (the parameters stacked over
# groups on axis 0).
GROUPS_MODULE = "groups"
# The decoder's 2x upsampling: 4x4 stride-2 'SAME' transposed convolutions.
UPSAMPLING_KERNEL = (4, 4)


def check_image_shape(observation_shape: Sequence[int]) -> None:
  """The four stride-2 stages need sides that are positive multiples of 16."""
  height, width, _ = observation_shape
  if height != width or height % DOWNSAMPLING or height < DOWNSAMPLING:
    raise ValueError(
        f"image size {height}x{width}: the conv architecture needs square "
        f"images whose side is a positive multiple of {DOWNSAMPLING} "
        "(e.g. 16, 32 or 64)")


def conv_stack(x: jax.Array, channels: Sequence[int],
               kernel_sizes: Sequence[int],
               conv: type[nn.Conv] = nn.Conv) -> jax.Array:
  """Stride-2 'SAME' ReLU convolutions of square kernels; call inside a
  compact module (the layers become that module's Conv_0, Conv_1, ...)."""
  for i, (features, k) in enumerate(zip(channels, kernel_sizes)):
    x = nn.relu(conv(features, (k, k), strides=(2, 2), padding="SAME",
                     name=f"Conv_{i}")(x))
  return x


class ConvEncoder(nn.Module):
  """Images [b, H, W, C] -> (mean, log-variance) [b, num_latents].

  `hidden` 256 is the standard encoder; `hidden` 0 drops the dense layer, so
  the conv features flatten straight into the Gaussian heads (the split-encoder
  paper's "sharing-parameter" ablation)."""
  num_latents: int
  kernel_sizes: Sequence[int] = (4, 4, 2, 2)
  hidden: int = 256
  conv: type[nn.Conv] = nn.Conv  # the stride-2 convolution layer

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    batch = x.shape[0]
    x = conv_stack(x, ENCODER_CHANNELS, self.kernel_sizes,
                   self.conv).reshape(batch, -1)
    if self.hidden:
      x = nn.relu(nn.Dense(self.hidden)(x))
    mean = nn.Dense(self.num_latents, name="mean")(x)
    logvar = nn.Dense(self.num_latents, name="logvar")(x)
    chex.assert_shape([mean, logvar], (batch, self.num_latents))
    return mean, logvar


class LatentHead(nn.Module):
  """One latent's own sub-network of the split encoder: conv (stride 2),
  dense, dense 2 -> [b, 2] (mean, log-variance)."""
  channels: int
  kernel_size: int
  hidden: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel_size
    x = nn.relu(nn.Conv(self.channels, (k, k), strides=(2, 2),
                        padding="SAME")(x))
    x = nn.relu(nn.Dense(self.hidden)(x.reshape(x.shape[0], -1)))
    return nn.Dense(2)(x)


class SplitEncoder(nn.Module):
  """Shared conv trunk, then one unshared LatentHead per latent, all of them
  one batched computation: nn.vmap stacks each head parameter over latents
  (leading axis num_latents), the input is shared (in_axes None)."""
  num_latents: int
  kernel_sizes: Sequence[int] = (4, 4, 2, 2)
  head_channels: int = ENCODER_CHANNELS[-1]
  head_hidden: int = 256
  conv: type[nn.Conv] = nn.Conv  # the trunk's stride-2 convolution layer

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    batch = x.shape[0]
    x = conv_stack(x, ENCODER_CHANNELS[:-1], self.kernel_sizes[:-1],
                   self.conv)
    heads = nn.vmap(LatentHead, variable_axes={"params": 0},
                    split_rngs={"params": True}, in_axes=None, out_axes=1,
                    axis_size=self.num_latents)
    out = heads(self.head_channels, self.kernel_sizes[-1], self.head_hidden,
                name="latents")(x)
    chex.assert_shape(out, (batch, self.num_latents, 2))
    return out[..., 0], out[..., 1]


class LiteEncoder(nn.Module):
  """One DEFT sub-encoder: conv 8, 8, 16, 16 (stride 2), dense 64, Gaussian
  heads of `num_latents` (DEFT journal Table 1)."""
  num_latents: int
  kernel_sizes: Sequence[int] = (4, 4, 4, 4)

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    x = conv_stack(x, LITE_CHANNELS, self.kernel_sizes)
    x = nn.relu(nn.Dense(LITE_HIDDEN)(x.reshape(x.shape[0], -1)))
    return (nn.Dense(self.num_latents, name="mean")(x),
            nn.Dense(self.num_latents, name="logvar")(x))


class FractionalEncoder(GroupedEncoder):
  """`num_groups` LiteEncoders of num_latents / num_groups latents each, as
  one batched computation: nn.vmap stacks each sub-encoder parameter over
  the groups (leading axis num_groups, the module named `groups`), the
  images are shared (in_axes None).  `call_groups(groups, x)` applies the
  vmapped groups: `groups(x)`, or the same function of the same parameters
  computed another way (models/kernels)."""
  num_latents: int
  num_groups: int
  kernel_sizes: Sequence[int] = (4, 4, 4, 4)
  call_groups: Callable[[nn.Module, jax.Array],
                        tuple[jax.Array, jax.Array]] = kernel_lib.call_module

  @property
  def parameter_groups(self) -> int:
    return self.num_groups

  def scale_parameter_groups(self, params: Any, scales: jax.Array) -> Any:
    return {**params,
            GROUPS_MODULE: scale_stacked(params[GROUPS_MODULE], scales)}

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    batch, per_group = x.shape[0], self.num_latents // self.num_groups
    groups = nn.vmap(LiteEncoder, variable_axes={"params": 0},
                     split_rngs={"params": True}, in_axes=None, out_axes=1,
                     axis_size=self.num_groups)
    groups = groups(per_group, self.kernel_sizes, name=GROUPS_MODULE)
    mean, logvar = self.call_groups(groups, x)
    chex.assert_shape([mean, logvar], (batch, self.num_groups, per_group))
    return (mean.reshape(batch, self.num_latents),
            logvar.reshape(batch, self.num_latents))


class DeconvDecoder(nn.Module):
  """Latents [b, num_latents] -> logits [b, *observation_shape]."""
  observation_shape: tuple[int, int, int]
  # The 2x upsampling layer (4x4 stride-2 'SAME' transposed convolutions).
  conv_transpose: type[nn.ConvTranspose] = nn.ConvTranspose

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    height, width, channels = self.observation_shape
    side = height // DOWNSAMPLING
    x = nn.relu(nn.Dense(256)(z))
    x = nn.relu(nn.Dense(side * side * 64)(x))
    x = x.reshape(z.shape[0], side, side, 64)

    def upsample(features: int, index: int) -> nn.Module:
      # Named Upsample2x_0 .. 3 in the parameter tree.
      return self.conv_transpose(features, UPSAMPLING_KERNEL, strides=(2, 2),
                                 padding="SAME", name=f"Upsample2x_{index}")

    for i, features in enumerate(DECODER_CHANNELS):
      x = nn.relu(upsample(features, i)(x))
    logits = upsample(channels, len(DECODER_CHANNELS))(x)
    chex.assert_shape(logits, (z.shape[0], height, width, channels))
    return logits


def check_architecture(observation_shape: Sequence[int], num_latents: int,
                       encoder_kernel_sizes: Sequence[int], kernels: str
                       ) -> tuple[tuple[int, ...], kernel_lib.Layers]:
  """Validates the options every conv architecture shares; returns the
  kernel sizes as a tuple and the layers `kernels` picks for this backend
  ('auto', 'reference' or 'fast'; models/kernels)."""
  check_image_shape(observation_shape)
  if isinstance(num_latents, bool) or not isinstance(num_latents, int) or (
      num_latents < 1):
    raise ValueError(f"num_latents={num_latents!r}; must be an integer >= 1")
  if len(encoder_kernel_sizes) != len(ENCODER_CHANNELS) or min(
      encoder_kernel_sizes) < 1:
    raise ValueError(
        f"encoder_kernel_sizes={tuple(encoder_kernel_sizes)}; need "
        f"{len(ENCODER_CHANNELS)} positive sizes, one per conv layer")
  return tuple(encoder_kernel_sizes), kernel_lib.layers(kernels)


@MODELS.register("conv_vae")
def conv_vae(*, observation_shape: tuple[int, int, int], num_latents: int = 10,
             encoder_kernel_sizes: Sequence[int] = (4, 4, 2, 2),
             encoder: str = "standard",
             noise_correlation: float = 0.0, split_channels: int = 64,
             split_hidden: int = 256, num_groups: int = 1,
             std_parameterization: str = "log_variance",
             latent_projection: str = "none", kernels: str = "auto") -> VAE:
  """The standard architecture; `encoder_kernel_sizes` (4, 4, 2, 2) is
  dlib-google's, (4, 4, 4, 4) the beta-VAE/DEFT papers'.

  `encoder`: 'standard', 'split', 'sharing' or 'fractional' (module
  docstring; `num_groups` is the fractional encoder's G, and num_latents
  must be a multiple of it); `split_channels` / `split_hidden`: widths of
  each latent's own conv and dense layer in the split encoder.
  `noise_correlation` s in [0, 1): reparameterisation noise N(0, (1-s)I +
  s 11^T) (split-encoder paper's ablation uses 0.9; 0 is the standard VAE).
  `std_parameterization`: 'log_variance' (the encoder's `logvar` head is
  log sigma^2) or 'softplus' (sigma = softplus(head), CascadeVAE's code;
  the head keeps its name and the model still returns the log-variance,
  models/vae.py `posterior_logvar`).
  `latent_projection`: 'none', or the fractional encoder's learnable
  projection of frozen sub-encoders' outputs ('logvar_shift' or
  'logvar_scale'; models.vae.LatentProjection), which DEFT's
  scaling='fork_frozen_projection' needs; 'none' keeps the parameter tree
  without it.

  `kernels`: how the layers are computed, never what: 'reference' (flax's
  own layers), 'fast' or 'auto' (models/kernels)."""
  if encoder not in ENCODERS:
    raise ValueError(f"encoder={encoder!r}; allowed: {ENCODERS}")
  noise_correlation = check_noise_correlation(noise_correlation)
  std_parameterization = check_std_parameterization(std_parameterization)
  latent_projection = check_projection(latent_projection)
  for name, value in (("split_channels", split_channels),
                      ("split_hidden", split_hidden),
                      ("num_groups", num_groups)):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"{name}={value!r}; must be an integer >= 1")
  kernel_sizes, layers = check_architecture(
      observation_shape, num_latents, encoder_kernel_sizes, kernels)
  if num_groups != 1 and encoder != "fractional":
    raise ValueError(f"num_groups={num_groups} needs encoder='fractional' "
                     f"(got encoder={encoder!r})")
  if latent_projection != "none" and encoder != "fractional":
    raise ValueError(
        f"latent_projection={latent_projection!r} projects the outputs of "
        f"frozen sub-encoders, so it needs encoder='fractional' (got "
        f"encoder={encoder!r})")
  if encoder == "fractional" and num_latents % num_groups:
    raise ValueError(
        f"num_latents={num_latents} is not a multiple of num_groups="
        f"{num_groups}; the fractional encoder gives every group the same "
        "number of latents K (num_latents = num_groups * K)")
  if encoder == "fractional":
    encoder_module = FractionalEncoder(num_latents, num_groups, kernel_sizes,
                                       layers.call_groups)
  elif encoder == "split":
    encoder_module = SplitEncoder(num_latents, kernel_sizes, split_channels,
                                  split_hidden, layers.conv)
  elif encoder == "sharing":
    encoder_module = ConvEncoder(num_latents, kernel_sizes, hidden=0,
                                 conv=layers.conv)
  else:
    encoder_module = ConvEncoder(num_latents, kernel_sizes, conv=layers.conv)
  projection = (None if latent_projection == "none"
                else LatentProjection(latent_projection))
  return VAE(encoder_module,
             DeconvDecoder(tuple(observation_shape), layers.conv_transpose),
             noise_correlation=noise_correlation,
             std_parameterization=std_parameterization, projection=projection)
