"""Benchmark `data`: images per second the data pipeline produces vs the
images per second the train step consumes.

Training draws each member's batch inside its jitted step
(`exp.dataset.sample(data_key, batch)` with the step's data key), so the
producer timed here is exactly that draw for N seeds -- the same key
derivation and the same member layout as the step (unrolled on CPU,
vmapped elsewhere) -- jitted on its own: N x batch / seconds per call.
The consumer is the real train step of N seeds: N x batch / seconds per
step.  The ratio (produced / consumed) says how many times faster than
training the pipeline is; since the step contains the draw, 1 / ratio is
roughly the share of the step spent rendering data.

Rows: procedural dSprites (what every dSprites run uses), and the
file-backed path (`disentax/data/files.py` via the `cars3d_npz` loader) on a
small generated npz of random 64x64x1 images, streamed from a memmap through
`jax.pure_callback` (`in_memory=False`) and as a device-resident uint8 array
(`in_memory=True`).  Their consumer is the dSprites step of the same shape
(the architecture does not depend on where the images come from).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from typing import Callable

import jax
import numpy as np

from disentax.training import train_state
from disentax.bench import Row
from disentax.bench.train_step import (compiled_program, log, standard_config,
                                       time_train_step)
from disentax.data import GroundTruthDataset
from disentax.data.file_datasets import cars3d_npz
from disentax.training.layouts import over_members

ITEM = "data"
FILE_FACTOR_SIZES = (4, 24, 8)  # a Cars3D-shaped sub-grid, 768 images


@dataclasses.dataclass(frozen=True)
class Sizes:
  """What this item draws and trains, and how long each is timed."""
  seeds: tuple[int, ...] = (1, 8)
  image_size: int = 64
  batch_size: int = 64
  calls: int = 20   # sampler calls per timed chunk
  steps: int = 4    # train steps per timed chunk
  repeats: int = 3  # timed chunks; the fastest counts
  files: bool = True  # also time the file-backed path


FULL = Sizes()
QUICK = Sizes(seeds=(1,), image_size=32, batch_size=16, calls=10, steps=2,
              repeats=2)


def make_sampler(dataset: GroundTruthDataset, batch_size: int,
                 member_execution: str) -> Callable:
  """Jitted (member keys [N], step) -> observations [N, batch, ...], drawn
  as `training.step.make_member_step` draws a member's batch."""

  def member_batch(key, step):
    _, run_key = train_state.split_member_key(key)
    data_key, _, _ = jax.random.split(jax.random.fold_in(run_key, step), 3)
    return dataset.sample(data_key, batch_size)[1]

  return jax.jit(over_members(member_batch, member_execution,
                              in_axes=(0, None)))


def images_per_second(sampler: Callable, keys: jax.Array, batch_size: int,
                      calls: int, repeats: int) -> float:
  """N x batch / seconds per sampler call (fastest of `repeats` chunks of
  `calls` calls, each call a new step's data, after one compiling call)."""
  jax.block_until_ready(sampler(keys, 0))
  best = float("inf")
  for r in range(repeats):
    start = time.perf_counter()
    for i in range(calls):
      out = sampler(keys, 1 + r * calls + i)
    jax.block_until_ready(out)
    best = min(best, (time.perf_counter() - start) / calls)
  return keys.shape[0] * batch_size / best


def write_npz(directory: str, image_size: int) -> str:
  """A small uncompressed npz of random binary images in canonical grid
  order (the file the `cars3d_npz` loader reads); returns its path."""
  num = int(np.prod(FILE_FACTOR_SIZES))
  rng = np.random.default_rng(0)
  images = (rng.random((num, image_size, image_size)) < 0.2).astype(
      np.uint8) * np.uint8(255)
  path = os.path.join(directory, "bench_images.npz")
  np.savez(path, images=images)
  return path


def measure(quick: bool, sizes: Sizes | None = None) -> list[Row]:
  """Per N: dSprites (and file-backed) images/s vs the step's images/s."""
  sizes = sizes or (QUICK if quick else FULL)
  side, batch = sizes.image_size, sizes.batch_size
  rows = []
  with tempfile.TemporaryDirectory() as directory:
    npz = write_npz(directory, side) if sizes.files else ""
    for n in sizes.seeds:
      config = standard_config(n, side, batch)
      log(ITEM, f"{n} seed(s): train step")
      timing = time_train_step(config, sizes.steps, sizes.repeats)
      exp = compiled_program(config).exp
      keys = exp.members.keys()
      consumed = n * batch / timing.seconds_per_step
      sources = [("procedural dSprites", exp.dataset)]
      if sizes.files:
        sources += [
            (f"npz file, in_memory={in_memory}",
             cars3d_npz(npz, in_memory=in_memory, image_size=side,
                        factor_sizes=FILE_FACTOR_SIZES, cache_dir=directory))
            for in_memory in (False, True)]
      for name, dataset in sources:
        log(ITEM, f"{n} seed(s): sampler, {name}")
        produced = images_per_second(
            make_sampler(dataset, batch, exp.layout.members), keys, batch,
            sizes.calls, sizes.repeats)
        rows.append(Row(
            item=ITEM, case=(f"{name}, {n} seed{'s' if n > 1 else ''} x "
                             f"batch {batch}, {side}x{side}x1"),
            disentax=produced, baseline=consumed, unit="images/s",
            baseline_name=f"train step ({timing.layout})",
            note=(f"sampler jitted alone ({exp.layout.members}), best of "
                  f"{sizes.repeats} x {sizes.calls} calls; consumption: "
                  f"{n} x {batch} / dSprites step time, best of "
                  f"{sizes.repeats} x {sizes.steps} steps")))
  return rows
