"""Turning downloaded upstream files into what the npz loaders read.

* Cars3D: the Deep Visual Analogy archive (`nips2015-analogy-data.tar.gz`)
  holds `data/cars/car_*_mesh.mat`, each with `im` of shape (128, 128, 3,
  24, 4): height, width, RGB, azimuth, elevation. `prepare_cars3d` writes
  `images` uint8 [4 * 24 * n, 64, 64, 3] in row-major (elevation, azimuth,
  object) order -- `cars3d_npz`'s canonical order, so no labels are needed --
  with the objects in sorted file-name order (disentanglement_lib numbers
  them in directory-listing order, which the file system decides) and each
  image area-averaged from 128 to 64 pixels by `files.area_resize`, the
  loaders' own resize (disentanglement_lib used PIL's antialiasing
  thumbnail: pixel values differ slightly, the grid does not).
* SmallNORB: NYU's six `.mat.gz` files in the NORB binary matrix format
  (little-endian: an int32 type code, an int32 rank, max(3, rank) int32
  dimensions, the data). `prepare_smallnorb` keeps the left camera's 96x96
  image of each pair and writes, training half first, `images` uint8
  [48600, 96, 96], `labels` int64 [48600, 4] (category, elevation, azimuth
  / 2, lighting) and `instance` [48600], the noise label `smallnorb_npz`
  reads; the loader area-averages to its `image_size`.

Both write the npz uncompressed (the loaders memory-map it) and atomically
(`disentax.workdir.write_npz`): an interrupted preparation leaves nothing.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import tarfile
from typing import IO, Mapping

import numpy as np

from disentax.data import files
from disentax.workdir import write_npz

# ------------------------------------------------------------------ Cars3D

CARS3D_IMAGE_SIZE = 64
_CAR_MEMBER = re.compile(r"(^|/)cars/[^/]+\.mat$")


def _car_images(data: bytes, name: str) -> np.ndarray:
  """uint8 [4, 24, 64, 64, 3] (elevation, azimuth) images of one car."""
  from scipy import io as sio  # pylint: disable=import-outside-toplevel
  mesh = sio.loadmat(io.BytesIO(data))
  if "im" not in mesh:
    raise ValueError(f"cars3d: {name} has no 'im' array (found "
                     f"{sorted(k for k in mesh if not k.startswith('__'))})")
  im = np.asarray(mesh["im"])
  if im.ndim != 5 or im.shape[2:] != (3, 24, 4) or im.shape[0] != im.shape[1]:
    raise ValueError(f"cars3d: {name} 'im' has shape {im.shape}; expected "
                     f"(H, H, 3, 24, 4): height, width, RGB, azimuth, "
                     f"elevation")
  views = np.transpose(im, (4, 3, 0, 1, 2)).astype(np.uint8)  # el, az, ...
  resized = files.area_resize(views.reshape(-1, *views.shape[2:]),
                              CARS3D_IMAGE_SIZE)
  return resized.reshape(4, 24, *resized.shape[1:])


def prepare_cars3d(paths: Mapping[str, str], output: str) -> None:
  """Writes Cars3D's `images` npz at `output` from the archive in `paths`
  (its only value); see the module docstring."""
  (archive,) = paths.values()
  cars = {}
  with tarfile.open(archive, "r:gz") as tar:
    for member in tar:
      if member.isfile() and _CAR_MEMBER.search(member.name):
        cars[member.name] = _car_images(tar.extractfile(member).read(),
                                        member.name)
  if not cars:
    raise ValueError(f"cars3d: {archive} holds no cars/*.mat files")
  names = sorted(cars)
  # [elevation, azimuth, object, H, W, C], flattened row-major.
  images = np.stack([cars[n] for n in names], axis=2)
  write_npz(output, {"images": images.reshape(-1, *images.shape[3:])})


# --------------------------------------------------------------- SmallNORB

# NORB binary matrix type codes (the format's specification, cs.nyu.edu).
_NORB_DTYPES = {0x1E3D4C55: np.uint8, 0x1E3D4C54: np.int32,
                0x1E3D4C56: np.int16, 0x1E3D4C51: np.float32,
                0x1E3D4C53: np.float64}
_NORB_ROWS_PER_READ = 1024


def _norb_header(f: IO[bytes], name: str) -> tuple[np.dtype, tuple[int, ...]]:
  """(dtype, shape) of a NORB binary matrix; leaves `f` at the data."""
  head = np.frombuffer(f.read(8), "<i4")
  if head.size != 2 or int(head[0]) & 0xFFFFFFFF not in _NORB_DTYPES:
    raise ValueError(f"smallnorb: {name} is not a NORB binary matrix")
  code, rank = int(head[0]) & 0xFFFFFFFF, int(head[1])
  dims = np.frombuffer(f.read(4 * max(3, rank)), "<i4")
  if rank < 1 or dims.size != max(3, rank):
    raise ValueError(f"smallnorb: {name} has a corrupt header")
  return np.dtype(_NORB_DTYPES[code]).newbyteorder("<"), tuple(
      int(d) for d in dims[:rank])


def _read_exactly(f: IO[bytes], count: int, name: str) -> bytes:
  data = f.read(count)
  if len(data) != count:
    raise ValueError(f"smallnorb: {name} is truncated")
  return data


def read_norb_matrix(path: str) -> np.ndarray:
  """The whole NORB binary matrix of a `.mat.gz` file (labels)."""
  name = os.path.basename(path)
  with gzip.open(path, "rb") as f:
    dtype, shape = _norb_header(f, name)
    count = int(np.prod(shape))
    data = _read_exactly(f, count * dtype.itemsize, name)
  return np.frombuffer(data, dtype).reshape(shape)


def read_norb_left_images(path: str) -> np.ndarray:
  """uint8 [N, H, W]: the first (left) image of every stereo pair of a
  `-dat.mat.gz` file, read a block of rows at a time."""
  name = os.path.basename(path)
  with gzip.open(path, "rb") as f:
    dtype, shape = _norb_header(f, name)
    if dtype != np.uint8 or len(shape) != 4 or shape[1] != 2:
      raise ValueError(f"smallnorb: {name} holds {dtype} {shape}; expected "
                       f"uint8 (N, 2, H, W) stereo pairs")
    count, _, height, width = shape
    left = np.empty((count, height, width), np.uint8)
    row_bytes = 2 * height * width
    for start in range(0, count, _NORB_ROWS_PER_READ):
      rows = min(_NORB_ROWS_PER_READ, count - start)
      block = np.frombuffer(_read_exactly(f, rows * row_bytes, name),
                            np.uint8).reshape(rows, 2, height, width)
      left[start:start + rows] = block[:, 0]
  return left


def _norb_file(paths: Mapping[str, str], half: str, part: str) -> str:
  suffix = f"-{half}-{part}.mat.gz"
  found = [p for name, p in paths.items() if name.endswith(suffix)]
  if len(found) != 1:
    raise ValueError(f"smallnorb: expected one *{suffix} file, got "
                     f"{sorted(paths)}")
  return found[0]


def prepare_smallnorb(paths: Mapping[str, str], output: str) -> None:
  """Writes SmallNORB's npz at `output` from the six files in `paths`
  (filename -> path); see the module docstring."""
  images, labels, instances = [], [], []
  for half in ("training", "testing"):
    left = read_norb_left_images(_norb_file(paths, half, "dat"))
    category = read_norb_matrix(_norb_file(paths, half, "cat")).reshape(-1)
    info = read_norb_matrix(_norb_file(paths, half, "info"))
    if not (len(left) == len(category) == len(info)) or info.shape[1:] != (4,):
      raise ValueError(
          f"smallnorb {half}: {len(left)} images, {len(category)} categories "
          f"and info {info.shape}; expected one category and 4 info values "
          f"(instance, elevation, azimuth, lighting) per image")
    images.append(left)
    labels.append(np.stack([category, info[:, 1], info[:, 2] // 2,
                            info[:, 3]], axis=1).astype(np.int64))
    instances.append(info[:, 0].astype(np.int64))
  write_npz(output, {"images": np.concatenate(images),
                     "labels": np.concatenate(labels),
                     "instance": np.concatenate(instances)})
