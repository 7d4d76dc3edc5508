"""Dataset pictures (disentax.pictures): the grid and the CLI's PNGs."""

import os
import struct

import jax
import numpy as np
import pytest

from disentax.data import make_dataset
from disentax import pictures

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path):
  """(width, height) from a PNG's IHDR chunk, checking the signature."""
  with open(path, "rb") as f:
    header = f.read(24)
  assert header[:8] == PNG_SIGNATURE, path
  assert header[12:16] == b"IHDR", path
  return struct.unpack(">II", header[16:24])


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


def test_cli_writes_pngs(tmp_path, capsys):
  out = tmp_path / "pictures"
  status = pictures.main([f"--out={out}", "--datasets=dsprites,triangle",
                          "--num=4", "--image_size=16"])
  assert status == 0
  assert sorted(os.listdir(out)) == ["dsprites.png", "triangle.png"]
  rows, cols = pictures.grid_shape(4)
  width, height = pictures.figure_inches(rows, cols)
  for name in ("dsprites", "triangle"):
    assert png_size(out / f"{name}.png") == (round(width * pictures.DPI),
                                            round(height * pictures.DPI))
  assert str(out / "dsprites.png") in capsys.readouterr().out


def test_cli_rejects_unknown_names(tmp_path):
  with pytest.raises(SystemExit, match="unknown dataset.*'nope'"):
    pictures.main([f"--out={tmp_path}", "--datasets=dsprites,nope"])


def test_datasets_that_need_files_are_skipped(tmp_path, capsys, monkeypatch):
  """A builder that needs a path is noted and skipped, not raised."""
  from disentax.data import DATASETS

  def needs_a_file(path):   # a required argument: never called
    raise AssertionError("built without a path")

  def missing_file(path: str = ""):
    raise FileNotFoundError("set dataset.path to the file\nmore detail")

  monkeypatch.setitem(DATASETS._builders, "needs_a_file", needs_a_file)
  monkeypatch.setitem(DATASETS._builders, "missing_file", missing_file)
  status = pictures.main([f"--out={tmp_path}",
                          "--datasets=needs_a_file,missing_file,triangle",
                          "--num=1"])
  assert status == 1   # named explicitly, so their absence is an error
  assert os.listdir(tmp_path) == ["triangle.png"]
  err = capsys.readouterr().err
  assert "skipped needs_a_file: its builder needs path" in err
  assert "skipped missing_file: set dataset.path to the file\n" in err
  assert "more detail" not in err
