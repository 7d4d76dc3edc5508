"""Benchmark `seeds`: N seeds trained in one program vs N single-seed runs.

For each N (1, 8, 50; quick: 1, 4) the real train program of N seeds of the
standard beta-VAE (batch 64, 64x64x1 dSprites rendered in the step; quick:
batch 16, 32x32) is timed in the backend's default member layout (CPU:
members unrolled, above 16 members one member per dispatch ('sequential'),
host loop; accelerators: vmapped, scanned).  The figure is
seed-steps per second: N / (seconds per step of all N seeds).

The baseline is N single-seed runs one after another: they make 1 /
(seconds per step of one seed) seed-steps per second whatever N is, so the
one-seed program is timed once and that rate is every row's baseline.  A
ratio above 1 means one N-seed program beats N sequential runs.
"""

from __future__ import annotations

import dataclasses

from disentax.bench import Row
from disentax.bench.train_step import log, standard_config, time_train_step

ITEM = "seeds"


@dataclasses.dataclass(frozen=True)
class Sizes:
  """What this item trains and how long each program is timed."""
  seeds: tuple[int, ...] = (1, 8, 50)
  image_size: int = 64
  batch_size: int = 64
  seed_steps: int = 10  # seed-steps per timed chunk (>= 2 steps each)
  repeats: int = 2      # timed chunks; the fastest counts


FULL = Sizes()
QUICK = Sizes(seeds=(1, 4), image_size=32, batch_size=16, seed_steps=4)


def measure(quick: bool, sizes: Sizes | None = None) -> list[Row]:
  """One row per N: seed-steps/s of N seeds in one program vs N runs."""
  sizes = sizes or (QUICK if quick else FULL)
  side = sizes.image_size
  # The single-seed program is the baseline of every row: time it first.
  counts = (1, *(n for n in sizes.seeds if n != 1))
  rates, layouts = {}, {}
  for n in counts:
    steps = max(2, sizes.seed_steps // n)
    log(ITEM, f"{n} seed(s): compiling and timing {steps} steps")
    timing = time_train_step(standard_config(n, side, sizes.batch_size),
                             steps, sizes.repeats)
    rates[n] = n / timing.seconds_per_step
    layouts[n] = (f"{timing.layout}, compile {timing.compile_seconds:.1f} s, "
                  f"best of {sizes.repeats} x {steps} steps")
  single = rates[1]
  return [Row(
      item=ITEM, case=(f"{n} seed{'s' if n > 1 else ''}, batch "
                       f"{sizes.batch_size}, {side}x{side}x1"),
      disentax=rates[n], baseline=single, unit="seed-steps/s",
      baseline_name=f"{n} single-seed run{'s' if n > 1 else ''}",
      note=(f"one program ({layouts[n]}); baseline: the 1-seed program's "
            "rate, = N single-seed runs one after another"))
      for n in sizes.seeds]
