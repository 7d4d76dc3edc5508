"""Shapes3D: one object in a room, rendered procedurally by ray casting.

The factors are exactly those of DeepMind's 3D Shapes (Burgess & Kim, 2018):

  floor_hue 10, wall_hue 10, object_hue 10, scale 8, shape 4, orientation 15

(480,000 tuples; TFDS calls them label_floor_hue, ..., label_orientation).
`ProceduralShapes3D` draws every image on the fly in pure `jax.numpy`, so
nothing is downloaded, any image size that is a multiple of 16 works, and a
batch renders inside the jitted, vmapped training step. It resembles the
original images (same factors, same look: a floor, a back wall, an object in
the middle) but does not reproduce them pixel for pixel.

The scene, in world coordinates (x right, y up, z away from the camera):

* the floor is the plane y = 0 and the back wall the plane z = `_WALL_Z`;
* the object stands on the floor centred on the y axis: a cube, a cylinder,
  a sphere or an upright capsule, all `_OBJECT_SIZE * scale` in half-width;
* the camera sits above the floor in front of the object and looks slightly
  down at it; `orientation` orbits it around the vertical (y) axis through
  the object, so the wall-floor edge tilts and the cube turns one face
  toward the light;
* one directional light from the upper left, in front of the scene.

Pixel (row i, column j) shows what the ray through its centre hits first
(no anti-aliasing), so every pixel belongs to exactly one of the regions
FLOOR, WALL or OBJECT, and a hue factor only ever changes the pixels of its
own region. Rendering is split in two: `trace_scene` does the geometry and
lighting (a region and a brightness per pixel, independent of the hues) and
`render_scene` paints each region with its hue times that brightness.

Config: `[dataset] name = "shapes3d"`, option `image_size` (see `shapes3d`
at the bottom of this module).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from disentax.data import DATASETS
from disentax.data.base import GroundTruthDataset

# ----------------------------------------------------------------- the grid

FACTOR_NAMES = ("floor_hue", "wall_hue", "object_hue", "scale", "shape",
                "orientation")
FACTOR_SIZES = (10, 10, 10, 8, 4, 15)              # 480,000 tuples
SHAPE_NAMES = ("cube", "cylinder", "sphere", "capsule")
CUBE, CYLINDER, SPHERE, CAPSULE = range(4)
HUES = np.linspace(0.0, 1.0, 10, endpoint=False).astype(np.float32)
SCALES = np.linspace(0.75, 1.25, 8, dtype=np.float32)
ORIENTATIONS_DEGREES = np.linspace(-30.0, 30.0, 15, dtype=np.float32)

# Region of each pixel, as returned by `trace_scene`.
FLOOR, WALL, OBJECT = 0, 1, 2

# ---------------------------------------------------------- scene constants

_SATURATION = 0.8              # every hue is drawn at this HSV saturation
_VALUE = 1.0                   # ... and value, then darkened by the lighting

_CAMERA_DISTANCE = 5.0         # horizontal distance from the object's axis
_CAMERA_HEIGHT = 2.0
_LOOK_AT_HEIGHT = 0.9          # the camera aims at (0, this, 0)
_FIELD_OF_VIEW = math.radians(44.0)  # full angle, horizontal and vertical
_WALL_Z = 2.5
_OBJECT_SIZE = 0.6             # half-width of the object at scale 1
_CAPSULE_RADIUS = 0.8          # capsule radius / half-width of the others
_CAPSULE_HEIGHT = 2.6          # capsule total height / half-width

# Direction *toward* the light: up, to the left and in front of the object.
_LIGHT = tuple(c / math.hypot(-0.55, 0.75, -0.4)
               for c in (-0.55, 0.75, -0.4))
_AMBIENT = 0.3                 # object brightness on the side facing away

# Floor: full brightness up to distance _FLOOR_NEAR from the camera, then
# fading exponentially (length _FLOOR_FADE) toward _FLOOR_FAR_LIGHT; the
# wall is a bit darker at its bottom (the corner gets less light).
_FLOOR_NEAR = 4.0
_FLOOR_FADE = 6.0
_FLOOR_FAR_LIGHT = 0.45
_WALL_LIGHT = 0.85
_WALL_CORNER_DARKENING = 0.2
_SHADOW_DEPTH = 0.55           # brightness lost right under the object

_MISS = jnp.inf                # ray parameter of "no hit"
_TINY = 1e-6


def check_image_size(image_size: int) -> int:
  """Returns `image_size` if it is a positive multiple of 16 (the conv
  models need four stride-2 stages), else raises ValueError."""
  if (isinstance(image_size, bool) or not isinstance(image_size, int)
      or image_size <= 0 or image_size % 16):
    raise ValueError(
        f"shapes3d image_size must be a positive multiple of 16 (e.g. 16, "
        f"32, 64), got {image_size!r}")
  return image_size


def hsv_to_rgb(hue: jax.Array, saturation: float, value: float) -> jax.Array:
  """RGB in [0, 1] of hues in [0, 1) (any shape [...] -> [..., 3]).

  Each channel is value minus a "chroma" dip that is a piecewise linear bump
  around the hue's position on the colour wheel (channel offsets 5, 3, 1 in
  sixths of a turn for R, G, B)."""
  offsets = jnp.array([5.0, 3.0, 1.0])
  k = jnp.mod(offsets + 6.0 * hue[..., None], 6.0)
  bump = jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)
  return value - value * saturation * bump


# ------------------------------------------------------------- ray casting
#
# Points, directions and normals are `Vec`s of per-pixel arrays. Every
# `hit_*` function takes ray origins `o` and unit directions `d` and returns
# the distance t > 0 along the ray to the first hit (`_MISS` where it misses)
# and, for the parts of the object, the outward unit normal there.


class Vec(NamedTuple):
  """A field of 3-vectors kept as three broadcastable arrays. Keeping the
  components apart (rather than a trailing axis of 3) lets XLA fuse the
  whole renderer into a few elementwise loops."""
  x: jax.Array
  y: jax.Array
  z: jax.Array


def _dot(a: Vec, b: Vec) -> jax.Array:
  return a.x * b.x + a.y * b.y + a.z * b.z


def _along(o: Vec, d: Vec, t: jax.Array) -> Vec:
  """The point o + t d."""
  return Vec(o.x + t * d.x, o.y + t * d.y, o.z + t * d.z)


def _first(t: jax.Array, valid: jax.Array) -> jax.Array:
  """`t` where `valid` and in front of the camera, else `_MISS`."""
  return jnp.where(valid & (t > _TINY), t, _MISS)


def camera_rays(orientation: jax.Array, image_size: int) -> tuple[Vec, Vec]:
  """Origins ([n, 1, 1] each) and unit directions ([n, S, S] each) of the
  rays through the pixel centres, for orbit angles `orientation` [n] in
  radians.

  At orientation 0 a pinhole camera stands at (0, `_CAMERA_HEIGHT`,
  -`_CAMERA_DISTANCE`) aiming at (0, `_LOOK_AT_HEIGHT`, 0), its x axis along
  the world's x; the orientation then turns the camera (position and rays)
  around the vertical axis through the object."""
  drop = _CAMERA_HEIGHT - _LOOK_AT_HEIGHT
  reach = math.hypot(_CAMERA_DISTANCE, drop)
  # Unit forward (0, -drop, D) / reach and up (0, D, drop) / reach of the
  # unturned camera; right is (1, 0, 0).
  half = math.tan(_FIELD_OF_VIEW / 2)
  grid = ((jnp.arange(image_size) + 0.5) / image_size * 2.0 - 1.0) * half
  px = grid[None, :]                                 # columns, rightwards
  py = -grid[:, None]                                # rows, upwards
  dx = jnp.broadcast_to(px, (image_size, image_size))
  dy = (-drop + py * _CAMERA_DISTANCE) / reach
  dz = (_CAMERA_DISTANCE + py * drop) / reach
  norm = jnp.sqrt(dx * dx + dy * dy + dz * dz)
  dx, dy, dz = dx / norm, dy / norm, dz / norm
  # Turn around y: (x, z) -> (x cos + z sin, z cos - x sin).
  cos = jnp.cos(orientation)[:, None, None]
  sin = jnp.sin(orientation)[:, None, None]
  eye = Vec(-_CAMERA_DISTANCE * sin, jnp.full_like(sin, _CAMERA_HEIGHT),
            -_CAMERA_DISTANCE * cos)
  direction = Vec(dx * cos + dz * sin, jnp.broadcast_to(dy, cos.shape[:1]
                                                        + dy.shape),
                  dz * cos - dx * sin)
  return eye, direction


def hit_floor(o: Vec, d: Vec) -> jax.Array:
  """The floor plane y = 0, seen from above."""
  return _first(-o.y / jnp.minimum(d.y, -_TINY), d.y < 0)


def hit_wall(o: Vec, d: Vec) -> jax.Array:
  """The back wall plane z = `_WALL_Z`, seen from the front."""
  return _first((_WALL_Z - o.z) / jnp.maximum(d.z, _TINY), d.z > 0)


def hit_sphere(o: Vec, d: Vec, centre_y: jax.Array,
               radius: jax.Array) -> tuple[jax.Array, Vec]:
  """A sphere centred at (0, centre_y, 0)."""
  oc = Vec(o.x, o.y - centre_y, o.z)
  b = _dot(oc, d)
  disc = b * b - (_dot(oc, oc) - radius * radius)
  t = _first(-b - jnp.sqrt(jnp.maximum(disc, 0.0)), disc >= 0)
  p = _along(oc, d, t)
  return t, Vec(p.x / radius, p.y / radius, p.z / radius)


def hit_tube(o: Vec, d: Vec, radius: jax.Array, bottom: jax.Array,
             top: jax.Array) -> tuple[jax.Array, Vec]:
  """The curved side of a vertical cylinder around the y axis between
  heights `bottom` and `top` (open ends): a circle in the xz plane."""
  a = d.x * d.x + d.z * d.z
  b = o.x * d.x + o.z * d.z
  c = o.x * o.x + o.z * o.z - radius * radius
  disc = b * b - a * c
  t = (-b - jnp.sqrt(jnp.maximum(disc, 0.0))) / jnp.maximum(a, _TINY)
  p = _along(o, d, t)
  t = _first(t, (disc >= 0) & (a > _TINY) & (p.y >= bottom) & (p.y <= top))
  return t, Vec(p.x / radius, jnp.zeros_like(t), p.z / radius)


def hit_lid(o: Vec, d: Vec, radius: jax.Array,
            height: jax.Array) -> tuple[jax.Array, Vec]:
  """The flat top of a vertical cylinder: a disc at `height`, facing up."""
  t = (height - o.y) / jnp.minimum(d.y, -_TINY)
  p = _along(o, d, t)
  t = _first(t, (d.y < 0) & (p.x * p.x + p.z * p.z <= radius * radius))
  return t, Vec(jnp.zeros_like(t), jnp.ones_like(t), jnp.zeros_like(t))


def hit_box(o: Vec, d: Vec, half_width: jax.Array,
            height: jax.Array) -> tuple[jax.Array, Vec]:
  """The box |x|, |z| <= half_width, 0 <= y <= height, by the slab method:
  the ray is inside the box while it is between all three pairs of planes,
  so it enters at the latest of the three entries."""
  bounds = ((-half_width, half_width), (jnp.zeros_like(height), height),
            (-half_width, half_width))
  entries, steps = [], []
  for o_k, d_k, (low, high) in zip(o, d, bounds):
    step = jnp.where(jnp.abs(d_k) < _TINY, _TINY, d_k)
    t_low, t_high = (low - o_k) / step, (high - o_k) / step
    entries.append((jnp.minimum(t_low, t_high), jnp.maximum(t_low, t_high)))
    steps.append(step)
  t_enter = jnp.maximum(jnp.maximum(entries[0][0], entries[1][0]),
                        entries[2][0])
  t_exit = jnp.minimum(jnp.minimum(entries[0][1], entries[1][1]),
                       entries[2][1])
  t = _first(t_enter, t_enter <= t_exit)
  # The face hit belongs to the pair of planes entered last; it faces the
  # camera, against the ray.
  normal = Vec(*(jnp.where(enter >= t_enter, -jnp.sign(step), 0.0)
                 for (enter, _), step in zip(entries, steps)))
  return t, normal


def _closer(first: tuple[jax.Array, Vec], second: tuple[jax.Array, Vec],
            pick_second: jax.Array | None = None) -> tuple[jax.Array, Vec]:
  """`second` where `pick_second` (default: where it is the nearer hit, so
  the result is the first hit of the union of both parts), else `first`."""
  if pick_second is None:
    pick_second = second[0] < first[0]
  t = jnp.where(pick_second, second[0], first[0])
  normal = Vec(*(jnp.where(pick_second, b, a)
                 for a, b in zip(first[1], second[1])))
  return t, normal


def hit_object(o: Vec, d: Vec, shape: jax.Array,
               size: jax.Array) -> tuple[jax.Array, Vec]:
  """The object of half-width `size` standing on the floor at the origin.

  All four shapes are intersected and `shape` (0 cube, 1 cylinder, 2
  sphere, anything else capsule) picks one: under vmap a branch would run
  every shape anyway, and this keeps the code straight."""
  zero = jnp.zeros_like(size)
  cube = hit_box(o, d, size, 2.0 * size)
  cylinder = _closer(hit_tube(o, d, size, zero, 2.0 * size),
                     hit_lid(o, d, size, 2.0 * size))
  sphere = hit_sphere(o, d, size, size)
  radius = _CAPSULE_RADIUS * size
  top = _CAPSULE_HEIGHT * size - radius      # centre of the upper cap
  capsule = _closer(_closer(hit_tube(o, d, radius, radius, top),
                            hit_sphere(o, d, radius, radius)),
                    hit_sphere(o, d, top, radius))
  hit = capsule
  for index, shape_hit in ((SPHERE, sphere), (CYLINDER, cylinder),
                           (CUBE, cube)):
    hit = _closer(hit, shape_hit, pick_second=shape == index)
  return hit


# ----------------------------------------------------------------- shading

def shade_floor(p: Vec, distance: jax.Array, size: jax.Array) -> jax.Array:
  """Floor brightness at points `p`: darker with `distance` from the camera
  (toward the wall) and under a soft contact shadow around the object's
  foot, nudged away from the light."""
  fade = jnp.exp(-jnp.maximum(distance - _FLOOR_NEAR, 0.0) / _FLOOR_FADE)
  light = _FLOOR_FAR_LIGHT + (1.0 - _FLOOR_FAR_LIGHT) * fade
  shadow_x = p.x + 0.35 * size * _LIGHT[0] / _LIGHT[1]
  shadow_z = p.z + 0.35 * size * _LIGHT[2] / _LIGHT[1]
  reach = (shadow_x * shadow_x + shadow_z * shadow_z) / (1.6 * size) ** 2
  return light * (1.0 - _SHADOW_DEPTH * jnp.exp(-reach * reach))


def shade_wall(p: Vec) -> jax.Array:
  """Wall brightness at points `p`: a little darker near the floor."""
  return _WALL_LIGHT - _WALL_CORNER_DARKENING * jnp.exp(-2.0 * p.y)


def shade_object(normal: Vec) -> jax.Array:
  """Lambertian brightness: ambient plus the cosine toward the light, so the
  lit side is bright, flat faces are flat and curved sides are graded."""
  lambert = jnp.maximum(_dot(normal, Vec(*_LIGHT)), 0.0)
  return _AMBIENT + (1.0 - _AMBIENT) * lambert


class Scene(NamedTuple):
  region: jax.Array      # [n, S, S] int32: FLOOR, WALL or OBJECT
  brightness: jax.Array  # [n, S, S] float32 in [0, 1]


def trace_scene(values: jax.Array, image_size: int) -> Scene:
  """The hue-free part of rendering: what each pixel sees and how lit it is.

  `values` is float [n, 6] as returned by `ProceduralShapes3D.factor_values`
  (hues are ignored here); scale, shape and orientation need not lie on the
  grid, which is handy for smooth traversals."""
  chex.assert_shape(values, (None, len(FACTOR_NAMES)))
  values = jnp.asarray(values, jnp.float32)
  size = (_OBJECT_SIZE * values[:, 3])[:, None, None]
  shape = jnp.round(values[:, 4])[:, None, None]
  o, d = camera_rays(values[:, 5], image_size)

  t_floor = hit_floor(o, d)
  t_wall = hit_wall(o, d)
  t_object, normal = hit_object(o, d, shape, size)
  # The candidate surfaces, stacked in region order (FLOOR, WALL, OBJECT):
  # each pixel shows the nearest, lit as that surface's shading says.
  distances = jnp.stack([t_floor, t_wall, t_object], axis=-1)
  region = jnp.argmin(distances, axis=-1)
  shades = jnp.stack([shade_floor(_along(o, d, t_floor), t_floor, size),
                      shade_wall(_along(o, d, t_wall)),
                      shade_object(normal)], axis=-1)
  chosen = region[..., None] == jnp.arange(3)
  brightness = jnp.sum(jnp.where(chosen, shades, 0.0), axis=-1)
  region = region.astype(jnp.int32)
  chex.assert_shape([region, brightness],
                    (values.shape[0], image_size, image_size))
  return Scene(region, brightness)


def render_scene(values: jax.Array, image_size: int) -> jax.Array:
  """Renders scenes from factor *values* (see `trace_scene`), float32
  [n, S, S, 3] in [0, 1]: each region's hue (HSV with fixed saturation and
  value) times the brightness of the pixel."""
  values = jnp.asarray(values, jnp.float32)
  scene = trace_scene(values, image_size)
  rgb = hsv_to_rgb(values[:, :3], _SATURATION, _VALUE)[:, None, None]
  floor, wall, thing = rgb[..., 0, :], rgb[..., 1, :], rgb[..., 2, :]
  region = scene.region[..., None]
  colour = jnp.where(region == OBJECT, thing,
                     jnp.where(region == FLOOR, floor, wall))
  images = jnp.clip(colour * scene.brightness[..., None], 0.0, 1.0)
  chex.assert_shape(images, (values.shape[0], image_size, image_size, 3))
  return images.astype(jnp.float32)


# ----------------------------------------------------------------- dataset

class ProceduralShapes3D(GroundTruthDataset):
  """3D Shapes rendered by `render_scene`: no files, any multiple-of-16 size."""

  name = "shapes3d"
  factor_names = FACTOR_NAMES
  factor_sizes = FACTOR_SIZES
  procedural = True

  def __init__(self, image_size: int = 64):
    self.image_size = check_image_size(image_size)
    self.observation_shape = (image_size, image_size, 3)

  def factor_values(self, factors: jax.Array) -> jax.Array:
    """Physical value of each factor index, float32 [n, 6]: the three hues
    in [0, 1), scale in [0.75, 1.25], shape index and orientation in
    radians (within +-30 degrees). Out-of-range indices are clipped."""
    factors = jnp.asarray(factors)
    chex.assert_shape(factors, (None, len(FACTOR_NAMES)))
    chex.assert_type(factors, int)
    tables = (HUES, HUES, HUES, SCALES, np.arange(4, dtype=np.float32),
              np.radians(ORIENTATIONS_DEGREES).astype(np.float32))
    columns = [jnp.take(jnp.asarray(table), factors[:, k], mode="clip")
               for k, table in enumerate(tables)]
    return jnp.stack(columns, axis=1)

  def observations_from_factors(self, factors: jax.Array) -> jax.Array:
    return render_scene(self.factor_values(factors), self.image_size)


# ----------------------------------------------------------------- builder

@DATASETS.register("shapes3d")
def shapes3d(image_size: int = 64) -> GroundTruthDataset:
  """3D Shapes rendered procedurally at `image_size` (a positive multiple of
  16) pixels square, RGB."""
  return ProceduralShapes3D(image_size)
