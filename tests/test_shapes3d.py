"""Known-answer tests for the procedural Shapes3D dataset."""

from __future__ import annotations

import colorsys
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from disentax.data import DATASETS, make_dataset
from disentax.data import shapes3d
from disentax.data.shapes3d import (CAPSULE, CUBE, CYLINDER, FLOOR, OBJECT,
                                    SPHERE, WALL, ProceduralShapes3D)

FLOOR_HUE, WALL_HUE, OBJECT_HUE, SCALE, SHAPE, ORIENTATION = range(6)
SIZE = 32
PAD = 64      # every batch is padded to a multiple of this: one compile


@functools.cache
def dataset(image_size: int = SIZE) -> ProceduralShapes3D:
  return ProceduralShapes3D(image_size)


@functools.cache
def _jitted(image_size: int):
  data = dataset(image_size)
  def run(factors):
    scene = shapes3d.trace_scene(data.factor_values(factors), image_size)
    return data.observations_from_factors(factors), scene.region, \
        scene.brightness
  return jax.jit(run)


def render(factors, image_size: int = SIZE):
  """(images [n, S, S, 3], region [n, S, S], brightness [n, S, S]) as numpy
  for factor rows, through one jitted function per image size."""
  factors = np.asarray(factors, np.int32).reshape(-1, 6)
  n = len(factors)
  padded = np.zeros((-(-n // PAD) * PAD, 6), np.int32)
  padded[:n] = factors
  return tuple(np.asarray(a)[:n] for a in _jitted(image_size)(padded))


def base_factors(num: int, seed: int = 0) -> np.ndarray:
  return np.asarray(dataset().sample_factors(jax.random.key(seed), num))


# ------------------------------------------------------------ the grid

def test_builder_matches_the_reference_grid():
  data = make_dataset({"name": "shapes3d"})
  assert isinstance(data, ProceduralShapes3D) and data.name == "shapes3d"
  assert data.factor_names == ("floor_hue", "wall_hue", "object_hue", "scale",
                               "shape", "orientation")
  assert data.factor_sizes == (10, 10, 10, 8, 4, 15)
  assert data.num_points == 480_000
  assert data.observation_shape == (64, 64, 3)
  assert DATASETS.allowed_keys("shapes3d") == ["image_size"]
  small = make_dataset({"name": "shapes3d", "image_size": 16})
  assert small.observation_shape == (16, 16, 3)


@pytest.mark.parametrize("bad", [40, 0, -16, 24, 8, 32.0, True])
def test_image_size_not_multiple_of_16_raises(bad):
  with pytest.raises(ValueError, match=r"multiple of 16"):
    ProceduralShapes3D(bad)
  with pytest.raises(ValueError, match=r"shapes3d image_size"):
    make_dataset({"name": "shapes3d", "image_size": bad})


def test_factor_values_follow_the_reference_spacing():
  values = np.asarray(dataset().factor_values(jnp.array(
      [[0, 0, 0, 0, 0, 0], [9, 5, 1, 7, 3, 14], [3, 3, 3, 3, 2, 7]])))
  np.testing.assert_allclose(values[0], [0, 0, 0, 0.75, 0, -np.pi / 6],
                             atol=1e-6)
  np.testing.assert_allclose(values[1], [0.9, 0.5, 0.1, 1.25, 3, np.pi / 6],
                             atol=1e-6)
  np.testing.assert_allclose(values[2], [0.3, 0.3, 0.3, 0.75 + 3 / 14, 2, 0],
                             atol=1e-6)


def test_grid_index_round_trip_covers_all_480000_tuples():
  data = dataset()
  index = jnp.arange(data.num_points)
  factors = jax.jit(data.factors_from_index)(index)
  np.testing.assert_array_equal(jax.jit(data.index_from_factors)(factors),
                                index)
  np.testing.assert_array_equal(np.asarray(factors).max(axis=0),
                                np.array(data.factor_sizes) - 1)


def test_hsv_to_rgb_matches_colorsys():
  hues = shapes3d.HUES
  got = np.asarray(shapes3d.hsv_to_rgb(jnp.asarray(hues), 0.8, 0.9))
  want = np.array([colorsys.hsv_to_rgb(h, 0.8, 0.9) for h in hues])
  np.testing.assert_allclose(got, want, atol=1e-6)


# ------------------------------------------------------------ rendering

def test_render_is_deterministic_in_range_and_jit_invariant():
  data = dataset()
  factors = base_factors(64, seed=1)
  images, _, _ = render(factors)
  assert images.shape == (64, SIZE, SIZE, 3) and images.dtype == np.float32
  assert images.min() >= 0.0 and images.max() <= 1.0
  np.testing.assert_array_equal(images, render(factors)[0])
  eager = np.asarray(data.observations_from_factors(jnp.asarray(factors)))
  np.testing.assert_allclose(eager, images, atol=1e-3)  # fusion rounding
  assert images.std() > 0.1  # not a flat colour


def test_sample_under_jit_and_vmap_matches_direct_rendering():
  data = dataset(16)
  sample = jax.jit(jax.vmap(lambda key: data.sample(key, 8)))
  factors, observations = sample(jax.random.split(jax.random.key(2), 3))
  assert factors.shape == (3, 8, 6)
  assert observations.shape == (3, 8, 16, 16, 3)
  np.testing.assert_allclose(observations[2], render(factors[2], 16)[0],
                             atol=1e-3)


def test_room_layout_wall_above_floor_below_object_in_the_middle():
  factors = [[1, 2, 3, k, s, o] for s in range(4) for k in (0, 7)
             for o in (0, 7, 14)]
  _, region, _ = render(factors)
  assert np.all(region[:, 0, :] == WALL)          # top row: wall
  assert np.all(region[:, -1, :] == FLOOR)        # bottom row: floor
  assert np.all(region[:, :, 0].min(axis=1) == FLOOR)  # edges show both
  middle = region[:, :, SIZE // 2 - 1: SIZE // 2 + 1]
  for column in middle.transpose(0, 2, 1).reshape(-1, SIZE):
    # Down the middle: wall, then the object occluding the wall-floor edge,
    # then floor in front of it.
    rows = np.flatnonzero(column == OBJECT)
    assert len(rows) > 3 and np.all(np.diff(rows) == 1)
    assert np.all(column[:rows[0]] == WALL)
    assert np.all(column[rows[-1] + 1:] == FLOOR)
    assert rows[0] > 0 and rows[-1] < SIZE - 1


def test_changing_no_factor_changes_nothing():
  factors = base_factors(16, seed=3)
  images, region, brightness = render(np.concatenate([factors, factors]))
  np.testing.assert_array_equal(images[:16], images[16:])
  np.testing.assert_array_equal(region[:16], region[16:])
  np.testing.assert_array_equal(brightness[:16], brightness[16:])


@pytest.mark.parametrize("factor, where", [(FLOOR_HUE, FLOOR),
                                           (WALL_HUE, WALL),
                                           (OBJECT_HUE, OBJECT)])
def test_hue_changes_exactly_its_own_region(factor, where):
  base = base_factors(16, seed=4)
  changed = base.copy()
  changed[:, factor] = (base[:, factor] + 5) % 10  # the opposite hue
  images, region, _ = render(np.concatenate([base, changed]))
  np.testing.assert_array_equal(region[:16], region[16:])
  differs = np.any(images[:16] != images[16:], axis=-1)
  mine = region[:16] == where
  assert mine.sum(axis=(1, 2)).min() > 0
  np.testing.assert_array_equal(differs, mine)


@pytest.mark.parametrize("factor", [SCALE, SHAPE, ORIENTATION])
def test_geometry_factors_change_the_image(factor):
  base = base_factors(16, seed=5)
  size = dataset().factor_sizes[factor]
  for step in (1, size // 2):
    changed = base.copy()
    changed[:, factor] = (base[:, factor] + step) % size
    images, _, _ = render(np.concatenate([base, changed]))
    differs = np.any(images[:16] != images[16:], axis=-1).sum(axis=(1, 2))
    assert differs.min() >= 4, (step, differs)


def test_orientation_tilts_the_wall_floor_edge():
  # Height of the wall (in rows) at the left and right borders: level at 0
  # degrees, opposite slopes at -30 and +30.
  _, region, _ = render([[0, 0, 0, 0, SPHERE, o] for o in (0, 7, 14)])
  wall_rows = (region == WALL).sum(axis=1)          # [3, columns]
  slope = wall_rows[:, -1].astype(int) - wall_rows[:, 0]
  assert abs(slope[1]) <= 1
  assert slope[0] * slope[2] < 0 and min(abs(slope[0]), abs(slope[2])) >= 2


def test_four_shapes_have_four_different_silhouettes():
  for scale, orientation in ((0, 7), (7, 0), (4, 11)):
    _, region, _ = render([[0, 0, 0, scale, s, orientation]
                           for s in range(4)])
    masks = region == OBJECT
    area = masks.sum(axis=(1, 2))
    assert area.min() > 20
    for a in range(4):
      for b in range(a + 1, 4):
        mismatch = np.sum(masks[a] != masks[b])
        assert mismatch >= 0.05 * min(area[a], area[b]), (a, b, mismatch)
  # Same footprint width, so the capsule is taller than the sphere and the
  # cube's flat top is wider than the sphere at its top rows.
  _, region, _ = render([[0, 0, 0, 7, s, 7] for s in range(4)])
  heights = (region == OBJECT).any(axis=2).sum(axis=1)
  assert heights[CAPSULE] > heights[SPHERE]
  assert heights[CUBE] > heights[SPHERE]


@pytest.mark.parametrize("shape", [CUBE, CYLINDER, SPHERE, CAPSULE])
def test_scale_grows_the_object_area_monotonically(shape):
  for orientation in (0, 7, 14):
    _, region, _ = render([[2, 4, 6, k, shape, orientation]
                           for k in range(8)])
    area = (region == OBJECT).sum(axis=(1, 2))
    assert np.all(np.diff(area) > 0), (orientation, area)


def test_lit_side_is_brighter_and_shading_tells_shapes_apart():
  # Orientation 0 degrees, except the cube at +30, which shows its lit left
  # face beside the front one (at 0 only the front face and the top show).
  orientations = {CUBE: 14, CYLINDER: 7, SPHERE: 7, CAPSULE: 7}
  _, region, light = render([[0, 0, 0, 7, s, orientations[s]]
                             for s in range(4)])
  obj = region == OBJECT
  for s in range(4):
    cols = np.flatnonzero(obj[s].any(axis=0))
    left = light[s][:, cols[0]:cols[0] + 3][obj[s][:, cols[0]:cols[0] + 3]]
    right = light[s][:, cols[-1] - 2:cols[-1] + 1][
        obj[s][:, cols[-1] - 2:cols[-1] + 1]]
    assert left.mean() > right.mean() + 0.05, s   # light from the left
  distinct = [len(np.unique(np.round(light[s][obj[s]], 4))) for s in range(4)]
  assert distinct[CUBE] == 3                      # top, left, front faces
  assert distinct[SPHERE] > 15                    # a smooth gradient
  # Cylinder side: graded across columns, (nearly: the camera looks down,
  # so pixel columns are not quite the cylinder's vertical lines) constant
  # down each column.
  rows = np.flatnonzero(obj[CYLINDER].any(axis=1))
  body = light[CYLINDER][rows[0] + 3:rows[-1] - 2]
  cols = np.flatnonzero(obj[CYLINDER][rows[0] + 3])
  body = body[:, cols[1]:cols[-1]]
  assert np.ptp(body, axis=0).max() < 0.03
  assert np.ptp(body[0]) > 0.2


def test_floor_darkens_toward_the_wall_and_under_the_object():
  _, region, light = render([[0, 0, 0, 7, CUBE, 7]])
  column = light[0, :, 1][region[0, :, 1] == FLOOR]   # far from the object
  assert np.all(np.diff(column) >= 0) and column[-1] - column[0] > 0.2
  # The contact shadow: floor just below the object is darker than floor
  # at the same row near the border.
  obj_rows = np.flatnonzero((region[0] == OBJECT).any(axis=1))
  row = obj_rows[-1] + 1
  assert light[0, row, SIZE // 2] < light[0, row, 1] - 0.2


def test_colours_carry_the_factor_hues():
  factors = [[2, 5, 8, 7, SPHERE, 7]]
  images, region, light = render(factors)
  for where, k in ((FLOOR, 2), (WALL, 5), (OBJECT, 8)):
    pixels = images[0][region[0] == where]
    hues = np.array([colorsys.rgb_to_hsv(*p)[0] for p in pixels])
    np.testing.assert_allclose(hues, shapes3d.HUES[k], atol=1e-3)


def test_smallest_image_size_renders_the_whole_room():
  images, region, _ = render(base_factors(8, seed=6), 16)
  assert images.shape == (8, 16, 16, 3)
  for where in (FLOOR, WALL, OBJECT):
    assert (region == where).sum(axis=(1, 2)).min() > 0
