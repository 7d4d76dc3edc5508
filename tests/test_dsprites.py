"""Known-answer tests for the dSprites datasets (procedural and npz)."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from disentax.data import DATASETS, make_dataset
from disentax.data.dsprites import (FACTOR_SIZES, NpzDSprites,
                                    ProceduralDSprites)

SQUARE, ELLIPSE, HEART = 0, 1, 2


@functools.cache
def jitted(dataset):
  # Eager dispatch compiles every op separately, which is slower in tests.
  return jax.jit(dataset.observations_from_factors)


def render(dataset, factors) -> np.ndarray:
  """Images [n, S, S] as numpy for the given factor rows."""
  return np.asarray(jitted(dataset)(jnp.asarray(factors, jnp.int32)))[..., 0]


def centroid(image: np.ndarray) -> tuple[float, float]:
  """(row, column) centre of mass of a binary image."""
  rows, cols = np.nonzero(image)
  return rows.mean(), cols.mean()


# ------------------------------------------------------------- procedural

def test_builder_defaults_to_procedural_64():
  dataset = make_dataset({"name": "dsprites"})
  assert isinstance(dataset, ProceduralDSprites)
  assert dataset.name == "dsprites"
  assert dataset.observation_shape == (64, 64, 1)
  assert dataset.factor_names == ("shape", "scale", "orientation", "posX",
                                  "posY")
  assert dataset.factor_sizes == (3, 6, 40, 32, 32)
  assert dataset.num_points == 737_280


@pytest.mark.parametrize("bad", [40, 0, -16, 24, 8])
def test_image_size_not_multiple_of_16_raises(bad):
  with pytest.raises(ValueError, match=rf"multiple of 16.*{bad}"):
    ProceduralDSprites(bad)
  with pytest.raises(ValueError, match=str(bad)):
    make_dataset({"name": "dsprites", "image_size": bad})


def test_render_is_deterministic_binary_and_jit_invariant():
  dataset = ProceduralDSprites(32)
  factors = dataset.sample_factors(jax.random.key(0), 512)
  eager = np.asarray(dataset.observations_from_factors(factors))[..., 0]
  assert eager.shape == (512, 32, 32) and eager.dtype == np.float32
  np.testing.assert_array_equal(
      eager, np.asarray(dataset.observations_from_factors(factors))[..., 0])
  np.testing.assert_array_equal(eager, render(dataset, factors))
  assert set(np.unique(eager)) == {0.0, 1.0}
  assert eager.reshape(512, -1).sum(axis=1).min() > 0  # nothing off-canvas


def test_sample_returns_matching_observations_under_jit_and_vmap():
  dataset = ProceduralDSprites(16)
  sample = jax.jit(jax.vmap(lambda key: dataset.sample(key, 8)))
  factors, observations = sample(jax.random.split(jax.random.key(1), 3))
  assert factors.shape == (3, 8, 5) and observations.shape == (3, 8, 16, 16, 1)
  np.testing.assert_array_equal(observations[1][..., 0],
                                render(dataset, factors[1]))


def test_three_shapes_are_distinct_and_non_empty():
  dataset = ProceduralDSprites(32)
  images = render(dataset, [[s, 5, 3, 16, 16] for s in range(3)])
  assert images.reshape(3, -1).sum(axis=1).min() > 20
  for a in range(3):
    for b in range(a + 1, 3):
      assert np.any(images[a] != images[b]), (a, b)


def test_shapes_have_known_areas_at_64px():
  # Largest scale, r = 0.14 canvas = 8.96 px: square (2r)^2, ellipse
  # pi r (r/2), heart in between. Pixel sampling is accurate to ~ the
  # perimeter, so allow 10%.
  dataset = ProceduralDSprites(64)
  area = render(dataset, [[s, 5, 0, 15, 15] for s in range(3)]).sum(axis=(1, 2))
  r = 0.14 * 64
  np.testing.assert_allclose(area[SQUARE], (2 * r) ** 2, rtol=0.1)
  np.testing.assert_allclose(area[ELLIPSE], math.pi * r * r / 2, rtol=0.1)
  assert area[ELLIPSE] < area[HEART] < area[SQUARE]


@pytest.mark.parametrize("image_size", [32, 64])
@pytest.mark.parametrize("shape", [SQUARE, ELLIPSE, HEART])
def test_position_moves_centroid_by_expected_pixels(image_size, shape):
  dataset = ProceduralDSprites(image_size)
  lo, hi = 3, 27
  expected = 0.6 * image_size * (hi - lo) / 31
  images = render(dataset, [[shape, 4, 7, lo, 10], [shape, 4, 7, hi, 10],
                            [shape, 4, 7, 10, lo], [shape, 4, 7, 10, hi]])
  (r0, c0), (r1, c1), (r2, c2), (r3, c3) = map(centroid, images)
  # posX moves along columns only, posY along rows (downwards) only.
  assert abs((c1 - c0) - expected) < 1 and abs(r1 - r0) < 1
  assert abs((r3 - r2) - expected) < 1 and abs(c3 - c2) < 1


@pytest.mark.parametrize("shape", [SQUARE, ELLIPSE, HEART])
def test_scale_increases_pixel_count(shape):
  dataset = ProceduralDSprites(32)
  counts = render(dataset, [[shape, k, 5, 16, 16] for k in range(6)]).sum(
      axis=(1, 2))
  assert np.all(np.diff(counts) > 0), counts


def test_orientation_rotates_heart_which_points_down_at_zero():
  dataset = ProceduralDSprites(64)
  upright, quarter, half = render(dataset, [[HEART, 5, k, 15, 15]
                                            for k in (0, 10, 20)])
  assert np.any(upright != quarter) and np.any(upright != half)
  # Lobes on top, tip at the bottom: more mass above the centroid row.
  row, _ = centroid(upright)
  rows = np.nonzero(upright)[0]
  assert np.sum(rows < row) > np.sum(rows > row)
  # Half a turn flips it upside down (up to pixel sampling).
  assert np.mean(np.flipud(half) != upright) < 0.02


def test_square_is_symmetric_under_quarter_turn():
  dataset = ProceduralDSprites(64)
  zero, quarter = render(dataset, [[SQUARE, 5, 0, 15, 15],
                                   [SQUARE, 5, 10, 15, 15]])
  assert np.mean(zero != quarter) < 0.01


def test_same_scene_at_lower_resolution():
  big, small = ProceduralDSprites(64), ProceduralDSprites(16)
  factors = big.sample_factors(jax.random.key(2), 64)
  pooled = render(big, factors).reshape(64, 16, 4, 16, 4).mean(axis=(2, 4))
  # Pixels fully inside or outside at 64px agree with the 16px rendering.
  decided = (pooled == 0) | (pooled == 1)
  np.testing.assert_array_equal(render(small, factors)[decided],
                                pooled[decided])


def test_factor_values():
  dataset = ProceduralDSprites(16)
  values = np.asarray(dataset.factor_values(
      jnp.array([[0, 0, 0, 0, 0], [2, 5, 39, 31, 31], [1, 1, 10, 1, 2]])))
  np.testing.assert_allclose(values[0], [0, 0.5, 0, 0, 0], atol=1e-7)
  np.testing.assert_allclose(values[1], [2, 1, 39 * 2 * np.pi / 40, 1, 1],
                             rtol=1e-6)
  np.testing.assert_allclose(values[2], [1, 0.6, np.pi / 2, 1 / 31, 2 / 31],
                             rtol=1e-6)


def test_grid_index_round_trip_is_a_bijection():
  dataset = ProceduralDSprites(16)
  index = jnp.arange(dataset.num_points)
  factors = jax.jit(dataset.factors_from_index)(index)
  np.testing.assert_array_equal(
      jax.jit(dataset.index_from_factors)(factors), index)
  factors = np.asarray(factors, np.int64)
  assert factors.min() == 0
  np.testing.assert_array_equal(factors.max(axis=0), np.array(FACTOR_SIZES) - 1)
  code = factors[:, 0]
  for k in range(1, 5):  # mixed-radix code, independent of jnp's ravel
    code = code * FACTOR_SIZES[k] + factors[:, k]
  assert len(np.unique(code)) == 737_280


def test_sample_factors_in_range():
  dataset = ProceduralDSprites(16)
  factors = np.asarray(dataset.sample_factors(jax.random.key(3), 20_000))
  assert factors.shape == (20_000, 5) and factors.dtype == np.int32
  for k, size in enumerate(FACTOR_SIZES):
    assert set(np.unique(factors[:, k])) == set(range(size))


# ------------------------------------------------------------------- npz

FAKE_SIZES = (3, 2, 2, 4, 4)  # shape, scale, orientation, posX, posY


def write_fake_npz(path, *, image_size=64, shuffle=True, latents=None,
                   images=None, seed=0):
  """Writes an npz laid out like DeepMind's file; returns the factors of
  each row and the images so tests can check lookups."""
  rng = np.random.default_rng(seed)
  num = math.prod(FAKE_SIZES)
  factors = np.stack(np.unravel_index(np.arange(num), FAKE_SIZES), axis=1)
  if shuffle:
    factors = factors[rng.permutation(num)]
  if images is None:
    images = rng.integers(0, 2, (num, image_size, image_size), dtype=np.uint8)
  if latents is None:
    latents = np.concatenate([np.zeros((num, 1), np.int64), factors], axis=1)
  np.savez_compressed(path, imgs=images, latents_classes=latents,
                      latents_values=latents.astype(np.float64))
  return factors, images


def test_npz_lookup_returns_the_right_rows(tmp_path):
  path = tmp_path / "fake.npz"
  factors, images = write_fake_npz(path)
  dataset = make_dataset({"name": "dsprites", "npz_path": str(path)})
  assert isinstance(dataset, NpzDSprites) and dataset.name == "dsprites"
  assert dataset.factor_sizes == FAKE_SIZES
  assert dataset.observation_shape == (64, 64, 1)
  query = jnp.asarray(factors[::-1].copy(), jnp.int32)
  got = np.asarray(jax.jit(dataset.observations_from_factors)(query))
  assert got.dtype == np.float32 and got.shape == (len(factors), 64, 64, 1)
  np.testing.assert_array_equal(got[..., 0], images[::-1])
  sampled, observations = dataset.sample(jax.random.key(0), 16)
  assert np.asarray(sampled).max(axis=0).tolist() <= [s - 1 for s in FAKE_SIZES]
  for f, obs in zip(np.asarray(sampled), np.asarray(observations)):
    row = np.flatnonzero((factors == f).all(axis=1))
    np.testing.assert_array_equal(obs[..., 0], images[row[0]])


def test_npz_uncompressed_fortran_16px_nonbinary_values(tmp_path):
  # Fortran order takes the read-everything path instead of streaming rows;
  # any nonzero pixel counts as 1.
  path = tmp_path / "plain.npz"
  num = math.prod(FAKE_SIZES)
  factors = np.stack(np.unravel_index(np.arange(num), FAKE_SIZES), axis=1)
  images = np.random.default_rng(1).integers(0, 2, (num, 16, 16)) * 255
  latents = np.concatenate([np.zeros((num, 1)), factors], axis=1)
  np.savez(path, imgs=np.asfortranarray(images.astype(np.uint8)),
           latents_classes=latents.astype(np.int32))
  dataset = DATASETS.get("dsprites")(image_size=16, npz_path=str(path))
  got = render(dataset, factors)
  np.testing.assert_array_equal(got, images > 0)


@pytest.mark.parametrize("case, message", [
    ("imgs_2d", r"'imgs' has shape \(192, 4096\).*expected \(N, H, W\)"),
    ("imgs_not_square", r"'imgs' has shape \(192, 64, 32\)"),
    ("imgs_24px", r"'imgs' has shape \(192, 24, 24\).*multiple of 16"),
    ("five_columns", r"'latents_classes' has shape \(192, 5\).*expected"),
    ("missing_combination", r"exactly once"),
    ("duplicate_row", r"exactly once.*appears 2 times"),
])
def test_npz_bad_layout_raises(tmp_path, case, message):
  path = tmp_path / f"{case}.npz"
  num = math.prod(FAKE_SIZES)
  factors = np.stack(np.unravel_index(np.arange(num), FAKE_SIZES), axis=1)
  latents = np.concatenate([np.zeros((num, 1), np.int64), factors], axis=1)
  images = np.zeros((num, 64, 64), np.uint8)
  if case == "imgs_2d":
    images = images.reshape(num, -1)
  elif case == "imgs_not_square":
    images = images[:, :, :32]
  elif case == "imgs_24px":
    images = images[:, :24, :24]
  elif case == "five_columns":
    latents = latents[:, 1:]
  elif case == "missing_combination":
    latents, images = latents[1:], images[1:]
  elif case == "duplicate_row":
    latents = latents.copy()
    latents[5] = latents[6]
  write_fake_npz(path, latents=latents, images=images)
  with pytest.raises(ValueError, match=message) as info:
    NpzDSprites(path)
  assert str(path) in str(info.value)


def test_npz_missing_key_raises(tmp_path):
  path = tmp_path / "nokey.npz"
  np.savez(path, images=np.zeros((1, 16, 16), np.uint8))
  with pytest.raises(ValueError, match=r"missing key.*imgs"):
    NpzDSprites(path)


def test_npz_image_size_mismatch_raises(tmp_path):
  path = tmp_path / "fake.npz"
  write_fake_npz(path, image_size=32)
  with pytest.raises(ValueError, match=r"32x32.*image_size = 64"):
    make_dataset({"name": "dsprites", "npz_path": str(path)})


def test_npz_missing_file_names_the_path(tmp_path):
  path = tmp_path / "nowhere" / "dsprites.npz"
  with pytest.raises(FileNotFoundError, match="nowhere"):
    make_dataset({"name": "dsprites", "npz_path": str(path)})
