"""Benchmarks of the real training program (timings never go in tests).

  python -m disentax.bench.train_layouts [--seeds=1,8] [--image_size=64] [--batch_size=64]

Times one train step of the standard architecture (beta-VAE, dSprites
rendered inside the step) for each number of seeds, each way of laying
members and steps out in the program and each `model.kernels` setting,
after compiling.  Prints a Markdown
table to paste into BUILD_NOTES.md with the machine and date.
"""

from __future__ import annotations

import datetime
import platform
import time

import jax
import jax.numpy as jnp
from absl import flags

from disentax import cli
from disentax.config import load_config
from disentax.experiment import build
from disentax.training import train_state, trainer

_SEEDS = flags.DEFINE_list("seeds", ["1", "8"], "numbers of seeds to time")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 64, "dSprites image side")
_BATCH = flags.DEFINE_integer("batch_size", 64, "batch size per seed")
_STEPS = flags.DEFINE_integer("steps", 5, "timed steps per measurement")
_MODES = flags.DEFINE_list(
    "modes", ["unroll/host", "vmap/host"],
    "member_execution/loop combinations to time")
_KERNELS = flags.DEFINE_list("kernels", ["fast", "reference"],
                             "model.kernels settings to time")


def time_train_step(num_seeds: int, member_execution: str, loop: str,
                    kernels: str) -> tuple[float, float]:
  """(compile + first chunk seconds, seconds per step for all seeds)."""
  config = load_config("experiments/beta_vae.py:paper")
  config.dataset.image_size = _IMAGE_SIZE.value
  config.objective.beta = (4.0,)
  config.num_seeds = num_seeds
  config.train.batch_size = _BATCH.value
  config.train.member_execution = member_execution
  config.train.loop = loop
  config.model.kernels = kernels
  exp = build(config)
  chunk = trainer.make_train_chunk(exp)
  state = train_state.init_state(exp)
  hparams = {k: jnp.asarray(v) for k, v in exp.members.hparams.items()}
  keys = exp.members.keys()
  start = time.perf_counter()
  state, metrics = chunk(state, hparams, keys, _STEPS.value)
  jax.block_until_ready(metrics)
  first = time.perf_counter() - start
  start = time.perf_counter()
  state, metrics = chunk(state, hparams, keys, _STEPS.value)
  jax.block_until_ready(metrics)
  return first, (time.perf_counter() - start) / _STEPS.value


def main(argv):
  del argv
  print(f"disentax.bench on {platform.node()} ({platform.processor() or platform.machine()}, "
        f"{jax.device_count()} x {jax.devices()[0].device_kind}), "
        f"{datetime.date.today()}, jax {jax.__version__}")
  print(f"beta-VAE train step, {_IMAGE_SIZE.value}x{_IMAGE_SIZE.value} "
        f"dSprites rendered in the step, batch {_BATCH.value} per seed\n")
  print("| seeds | members/loop | kernels | ms per step (all seeds) | "
        "ms per seed-step | compile + first chunk s |")
  print("|---:|---|---|---:|---:|---:|")
  for seeds in map(int, _SEEDS.value):
    for mode in _MODES.value:
      member_execution, loop = mode.split("/")
      for kernels in _KERNELS.value:
        first, per_step = time_train_step(seeds, member_execution, loop,
                                          kernels)
        print(f"| {seeds} | {mode} | {kernels} | {per_step * 1e3:.1f} | "
              f"{per_step * 1e3 / seeds:.1f} | {first:.1f} |", flush=True)


if __name__ == "__main__":
  cli.run(main)
