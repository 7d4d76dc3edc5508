"""Known-answer tests for the correlated triangle dataset (DEFT journal 5.4)."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from disentax.data import DATASETS, make_dataset
from disentax.data.triangle import (CorrelatedTriangle, orientation_bin,
                                    position_values, render_triangles)

# Default grid: 16 positions per axis over [6, 26] px (step 4/3), so index 7
# is 15.33 px and index 8 is 16.67 px, either side of the centre 16.
STEP = 20 / 15


@functools.cache
def dataset(num_positions=16, num_orientations=16):
  return CorrelatedTriangle(num_positions, num_orientations)


@functools.cache
def jitted(ds):
  return jax.jit(ds.observations_from_factors)


def render(ds, factors) -> np.ndarray:
  """Images [n, 32, 32] as numpy for the given factor rows."""
  return np.asarray(jitted(ds)(jnp.asarray(factors, jnp.int32)))[..., 0]


def grid_images(ds):
  """(factors [N, 3], positions [N, 2] in px, images [N, 32, 32]) of every
  point, in index order."""
  factors = np.asarray(ds.factors_from_index(jnp.arange(ds.num_points)))
  positions = np.asarray(ds.factor_values(jnp.asarray(factors)))
  return factors, positions, render(ds, factors)


def lit_xy(image: np.ndarray) -> np.ndarray:
  """Pixel-centre (x, y) coordinates of the lit pixels, [k, 2]."""
  rows, cols = np.nonzero(image)
  return np.stack([cols + 0.5, rows + 0.5], axis=1)


def test_builder_defaults():
  ds = make_dataset({"name": "triangle"})
  assert isinstance(ds, CorrelatedTriangle) and ds.name == "triangle"
  assert ds.factor_names == ("pos_x", "pos_y", "orientation")
  assert ds.factor_sizes == (16, 16, 16) and ds.num_factors == 3
  assert ds.observation_shape == (32, 32, 1)
  assert ds.num_points == 256           # the position grid, not 16 ** 3
  small = make_dataset({"name": "triangle", "num_positions": 4,
                        "num_orientations": 8})
  assert small.factor_sizes == (4, 4, 8) and small.num_points == 16


def test_positions_are_even_grid_off_centre():
  np.testing.assert_allclose(position_values(16), 6 + STEP * np.arange(16))
  np.testing.assert_allclose(position_values(2), [6, 26])
  for n in (2, 4, 16, 20):
    assert np.min(np.abs(position_values(n) - 16)) > 0.5, n


@pytest.mark.parametrize("kwargs, message", [
    ({"num_positions": 15}, r"num_positions must be an even int in \[2, 20\], got 15"),
    ({"num_positions": 0}, r"num_positions.*\[2, 20\].*got 0"),
    ({"num_positions": 22}, r"num_positions.*got 22"),
    ({"num_positions": 16.0}, r"num_positions.*got 16\.0"),
    ({"num_positions": True}, r"num_positions.*got True"),
    ({"num_orientations": 1}, r"num_orientations must be an int in \[2, 64\], got 1"),
    ({"num_orientations": 65}, r"num_orientations.*got 65"),
    ({"num_orientations": "16"}, r"num_orientations.*got '16'"),
])
def test_builder_rejects_bad_values(kwargs, message):
  with pytest.raises(ValueError, match=message):
    make_dataset({"name": "triangle", **kwargs})
  with pytest.raises(ValueError, match=message):
    DATASETS.get("triangle")(**kwargs)


def test_builder_rejects_unknown_keys():
  with pytest.raises(ValueError, match=r"image_size.*allowed"):
    make_dataset({"name": "triangle", "image_size": 64})


def test_observations_binary_inside_canvas_and_distinct():
  ds = dataset()
  factors, _, images = grid_images(ds)
  assert images.shape == (256, 32, 32) and images.dtype == np.float32
  assert set(np.unique(images)) == {0.0, 1.0}
  # Area of the 8 x 6 triangle is 24 px; none is clipped by the border.
  area = images.sum(axis=(1, 2))
  assert area.min() >= 20 and area.max() <= 30, (area.min(), area.max())
  border = images[:, [0, -1], :].sum() + images[:, :, [0, -1]].sum()
  assert border == 0
  assert len({image.tobytes() for image in images}) == 256
  np.testing.assert_array_equal(factors[:, 2],
                                ds.orientation_table[factors[:, 0],
                                                     factors[:, 1]])


def test_deterministic_and_jit_invariant():
  ds = dataset()
  factors = ds.sample_factors(jax.random.key(0), 64)
  eager = np.asarray(ds.observations_from_factors(factors))[..., 0]
  np.testing.assert_array_equal(
      eager, np.asarray(ds.observations_from_factors(factors))[..., 0])
  np.testing.assert_array_equal(eager, render(ds, factors))


def test_pos_x_alone_changes_pixels_and_orientation_column_is_ignored():
  ds = dataset()
  a, b, a_again, a_relabelled = render(
      ds, [[3, 5, 1], [4, 5, 1], [3, 5, 1], [3, 5, 9]])
  assert np.any(a != b)
  np.testing.assert_array_equal(a, a_again)
  np.testing.assert_array_equal(a, a_relabelled)


def test_sample_under_jit_and_vmap():
  ds = dataset()
  sample = jax.jit(jax.vmap(lambda key: ds.sample(key, 8)))
  factors, observations = sample(jax.random.split(jax.random.key(1), 3))
  assert factors.shape == (3, 8, 3) and factors.dtype == jnp.int32
  assert observations.shape == (3, 8, 32, 32, 1)
  np.testing.assert_array_equal(observations[2][..., 0],
                                render(ds, factors[2]))


def test_sample_factors_uniform_positions_and_derived_orientation():
  ds = dataset()
  factors = np.asarray(jax.jit(ds.sample_factors, static_argnums=1)(
      jax.random.key(2), 20_000))
  assert factors.shape == (20_000, 3) and factors.dtype == np.int32
  for k in (0, 1):
    counts = np.bincount(factors[:, k], minlength=16)
    assert len(counts) == 16 and counts.min() > 1000   # ~1250 each
  assert abs(np.corrcoef(factors[:, 0], factors[:, 1])[0, 1]) < 0.05
  # Orientation is a function of the position: recompute it by hand.
  x = 6 + STEP * factors[:, 0]
  y = 6 + STEP * factors[:, 1]
  angle = np.arctan2(y - 16, x - 16)
  expected = np.floor((angle + np.pi) / (2 * np.pi / 16) + 1e-9) % 16
  np.testing.assert_array_equal(factors[:, 2], expected)


# (pos_x, pos_y) -> bin of arctan2(y - 16, x - 16) among 16 bins of width
# pi / 8 starting at -pi: bin = floor((angle + pi) / (pi / 8)).
HAND_PICKED = [
    # right of the centre, just below / above the axis: angle ~ +-0.067
    ((15, 8), 8), ((15, 7), 7),
    # left of the centre: angle ~ pi - 0.067 and -pi + 0.067
    ((0, 8), 15), ((0, 7), 0),
    # below the centre (y grows downwards): atan2(10, 0.67) = 1.504 -> 11.83
    ((8, 15), 11),
    # above the centre: atan2(-10, -0.67) = -1.637 -> 3.83
    ((7, 0), 3),
    # diagonals, exactly on bin edges (edge belongs to the bin it starts):
    # pi/4 -> 10, -pi/4 -> 6, 3pi/4 -> 14, -3pi/4 -> 2
    ((15, 15), 10), ((15, 0), 6), ((0, 15), 14), ((0, 0), 2),
]


@pytest.mark.parametrize("position, expected", HAND_PICKED)
def test_orientation_bin_of_hand_picked_positions(position, expected):
  ds = dataset()
  x, y = (6 + STEP * i for i in position)
  if position not in ((15, 15), (15, 0), (0, 15), (0, 0)):   # not on an edge
    assert math.floor((math.atan2(y - 16, x - 16) + math.pi)
                      / (math.pi / 8)) == expected
  assert int(ds.orientation_from_positions(*position)) == expected
  index = position[0] * 16 + position[1]
  np.testing.assert_array_equal(ds.factors_from_index(index),
                                [*position, expected])


def test_orientation_bin_edges_and_wrap():
  w = 2 * np.pi / 16
  np.testing.assert_array_equal(
      orientation_bin([-np.pi, -np.pi + w, 0.0, -1e-6, np.pi - 1e-6, np.pi],
                      16),
      [0, 1, 8, 7, 15, 0])
  # Four bins: quadrants of [-pi, pi).
  four = dataset(16, 4)
  assert [int(four.orientation_from_positions(*p))
          for p in [(15, 8), (15, 7), (8, 15), (0, 0)]] == [2, 1, 2, 0]


def test_centroid_at_position_and_apex_toward_centre():
  _, positions, images = grid_images(dataset())
  for (x, y), image in zip(positions, images):
    lit = lit_xy(image)
    centroid = lit.mean(axis=0)
    assert np.hypot(*(centroid - (x, y))) < 0.5, (x, y, centroid)
    # The lit pixel farthest from the centroid is the apex: it lies in the
    # direction of the canvas centre (within 20 degrees).
    apex = lit[np.argmax(np.hypot(*(lit - centroid).T))] - centroid
    to_centre = np.array([16 - x, 16 - y])
    cos = apex @ to_centre / np.linalg.norm(apex) / np.linalg.norm(to_centre)
    assert cos > math.cos(math.radians(20)), (x, y, apex)


def test_triangle_right_of_centre_extends_further_left():
  ds = dataset()
  for pos_y in (7, 8):
    image = render(ds, [[15, pos_y, 0]])[0]       # x = 26 px
    cols = lit_xy(image)[:, 0]
    centroid = cols.mean()
    # Apex 16/3 px toward the centre (left), base 8/3 px behind (right).
    assert centroid - cols.min() > 4 and cols.max() - centroid < 3.5
    assert cols.max() < 29.5 and cols.min() > 20


def test_continuous_render_on_axes_is_symmetric_and_rotates():
  right, below, left, above = (np.asarray(render_triangles(jnp.array(
      [[26.0, 16.0], [16.0, 26.0], [6.0, 16.0], [16.0, 6.0]])))[..., 0])
  # Exactly right of the centre (angle 0): mirror-symmetric about row 16,
  # apex on the left.
  np.testing.assert_array_equal(right, np.flipud(right))
  rows, cols = np.nonzero(right)
  assert cols[rows == 15].min() < cols.min() + 1    # tip on the middle rows
  # Quarter turns of the canvas map the four axis triangles onto each other.
  np.testing.assert_array_equal(np.rot90(right, 1), above)
  np.testing.assert_array_equal(np.rot90(right, 2), left)
  np.testing.assert_array_equal(np.rot90(right, 3), below)
  # At the exact centre the angle is defined as 0: same shape as `right`.
  centre = np.asarray(render_triangles(jnp.array([[16.0, 16.0]])))[0, ..., 0]
  np.testing.assert_array_equal(np.roll(centre, 10, axis=1), right)


def test_index_round_trip_covers_each_position_once():
  ds = dataset()
  index = jnp.arange(ds.num_points)
  factors = np.asarray(jax.jit(ds.factors_from_index)(index))
  assert factors.shape == (256, 3) and factors.dtype == np.int32
  np.testing.assert_array_equal(jax.jit(ds.index_from_factors)(factors), index)
  # Row-major over (pos_x, pos_y), each position exactly once.
  np.testing.assert_array_equal(factors[:, 0], np.repeat(np.arange(16), 16))
  np.testing.assert_array_equal(factors[:, 1], np.tile(np.arange(16), 16))
  # index_from_factors ignores the orientation column.
  relabelled = factors.copy()
  relabelled[:, 2] = (relabelled[:, 2] + 5) % 16
  np.testing.assert_array_equal(ds.index_from_factors(relabelled), index)
