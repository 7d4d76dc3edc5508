"""Stride-2 'SAME' convolutions of the standard architecture with gradients
XLA:CPU computes fast.

The encoder downsamples with 4x4 (or 2x2) stride-2 convolutions and the
decoder upsamples with 4x4 stride-2 transposed convolutions.  Left to
autodiff, XLA:CPU differentiates them slowly: the input gradient of a
strided convolution and the forward of a transposed one become
base-dilated convolutions (mostly multiplications by inserted zeros), and
the kernel gradients of the decoder become convolutions over the batch
with large layout transposes around them.  Yet the two operations are each
other's adjoints, so every gradient is one of the two operations again:

  down(x, k)   the strided convolution  (lax.conv, stride 2, SAME)
  up(y, k)     its transpose            (flax ConvTranspose 4x4 stride 2 SAME)

  d down / dx  = up(dy, k*)            d up / dy  = down(g, k*)
  d down / dk  = kernel_grad(x, dy)    d up / dk  = kernel_grad(g, y)*

where k* = adjoint_kernel(k) (the kernel flipped in both spatial axes, its
input and output channels swapped; an involution).  `down` is XLA's own
strided convolution, which is fast; `up` is computed by output phase: the
output pixel (2m + a, 2n + b) reads a 2x2 window of the input, so all four
phases are one stride-1 2x2 convolution into 4 x Cout channels followed by
a depth-to-space shuffle (exactly the transposed convolution's arithmetic,
no multiplications by inserted zeros); for a layer with few output
channels (the decoder's last, 16 Cout <= Cin) every input pixel's products
with the 16 taps are added into place instead.

`Conv` and `ConvTranspose` are flax's nn.Conv and nn.ConvTranspose with
these formulations in place of XLA's for the layers they cover: same
constructor, same parameters (HWIO kernels, the same initialisers), the same
function; tests/test_kernels_stride2.py checks values and gradients against
lax.conv / lax.conv_transpose and flax.  Only first derivatives are defined
(jax.custom_vjp): no objective here differentiates twice.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_NHWC = ("NHWC", "HWIO", "NHWC")
KERNEL_SIZES = (2, 4)  # the stride-2 kernels written out here
# With SAME padding, output row 2m + parity of the 4x4 stride-2 transposed
# convolution reads input row m + offset through kernel row tap:
# PHASE_READS[parity] = ((offset, tap), (offset, tap)) (likewise columns).
PHASE_READS = {0: ((-1, 0), (0, 2)), 1: ((0, 1), (1, 3))}


def adjoint_kernel(kernel: jax.Array) -> jax.Array:
  """The kernel of the adjoint operation: spatially flipped, in/out swapped."""
  return kernel[::-1, ::-1].transpose(0, 1, 3, 2)


def xla_strided_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """XLA's stride-2 SAME convolution of NHWC `x` with an HWIO `kernel` (what
  flax's Conv computes), left to autodiff."""
  return lax.conv_general_dilated(x, kernel, (2, 2), "SAME",
                                  dimension_numbers=_NHWC)


def even_sides(x: jax.Array) -> bool:
  """Whether NHWC `x` has even height and width, which the paired gradients
  (space-to-depth, output phases) need; the standard architecture's inputs
  always do."""
  return not (x.shape[1] % 2 or x.shape[2] % 2)


def space_to_depth(x: jax.Array) -> jax.Array:
  """[b, H, W, C] -> [b, H/2, W/2, 4C], channels ordered (row, column, c)."""
  batch, height, width, channels = x.shape
  x = x.reshape(batch, height // 2, 2, width // 2, 2 * channels)
  return x.transpose(0, 1, 3, 2, 4).reshape(batch, height // 2, width // 2,
                                            4 * channels)


def contract_rows(a: jax.Array, b: jax.Array) -> jax.Array:
  """a^T b for row-major [n, p] and [n, q] (a sum over the n rows)."""
  return lax.dot_general(a, b, (((0,), (0,)), ((), ())))


def _few_input_channels(cin: int, cout: int) -> bool:
  """Whether a 4x4 layer reads so few channels (Cout > 4 Cin: the first
  encoder layer, the last decoder layer's adjoint) that its input's 16-tap
  windows, [rows, 16 Cin], are cheap to build (under 4x its output): then
  its forward and its kernel gradient are each one product with them,
  which XLA:CPU runs faster than its convolutions of few channels."""
  return cout > 4 * cin


def _windows(x: jax.Array) -> jax.Array:
  """The 4x4 stride-2 SAME windows of `x` [b, H, W, Cin] (even sides), one
  output position per row: [b, H/2, W/2, 16 Cin], ordered (a, b, row, col,
  c) for kernel tap (2a + row, 2b + col): the four shifted 2x2-block views
  of the space-to-depth padded input."""
  _, height, width, _ = x.shape
  h, w = height // 2, width // 2
  z = space_to_depth(jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))))
  return jnp.concatenate([z[:, a:a + h, b:b + w] for a in (0, 1)
                          for b in (0, 1)], axis=-1)


def window_matrix(kernel: jax.Array) -> jax.Array:
  """A 4x4 HWIO kernel as the [16 Cin, Cout] matrix that multiplies
  `_windows` rows."""
  cin, cout = kernel.shape[2:]
  return kernel.reshape(2, 2, 2, 2, cin, cout).transpose(
      0, 2, 1, 3, 4, 5).reshape(16 * cin, cout)


def _from_window_matrix(blocks: jax.Array) -> jax.Array:
  """Inverse of `window_matrix`: rows (a, b, row, col, c) of `blocks`
  (any shape with 16 Cin x Cout entries) -> HWIO [4, 4, Cin, Cout]."""
  cout = blocks.shape[-1]
  cin = blocks.size // (16 * cout)
  return blocks.reshape(2, 2, 2, 2, cin, cout).transpose(
      0, 2, 1, 3, 4, 5).reshape(4, 4, cin, cout)


def kernel_grad(x: jax.Array, dy: jax.Array) -> jax.Array:
  """d<down(x, k), dy>/dk: [4, 4, Cin, Cout] for `x` [b, H, W, Cin] and
  `dy` [b, H/2, W/2, Cout].

  In the space-to-depth view z of the padded input ([b, H/2+1, W/2+1, 4Cin],
  z[i, j] holding input rows 2i-1, 2i and columns 2j-1, 2j), kernel block
  (a, b) (taps 2a.., 2b..) is the sum over positions of z[i+a, j+b] (x)
  dy[i, j]: four matrix products over b*H*W/4 rows.  They are written as
  products of whole row-major matrices, which XLA:CPU multiplies fast, not
  as the convolution over the batch that autodiff emits (which needs a
  channels-first copy of x and dy).  When Cout > 4 Cin (the first encoder
  layer, the last decoder layer) it is one product with the input's
  windows (`_windows`, the smaller matrix there, so dy is read once);
  otherwise dy is placed on z's padded grid once and its four shifts are
  gathered as one [rows, 4 Cout] matrix, so all blocks are one product."""
  cin, cout = x.shape[-1], dy.shape[-1]
  if _few_input_channels(cin, cout):
    return _from_window_matrix(contract_rows(
        _windows(x).reshape(-1, 16 * cin), dy.reshape(-1, cout)))
  z = space_to_depth(jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))))
  z = z.reshape(-1, 4 * cin)                               # rows (b, i, j)
  blocks = contract_rows(z, window_offset_rows(dy)).reshape(4 * cin, 4, cout)
  return _from_window_matrix(blocks.transpose(1, 0, 2))


def window_offset_rows(dy: jax.Array) -> jax.Array:
  """The output cotangent dy [b, h, w, C] of a 2x2 stride-1 convolution of
  a space-to-depth map z [b, h + 1, w + 1, 4 Cin], as the rows of z's grid
  (b, i, j) with the four window offsets (a, b) = (0, 0), (0, 1), (1, 0),
  (1, 1) side by side: block (a, b) of row (i, j) is dy[i - a, j - b] (zero
  outside dy), the output that z's cell feeds through window position
  (a, b).  [b (h + 1)(w + 1), 4 C]: z^T times it is the kernel gradient by
  window position, it times the kernel's blocks transposed is z's
  gradient."""
  _, _, width, channels = dy.shape
  grid = jnp.pad(dy, ((0, 0), (0, 1), (0, 1), (0, 0))).reshape(-1, channels)
  rows = grid.shape[0]
  # Block (a, b) of row r is grid[r - s], s = a (w + 1) + b, zero before
  # the first row; rows of the next image or past dy's edge meet the zero
  # padding of the last row and column.
  lead = width + 2
  grid = jnp.pad(grid, ((lead, 0), (0, 0)))
  shifts = [a * (width + 1) + b for a in (0, 1) for b in (0, 1)]
  return jnp.concatenate([grid[lead - s:lead - s + rows] for s in shifts],
                         axis=1)


def _phase_up(y: jax.Array, kernel: jax.Array) -> jax.Array:
  """The transposed convolution by output phase.  With SAME padding output
  row 2m + a reads padded input rows m + a, m + a + 1 through kernel rows
  a, a + 2 (likewise for columns), so kernel tap (2i + a, 2j + b) is window
  position (i, j) of phase (a, b)."""
  batch, height, width, _ = y.shape
  cin, cout = kernel.shape[2:]
  windows = kernel.reshape(2, 2, 2, 2, cin, cout).transpose(
      0, 2, 4, 1, 3, 5)                            # (i, j, c, a, b, o)
  padded = jnp.pad(y, ((0, 0), (1, 1), (1, 1), (0, 0)))
  phases = lax.conv_general_dilated(
      padded, windows.reshape(2, 2, cin, 4 * cout), (1, 1), "VALID",
      dimension_numbers=_NHWC).reshape(batch, height + 1, width + 1, 2, 2,
                                       cout)
  rows = [jnp.stack([phases[:, a:a + height, b:b + width, a, b]
                     for b in (0, 1)], axis=3) for a in (0, 1)]
  return jnp.stack(rows, axis=2).reshape(batch, 2 * height, 2 * width, cout)


def _overlap_add_up(y: jax.Array, kernel: jax.Array) -> jax.Array:
  """The transposed convolution as its definition: every input pixel's
  product with all 16 taps (one matrix product, [b*H*W, 16 Cout]), added
  into the output where the taps land.  Cheapest when 16 Cout <= Cin (the
  last decoder layer), where the products are fewer than the inputs."""
  batch, height, width, cin = y.shape
  cout = kernel.shape[-1]
  taps = (y.reshape(-1, cin) @ kernel.transpose(2, 0, 1, 3).reshape(
      cin, 16 * cout)).reshape(batch, height, width, 4, 4, cout)

  def shifted(v, offset, axis):  # v[m + offset] along `axis`, zero outside
    if offset == 0:
      return v
    pad = [(0, 0)] * v.ndim
    pad[axis] = (0, 1) if offset > 0 else (1, 0)
    part = lax.slice_in_dim(v, max(offset, 0), v.shape[axis] + min(offset, 0),
                            axis=axis)
    return jnp.pad(part, pad)

  rows = []
  for a in (0, 1):
    row = []
    for b in (0, 1):
      total = 0.0
      for row_offset, row_tap in PHASE_READS[a]:
        for col_offset, col_tap in PHASE_READS[b]:
          total = total + shifted(shifted(taps[:, :, :, row_tap, col_tap],
                                          row_offset, 1), col_offset, 2)
      row.append(total)
    rows.append(jnp.stack(row, axis=3))
  return jnp.stack(rows, axis=2).reshape(batch, 2 * height, 2 * width, cout)


def _transposed(y: jax.Array, kernel: jax.Array) -> jax.Array:
  if 16 * kernel.shape[-1] <= kernel.shape[-2]:
    return _overlap_add_up(y, kernel)
  return _phase_up(y, kernel)


def input_grad(dy: jax.Array, kernel: jax.Array) -> jax.Array:
  """d<down(x, k), dy>/dx for a 4x4 kernel: the transposed convolution of dy
  with the adjoint kernel."""
  return _transposed(dy, adjoint_kernel(kernel))


@jax.custom_vjp
def down(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Stride-2 SAME convolution of NHWC `x` (even height and width) with a
  4x4 HWIO `kernel`: XLA's, or for few input channels one product with the
  input's windows (XLA:CPU's convolution of a 1-channel batch of 256
  64x64 images into 80 channels: 56 ms; the product: 32 ms)."""
  if _few_input_channels(*kernel.shape[2:]):
    return _windows(x) @ window_matrix(kernel)
  return xla_strided_conv(x, kernel)


@jax.custom_vjp
def up(y: jax.Array, kernel: jax.Array) -> jax.Array:
  """4x4 stride-2 SAME transposed convolution of NHWC `y` (as
  lax.conv_transpose / flax ConvTranspose compute it) with HWIO `kernel`."""
  return _transposed(y, kernel)


def _down_fwd(x, kernel):
  return down(x, kernel), (x, kernel)


def _down_bwd(residuals, dy):
  x, kernel = residuals
  return input_grad(dy, kernel), kernel_grad(x, dy)


def _up_fwd(y, kernel):
  return up(y, kernel), (y, kernel)


def _up_bwd(residuals, g):
  y, kernel = residuals
  return (down(g, adjoint_kernel(kernel)),
          adjoint_kernel(kernel_grad(g, y)))


down.defvjp(_down_fwd, _down_bwd)
up.defvjp(_up_fwd, _up_bwd)


def down_2x2(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Stride-2 SAME convolution with a 2x2 kernel: the 2x2 blocks do not
  overlap (SAME adds no padding), so it is one matrix product of the
  space-to-depth input; autodiff of that is already fast."""
  cin, cout = kernel.shape[2:]
  return jnp.einsum("bhwk,ko->bhwo", space_to_depth(x),
                    kernel.reshape(4 * cin, cout))


def strided_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """A stride-2 SAME convolution in the paired formulation for the kernel
  sizes in KERNEL_SIZES on even-sided inputs (every input of the standard
  architecture); XLA's own convolution, autodiffed, otherwise."""
  size = kernel.shape[0]
  if even_sides(x) and size == 4:
    return down(x, kernel)
  if even_sides(x) and size == 2:
    return down_2x2(x, kernel)
  return xla_strided_conv(x, kernel)


def _pair(value: Any) -> tuple[int, ...]:
  """A flax stride or dilation as a 2D tuple (an int or None: square)."""
  if value is None or isinstance(value, int):
    return (1 if value is None else value,) * 2
  return tuple(value)


def _plain(layer: nn.Module, inputs: jax.Array) -> bool:
  """Whether a flax convolution layer on `inputs` is a plain float32 2D
  stride-2 'SAME' one (no mask, dilation, dtype or precision setting): the
  case the formulations here compute."""
  return (inputs.ndim == 4 and not isinstance(layer.kernel_size, int)
          and len(layer.kernel_size) == 2
          and _pair(layer.strides) == (2, 2) and layer.padding == "SAME"
          and _pair(layer.kernel_dilation) == (1, 1) and layer.mask is None
          and layer.dtype is None and layer.precision is None
          and inputs.dtype == layer.param_dtype == jnp.float32)


def _kernel_and_bias(layer: nn.Module, inputs: jax.Array
                     ) -> tuple[jax.Array, jax.Array | None]:
  """A flax convolution layer's HWIO kernel and bias (None without one),
  created as flax creates them: same names, shapes, initialisers, order."""
  kernel = layer.param("kernel", layer.kernel_init,
                       (*layer.kernel_size, inputs.shape[-1], layer.features),
                       layer.param_dtype)
  bias = (layer.param("bias", layer.bias_init, (layer.features,),
                      layer.param_dtype) if layer.use_bias else None)
  return kernel, bias


class Conv(nn.Conv):
  """nn.Conv computed by `strided_conv` when it is a plain stride-2 'SAME'
  convolution (`_plain`, one group): every encoder convolution of the
  standard architecture.  Same parameters as nn.Conv, so the two initialise
  identically and read each other's checkpoints; any other layer is
  nn.Conv's own computation."""

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    if not (_plain(self, inputs) and self.feature_group_count == 1
            and _pair(self.input_dilation) == (1, 1)):
      return super().__call__(inputs)
    kernel, bias = _kernel_and_bias(self, inputs)
    y = strided_conv(inputs, kernel)
    return y if bias is None else y + bias


class ConvTranspose(nn.ConvTranspose):
  """nn.ConvTranspose computed by `up` when it is a plain 4x4 stride-2
  'SAME' transposed convolution (`_plain`, kernel as stored): every
  upsampling of the standard decoder.  Same parameters as
  nn.ConvTranspose; any other layer is nn.ConvTranspose's own
  computation."""

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    if not (_plain(self, inputs) and tuple(self.kernel_size) == (4, 4)
            and not self.transpose_kernel
            and self.preferred_element_type is None):
      return super().__call__(inputs)
    kernel, bias = _kernel_and_bias(self, inputs)
    y = up(inputs, kernel)
    return y if bias is None else y + bias
