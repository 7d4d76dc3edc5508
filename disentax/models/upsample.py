"""2x spatial upsampling used by every decoder, behind one module.

The reference decoders use 4x4 stride-2 'SAME' transposed convolutions.
XLA:CPU computes their gradient very slowly, so this module offers three
formulations of *the same function with the same parameters* (a 4x4xCinxCout
kernel and a bias, laid out as flax.linen.ConvTranspose's):

  transpose  lax.conv_transpose, as the reference does.
  subpixel   the stride-2 transposed convolution split by output parity: each
             of the 4 output phases is a 2x2 correlation of the input, so all
             of them are one stride-1 3x3 convolution with 4*Cout channels
             (the kernel gathered from the 4x4 one, unused taps zero) followed
             by a depth-to-space shuffle.  Several times faster to
             differentiate on CPU; tests/test_models.py checks equality.
  paired     by output phase without the zero taps (a 2x2 convolution into
             4*Cout channels), with hand-written gradients that are the
             strided convolution and its kernel gradient (models/stride2.py);
             the fastest on CPU.

Why the taps: with SAME padding the transposed convolution pads the
2x-dilated input by 2 on each side, so output row 2m reads input rows m-1, m
through kernel rows 0, 2, and output row 2m+1 reads rows m, m+1 through
kernel rows 1, 3 (likewise for columns).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from disentax.models import stride2

UPSAMPLINGS = ("transpose", "subpixel", "paired")
KERNEL = 4


def _phase_taps() -> np.ndarray:
  """[parity, offset + 1, tap] = 1 where output phase `parity` reads input
  offset `offset` in {-1, 0, 1} through kernel tap `tap` (see above)."""
  taps = np.zeros((2, 3, KERNEL), np.float32)
  for parity, reads in stride2.PHASE_READS.items():
    for offset, tap in reads:
      taps[parity, offset + 1, tap] = 1.0
  return taps


_PHASE_TAPS = _phase_taps()


def transpose_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return jax.lax.conv_transpose(x, kernel, (2, 2), "SAME",
                                dimension_numbers=("NHWC", "HWIO", "NHWC"))


def subpixel_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Same function as `transpose_conv` for a 4x4 kernel, computed as one
  stride-1 convolution into 4 phases plus a depth-to-space shuffle."""
  batch, height, width, _ = x.shape
  cin, cout = kernel.shape[2:]
  phases = jnp.einsum("ayk,bxl,klio->yxiabo", _PHASE_TAPS, _PHASE_TAPS, kernel)
  y = jax.lax.conv_general_dilated(
      x, phases.reshape(3, 3, cin, 4 * cout), (1, 1), "SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  y = y.reshape(batch, height, width, 2, 2, cout).transpose(0, 1, 3, 2, 4, 5)
  return y.reshape(batch, 2 * height, 2 * width, cout)


_FORMULATIONS = {"transpose": transpose_conv, "subpixel": subpixel_conv,
                 "paired": stride2.up}


class Upsample2x(nn.Module):
  """Doubles height and width: a 4x4 stride-2 'SAME' transposed convolution."""
  features: int
  formulation: str = "transpose"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.formulation not in _FORMULATIONS:
      raise ValueError(f"upsampling {self.formulation!r}; allowed: {UPSAMPLINGS}")
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (KERNEL, KERNEL, x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
    return _FORMULATIONS[self.formulation](x, kernel) + bias
