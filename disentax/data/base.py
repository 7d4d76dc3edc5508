"""The ground-truth dataset interface every dataset implements.

A ground-truth dataset is a full factorial grid of discrete factors of
variation plus a deterministic map from a factor tuple to an observation.
Metrics and training only talk to this interface, so they never care which
dataset they score.

Both `sample_factors` and `observations_from_factors` are pure JAX functions:
training calls them *inside* the jitted, vmapped step (each seed draws its own
batch on the device, so producing data never costs a host round trip), and
evaluation calls them the same way.
"""

from __future__ import annotations

import abc
import math
from typing import Iterator, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np


class Batch(NamedTuple):
  factors: np.ndarray       # [batch, num_factors] int32 factor indices
  observations: np.ndarray  # [batch, height, width, channels] float32 in [0, 1]


class GroundTruthDataset(abc.ABC):
  """A factorial grid of factors with a deterministic observation per tuple."""

  name: str
  factor_names: tuple[str, ...]
  factor_sizes: tuple[int, ...]
  observation_shape: tuple[int, int, int]  # (height, width, channels)
  # False for image collections without ground truth (3D Chairs, CelebA):
  # their one "factor" is the image index, so only the unsupervised metrics
  # mean anything.
  labelled: bool = True
  # True when disentax renders the images itself in place of a dataset that
  # was published as files (procedural dSprites and its variants, the
  # procedural Shapes3D room): scores on it are not comparable to published
  # numbers on the original files, and the reports say so.
  procedural: bool = False

  @property
  def num_factors(self) -> int:
    return len(self.factor_sizes)

  @property
  def num_points(self) -> int:
    """Number of distinct factor tuples (the dataset size)."""
    return math.prod(self.factor_sizes)

  def sample_factors(self, rng: jax.Array, num: int) -> jax.Array:
    """Factor indices drawn uniformly from the grid, int32 [num, num_factors]."""
    keys = jax.random.split(rng, self.num_factors)
    columns = [jax.random.randint(k, (num,), 0, size, dtype=jnp.int32)
               for k, size in zip(keys, self.factor_sizes)]
    return jnp.stack(columns, axis=1)

  def sample_uniform_factors(self, rng: jax.Array, num: int) -> jax.Array:
    """What evaluation draws from: the uniform grid, even where training
    samples a biased joint (`disentax.data.correlated` overrides
    `sample_factors` and keeps this).  Rows depend on the key and their
    index alone, so the first rows of a larger draw equal a smaller draw
    (metrics rely on it, `sampling.sample_factors`)."""
    return self.sample_factors(rng, num)

  @abc.abstractmethod
  def observations_from_factors(self, factors: jax.Array) -> jax.Array:
    """Observations for factor indices [num, num_factors]: float32
    [num, *observation_shape] in [0, 1]. Deterministic and traceable."""

  def sample(self, rng: jax.Array, num: int) -> tuple[jax.Array, jax.Array]:
    """Uniformly drawn (factors, observations)."""
    factors = self.sample_factors(rng, num)
    observations = self.observations_from_factors(factors)
    chex.assert_shape(observations, (num, *self.observation_shape))
    return factors, observations

  def sample_varying_one_factor(self, base_rng: jax.Array, rng: jax.Array,
                                factor: jax.Array, num: int
                                ) -> tuple[jax.Array, jax.Array]:
    """A batch of the sub-dataset in which only factor `factor` varies
    (uniformly over all its values) and every other factor keeps one value
    drawn from `base_rng` (DEFT's per-factor annealing test).  `factor` may
    be traced; a negative `factor` samples the whole dataset."""
    base = self.sample_factors(base_rng, 1)
    varied = self.sample_factors(rng, num)
    free = (jnp.arange(self.num_factors) == factor) | (factor < 0)
    factors = jnp.where(free[None, :], varied, base)
    return factors, self.observations_from_factors(factors)

  def index_from_factors(self, factors: jax.Array) -> jax.Array:
    """Row-major position of each factor tuple in the full grid."""
    return jnp.ravel_multi_index(tuple(jnp.asarray(factors).T),
                                 self.factor_sizes, mode="clip")

  def factors_from_index(self, index: jax.Array) -> jax.Array:
    """Inverse of `index_from_factors`."""
    return jnp.stack(jnp.unravel_index(jnp.asarray(index), self.factor_sizes),
                     axis=-1).astype(jnp.int32)

  def batches(self, seed: int, batch_size: int,
              num_batches: int | None = None) -> Iterator[Batch]:
    """Host iterator of uniformly sampled batches (for notebooks and tools;
    training samples inside its jitted step instead)."""
    sample = jax.jit(self.sample, static_argnums=1)
    rng = jax.random.key(seed)
    step = 0
    while num_batches is None or step < num_batches:
      factors, observations = sample(jax.random.fold_in(rng, step), batch_size)
      yield Batch(np.asarray(factors), np.asarray(observations))
      step += 1
