"""Unlabelled image collections (3D Chairs, CelebA, ...) from a folder.

`image_folder` reads every image under `path` (recursively; png, jpg, jpeg,
bmp, gif, webp, tif, tiff; sorted by relative path), center-crops it to the
largest square, resizes it with PIL's area filter (`Image.BOX`) to
`image_size` and converts it to `channels` (1 grey, 3 RGB). The result is
written once, as a uint8 `.npy`, to a cache: `cache_dir`, by default
`files.default_cache_dir()` (`$DISENTAX_CACHE_DIR`, else
`$XDG_CACHE_HOME/disentax`, else `~/.cache/disentax`), never into the
user's folder (it may be read-only or shared). The cache file's name hashes
the folder, the names, sizes and modification times of its images, and the
options, so editing the folder or changing an option builds a new one.
Later runs memory-map it; `in_memory=True` copies it to the device.

The images have no ground truth, so the dataset has one factor, `image`, of
size N (the image index): sampling factors samples images uniformly, and
`labelled = False` tells evaluation to run only the unsupervised metrics.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from disentax.data import DATASETS
from disentax.data import files

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif",
                    ".tiff")
_CACHE_VERSION = 1   # bump when the preprocessing changes


class ImageFolder(files.FileImageDataset):
  """A folder of images as a one-factor dataset (no ground truth)."""

  labelled = False

  def __init__(self, path: str, image_size: int = 64, channels: int = 3,
               in_memory: bool = False, cache_dir: str = ""):
    if not path:
      raise ValueError("image_folder: set dataset.path to a folder of images")
    self.path = os.path.expanduser(os.fspath(path))
    if not os.path.isdir(self.path):
      raise FileNotFoundError(f"image_folder: path {self.path!r} is not a "
                              f"directory")
    if channels not in (1, 3) or isinstance(channels, bool):
      raise ValueError(f"image_folder: channels must be 1 (grey) or 3 (RGB), "
                       f"got {channels!r}")
    files.check_image_size(image_size, "image_folder")
    self.files = list_images(self.path)
    if not self.files:
      raise ValueError(f"image_folder: no images ({', '.join(IMAGE_EXTENSIONS)}"
                       f") under {self.path!r}")
    stats = [os.stat(os.path.join(self.path, name)) for name in self.files]
    key = (_CACHE_VERSION, os.path.abspath(self.path), image_size, channels,
           tuple((name, st.st_size, st.st_mtime_ns)
                 for name, st in zip(self.files, stats)))
    self.cache_file = files.cache_path(cache_dir, "image_folder", key)
    if not os.path.exists(self.cache_file):
      _write_cache(self.path, self.files, image_size, channels,
                   self.cache_file)
    images = np.load(self.cache_file, mmap_mode="r")
    store = files.ImageStore.from_array(images, image_size,
                                        f"image_folder {self.path}")
    super().__init__("image_folder", ("image",), (len(self.files),), store,
                     np.arange(len(self.files)), in_memory, cache_dir)


def list_images(path: str) -> list[str]:
  """Relative paths of the images under `path`, sorted (hidden folders, such
  as a cache someone placed there, are skipped)."""
  found = []
  for root, dirs, names in os.walk(path):
    dirs[:] = [d for d in dirs if not d.startswith(".")]
    for name in names:
      if name.lower().endswith(IMAGE_EXTENSIONS):
        found.append(os.path.relpath(os.path.join(root, name), path))
  return sorted(found)


def load_image(file: str, image_size: int, channels: int) -> np.ndarray:
  """uint8 [image_size, image_size, channels]: the largest centred square
  of the image, area-resized."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  with Image.open(file) as image:
    image = image.convert("L" if channels == 1 else "RGB")
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    image = image.resize((image_size, image_size), Image.Resampling.BOX)
    return np.asarray(image, np.uint8).reshape(image_size, image_size,
                                               channels)


def _write_cache(path: str, names: list[str], image_size: int, channels: int,
                 target: str) -> None:
  """Decodes every image once into a uint8 .npy at `target` (written under
  a temporary name and renamed, so an interrupted run leaves no cache)."""
  partial = f"{target}.partial-{os.getpid()}"
  out = np.lib.format.open_memmap(
      partial, mode="w+", dtype=np.uint8,
      shape=(len(names), image_size, image_size, channels))
  print(f"image_folder: caching {len(names)} images of {path} at "
        f"{image_size}x{image_size}x{channels} to {target}", file=sys.stderr)
  complete = False
  try:
    for i, name in enumerate(names):
      try:
        out[i] = load_image(os.path.join(path, name), image_size, channels)
      except OSError as error:
        raise ValueError(f"image_folder: cannot read {name!r} in {path!r}: "
                         f"{error}") from error
    out.flush()
    complete = True
  finally:
    del out   # unmap before renaming or removing
    if not complete:
      os.remove(partial)
  os.replace(partial, target)


@DATASETS.register("image_folder")
def image_folder(path: str = "", image_size: int = 64, channels: int = 3,
                 in_memory: bool = False, cache_dir: str = "") -> ImageFolder:
  """An unlabelled folder of images (see the module docstring)."""
  return ImageFolder(path, image_size, channels, in_memory, cache_dir)
