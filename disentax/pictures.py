"""Pictures of the datasets: a grid of uniformly sampled observations each.

  python -m disentax.pictures --out=DIR [--datasets=all|a,b] [--num=16]
      [--image_size=64] [--seed=0]

writes DIR/<dataset>.png for every registered dataset (or those named): a
glance at what a model will be trained on, titled with the dataset's name
and factor sizes. Datasets whose builder needs something the command line
cannot give (a file path, a required argument) are skipped with a one-line
note: each is built with its defaults (plus `image_size` where the builder
takes one) and any error is reported instead of raised.

Observations are drawn with the evaluation sampler (`sample_uniform_factors`,
which `correlated` keeps uniform), so the grid shows the uniform grid of
factors, not a training bias. Single-channel datasets are drawn in
gray, three-channel ones in colour. Each PNG is (max(4, 0.5 + 0.75 cols)) x
(1 + 0.75 rows) inches at `DPI`, saved without tight cropping, so its pixel
size is known from `figure_inches`.

The command line is parsed with argparse rather than absl flags so that
`main(argv)` can run in-process (tests, notebooks) without global flag state.
`disentax.data` imports every module of the package, this one included, so
matplotlib is imported only when a picture is drawn, and through its
object API (`Figure`), which leaves the session's pyplot backend alone.
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
import sys
import textwrap
from typing import Sequence

import chex
import jax
import numpy as np

from disentax.data import DATASETS, GroundTruthDataset

DPI = 100
GAP_VALUE = 0.5   # gray separators read against black and white backgrounds


def grid_shape(num: int) -> tuple[int, int]:
  """(rows, cols) of the most square grid holding `num` images."""
  if num < 1:
    raise ValueError(f"num must be >= 1 images, got {num}")
  cols = math.ceil(math.sqrt(num))
  return math.ceil(num / cols), cols


def figure_inches(rows: int, cols: int) -> tuple[float, float]:
  """(width, height) of the PNG in inches: quarter inches, so that times
  `DPI` they are whole pixels."""
  return max(4.0, 0.5 + 0.75 * cols), 1.0 + 0.75 * rows


def _as_rgb(observations: np.ndarray) -> np.ndarray:
  """float [n, H, W, C] in [0, 1] with C 1 (gray) or 3 -> [n, H, W, 3]."""
  if observations.ndim != 4 or observations.shape[-1] not in (1, 3):
    raise ValueError(f"observations must be [n, H, W, C] with C 1 or 3, got "
                     f"shape {observations.shape}")
  if observations.shape[-1] == 1:
    observations = np.repeat(observations, 3, axis=-1)
  return np.clip(observations, 0.0, 1.0)


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
  images = _as_rgb(observations)
  height, width = images.shape[1:3]
  gap = max(1, height // 16)
  mosaic = np.full((rows * (height + gap) - gap, cols * (width + gap) - gap,
                    3), GAP_VALUE, np.float32)
  for n, image in enumerate(images):
    top, left = (n // cols) * (height + gap), (n % cols) * (width + gap)
    mosaic[top:top + height, left:left + width] = image
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
  """Saves the titled `sample_grid` of `dataset` to `path`; returns it."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  rows, cols = grid_shape(num)
  fig = Figure(figsize=figure_inches(rows, cols), layout="constrained")
  ax = fig.add_subplot()
  ax.imshow(sample_grid(dataset, rng, num), interpolation="nearest")
  ax.set_axis_off()
  ax.set_title(title(name, dataset, num), fontsize=8)
  fig.savefig(path, dpi=DPI)
  return path


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


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python -m disentax.pictures",
      description="Writes OUT/<dataset>.png: a grid of uniformly sampled "
                  "observations of each dataset.")
  parser.add_argument("--out", required=True, help="output directory")
  parser.add_argument("--datasets", default="all",
                      help="'all' (every dataset buildable without files) or "
                           "comma-separated registered names")
  parser.add_argument("--num", type=int, default=16,
                      help="observations per picture")
  parser.add_argument("--image_size", type=int, default=64,
                      help="for datasets whose builder takes image_size")
  parser.add_argument("--seed", type=int, default=0)
  return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
  """The CLI; returns the exit status: 0, or 1 when a dataset named in
  `--datasets` (not 'all') could not be drawn."""
  args = _parse(argv)
  if args.num < 1:
    raise SystemExit(f"error: --num must be >= 1, got {args.num}")
  registered = DATASETS.names()
  explicit = args.datasets != "all"
  names = ([n.strip() for n in args.datasets.split(",") if n.strip()]
           if explicit else registered)
  unknown = [n for n in names if n not in registered]
  if unknown or not names:
    raise SystemExit(f"error: unknown dataset(s) {unknown or names}; "
                     f"registered: {', '.join(registered)}")
  os.makedirs(args.out, exist_ok=True)
  rng = jax.random.key(args.seed)
  status = 0
  for name in names:
    try:
      dataset = build_with_defaults(name, args.image_size)
    except Exception as e:  # noqa: BLE001 -- any builder error: skip it
      message = str(e).splitlines()[0] if str(e) else type(e).__name__
      print(f"skipped {name}: {message}", file=sys.stderr)
      status = 1 if explicit else status
      continue
    path = write_picture(name, dataset, os.path.join(args.out, f"{name}.png"),
                         jax.random.fold_in(rng, registered.index(name)),
                         args.num)
    print(path)
  return status


if __name__ == "__main__":
  sys.exit(main())
