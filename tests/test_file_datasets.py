"""File-backed datasets: TFDS (mocked and a real tiny array_record dir),
Shapes3D h5, Cars3D / MPI3D npz and image folders, through both the host
callback path and the in-memory path.

Every file here is tiny and written by the test; grids are shrunk with the
loaders' `factor_sizes` override. The strongest check is identity: each
file row gets its own random image, so an observation must equal the
(resized) image of the row whose labels are the requested factor tuple.
"""

from __future__ import annotations

import io
import itertools
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from disentax.data import DATASETS, make_dataset
from disentax.data import files
from disentax.data import tfds_datasets
from disentax.data.files import FileImageDataset, area_resize, grid_rows

try:
  import tensorflow_datasets as tfds
except ImportError:  # the `tfds` extra is not installed
  tfds = None
needs_tfds = pytest.mark.skipif(tfds is None,
                                reason="needs tensorflow-datasets")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
  """Default cache dir inside the test's tmp_path, never ~/.cache."""
  monkeypatch.setenv("DISENTAX_CACHE_DIR", str(tmp_path / "default_cache"))


def full_grid(sizes) -> np.ndarray:
  """All tuples of a grid, row-major, int64 [prod(sizes), len(sizes)]."""
  return np.array(list(itertools.product(*map(range, sizes))), np.int64)


def render(dataset, factors) -> np.ndarray:
  return np.asarray(jax.jit(dataset.observations_from_factors)(
      jnp.asarray(factors, jnp.int32)))


def as_float(images_uint8, size) -> np.ndarray:
  """What a loader should return for raw uint8 [n, H, W, C] file images."""
  return area_resize(images_uint8, size).astype(np.float32) / 255.0


def assert_image(actual, expected):
  """Equal up to float rounding of x / 255 (XLA may multiply by 1/255);
  distinct pixel values differ by 1/255, so this still identifies images."""
  np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)


def same_image(actual, expected) -> bool:
  return bool(np.allclose(actual, expected, rtol=0, atol=1e-6))


def check_identity(dataset, lookup, num=24, seed=0):
  """Sampled observations equal the images `lookup(factor tuple)` gives;
  repeated calls agree; values lie in [0, 1]."""
  factors, obs = jax.jit(dataset.sample, static_argnums=1)(
      jax.random.key(seed), num)
  obs, factors = np.asarray(obs), np.asarray(factors)
  assert obs.shape == (num, *dataset.observation_shape)
  assert obs.dtype == np.float32 and obs.min() >= 0 and obs.max() <= 1
  for f, o in zip(factors, obs):
    assert_image(o, lookup(tuple(int(v) for v in f)))
  np.testing.assert_array_equal(render(dataset, factors), obs)


# ----------------------------------------------------------- shared pieces

def test_area_resize_known_answers():
  blocks = np.arange(32 * 32, dtype=np.uint8).reshape(32, 32) % 251
  big = np.repeat(np.repeat(blocks, 3, 0), 3, 1)[None, :, :, None]  # 96x96
  small = area_resize(big, 64)
  np.testing.assert_array_equal(
      small[0, :, :, 0], np.repeat(np.repeat(blocks, 2, 0), 2, 1))
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
  halves = image.reshape(2, 4, 2, 4, 2, 3).astype(np.float64).mean((2, 4))
  np.testing.assert_array_equal(area_resize(image, 4), np.rint(halves))
  assert area_resize(image, 8) is image


def test_grid_rows_inverts_any_row_order():
  sizes, names = (2, 3, 4), ("a", "b", "c")
  grid = full_grid(sizes)
  perm = np.random.default_rng(1).permutation(len(grid))
  rows = grid_rows(grid[perm], names, sizes, "t")
  np.testing.assert_array_equal(grid[perm][rows], grid)


def test_factor_indices_maps_values_and_names_the_bad_factor():
  values = np.array([[0.75, 10.0], [1.25, -30.0], [0.75, -30.0],
                     [1.25, 10.0]])
  np.testing.assert_array_equal(
      files.factor_indices(values, ("scale", "angle"), (2, 2), "t"),
      [[0, 1], [1, 0], [0, 0], [1, 1]])
  with pytest.raises(ValueError, match=r"factor 'angle' takes 2 distinct.*"
                     r"needs 3"):
    files.factor_indices(values, ("scale", "angle"), (2, 3), "t")


def test_grid_rows_errors_name_factor_and_tuple():
  sizes, names = (2, 3), ("shape", "azimuth")
  grid = full_grid(sizes)
  with pytest.raises(ValueError, match=r"'azimuth'.*missing.*azimuth=2"):
    grid_rows(grid[grid[:, 1] != 2][[0, 1, 2, 3, 0, 1]], names, sizes, "t")
  duplicated = np.concatenate([grid[:-1], grid[:1]])
  with pytest.raises(ValueError, match=r"duplicated, e.g. \{shape=0, "
                     r"azimuth=0\} occurs 2 times"):
    grid_rows(duplicated, names, sizes, "t")


def test_grid_rows_noise_picks_one_copy_deterministically():
  sizes, names = (3, 40), ("a", "b")
  grid = full_grid(sizes)
  instances = np.array([4, 6, 7, 8, 9])
  labels = np.repeat(grid, len(instances), axis=0)
  noise = np.tile(instances, len(grid))
  perm = np.random.default_rng(2).permutation(len(labels))
  rows = grid_rows(labels[perm], names, sizes, "t", noise=noise[perm])
  np.testing.assert_array_equal(labels[perm][rows], grid)
  chosen = noise[perm][rows]
  # The choice depends on the tuple only, not on the file's row order.
  rows2 = grid_rows(labels, names, sizes, "t", noise=noise)
  np.testing.assert_array_equal(noise[rows2], chosen)
  assert set(chosen) == set(instances)       # spread over the instances
  with pytest.raises(ValueError, match="same noise label"):
    grid_rows(labels, names, sizes, "t", noise=np.zeros_like(noise))
  with pytest.raises(ValueError, match=r"5 time\(s\).*1 tuple\(s\) are "
                     r"missing or short, e.g. \{a=0, b=0\} occurs 4"):
    grid_rows(labels[1:], names, sizes, "t", noise=noise[1:])


def test_decode_cache_reads_each_image_once(tmp_path):
  """A slow store (here: resizing 32 -> 16) is read once per grid position;
  later lookups come from the decode cache, bit-identically."""
  rng = np.random.default_rng(13)
  images = rng.integers(0, 256, (6, 32, 32, 1), dtype=np.uint8)
  fetched = []

  def fetch(rows):
    fetched.extend(rows.tolist())
    return images[rows]
  store = files.ImageStore(fetch, 6, (32, 32, 1), np.uint8, 16, "t")
  assert not store.direct
  dataset = FileImageDataset("t", ("a", "b"), (2, 3), store,
                             np.array([5, 4, 3, 2, 1, 0]),
                             cache_dir=str(tmp_path))
  first = render(dataset, [[0, 0], [1, 2], [0, 0]])
  assert sorted(fetched) == [0, 5]
  everything = full_grid((2, 3))
  again = render(dataset, everything)
  assert sorted(set(fetched)) == [0, 1, 2, 3, 4, 5] and len(fetched) == 6
  np.testing.assert_array_equal(again[[0, 5, 0]], first)
  assert_image(again, as_float(images[::-1], 16))
  stacked = jnp.stack([everything, everything[::-1]]).astype(jnp.int32)
  vmapped = jax.jit(jax.vmap(dataset.observations_from_factors))(stacked)
  np.testing.assert_array_equal(vmapped, np.stack([again, again[::-1]]))
  assert len(fetched) == 6
  direct = files.ImageStore.from_array(images, 32, "t")
  assert direct.direct


# ----------------------------------------------------- TFDS (mock_data)

# A shrunken grid per builder: (factor_sizes, label values per factor).
TFDS_CASES = {
    "dsprites": ((1, 2, 2, 2, 2), ([2], [0, 5], [3, 39], [0, 31], [7, 8])),
    "shapes3d": ((2, 1, 2, 1, 2, 3),
                 ([0, 9], [4], [1, 2], [7], [0, 3], [0, 7, 14])),
    "smallnorb": ((2, 2, 3, 1), ([0, 4], [0, 8], [0, 1, 17], [5])),
}
IMAGE_SHAPES = {"dsprites": (64, 64, 1), "shapes3d": (64, 64, 3),
                "smallnorb": (96, 96, 1)}
SMALLNORB_INSTANCES = (4, 6, 7)


def tfds_examples(builder: str, sizes, values, seed=0):
  """A complete shuffled mock grid: (examples, label tuples as indices)."""
  grid = tfds_datasets.GRIDS[builder]
  rng = np.random.default_rng(seed)
  tuples = full_grid(sizes)
  if grid.noise_key:
    tuples = np.repeat(tuples, len(SMALLNORB_INSTANCES), axis=0)
    noise = np.tile(SMALLNORB_INSTANCES, len(tuples) // 3)
  examples = []
  for i, index in enumerate(tuples):
    ex = {key: np.int64(values[k][index[k]])
          for k, key in enumerate(grid.label_keys)}
    image = rng.integers(0, 256, IMAGE_SHAPES[builder], dtype=np.uint8)
    if grid.binary:
      image = (image > 127).astype(np.uint8)   # dSprites pixels are 0/1
    ex["image"] = image
    if grid.noise_key:
      ex[grid.noise_key] = np.int64(noise[i])
      ex["image2"] = np.zeros_like(image)
    examples.append(ex)
  perm = rng.permutation(len(examples))
  return [examples[i] for i in perm], tuples[perm]


def mock_source(examples):
  def as_data_source(builder, split=None, **kwargs):
    del builder, kwargs
    assert split == "train"
    return examples
  return tfds.testing.mock_data(as_data_source_fn=as_data_source)


def expected_tfds(builder, examples, tuples, size=64):
  """lookup(factor tuple) -> the observation the loader must return (for
  SmallNORB: the set of candidates, one per instance)."""
  grid = tfds_datasets.GRIDS[builder]

  def lookup(factors):
    hits = [ex["image"] for ex, t in zip(examples, tuples)
            if tuple(t) == factors]
    images = np.stack(hits)
    if grid.binary:
      images = images * np.uint8(255)
    return as_float(images, size)
  return lookup


@needs_tfds
@pytest.mark.parametrize("builder", sorted(TFDS_CASES))
def test_tfds_mock_grid_lookup(builder, tmp_path):
  sizes, values = TFDS_CASES[builder]
  examples, tuples = tfds_examples(builder, sizes, values)
  with mock_source(examples):
    dataset = make_dataset({"name": f"tfds_{builder}",
                            "data_dir": str(tmp_path),
                            "factor_sizes": sizes})
    memory = make_dataset({"name": f"tfds_{builder}",
                           "data_dir": str(tmp_path), "factor_sizes": sizes,
                           "in_memory": True})
  grid = tfds_datasets.GRIDS[builder]
  assert dataset.factor_names == grid.factor_names
  assert dataset.factor_sizes == sizes and dataset.labelled
  channels = IMAGE_SHAPES[builder][-1]
  assert dataset.observation_shape == (64, 64, channels)
  candidates = expected_tfds(builder, examples, tuples)
  if grid.noise_key:
    # Each tuple shows exactly one of its instances, the same on every call.
    everything = full_grid(sizes)
    obs = render(dataset, everything)
    for f, o in zip(everything, obs):
      equal = [same_image(o, c) for c in candidates(tuple(f))]
      assert sum(equal) == 1, f"{f}: not one of its instances' images"
    np.testing.assert_array_equal(render(dataset, everything[::-1]),
                                  obs[::-1])
  else:
    check_identity(dataset, lambda f: candidates(f)[0])
  everything = full_grid(sizes)
  np.testing.assert_array_equal(render(memory, everything),
                                render(dataset, everything))


@needs_tfds
def test_smallnorb_reference_grid_and_alias(tmp_path):
  """The full SmallNORB grid (2 instances per tuple here), via the alias
  experiments/deft.py uses; the instance choice is spread and stable."""
  grid = tfds_datasets.GRIDS["smallnorb"]
  tuples = np.repeat(full_grid(grid.factor_sizes), 2, axis=0)
  instance = np.tile([3, 8], len(tuples) // 2)
  examples = []
  for i, t in enumerate(tuples):
    ex = dict(zip(grid.label_keys, t))
    ex["instance"] = instance[i]
    ex["image"] = np.broadcast_to(np.uint8(i % 251), (96, 96, 1))
    examples.append(ex)
  with mock_source(examples):
    dataset = make_dataset({"name": "smallnorb", "data_dir": str(tmp_path)})
  assert dataset.name == "smallnorb"
  assert dataset.factor_names == ("category", "elevation", "azimuth",
                                  "lighting")
  assert dataset.factor_sizes == (5, 9, 18, 6)
  assert dataset.observation_shape == (64, 64, 1)
  factors, obs = dataset.sample(jax.random.key(3), 64)
  rows = {tuple(t): [] for t in full_grid(grid.factor_sizes)}
  for i, t in enumerate(tuples):
    rows[tuple(t)].append(i)
  picked = []
  for f, o in zip(np.asarray(factors), np.asarray(obs)):
    value = o[0, 0, 0] * 255
    assert np.all(o == o[0, 0, 0])
    (i,) = [i for i in rows[tuple(f)] if i % 251 == round(value)]
    picked.append(instance[i])
  assert set(picked) == {3, 8}
  np.testing.assert_array_equal(render(dataset, factors), obs)


@needs_tfds
@pytest.mark.parametrize("builder", ["dsprites", "shapes3d"])
def test_tfds_reference_sizes_and_random_labels_are_incomplete(builder,
                                                              tmp_path):
  """The default grids are the reference; random labels (what the stock
  mock generates -- which itself needs TensorFlow once decoders are passed)
  are no complete grid, and the error names a factor."""
  reference = {"dsprites": (3, 6, 40, 32, 32),
               "shapes3d": (10, 10, 10, 8, 4, 15)}[builder]
  grid = tfds_datasets.GRIDS[builder]
  assert grid.factor_sizes == reference
  rng = np.random.default_rng(12)
  examples = [{**{k: np.int64(rng.integers(size)) for k, size in
                  zip(grid.label_keys, reference)},
               "image": np.zeros(IMAGE_SHAPES[builder], np.uint8)}
              for _ in range(20)]
  with mock_source(examples):
    with pytest.raises(ValueError, match=r"factor '\w+' takes \d+ distinct "
                       r"value\(s\).*but the grid needs"):
      make_dataset({"name": f"tfds_{builder}", "data_dir": str(tmp_path)})


@needs_tfds
def test_tfds_missing_data_dir_errors(tmp_path):
  with pytest.raises(ValueError, match="data_dir"):
    make_dataset({"name": "tfds_shapes3d"})
  with pytest.raises(FileNotFoundError, match="does not exist"):
    make_dataset({"name": "smallnorb", "data_dir": str(tmp_path / "nope")})
  # An existing directory without the prepared dataset.
  with pytest.raises(FileNotFoundError, match="tfds build dsprites"):
    make_dataset({"name": "tfds_dsprites", "data_dir": str(tmp_path)})


@needs_tfds
def test_tfds_tfrecord_fallback_streams_into_cache(tmp_path, monkeypatch):
  """No random access: the split is streamed once through tfds.load (faked
  here: it needs TensorFlow) into the cache, then reused."""
  sizes, values = TFDS_CASES["shapes3d"]
  examples, tuples = tfds_examples("shapes3d", sizes, values, seed=4)
  version_dir = tmp_path / "data" / "shapes3d" / "2.0.0"
  version_dir.mkdir(parents=True)
  (version_dir / "dataset_info.json").write_text("{}")
  calls = []

  def fake_load(name, split, data_dir, download, batch_size, decoders):
    assert (name, split, download) == ("shapes3d", "train", False)
    calls.append(name)
    for start in range(0, len(examples), 5):
      chunk = examples[start:start + 5]
      yield {k: np.stack([ex[k] for ex in chunk]) for k in chunk[0]}

  def no_random_access(builder, split=None, **kwargs):
    raise NotImplementedError("tfrecord")

  monkeypatch.setattr(tfds, "load", fake_load)
  monkeypatch.setattr(tfds, "as_numpy", lambda batches: batches)
  options = {"name": "tfds_shapes3d", "data_dir": str(tmp_path / "data"),
             "factor_sizes": sizes, "cache_dir": str(tmp_path / "cache")}
  with tfds.testing.mock_data(as_data_source_fn=no_random_access):
    dataset = make_dataset(options)
    again = make_dataset(options)
  assert calls == ["shapes3d"]
  assert len(os.listdir(tmp_path / "cache")) == 2
  lookup = expected_tfds("shapes3d", examples, tuples)
  check_identity(dataset, lambda f: lookup(f)[0])
  everything = full_grid(sizes)
  np.testing.assert_array_equal(render(again, everything),
                                render(dataset, everything))


# ------------------------------------------- TFDS (real array_record dir)

def png(image: np.ndarray) -> bytes:
  from PIL import Image
  buffer = io.BytesIO()
  Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image
                  ).save(buffer, format="png")
  return buffer.getvalue()


def prepare_real_tfds(data_dir: str, builder: str, examples) -> None:
  """Writes `examples` as a real array_record TFDS dataset named `builder`
  (same features and version as the registered builder). Images go in as
  PNG bytes, so no TensorFlow is needed to write or read it."""
  features = tfds.builder(builder, data_dir=data_dir).info.features
  version = str(tfds.builder(builder, data_dir=data_dir).info.version)
  with tfds.core.registered.skip_registration():
    class Tiny(tfds.core.GeneratorBasedBuilder):
      VERSION = tfds.core.Version(version)

      def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=features)

      def _split_generators(self, dl_manager):
        del dl_manager
        return {"train": self._generate_examples()}

      def _generate_examples(self):
        for i, ex in enumerate(examples):
          yield i, ex
  Tiny.name = builder
  Tiny(data_dir=data_dir, file_format="array_record").download_and_prepare()


@needs_tfds
@pytest.mark.parametrize("builder", ["dsprites", "smallnorb"])
def test_tfds_real_array_record_without_tensorflow(builder, tmp_path):
  sizes, values = TFDS_CASES[builder]
  examples, tuples = tfds_examples(builder, sizes, values, seed=5)
  records = []
  for ex in examples:
    record = {k: (png(v) if k.startswith("image") else v)
              for k, v in ex.items()}
    if builder == "dsprites":
      record.update({f"value_{k[len('label_'):]}": np.float32(0)
                     for k in ex if k.startswith("label_")})
    records.append(record)
  prepare_real_tfds(str(tmp_path), builder, records)
  dataset = make_dataset({"name": f"tfds_{builder}",
                          "data_dir": str(tmp_path), "factor_sizes": sizes})
  candidates = expected_tfds(builder, examples, tuples)
  everything = full_grid(sizes)
  obs = render(dataset, everything)
  for f, o in zip(everything, obs):
    assert any(same_image(o, c) for c in candidates(tuple(f)))
  # The labels were cached; a rebuild reads them back and agrees.
  cached = os.listdir(tmp_path / "default_cache")
  assert [n for n in cached if n.startswith(f"tfds_{builder}_labels")]
  rebuilt = make_dataset({"name": f"tfds_{builder}",
                          "data_dir": str(tmp_path), "factor_sizes": sizes})
  np.testing.assert_array_equal(render(rebuilt, everything), obs)
  assert "tensorflow" not in sys.modules


# ---------------------------------------------------------- Shapes3D h5

SHAPES3D_SIZES = (2, 1, 3, 1, 2, 2)


def write_shapes3d_h5(path, drop_last=False, **dataset_options):
  """A tiny 3dshapes.h5: value labels (hues in [0, 1), scales, angles),
  rows shuffled; returns (images, labels as indices) in file order."""
  h5py = pytest.importorskip("h5py")
  grid = full_grid(SHAPES3D_SIZES)
  hues = np.linspace(0, 0.9, 10)
  values = np.stack([hues[grid[:, 0]], hues[grid[:, 1]], hues[grid[:, 2]],
                     np.linspace(0.75, 1.25, 8)[grid[:, 3]], grid[:, 4],
                     np.linspace(-30, 30, 15)[grid[:, 5] * 7]], axis=1)
  rng = np.random.default_rng(6)
  perm = rng.permutation(len(grid))[:len(grid) - drop_last]
  images = rng.integers(0, 256, (len(perm), 64, 64, 3), dtype=np.uint8)
  with h5py.File(path, "w") as f:
    f.create_dataset("images", data=images, **dataset_options)
    f.create_dataset("labels", data=values[perm])
  return images, grid[perm]


@pytest.mark.parametrize("layout", [{}, {"chunks": (2, 64, 64, 3),
                                         "compression": "gzip"}],
                         ids=["contiguous", "chunked_gzip"])
def test_shapes3d_h5(layout, tmp_path):
  path = str(tmp_path / "3dshapes.h5")
  images, tuples = write_shapes3d_h5(path, **layout)
  dataset = make_dataset({"name": "shapes3d_h5", "path": path,
                          "factor_sizes": SHAPES3D_SIZES})
  assert dataset.factor_names == files.SHAPES3D_FACTOR_NAMES
  assert dataset.observation_shape == (64, 64, 3)
  row = {tuple(t): i for i, t in enumerate(tuples)}
  check_identity(dataset, lambda f: images[row[f]] / np.float32(255))
  memory = make_dataset({"name": "shapes3d_h5", "path": path,
                         "factor_sizes": SHAPES3D_SIZES, "in_memory": True})
  everything = full_grid(SHAPES3D_SIZES)
  np.testing.assert_array_equal(render(memory, everything),
                                render(dataset, everything))


def test_shapes3d_h5_errors(tmp_path):
  with pytest.raises(ValueError, match="set dataset.path"):
    make_dataset({"name": "shapes3d_h5"})
  with pytest.raises(FileNotFoundError, match="3dshapes"):
    make_dataset({"name": "shapes3d_h5", "path": str(tmp_path / "x.h5")})
  path = str(tmp_path / "short.h5")
  write_shapes3d_h5(path, drop_last=True)
  with pytest.raises(ValueError, match=r"uneven values: 'floor_hue'"):
    make_dataset({"name": "shapes3d_h5", "path": path,
                  "factor_sizes": SHAPES3D_SIZES})
  # The reference grid needs 10 floor hues; the file has 2.
  with pytest.raises(ValueError, match=r"'floor_hue' takes 2 distinct"):
    make_dataset({"name": "shapes3d_h5", "path": path})


# ------------------------------------------------------- Cars3D / MPI3D npz

def test_cars3d_npz_with_labels_is_mapped_in_place(tmp_path):
  sizes = (2, 3, 4)
  grid = full_grid(sizes)
  rng = np.random.default_rng(7)
  perm = rng.permutation(len(grid))
  images = rng.integers(0, 256, (len(grid), 32, 32, 3), dtype=np.uint8)
  path = str(tmp_path / "cars.npz")
  np.savez(path, images=images, labels=grid[perm] * 10)   # values, not 0..n
  dataset = make_dataset({"name": "cars3d_npz", "path": path,
                          "factor_sizes": sizes, "image_size": 16,
                          "cache_dir": str(tmp_path / "cache")})
  assert dataset.factor_names == ("elevation", "azimuth", "object")
  assert dataset.observation_shape == (16, 16, 3)
  # Stored: mapped in place, no unpacked copy (the decode cache for the
  # resize is an anonymous file).
  assert os.listdir(tmp_path / "cache") == []
  row = {tuple(t): i for i, t in enumerate(grid[perm])}
  check_identity(dataset, lambda f: as_float(images[row[f]][None], 16)[0])


def test_cars3d_npz_canonical_order_compressed(tmp_path):
  sizes = (2, 2, 3)
  rng = np.random.default_rng(8)
  images = rng.random((math.prod(sizes), 64, 64)).astype(np.float32)
  path = str(tmp_path / "cars.npz")
  np.savez_compressed(path, images=images)
  options = {"name": "cars3d_npz", "path": path, "factor_sizes": sizes,
             "cache_dir": str(tmp_path / "cache")}
  dataset = make_dataset(options)
  assert len(os.listdir(tmp_path / "cache")) == 1   # unpacked once
  expected = np.rint(images * 255).astype(np.uint8)[..., None]
  check_identity(dataset, lambda f: expected[np.ravel_multi_index(f, sizes)]
                 / np.float32(255))
  memory = make_dataset(dict(options, in_memory=True))
  everything = full_grid(sizes)
  np.testing.assert_array_equal(render(memory, everything),
                                render(dataset, everything))


def test_npz_errors(tmp_path):
  path = str(tmp_path / "bad.npz")
  np.savez(path, imgs=np.zeros((4, 64, 64), np.uint8))
  with pytest.raises(ValueError, match=r"no 'images' array; found \['imgs'\]"):
    make_dataset({"name": "cars3d_npz", "path": path})
  np.savez(path, images=np.zeros((5, 64, 64), np.uint8))
  with pytest.raises(ValueError, match=r"5 images but the grid.*17568"):
    make_dataset({"name": "cars3d_npz", "path": path})
  with pytest.raises(ValueError, match="match neither MPI3D grid"):
    make_dataset({"name": "mpi3d_npz", "path": path})
  with pytest.raises(FileNotFoundError, match="does not exist"):
    make_dataset({"name": "mpi3d_npz", "path": str(tmp_path / "none.npz")})
  np.savez(path, images=np.zeros((4, 64, 64), np.uint8),
           labels=np.array([[0, 0, 0], [0, 1, 0], [0, 1, 0], [1, 1, 0]]))
  with pytest.raises(ValueError, match=r"uneven values: 'elevation' \(value 1 "
                     r"occurs 1 times, value 0 3 times\)"):
    make_dataset({"name": "cars3d_npz", "path": path,
                  "factor_sizes": (2, 2, 1)})


def test_smallnorb_npz_needs_labels_and_instance(tmp_path):
  path = str(tmp_path / "norb.npz")
  sizes = (2, 1, 1, 1)
  labels = np.repeat(full_grid(sizes), 2, axis=0)
  np.savez(path, images=np.zeros((4, 16, 16), np.uint8), labels=labels)
  with pytest.raises(ValueError, match=r"needs arrays 'images', 'labels' and "
                     r"'instance'; found \['images', 'labels'\]"):
    make_dataset({"name": "smallnorb_npz", "path": path,
                  "factor_sizes": sizes})
  np.savez(path, images=np.zeros((4, 16, 16), np.uint8), labels=labels,
           instance=np.array([0, 1, 0, 1, 0]))
  with pytest.raises(ValueError, match="'instance' has 5 values for 4 images"):
    make_dataset({"name": "smallnorb_npz", "path": path,
                  "factor_sizes": sizes})
  np.savez(path, images=np.zeros((4, 16, 16), np.uint8), labels=labels,
           instance=np.array([0, 0, 1, 1]))   # one tuple shows instance 0 twice
  with pytest.raises(ValueError, match="twice with the same noise label"):
    make_dataset({"name": "smallnorb_npz", "path": path,
                  "factor_sizes": sizes})


def test_mpi3d_npz_sub_grid_jit_and_vmap(tmp_path):
  sizes = (2, 1, 2, 1, 1, 2, 3)
  rng = np.random.default_rng(9)
  images = rng.integers(0, 256, (math.prod(sizes), 64, 64, 3), np.uint8)
  path = str(tmp_path / "mpi3d_toy.npz")
  np.savez(path, images=images)
  dataset = make_dataset({"name": "mpi3d_npz", "path": path,
                          "factor_sizes": sizes})
  assert dataset.factor_names == files.MPI3D_FACTOR_NAMES
  assert dataset.name == "mpi3d"
  # Three "seeds" draw their own batch inside one jitted, vmapped program.
  keys = jax.random.split(jax.random.key(10), 3)
  factors, obs = jax.jit(jax.vmap(lambda k: dataset.sample(k, 5)))(keys)
  assert obs.shape == (3, 5, 64, 64, 3)
  flat = np.ravel_multi_index(tuple(np.asarray(factors).reshape(-1, 7).T),
                              sizes)
  assert_image(np.asarray(obs).reshape(15, 64, 64, 3),
               images[flat] / np.float32(255))
  # The per-factor sub-datasets of the annealing test, vmapped over factors.
  varied = jax.jit(jax.vmap(lambda f: dataset.sample_varying_one_factor(
      keys[0], keys[1], f, 4)[1]))(jnp.arange(7))
  assert varied.shape == (7, 4, 64, 64, 3)


# ------------------------------------------------------------ image folder

def test_image_folder(tmp_path):
  from PIL import Image
  from disentax.data.image_folder import ImageFolder, load_image
  folder = tmp_path / "chairs"
  (folder / "sub").mkdir(parents=True)
  rng = np.random.default_rng(11)
  names = ["a.png", "b.jpg", "sub/c.png", "sub/d.PNG"]
  for i, name in enumerate(names):
    shape = [(40, 60, 3), (50, 50, 3), (70, 30, 3), (32, 32, 3)][i]
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(
        folder / name)
  (folder / "notes.txt").write_text("not an image")
  cache = tmp_path / "cache"
  dataset = make_dataset({"name": "image_folder", "path": str(folder),
                          "image_size": 16, "cache_dir": str(cache)})
  assert isinstance(dataset, ImageFolder) and not dataset.labelled
  assert dataset.factor_names == ("image",) and dataset.factor_sizes == (4,)
  assert dataset.files == sorted(names)
  assert dataset.observation_shape == (16, 16, 3)
  expected = np.stack([load_image(str(folder / n), 16, 3)
                       for n in dataset.files]) / np.float32(255)
  check_identity(dataset, lambda f: expected[f[0]], num=8)
  # Center crop: a wide image keeps its middle square.
  wide = np.zeros((16, 48, 3), np.uint8)
  wide[:, 16:32] = 200
  Image.fromarray(wide).save(tmp_path / "wide.png")
  np.testing.assert_array_equal(load_image(str(tmp_path / "wide.png"), 16, 3),
                                np.full((16, 16, 3), 200, np.uint8))
  # The cache is built once and reused; in_memory matches; grey works.
  (cache_file,) = os.listdir(cache)
  stamp = os.stat(cache / cache_file).st_mtime_ns
  memory = make_dataset({"name": "image_folder", "path": str(folder),
                         "image_size": 16, "cache_dir": str(cache),
                         "in_memory": True})
  assert os.stat(cache / cache_file).st_mtime_ns == stamp
  np.testing.assert_array_equal(render(memory, [[0], [1], [2], [3]]),
                                render(dataset, [[0], [1], [2], [3]]))
  grey = make_dataset({"name": "image_folder", "path": str(folder),
                       "image_size": 16, "channels": 1,
                       "cache_dir": str(cache)})
  assert grey.observation_shape == (16, 16, 1)
  assert len(os.listdir(cache)) == 2


def test_image_folder_errors(tmp_path):
  with pytest.raises(ValueError, match="set dataset.path"):
    make_dataset({"name": "image_folder"})
  with pytest.raises(FileNotFoundError, match="not a directory"):
    make_dataset({"name": "image_folder", "path": str(tmp_path / "none")})
  with pytest.raises(ValueError, match="no images"):
    make_dataset({"name": "image_folder", "path": str(tmp_path)})
  with pytest.raises(ValueError, match="channels"):
    make_dataset({"name": "image_folder", "path": str(tmp_path),
                  "channels": 2})
  with pytest.raises(ValueError, match="multiple of 16"):
    make_dataset({"name": "image_folder", "path": str(tmp_path),
                  "image_size": 20})


def test_all_loaders_are_registered_without_optional_imports():
  for name in ("tfds_dsprites", "tfds_shapes3d", "tfds_smallnorb",
               "smallnorb", "shapes3d_h5", "cars3d_npz", "mpi3d_npz",
               "smallnorb_npz", "image_folder"):
    assert name in DATASETS.names()
  assert FileImageDataset.labelled
  # Importing disentax.data must not pull in the optional dependencies, nor
  # the downloader's (disentax.data.fetch imports them when it fetches).
  code = ("import sys, disentax.data; print(*(m in sys.modules for m in "
          "('tensorflow_datasets', 'h5py', 'pooch', 'requests')))")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, check=True,
                          cwd=os.path.dirname(os.path.dirname(__file__)))
  assert result.stdout.split() == ["False"] * 4
