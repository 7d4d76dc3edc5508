"""Correlated triangle: a ground-truth dataset whose factors are not independent.

The DEFT journal paper (section 5.4) uses it to study disentanglement when
generative factors are correlated: a 32x32 single-channel canvas shows one
filled triangle at an independent position (posX, posY) whose orientation is
tied to that position -- the triangle always points at the canvas centre, so
its orientation is theta = arctan2(posY - 16, posX - 16), the direction from
the centre to the triangle.

Coordinates are pixels: x along columns, y along rows (downwards), the canvas
spans [0, 32]^2, pixel (row i, column j) has its centre at (j + 0.5, i + 0.5)
and the canvas centre is (16, 16). theta is measured in these screen
coordinates (0 = to the right of the centre, +pi/2 = below it); the apex of
the triangle points along theta + pi, i.e. back toward the centre.

Our choices (the paper gives the canvas size and the position-orientation
tie, but no grid and no triangle size):

* Factors ("pos_x", "pos_y", "orientation"). pos_x and pos_y take
  `num_positions` (default 16, must be even) values evenly spaced over
  [6, 26] pixels; an even count keeps every position off the centre line, so
  no position is the centre (where the direction would be undefined) and no
  position lies exactly on a horizontal or vertical axis through it.
* The triangle is isosceles, height 8 px and base 6 px, placed with its
  centroid at (pos_x, pos_y): apex 16/3 px ahead of the centroid toward the
  centre, base 8/3 px behind it. Every vertex stays within 16/3 px of the
  centroid, so over [6, 26] the whole triangle stays inside the canvas.
  A pixel is lit (1.0) iff its centre passes the three half-plane tests; no
  anti-aliasing, so images are binary.
* The orientation factor is the direction from the centre discretised into
  `num_orientations` (default 16) half-open bins of equal width over
  [-pi, pi): bin k holds angles in [-pi + k w, -pi + (k + 1) w), w =
  2 pi / num_orientations (an angle on a bin edge goes to the bin it starts).
  It is a *label derived from the position*: `sample_factors` draws pos_x and
  pos_y uniformly and computes it, and the renderer uses the exact continuous
  angle and ignores the orientation column. Some bins may hold few or no
  positions (a coarse position grid has few distinct directions).
* The dataset's points are the num_positions x num_positions position grid:
  `num_points` is num_positions ** 2, and `index_from_factors` /
  `factors_from_index` number (pos_x, pos_y) row-major (pos_x major),
  ignoring / recomputing the orientation column. So iterating over
  `range(num_points)` visits each position once with its derived
  orientation, and a dataset-size prior (e.g. beta-TCVAE's) counts images,
  not the impossible factor combinations of the full product.

Config: `[dataset] name = "triangle"`, options `num_positions` and
`num_orientations` (see `triangle` at the bottom of this module). The image
size is fixed at 32, which the conv models accept (a multiple of 16).
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np

from disentax.data import DATASETS
from disentax.data.base import GroundTruthDataset

FACTOR_NAMES = ("pos_x", "pos_y", "orientation")
IMAGE_SIZE = 32
CENTRE = IMAGE_SIZE / 2.0              # canvas centre (16, 16), in pixels
POSITION_RANGE = (6.0, 26.0)           # first and last position, in pixels
HEIGHT = 8.0                           # apex to base, in pixels
BASE = 6.0                             # base width, in pixels

MAX_POSITIONS = 20       # steps of >= 20 / 19 px: every position moves pixels
MAX_ORIENTATIONS = 64

# Fraction of a bin by which an angle may fall short of an edge and still
# count as on it: far below any real gap between grid angles, far above the
# float64 error of arctan2, so exact ties (diagonal positions at multiples of
# pi / 4) bin as the half-open intervals say instead of by rounding.
_EDGE_TOLERANCE = 1e-9


def _check_int(name: str, value, low: int, high: int, even: bool = False
               ) -> int:
  if (isinstance(value, bool) or not isinstance(value, int)
      or not low <= value <= high or (even and value % 2)):
    kind = "an even int" if even else "an int"
    raise ValueError(f"triangle {name} must be {kind} in [{low}, {high}], "
                     f"got {value!r}")
  return value


def position_values(num_positions: int) -> np.ndarray:
  """The pixel coordinate of each position index, float64
  [num_positions], evenly spaced over POSITION_RANGE."""
  return np.linspace(*POSITION_RANGE, num_positions)


def direction_from_centre(x, y):
  """arctan2(y - 16, x - 16): the direction from the canvas centre to pixel
  coordinates (x, y), in (-pi, pi], y downwards; 0 at the centre itself.
  Works on numpy and jax arrays alike."""
  xp = jnp if isinstance(x, jax.Array) or isinstance(y, jax.Array) else np
  return xp.arctan2(y - CENTRE, x - CENTRE)


def orientation_bin(angle, num_orientations: int) -> np.ndarray:
  """Bin index of `angle` (radians, any range; wrapped to [-pi, pi)) among
  `num_orientations` equal half-open bins over [-pi, pi), int32. Computed
  in float64 on the host (used to build the label table)."""
  width = 2 * math.pi / num_orientations
  offset = (np.asarray(angle, np.float64) + math.pi) / width
  return (np.floor(offset + _EDGE_TOLERANCE).astype(np.int64)
          % num_orientations).astype(np.int32)


# --------------------------------------------------------------- rendering

def render_triangles(positions: jax.Array) -> jax.Array:
  """Renders triangles at continuous pixel positions, float32
  [n, 32, 32, 1] in {0, 1}.

  `positions` is float [n, 2] of (x, y) pixel coordinates of the centroid
  (off-grid values are fine, e.g. for smooth traversals). Each triangle
  points at the canvas centre: its apex lies along -(cos theta, sin theta)
  with theta = `direction_from_centre(x, y)` (theta = 0 at the centre
  itself). Pure jnp, one broadcast over [n, 32, 32]; jit/vmap-able.
  """
  chex.assert_shape(positions, (None, 2))
  positions = jnp.asarray(positions, jnp.float32)
  x, y = positions[:, 0], positions[:, 1]
  theta = direction_from_centre(x, y)
  # Unit vector toward the apex (toward the centre) and its normal.
  ux = (-jnp.cos(theta))[:, None, None]
  uy = (-jnp.sin(theta))[:, None, None]
  centres = jnp.arange(IMAGE_SIZE, dtype=jnp.float32) + 0.5
  dx = centres[None, None, :] - x[:, None, None]   # [n, 1, S] along columns
  dy = centres[None, :, None] - y[:, None, None]   # [n, S, 1] along rows
  s = dx * ux + dy * uy          # distance ahead of the centroid, toward apex
  t = -dx * uy + dy * ux         # signed distance across the axis
  # Three half-planes: in front of the base (s >= -h/3) and inside both
  # sides, whose half-width shrinks linearly from b/2 at the base to 0 at
  # the apex (s = 2h/3).
  half_width = (BASE / 2.0) * (2.0 * HEIGHT / 3.0 - s) / HEIGHT
  inside = (s >= -HEIGHT / 3.0) & (t <= half_width) & (-t <= half_width)
  images = inside.astype(jnp.float32)[..., None]
  chex.assert_shape(images, (positions.shape[0], IMAGE_SIZE, IMAGE_SIZE, 1))
  return images


class CorrelatedTriangle(GroundTruthDataset):
  """A triangle at (pos_x, pos_y) pointing at the canvas centre; the
  orientation factor is a function of the position (see the module
  docstring)."""

  name = "triangle"
  factor_names = FACTOR_NAMES
  observation_shape = (IMAGE_SIZE, IMAGE_SIZE, 1)

  def __init__(self, num_positions: int = 16, num_orientations: int = 16):
    self.num_positions = _check_int("num_positions", num_positions, 2,
                                    MAX_POSITIONS, even=True)
    self.num_orientations = _check_int("num_orientations", num_orientations,
                                       2, MAX_ORIENTATIONS)
    self.factor_sizes = (num_positions, num_positions, num_orientations)
    values = position_values(num_positions)
    self._positions = values.astype(np.float32)
    # orientation_table[i, j]: the orientation bin of position (pos_x = i,
    # pos_y = j), computed once in float64 and looked up in traced code.
    angles = direction_from_centre(values[:, None], values[None, :])
    self.orientation_table = orientation_bin(angles, num_orientations)

  @property
  def num_points(self) -> int:
    """Number of distinct images: the position grid (orientation is a
    function of the position, so it adds none)."""
    return self.num_positions ** 2

  def orientation_from_positions(self, pos_x: jax.Array,
                                 pos_y: jax.Array) -> jax.Array:
    """The orientation factor (int32 bin) of position indices; traceable."""
    table = jnp.asarray(self.orientation_table)
    return table[jnp.asarray(pos_x), jnp.asarray(pos_y)].astype(jnp.int32)

  def _with_orientation(self, pos_x: jax.Array, pos_y: jax.Array) -> jax.Array:
    pos_x = jnp.asarray(pos_x, jnp.int32)
    pos_y = jnp.asarray(pos_y, jnp.int32)
    orientation = self.orientation_from_positions(pos_x, pos_y)
    return jnp.stack([pos_x, pos_y, orientation], axis=-1)

  def sample_factors(self, rng: jax.Array, num: int) -> jax.Array:
    """pos_x and pos_y drawn uniformly and independently, orientation
    derived from them; int32 [num, 3]."""
    key_x, key_y = jax.random.split(rng)
    pos_x = jax.random.randint(key_x, (num,), 0, self.num_positions,
                               dtype=jnp.int32)
    pos_y = jax.random.randint(key_y, (num,), 0, self.num_positions,
                               dtype=jnp.int32)
    return self._with_orientation(pos_x, pos_y)

  def factor_values(self, factors: jax.Array) -> jax.Array:
    """(x, y) pixel coordinates of the position indices, float32 [n, 2]
    (out-of-range indices are clipped); the orientation column is ignored."""
    factors = jnp.asarray(factors)
    chex.assert_shape(factors, (None, len(FACTOR_NAMES)))
    chex.assert_type(factors, int)
    table = jnp.asarray(self._positions)
    return jnp.stack([jnp.take(table, factors[:, 0], mode="clip"),
                      jnp.take(table, factors[:, 1], mode="clip")], axis=1)

  def observations_from_factors(self, factors: jax.Array) -> jax.Array:
    """Images for factor rows [n, 3], float32 [n, 32, 32, 1] in {0, 1}.

    Only pos_x and pos_y are read: the orientation column is IGNORED, since
    the triangle's orientation is the exact continuous direction from the
    centre to its position (the orientation factor is only a binned label
    of it), so rows that differ only in orientation render identically.
    """
    return render_triangles(self.factor_values(factors))

  def index_from_factors(self, factors: jax.Array) -> jax.Array:
    """Row-major index pos_x * num_positions + pos_y in [0, num_points);
    the orientation column is ignored (indices are clipped into range)."""
    factors = jnp.asarray(factors)
    return jnp.ravel_multi_index((factors[..., 0], factors[..., 1]),
                                 (self.num_positions, self.num_positions),
                                 mode="clip")

  def factors_from_index(self, index: jax.Array) -> jax.Array:
    """Inverse of `index_from_factors`: int32 [..., 3] rows (pos_x, pos_y,
    derived orientation)."""
    pos_x, pos_y = jnp.unravel_index(jnp.asarray(index),
                                     (self.num_positions, self.num_positions))
    return self._with_orientation(pos_x, pos_y)


# ----------------------------------------------------------------- builder

@DATASETS.register("triangle")
def triangle(num_positions: int = 16,
             num_orientations: int = 16) -> GroundTruthDataset:
  """The correlated triangle (DEFT journal section 5.4) on a 32x32 canvas:
  `num_positions` (an even int in [2, 20]) positions per axis and
  `num_orientations` (an int in [2, 64]) orientation bins."""
  return CorrelatedTriangle(num_positions, num_orientations)
