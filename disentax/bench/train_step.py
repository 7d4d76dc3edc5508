"""Benchmark `train_step`: one train step of the standard architecture, disentax
vs the same architecture and loss in PyTorch on this CPU.

The case is dlib-google's beta-VAE training: batch 64, 64x64x1 dSprites,
conv encoder (4, 4, 2, 2), 10 latents, Adam lr 1e-4, one seed.  Rows, one
per `model.kernels` setting (both compute the same function from the same
parameters; the backend's default member layout and loop):

  fast       disentax as it trains by default on CPU ('auto' = 'fast': the
             paired stride-2 layers of models/kernels/stride2.py).
             Target: <= 0.5x PyTorch.
  reference  flax's own layers (lax.conv and lax.conv_transpose,
             autodiffed).

and one more of `fast` with the opt-in `train.micro_batches` = 4 (the
gradient accumulated over slices of the batch: the same gradient and noise,
one slice's activations in cache).  A last row puts the default step on
this host's roofline: its model FLOP/s (bench/flops.py: 3 x the forward
pass's convolutions and products) over the FLOP/s of one large float32
matrix product in XLA, the fastest thing this CPU does; its note says what
share PyTorch's step reaches and what share 0.5x PyTorch would need.

disentax renders each batch of dSprites inside its jitted step (as in
training), so its time includes drawing the data.  PyTorch trains on a pool
of batches rendered beforehand by the same sampler and converted to NCHW
tensors, so it is *not* charged for data.  PyTorch uses every core
(`torch.set_num_threads`), as XLA:CPU does.  Every row and PyTorch are
timed in turn, a chunk of steps each per round, after warm-up steps
(compile / first-call setup excluded), and each keeps its fastest chunk:
on a shared machine the minimum is the least disturbed figure, and taking
turns lets a slow spell hit every side alike (two runs of the earlier
one-side-after-the-other timing 15 minutes apart gave 0.87x and 1.06x).

The helpers here (`standard_config`, `time_train_step`, `log`) are shared
by the other items of this package that time the real train step; a
program is compiled once per process and reused by every item that times
it (its compile time is reported from that first build).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Callable

import jax
import ml_collections

from disentax.bench import (Row, fastest_in_alternation, flops,
                            seconds_per_call)
from disentax.config import load_config
from disentax.experiment import Experiment, build, member_hparams
from disentax.training import train_state, trainer

ITEM = "train_step"
BETA = 4.0
INSTALL_HINT = "pip install -e '.[bench]'"


@dataclasses.dataclass(frozen=True)
class Sizes:
  """What one measurement of this item trains and how long it is timed."""
  image_size: int = 64
  batch_size: int = 64
  steps: int = 10         # steps per timed chunk
  repeats: int = 3        # timed chunks; the fastest counts
  torch_warmup: int = 3   # untimed PyTorch steps first
  matmul_side: int = 4096  # the roofline row's square matrix product


FULL = Sizes()
QUICK = Sizes(image_size=32, batch_size=16, steps=3, repeats=2,
              torch_warmup=2, matmul_side=512)


@dataclasses.dataclass(frozen=True)
class StepTiming:
  compile_seconds: float  # build + compile + the first (one-step) chunk
  seconds_per_step: float  # all members' step, fastest timed chunk
  layout: str              # e.g. "unroll/host"


def log(item: str, message: str) -> None:
  """A progress line on stdout (benchmarks run for minutes)."""
  print(f"  [{item}] {message}", flush=True)


def num_cores() -> int:
  """Cores this process may run on."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not Linux
    return os.cpu_count() or 1


KERNELS = ("fast", "reference")  # the rows' model.kernels, in order
MICRO = "micro_batches"  # the row of the default with train.micro_batches
MICRO_BATCHES = 4
_LABELS = {"fast": "default, fast kernels (paired stride-2 layers)",
           "reference": "reference kernels, lax.conv_transpose / lax.conv",
           MICRO: f"fast, train.micro_batches={MICRO_BATCHES} (opt-in; the "
                  "same gradient from slices of the batch)"}


def standard_config(num_seeds: int = 1, image_size: int = 64,
                    batch_size: int = 64, kernels: str | None = None,
                    micro_batches: int = 1) -> ml_collections.ConfigDict:
  """dlib-google's beta-VAE training config (experiments/beta_vae.py
  'paper': dSprites, conv (4, 4, 2, 2), Adam lr 1e-4) with one beta and
  `num_seeds` seeds; the member layout and loop are the backend's defaults.
  `kernels` sets model.kernels; None keeps the model's default ('auto').
  `micro_batches`: train.micro_batches."""
  config = load_config("experiments/beta_vae.py:paper")
  config.objective.beta = (BETA,)
  config.num_seeds = num_seeds
  config.dataset.image_size = image_size
  config.train.batch_size = batch_size
  config.train.micro_batches = micro_batches
  if kernels is not None:
    config.model.kernels = kernels
  return config


def layout_name(exp: Experiment) -> str:
  return f"{exp.layout.members}/{exp.layout.loop}"


@dataclasses.dataclass
class Program:
  """A compiled train program of one config, with its latest state (the
  chunk donates the state it is given)."""
  exp: Experiment
  chunk: Callable
  state: train_state.TrainState
  hparams: dict[str, jax.Array]
  keys: jax.Array
  compile_seconds: float

  def run(self, steps: int) -> float:
    """Runs `steps` steps; returns the wall seconds, results blocked on."""
    start = time.perf_counter()
    self.state, metrics = self.chunk(self.state, self.hparams, self.keys,
                                     steps)
    jax.block_until_ready((self.state, metrics))
    return time.perf_counter() - start


# Programs compiled in this process, by config: items that time the same
# program (the 1-seed step is in three items) compile it once per run.
_PROGRAMS: dict[str, Program] = {}


def compiled_program(config: ml_collections.ConfigDict) -> Program:
  """The real train program of `config` (`trainer.make_train_chunk`, data
  drawn inside the step), compiled by running one step; cached."""
  key = config.to_json_best_effort(sort_keys=True)
  if key not in _PROGRAMS:
    start = time.perf_counter()
    exp = build(config)
    program = Program(exp, trainer.make_train_chunk(exp),
                      train_state.init_state(exp), member_hparams(exp),
                      exp.members.keys(), 0.0)
    program.run(1)
    program.compile_seconds = time.perf_counter() - start
    _PROGRAMS[key] = program
  return _PROGRAMS[key]


def time_train_step(config: ml_collections.ConfigDict, steps: int,
                    repeats: int) -> StepTiming:
  """Times `config`'s train program (compiled once, see `compiled_program`)
  as `repeats` chunks of `steps` steps; the fastest chunk gives the step
  time."""
  program = compiled_program(config)
  best = min(program.run(steps) / steps for _ in range(repeats))
  return StepTiming(program.compile_seconds, best, layout_name(program.exp))


def matmul_flops_per_second(side: int, repeats: int = 5) -> float:
  """FLOP/s of one jitted float32 `side` x `side` matrix product on this
  backend, the fastest of `repeats` calls after a warm-up: the practical
  ceiling for a train step's convolutions and products."""
  matrix = jax.random.normal(jax.random.key(0), (side, side))
  product = jax.jit(lambda m: m @ m)
  jax.block_until_ready(product(matrix))
  best = min(seconds_per_call(lambda: product(matrix), 1, warmup=0)
             for _ in range(repeats))
  return 2 * side ** 3 / best


def roofline_row(sizes: Sizes, step_seconds: float,
                 torch_seconds: float | None) -> Row:
  """The default step's model FLOP/s against this host's matrix-product
  FLOP/s (see the module docstring)."""
  step_flops = flops.train_step_flops(
      standard_config(1, sizes.image_size, sizes.batch_size))
  ceiling = matmul_flops_per_second(sizes.matmul_side)
  note = (f"{step_flops / 1e9:.2f} GFLOP per step; ceiling: one "
          f"{sizes.matmul_side}x{sizes.matmul_side} float32 product")
  if torch_seconds is not None:
    share = step_flops / torch_seconds / ceiling
    note += (f"; PyTorch's step reaches {share:.0%} of it, 0.5x PyTorch "
             f"would need {2 * share:.0%}")
  return Row(item=ITEM, case="default step's model FLOP/s vs this CPU's "
                             "matrix-product FLOP/s",
             disentax=step_flops / step_seconds / 1e9,
             baseline=ceiling / 1e9, unit="GFLOP/s",
             baseline_name="XLA float32 matmul", note=note)


def torch_step_timer(sizes: Sizes, pool: int = 8
                     ) -> tuple[Callable[[], float], str]:
  """(a function that times `sizes.steps` PyTorch steps on pre-rendered
  batches and returns seconds per step, the baseline's name), after
  `sizes.torch_warmup` untimed steps."""
  import torch  # optional dependency; ImportError handled by `measure`

  from disentax.bench import torch_reference

  exp = build(standard_config(1, sizes.image_size, sizes.batch_size))
  sample = jax.jit(exp.dataset.sample, static_argnums=1)
  batches = [torch_reference.nchw(
      sample(jax.random.key(i), sizes.batch_size)[1]) for i in range(pool)]
  threads = num_cores()
  torch.set_num_threads(threads)
  torch.manual_seed(0)
  height, width, channels = exp.dataset.observation_shape
  model = torch_reference.TorchConvVAE(
      height, channels, exp.config.model.num_latents,
      tuple(exp.config.model.encoder_kernel_sizes))
  optimizer = torch_reference.make_optimizer(
      model, exp.config.train.learning_rate)
  for i in range(sizes.torch_warmup):
    torch_reference.train_step(model, optimizer, batches[i % pool], BETA)

  def seconds_per_step() -> float:
    start = time.perf_counter()
    for i in range(sizes.steps):
      torch_reference.train_step(model, optimizer, batches[i % pool], BETA)
    return (time.perf_counter() - start) / sizes.steps

  return seconds_per_step, f"PyTorch {torch.__version__} CPU, {threads} threads"


def measure(quick: bool, sizes: Sizes | None = None) -> list[Row]:
  """The item's rows: disentax (each of KERNELS, and the default with
  micro-batches) vs PyTorch, ms/step, all timed in alternation; then the
  roofline row."""
  sizes = sizes or (QUICK if quick else FULL)
  side, batch = sizes.image_size, sizes.batch_size
  case = f"beta-VAE, batch {batch}, {side}x{side}x1, 1 seed"
  configs = {name: standard_config(1, side, batch, name) for name in KERNELS}
  configs[MICRO] = standard_config(1, side, batch, "fast", MICRO_BATCHES)
  programs = {}
  for name, config in configs.items():
    log(ITEM, f"disentax, {_LABELS[name]}: compiling")
    programs[name] = compiled_program(config)
  timers = [functools.partial(_seconds_per_step, program, sizes.steps)
            for program in programs.values()]
  log(ITEM, "PyTorch reference: warming up")
  try:
    torch_timer, torch_name = torch_step_timer(sizes)
    timers.append(torch_timer)
    data_note = ("PyTorch on pre-rendered batches (not charged for data); "
                 "disentax renders dSprites inside its step")
  except ImportError as error:
    if error.name != "torch":
      raise
    torch_name = ""
    data_note = f"PyTorch not installed: {INSTALL_HINT}"
  log(ITEM, f"timing {len(timers)} programs in turn, {sizes.repeats} "
      f"rounds of {sizes.steps} steps")
  best = fastest_in_alternation(timers, sizes.repeats)
  torch_seconds = best[len(programs)] if len(best) > len(programs) else None
  torch_ms = None if torch_seconds is None else torch_seconds * 1e3
  rows = []
  for (name, program), seconds in zip(programs.items(), best):
    rows.append(Row(
        item=ITEM,
        case=f"{case}, {_LABELS[name]} ({layout_name(program.exp)})",
        disentax=seconds * 1e3, baseline=torch_ms, unit="ms/step",
        baseline_name=torch_name,
        target="<= 0.5x PyTorch" if name in ("fast", MICRO) else "",
        note=(f"{data_note}; fastest of {sizes.repeats} x {sizes.steps} "
              "steps, every row and PyTorch timed in turn; compile "
              f"{program.compile_seconds:.1f} s")))
  log(ITEM, "this CPU's matrix-product FLOP/s (roofline row)")
  rows.append(roofline_row(sizes, best[0], torch_seconds))
  return rows


def _seconds_per_step(program: Program, steps: int) -> float:
  return program.run(steps) / steps
