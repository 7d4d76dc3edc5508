"""Image grids: uniformly sampled observations of a dataset (`sample_grid`,
`write_picture`, `write_pictures` behind `python -m disentax.pictures`) and
what a trained member draws (`pair_grid` of inputs and reconstructions,
`image_grid` of prior samples, `traversal_figure`, DEFT Fig. 10, and its
animated `write_gif` of `traversal_frames`; assembled for chosen members by
`disentax.reporting.visualize`), and the panels the tracking writers show while
training (`pair_grid` in one row, `traversal_panel`).

Dataset pictures are a glance at what a model will be trained on, titled
with the dataset's name and factor sizes.  Observations are drawn with the
evaluation sampler (`sample_uniform_factors`, which `correlated` keeps
uniform), so the grid shows the uniform grid of factors, not a training
bias.  Single-channel images are drawn in gray, three-channel ones in
colour.  Sizes are fixed by the content (documented per function) at
`figures.DPI` without tight cropping, so a PNG's pixel size is known.

Datasets whose builder needs something a default cannot give (a file path,
a required argument) are skipped with a one-line note: each is built with
its defaults (plus `image_size` where the builder takes one) and any error
is reported instead of raised.
"""

from __future__ import annotations

import inspect
import math
import os
import textwrap
from typing import Callable, Sequence

import chex
import jax
import numpy as np
from PIL import Image

from disentax.cli import UsageError
from disentax.data import DATASETS, GroundTruthDataset
from disentax.reporting.figures import new_figure, save
from disentax.workdir import check_writable

GAP_VALUE = 0.5   # gray separators read against black and white backgrounds


def grid_shape(num: int) -> tuple[int, int]:
  """(rows, cols) of the most square grid holding `num` images."""
  if num < 1:
    raise ValueError(f"num must be >= 1 images, got {num}")
  cols = math.ceil(math.sqrt(num))
  return math.ceil(num / cols), cols


def figure_inches(rows: int, cols: int) -> tuple[float, float]:
  """(width, height) of a dataset picture in inches: quarter inches, so
  that times `figures.DPI` they are whole pixels."""
  return max(4.0, 0.5 + 0.75 * cols), 1.0 + 0.75 * rows


def _as_rgb(images: np.ndarray, name: str, axes: str) -> np.ndarray:
  """`images` [..., H, W, C] (C 1: gray, or 3) as RGB [..., H, W, 3]
  clipped to [0, 1]; ValueError naming `name` unless its axes are `axes`
  (e.g. "n, H, W, C")."""
  if images.ndim != len(axes.split(",")) or images.shape[-1] not in (1, 3):
    raise ValueError(f"{name} must be [{axes}] with C 1 or 3, got shape "
                     f"{images.shape}")
  if images.shape[-1] == 1:
    images = np.repeat(images, 3, axis=-1)
  return np.clip(images, 0.0, 1.0)


def tile(images: np.ndarray, gap_value: float) -> np.ndarray:
  """RGB images [rows, cols, H, W, 3] as one image [rows (H + gap) - gap,
  cols (W + gap) - gap, 3] of their dtype, cells separated by gap =
  max(1, H // 16) pixels of `gap_value`."""
  rows, cols, height, width = images.shape[:4]
  gap = max(1, height // 16)
  mosaic = np.full((rows * (height + gap) - gap, cols * (width + gap) - gap,
                    3), gap_value, images.dtype)
  for r in range(rows):
    for c in range(cols):
      top, left = r * (height + gap), c * (width + gap)
      mosaic[top:top + height, left:left + width] = images[r, c]
  return mosaic


def _as_uint8(images: np.ndarray) -> np.ndarray:
  """Values in [0, 1] as uint8 0..255 (rounded)."""
  return np.round(images * 255.0).astype(np.uint8)


def _cells(images: np.ndarray, rows: int, cols: int) -> np.ndarray:
  """RGB images [n, H, W, 3] in reading order as cells [rows, cols, H, W,
  3], the unused ones gray."""
  cells = np.full((rows * cols, *images.shape[1:]), GAP_VALUE, np.float32)
  cells[:len(images)] = images
  return cells.reshape(rows, cols, *images.shape[1:])


def image_grid(images: np.ndarray) -> np.ndarray:
  """Images float [n, H, W, C] (C 1 or 3, clipped to [0, 1]) tiled into
  the most square grid (`grid_shape(n)`), uint8 [rows (H + gap) - gap,
  cols (W + gap) - gap, 3]; gap = max(1, H // 16) gray pixels, unused
  cells gray."""
  images = _as_rgb(np.asarray(images, np.float32), "images", "n, H, W, C")
  return _as_uint8(tile(_cells(images, *grid_shape(len(images))),
                        GAP_VALUE))


def pair_grid(inputs: np.ndarray, outputs: np.ndarray,
              cols: int | None = None) -> np.ndarray:
  """Each input above its output (a reconstruction): float [n, H, W, C]
  each, in a grid of `cols` columns (default the most square,
  `grid_shape(n)`) with rows doubled, uint8 [2 rows (H + gap) - gap,
  cols (W + gap) - gap, 3]; row 2i holds inputs i cols.., row 2i + 1
  their outputs (`cols=n`: one row of inputs above one of outputs)."""
  inputs = _as_rgb(np.asarray(inputs, np.float32), "inputs", "n, H, W, C")
  outputs = _as_rgb(np.asarray(outputs, np.float32), "outputs",
                    "n, H, W, C")
  if inputs.shape != outputs.shape:
    raise ValueError(f"inputs {inputs.shape} and outputs {outputs.shape} "
                     "differ in shape")
  rows, cols = (grid_shape(len(inputs)) if cols is None
                else (math.ceil(len(inputs) / cols), cols))
  cells = np.stack([_cells(inputs, rows, cols), _cells(outputs, rows, cols)],
                   axis=1)  # [rows, 2, cols, H, W, 3]
  return _as_uint8(tile(cells.reshape(2 * rows, *cells.shape[2:]),
                        GAP_VALUE))


def sample_grid(dataset: GroundTruthDataset, rng: jax.Array,
                num: int) -> np.ndarray:
  """`num` uniformly sampled observations tiled into one image, uint8
  [rows (H + gap) - gap, cols (W + gap) - gap, 3] (`image_grid`)."""
  grid_shape(num)  # num >= 1, checked before sampling
  factors = dataset.sample_uniform_factors(rng, num)
  chex.assert_shape(factors, (num, dataset.num_factors))
  observations = np.asarray(dataset.observations_from_factors(factors),
                            np.float32)
  chex.assert_shape(observations, (num, *dataset.observation_shape))
  return image_grid(observations)


def grid_figure(mosaic: np.ndarray, path: str, title: str,
                size: tuple[float, float]) -> str:
  """Saves the uint8 image `mosaic` under `title` (font 8) in a figure of
  `size` inches, without axes; returns `path`."""
  fig, [[ax]] = new_figure(size)
  ax.imshow(mosaic, interpolation="nearest")
  ax.set_axis_off()
  ax.set_title(title, fontsize=8)
  return save(fig, path)


def traversal_panel(images: np.ndarray) -> np.ndarray:
  """A latent traversal, images [d, steps, H, W, C] (C 1 or 3, clipped to
  [0, 1]), as one RGB image uint8 [d (H + gap) - gap, steps (W + gap) -
  gap, 3]: a row per latent, its values low to high left to right (gap =
  max(1, H // 16) gray pixels)."""
  images = _as_rgb(np.asarray(images, np.float32), "images",
                   "d, steps, H, W, C")
  return _as_uint8(tile(images, GAP_VALUE))


def title(name: str, dataset: GroundTruthDataset, num: int) -> str:
  """The PNG's title: registry name (and the dataset's own name where it
  differs), sample count, and each factor's number of values."""
  shown = name if dataset.name == name else f"{name} ({dataset.name})"
  h, w, c = dataset.observation_shape
  sizes = ", ".join(f"{f} {s}" for f, s in zip(dataset.factor_names,
                                                dataset.factor_sizes))
  return "\n".join([f"{shown}: {num} uniform samples, {h}x{w}x{c}",
                    *textwrap.wrap(f"factor sizes: {sizes}", 64)])


def write_picture(name: str, dataset: GroundTruthDataset, path: str,
                  rng: jax.Array, num: int) -> str:
  """Saves the titled `sample_grid` of `dataset` to `path`; returns it.
  Size `figure_inches(*grid_shape(num))`."""
  return grid_figure(sample_grid(dataset, rng, num), path,
                     title(name, dataset, num),
                     figure_inches(*grid_shape(num)))


def build_with_defaults(name: str, image_size: int) -> GroundTruthDataset:
  """Builds dataset `name` from its defaults, passing `image_size` if its
  builder takes one; raises ValueError naming a required argument."""
  builder = DATASETS.get(name)
  required = [p.name for p in inspect.signature(builder).parameters.values()
              if p.default is p.empty
              and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
  if required:
    raise ValueError(f"its builder needs {', '.join(required)}")
  section = {"name": name}
  if "image_size" in DATASETS.allowed_keys(name):
    section["image_size"] = image_size
  return DATASETS.build(section, where=f"dataset {name}")


def write_pictures(out: str, names: Sequence[str] | None, *,
                   note: Callable[[str], None], num: int = 16,
                   image_size: int = 64, seed: int = 0
                   ) -> tuple[list[str], list[str]]:
  """OUT/<name>.png for each registered dataset of `names` (None: all of
  them), `num` samples each; a dataset that does not build from its
  defaults is skipped, with a line to `note`.  Each picture's samples are
  drawn from `seed` folded with the dataset's registry position, so a
  picture does not depend on which others are drawn.  Returns (the paths
  written, the names skipped).

  Raises:
    UsageError: a name is not a registered dataset (or none is given).
    PermissionError: `out` is not writable.
  """
  registered = DATASETS.names()
  names = registered if names is None else list(names)
  unknown = [n for n in names if n not in registered]
  if unknown or not names:
    raise UsageError(f"unknown dataset(s) {unknown or names}; registered: "
                     f"{', '.join(registered)}")
  check_writable(out, "the output directory")
  os.makedirs(out, exist_ok=True)
  rng = jax.random.key(seed)
  paths, skipped = [], []
  for name in names:
    try:
      dataset = build_with_defaults(name, image_size)
    except Exception as e:  # noqa: BLE001 -- any builder error: skip it
      message = str(e).splitlines()[0] if str(e) else type(e).__name__
      note(f"skipped {name}: {message}")
      skipped.append(name)
      continue
    paths.append(write_picture(
        name, dataset, os.path.join(out, f"{name}.png"),
        jax.random.fold_in(rng, registered.index(name)), num))
  return paths, skipped


def traversal_figure(images: np.ndarray, path: str, title: str,
                     latent_labels: Sequence[str] | None = None) -> str:
  """A latent-traversal grid: images float [d, steps, H, W, C] (C 1 or 3,
  values clipped to [0, 1]) -> one row per latent, labelled (`latent_labels`,
  default z0, z1, ...), columns the traversal steps, white between cells;
  DEFT Fig. 10.  Size (1.5 + 0.75 steps) x (1 + 0.75 d) inches.  Returns
  `path`.
  """
  images = _as_rgb(np.asarray(images, float), "images", "d, steps, H, W, C")
  num_latents, num_steps, height, width, _ = images.shape
  labels = (list(latent_labels) if latent_labels is not None
            else [f"z{j}" for j in range(num_latents)])
  if len(labels) != num_latents:
    raise ValueError(f"{len(labels)} latent labels for {num_latents} latents")
  gap = max(1, height // 16)
  fig, [[ax]] = new_figure((1.5 + 0.75 * num_steps,
                            1.0 + 0.75 * num_latents))
  ax.imshow(tile(images, 1.0), interpolation="nearest")
  ax.set_yticks([j * (height + gap) + height / 2 for j in range(num_latents)],
                labels, fontsize=8)
  ax.set_xticks([s * (width + gap) + width / 2 for s in range(num_steps)],
                [str(s + 1) for s in range(num_steps)], fontsize=8)
  ax.set_xlabel("traversal step (latent value, low to high)")
  ax.set_ylabel("latent")
  ax.set_title(title)
  return save(fig, path)



def gif_scale(height: int) -> int:
  """The whole factor a traversal GIF enlarges images of `height` pixels
  by (nearest neighbour), so that a cell is at least 64 pixels high."""
  return max(1, math.ceil(64 / height))


def traversal_frames(images: np.ndarray, scale: int = 1) -> np.ndarray:
  """A traversal's animation: images float [d, steps, H, W, C] -> uint8
  frames [steps, h, w, 3], frame s all d latents at step s in reading
  order on a `grid_shape(d)` grid (`tile`: gray gaps of max(1, H // 16)
  pixels), above a strip of `steps` segments of max(2, H // 8) pixels
  (step s's white, the others dark), every pixel repeated `scale` times
  each way.  The strip makes every frame distinct, so a GIF writer keeps
  all `steps` of them even where no latent changes the image."""
  images = _as_rgb(np.asarray(images, np.float32), "images",
                   "d, steps, H, W, C")
  num_latents, num_steps, height = images.shape[:3]
  rows, cols = grid_shape(num_latents)
  strip_height = max(2, height // 8)
  frames = []
  for s in range(num_steps):
    mosaic = tile(_cells(images[:, s], rows, cols), GAP_VALUE)
    strip = np.full((strip_height, mosaic.shape[1], 3), 0.2, np.float32)
    edges = np.linspace(0, mosaic.shape[1], num_steps + 1).round().astype(int)
    strip[:, edges[s]:edges[s + 1]] = 1.0
    gap = np.full((max(1, height // 16), mosaic.shape[1], 3), GAP_VALUE,
                  np.float32)
    frames.append(np.concatenate([mosaic, gap, strip]))
  frames = np.stack(frames)
  return _as_uint8(frames.repeat(scale, axis=1).repeat(scale, axis=2))


def write_gif(frames: np.ndarray, path: str, duration_ms: int = 200) -> str:
  """Saves uint8 frames [n, h, w, 3] as a looping GIF (gray frames, whose
  channels agree, exactly as 8-bit gray; colour ones on a palette per
  frame); returns `path`."""
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
    raise ValueError(f"frames must be uint8 [n, h, w, 3], got {frames.dtype} "
                     f"{frames.shape}")
  gray = bool(np.all(frames == frames[..., :1]))
  pictures = [Image.fromarray(f[..., 0] if gray else f) for f in frames]
  directory = os.path.dirname(path)
  if directory:
    os.makedirs(directory, exist_ok=True)
  pictures[0].save(path, save_all=True, append_images=pictures[1:],
                   duration=duration_ms, loop=0)
  return path
