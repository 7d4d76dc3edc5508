"""Benchmark `fractional`: DEFT's fractional encoder versus a normal encoder of equal size.

The setting is DEFT journal section 5.7 / Table 5 (Wu et al., Machine
Learning 2022; ../shared/papers/deft-machine-learning-2022.txt): 1,000
latents, G in {10, 100, 500, 1000} sub-encoders of 1000 / G latents, "we ...
change the number of channels in convolutional layers so that the total
parameters of the fractional encoder and the normal one are equal.  Each
trail generates a batch of samples (256) randomly and then runs a forward
and a backward process."  The paper's fractional encoder cost up to 2.8x the
normal one (G = 1000); the target is at most 10% more at every G.

What is timed: the encoder alone (no decoder, as in the paper), one jitted
forward and backward pass, value_and_grad of a KL-like scalar of its outputs
with respect to all encoder parameters, on random uniform 64x64x1 images
(dSprites' shape); milliseconds per pass after compiling and one warm-up,
the fastest of `repeats` passes of each encoder, the two called in turn
(a ratio of two runs minutes apart moved by 1.5x on a shared 2-core host).

  fractional  `disentax.models.conv.FractionalEncoder`: G lite sub-encoders
              (journal Table 1: conv 8, 8, 16, 16, stride 2, kernel 4;
              dense 64; heads of K = 1000 / G), with each `model.kernels`
              setting's groups ('reference': jax.vmap of the sub-encoder;
              'fast': the groups' ordinary convolutions one group after
              another on chunks of the batch, models/kernels/fractional.py,
              fastest on CPU).
  normal      one encoder of the same structure with wider convolutions
              (its layers as the library's standard encoder gets them on
              this backend, `model.kernels` 'auto': the fast ones on CPU):
              conv a, a, 2a, c (the lite 1:1:2:2 pattern; the last width c
              is free so the counts can match closely), dense 64, heads of
              1,000.  The paper changes only the conv channels; its Table 1
              "standard" encoder (dense 256) cannot be matched at G = 10
              (its heads alone, 2 x 257 x 1000, exceed the fractional
              encoder's 367,920 parameters), so the dense width stays the
              lite one (64).  Both parameter counts are reported, and
              both encoders' model FLOPs per image (closed form): at
              equal parameters the normal encoder does 1.8-2.4x the
              fractional one's arithmetic (its parameters sit in
              convolutions applied at every position, the fractional
              encoder's mostly in the groups' dense layers).

  python -m disentax.bench --items=fractional \\
      [--sizes=groups=10/100/500/1000,batch_size=256,num_latents=1000,\\
image_size=64,kernels=reference/fast,repeats=10]

The full setting (batch 256, G up to 1000: 24M parameters) fits a 2-core,
24 GB CPU with 'fast' (it holds one chunk of one group's maps at a time;
the normal encoder's first layer at G = 1000 is ~0.5 GB) and takes about 6
minutes for G = 500 and 1000 with repeats=2 there; 'reference' holds all
groups' maps at once (8 GB in the first layer alone at G = 1000).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from disentax.bench import Row, fastest_in_alternation, seconds_per_call
from disentax.models import kernels as kernel_lib
from disentax.models.conv import (LITE_CHANNELS, LITE_HIDDEN, DOWNSAMPLING,
                                  FractionalEncoder, conv_stack)

KERNEL_SIZES = (4, 4, 4, 4)  # DEFT journal Table 1
TARGET = "ratio <= 1.1"


@dataclasses.dataclass(frozen=True)
class Sizes:
  """One run of the item: batch, image side (1 channel), latents, the G
  values, the `model.kernels` settings of the fractional encoder and timed
  repeats."""
  batch_size: int = 256
  image_size: int = 64
  num_latents: int = 1000
  groups: tuple[int, ...] = (10, 100, 500, 1000)
  kernels: tuple[str, ...] = ("reference", "fast")
  repeats: int = 10


FULL = Sizes()
QUICK = Sizes(batch_size=16, image_size=32, num_latents=100, groups=(2, 10),
              repeats=3)


class NormalEncoder(nn.Module):
  """One encoder with the lite structure and the given conv widths: four
  stride-2 ReLU convolutions, dense `hidden`, Gaussian heads of
  `num_latents` ("normal encoder" of DEFT journal section 5.7), its strided
  convolutions the layers of `kernels` (the standard encoder's default,
  'auto': the fast ones on CPU)."""
  channels: Sequence[int]
  num_latents: int
  hidden: int = LITE_HIDDEN
  kernel_sizes: Sequence[int] = KERNEL_SIZES
  kernels: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    x = conv_stack(x, self.channels, self.kernel_sizes,
                   kernel_lib.layers(self.kernels).conv)
    x = nn.relu(nn.Dense(self.hidden)(x.reshape(x.shape[0], -1)))
    return (nn.Dense(self.num_latents, name="mean")(x),
            nn.Dense(self.num_latents, name="logvar")(x))


def conv_encoder_params(channels: Sequence[int], num_latents: int,
                        image_size: int, image_channels: int = 1,
                        hidden: int = LITE_HIDDEN,
                        kernel_sizes: Sequence[int] = KERNEL_SIZES) -> int:
  """Parameter count of NormalEncoder(channels, num_latents, hidden), or of
  one LiteEncoder when channels is LITE_CHANNELS, in closed form."""
  count, previous = 0, image_channels
  for width, k in zip(channels, kernel_sizes):
    count += k * k * previous * width + width
    previous = width
  side = image_size // DOWNSAMPLING
  count += side * side * previous * hidden + hidden
  return count + 2 * (hidden * num_latents + num_latents)


def conv_encoder_flops(channels: Sequence[int], num_latents: int,
                       image_size: int, image_channels: int = 1,
                       hidden: int = LITE_HIDDEN,
                       kernel_sizes: Sequence[int] = KERNEL_SIZES) -> int:
  """Model FLOPs (2 per multiply-add) of one image's forward pass through
  NormalEncoder(channels, num_latents, hidden), or one LiteEncoder when
  channels is LITE_CHANNELS: stride-2 convolutions (output side half the
  input's), the dense layer and both heads, in closed form."""
  count, previous, side = 0, image_channels, image_size
  for width, k in zip(channels, kernel_sizes):
    side //= 2
    count += 2 * side * side * k * k * previous * width
    previous = width
  count += 2 * side * side * previous * hidden
  return count + 2 * 2 * hidden * num_latents


def fractional_params(num_groups: int, num_latents: int, image_size: int,
                      image_channels: int = 1) -> int:
  """Parameter count of FractionalEncoder(num_latents, num_groups): G lite
  sub-encoders of num_latents / G latents."""
  return num_groups * conv_encoder_params(
      LITE_CHANNELS, num_latents // num_groups, image_size, image_channels)


def matched_channels(target: int, num_latents: int, image_size: int,
                     image_channels: int = 1) -> tuple[int, int, int, int]:
  """Conv widths (a, a, 2a, c) of the NormalEncoder whose parameter count is
  closest to `target` with c as close to 2a as that allows: for every a the
  count is linear in c, so c is solved for and rounded; among the a whose
  count is within 0.5% of the target (else the closest), the one with
  c / 2a nearest 1 wins."""
  candidates = []
  for a in range(1, 4096):
    base = conv_encoder_params((a, a, 2 * a, 0), num_latents, image_size,
                               image_channels)
    slope = conv_encoder_params((a, a, 2 * a, 1), num_latents, image_size,
                                image_channels) - base
    c = max(1, round((target - base) / slope))
    error = abs(base + slope * c - target) / target
    candidates.append((error, abs(c / (2 * a) - 1), (a, a, 2 * a, c)))
    if base > target:
      break
  close = [cand for cand in candidates if cand[0] <= 0.005]
  if close:
    return min(close, key=lambda cand: cand[1])[2]
  return min(candidates)[2]


def count_params(params: Any) -> int:
  """Number of scalars in a parameter tree (arrays or shape structs)."""
  return sum(int(leaf.size) for leaf in jax.tree.leaves(params))


def kl_like(mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """A scalar of the encoder outputs to differentiate: the Gaussian KL to
  N(0, I), summed over latents, mean over the batch."""
  kl = 0.5 * (mean ** 2 + jnp.exp(logvar) - logvar - 1.0)
  return kl.sum(axis=-1).mean()


def encoder_pass(module: nn.Module, images: jax.Array
                 ) -> tuple[Callable[[], float], int]:
  """(a function that times one jitted forward + backward pass, in
  seconds; the parameter count).  Compiles and warms up first."""
  params = jax.jit(module.init)(jax.random.key(0), images[:1])

  @jax.jit
  def step(params, images):
    return jax.value_and_grad(
        lambda p: kl_like(*module.apply(p, images)))(params)

  jax.block_until_ready(step(params, images))
  return (lambda: seconds_per_call(lambda: step(params, images), 1,
                                   warmup=0)), count_params(params)


def measure_sizes(sizes: Sizes) -> list[Row]:
  """One row per (G, kernels): fractional vs normal ms per pass."""
  images = jax.random.uniform(
      jax.random.key(1), (sizes.batch_size, sizes.image_size,
                          sizes.image_size, 1))
  rows = []
  for groups in sizes.groups:
    target = fractional_params(groups, sizes.num_latents, sizes.image_size)
    channels = matched_channels(target, sizes.num_latents, sizes.image_size)
    normal_pass, normal_n = encoder_pass(
        NormalEncoder(channels, sizes.num_latents), images)
    normal_f = conv_encoder_flops(channels, sizes.num_latents,
                                  sizes.image_size)
    fractional_f = groups * conv_encoder_flops(
        LITE_CHANNELS, sizes.num_latents // groups, sizes.image_size)
    for kernels in sizes.kernels:
      fractional_pass, fractional_n = encoder_pass(
          FractionalEncoder(sizes.num_latents, groups, KERNEL_SIZES,
                            kernel_lib.layers(kernels).call_groups), images)
      normal_s, fractional_s = fastest_in_alternation(
          [normal_pass, fractional_pass], sizes.repeats)
      rows.append(Row(
          item="fractional",
          case=(f"G={groups}, batch {sizes.batch_size}, {sizes.image_size}x"
                f"{sizes.image_size}x1, {sizes.num_latents} latents"),
          disentax=fractional_s * 1e3, baseline=normal_s * 1e3,
          unit="ms/pass (encoder fwd+bwd)",
          baseline_name=f"normal encoder conv {'/'.join(map(str, channels))}",
          target=TARGET,
          note=(f"kernels {kernels}; fastest of {sizes.repeats} "
                f"passes each, in alternation; params {fractional_n:,} vs "
                f"{normal_n:,}; model FLOPs per image forward "
                f"{fractional_f / 1e6:,.1f}M vs {normal_f / 1e6:,.1f}M")))
  return rows


def measure(quick: bool, sizes: Sizes | None = None) -> list[Row]:
  """The paper's sizes, or at small ones when `quick`."""
  return measure_sizes(sizes or (QUICK if quick else FULL))
