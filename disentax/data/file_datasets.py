"""Shapes3D, Cars3D, MPI3D and SmallNORB from files.

Each loader maps its file onto the shared `FileImageDataset`
(`disentax/data/files.py`): images stay in the file (memory-mapped where the
layout allows) and are fetched per batch inside jit, or are copied to the
device with `in_memory=True`. Nothing is downloaded here: the files are
the upstream ones, or what `python -m disentax.data.fetch NAME` downloads
and prepares (`disentax.data.fetch`).

* `shapes3d_h5`: DeepMind's original `3dshapes.h5`, datasets `images`
  (480000, 64, 64, 3) uint8 and `labels` (480000, 6) factor *values*
  (floor, wall and object hue, scale, shape, orientation). Any row order is
  accepted: each label column's distinct values, sorted, are the factor
  indices. A contiguous uncompressed `images` dataset is memory-mapped;
  a chunked or compressed one is read through h5py, each image once into
  the decode cache (see `files.FileImageDataset`). Needs h5py (`pip
  install 'disentax[files]'`).
* `cars3d_npz` (elevation 4, azimuth 24, object 183) and `mpi3d_npz`
  (object_color 6, object_shape 6, object_size 2, camera_height 3,
  background_color 3, horizontal_axis 40, vertical_axis 40; the `complex`
  variant has 4 colours and 4 shapes, picked from the row count): an `.npz`
  with key `images` [N, H, W, C] (or [N, H, W]) uint8, bool, or float in
  [0, 1], and optionally `labels` [N, num_factors] (indices or values, one
  column per factor in the order above, rows in any order). Without
  `labels` the rows must be in the canonical order: row-major over the
  factors above (the last factor varies fastest), which is the order of the
  official `mpi3d_*.npz` files and of disentanglement_lib's Cars3D grid. An
  `images` member stored uncompressed (`np.savez`) is memory-mapped in
  place; a compressed one (`np.savez_compressed`) is unpacked once into
  `cache_dir` (default `files.default_cache_dir()`), unless `in_memory`.
* `smallnorb_npz` (category 5, elevation 9, azimuth 18, lighting 6): an
  `.npz` with `images` [N, H, W] (SmallNORB's left camera, 96x96),
  `labels` [N, 4] in that factor order (azimuth as an index 0..17 or
  NORB's even numbers 0..34) and `instance` [N], the object instance,
  treated as noise as disentanglement_lib does: every factor tuple occurs
  once per instance (10 when the training and test halves are merged, as
  `disentax.data.fetch` prepares them), and the tuple at grid position p
  shows one instance chosen by a fixed hash of p (`files.grid_rows`).

Common options: `path` (required), `in_memory=False`, `image_size=64`
(other sizes are area-averaged on the host, once per image), `factor_sizes`
(override, for tests and for files holding a sub-grid), `cache_dir` (the
decode cache and unpacked npz members; default `files.default_cache_dir()`).
"""

from __future__ import annotations

import math
import os
import shutil
import struct
import zipfile
from typing import Any, Sequence

import numpy as np

from disentax.data import DATASETS
from disentax.data import files

_FILES_HINT = "pip install 'disentax[files]'"


def _check_path(path: str, name: str, what: str) -> str:
  if not path:
    raise ValueError(f"{name}: set dataset.path to {what}")
  path = os.path.expanduser(os.fspath(path))
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{name}: path {path!r} does not exist (expected "
                            f"{what})")
  return path


# ------------------------------------------------------------------ h5

def _import_h5py() -> Any:
  try:
    import h5py  # pylint: disable=import-outside-toplevel
  except ImportError as error:
    raise ImportError(f"shapes3d_h5 needs h5py: {_FILES_HINT}") from error
  return h5py


def _h5_images(path: str, dataset: Any) -> Any:
  """A numpy memmap of an HDF5 dataset stored contiguously and
  uncompressed, else the h5py dataset itself (read on demand)."""
  if dataset.chunks is None and dataset.compression is None:
    offset = dataset.id.get_offset()
    if offset is not None:
      return np.memmap(path, dtype=dataset.dtype, mode="r", offset=offset,
                       shape=dataset.shape)
  return dataset


@DATASETS.register("shapes3d_h5")
def shapes3d_h5(path: str = "", in_memory: bool = False,
                image_size: int = 64, factor_sizes: Sequence[int] = (),
                cache_dir: str = "") -> files.FileImageDataset:
  """Shapes3D from DeepMind's `3dshapes.h5` (see the module docstring)."""
  name = "shapes3d_h5"
  path = _check_path(path, name, "DeepMind's 3dshapes.h5")
  sizes = files.check_factor_sizes(factor_sizes, files.SHAPES3D_FACTOR_SIZES,
                                   files.SHAPES3D_FACTOR_NAMES, name)
  h5py = _import_h5py()
  try:
    handle = h5py.File(path, "r")
  except OSError as error:
    raise ValueError(f"{name}: {path!r} is not an HDF5 file ({error})"
                     ) from error
  missing = [k for k in ("images", "labels") if k not in handle]
  if missing:
    keys = sorted(handle.keys())
    handle.close()
    raise ValueError(f"{name}: {path!r} lacks dataset(s) {missing}; found "
                     f"{keys} (expected 'images' and 'labels')")
  labels = np.asarray(handle["labels"])
  if labels.ndim != 2 or labels.shape[0] != handle["images"].shape[0]:
    raise ValueError(f"{name}: 'labels' has shape {labels.shape}; expected "
                     f"({handle['images'].shape[0]}, 6), one row per image")
  images = _h5_images(path, handle["images"])
  if isinstance(images, np.memmap):
    handle.close()   # the memmap reads the file directly
  where = f"{name} {path}"
  store = files.ImageStore.from_array(images, image_size, where)
  indices = files.factor_indices(labels, files.SHAPES3D_FACTOR_NAMES, sizes,
                                 where)
  rows = files.grid_rows(indices, files.SHAPES3D_FACTOR_NAMES, sizes, where)
  return files.FileImageDataset("shapes3d", files.SHAPES3D_FACTOR_NAMES,
                                sizes, store, rows, in_memory, cache_dir)


# ----------------------------------------------------------------- npz

def _npz_member(archive: zipfile.ZipFile, key: str) -> zipfile.ZipInfo | None:
  try:
    return archive.getinfo(f"{key}.npy")
  except KeyError:
    return None


def _read_npy_header(f: Any, path: str
                     ) -> tuple[tuple[int, ...], bool, np.dtype]:
  """(shape, fortran_order, dtype) of the .npy stream at `f`'s position,
  which is left at the first data byte."""
  version = np.lib.format.read_magic(f)
  if version == (1, 0):
    return np.lib.format.read_array_header_1_0(f)
  if version == (2, 0):
    return np.lib.format.read_array_header_2_0(f)
  raise ValueError(f"{path}: unsupported .npy format version {version}")


def _stored_npy_memmap(path: str, info: zipfile.ZipInfo) -> np.memmap:
  """Memory-maps an uncompressed `.npy` member of a zip in place: its bytes
  follow the member's local header (30 bytes + name + extra field)."""
  with open(path, "rb") as f:
    f.seek(info.header_offset)
    header = f.read(30)
    if header[:4] != b"PK\x03\x04":
      raise ValueError(f"{path}: corrupt zip entry {info.filename!r}")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    f.seek(info.header_offset + 30 + name_len + extra_len)
    shape, fortran, dtype = _read_npy_header(f, path)
    offset = f.tell()
  if dtype.hasobject:
    raise ValueError(f"{path}: {info.filename!r} holds Python objects")
  return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                   order="F" if fortran else "C")


def _npz_images(path: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo,
                in_memory: bool, cache_dir: str, name: str) -> np.ndarray:
  """The `images` member as an array that does not live in host memory:
  mapped in place if stored, else unpacked once into the cache (the member
  is a complete .npy file) and mapped there. With `in_memory` a compressed
  member is simply read (it is about to be copied to the device anyway)."""
  if info.compress_type == zipfile.ZIP_STORED:
    return _stored_npy_memmap(path, info)
  if in_memory:
    with archive.open(info) as f:
      return np.lib.format.read_array(f, allow_pickle=False)
  target = files.cache_path(cache_dir, name,
                            (files.file_signature(path), info.filename))
  if not os.path.exists(target):
    partial = f"{target}.partial-{os.getpid()}"
    with archive.open(info) as src, open(partial, "wb") as dst:
      shutil.copyfileobj(src, dst, 1 << 24)
    os.replace(partial, target)
  return np.load(target, mmap_mode="r", allow_pickle=False)


def _load_npz(name: str, path: str, factor_names: tuple[str, ...],
              factor_sizes: tuple[int, ...], in_memory: bool,
              image_size: int, cache_dir: str,
              noise_key: str | None = None) -> files.FileImageDataset:
  """The shared body of the npz loaders (see the module docstring); with
  `noise_key`, the file must also hold `labels` and that array [N], a
  label treated as noise (`files.grid_rows`)."""
  where = f"{name} {path}"
  if not zipfile.is_zipfile(path):
    raise ValueError(f"{where}: not an .npz archive (expected key 'images' "
                     f"and optionally 'labels')")
  with zipfile.ZipFile(path) as archive:
    image_info = _npz_member(archive, "images")
    label_info = _npz_member(archive, "labels")
    if image_info is None:
      found = sorted(n.removesuffix(".npy") for n in archive.namelist())
      raise ValueError(f"{where}: no 'images' array; found {found} (expected "
                       f"'images' and optionally 'labels')")
    noise_info = _npz_member(archive, noise_key) if noise_key else None
    if noise_key and (label_info is None or noise_info is None):
      found = sorted(n.removesuffix(".npy") for n in archive.namelist())
      raise ValueError(f"{where}: needs arrays 'images', 'labels' and "
                       f"{noise_key!r}; found {found}")
    images = _npz_images(path, archive, image_info, in_memory, cache_dir, name)
    labels = noise = None
    if label_info is not None:
      with archive.open(label_info) as f:
        labels = np.lib.format.read_array(f, allow_pickle=False)
    if noise_info is not None:
      with archive.open(noise_info) as f:
        noise = np.lib.format.read_array(f, allow_pickle=False).reshape(-1)
  if images.ndim not in (3, 4):
    raise ValueError(f"{where}: 'images' has shape {images.shape}; expected "
                     f"(N, H, W) or (N, H, W, C)")
  num_rows = images.shape[0]
  if labels is None:
    if num_rows != math.prod(factor_sizes):
      raise ValueError(
          f"{where}: {num_rows} images but the grid "
          f"{dict(zip(factor_names, factor_sizes))} has "
          f"{math.prod(factor_sizes)} tuples; without a 'labels' array the "
          f"images must be the complete grid in row-major order (or set "
          f"factor_sizes)")
    rows = np.arange(num_rows, dtype=np.int64)
  else:
    if labels.ndim != 2 or labels.shape[0] != num_rows:
      raise ValueError(
          f"{where}: 'labels' has shape {labels.shape}; expected "
          f"({num_rows}, {len(factor_names)}), one row per image with columns "
          f"{factor_names}")
    if noise is not None and noise.shape[0] != num_rows:
      raise ValueError(f"{where}: {noise_key!r} has {noise.shape[0]} values "
                       f"for {num_rows} images")
    indices = files.factor_indices(labels, factor_names, factor_sizes, where)
    rows = files.grid_rows(indices, factor_names, factor_sizes, where, noise)
  store = files.ImageStore.from_array(images, image_size, where)
  return files.FileImageDataset(name.removesuffix("_npz"), factor_names,
                                factor_sizes, store, rows, in_memory,
                                cache_dir)


@DATASETS.register("cars3d_npz")
def cars3d_npz(path: str = "", in_memory: bool = False, image_size: int = 64,
               factor_sizes: Sequence[int] = (), cache_dir: str = ""
               ) -> files.FileImageDataset:
  """Cars3D from an npz (see the module docstring)."""
  name = "cars3d_npz"
  path = _check_path(path, name, "an .npz with 'images' (and 'labels')")
  sizes = files.check_factor_sizes(factor_sizes, files.CARS3D_FACTOR_SIZES,
                                   files.CARS3D_FACTOR_NAMES, name)
  return _load_npz(name, path, files.CARS3D_FACTOR_NAMES, sizes, in_memory,
                   files.check_image_size(image_size, name), cache_dir)


def _mpi3d_sizes(path: str) -> tuple[int, ...]:
  """The MPI3D variant's grid, from the number of images in the file."""
  with zipfile.ZipFile(path) as archive:
    info = _npz_member(archive, "images")
    if info is None:
      return files.MPI3D_FACTOR_SIZES   # reported by _load_npz
    with archive.open(info) as f:
      shape = _read_npy_header(f, path)[0]
  for sizes in (files.MPI3D_FACTOR_SIZES, files.MPI3D_COMPLEX_FACTOR_SIZES):
    if shape and shape[0] == math.prod(sizes):
      return sizes
  raise ValueError(
      f"mpi3d_npz {path}: {shape[0] if shape else 0} images match neither "
      f"MPI3D grid ({math.prod(files.MPI3D_FACTOR_SIZES)} for toy/realistic/"
      f"real, {math.prod(files.MPI3D_COMPLEX_FACTOR_SIZES)} for complex); "
      f"set factor_sizes for a sub-grid")


@DATASETS.register("mpi3d_npz")
def mpi3d_npz(path: str = "", in_memory: bool = False, image_size: int = 64,
              factor_sizes: Sequence[int] = (), cache_dir: str = ""
              ) -> files.FileImageDataset:
  """MPI3D (any variant) from an npz (see the module docstring)."""
  name = "mpi3d_npz"
  path = _check_path(path, name, "an mpi3d_*.npz with 'images'")
  if not zipfile.is_zipfile(path):
    raise ValueError(f"{name} {path}: not an .npz archive")
  reference = (files.MPI3D_FACTOR_SIZES if factor_sizes
               else _mpi3d_sizes(path))
  sizes = files.check_factor_sizes(factor_sizes, reference,
                                   files.MPI3D_FACTOR_NAMES, name)
  return _load_npz(name, path, files.MPI3D_FACTOR_NAMES, sizes, in_memory,
                   files.check_image_size(image_size, name), cache_dir)


@DATASETS.register("smallnorb_npz")
def smallnorb_npz(path: str = "", in_memory: bool = False,
                  image_size: int = 64, factor_sizes: Sequence[int] = (),
                  cache_dir: str = "") -> files.FileImageDataset:
  """SmallNORB from an npz with the instance as noise (module docstring),
  e.g. the one `python -m disentax.data.fetch smallnorb` prepares."""
  name = "smallnorb_npz"
  path = _check_path(path, name, "an .npz with 'images', 'labels' and "
                     "'instance'")
  sizes = files.check_factor_sizes(factor_sizes, files.SMALLNORB_FACTOR_SIZES,
                                   files.SMALLNORB_FACTOR_NAMES, name)
  return _load_npz(name, path, files.SMALLNORB_FACTOR_NAMES, sizes, in_memory,
                   files.check_image_size(image_size, name), cache_dir,
                   noise_key="instance")
