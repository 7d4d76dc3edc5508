"""Image grids: uniformly sampled observations of a dataset (`sample_grid`,
`write_picture`, `write_pictures` behind `python -m disentax.pictures`) and
latent traversals of a trained member (`traversal_figure`, DEFT Fig. 10).

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


def sample_grid(dataset: GroundTruthDataset, rng: jax.Array,
                num: int) -> np.ndarray:
  """`num` uniformly sampled observations tiled into one image, uint8
  [rows (H + gap) - gap, cols (W + gap) - gap, 3] (`grid_shape(num)`; gap =
  max(1, H // 16) gray pixels; unused cells gray)."""
  rows, cols = grid_shape(num)
  factors = dataset.sample_uniform_factors(rng, num)
  chex.assert_shape(factors, (num, dataset.num_factors))
  observations = np.asarray(dataset.observations_from_factors(factors),
                            np.float32)
  chex.assert_shape(observations, (num, *dataset.observation_shape))
  images = _as_rgb(observations, "observations", "n, H, W, C")
  cells = np.full((rows * cols, *images.shape[1:]), GAP_VALUE, np.float32)
  cells[:num] = images
  mosaic = tile(cells.reshape(rows, cols, *images.shape[1:]), GAP_VALUE)
  return np.round(mosaic * 255.0).astype(np.uint8)


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
  fig, [[ax]] = new_figure(figure_inches(*grid_shape(num)))
  ax.imshow(sample_grid(dataset, rng, num), interpolation="nearest")
  ax.set_axis_off()
  ax.set_title(title(name, dataset, num), fontsize=8)
  return save(fig, path)


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

