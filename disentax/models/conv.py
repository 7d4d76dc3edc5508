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
            compiled once for any G, never a Python loop.
            `fractional_formulation` picks how that computation is written
            (same parameter tree, same function to float32 rounding; see
            FractionalEncoder): 'auto' (default) is 'sequential' on CPU and
            'vmap' elsewhere; 'vmap' lets jax.vmap batch the sub-encoder
            (grouped convolutions); 'stacked' writes the groups out as
            channel-stacked grouped convolutions and batched matmuls whose
            gradients avoid XLA:CPU's slow batch-grouped and base-dilated
            convolutions (about 10x faster than 'vmap' on CPU);
            'sequential' runs each group's ordinary convolutions one group
            after another in a lax.map, on chunks of the batch, recomputing
            each chunk's forward pass for its gradients (XLA:CPU's grouped
            convolutions are several times slower than the same groups as
            ordinary ones; the fastest on CPU, on par with or faster than a
            normal encoder of equal size up to G = 100);
            'block_diagonal' computes the grouped convolutions as ordinary
            ones with block-diagonal kernels (G times their arithmetic;
            competitive on CPU only for small G such as DEFT's 2).
  sharing   the "sharing-parameter encoder" ablation of section 5.1: "the
            features are straightly flattened into representations".  The
            four standard convs, flattened, go straight into the mean and
            log-variance heads (no dense-256 layer).  A last conv whose
            flattened output is the 2 x num_latents representation would have
            to span the whole final map, which is this same linear map.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from disentax.models import MODELS, s2d_pair, stride2
from disentax.models.stride2 import DOWNSAMPLINGS, Downsample2x
from disentax.models.upsample import UPSAMPLINGS, Upsample2x
from disentax.models.vae import VAE, check_noise_correlation

ENCODER_CHANNELS = (32, 32, 64, 64)
DECODER_CHANNELS = (64, 32, 32)  # then the image channels
DOWNSAMPLING = 2 ** len(ENCODER_CHANNELS)
ENCODERS = ("standard", "split", "sharing", "fractional")
LITE_CHANNELS = (8, 8, 16, 16)  # DEFT journal Table 1, "Lite Encoder"
LITE_HIDDEN = 64
FRACTIONAL_FORMULATIONS = ("vmap", "stacked", "sequential",
                           "block_diagonal")


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
               downsampling: str = "conv") -> jax.Array:
  """Stride-2 ReLU convolutions; call inside a compact module (the layers
  become that module's Conv_0, Conv_1, ..., with flax Conv's parameters
  whichever `downsampling` formulation computes them)."""
  for i, (features, k) in enumerate(zip(channels, kernel_sizes)):
    x = nn.relu(Downsample2x(features, k, downsampling, name=f"Conv_{i}")(x))
  return x


class ConvEncoder(nn.Module):
  """Images [b, H, W, C] -> (mean, log-variance) [b, num_latents].

  `hidden` 256 is the standard encoder; `hidden` 0 drops the dense layer, so
  the conv features flatten straight into the Gaussian heads (the split-encoder
  paper's "sharing-parameter" ablation)."""
  num_latents: int
  kernel_sizes: Sequence[int] = (4, 4, 2, 2)
  hidden: int = 256
  downsampling: str = "conv"

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    batch = x.shape[0]
    x = conv_stack(x, ENCODER_CHANNELS, self.kernel_sizes,
                   self.downsampling).reshape(batch, -1)
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
  downsampling: str = "conv"

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    batch = x.shape[0]
    x = conv_stack(x, ENCODER_CHANNELS[:-1], self.kernel_sizes[:-1],
                   self.downsampling)
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


def _grouped_kernel_grad(x: jax.Array, dy: jax.Array, kernel_size: int,
                         groups: int) -> jax.Array:
  """The kernel gradient of `grouped_conv`: HWIO [k, k, c_in, groups *
  c_out], from its input x [b, h, w, groups * c_in] and output cotangent
  dy [b, h', w', groups * c_out].  For each kernel offset (i, j), the
  strided input slice that offset multiplies is contracted with dy over
  batch and positions: k*k matmuls batched over the groups.

  jax differentiates a grouped convolution's kernel with a batch-grouped
  convolution, which XLA:CPU runs some 20-40x slower than the forward
  convolution; these k*k batched matmuls compute the same sums."""
  b, h, w, in_channels = x.shape
  _, out_h, out_w, out_channels = dy.shape
  pads = lax.padtype_to_pads((h, w), (kernel_size, kernel_size), (2, 2),
                             "SAME")
  padded = jnp.pad(x, ((0, 0), *pads, (0, 0)))
  padded = padded.reshape(*padded.shape[:3], groups, in_channels // groups)
  dy = dy.reshape(b, out_h, out_w, groups, out_channels // groups)
  taps = [jnp.einsum("bhwgc,bhwgo->cgo",
                     padded[:, i:i + 2 * out_h - 1:2, j:j + 2 * out_w - 1:2],
                     dy)
          for i in range(kernel_size) for j in range(kernel_size)]
  return jnp.stack(taps).reshape(kernel_size, kernel_size,
                                 in_channels // groups, out_channels)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def grouped_conv(x: jax.Array, kernel: jax.Array, groups: int) -> jax.Array:
  """A grouped stride-2 SAME convolution (x [b, h, w, groups * c_in],
  HWIO kernel [k, k, c_in, groups * c_out]) whose kernel gradient is
  `_grouped_kernel_grad` and whose input gradient, for 4x4 kernels on
  even sides, is the grouped transposed convolution by phase
  (`stride2.input_grad`); the forward pass, and other input gradients, are
  XLA's own."""
  return stride2.xla_strided_conv(x, kernel, groups)


def _grouped_conv_fwd(x: jax.Array, kernel: jax.Array, groups: int):
  return stride2.xla_strided_conv(x, kernel, groups), (x, kernel)


def _grouped_conv_bwd(groups: int, residuals, dy: jax.Array):
  x, kernel = residuals
  if kernel.shape[0] == 4 and stride2.even_sides(x):
    # The transposed convolution by phase, not the base-dilated one
    # autodiff emits (models/stride2.py).
    x_grad = stride2.input_grad(dy, kernel, groups)
  else:
    _, input_vjp = jax.vjp(
        lambda x: stride2.xla_strided_conv(x, kernel, groups), x)
    x_grad = input_vjp(dy)[0]
  return x_grad, _grouped_kernel_grad(x, dy, kernel.shape[0], groups)


grouped_conv.defvjp(_grouped_conv_fwd, _grouped_conv_bwd)


def block_diagonal(kernel: jax.Array) -> jax.Array:
  """Stacked kernels [G, k, k, c_in, c_out] -> one HWIO kernel [k, k,
  G * c_in, G * c_out] that applies kernel g to input channel group g only
  (zeros elsewhere): an ordinary convolution with it is the grouped one."""
  num_groups, k, _, in_channels, out_channels = kernel.shape
  eye = jnp.eye(num_groups, dtype=kernel.dtype)
  return jnp.einsum("gabio,gh->abgiho", kernel, eye).reshape(
      k, k, num_groups * in_channels, num_groups * out_channels)


def _first_conv_of_all_groups(params: Any, x: jax.Array) -> jax.Array:
  """The groups' first convolutions (and ReLU) on their shared input x [b,
  H, W, C] as one ordinary convolution with G*8 outputs, [b, h, w, G*8]
  (group-major channels)."""
  kernel, bias = params["Conv_0"]["kernel"], params["Conv_0"]["bias"]
  num_groups, k, _, in_channels, out_channels = kernel.shape
  kernel = kernel.transpose(1, 2, 3, 0, 4).reshape(
      k, k, in_channels, num_groups * out_channels)
  return nn.relu(stride2.strided_conv(x, kernel) + bias.reshape(-1))


def _dense_and_heads(params: Any, features: jax.Array
                     ) -> tuple[jax.Array, jax.Array]:
  """LiteEncoder's dense layer and Gaussian heads on flat features [..., b,
  f], the parameters carrying the same leading axes (...) as the features:
  (mean, log-variance) [..., b, K]."""
  def dense(name, x):
    layer = params[name]
    return (jnp.einsum("...bf,...fo->...bo", x, layer["kernel"])
            + layer["bias"][..., None, :])
  hidden = nn.relu(dense("Dense_0", features))
  return dense("mean", hidden), dense("logvar", hidden)


def stacked_lite_encoders(params: Any, x: jax.Array,
                          block_diagonal_convs: bool = False
                          ) -> tuple[jax.Array, jax.Array]:
  """The G LiteEncoders whose parameters `params` are stacked on a leading
  axis G (as nn.vmap stores them), applied to the shared images x [b, H, W,
  C]: (mean, log-variance) [b, G, K], the vmapped module's function.

  Activations keep the groups on the channel axis ([b, h, w, G*c], group
  major): the first convolution is one ordinary convolution with G*8
  outputs (its input is shared by the groups), the next ones are grouped
  convolutions (`grouped_conv`), or with `block_diagonal_convs` ordinary
  convolutions with `block_diagonal` kernels, and the dense layers are
  matmuls batched over g."""
  num_groups = params["Conv_0"]["kernel"].shape[0]
  batch = x.shape[0]
  x = _first_conv_of_all_groups(params, x)
  for i in range(1, len(LITE_CHANNELS)):
    kernel, bias = params[f"Conv_{i}"]["kernel"], params[f"Conv_{i}"]["bias"]
    _, k, _, in_channels, out_channels = kernel.shape
    if block_diagonal_convs:
      x = stride2.xla_strided_conv(x, block_diagonal(kernel))
    else:
      kernel = kernel.transpose(1, 2, 3, 0, 4).reshape(
          k, k, in_channels, num_groups * out_channels)
      x = grouped_conv(x, kernel, num_groups)
    x = nn.relu(x + bias.reshape(-1))
  _, height, width, channels = x.shape
  # Each group flattens its own [b, h, w, c] map, as LiteEncoder does.
  x = x.reshape(batch, height, width, num_groups, channels // num_groups)
  x = x.transpose(3, 0, 1, 2, 4).reshape(num_groups, batch, -1)
  mean, logvar = _dense_and_heads(params, x)
  return mean.transpose(1, 0, 2), logvar.transpose(1, 0, 2)


# Images per step of the sequential formulation's loop over the batch: one
# group's 32x32x8 maps of 32 images (1 MB) stay in cache from its forward
# through its gradients, where a whole batch of 256 (8 MB) streams every layer
# from memory (BUILD_NOTES, issue 8 item 3, fifth session).
SEQUENTIAL_CHUNK = 32


def sequential_lite_encoders(params: Any, x: jax.Array,
                             chunk: int = SEQUENTIAL_CHUNK
                             ) -> tuple[jax.Array, jax.Array]:
  """The same function as `stacked_lite_encoders`, written as loops that
  keep each step's maps small: a lax.map over chunks of `chunk` images of a
  lax.map over the groups of one LiteEncoder on that chunk, its layers
  ordinary convolutions (XLA:CPU runs a grouped convolution far slower than
  the same groups as separate ordinary ones: G = 10, 32x32, 8 -> 8 channels
  per group, 90 ms against 12 ms).

  - Each (chunk, group) forward pass is recomputed in the backward pass
    (jax.checkpoint) instead of stored: stored, the loops would write every
    group's activations into stacked buffers and read them back, which cost
    more than the recomputation.
  - Where the first two layers are 4x4, all groups' first layers read one
    set of image windows, built once per batch, and pass the second layer
    its map in space-to-depth layout (models/s2d_pair.py); the other layers
    are `stride2.strided_conv` (paired gradients).
  - A batch that is not a multiple of `chunk` is padded with blank images
    whose outputs are dropped (so they add nothing to any gradient).

  One program for any G and batch size."""
  batch = x.shape[0]
  chunk = min(chunk, batch)
  num_chunks = -(-batch // chunk)
  first, second = (params[f"Conv_{i}"]["kernel"].shape[1:] for i in (0, 1))
  shared_windows = s2d_pair.applies(x, first, second)
  inputs = s2d_pair.first_windows(x) if shared_windows else x
  padding = [(0, num_chunks * chunk - batch)] + [(0, 0)] * (inputs.ndim - 1)
  chunks = jnp.pad(inputs, padding).reshape(num_chunks, chunk,
                                            *inputs.shape[1:])

  @jax.checkpoint
  def one_chunk(group_params: Any, inputs: jax.Array
                ) -> tuple[jax.Array, jax.Array]:
    layers = [group_params[f"Conv_{i}"] for i in range(len(LITE_CHANNELS))]
    y = inputs
    if shared_windows:
      z = s2d_pair.first_layer(inputs, layers[0]["kernel"], layers[0]["bias"])
      y = nn.relu(s2d_pair.down_of_s2d(z, layers[1]["kernel"])
                  + layers[1]["bias"])
      layers = layers[2:]
    for layer in layers:
      y = nn.relu(stride2.strided_conv(y, layer["kernel"]) + layer["bias"])
    return _dense_and_heads(group_params, y.reshape(chunk, -1))

  def all_groups(inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
    return lax.map(lambda group_params: one_chunk(group_params, inputs),
                   params)

  mean, logvar = lax.map(all_groups, chunks)        # [chunks, G, chunk, K]

  def batch_major(v: jax.Array) -> jax.Array:
    num_groups = v.shape[1]
    return v.transpose(0, 2, 1, 3).reshape(num_chunks * chunk, num_groups,
                                           -1)[:batch]

  return batch_major(mean), batch_major(logvar)


class FractionalEncoder(nn.Module):
  """`num_groups` LiteEncoders of num_latents / num_groups latents each, as
  one batched computation (each parameter stacked over groups, axis 0).

  `formulation` 'vmap' applies the nn.vmap-ed LiteEncoder; 'stacked' and
  'block_diagonal' compute the same function from the same parameters with
  `stacked_lite_encoders` (grouped convolutions, or ordinary ones with
  block-diagonal kernels), 'sequential' with `sequential_lite_encoders`
  (ordinary convolutions, one group after another, on chunks of the
  batch).  Parameters are always
  created by the nn.vmap-ed module, so all formulations initialise
  identically and read each other's checkpoints.  jax.vmap turns the
  sub-encoders' convolutions into grouped convolutions; 'stacked' replaces
  their kernel gradient, which XLA:CPU computes slowly (see
  `_grouped_kernel_grad`), but keeps XLA:CPU's slow grouped forward, which
  'sequential' avoids.  'block_diagonal'
  does G times the convolutions' arithmetic, in XLA:CPU's fast ordinary
  convolution: worth it for small G only."""
  num_latents: int
  num_groups: int
  kernel_sizes: Sequence[int] = (4, 4, 4, 4)
  formulation: str = "vmap"

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    batch, per_group = x.shape[0], self.num_latents // self.num_groups
    groups = nn.vmap(LiteEncoder, variable_axes={"params": 0},
                     split_rngs={"params": True}, in_axes=None, out_axes=1,
                     axis_size=self.num_groups)
    groups = groups(per_group, self.kernel_sizes, name="groups")
    if self.formulation not in FRACTIONAL_FORMULATIONS:
      raise ValueError(f"formulation={self.formulation!r}; allowed: "
                       f"{FRACTIONAL_FORMULATIONS}")
    if self.formulation == "vmap" or self.is_initializing():
      mean, logvar = groups(x)
    elif self.formulation == "sequential":
      mean, logvar = sequential_lite_encoders(
          self.variables["params"]["groups"], x)
    else:
      mean, logvar = stacked_lite_encoders(
          self.variables["params"]["groups"], x,
          block_diagonal_convs=self.formulation == "block_diagonal")
    chex.assert_shape([mean, logvar], (batch, self.num_groups, per_group))
    return (mean.reshape(batch, self.num_latents),
            logvar.reshape(batch, self.num_latents))


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


# What 'auto' means for each formulation option, per backend: on CPU the
# paired stride-2 layers and the sequential fractional encoder are the fastest
# (BUILD_NOTES, issue 8 items 1 and 3); on accelerators XLA's own
# convolutions (cuDNN's) and the vmapped groups, until the others are
# measured there.
AUTO_FORMULATIONS = {
    "cpu": {"upsampling": "paired", "downsampling": "paired",
            "fractional_formulation": "sequential"},
    "accelerator": {"upsampling": "transpose", "downsampling": "conv",
                    "fractional_formulation": "vmap"},
}


def resolve_auto(option: str, value: str) -> str:
  """`value` of a formulation option, 'auto' replaced by this backend's
  choice (AUTO_FORMULATIONS)."""
  if value != "auto":
    return value
  backend = "cpu" if jax.default_backend() == "cpu" else "accelerator"
  return AUTO_FORMULATIONS[backend][option]


def check_architecture(observation_shape: Sequence[int], num_latents: int,
                       encoder_kernel_sizes: Sequence[int],
                       upsampling: str, downsampling: str = "conv"
                       ) -> tuple[tuple[int, ...], str, str]:
  """Validates the options every conv architecture shares; returns the
  kernel sizes as a tuple and the stride-2 formulations ('auto'
  resolved for this backend)."""
  check_image_shape(observation_shape)
  if isinstance(num_latents, bool) or not isinstance(num_latents, int) or (
      num_latents < 1):
    raise ValueError(f"num_latents={num_latents!r}; must be an integer >= 1")
  if len(encoder_kernel_sizes) != len(ENCODER_CHANNELS) or min(
      encoder_kernel_sizes) < 1:
    raise ValueError(
        f"encoder_kernel_sizes={tuple(encoder_kernel_sizes)}; need "
        f"{len(ENCODER_CHANNELS)} positive sizes, one per conv layer")
  if upsampling not in ("auto", *UPSAMPLINGS):
    raise ValueError(f"upsampling={upsampling!r}; allowed: "
                     f"{('auto', *UPSAMPLINGS)}")
  if downsampling not in ("auto", *DOWNSAMPLINGS):
    raise ValueError(f"downsampling={downsampling!r}; allowed: "
                     f"{('auto', *DOWNSAMPLINGS)}")
  return (tuple(encoder_kernel_sizes), resolve_auto("upsampling", upsampling),
          resolve_auto("downsampling", downsampling))


@MODELS.register("conv_vae")
def conv_vae(*, observation_shape: tuple[int, int, int], num_latents: int = 10,
             encoder_kernel_sizes: Sequence[int] = (4, 4, 2, 2),
             upsampling: str = "auto", downsampling: str = "auto",
             encoder: str = "standard",
             noise_correlation: float = 0.0, split_channels: int = 64,
             split_hidden: int = 256, num_groups: int = 1,
             fractional_formulation: str = "auto") -> VAE:
  """The standard architecture; `encoder_kernel_sizes` (4, 4, 2, 2) is
  dlib-google's, (4, 4, 4, 4) the beta-VAE/DEFT papers'.  `upsampling`
  'paired' / 'subpixel' compute the reference transposed convolutions
  ('transpose') exactly (same parameters), only faster to differentiate on
  CPU (see models/upsample.py); `downsampling` 'paired' does the same for
  the encoder's strided convolutions of the standard and split encoders
  (models/stride2.py; 'conv' is XLA's own gradient).  'auto' (the default
  of both) is 'paired' on CPU and XLA's own on accelerators
  (AUTO_FORMULATIONS).

  `encoder`: 'standard', 'split', 'sharing' or 'fractional' (module
  docstring; `num_groups` is the fractional encoder's G, and num_latents
  must be a multiple of it; `fractional_formulation` 'vmap', 'stacked',
  'sequential' or 'block_diagonal' is how its groups are computed: same
  parameters, same function; on CPU 'sequential' trains fastest, 'stacked'
  and 'block_diagonal' several times faster than 'vmap'; 'auto' is
  'sequential' on CPU, 'vmap' on accelerators, where the others are not
  measured yet);
  `split_channels` / `split_hidden`: widths of each latent's own conv and
  dense layer in the split encoder.  `noise_correlation` s in [0, 1):
  reparameterisation noise N(0, (1-s)I + s 11^T) (split-encoder paper's
  ablation uses 0.9; 0 is the standard VAE)."""
  if encoder not in ENCODERS:
    raise ValueError(f"encoder={encoder!r}; allowed: {ENCODERS}")
  noise_correlation = check_noise_correlation(noise_correlation)
  for name, value in (("split_channels", split_channels),
                      ("split_hidden", split_hidden),
                      ("num_groups", num_groups)):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"{name}={value!r}; must be an integer >= 1")
  kernel_sizes, upsampling, downsampling = check_architecture(
      observation_shape, num_latents, encoder_kernel_sizes, upsampling,
      downsampling)
  if num_groups != 1 and encoder != "fractional":
    raise ValueError(f"num_groups={num_groups} needs encoder='fractional' "
                     f"(got encoder={encoder!r})")
  fractional_formulation = resolve_auto("fractional_formulation",
                                        fractional_formulation)
  if fractional_formulation not in FRACTIONAL_FORMULATIONS:
    raise ValueError(f"fractional_formulation={fractional_formulation!r}; "
                     f"allowed: {('auto', *FRACTIONAL_FORMULATIONS)}")
  if encoder == "fractional" and num_latents % num_groups:
    raise ValueError(
        f"num_latents={num_latents} is not a multiple of num_groups="
        f"{num_groups}; the fractional encoder gives every group the same "
        "number of latents K (num_latents = num_groups * K)")
  if encoder == "fractional":
    encoder_module = FractionalEncoder(num_latents, num_groups, kernel_sizes,
                                       fractional_formulation)
  elif encoder == "split":
    encoder_module = SplitEncoder(num_latents, kernel_sizes, split_channels,
                                  split_hidden, downsampling)
  elif encoder == "sharing":
    encoder_module = ConvEncoder(num_latents, kernel_sizes, hidden=0,
                                 downsampling=downsampling)
  else:
    encoder_module = ConvEncoder(num_latents, kernel_sizes,
                                 downsampling=downsampling)
  return VAE(encoder_module, DeconvDecoder(tuple(observation_shape),
                                           upsampling),
             noise_correlation=noise_correlation)
