"""Step-indexed schedules shared by every objective (and DEFT's stages).

All are pure functions of a traced `step`, so a stage change or an annealed
value is data inside the compiled program, never a recompile.  Where optax
already has the schedule it is used; what optax lacks (stage indices,
piecewise values by stage) is written here once.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import optax


def stage_index(step: jax.Array, boundaries: Sequence[int]) -> jax.Array:
  """Index of the stage `step` is in: 0 before boundaries[0], i after
  boundaries[i-1] (boundaries ascending; a step equal to a boundary starts
  the next stage)."""
  return jnp.searchsorted(jnp.asarray(boundaries, jnp.int32),
                          jnp.asarray(step, jnp.int32), side="right")


def stage_index_every(step: jax.Array, steps_per_stage: int,
                      num_stages: int) -> jax.Array:
  """min(step // steps_per_stage, num_stages - 1), e.g. CascadeVAE-C's
  min(step // 20000, 9)."""
  return jnp.minimum(jnp.asarray(step) // steps_per_stage, num_stages - 1)


def piecewise(step: jax.Array, boundaries: Sequence[int],
              values: Sequence[float] | jax.Array) -> jax.Array:
  """values[stage_index(step, boundaries)]; len(values) == len(boundaries)+1.
  `values` may be traced (e.g. a per-member beta schedule)."""
  values = jnp.asarray(values)
  if values.shape[0] != len(boundaries) + 1:
    raise ValueError(f"piecewise: {values.shape[0]} values for "
                     f"{len(boundaries)} boundaries; need one more value "
                     "than boundaries")
  return values[stage_index(step, boundaries)]


def linear(step: jax.Array, start: float, end: float, begin_step: int,
           end_step: int) -> jax.Array:
  """start before begin_step, end after end_step, linear in between."""
  if end_step <= begin_step:
    raise ValueError(f"linear schedule: end_step={end_step} must be > "
                     f"begin_step={begin_step}")
  return optax.linear_schedule(start, end, end_step - begin_step,
                               transition_begin=begin_step)(step)


def exponential(step: jax.Array, start: float, rate: float,
                transition_steps: int, end: float | None = None) -> jax.Array:
  """start * rate ** (step / transition_steps), clipped at `end` if given."""
  return optax.exponential_decay(start, transition_steps, rate,
                                 end_value=end)(step)


def staircase(step: jax.Array, start: float, increment: float, period: int,
              maximum: float | jax.Array | None = None,
              ramp_steps: int = 1) -> jax.Array:
  """A value that rises by `increment` once per window of `period` steps.

  `start` during the first window [0, period); from each later window on
  (step >= period) it rises by one more `increment`, spread linearly over
  the window's first `ramp_steps` steps, the window's first step already
  carrying 1/ramp_steps of the rise (ramp_steps 1: a jump at the boundary).
  Clipped at `maximum` (which may be traced, e.g. a per-member C_max).

  ControlVAE's and DynamicVAE's KL set-points C(t) (their references count
  iterations from 1 and raise C before using it, so they pass step + 1).
  """
  if period < 1 or not 1 <= ramp_steps <= period:
    raise ValueError(f"staircase: period={period}, ramp_steps={ramp_steps}; "
                     "need period >= 1 and 1 <= ramp_steps <= period")
  step = jnp.asarray(step, jnp.int32)
  window, offset = step // period, step % period
  partial = jnp.minimum(offset + 1, ramp_steps).astype(jnp.float32) / ramp_steps
  rises = jnp.where(window >= 1, (window - 1).astype(jnp.float32) + partial,
                    0.0)
  value = start + increment * rises
  return value if maximum is None else jnp.minimum(value, maximum)


def exponential_anneal(step: jax.Array, start: float, end: float, rate: float,
                       total_steps: int) -> jax.Array:
  """end + (start - end) * exp(-rate * t), t = min(step / total_steps, 1):
  from `start` toward `end` (dlib-deft's annealing test: 70 exp(-15 t) + 1,
  i.e. start 71, end 1, rate 15)."""
  if total_steps < 1:
    raise ValueError(f"exponential_anneal: total_steps={total_steps}; must "
                     "be >= 1")
  t = jnp.minimum(jnp.asarray(step, jnp.float32) / total_steps, 1.0)
  return end + (start - end) * jnp.exp(-rate * t)
