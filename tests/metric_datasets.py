"""Known-answer fixtures for the metric tests (dlib-google's test setup).

`FactorDataset` renders a factor tuple as itself: the observation of factors
(c_1..c_F) is the float vector (c_1..c_F) shaped [1, 1, F], so a
representation function that flattens observations is the *identity*
representation, the perfectly disentangled code.  The representation
builders stack several members on the leading axis, as the evaluator does.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from disentax.data.base import GroundTruthDataset


class FactorDataset(GroundTruthDataset):
  """Observation = the factor indices themselves, [1, 1, F] float32."""

  name = "factor_identity"

  def __init__(self, factor_sizes: Sequence[int] = (10,) * 10):
    self.factor_sizes = tuple(int(s) for s in factor_sizes)
    self.factor_names = tuple(f"f{i}" for i in range(len(self.factor_sizes)))
    self.observation_shape = (1, 1, len(self.factor_sizes))

  def observations_from_factors(self, factors: jax.Array) -> jax.Array:
    factors = jnp.asarray(factors, jnp.float32)
    return factors.reshape(factors.shape[0], 1, 1, -1)


def flat(observations: jax.Array) -> jax.Array:
  """The identity code [b, F] of FactorDataset observations."""
  return observations.reshape(observations.shape[0], -1)


def identity(x: jax.Array) -> jax.Array:
  return flat(x)


def zeros(x: jax.Array) -> jax.Array:
  return jnp.zeros_like(flat(x))


def permuted(x: jax.Array) -> jax.Array:
  """The identity code with its latents in reverse order (still perfect)."""
  return flat(x)[:, ::-1]


def duplicated(x: jax.Array) -> jax.Array:
  """[z, z]: every factor captured twice (bad MIG, DCI completeness
  about 1 - ln 2 / ln 10 with 10 factors)."""
  return jnp.concatenate([flat(x), flat(x)], axis=1)


def noise_of(x: jax.Array) -> jax.Array:
  """Codes independent of the factors (a deterministic hash of nothing)."""
  key = jax.random.key(7)
  return jax.random.normal(key, flat(x).shape)


def members(*codes: Callable[[jax.Array], jax.Array]
            ) -> Callable[[jax.Array], jax.Array]:
  """A representation function with one member per code function:
  observations [b, ...] -> [len(codes), b, d] (all codes must share d)."""
  return lambda x: jnp.stack([code(x) for code in codes])
