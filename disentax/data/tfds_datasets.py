"""dSprites, Shapes3D and SmallNORB from a TensorFlow Datasets `data_dir`.

For users who already prepared these datasets with TFDS: nothing is
downloaded (`download=False` throughout) and TensorFlow is not needed when
the data was prepared in the random-access `array_record` format (`tfds
build <name> --file_format=array_record`), which `tfds.data_source` reads
with numpy and PIL alone. Labels are read once (images skipped; then kept
in `cache_dir`, as parsing costs ~0.2 ms a record) to build the grid
table; images are then fetched per batch through the shared
`FileImageDataset` (see `disentax/data/files.py`), or copied to the device
with `in_memory=True`.

Decoding a PNG record costs about a quarter of a millisecond, so on the
callback path each grid position's final image is kept after its first read
in a sparse file-backed decode cache under `cache_dir` (see
`files.FileImageDataset`): every image is decoded and resized once per
process, and host RAM stays bounded.

A data_dir prepared in the default `tfrecord` format has no random access:
it is then streamed once through `tfds.load(..., batch_size=...)` (which
needs TensorFlow) into a raw uint8 memmap in `cache_dir`, never into one
multi-GB host array.

Registered builders (config `[dataset] name = ...`):

* `tfds_dsprites`: factors shape 3, scale 6, orientation 40, posX 32,
  posY 32; 64x64x1 binary.
* `tfds_shapes3d`: floor_hue 10, wall_hue 10, object_hue 10, scale 8,
  shape 4, orientation 15; 64x64x3.
* `tfds_smallnorb` (also registered as `smallnorb`, the name
  experiments/deft.py uses): category 5, elevation 9, azimuth 18, lighting 6;
  the 96x96 left image area-averaged to `image_size` (64). The instance is
  noise: a split holds each factor tuple once per instance (5 in `train`,
  5 in `test`), and the tuple at row-major grid position p shows the
  instance at position `splitmix64(p) mod 5` of its sorted instances --
  deterministic, independent of the record order, and spread evenly over
  the instances (`files.grid_rows`).

Options: `data_dir` (required), `split='train'` (any TFDS split string that
covers a complete grid), `in_memory=False`, `image_size=64`,
`factor_sizes` (override, for tests and data_dirs holding a sub-grid),
`cache_dir` (decode cache and tfrecord fallback; default
`files.default_cache_dir()`).
"""

from __future__ import annotations

import dataclasses
import glob
import os
from typing import Any, Sequence

import numpy as np

from disentax.data import DATASETS
from disentax.data import files
from disentax.data.dsprites import FACTOR_NAMES as DSPRITES_FACTOR_NAMES
from disentax.data.dsprites import FACTOR_SIZES as DSPRITES_FACTOR_SIZES

_INSTALL_HINT = "pip install 'disentax[tfds]'"
_LABEL_ROWS_PER_READ = 4096
_STREAM_BATCH = 1024


@dataclasses.dataclass(frozen=True)
class TfdsGrid:
  """How one TFDS builder maps onto a factor grid."""
  builder: str                    # TFDS builder name
  factor_names: tuple[str, ...]   # ours, in grid order
  factor_sizes: tuple[int, ...]   # the reference grid
  label_keys: tuple[str, ...]     # TFDS feature of each factor
  noise_key: str | None = None    # a label treated as nuisance
  image_key: str = "image"
  other_images: tuple[str, ...] = ()  # image features never decoded
  binary: bool = False            # pixels are 0/1 (dSprites)


GRIDS = {
    "dsprites": TfdsGrid(
        "dsprites", DSPRITES_FACTOR_NAMES, DSPRITES_FACTOR_SIZES,
        ("label_shape", "label_scale", "label_orientation",
         "label_x_position", "label_y_position"), binary=True),
    "shapes3d": TfdsGrid(
        "shapes3d", files.SHAPES3D_FACTOR_NAMES, files.SHAPES3D_FACTOR_SIZES,
        ("label_floor_hue", "label_wall_hue", "label_object_hue",
         "label_scale", "label_shape", "label_orientation")),
    "smallnorb": TfdsGrid(
        "smallnorb", files.SMALLNORB_FACTOR_NAMES,
        files.SMALLNORB_FACTOR_SIZES,
        ("label_category", "label_elevation", "label_azimuth",
         "label_lighting"), noise_key="instance", other_images=("image2",)),
}


def import_tfds() -> Any:
  """`tensorflow_datasets`, imported only when a TFDS dataset is built."""
  try:
    import tensorflow_datasets as tfds  # lazily: an optional extra
  except ImportError as error:
    raise ImportError(
        f"the TFDS datasets need tensorflow_datasets: {_INSTALL_HINT}"
    ) from error
  return tfds


def _get_rows(source: Any, rows: Sequence[int]) -> list[Any]:
  """Examples at `rows`: batched where the source can (array_record reads
  in parallel), one by one otherwise (e.g. a plain list)."""
  rows = [int(r) for r in rows]
  if hasattr(source, "__getitems__"):
    try:
      return list(source.__getitems__(rows))
    except TypeError:  # tfds.testing.mock_data's stock source (TFDS 4.9.10)
      pass
  return [source[r] for r in rows]


def _scalar(value: Any) -> Any:
  return np.asarray(value).reshape(())


class _Labels:
  """Collects the label columns (and noise) of examples, chunk by chunk."""

  def __init__(self, grid: TfdsGrid):
    self.grid = grid
    self.columns: list[np.ndarray] = []
    self.noise: list[np.ndarray] = []

  def add(self, examples: dict[str, Any] | list[dict[str, Any]]) -> None:
    """Adds a list of examples, or one batch dict of arrays."""
    if isinstance(examples, dict):
      self.columns.append(np.stack([np.asarray(examples[k]).reshape(-1)
                                    for k in self.grid.label_keys], axis=1))
      if self.grid.noise_key:
        self.noise.append(np.asarray(examples[self.grid.noise_key]).reshape(-1))
      return
    self.columns.append(np.array(
        [[_scalar(ex[k]) for k in self.grid.label_keys] for ex in examples],
        np.int64).reshape(len(examples), len(self.grid.label_keys)))
    if self.grid.noise_key:
      self.noise.append(np.array([_scalar(ex[self.grid.noise_key])
                                  for ex in examples], np.int64))

  def arrays(self) -> tuple[np.ndarray, np.ndarray | None]:
    labels = np.concatenate(self.columns).astype(np.int64)
    noise = np.concatenate(self.noise) if self.grid.noise_key else None
    return labels, noise


def _prepared_files(data_dir: str, builder: str
                    ) -> tuple[tuple[str, int, int], ...]:
  """Signatures of every file of the prepared dataset (what a cache entry
  derived from it depends on); empty if none is on disk."""
  found = []
  for root, _, names in os.walk(os.path.join(data_dir, builder)):
    found.extend(files.file_signature(os.path.join(root, n)) for n in names)
  return tuple(sorted(found))


def _source_labels(grid: TfdsGrid, source: Any, data_dir: str, split: str,
                   cache_dir: str) -> tuple[np.ndarray, np.ndarray | None]:
  """(labels [N, F], noise [N] or None) of a data source, read once and
  then kept in the cache: parsing every record costs ~0.2 ms (about 90 s
  for Shapes3D), and evaluation tools rebuild the dataset."""
  signature = _prepared_files(data_dir, grid.builder)
  path = None
  if signature:   # (a mocked source has no files to key a cache on)
    path = files.cache_path(cache_dir, f"tfds_{grid.builder}_labels",
                            (grid.builder, split, len(source), signature),
                            ".npz")
    if os.path.exists(path):
      with np.load(path) as stored:
        return stored["labels"], (stored["noise"] if grid.noise_key else None)
  labels = _Labels(grid)
  for start in range(0, len(source), _LABEL_ROWS_PER_READ):
    labels.add(_get_rows(source, range(
        start, min(start + _LABEL_ROWS_PER_READ, len(source)))))
  label_array, noise = labels.arrays()
  if path is not None:
    partial = f"{path}.partial-{os.getpid()}.npz"
    np.savez(partial, labels=label_array,
             **({"noise": noise} if noise is not None else {}))
    os.replace(partial, path)
  return label_array, noise


def _prepared_versions(data_dir: str, builder: str) -> list[str]:
  return sorted(glob.glob(os.path.join(data_dir, builder, "**",
                                       "dataset_info.json"), recursive=True))


def _open_data_sources(tfds: Any, grid: TfdsGrid, data_dir: str,
                       split: str) -> tuple[Any, Any] | None:
  """(labels source, images source) via `tfds.data_source`, or None when
  the prepared data has no random-access format."""
  skip = tfds.decode.SkipDecoding
  try:
    labels = tfds.data_source(
        grid.builder, split=split, data_dir=data_dir, download=False,
        decoders={k: skip() for k in (grid.image_key, *grid.other_images)})
    images = tfds.data_source(
        grid.builder, split=split, data_dir=data_dir, download=False,
        decoders={k: skip() for k in grid.other_images} or None)
  except NotImplementedError:
    if not _prepared_versions(data_dir, grid.builder):
      raise FileNotFoundError(_not_prepared(grid, data_dir)) from None
    return None
  return labels, images


def _not_prepared(grid: TfdsGrid, data_dir: str) -> str:
  return (f"tfds_{grid.builder}: no prepared TFDS dataset {grid.builder!r} "
          f"under data_dir {data_dir!r}; prepare it once with `tfds build "
          f"{grid.builder} --data_dir={data_dir} --file_format=array_record` "
          f"(random access, no TensorFlow needed to read it)")


def _stream_to_cache(tfds: Any, grid: TfdsGrid, data_dir: str, split: str,
                     cache_dir: str) -> tuple[np.ndarray, np.ndarray,
                                              np.ndarray | None]:
  """The tfrecord fallback: (images memmap, labels, noise), streaming the
  split once through `tfds.load` into the cache: raw uint8 image bytes plus
  an npz of labels, shape and dtype (written last, so its presence marks a
  complete entry)."""
  key = (grid.builder, split, _prepared_files(data_dir, grid.builder))
  image_path = files.cache_path(cache_dir, f"tfds_{grid.builder}", key,
                                ".images.raw")
  meta_path = image_path[:-len(".images.raw")] + ".labels.npz"
  if not (os.path.exists(image_path) and os.path.exists(meta_path)):
    try:   # TensorFlow is imported lazily, by load or by the iteration
      dataset = tfds.load(
          grid.builder, split=split, data_dir=data_dir, download=False,
          batch_size=_STREAM_BATCH,
          decoders={k: tfds.decode.SkipDecoding() for k in grid.other_images}
          or None)
      write_stream(tfds.as_numpy(dataset), grid, image_path, meta_path)
    except ImportError as error:
      raise ImportError(
          f"tfds_{grid.builder}: {data_dir!r} holds the dataset in the "
          f"tfrecord format, which only TensorFlow can read; either install "
          f"tensorflow-cpu once (to stream it into a cache) or re-prepare it "
          f"with `tfds build {grid.builder} --file_format=array_record`"
      ) from error
  with np.load(meta_path) as meta:
    images = np.memmap(image_path, dtype=np.dtype(str(meta["dtype"])),
                       mode="r", shape=tuple(int(s) for s in meta["shape"]))
    noise = meta["noise"] if grid.noise_key else None
    return images, meta["labels"], noise


def write_stream(batches: Any, grid: TfdsGrid, image_path: str,
                 meta_path: str) -> None:
  """Appends the images of numpy batch dicts to `image_path` (raw bytes)
  and writes labels, shape and dtype to `meta_path`; a partial stream
  leaves no entry behind."""
  partial = f"{image_path}.partial-{os.getpid()}"
  labels = _Labels(grid)
  count, shape, dtype = 0, None, None
  try:
    with open(partial, "wb") as raw:
      for batch in batches:
        images = np.asarray(batch[grid.image_key])
        if shape is None:
          shape, dtype = images.shape[1:], images.dtype
        raw.write(np.ascontiguousarray(images, dtype).tobytes())
        labels.add(batch)
        count += images.shape[0]
    if shape is None:
      raise ValueError(f"tfds_{grid.builder}: the split is empty")
  except BaseException:
    if os.path.exists(partial):
      os.remove(partial)
    raise
  os.replace(partial, image_path)
  label_array, noise = labels.arrays()
  extra = {"noise": noise} if noise is not None else {}
  np.savez(meta_path + ".partial.npz", labels=label_array,
           shape=np.array((count, *shape)), dtype=np.array(dtype.str), **extra)
  os.replace(meta_path + ".partial.npz", meta_path)


def load_tfds(grid: TfdsGrid, name: str, data_dir: str, split: str = "train",
              in_memory: bool = False, image_size: int = 64,
              factor_sizes: Sequence[int] | None = None,
              cache_dir: str = "") -> files.FileImageDataset:
  """The `FileImageDataset` of `grid` over a prepared TFDS `data_dir`."""
  where = f"{name} ({grid.builder}, split {split!r})"
  if not data_dir:
    raise ValueError(
        f"{name}: set dataset.data_dir to the TFDS data directory that holds "
        f"{grid.builder!r} (e.g. ~/tensorflow_datasets); nothing is "
        f"downloaded")
  data_dir = os.path.expanduser(os.fspath(data_dir))
  if not os.path.isdir(data_dir):
    raise FileNotFoundError(f"{name}: data_dir {data_dir!r} does not exist")
  sizes = files.check_factor_sizes(factor_sizes, grid.factor_sizes,
                                   grid.factor_names, name)
  files.check_image_size(image_size, name)
  tfds = import_tfds()
  sources = _open_data_sources(tfds, grid, data_dir, split)
  if sources is not None:
    label_source, image_source = sources
    label_array, noise = _source_labels(grid, label_source, data_dir, split,
                                        cache_dir)

    def fetch(rows: np.ndarray) -> np.ndarray:
      return np.stack([np.asarray(ex[grid.image_key])
                       for ex in _get_rows(image_source, rows)])

    first = np.asarray(_get_rows(image_source, [0])[0][grid.image_key])
    store = files.ImageStore(fetch, len(image_source), first.shape,
                             first.dtype, image_size, where, grid.binary)
  else:
    images, label_array, noise = _stream_to_cache(tfds, grid, data_dir, split,
                                                  cache_dir)
    store = files.ImageStore.from_array(images, image_size, where, grid.binary)
  indices = files.factor_indices(label_array, grid.factor_names, sizes, where)
  rows = files.grid_rows(indices, grid.factor_names, sizes, where, noise)
  return files.FileImageDataset(name, grid.factor_names, sizes, store, rows,
                                in_memory, cache_dir)


# ---------------------------------------------------------------- builders

@DATASETS.register("tfds_dsprites")
def tfds_dsprites(data_dir: str = "", split: str = "train",
                  in_memory: bool = False, image_size: int = 64,
                  factor_sizes: Sequence[int] = (), cache_dir: str = ""
                  ) -> files.FileImageDataset:
  """dSprites from a TFDS data_dir (see the module docstring)."""
  return load_tfds(GRIDS["dsprites"], "tfds_dsprites", data_dir, split,
                   in_memory, image_size, factor_sizes, cache_dir)


@DATASETS.register("tfds_shapes3d")
def tfds_shapes3d(data_dir: str = "", split: str = "train",
                  in_memory: bool = False, image_size: int = 64,
                  factor_sizes: Sequence[int] = (), cache_dir: str = ""
                  ) -> files.FileImageDataset:
  """Shapes3D from a TFDS data_dir (see the module docstring)."""
  return load_tfds(GRIDS["shapes3d"], "tfds_shapes3d", data_dir, split,
                   in_memory, image_size, factor_sizes, cache_dir)


@DATASETS.register("tfds_smallnorb")
def tfds_smallnorb(data_dir: str = "", split: str = "train",
                   in_memory: bool = False, image_size: int = 64,
                   factor_sizes: Sequence[int] = (), cache_dir: str = ""
                   ) -> files.FileImageDataset:
  """SmallNORB from a TFDS data_dir, instance as noise (module docstring)."""
  return load_tfds(GRIDS["smallnorb"], "tfds_smallnorb", data_dir, split,
                   in_memory, image_size, factor_sizes, cache_dir)


@DATASETS.register("smallnorb")
def smallnorb(data_dir: str = "", split: str = "train",
              in_memory: bool = False, image_size: int = 64,
              factor_sizes: Sequence[int] = (), cache_dir: str = ""
              ) -> files.FileImageDataset:
  """`tfds_smallnorb` under the name experiments/deft.py uses."""
  return load_tfds(GRIDS["smallnorb"], "smallnorb", data_dir, split,
                   in_memory, image_size, factor_sizes, cache_dir)
