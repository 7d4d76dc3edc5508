"""Image grids (disentax.reporting.pictures): dataset samples and their
PNGs, the `python -m disentax.pictures` CLI, and latent traversals."""

import os

import jax
import numpy as np
import pytest

from disentax.data import make_dataset
from disentax.reporting import figures, pictures
from tests.conftest import run_module
from tests.synthetic_runs import FACTORS, png_size


def test_sample_grid_shape_and_colours():
  dataset = make_dataset({"name": "dsprites", "image_size": 16})
  grid = pictures.sample_grid(dataset, jax.random.key(0), 16)
  # 4 x 4 images of 16 px with 1 px gaps.
  assert grid.shape == (4 * 17 - 1, 4 * 17 - 1, 3) and grid.dtype == np.uint8
  # Grayscale: the three channels agree; binary sprites on gray gaps.
  assert np.array_equal(grid[..., 0], grid[..., 1])
  assert np.array_equal(grid[..., 0], grid[..., 2])
  assert set(np.unique(grid)) <= {0, 128, 255}
  assert grid[16, :, 0].tolist() == [128] * grid.shape[1]   # a gap row
  # An incomplete last row: 5 images in a 2 x 3 grid, unused cells gray.
  grid = pictures.sample_grid(dataset, jax.random.key(0), 5)
  assert grid.shape == (2 * 17 - 1, 3 * 17 - 1, 3)
  assert np.all(grid[17:, 2 * 17:] == 128)


def test_cli_writes_pngs(tmp_path):
  out = tmp_path / "pictures"
  result = run_module("disentax.pictures", f"--out={out}",
                      "--datasets=dsprites,triangle", "--num=4",
                      "--image_size=16")
  assert result.returncode == 0
  assert sorted(os.listdir(out)) == ["dsprites.png", "triangle.png"]
  rows, cols = pictures.grid_shape(4)
  width, height = pictures.figure_inches(rows, cols)
  for name in ("dsprites", "triangle"):
    assert png_size(out / f"{name}.png") == (round(width * figures.DPI),
                                            round(height * figures.DPI))
  assert str(out / "dsprites.png") in result.stdout


def test_cli_rejects_unknown_names(tmp_path):
  result = run_module("disentax.pictures", f"--out={tmp_path}",
                      "--datasets=dsprites,nope", check=False)
  assert result.returncode != 0
  assert "error: unknown dataset(s) ['nope']; registered: " in result.stderr
  assert "Traceback" not in result.stderr
  with pytest.raises(ValueError, match="unknown dataset.*'nope'"):
    pictures.write_pictures(str(tmp_path), ["dsprites", "nope"], note=print)


def test_cli_fails_when_a_named_dataset_is_skipped(tmp_path):
  result = run_module("disentax.pictures", f"--out={tmp_path}",
                      "--datasets=image_folder", "--num=1", check=False)
  assert result.returncode == 1   # named explicitly: its absence is an error
  assert "skipped image_folder: " in result.stderr
  assert os.listdir(tmp_path) == []


def test_datasets_that_need_files_are_skipped(tmp_path, monkeypatch):
  """A builder that needs a path is noted and skipped, not raised."""
  from disentax.data import DATASETS

  def needs_a_file(path):   # a required argument: never called
    raise AssertionError("built without a path")

  def missing_file(path: str = ""):
    raise FileNotFoundError("set dataset.path to the file\nmore detail")

  monkeypatch.setitem(DATASETS._builders, "needs_a_file", needs_a_file)
  monkeypatch.setitem(DATASETS._builders, "missing_file", missing_file)
  notes = []
  paths, skipped = pictures.write_pictures(
      str(tmp_path), ["needs_a_file", "missing_file", "triangle"], num=1,
      note=notes.append)
  # Named explicitly: the CLI exits 1 on any skipped name.
  assert skipped == ["needs_a_file", "missing_file"]
  assert paths == [str(tmp_path / "triangle.png")]
  assert os.listdir(tmp_path) == ["triangle.png"]
  err = "\n".join(notes) + "\n"
  assert "skipped needs_a_file: its builder needs path" in err
  assert "skipped missing_file: set dataset.path to the file\n" in err
  assert "more detail" not in err


def test_traversal_figure(tmp_path):
  grey = np.linspace(0, 1, 4 * 6 * 16 * 16).reshape(4, 6, 16, 16, 1)
  path = pictures.traversal_figure(grey, str(tmp_path / "t.png"),
                                   "DEFT on dsprites", list(FACTORS[:4]))
  assert png_size(path) == (150 + 6 * 75, 100 + 4 * 75)
  rgb = np.random.default_rng(0).uniform(-0.5, 1.5, (2, 3, 8, 8, 3))
  path = pictures.traversal_figure(rgb, str(tmp_path / "nested" / "c.png"),
                                   "colour")
  assert png_size(path) == (150 + 3 * 75, 100 + 2 * 75)
  with pytest.raises(ValueError, match="with C 1 or 3"):
    pictures.traversal_figure(np.zeros((2, 3, 8, 8, 2)),
                              str(tmp_path / "bad.png"), "bad")
  with pytest.raises(ValueError, match="1 latent labels for 2 latents"):
    pictures.traversal_figure(rgb, str(tmp_path / "bad.png"), "bad", ["z"])
