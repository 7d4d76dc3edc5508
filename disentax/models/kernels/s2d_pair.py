"""The first two 4x4 stride-2 layers of a conv stack, with the map between
them held in space-to-depth layout.

The second layer's paired gradients (kernels/stride2.py) read its input in
the space-to-depth view of the zero-padded map, z[b, i, j, (r, s, c)] =
map[b, 2i + r - 1, 2j + s - 1, c], and build that view with a transpose
that XLA:CPU copies slowly.  Here the first layer writes z directly, so the
second layer's forward, input gradient and kernel gradient are whole-matrix
products with shifted rows and the transpose disappears:

  first layer   z = relu(windows(x) @ K6 + bias) * mask, where the
                6x6 stride-4 windows of x (`first_windows`, built once and
                shared by every kernel that reads the same images, e.g. the
                fractional encoder's groups) hold all four output phases of
                a z cell; K6 places the 4x4 kernel at the phase's offset
                (2.25x the layer's arithmetic, in one product with 4x the
                columns) and `mask` zeroes the padding cells.
  second layer  the stride-2 4x4 convolution of the map is a stride-1 2x2
                one of z: one product z @ [K00 | K01 | K10 | K11] and a
                sum of its four column blocks shifted by the 2x2 window's
                offsets (`down_of_s2d`); both gradients are products with
                dy's rows at those offsets (`stride2.window_offset_rows`,
                which stride2's kernel gradient also uses).

Same functions and parameters as two `stride2.down` layers with bias and
ReLU (tests/test_kernels_s2d_pair.py); used by the fast fractional encoder
(kernels/fractional.py), whose groups' first layers share one image batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from disentax.models.kernels import stride2


def applies(x: jax.Array, first_kernel: tuple[int, ...],
            second_kernel: tuple[int, ...]) -> bool:
  """Whether `first_windows` / `first_layer` / `down_of_s2d` can compute two
  layers of HWIO kernel shapes `first_kernel`, `second_kernel` on NHWC
  images `x`: both 4x4, sides divisible by 4."""
  return (first_kernel[0] == first_kernel[1] == 4
          and second_kernel[0] == second_kernel[1] == 4
          and x.shape[1] % 4 == 0 and x.shape[2] % 4 == 0)


def first_windows(x: jax.Array) -> jax.Array:
  """[b, H, W, C] -> [b, H/4 + 1, W/4 + 1, 36 C]: cell (i, j) holds the
  zero-padded input rows 4i - 3 .. 4i + 2 and columns 4j - 3 .. 4j + 2
  (ordered row, column, channel), everything the four first-layer outputs
  (2i + r - 1, 2j + s - 1), r, s in {0, 1}, read."""
  batch, height, width, channels = x.shape
  n, m = height // 4 + 1, width // 4 + 1
  padded = jnp.pad(x, ((0, 0), (3, 3), (3, 3), (0, 0)))
  rows = jnp.stack([padded[:, t:t + 4 * n - 3:4] for t in range(6)], axis=2)
  cells = jnp.stack([rows[:, :, :, u:u + 4 * m - 3:4] for u in range(6)],
                    axis=4)                        # [b, n, 6, m, 6, C]
  return cells.transpose(0, 1, 3, 2, 4, 5).reshape(batch, n, m,
                                                   36 * channels)


def _first_matrix(kernel: jax.Array) -> jax.Array:
  """HWIO [4, 4, C, O] -> [36 C, 4 O]: phase (r, s) (column block) applies
  the kernel to window rows 2r .. 2r + 3 and columns 2s .. 2s + 3."""
  cin, cout = kernel.shape[2:]
  phases = [[jnp.pad(kernel, ((2 * r, 2 - 2 * r), (2 * s, 2 - 2 * s),
                              (0, 0), (0, 0))) for s in (0, 1)]
            for r in (0, 1)]
  stacked = jnp.stack([jnp.stack(row, axis=3) for row in phases], axis=3)
  return stacked.reshape(36 * cin, 4 * cout)        # [6, 6, C, r, s, O]


def _padding_mask(n: int, m: int, channels: int) -> np.ndarray:
  """[n, m, 4 channels] (a constant of the shapes): 1 where cell (i, j),
  phase (r, s) is a pixel of the map, 0 where it is the padding around
  it."""
  def inside(cells):
    pixel = 2 * np.arange(cells)[:, None] + np.arange(2) - 1
    return (pixel >= 0) & (pixel < 2 * (cells - 1))   # [cells, 2]
  mask = inside(n)[:, None, :, None] & inside(m)[None, :, None, :]
  return np.repeat(mask.reshape(n, m, 4), channels, axis=-1)


def first_layer(windows: jax.Array, kernel: jax.Array, bias: jax.Array
                ) -> jax.Array:
  """relu(down(x, kernel) + bias) in the space-to-depth view of its padded
  output, [b, H/4 + 1, W/4 + 1, 4 O], from `first_windows(x)`."""
  batch, n, m, _ = windows.shape
  cout = kernel.shape[-1]
  rows = windows.reshape(-1, windows.shape[-1]) @ _first_matrix(kernel)
  z = jax.nn.relu(rows + jnp.tile(bias, 4)).reshape(batch, n, m, 4 * cout)
  return z * _padding_mask(n, m, cout).astype(z.dtype)


def _blocks(kernel: jax.Array) -> jax.Array:
  """HWIO [4, 4, C, O] -> [4 C, 4 O]: the 2x2 stride-1 kernel on the
  space-to-depth view, its window offsets (a, b) as column blocks (the row
  blocks of `stride2.window_matrix`, side by side)."""
  cin, cout = kernel.shape[2:]
  by_offset = stride2.window_matrix(kernel).reshape(4, 4 * cin, cout)
  return by_offset.transpose(1, 0, 2).reshape(4 * cin, 4 * cout)


def _shift_up(rows: jax.Array, shift: int) -> jax.Array:
  """Row r of the result is rows[r + shift] (zero past the end)."""
  return jnp.pad(rows[shift:], ((0, shift), (0, 0))) if shift else rows


# The 2x2 window offsets (a, b), in the order of `_blocks`' column blocks and
# of stride2.window_offset_rows' blocks.
_OFFSETS = ((0, 0), (0, 1), (1, 0), (1, 1))


@jax.custom_vjp
def _down_of_s2d(z: jax.Array, blocks: jax.Array) -> jax.Array:
  """Output (i, j) = sum over offsets (a, b) of z[i + a, j + b] @ block
  (a, b): one product for all blocks, then each block's rows shifted up by
  its offset on z's grid (rows past a row's end or the image's are cropped
  away)."""
  batch, n, m, _ = z.shape
  cout = blocks.shape[1] // 4
  products = z.reshape(-1, z.shape[-1]) @ blocks
  out = sum(_shift_up(products[:, k * cout:(k + 1) * cout], a * m + b)
            for k, (a, b) in enumerate(_OFFSETS))
  return out.reshape(batch, n, m, cout)[:, :n - 1, :m - 1]


def _down_of_s2d_fwd(z, blocks):
  return _down_of_s2d(z, blocks), (z, blocks)


def _down_of_s2d_bwd(residuals, dy):
  z, blocks = residuals
  shifted = stride2.window_offset_rows(dy)         # [rows of z, 4 O]
  z_grad = (shifted @ blocks.T).reshape(z.shape)
  return z_grad, stride2.contract_rows(z.reshape(-1, z.shape[-1]), shifted)


_down_of_s2d.defvjp(_down_of_s2d_fwd, _down_of_s2d_bwd)


def down_of_s2d(z: jax.Array, kernel: jax.Array) -> jax.Array:
  """`stride2.down(map, kernel)` for a 4x4 `kernel`, from z [b, n, m, 4 C],
  the space-to-depth view of the zero-padded map (`first_layer`'s output):
  [b, n - 1, m - 1, O]."""
  return _down_of_s2d(z, _blocks(kernel))
