"""Benchmark `accelerator`: 50-seed DEFT on an accelerator, against its peak.

Rows (accelerators only; on a CPU backend the item is skipped unless
`--quick`, which runs tiny sizes to try the code).  The programs use the
backend's default kernels (`model.kernels` 'auto', decided by
`models.kernels.resolve`: on accelerators the reference ones, XLA's own
convolutions and the vmapped fractional encoder).

  rate      seed-steps/s of the real train program of 50 seeds of DEFT on
            dSprites (experiments/deft.py:dsprites, journal Table 2, batch
            256, 64x64x1), and of 50 seeds of beta-VAE at its Table 3
            setting (experiments/deft_table3.py:beta_vae_dsprites: the
            standard encoder every compared method uses);
  share     the model FLOP/s each achieves (`bench.flops`: 3 x the forward
            pass's convolution and matrix-product FLOPs, counted from the
            architecture) over the device's peak.  Target: >= 30%.
  kernels   DEFT again with the fast kernels (`model.kernels` 'fast':
            paired stride-2 layers, sequential groups) against the
            backend's defaults, to decide what 'auto' picks on
            accelerators.
  80k       the wall time of 50 seeds x DEFT's 80,000 steps (4 stages x
            20,000) at that rate.  Target: < 15 minutes on one H100.
  Table 4   the projected wall time of the whole DEFT journal Table 4 grid
            (experiments/sweeps/deft_table4.py: 5 methods x 4 datasets x 50
            seeds, each at its own steps and image shape): every cell's
            model FLOPs over the FLOP/s measured above (DEFT cells at
            DEFT's, the other methods' at beta-VAE's), one cell after
            another on one device.

The peak is float32 inputs on tensor cores (TF32, dense): at JAX's default
precision, float32 convolutions and matrix products run as TF32 on these
GPUs (JAX docs, "Matmul precision"); the plain FP32 peak is in the note.
Devices not in `PEAKS` get no share unless `peak_tflops` is given.

  python -m disentax.bench --items=accelerator
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import ml_collections

from disentax import backend
from disentax.bench import Row, Skipped
from disentax.bench.flops import train_step_flops
from disentax.bench.train_step import log, time_train_step
from disentax.config import load_config
from disentax.sweep.spec import apply_overrides, load_sweep

ITEM = "accelerator"
TABLE_4 = "experiments/sweeps/deft_table4.py:smallnorb_dir=unread"
DEFT_STEPS = 80_000  # journal Table 2, dSprites: 4 stages x 20,000 steps
TARGET_SHARE = 0.3
TARGET_MINUTES = 15.0


@dataclasses.dataclass(frozen=True)
class Peak:
  """A device's dense peak, TFLOP/s: TF32 tensor cores and plain FP32."""
  tf32: float
  fp32: float


# device_kind substring -> peak, first match wins (NVIDIA data sheets; the
# data sheets' TF32 figures "with sparsity" are twice these).
PEAKS: tuple[tuple[str, Peak], ...] = (
    ("H100 PCIe", Peak(tf32=378.0, fp32=51.2)),
    ("H100", Peak(tf32=494.7, fp32=66.9)),   # SXM5
    ("H200", Peak(tf32=494.7, fp32=66.9)),
    ("A100", Peak(tf32=156.0, fp32=19.5)),
)


def device_peak(device_kind: str) -> Peak | None:
  """The peak of a `jax.Device.device_kind`, None when not in PEAKS."""
  return next((peak for key, peak in PEAKS if key in device_kind), None)


@dataclasses.dataclass(frozen=True)
class Sizes:
  """The two measured programs and how long each is timed."""
  deft: str = "experiments/deft.py:dsprites"
  compared: str = "experiments/deft_table3.py:beta_vae_dsprites"
  seeds: int = 50
  steps: int = 20    # steps per timed chunk
  repeats: int = 3   # timed chunks; the fastest counts
  # DEFT timed again with other kernels (same function, same parameters):
  # to decide what model.kernels 'auto' picks on accelerators.
  alternatives: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
      ("fast kernels (paired stride-2 layers, sequential groups)",
       (("model.kernels", "fast"),)),)


FULL = Sizes()
QUICK = Sizes(deft="experiments/deft.py:tiny",
              compared="experiments/deft_table3.py:tiny",
              seeds=2, steps=3, repeats=2)


@dataclasses.dataclass(frozen=True)
class Measured:
  """One program's rate and the model FLOP/s it achieves."""
  seed_steps_per_second: float
  flops_per_second: float
  note: str


def measure_program(spec: str, seeds: int, steps: int, repeats: int,
                    overrides: Sequence[tuple[str, str]] = ()) -> Measured:
  """Times the train program of `seeds` seeds of the config `spec` (with
  the dotted-key `overrides`)."""
  config = apply_overrides(load_config(spec), dict(overrides))
  config.num_seeds = seeds
  log(ITEM, f"{spec} {dict(overrides) or ''}, {seeds} seeds: compiling and "
      "timing")
  timing = time_train_step(config, steps, repeats)
  rate = seeds / timing.seconds_per_step
  return Measured(rate, rate * train_step_flops(config),
                  f"{timing.layout}, compile {timing.compile_seconds:.1f} s, "
                  f"best of {repeats} x {steps} steps")


def project_grid(cells: Sequence[tuple[ml_collections.ConfigDict, bool]],
                 seeds: int, deft_flops_per_second: float,
                 compared_flops_per_second: float) -> float:
  """Seconds to train every cell's `seeds` seeds one cell after another:
  (cells' model FLOPs) / (the FLOP/s measured for that kind of cell).
  Each cell is (config, is_deft)."""
  total = 0.0
  for config, is_deft in cells:
    rate = deft_flops_per_second if is_deft else compared_flops_per_second
    total += seeds * config.train.num_steps * train_step_flops(config) / rate
  return total


def table4_cells() -> tuple[list[tuple[ml_collections.ConfigDict, bool]],
                            int]:
  """([(config, is_deft)] of every Table 4 cell, seeds per cell)."""
  sweep = load_sweep(TABLE_4)
  return ([(load_config(spec), spec.startswith("experiments/deft.py"))
           for spec in sweep.configs], sweep.num_seeds)


def measure(quick: bool, sizes: Sizes | None = None,
            peak_tflops: float | None = None) -> list[Row]:
  """The item's rows (see the module docstring)."""
  if backend.on_cpu() and not quick:
    raise Skipped(f"{ITEM}: skipped, the jax backend is cpu (this item runs "
                  "on a GPU; --quick tries it at tiny sizes)")
  sizes = sizes or (QUICK if quick else FULL)
  device = jax.devices()[0].device_kind
  peak = device_peak(device)
  peak_flops = (peak_tflops or (peak.tf32 if peak else 0.0)) * 1e12
  peak_name = (f"{device} peak" + (", TF32 dense" if peak and not peak_tflops
                                   else ""))
  deft = measure_program(sizes.deft, sizes.seeds, sizes.steps, sizes.repeats)
  compared = measure_program(sizes.compared, sizes.seeds, sizes.steps,
                             sizes.repeats)
  rows = []
  for name, spec, measured in (("DEFT", sizes.deft, deft),
                               ("beta-VAE", sizes.compared, compared)):
    case = f"{name} ({spec}), {sizes.seeds} seeds"
    rows.append(Row(item=ITEM, case=case,
                    disentax=measured.seed_steps_per_second, baseline=None,
                    unit="seed-steps/s", note=measured.note))
    rows.append(Row(
        item=ITEM, case=f"{case}: model FLOP/s", unit="TFLOP/s",
        disentax=measured.flops_per_second / 1e12,
        baseline=peak_flops / 1e12 if peak_flops else None,
        baseline_name=peak_name if peak_flops else "",
        target=f">= {TARGET_SHARE:.0%} of peak",
        note=(f"ratio = share of peak; FP32 (no tensor cores) peak "
              f"{peak.fp32:g} TFLOP/s" if peak else
              f"no peak known for {device!r}")))
  for label, overrides in sizes.alternatives:
    other = measure_program(sizes.deft, sizes.seeds, sizes.steps,
                            sizes.repeats, overrides)
    rows.append(Row(
        item=ITEM, case=f"DEFT, {sizes.seeds} seeds, {label}",
        disentax=other.seed_steps_per_second,
        baseline=deft.seed_steps_per_second, unit="seed-steps/s",
        baseline_name="the config's kernels, 'auto' for this backend",
        note=f"ratio > 1: faster than the default; {other.note}"))
  minutes = sizes.seeds * DEFT_STEPS / deft.seed_steps_per_second / 60
  rows.append(Row(
      item=ITEM, case=f"DEFT, {sizes.seeds} seeds x {DEFT_STEPS:,} steps",
      disentax=minutes, baseline=TARGET_MINUTES, unit="min",
      baseline_name="target", target=f"< {TARGET_MINUTES:g} min on one H100",
      note=f"at the rate above, on {device}"))
  log(ITEM, "counting the model FLOPs of every Table 4 cell")
  cells, seeds = table4_cells()
  hours = project_grid(cells, seeds, deft.flops_per_second,
                       compared.flops_per_second) / 3600
  rows.append(Row(
      item=ITEM, case=f"DEFT journal Table 4 grid, {len(cells)} cells x "
      f"{seeds} seeds", disentax=hours, baseline=None, unit="h (projected)",
      note=("each cell's model FLOPs at the FLOP/s measured above (DEFT "
            "cells at DEFT's, others at beta-VAE's), cells one after "
            f"another on one {device}")))
  return rows
