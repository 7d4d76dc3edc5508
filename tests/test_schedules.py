"""Known values of the shared schedules, evaluated with a traced step (so a
schedule change is data in one compiled program, never a recompile)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from disentax import schedules


def traced(fn):
  return jax.jit(lambda step: fn(step))


def test_stage_index_and_piecewise():
  index = traced(lambda s: schedules.stage_index(s, [10, 20, 30]))
  assert [int(index(s)) for s in (0, 9, 10, 19, 20, 30, 99)] == [
      0, 0, 1, 1, 2, 3, 3]
  betas = traced(lambda s: schedules.piecewise(s, [10, 20, 30],
                                               jnp.array([70., 30., 12., 1.])))
  assert [float(betas(s)) for s in (0, 10, 25, 31)] == [70, 30, 12, 1]
  with pytest.raises(ValueError, match="one more value than boundaries"):
    schedules.piecewise(0, [10, 20], [1.0, 2.0])


def test_stage_index_every_caps_at_the_last_stage():
  stage = traced(lambda s: schedules.stage_index_every(s, 20_000, 10))
  assert [int(stage(s)) for s in (0, 19_999, 20_000, 180_000, 300_000)] == [
      0, 0, 1, 9, 9]


def test_linear_and_exponential():
  ramp = traced(lambda s: schedules.linear(s, 200.0, 1.0, 100, 300))
  # float32: the end value is reached to ~200 * 2^-24 per operation.
  np.testing.assert_allclose([float(ramp(s)) for s in (0, 100, 200, 300, 900)],
                             [200.0, 200.0, 100.5, 1.0, 1.0], atol=1e-4)
  with pytest.raises(ValueError, match="end_step=5 must be > begin_step=5"):
    schedules.linear(0, 1.0, 0.0, 5, 5)
  decay = traced(lambda s: schedules.exponential(s, 70.0, 0.5, 1000, end=10.))
  np.testing.assert_allclose(
      [float(decay(s)) for s in (0, 1000, 1500, 2000, 5000)],
      [70.0, 35.0, 70.0 * 0.5 ** 1.5, 17.5, 10.0], rtol=1e-5)
