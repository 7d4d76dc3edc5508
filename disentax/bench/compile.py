"""Benchmark `compile`: compile time per program, and proof of no recompilation across
DEFT stages and hyperparameter values.

For each config, the train chunk (`training.trainer.make_train_chunk`, the
program `python -m disentax.main` runs) is built and called: once to
compile, then again for the steady-state time.  XLA's own compile events
(`jax.monitoring`, "/jax/core/compile/backend_compile_duration", one per
program compiled) give the compile seconds and the number of programs;
tracing and lowering to StableHLO are reported beside them.  With the host
loop (the CPU default) a chunk is two jitted programs (one step of all
members, by far the largest, and the zeroed metric sums) and the eager
division that averages the metrics; with loop 'scan' it is one program.

JAX's persistent compilation cache (JAX_COMPILATION_CACHE_DIR, which
tests/conftest.py sets) would load programs instead of compiling them, so
this item switches it off while it runs ("jax_enable_compilation_cache"
False, and the cache reset so that JAX checks the setting again; both
restored after), counts persistent-cache hits to show there were none, and
clears JAX's in-memory caches before each config: every number is a real
compilation.

No recompilation (a DEFT config with stages, chunks shorter than a stage):
after the first chunk has compiled, the item counts the XLA compilations of

  * the chunks that cross from stage 0 into stage 1 and run in it (the
    stage and its pressure are computed from the step inside the program);
  * the same chunk called with other hyperparameter values (pressures and
    gamma changed, same shapes): hyperparameters are mapped inputs;
  * a fresh `build` of the config with other pressure values: new Python
    closures, so JAX traces and compiles again within the process (its
    in-memory cache is keyed by function identity).  The item also checks
    that the two builds lower to byte-identical programs (loop 'scan', so
    the chunk itself can be lowered): identical programs share one entry of
    the persistent compilation cache, so a sweep over hyperparameter values
    compiles once across processes.

  python -m disentax.bench --items=compile [--quick]
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any, Callable, Iterator, Sequence

import jax
import jax.monitoring
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental.compilation_cache import compilation_cache

from disentax.bench import Row
from disentax.config import load_config
from disentax.experiment import Experiment, build
from disentax.training import train_state, trainer

BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
TRACE = "/jax/core/compile/jaxpr_trace_duration"
LOWER = "/jax/core/compile/jaxpr_to_mlir_module_duration"
CACHE_HIT = "/jax/compilation_cache/cache_hits"


@dataclasses.dataclass
class CompileLog:
  """Durations of the compile events seen (one list per event)."""
  backend: list[float] = dataclasses.field(default_factory=list)
  trace: list[float] = dataclasses.field(default_factory=list)
  lower: list[float] = dataclasses.field(default_factory=list)
  cache_hits: int = 0  # programs loaded from the persistent cache

  @property
  def programs(self) -> int:
    """Programs compiled or loaded from the persistent cache."""
    return len(self.backend) + self.cache_hits


@contextlib.contextmanager
def recorded_compiles() -> Iterator[CompileLog]:
  """Yields a CompileLog filled with the compile events of the block."""
  log = CompileLog()
  lists = {BACKEND_COMPILE: log.backend, TRACE: log.trace, LOWER: log.lower}

  def listener(event: str, duration: float, **kwargs) -> None:
    if event in lists:
      lists[event].append(duration)

  def hit_listener(event: str, **kwargs) -> None:
    if event == CACHE_HIT:
      log.cache_hits += 1

  jax.monitoring.register_event_duration_secs_listener(listener)
  jax.monitoring.register_event_listener(hit_listener)
  try:
    yield log
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
    jax.monitoring.unregister_event_listener(hit_listener)


@contextlib.contextmanager
def without_persistent_cache() -> Iterator[None]:
  """JAX's persistent compilation cache off inside the block (restored
  after), so compilations are measured, not loaded from disk.  JAX decides
  once per process whether it uses the cache; resetting the cache makes it
  decide again under the current setting."""
  before = jax.config.jax_enable_compilation_cache
  jax.config.update("jax_enable_compilation_cache", False)
  compilation_cache.reset_cache()
  try:
    yield
  finally:
    jax.config.update("jax_enable_compilation_cache", before)
    compilation_cache.reset_cache()


def tiny_deft_config() -> ml_collections.ConfigDict:
  """experiments/deft.py:tiny (G 2, K 2, stages of 10 steps, 20 steps)."""
  return load_config("experiments/deft.py:tiny")


# (case name, config factory, steps per chunk): configs timed for compile
# only, then DEFT configs (stages longer than a chunk) also checked for
# recompilation.
QUICK_CONFIGS = (("beta_vae tiny", lambda: load_config("experiments/beta_vae.py:tiny"), 5),)
QUICK_DEFT = (("deft tiny", tiny_deft_config, 4),)
FULL_CONFIGS = QUICK_CONFIGS + (
    ("beta_vae cpu", lambda: load_config("experiments/beta_vae.py:cpu"), 10),)
FULL_DEFT = QUICK_DEFT + (("deft cpu", lambda: load_config("experiments/deft.py:cpu"), 150),)


def chunk_inputs(exp: Experiment) -> tuple:
  """(chunk, state, hparams, keys) of a freshly built experiment."""
  chunk = trainer.make_train_chunk(exp)
  state = train_state.init_state(exp)
  hparams = {k: jnp.asarray(v) for k, v in exp.members.hparams.items()}
  return chunk, state, hparams, exp.members.keys()


def run_chunk(chunk: Callable, state: train_state.TrainState,
              hparams: dict[str, jax.Array], keys: jax.Array,
              num_steps: int) -> tuple[train_state.TrainState, Any, float]:
  """(new state, metrics as numpy, wall seconds) of one chunk."""
  start = time.perf_counter()
  state, metrics = chunk(state, hparams, keys, num_steps)
  jax.block_until_ready((state, metrics))
  seconds = time.perf_counter() - start
  return state, jax.tree.map(np.asarray, metrics), seconds


def first_chunk(name: str, exp: Experiment, num_steps: int) -> tuple:
  """Compiles and runs the first chunk and a second one, JAX's in-memory
  caches cleared first: (compile Row, its CompileLog, chunk, state,
  hparams, keys, metrics of the two chunks)."""
  jax.clear_caches()
  chunk, state, hparams, keys = chunk_inputs(exp)
  with recorded_compiles() as log:
    state, metrics, first = run_chunk(chunk, state, hparams, keys, num_steps)
  state, metrics2, steady = run_chunk(chunk, state, hparams, keys, num_steps)
  row = Row(
      item="compile",
      case=(f"{name}: train chunk, {len(exp.members)} members, "
            f"{exp.layout.members}/{exp.layout.loop}"),
      disentax=sum(log.backend), baseline=None, unit="s (XLA compile)",
      note=(f"{len(log.backend)} programs ({log.cache_hits} loaded from "
            f"the persistent cache), largest "
            f"{max(log.backend, default=0.0):.2f} s; trace "
            f"{sum(log.trace):.2f} s + lower {sum(log.lower):.2f} s; first "
            f"chunk {first:.2f} s vs steady {steady:.2f} s "
            f"({num_steps} steps)"))
  return row, log, chunk, state, hparams, keys, [metrics, metrics2]


def lowered_chunk(config: ml_collections.ConfigDict, num_steps: int) -> str:
  """StableHLO text of `config`'s train chunk with loop 'scan' (one jitted
  program), lowered for abstract state (nothing is compiled)."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.train.loop = "scan"
  exp = build(config)
  chunk = trainer.make_train_chunk(exp)
  layout = train_state.single_device(exp)
  state = train_state.abstract_state(exp, layout)
  hparams = {k: jnp.asarray(v) for k, v in exp.members.hparams.items()}
  return chunk.lower(state, hparams, exp.members.keys(), num_steps).as_text()


def other_pressures(config: ml_collections.ConfigDict
                    ) -> ml_collections.ConfigDict:
  """The DEFT config with every stage pressure doubled and gamma 0.5."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.objective.pressures = tuple(2.0 * p for p in
                                     config.objective.pressures)
  config.objective.gamma = (0.5,)
  return config


def deft_rows(name: str, config: ml_collections.ConfigDict, num_steps: int,
              rebuild: bool = True) -> list[Row]:
  """Compile row of a DEFT `config` (stages at least 2 `num_steps` long),
  then the XLA compilations after its first chunk:

    chunks crossing into stage 1 and running in it (target 0; when
    `num_steps` does not divide the stage length, one chunk switches stage
    inside the program);
    the same chunk with other hyperparameter values (target 0);
    with `rebuild`, the first chunk of a fresh build with other pressures,
    and whether the two builds lower to the same program."""
  exp = build(config)
  row, log, chunk, state, hparams, keys, metrics = first_chunk(
      name, exp, num_steps)
  rows = [row]
  stage_steps = int(config.objective.stage_steps)
  stages = [float(m["stage"].mean()) for m in metrics]
  with recorded_compiles() as crossing:
    # Two chunks ran in first_chunk; run on into stage 1.
    for _ in range(max(1, 2 * (stage_steps - num_steps) // num_steps)):
      state, metrics, _ = run_chunk(chunk, state, hparams, keys, num_steps)
      stages.append(float(metrics["stage"].mean()))
  rows.append(Row(
      "compile", f"{name}: chunks crossing stage 0 -> 1 (stages of "
      f"{stage_steps} steps, chunks of {num_steps})",
      float(crossing.programs), None,
      "XLA compilations after the first chunk", target="0",
      note="chunk-mean stage of each chunk: " + ", ".join(
          f"{s:g}" for s in stages)))
  other = {k: (2.0 * v if k == "pressures" else v + 0.25)
           for k, v in hparams.items()}
  with recorded_compiles() as new_values:
    run_chunk(chunk, state, other, keys, num_steps)
  rows.append(Row(
      "compile", f"{name}: same chunk, other hyperparameter values "
      f"({', '.join(sorted(hparams))} changed)",
      float(new_values.programs), None, "XLA compilations", target="0"))
  if rebuild:
    second = other_pressures(config)
    inputs = chunk_inputs(build(second))
    with recorded_compiles() as rebuilt:
      run_chunk(*inputs, num_steps)
    same = lowered_chunk(config, num_steps) == lowered_chunk(second,
                                                             num_steps)
    rows.append(Row(
        "compile", f"{name}: fresh build with other pressures and gamma",
        float(rebuilt.programs), None, "XLA compilations",
        note=(f"as many as the first chunk ({log.programs}): new jitted "
              "closures compile again in-process; the two builds' programs "
              "(lowered, loop scan) are "
              + ("identical, so the persistent compilation cache serves "
                 "the second" if same else "DIFFERENT"))))
  return rows


def compile_rows(name: str, config: ml_collections.ConfigDict,
                 num_steps: int) -> list[Row]:
  """Compile seconds of one config's train chunk (all its programs)."""
  return [first_chunk(name, build(config), num_steps)[0]]


def measure_configs(configs: Sequence[tuple], deft_configs: Sequence[tuple],
                    rebuild: bool = True) -> list[Row]:
  """Compile rows of `configs` and `deft_configs` ((name, config factory,
  steps per chunk) each), and the recompilation rows of the DEFT ones,
  with the persistent compilation cache off."""
  rows = []
  with without_persistent_cache():
    for name, make_config, num_steps in configs:
      rows += compile_rows(name, make_config(), num_steps)
    for name, make_config, num_steps in deft_configs:
      rows += deft_rows(name, make_config(), num_steps, rebuild)
  return rows


def measure(quick: bool) -> list[Row]:
  """The tiny configs, or also the cpu presets (full)."""
  if quick:
    return measure_configs(QUICK_CONFIGS, QUICK_DEFT)
  return measure_configs(FULL_CONFIGS, FULL_DEFT)
