"""Datasets whose images live in files: the shared machinery.

Real datasets are too large to keep whole on an accelerator by default
(Shapes3D is 5.9 GB of uint8 pixels, MPI3D 12.7 GB), yet training renders
its batches *inside* the jitted, vmapped step. `FileImageDataset` bridges the
two: the images stay on the host (a numpy memmap, an HDF5 dataset, a TFDS
random-access data source, ...) and `observations_from_factors` fetches the
rows a batch needs through `jax.pure_callback`, so the step stays one traced
program and host memory stays bounded by a batch. With `in_memory=True` the
whole grid is instead copied once to the device as uint8 (the fast path for
users with the memory) and a lookup is a plain gather. Both paths return
identical observations.

This module holds what every such dataset shares:

* `factor_indices` / `grid_rows`: the map between grid position (the
  row-major index of a factor tuple, `GroundTruthDataset.index_from_factors`)
  and file row, built from the file's labels, whatever order the rows come in.
  Every factor tuple must occur equally often; an incomplete grid or a
  duplicate raises an error that names the factor. Extra copies of a tuple
  that differ only in a *noise* label (SmallNORB's instance) are allowed, and
  one of them is picked per tuple by a fixed hash (see `grid_rows`).
* `ImageStore`: host rows -> uint8 [n, S, S, C]: deduplicated, ordered
  reads, conversion of binary/float pixels to uint8, and area-averaging
  resize (`area_resize`), all on the host, once per image read.
* `FileImageDataset`: the `GroundTruthDataset` on top of both, with a
  sparse file-backed decode cache for stores slower than a memmap gather
  (each image is decoded and resized once per process).
* The reference factor grids of the real datasets, and the cache directory
  used by loaders that must unpack files (compressed npz, image folders).
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import threading
from typing import Any, Callable, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np

from disentax.data.base import GroundTruthDataset

# ------------------------------------------------ reference factor grids

# Shapes3D (Burgess & Kim 2018), in the order of 3dshapes.h5 and TFDS.
SHAPES3D_FACTOR_NAMES = ("floor_hue", "wall_hue", "object_hue", "scale",
                         "shape", "orientation")
SHAPES3D_FACTOR_SIZES = (10, 10, 10, 8, 4, 15)            # 480,000 images
# SmallNORB with the instance (10 per category, 5 per split) as noise.
SMALLNORB_FACTOR_NAMES = ("category", "elevation", "azimuth", "lighting")
SMALLNORB_FACTOR_SIZES = (5, 9, 18, 6)                     # 4,860 tuples
# Cars3D (Reed et al. 2015), as disentanglement_lib orders it.
CARS3D_FACTOR_NAMES = ("elevation", "azimuth", "object")
CARS3D_FACTOR_SIZES = (4, 24, 183)                         # 17,568 images
# MPI3D (Gondal et al. 2019): toy / realistic / real have 6 colours and 6
# shapes, `complex` 4 and 4.
MPI3D_FACTOR_NAMES = ("object_color", "object_shape", "object_size",
                      "camera_height", "background_color", "horizontal_axis",
                      "vertical_axis")
MPI3D_FACTOR_SIZES = (6, 6, 2, 3, 3, 40, 40)               # 1,036,800 images
MPI3D_COMPLEX_FACTOR_SIZES = (4, 4, 2, 3, 3, 40, 40)       # 460,800 images

# ---------------------------------------------------------------- options

_CACHE_ENV = "DISENTAX_CACHE_DIR"


def default_cache_dir() -> str:
  """Where loaders write the files they derive (an unpacked compressed npz,
  the resized images of a folder): `$DISENTAX_CACHE_DIR`, else
  `$XDG_CACHE_HOME/disentax`, else `~/.cache/disentax`. A per-user cache
  rather than the data folder, which may be read-only or shared, and rather
  than /tmp, which would redo hours of decoding after a reboot."""
  if os.environ.get(_CACHE_ENV):
    return os.environ[_CACHE_ENV]
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
      os.path.expanduser("~"), ".cache")
  return os.path.join(base, "disentax")


def cache_path(cache_dir: str, prefix: str, key: Sequence[Any],
               suffix: str = ".npy") -> str:
  """`<cache_dir or default>/<prefix>-<hash of key><suffix>`: a derived file
  whose name changes whenever anything it was derived from changes."""
  digest = hashlib.sha1(repr(tuple(key)).encode()).hexdigest()[:16]
  directory = cache_dir or default_cache_dir()
  os.makedirs(directory, exist_ok=True)
  return os.path.join(directory, f"{prefix}-{digest}{suffix}")


def file_signature(path: str) -> tuple[str, int, int]:
  """(absolute path, size, mtime in ns): what a cache entry derived from
  `path` depends on."""
  stat = os.stat(path)
  return os.path.abspath(path), stat.st_size, stat.st_mtime_ns


def check_image_size(image_size: int, where: str) -> int:
  """`image_size` if it is a positive multiple of 16 (what the conv
  encoder/decoder need), else ValueError naming `where`."""
  if (isinstance(image_size, bool) or not isinstance(image_size, int)
      or image_size <= 0 or image_size % 16):
    raise ValueError(f"{where}: image_size must be a positive multiple of 16 "
                     f"(e.g. 32, 64), got {image_size!r}")
  return image_size


def check_factor_sizes(factor_sizes: Sequence[int] | None,
                       reference: Sequence[int], factor_names: Sequence[str],
                       where: str) -> tuple[int, ...]:
  """The grid to expect: `reference`, or the `factor_sizes` override (for
  tests and for files holding a sub-grid), validated against the names."""
  if factor_sizes is None or len(factor_sizes) == 0:
    return tuple(int(s) for s in reference)
  sizes = tuple(factor_sizes)
  if (len(sizes) != len(factor_names)
      or any(isinstance(s, bool) or not isinstance(s, (int, np.integer))
             or s < 1 for s in sizes)):
    raise ValueError(
        f"{where}: factor_sizes must be {len(factor_names)} positive integers "
        f"(one per factor {tuple(factor_names)}), got {factor_sizes!r}")
  return tuple(int(s) for s in sizes)


# ----------------------------------------------- grid <-> file row mapping

def _describe(names: Sequence[str], values: Sequence[int]) -> str:
  return "{" + ", ".join(f"{n}={int(v)}" for n, v in zip(names, values)) + "}"


def factor_indices(labels: np.ndarray, factor_names: Sequence[str],
                   factor_sizes: Sequence[int], where: str) -> np.ndarray:
  """Per-row factor indices, int64 [N, F], from labels [N, F] that may be
  indices or physical values (Shapes3D's h5 stores hues in [0, 1]).

  The distinct values of each column, sorted, become indices 0..size-1, so
  a column must take exactly `factor_sizes[k]` distinct values; otherwise
  the file does not hold the grid and the error names the factor. (Indices
  already 0..size-1 map to themselves.)"""
  labels = np.asarray(labels)
  if labels.ndim != 2 or labels.shape[1] != len(factor_names):
    raise ValueError(
        f"{where}: labels have shape {labels.shape}; expected (N, "
        f"{len(factor_names)}), one column per factor {tuple(factor_names)}")
  if labels.shape[0] == 0:
    raise ValueError(f"{where}: no rows")
  if not (np.issubdtype(labels.dtype, np.integer)
          or np.issubdtype(labels.dtype, np.floating)):
    raise ValueError(f"{where}: labels must be numeric, got {labels.dtype}")
  if np.issubdtype(labels.dtype, np.floating):
    if not np.all(np.isfinite(labels)):
      raise ValueError(f"{where}: labels contain NaN or infinity")
    labels = np.round(labels, 6)   # float noise must not split a value
  indices = np.empty(labels.shape, np.int64)
  for k, (name, size) in enumerate(zip(factor_names, factor_sizes)):
    values, indices[:, k] = np.unique(labels[:, k], return_inverse=True)
    if len(values) != size:
      shown = ", ".join(str(v) for v in values[:8])
      more = ", ..." if len(values) > 8 else ""
      raise ValueError(
          f"{where}: factor {name!r} takes {len(values)} distinct value(s) "
          f"({shown}{more}) but the grid needs {size}; the file does not "
          f"hold the complete grid (set factor_sizes for a sub-grid)")
  return indices


def _splitmix64(x: np.ndarray) -> np.ndarray:
  """A fixed 64-bit integer mix (SplitMix64's finaliser): well-spread,
  platform-independent pseudo-random bits per input."""
  z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
  z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
  z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  return z ^ (z >> np.uint64(31))


def grid_rows(indices: np.ndarray, factor_names: Sequence[str],
              factor_sizes: Sequence[int], where: str,
              noise: np.ndarray | None = None) -> np.ndarray:
  """The file row of every grid position, int64 [prod(factor_sizes)].

  `indices` [N, F] are per-row factor indices (`factor_indices`). Without
  `noise`, every factor tuple must occur exactly once. With `noise` [N] (a
  label the dataset treats as nuisance, e.g. SmallNORB's instance), every
  tuple must occur the same number k of times with k distinct noise values;
  the copies are ordered by noise value and position p keeps copy
  `splitmix64(p) mod k` -- deterministic per tuple, independent of the
  file's row order, and spread evenly over the noise values.

  Raises ValueError naming the offending factor(s) and an example tuple when
  the grid is incomplete or has duplicates."""
  indices = np.asarray(indices, np.int64)
  sizes = tuple(int(s) for s in factor_sizes)
  num_points = math.prod(sizes)
  num_rows = indices.shape[0]
  chex.assert_shape(indices, (num_rows, len(sizes)))
  flat = np.ravel_multi_index(tuple(indices.T), sizes)
  counts = np.bincount(flat, minlength=num_points)
  # Without noise every tuple occurs once; with it, as often as most do.
  copies = 1 if noise is None else max(1, int(np.argmax(np.bincount(counts))))
  if np.any(counts != copies):
    raise ValueError(_grid_error(indices, counts, sizes, factor_names, where,
                                 copies, noise is not None))
  if noise is None:
    rows = np.empty(num_points, np.int64)
    rows[flat] = np.arange(num_rows)
    return rows
  noise = np.asarray(noise).reshape(num_rows)
  order = np.lexsort((noise, flat))          # by position, then noise value
  by_position = order.reshape(num_points, copies)
  sorted_noise = noise[by_position]
  if copies > 1 and np.any(sorted_noise[:, 1:] == sorted_noise[:, :-1]):
    position = int(np.argmax(np.any(sorted_noise[:, 1:] == sorted_noise[:, :-1],
                                    axis=1)))
    raise ValueError(
        f"{where}: factor tuple "
        f"{_describe(factor_names, np.unravel_index(position, sizes))} occurs "
        f"twice with the same noise label; expected each tuple once per noise "
        f"value")
  choice = _splitmix64(np.arange(num_points)) % np.uint64(copies)
  return by_position[np.arange(num_points), choice.astype(np.int64)]


def _grid_error(indices: np.ndarray, counts: np.ndarray,
                sizes: tuple[int, ...], names: Sequence[str], where: str,
                copies: int, with_noise: bool) -> str:
  """The message for a file whose rows are not the full grid: which
  factors' values occur unevenly, and one missing and one repeated tuple."""
  num_rows = indices.shape[0]
  expected = f"{copies} time(s)" if with_noise else "exactly once"
  parts = [f"{where}: expected every factor tuple of the grid "
           f"{dict(zip(names, sizes))} ({math.prod(sizes)} tuples) "
           f"{expected}, but the file has {num_rows} rows"]
  uneven = []
  for k, (name, size) in enumerate(zip(names, sizes)):
    per_value = np.bincount(indices[:, k], minlength=size)
    if per_value.min() != per_value.max():
      uneven.append(f"{name!r} (value {int(np.argmin(per_value))} occurs "
                    f"{per_value.min()} times, value "
                    f"{int(np.argmax(per_value))} {per_value.max()} times)")
  if uneven:
    parts.append("factor(s) with uneven values: " + ", ".join(uneven))
  if np.any(counts < copies):
    missing = int(np.argmax(counts < copies))
    parts.append(
        f"{int(np.sum(counts < copies))} tuple(s) are missing or short, e.g. "
        f"{_describe(names, np.unravel_index(missing, sizes))} occurs "
        f"{counts[missing]} time(s)")
  if np.any(counts > copies):
    repeated = int(np.argmax(counts))
    parts.append(
        f"{int(np.sum(counts > copies))} tuple(s) are duplicated, e.g. "
        f"{_describe(names, np.unravel_index(repeated, sizes))} occurs "
        f"{counts[repeated]} times")
  return "; ".join(parts)


# ---------------------------------------------------------------- resizing

def _area_matrix(in_size: int, out_size: int) -> np.ndarray:
  """[out, in] weights of area averaging along one axis: entry (i, j) is
  the fraction of output pixel i covered by input pixel j (rows sum to 1)."""
  scale = in_size / out_size
  starts = np.arange(out_size)[:, None] * scale
  pixel = np.arange(in_size)[None, :]
  overlap = (np.minimum(starts + scale, pixel + 1)
             - np.maximum(starts, pixel)).clip(0.0)
  return (overlap / scale).astype(np.float32)


def area_resize(images: np.ndarray, size: int) -> np.ndarray:
  """Resizes uint8 [n, H, W, C] to uint8 [n, size, size, C] by area
  averaging (each output pixel is the mean of the input area it covers;
  96 -> 64 for SmallNORB averages 1.5 x 1.5 pixel footprints)."""
  chex.assert_rank(images, 4)
  if images.shape[1:3] == (size, size):
    return images
  rows = _area_matrix(images.shape[1], size)
  cols = _area_matrix(images.shape[2], size)
  out = np.einsum("ih,nhwc,jw->nijc", rows, images.astype(np.float32), cols,
                  optimize=True)
  return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# -------------------------------------------------------- host image store

class ImageStore:
  """Host images addressed by file row, normalised to uint8 [n, S, S, C].

  `fetch(rows)` returns the raw images of *strictly increasing* file rows
  (h5py needs increasing indices, and sorted reads are sequential on disk);
  `read` deduplicates and sorts requests, then converts pixels to uint8
  0..255 (binary images: nonzero -> 255; bool: True -> 255; floats in
  [0, 1] are scaled by 255 and rounded) and resizes by area averaging to
  `image_size`. Reads hold a lock: pure_callbacks may run on several host
  threads and neither h5py nor the decoders need to be re-entrant.
  """

  def __init__(self, fetch: Callable[[np.ndarray], np.ndarray],
               num_rows: int, image_shape: Sequence[int],
               dtype: np.dtype | type, image_size: int, where: str,
               binary: bool = False):
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 2:
      shape = (*shape, 1)
    dtype = np.dtype(dtype)
    if (len(shape) != 3 or shape[0] != shape[1] or shape[0] < 1
        or shape[2] not in (1, 3)):
      raise ValueError(
          f"{where}: images have shape {tuple(image_shape)} per row; expected "
          f"square (H, W) or (H, W, C) with C 1 or 3")
    if not (dtype == np.uint8 or dtype == np.bool_
            or np.issubdtype(dtype, np.floating)):
      raise ValueError(f"{where}: images must be uint8, bool or float in "
                       f"[0, 1], got {dtype}")
    self._fetch = fetch
    self._lock = threading.Lock()
    self.num_rows = int(num_rows)
    self.source_shape = shape
    self.dtype = dtype
    self.binary = binary
    self.where = where
    self.image_size = check_image_size(image_size, where)
    self.image_shape = (image_size, image_size, shape[2])
    # Whether a read is as cheap as a memmap gather; if not, the dataset
    # keeps a decode cache (`FileImageDataset`).
    self.direct = False

  @classmethod
  def from_array(cls, array: Any, image_size: int, where: str,
                 binary: bool = False) -> "ImageStore":
    """A store over an array-like [N, H, W(, C)] indexable by a sorted
    integer array (numpy array or memmap, h5py dataset)."""
    store = cls(lambda rows: np.asarray(array[rows]), array.shape[0],
                array.shape[1:], array.dtype, image_size, where, binary)
    store.direct = (isinstance(array, np.ndarray) and array.dtype == np.uint8
                    and not binary
                    and store.source_shape == store.image_shape)
    return store

  def _to_uint8(self, images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if self.binary or images.dtype == np.bool_:
      images = (images != 0).astype(np.uint8) * np.uint8(255)
    elif np.issubdtype(images.dtype, np.floating):
      images = np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)
    else:
      images = images.astype(np.uint8, copy=False)
    return images.reshape(images.shape[0], *self.source_shape)

  def read(self, rows: np.ndarray) -> np.ndarray:
    """uint8 [len(rows), S, S, C] images of file rows `rows` (any order,
    repeats allowed)."""
    rows = np.asarray(rows, np.int64).reshape(-1)
    if rows.size == 0:
      return np.zeros((0, *self.image_shape), np.uint8)
    unique, inverse = np.unique(rows, return_inverse=True)
    with self._lock:
      raw = self._fetch(unique)
    if raw.shape[0] != unique.size:
      raise RuntimeError(f"{self.where}: asked for {unique.size} images, got "
                         f"{raw.shape[0]}")
    images = area_resize(self._to_uint8(raw), self.image_size)
    return images[inverse.reshape(-1)]


# ------------------------------------------------------------- the dataset

_IN_MEMORY_ROWS_PER_READ = 4096


class _DecodeCache:
  """Grid positions' final uint8 images, kept after their first read in an
  anonymous file-backed memmap (sparse, deleted when the process ends), so
  a slow source (PNG records, compressed HDF5, resizing) is decoded once
  per image while host RAM stays bounded by the page cache."""

  def __init__(self, num_points: int, image_shape: tuple[int, ...],
               directory: str):
    os.makedirs(directory, exist_ok=True)
    self._file = tempfile.TemporaryFile(dir=directory)
    self._file.truncate(num_points * math.prod(image_shape))
    self.images = np.memmap(self._file, dtype=np.uint8, mode="r+",
                            shape=(num_points, *image_shape))
    self.filled = np.zeros(num_points, bool)
    self.lock = threading.Lock()


class FileImageDataset(GroundTruthDataset):
  """A factor grid whose images are rows of a host `ImageStore`.

  `row_of_index[p]` is the file row showing grid position p. With
  `in_memory=False` the images stay on the host and each batch is fetched
  through `jax.pure_callback` (vmapped calls are merged into one host read);
  when the store is slower than a memmap gather (decoding, resizing,
  compressed chunks) each position's final image is also kept in a
  file-backed decode cache under `cache_dir` after its first read. With
  `in_memory=True` every grid position's image is read once, resized, and
  kept on the device as uint8 [num_points, S, S, C]. Observations are
  float32 in [0, 1] either way, bit-identical between the paths.

  Caveat for `in_memory`: jit embeds arrays a traced function closes over
  as HLO constants, so compile time grows with the array (about 9 s more
  per 200 MB on CPU) unless JAX hoists them (`JAX_USE_SIMPLIFIED_JAXPR_
  CONSTANTS=1`, set before importing jax). NpzDSprites shares this.
  """

  labelled = True  # factors are ground truth (see `ImageFolder` otherwise)

  def __init__(self, name: str, factor_names: Sequence[str],
               factor_sizes: Sequence[int], store: ImageStore,
               row_of_index: np.ndarray, in_memory: bool = False,
               cache_dir: str = ""):
    row_of_index = np.asarray(row_of_index, np.int64)
    chex.assert_shape(row_of_index, (math.prod(factor_sizes),))
    if row_of_index.size and (row_of_index.min() < 0
                              or row_of_index.max() >= store.num_rows):
      raise ValueError(f"{store.where}: row table points outside the "
                       f"{store.num_rows} rows of the file")
    self.name = name
    self.factor_names = tuple(factor_names)
    self.factor_sizes = tuple(int(s) for s in factor_sizes)
    self.observation_shape = store.image_shape
    self.in_memory = bool(in_memory)
    self._store = store
    self._row_of_index = row_of_index
    self._device_images = (jnp.asarray(self._read_all()) if self.in_memory
                           else None)
    self._cache = None
    if not self.in_memory and not store.direct:
      self._cache = _DecodeCache(self.num_points, self.observation_shape,
                                 cache_dir or default_cache_dir())

  def _read_all(self) -> np.ndarray:
    """Every grid position's image, uint8 [num_points, S, S, C], read in
    ascending file-row blocks (sequential on disk whatever the grid order)."""
    images = np.empty((self.num_points, *self.observation_shape), np.uint8)
    order = np.argsort(self._row_of_index, kind="stable")
    for start in range(0, order.size, _IN_MEMORY_ROWS_PER_READ):
      positions = order[start:start + _IN_MEMORY_ROWS_PER_READ]
      images[positions] = self._store.read(self._row_of_index[positions])
    return images

  def images_at(self, positions: np.ndarray) -> np.ndarray:
    """Host lookup: uint8 [*positions.shape, S, S, C] images of grid
    positions (clipped into range), read from the file."""
    positions = np.asarray(positions)
    flat = np.clip(positions.reshape(-1).astype(np.int64), 0,
                   self.num_points - 1)
    cache = self._cache
    if cache is None:
      images = self._store.read(self._row_of_index[flat])
    else:
      with cache.lock:
        missing = np.unique(flat[~cache.filled[flat]])
        if missing.size:
          cache.images[missing] = self._store.read(self._row_of_index[missing])
          cache.filled[missing] = True
        images = cache.images[flat]
    return images.reshape(*positions.shape, *self.observation_shape)

  def observations_from_factors(self, factors: jax.Array) -> jax.Array:
    factors = jnp.asarray(factors)
    chex.assert_shape(factors, (None, self.num_factors))
    chex.assert_type(factors, int)
    positions = self.index_from_factors(factors).astype(jnp.int32)
    if self._device_images is not None:
      images = self._device_images[positions]
    else:
      # vmap adds leading axes to `positions`; `images_at` handles any.
      images = jax.pure_callback(
          self.images_at,
          jax.ShapeDtypeStruct((factors.shape[0], *self.observation_shape),
                               jnp.uint8),
          positions, vmap_method="expand_dims")
    observations = images.astype(jnp.float32) / 255.0
    chex.assert_shape(observations, (factors.shape[0], *self.observation_shape))
    return observations
