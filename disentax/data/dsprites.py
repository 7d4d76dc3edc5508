"""dSprites: 2-D shapes under scale, rotation and translation.

Two interchangeable datasets over the same five factors
(shape, scale, orientation, posX, posY):

* `ProceduralDSprites` renders every image on the fly in pure `jax.numpy`,
  so nothing is downloaded and any image size that the models accept (a
  multiple of 16) is available. It is fast enough to run inside the jitted,
  vmapped training step.
* `NpzDSprites` reads DeepMind's original
  `dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`, stored bit-packed on the
  device (737,280 64x64 images cost ~370 MB instead of 3 GB) and unpacked
  row by row inside `observations_from_factors`.

Config: `[dataset] name = "dsprites"`, options `image_size` and `npz_path`
(see `dsprites` at the bottom of this module).

The procedural scene lives in canvas coordinates [0, 1]^2 with x along
columns and y along rows (downwards); pixel (row i, column j) of an S x S
image is 1 iff its centre ((j + 0.5) / S, (i + 0.5) / S) lies inside the
sprite, so a lower resolution samples the very same scene at fewer points.
It approximates, but does not reproduce pixel for pixel, the original
dSprites images (whose orientation range and sprite sizes differ slightly).
"""

from __future__ import annotations

import math
import os
import zipfile
from typing import IO, Iterator

import chex
import jax
import jax.numpy as jnp
import numpy as np

from disentax.data import DATASETS
from disentax.data.base import GroundTruthDataset

# ----------------------------------------------------------------- the grid

FACTOR_NAMES = ("shape", "scale", "orientation", "posX", "posY")
FACTOR_SIZES = (3, 6, 40, 32, 32)          # 737,280 tuples
SHAPE_NAMES = ("square", "ellipse", "heart")
SCALES = np.linspace(0.5, 1.0, 6, dtype=np.float32)
ORIENTATIONS = (np.arange(40) * (2 * np.pi / 40)).astype(np.float32)  # [0, 2pi)
POSITIONS = np.linspace(0.0, 1.0, 32, dtype=np.float32)

# Sprite centre = _MARGIN + _TRAVEL * pos. Half-extent r = _HALF_EXTENT *
# scale; the worst case (a square at 45 degrees, r * sqrt(2) ~ 0.198 < 0.2)
# never leaves the frame.
_MARGIN = 0.2
_TRAVEL = 0.6
_HALF_EXTENT = 0.14

# The implicit heart (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0 (y up) spans
# x in [-1.139, 1.139] and y in [-1, 1.2365]. Shifting y by the centre of
# that box (0.118) and scaling by the larger half-width (1.139) fits it into
# the same [-r, r]^2 box as the square, tip pointing down on screen.
_HEART_HALF_WIDTH = 1.139
_HEART_Y_CENTRE = 0.118


def check_image_size(image_size: int) -> int:
  """Returns `image_size` if it is a positive multiple of 16 (what the conv
  encoder/decoder need, four stride-2 stages), else raises ValueError."""
  if (isinstance(image_size, bool) or not isinstance(image_size, int)
      or image_size <= 0 or image_size % 16):
    raise ValueError(
        f"dsprites image_size must be a positive multiple of 16 "
        f"(e.g. 16, 32, 64), got {image_size!r}")
  return image_size


def _check_factors(factors: jax.Array) -> jax.Array:
  factors = jnp.asarray(factors)
  chex.assert_shape(factors, (None, len(FACTOR_NAMES)))
  chex.assert_type(factors, int)
  return factors


# --------------------------------------------------------------- rendering

def render_sprites(values: jax.Array, image_size: int) -> jax.Array:
  """Renders sprites from factor *values*, float32 [n, S, S, 1] in {0, 1}.

  `values` is float [n, 5]: shape index (0 square, 1 ellipse, 2 heart; any
  other value renders a heart), scale, orientation in radians
  (counter-clockwise on screen), posX and posY in [0, 1]. Values need not lie
  on the grid, which is handy for smooth traversals. Everything is one
  broadcast over [n, S, S] so it fuses into a single XLA loop under jit.
  """
  chex.assert_shape(values, (None, len(FACTOR_NAMES)))
  values = jnp.asarray(values, jnp.float32)
  shape, scale, angle, pos_x, pos_y = (values[:, k] for k in range(5))
  centres = (jnp.arange(image_size, dtype=jnp.float32) + 0.5) / image_size
  # Offsets of pixel centres from the sprite centre, per sample: x varies
  # along columns [n, 1, S], y along rows [n, S, 1].
  dx = (centres[None, :] - (_MARGIN + _TRAVEL * pos_x)[:, None])[:, None, :]
  dy = (centres[None, :] - (_MARGIN + _TRAVEL * pos_y)[:, None])[:, :, None]
  # Undo the rotation and divide by the half-extent r, giving the sprite's
  # own frame (u right, v down) where the shape fits in [-1, 1]^2.
  inv_r = 1.0 / (_HALF_EXTENT * scale)
  cos = (jnp.cos(angle) * inv_r)[:, None, None]
  sin = (jnp.sin(angle) * inv_r)[:, None, None]
  u = cos * dx - sin * dy
  v = sin * dx + cos * dy

  square = jnp.maximum(jnp.abs(u), jnp.abs(v)) <= 1.0
  ellipse = u * u + 4.0 * v * v <= 1.0                 # semi-axes r, r / 2
  hx = _HEART_HALF_WIDTH * u
  hy = _HEART_Y_CENTRE - _HEART_HALF_WIDTH * v          # y up in heart space
  hx2 = hx * hx
  heart = (hx2 + hy * hy - 1.0) ** 3 - hx2 * hy * hy * hy <= 0.0

  shape = jnp.round(shape)[:, None, None]
  inside = jnp.where(shape == 0, square, jnp.where(shape == 1, ellipse, heart))
  images = inside.astype(jnp.float32)[..., None]
  chex.assert_shape(images, (values.shape[0], image_size, image_size, 1))
  return images


class ProceduralDSprites(GroundTruthDataset):
  """dSprites rendered by `render_sprites`: no files, any multiple-of-16 size."""

  name = "dsprites"
  factor_names = FACTOR_NAMES
  factor_sizes = FACTOR_SIZES
  procedural = True

  def __init__(self, image_size: int = 64):
    self.image_size = check_image_size(image_size)
    self.observation_shape = (image_size, image_size, 1)

  def factor_values(self, factors: jax.Array) -> jax.Array:
    """Physical value of each factor index, float32 [n, 5]: shape index,
    scale in [0.5, 1], orientation in radians, posX and posY in [0, 1].
    Out-of-range indices are clipped."""
    factors = _check_factors(factors)
    tables = (np.arange(3, dtype=np.float32), SCALES, ORIENTATIONS,
              POSITIONS, POSITIONS)
    columns = [jnp.take(jnp.asarray(table), factors[:, k], mode="clip")
               for k, table in enumerate(tables)]
    return jnp.stack(columns, axis=1)

  def observations_from_factors(self, factors: jax.Array) -> jax.Array:
    return render_sprites(self.factor_values(factors), self.image_size)


# ---------------------------------------------------------- the npz loader

_IMAGES_KEY = "imgs"
_LATENTS_KEY = "latents_classes"
_LATENT_COLUMNS = ("color",) + FACTOR_NAMES
_ROWS_PER_CHUNK = 8192       # images read (and bit-packed) at a time


class NpzDSprites(GroundTruthDataset):
  """dSprites from an `.npz` with `imgs` (N, H, W) binary images and
  `latents_classes` (N, 6) indices (color, shape, scale, orientation, posX,
  posY); the single-valued color column is dropped.

  Factor sizes are read from the file (max + 1 per column) and every
  combination must occur exactly once; rows may come in any order. Images
  are bit-packed (any nonzero pixel counts as 1) into one device array,
  with a table from grid position to row, so a lookup is a gather plus
  `jnp.unpackbits` and stays jit-traceable.
  """

  name = "dsprites"
  factor_names = FACTOR_NAMES

  def __init__(self, path: str | os.PathLike, image_size: int | None = None):
    """Loads `path`; if `image_size` is given the file's image size must
    match it (checked before the images are read)."""
    self.path = os.fspath(path)
    if not os.path.isfile(self.path):
      raise FileNotFoundError(
          f"dsprites npz_path {self.path!r} does not exist; point it at "
          f"dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz or leave it empty "
          f"to render dSprites procedurally")
    if not zipfile.is_zipfile(self.path):
      raise ValueError(f"{self.path}: not an .npz archive (expected keys "
                       f"{_IMAGES_KEY!r} and {_LATENTS_KEY!r})")
    with zipfile.ZipFile(self.path) as archive:
      members = {name.removesuffix(".npy"): name for name in archive.namelist()}
      missing = [k for k in (_IMAGES_KEY, _LATENTS_KEY) if k not in members]
      if missing:
        raise ValueError(f"{self.path}: missing key(s) {missing}; found "
                         f"{sorted(members)}")
      with archive.open(members[_LATENTS_KEY]) as f:
        latents = np.lib.format.read_array(f, allow_pickle=False)
      with archive.open(members[_IMAGES_KEY]) as f:
        rows = _NpyRows(f, self.path)
        height = self._check_image_shape(rows.shape, image_size)
        self.factor_sizes, row_of_index = self._index_table(latents,
                                                            rows.shape[0])
        packed = _pack_images(rows, height)

    self.observation_shape = (height, height, 1)
    self._packed = jnp.asarray(packed)              # [N, H*W/8] uint8
    self._row_of_index = jnp.asarray(row_of_index)  # [N] int32

  def _check_image_shape(self, shape: tuple[int, ...],
                         image_size: int | None) -> int:
    if len(shape) != 3 or shape[1] != shape[2] or shape[1] % 16 or not shape[1]:
      raise ValueError(
          f"{self.path}: {_IMAGES_KEY!r} has shape {shape}; expected (N, H, W) "
          f"square images with H == W a positive multiple of 16 (e.g. "
          f"(737280, 64, 64))")
    if image_size is not None and image_size != shape[1]:
      raise ValueError(
          f"{self.path}: images are {shape[1]}x{shape[2]} but dataset."
          f"image_size = {image_size}; set image_size = {shape[1]} (the npz "
          f"loader does not resample)")
    return shape[1]

  def _index_table(self, latents: np.ndarray, num_images: int
                   ) -> tuple[tuple[int, ...], np.ndarray]:
    """Validates `latents_classes`; returns the factor sizes and the row of
    every grid position (int32 [N])."""
    if (latents.ndim != 2 or latents.shape != (num_images, len(_LATENT_COLUMNS))
        or not np.issubdtype(latents.dtype, np.integer)):
      raise ValueError(
          f"{self.path}: {_LATENTS_KEY!r} has shape {latents.shape} and dtype "
          f"{latents.dtype}; expected integer ({num_images}, "
          f"{len(_LATENT_COLUMNS)}) with columns {_LATENT_COLUMNS} (one row "
          f"per image)")
    factors = latents[:, 1:].astype(np.int64)
    if num_images == 0 or factors.min() < 0:
      raise ValueError(f"{self.path}: {_LATENTS_KEY!r} must be non-empty and "
                       f"non-negative")
    sizes = tuple(int(s) for s in factors.max(axis=0) + 1)
    if math.prod(sizes) != num_images:
      raise ValueError(
          f"{self.path}: factor sizes {dict(zip(FACTOR_NAMES, sizes))} make "
          f"{math.prod(sizes)} combinations but the file has {num_images} "
          f"images; expected every combination exactly once")
    grid = np.ravel_multi_index(tuple(factors.T), sizes)
    counts = np.bincount(grid, minlength=num_images)
    if np.any(counts != 1):
      repeated = np.unravel_index(int(np.argmax(counts)), sizes)
      absent = np.unravel_index(int(np.argmin(counts)), sizes)
      raise ValueError(
          f"{self.path}: expected every factor combination exactly once; "
          f"{dict(zip(FACTOR_NAMES, map(int, repeated)))} appears "
          f"{counts.max()} times and {dict(zip(FACTOR_NAMES, map(int, absent)))}"
          f" {counts.min()} times")
    row_of_index = np.empty(num_images, np.int32)
    row_of_index[grid] = np.arange(num_images, dtype=np.int32)
    return sizes, row_of_index

  def observations_from_factors(self, factors: jax.Array) -> jax.Array:
    factors = jnp.asarray(factors)
    chex.assert_shape(factors, (None, self.num_factors))
    chex.assert_type(factors, int)
    rows = self._row_of_index[self.index_from_factors(factors)]
    bits = jnp.unpackbits(self._packed[rows], axis=-1)
    images = bits.reshape(factors.shape[0], *self.observation_shape)
    return images.astype(jnp.float32)


class _NpyRows:
  """The `.npy` member of an archive, read in chunks of rows.

  Reading the header ourselves and then the raw rows keeps peak memory at
  one chunk plus the packed result (an `.npz` cannot be memory-mapped, and
  `np.load(...)["imgs"]` would materialise all 3 GB at once). Headers this
  does not stream (Fortran order, exotic versions) fall back to one read.
  """

  def __init__(self, f: IO[bytes], path: str):
    self._f, self._path = f, path
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
      header = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
      header = np.lib.format.read_array_header_2_0(f)
    else:
      header = None
    if header is None or header[1] or header[2].hasobject:
      f.seek(0)
      self._whole = np.lib.format.read_array(f, allow_pickle=False)
      self.shape, self.dtype = self._whole.shape, self._whole.dtype
    else:
      self._whole = None
      self.shape, _, self.dtype = header

  def chunks(self, rows_per_chunk: int) -> Iterator[np.ndarray]:
    """Consecutive [<= rows_per_chunk, *shape[1:]] slices of the array."""
    if self._whole is not None:
      for start in range(0, self.shape[0], rows_per_chunk):
        yield self._whole[start:start + rows_per_chunk]
      return
    row_bytes = math.prod(self.shape[1:]) * self.dtype.itemsize
    for start in range(0, self.shape[0], rows_per_chunk):
      count = min(rows_per_chunk, self.shape[0] - start)
      data = self._f.read(count * row_bytes)
      if len(data) != count * row_bytes:
        raise ValueError(f"{self._path}: {_IMAGES_KEY!r} is truncated (ends "
                         f"before row {start + count} of {self.shape[0]})")
      yield np.frombuffer(data, self.dtype).reshape(count, *self.shape[1:])


def _pack_images(rows: _NpyRows, size: int) -> np.ndarray:
  """Bit-packs every image into one row of size*size/8 bytes (big-endian
  bit order, as `jnp.unpackbits` expects)."""
  packed = np.empty((rows.shape[0], size * size // 8), np.uint8)
  start = 0
  for chunk in rows.chunks(_ROWS_PER_CHUNK):
    # packbits treats any nonzero value as 1.
    packed[start:start + len(chunk)] = np.packbits(
        chunk.reshape(len(chunk), -1) != 0, axis=1)
    start += len(chunk)
  return packed


# ----------------------------------------------------------------- builder

@DATASETS.register("dsprites")
def dsprites(image_size: int = 64, npz_path: str = "") -> GroundTruthDataset:
  """dSprites: rendered procedurally at `image_size` when `npz_path` is
  empty, else loaded from that `.npz` (whose images must be `image_size`
  pixels wide)."""
  if not npz_path:
    return ProceduralDSprites(image_size)
  return NpzDSprites(npz_path, image_size=check_image_size(image_size))
