"""Colour, noisy and scream dSprites: RGB nuisance over procedural dSprites.

Three datasets over the dSprites factors (shape 3, scale 6, orientation 40,
posX 32, posY 32; 737,280 tuples), each an RGB image (S, S, 3) in [0, 1]
built from the binary sprite mask that `render_sprites` draws (through a
`ProceduralDSprites`) plus a per-image nuisance, as in dlib
(disentanglement_lib, `dsprites.py`):

* `color_dsprites`: the sprite times a colour drawn from uniform(0.5, 1)^3,
  on a black (exactly 0) background.
* `noisy_dsprites`: min(sprite + noise, 1) with uniform(0, 1) noise per
  pixel and channel (so the sprite is exactly 1, the background noise).
* `scream_dsprites`: background = (a random S x S crop of a painting +
  an offset colour from uniform(0, 1)^3) / 2, and the sprite's pixels set to
  1 - background.

Determinism (a deviation from dlib). `observations_from_factors` must be a
function of the factors (the `GroundTruthDataset` contract: training samples
inside the jitted step and metrics re-render tuples), so the nuisance of a
tuple is drawn from `fold_in(key(nuisance_seed), index_from_factors(tuple))`
-- the same colour / noise / crop every time the tuple is rendered, on any
device, eagerly or under jit. dlib instead redraws the nuisance every time an
image is loaded. A single uniformly sampled training image has the same
distribution either way (uniform factors, nuisance i.i.d. across the 737,280
tuples from the same law); what differs is that a tuple drawn again shows
the same nuisance here, so the dataset is a fixed set of 737,280 images
rather than an endless stream. Change `nuisance_seed` to draw another set.

The scream painting. dlib loads Munch's *The Scream* and thumbnails it to
fit 350 x 274 pixels. disentax ships no images and downloads nothing: with
`painting_path` empty, `scream_dsprites` crops a colourful, swirling texture
that `procedural_painting` computes from sums of sinusoids over a
domain-warped plane (orange-yellow swirling bands above a wavy horizon,
blue bands below, faint diagonal "brush strokes"), 274 x 350 pixels at
S = 64 and scaled with S so a crop shows the same scene at any resolution.
Numbers on it are not comparable with papers that used the real painting
(Munch's The Scream). Point `painting_path` at an image of the painting (any
format PIL reads) to match them more closely; it is resized (aspect ratio
kept) so that its shorter side is ceil(274 S / 64) pixels (274 at S = 64,
dlib's scale, and always above 2 S), converted to RGB in [0, 1] and kept on
the device as one float32 constant (~1.2 MB at S = 64).

Config: `[dataset] name = "color_dsprites" | "noisy_dsprites" |
"scream_dsprites"`, options `image_size` (default 64, a multiple of 16) and
`nuisance_seed` (default 0), and for scream `painting_path` (default "").
"""

from __future__ import annotations

import abc
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np

from disentax.data import DATASETS
from disentax.data.base import GroundTruthDataset
from disentax.data.dsprites import (FACTOR_NAMES, FACTOR_SIZES,
                                    ProceduralDSprites, check_image_size)

# dlib's painting fits a 350 x 274 (width x height) box at 64 px images; the
# procedural texture has that size at S = 64 and the user's painting that
# shorter side, both scaled by S / 64.
_PAINTING_HEIGHT_AT_64 = 274
_PAINTING_WIDTH_AT_64 = 350
_MAX_SEED = 2 ** 31


def _check_seed(seed: int) -> int:
  if isinstance(seed, bool) or not isinstance(seed, int) or not (
      0 <= seed < _MAX_SEED):
    raise ValueError(f"nuisance_seed must be an int in [0, 2**31), got "
                     f"{seed!r}")
  return seed


def _at_scale(pixels_at_64: int, image_size: int) -> int:
  """ceil(pixels_at_64 * image_size / 64): a length that scales with S."""
  return -(-pixels_at_64 * image_size // 64)


class DSpritesWithNuisance(GroundTruthDataset):
  """dSprites as RGB images whose per-image nuisance is a fixed function of
  the factor tuple (see the module docstring).

  Subclasses implement `compose(masks, keys)`; the sprite masks come from a
  `ProceduralDSprites` of the same image size.
  """

  factor_names = FACTOR_NAMES
  factor_sizes = FACTOR_SIZES
  procedural = True  # dlib's variants start from the original dSprites file

  def __init__(self, image_size: int = 64, nuisance_seed: int = 0):
    self.sprites = ProceduralDSprites(image_size)  # validates image_size
    self.image_size = self.sprites.image_size
    self.nuisance_seed = _check_seed(nuisance_seed)
    self.observation_shape = (self.image_size, self.image_size, 3)

  def factor_values(self, factors: jax.Array) -> jax.Array:
    """Physical factor values, as `ProceduralDSprites.factor_values`."""
    return self.sprites.factor_values(factors)

  def masks(self, factors: jax.Array) -> jax.Array:
    """The binary sprite of each tuple, float32 [n, S, S, 1] in {0, 1}."""
    return self.sprites.observations_from_factors(factors)

  def nuisance_keys(self, factors: jax.Array) -> jax.Array:
    """One PRNG key per tuple, [n]: the dataset key folded with the tuple's
    row-major grid index, so equal tuples get equal keys."""
    index = self.index_from_factors(factors)
    root = jax.random.key(self.nuisance_seed)
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(root, index)

  @abc.abstractmethod
  def compose(self, masks: jax.Array, keys: jax.Array) -> jax.Array:
    """RGB images [n, S, S, 3] in [0, 1] from masks [n, S, S, 1] and the
    tuples' nuisance keys [n]."""

  def observations_from_factors(self, factors: jax.Array) -> jax.Array:
    factors = jnp.asarray(factors)
    chex.assert_shape(factors, (None, self.num_factors))
    chex.assert_type(factors, int)
    images = self.compose(self.masks(factors), self.nuisance_keys(factors))
    chex.assert_shape(images, (factors.shape[0], *self.observation_shape))
    chex.assert_type(images, jnp.float32)
    return images


# ------------------------------------------------------------------ colour

class ColorDSprites(DSpritesWithNuisance):
  """The sprite in a colour from uniform(0.5, 1)^3 on black."""

  name = "color_dsprites"

  def colours(self, factors: jax.Array) -> jax.Array:
    """The sprite colour of each tuple, float32 [n, 3] in [0.5, 1)."""
    return self._colours(self.nuisance_keys(factors))

  def _colours(self, keys: jax.Array) -> jax.Array:
    draw = lambda key: jax.random.uniform(key, (3,), jnp.float32, 0.5, 1.0)
    return jax.vmap(draw)(keys)

  def compose(self, masks: jax.Array, keys: jax.Array) -> jax.Array:
    return masks * self._colours(keys)[:, None, None, :]


# ------------------------------------------------------------------- noisy

class NoisyDSprites(DSpritesWithNuisance):
  """min(sprite + uniform(0, 1) noise per pixel and channel, 1)."""

  name = "noisy_dsprites"

  def noise(self, factors: jax.Array) -> jax.Array:
    """The noise image of each tuple, float32 [n, S, S, 3] in [0, 1)."""
    return self._noise(self.nuisance_keys(factors))

  def _noise(self, keys: jax.Array) -> jax.Array:
    draw = lambda key: jax.random.uniform(key, self.observation_shape,
                                          jnp.float32)
    return jax.vmap(draw)(keys)

  def compose(self, masks: jax.Array, keys: jax.Array) -> jax.Array:
    return jnp.minimum(masks + self._noise(keys), 1.0)


# ------------------------------------------------------------------ scream

def procedural_painting(height: int, width: int) -> np.ndarray:
  """A smooth, colourful, swirling texture, float32 [height, width, 3] in
  [0, 1]: the stand-in for *The Scream* when no painting file is given.

  Computed from sums of sinusoids on a domain-warped plane measured in
  units of the height (so a larger array shows the same scene at a higher
  resolution): orange-to-yellow bands twisted by a vortex above a wavy
  horizon, dark-to-light blue bands below it, and a faint high-frequency
  diagonal ripple for brush-stroke texture. Deterministic; no randomness.
  """
  tau = 2.0 * np.pi
  y = ((np.arange(height) + 0.5) / height)[:, None]
  x = ((np.arange(width) + 0.5) / height)[None, :]
  # Domain warp: bend the plane so straight bands become wavy.
  wx = (x + 0.10 * np.sin(tau * (1.1 * y + 0.7 * x + 0.15))
        + 0.04 * np.sin(tau * (3.1 * y - 2.3 * x)))
  wy = (y + 0.08 * np.sin(tau * (1.4 * x + 0.3))
        + 0.05 * np.cos(tau * (2.6 * x + 1.9 * y)))
  # A vortex in the sky; the last factor fades it out at its centre, where
  # the angle is undefined, so the texture stays smooth.
  dx, dy = wx - 0.85, wy - 0.28
  r = np.sqrt(dx * dx + dy * dy)
  swirl = (np.sin(3.0 * np.arctan2(dy, dx) + 14.0 * r) * np.exp(-3.0 * r)
           * (1.0 - np.exp(-(r / 0.06) ** 2)))
  sky = 0.5 + 0.5 * np.sin(tau * (4.5 * wy + 0.6 * np.sin(tau * 1.3 * wx))
                           + 2.0 * swirl)
  water = 0.5 + 0.5 * np.sin(tau * (2.2 * wx - 3.3 * wy)
                             + 1.5 * np.sin(tau * (1.7 * wy + 0.4 * wx)))
  strokes = 0.5 + 0.5 * np.sin(tau * (11.0 * wx + 7.0 * wy)
                               + 3.0 * np.sin(tau * 2.1 * wy))
  horizon = 0.5 + 0.06 * np.sin(tau * (1.6 * x + 0.2))
  below = 1.0 / (1.0 + np.exp(-(wy - horizon) / 0.035))  # 0 sky, 1 water
  sky_rgb = np.stack([0.95 - 0.10 * sky, 0.25 + 0.50 * sky,
                      0.08 + 0.22 * sky], axis=-1)
  water_rgb = np.stack([0.08 + 0.30 * water, 0.20 + 0.40 * water,
                        0.45 + 0.45 * water], axis=-1)
  below = below[..., None]
  rgb = ((1.0 - below) * sky_rgb + below * water_rgb) * (
      0.88 + 0.12 * strokes[..., None])
  return np.clip(rgb, 0.0, 1.0).astype(np.float32)


def load_painting(path: str | os.PathLike, image_size: int) -> np.ndarray:
  """The image at `path` as float32 RGB [H, W, 3] in [0, 1], resized (aspect
  kept) so its shorter side is ceil(274 * image_size / 64) pixels.

  Raises ValueError naming the path if the file is missing or unreadable,
  or if either side is smaller than `image_size` (too small to crop).
  """
  from PIL import Image  # only needed for this option

  path = os.fspath(path)
  if not os.path.isfile(path):
    raise ValueError(f"scream_dsprites painting_path {path!r} does not exist; "
                     f"point it at an image of the painting or leave it empty "
                     f"for the built-in procedural texture")
  try:
    with Image.open(path) as image:
      image.load()
      rgb = image.convert("RGB")
  except (OSError, ValueError, Image.DecompressionBombError) as error:
    raise ValueError(f"scream_dsprites painting_path {path!r}: cannot read "
                     f"it as an image ({error})") from error
  width, height = rgb.size
  if min(width, height) < image_size:
    raise ValueError(
        f"scream_dsprites painting_path {path!r} is {width}x{height} pixels, "
        f"smaller than image_size = {image_size}; it must be at least "
        f"{image_size} pixels on each side to crop {image_size}x{image_size} "
        f"windows")
  short = _at_scale(_PAINTING_HEIGHT_AT_64, image_size)
  scale = short / min(width, height)
  size = (max(short, round(width * scale)), max(short, round(height * scale)))
  resized = rgb.resize(size, Image.Resampling.LANCZOS)
  return np.asarray(resized, np.float32) / 255.0


class ScreamDSprites(DSpritesWithNuisance):
  """A crop of a painting, averaged with a random colour, as background;
  the sprite inverts it (1 - background)."""

  name = "scream_dsprites"

  def __init__(self, image_size: int = 64, nuisance_seed: int = 0,
               painting: np.ndarray | None = None):
    """`painting` is float [H, W, 3] in [0, 1] with H, W >= image_size;
    None uses `procedural_painting` at ceil(274 S / 64) x ceil(350 S / 64)."""
    super().__init__(image_size, nuisance_seed)
    size = self.image_size
    if painting is None:
      painting = procedural_painting(_at_scale(_PAINTING_HEIGHT_AT_64, size),
                                     _at_scale(_PAINTING_WIDTH_AT_64, size))
    painting = np.asarray(painting, np.float32)
    if painting.ndim != 3 or painting.shape[2] != 3:
      raise ValueError(f"scream_dsprites painting must be [H, W, 3], got "
                       f"shape {painting.shape}")
    if min(painting.shape[:2]) < size:
      raise ValueError(f"scream_dsprites painting is {painting.shape[0]}x"
                       f"{painting.shape[1]}, smaller than image_size = "
                       f"{size}")
    if not (np.all(np.isfinite(painting)) and painting.min() >= 0.0
            and painting.max() <= 1.0):
      raise ValueError("scream_dsprites painting values must lie in [0, 1]")
    self.painting = jnp.asarray(painting)  # device constant [H, W, 3]

  def crops(self, factors: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Each tuple's crop corner (row, column) in the painting, int32 [n, 2],
    and colour offset from uniform(0, 1)^3, float32 [n, 3]."""
    return self._crops(self.nuisance_keys(factors))

  def _crops(self, keys: jax.Array) -> tuple[jax.Array, jax.Array]:
    height, width, _ = self.painting.shape
    span = jnp.array([height, width], jnp.int32) - self.image_size + 1

    def draw(key: jax.Array) -> tuple[jax.Array, jax.Array]:
      corner_key, offset_key = jax.random.split(key)
      # Every window fits: corner in [0, H - S] x [0, W - S].
      corner = jax.random.randint(corner_key, (2,), 0, span, jnp.int32)
      offset = jax.random.uniform(offset_key, (3,), jnp.float32)
      return corner, offset

    return jax.vmap(draw)(keys)

  def backgrounds(self, factors: jax.Array) -> jax.Array:
    """Each tuple's background before the sprite is drawn, float32
    [n, S, S, 3] in [0, 1]: (painting crop + colour offset) / 2."""
    return self._backgrounds(self.nuisance_keys(factors))

  def _backgrounds(self, keys: jax.Array) -> jax.Array:
    corners, offsets = self._crops(keys)
    window = (self.image_size, self.image_size, 3)

    def crop(corner: jax.Array) -> jax.Array:
      return jax.lax.dynamic_slice(self.painting, (corner[0], corner[1], 0),
                                   window)

    return (jax.vmap(crop)(corners) + offsets[:, None, None, :]) * 0.5

  def compose(self, masks: jax.Array, keys: jax.Array) -> jax.Array:
    background = self._backgrounds(keys)
    return jnp.where(masks > 0.5, 1.0 - background, background)


# ---------------------------------------------------------------- builders

@DATASETS.register("color_dsprites")
def color_dsprites(image_size: int = 64,
                   nuisance_seed: int = 0) -> GroundTruthDataset:
  """Colour dSprites at `image_size` (a multiple of 16): the sprite in a
  colour from uniform(0.5, 1)^3 on black, fixed per factor tuple by
  `nuisance_seed` (dlib redraws it at every load)."""
  return ColorDSprites(image_size, nuisance_seed)


@DATASETS.register("noisy_dsprites")
def noisy_dsprites(image_size: int = 64,
                   nuisance_seed: int = 0) -> GroundTruthDataset:
  """Noisy dSprites at `image_size` (a multiple of 16): min(sprite +
  uniform(0, 1) noise per pixel and channel, 1), the noise fixed per factor
  tuple by `nuisance_seed` (dlib redraws it at every load)."""
  return NoisyDSprites(image_size, nuisance_seed)


@DATASETS.register("scream_dsprites")
def scream_dsprites(image_size: int = 64, nuisance_seed: int = 0,
                    painting_path: str = "") -> GroundTruthDataset:
  """Scream dSprites at `image_size` (a multiple of 16): background = (a
  crop of a painting + uniform(0, 1)^3) / 2, sprite = 1 - background; crop
  and colour fixed per factor tuple by `nuisance_seed` (dlib redraws them at
  every load).

  `painting_path` names an image of the painting (resized so its shorter
  side is ceil(274 S / 64)); empty uses a procedural swirling texture that
  disentax generates, so numbers on it are not comparable with papers that
  used the real painting (Munch's The Scream).
  """
  painting = None
  if painting_path:
    painting = load_painting(painting_path, check_image_size(image_size))
  return ScreamDSprites(image_size, nuisance_seed, painting)
