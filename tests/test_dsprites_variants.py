"""Known-answer tests for colour, noisy and scream dSprites."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from disentax.data import DATASETS, make_dataset
from disentax.data.dsprites import ProceduralDSprites
from disentax.data.dsprites_variants import (ColorDSprites, NoisyDSprites,
                                             ScreamDSprites,
                                             procedural_painting)

NAMES = ("color_dsprites", "noisy_dsprites", "scream_dsprites")
SIZE = 16
PAD = 64


@functools.cache
def dataset(name: str, image_size: int = SIZE, nuisance_seed: int = 0):
  return make_dataset({"name": name, "image_size": image_size,
                       "nuisance_seed": nuisance_seed})


@functools.cache
def jitted(ds, method: str = "observations_from_factors"):
  # Eager dispatch compiles every op separately, which is slower in tests.
  return jax.jit(getattr(ds, method))


def call(ds, factors, method: str = "observations_from_factors"):
  """`ds.method(factors)` under jit as numpy. Rows are padded to a multiple
  of PAD so every call of a method shares one compilation."""
  factors = np.asarray(factors, np.int32)
  num = len(factors)
  padded = np.resize(factors, (-(-num // PAD) * PAD, factors.shape[1]))
  out = jitted(ds, method)(jnp.asarray(padded))
  return jax.tree.map(lambda x: np.asarray(x)[:num], out)


def masks(ds, factors) -> np.ndarray:
  """The clean binary sprites [n, S, S, 1] (plain dSprites)."""
  return call(ds, factors, "masks")


def some_factors(num: int = 64, seed: int = 0) -> np.ndarray:
  return np.asarray(ProceduralDSprites(SIZE).sample_factors(
      jax.random.key(seed), num))


# ---------------------------------------------------------------- interface

@pytest.mark.parametrize("name", NAMES)
def test_builder_defaults_and_factors(name):
  ds = make_dataset({"name": name})
  assert ds.name == name
  assert ds.observation_shape == (64, 64, 3) and ds.image_size == 64
  assert ds.nuisance_seed == 0
  assert ds.factor_names == ("shape", "scale", "orientation", "posX", "posY")
  assert ds.factor_sizes == (3, 6, 40, 32, 32)
  assert ds.num_points == 737_280
  expected = ["image_size", "nuisance_seed"] + (
      ["painting_path"] if name == "scream_dsprites" else [])
  assert DATASETS.allowed_keys(name) == expected


@pytest.mark.parametrize("name", NAMES)
def test_bad_options_raise(name):
  with pytest.raises(ValueError, match=r"multiple of 16.*24"):
    make_dataset({"name": name, "image_size": 24})
  for bad in (-1, 2 ** 31, 1.5, True):
    with pytest.raises(ValueError, match="nuisance_seed"):
      make_dataset({"name": name, "nuisance_seed": bad})
  with pytest.raises(ValueError, match="unknown key"):
    make_dataset({"name": name, "colour": 1})


@pytest.mark.parametrize("name", NAMES)
def test_observations_are_deterministic_per_tuple(name):
  ds = dataset(name)
  factors = some_factors(32)
  batch = np.concatenate([factors, factors[::-1]])
  images = call(ds, batch)
  assert images.shape == (64, SIZE, SIZE, 3) and images.dtype == np.float32
  # The same tuple twice in one batch, and in a separate call with other
  # neighbours, gives identical pixels.
  np.testing.assert_array_equal(images[:32], images[32:][::-1])
  np.testing.assert_array_equal(images[:32], call(ds, factors))
  np.testing.assert_array_equal(images[5:9], call(ds, factors[5:9]))
  # Distinct tuples get distinct nuisance.
  assert not np.array_equal(images[0], images[1])
  # A fresh instance draws the same nuisance; another seed another one.
  key_data = lambda d: np.asarray(jax.random.key_data(
      d.nuisance_keys(jnp.asarray(factors))))
  np.testing.assert_array_equal(key_data(DATASETS.get(name)(SIZE)),
                                key_data(ds))
  other = key_data(DATASETS.get(name)(SIZE, nuisance_seed=1))
  assert np.all(np.any(other != key_data(ds), axis=-1))


@pytest.mark.parametrize("name", NAMES)
def test_changing_one_factor_changes_pixels(name):
  ds = dataset(name)
  base = np.array([1, 3, 7, 12, 20])
  rows = [base]
  for k in range(5):
    changed = base.copy()
    changed[k] += 1
    rows.append(changed)
  images = call(ds, np.stack(rows))
  for k in range(5):
    assert np.any(images[k + 1] != images[0]), ds.factor_names[k]


@pytest.mark.parametrize("name", NAMES)
def test_sample_under_jit_and_vmap(name):
  # Per-seed batches, as in the vmapped train step.
  ds = dataset(name)
  sample = jax.jit(jax.vmap(lambda key: ds.sample(key, 8)))
  factors, images = sample(jax.random.split(jax.random.key(3), 3))
  assert factors.shape == (3, 8, 5) and images.shape == (3, 8, SIZE, SIZE, 3)
  images = np.asarray(images)
  assert images.min() >= 0.0 and images.max() <= 1.0
  np.testing.assert_array_equal(images[2], call(ds, factors[2]))


def test_varying_one_traced_factor():
  # DEFT's per-factor annealing test passes the varied factor traced.
  ds = dataset("scream_dsprites")
  vary = jax.jit(lambda factor: ds.sample_varying_one_factor(
      jax.random.key(0), jax.random.key(1), factor, 8))
  factors, images = vary(jnp.int32(3))
  kept = np.asarray(factors)[:, [0, 1, 2, 4]]
  np.testing.assert_array_equal(kept, np.broadcast_to(kept[:1], kept.shape))
  assert len(np.unique(np.asarray(factors)[:, 3])) > 1
  np.testing.assert_array_equal(images, call(ds, factors))


# ------------------------------------------------------------ known answers

def test_color_is_sprite_times_colour_on_black():
  ds = dataset("color_dsprites")
  assert isinstance(ds, ColorDSprites)
  factors = some_factors(128)
  images, colours = call(ds, factors), call(ds, factors, "colours")
  mask = masks(ds, factors)
  assert colours.shape == (128, 3)
  assert colours.min() >= 0.5 and colours.max() <= 1.0
  assert colours.std(axis=0).min() > 0.1       # spread over [0.5, 1)
  np.testing.assert_array_equal(images, mask * colours[:, None, None, :])
  np.testing.assert_array_equal(  # the masks are plain procedural dSprites
      mask, jax.jit(ProceduralDSprites(SIZE).observations_from_factors)(
          jnp.asarray(factors)))
  assert np.all(images[np.broadcast_to(mask == 0, images.shape)] == 0.0)
  sprite = images[np.broadcast_to(mask == 1, images.shape)]
  assert sprite.min() >= 0.5 and sprite.max() <= 1.0


def test_noisy_is_clean_plus_noise_clipped():
  ds = dataset("noisy_dsprites")
  assert isinstance(ds, NoisyDSprites)
  factors = some_factors(64)
  images, noise = call(ds, factors), call(ds, factors, "noise")
  mask = np.broadcast_to(masks(ds, factors), images.shape)
  assert np.all(images >= mask) and np.all(images <= 1.0)
  assert np.all(images[mask == 1] == 1.0)
  np.testing.assert_array_equal(images[mask == 0], noise[mask == 0])
  background = images[mask == 0]
  assert background.min() >= 0.0 and background.max() < 1.0
  assert abs(background.mean() - 0.5) < 0.02   # uniform(0, 1) per value
  # Independent per pixel and channel: channels and neighbours differ.
  assert np.mean(noise[..., 0] == noise[..., 1]) < 0.01
  assert np.mean(noise[:, 1:] == noise[:, :-1]) < 0.01


def test_scream_sprite_inverts_the_background():
  ds = dataset("scream_dsprites")
  assert isinstance(ds, ScreamDSprites)
  factors = some_factors(64)
  images = call(ds, factors)
  background = call(ds, factors, "backgrounds")
  mask = np.broadcast_to(masks(ds, factors), images.shape)
  np.testing.assert_array_equal(images[mask == 1], 1.0 - background[mask == 1])
  np.testing.assert_array_equal(images[mask == 0], background[mask == 0])
  assert images.min() >= 0.0 and images.max() <= 1.0
  # Background = (crop of the painting at the drawn corner + offset) / 2.
  corners, offsets = call(ds, factors, "crops")
  painting = np.asarray(ds.painting)
  height, width, _ = painting.shape
  assert corners.min() >= 0
  assert corners[:, 0].max() <= height - SIZE
  assert corners[:, 1].max() <= width - SIZE
  assert len({tuple(c) for c in corners}) > 50  # crops move around
  assert offsets.min() >= 0.0 and offsets.max() < 1.0
  for (row, col), offset, got in zip(corners, offsets, background):
    window = painting[row:row + SIZE, col:col + SIZE]
    np.testing.assert_allclose(got, (window + offset) / 2, atol=1e-6)


def test_default_painting_is_a_colourful_smooth_texture():
  ds = make_dataset({"name": "scream_dsprites"})
  painting = np.asarray(ds.painting)
  assert painting.shape == (274, 350, 3) and painting.dtype == np.float32
  assert painting.min() >= 0.0 and painting.max() <= 1.0
  # Oranges above, blues below; smooth from pixel to pixel.
  red, blue = painting[..., 0], painting[..., 2]
  assert np.mean(red > blue + 0.3) > 0.2 and np.mean(blue > red + 0.3) > 0.2
  assert np.abs(np.diff(painting, axis=0)).max() < 0.2
  assert np.abs(np.diff(painting, axis=1)).max() < 0.2
  # It scales with the image size: the same scene at fewer pixels.
  assert np.asarray(dataset("scream_dsprites").painting).shape == (69, 88, 3)
  small = procedural_painting(137, 175)
  np.testing.assert_allclose(small, painting[::2, ::2], atol=0.15)


# ------------------------------------------------------------ painting file

def write_png(path, width: int, height: int, colour=None) -> None:
  if colour is None:  # a gradient, so crops differ
    rows = np.linspace(0, 255, height)[:, None]
    cols = np.linspace(0, 255, width)[None, :]
    pixels = np.stack(np.broadcast_arrays(rows, cols, 255 - rows), axis=-1)
  else:
    pixels = np.broadcast_to(np.array(colour), (height, width, 3))
  Image.fromarray(pixels.astype(np.uint8)).save(path)


def test_painting_path_loads_the_users_image(tmp_path):
  path = tmp_path / "painting.png"
  write_png(path, 40, 24, colour=(200, 100, 50))
  ds = make_dataset({"name": "scream_dsprites", "image_size": SIZE,
                     "painting_path": str(path)})
  painting = np.asarray(ds.painting)
  # Shorter side resized to ceil(274 * 16 / 64) = 69, aspect kept.
  assert painting.shape == (69, 115, 3) and painting.dtype == np.float32
  np.testing.assert_allclose(painting, np.broadcast_to(
      np.array([200, 100, 50]) / 255, painting.shape), atol=1 / 255)
  # Background = (colour + offset in [0, 1)^3) / 2: flat per image.
  colour = np.array([200, 100, 50]) / 255
  background = call(ds, some_factors(16), "backgrounds")
  flat = background.reshape(16, -1, 3)
  np.testing.assert_allclose(flat, np.broadcast_to(flat[:, :1], flat.shape),
                             atol=1 / 255)
  assert np.all(flat >= colour / 2 - 1 / 255)
  assert np.all(flat <= (colour + 1) / 2 + 1 / 255)

  gradient = tmp_path / "gradient.png"
  write_png(gradient, 300, 500)   # portrait, larger than needed: shrunk
  ds = DATASETS.get("scream_dsprites")(SIZE, painting_path=str(gradient))
  painting = np.asarray(ds.painting)
  assert painting.shape == (115, 69, 3)
  assert painting.min() >= 0.0 and painting.max() <= 1.0
  # Red grows down the rows, green along the columns, blue falls.
  assert np.all(np.diff(painting[:, 30, 0]) >= 0)
  assert np.all(np.diff(painting[50, :, 1]) >= 0)
  assert painting[0, 0, 2] > 0.95 and painting[-1, 0, 2] < 0.05


def test_painting_path_errors_name_the_file(tmp_path):
  missing = tmp_path / "nowhere" / "scream.png"
  with pytest.raises(ValueError, match=r"nowhere.*does not exist"):
    make_dataset({"name": "scream_dsprites", "painting_path": str(missing)})
  garbage = tmp_path / "garbage.png"
  garbage.write_text("not an image")
  with pytest.raises(ValueError, match=r"garbage\.png.*cannot read"):
    make_dataset({"name": "scream_dsprites", "painting_path": str(garbage)})
  tiny = tmp_path / "tiny.png"
  write_png(tiny, 40, 12)
  with pytest.raises(ValueError, match=r"tiny\.png.*40x12.*image_size = 16"):
    make_dataset({"name": "scream_dsprites", "image_size": SIZE,
                  "painting_path": str(tiny)})
  with pytest.raises(ValueError, match="smaller than image_size"):
    ScreamDSprites(SIZE, painting=np.zeros((8, 32, 3)))
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    ScreamDSprites(SIZE, painting=np.full((32, 32, 3), 255.0))


# --------------------------------------------------------------- DEFT presets

@pytest.mark.parametrize("preset, name", [("color", "color_dsprites"),
                                          ("scream", "scream_dsprites")])
def test_deft_presets_build(preset, name):
  from disentax.experiment import build
  from experiments import deft
  exp = build(deft.get_config(preset))
  assert exp.dataset.name == name
  assert exp.dataset.observation_shape == (64, 64, 3)
