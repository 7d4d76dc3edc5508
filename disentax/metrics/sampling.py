"""Sampling and encoding for the metrics: factor tuples drawn uniformly
from the grid, rendered by the dataset's jitted programs, and encoded for all
members at once in fixed-size batches.

`representation_fn` maps observations [b, H, W, C] to codes [members, b, d]
(the vmapped encoder means of every member), and these helpers keep that
leading members axis throughout.  `sample_representation` is the other
representation disentanglement_lib's postprocessing offers: one draw from
the posterior instead of its mean.
"""

from __future__ import annotations

import functools
import itertools
from typing import TYPE_CHECKING, Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np

from disentax.metrics.base import RepresentationFn

if TYPE_CHECKING:  # only for annotations; keeps metrics free of dataset imports
  from disentax.data.base import GroundTruthDataset


@functools.lru_cache(maxsize=64)
def jitted_dataset(dataset: GroundTruthDataset
                   ) -> tuple[Callable[..., jax.Array], Callable[..., jax.Array]]:
  """(sample_factors(rng, num), observations_from_factors(factors)) of a
  dataset, jitted once per dataset object, so each metric call reuses the
  compiled programs instead of tracing fresh wrappers."""
  # Metrics score on the uniform grid even when training samples a biased
  # joint.
  return (jax.jit(dataset.sample_uniform_factors, static_argnums=1),
          jax.jit(dataset.observations_from_factors))


def map_in_batches(fn: Callable[[jax.Array], jax.Array | tuple],
                   observations_fn: Callable[[np.ndarray], jax.Array],
                   factors: np.ndarray, batch_size: int,
                   where: str = "metric"):
  """Applies `fn` to the observations of `factors` [n, F], `batch_size` rows
  at a time, and concatenates along axis 1 (the point axis after members).

  `fn` is always called with exactly `batch_size` observations (the last
  batch is padded with copies of valid rows and trimmed), so a jitted
  encoder compiles once.  `fn` may return an array or a tuple of arrays,
  each [members, batch_size, ...]; the result has the same structure with
  [members, n, ...] numpy arrays.
  """
  factors = np.asarray(factors)
  n = factors.shape[0]
  if n < 1:
    raise ValueError(f"{where}: no points to encode")
  pieces = []
  for start in range(0, n, batch_size):
    batch = factors[start:start + batch_size]
    size = batch.shape[0]
    if size < batch_size:
      batch = np.concatenate([batch, np.repeat(batch[:1], batch_size - size,
                                               axis=0)])
    out = jax.tree.map(np.asarray, fn(observations_fn(batch)))
    for leaf in jax.tree.leaves(out):
      if leaf.ndim < 2 or leaf.shape[1] != batch_size:
        raise ValueError(
            f"{where}: expected arrays [members, {batch_size}, ...] for "
            f"{batch_size} observations, got shape {leaf.shape}")
    pieces.append(jax.tree.map(lambda x, size=size: x[:, :size], out))
  return jax.tree.map(lambda *xs: np.concatenate(xs, axis=1), *pieces)


def encode_factors(dataset: GroundTruthDataset,
                   representation_fn: RepresentationFn, factors: np.ndarray,
                   batch_size: int, where: str = "metric") -> np.ndarray:
  """Codes [members, n, d] of the observations of `factors` [n, F]."""
  render = jitted_dataset(dataset)[1]
  codes = map_in_batches(representation_fn, render, factors, batch_size,
                         where)
  if not isinstance(codes, np.ndarray) or codes.ndim != 3:
    raise ValueError(f"{where}: representation_fn must return codes "
                     f"[members, b, d], got {jax.tree.map(np.shape, codes)}")
  return codes


# Draws are made at least this large, and in powers of two above it.
MIN_DRAW = 4096


def draw_size(num_points: int) -> int:
  """The size of the draw whose first `num_points` rows are returned: the
  next power of two, at least MIN_DRAW."""
  return max(MIN_DRAW, 1 << max(num_points - 1, 0).bit_length())


def sample_factors(dataset: GroundTruthDataset, rng: jax.Array,
                   num_points: int) -> np.ndarray:
  """`num_points` factor tuples drawn uniformly from the grid.

  Every dataset's sampler draws each row from the key and the row's index
  alone (JAX's default, partitionable threefry), so the first `num_points`
  rows of a `draw_size(num_points)` draw are exactly the draw of
  `num_points` (tested per sampler).  The jitted sampler then compiles
  once per power of two, not once per metric's point count (seven sizes,
  ~0.65 s each on a 2-core CPU, in one evaluation of the battery)."""
  drawn = jitted_dataset(dataset)[0](rng, draw_size(num_points))
  factors = np.asarray(drawn)[:num_points]  # a host slice: no compile
  chex.assert_shape(factors, (num_points, dataset.num_factors))
  return factors


def sample_codes(dataset: GroundTruthDataset,
                 representation_fn: RepresentationFn, rng: jax.Array,
                 num_points: int, batch_size: int, where: str = "metric"
                 ) -> tuple[np.ndarray, np.ndarray]:
  """Uniformly sampled factors [n, F] and every member's codes [M, n, d] (the
  same points for all members)."""
  factors = sample_factors(dataset, rng, num_points)
  return factors, encode_factors(dataset, representation_fn, factors,
                                 batch_size, where)


def sample_representation(mean: jax.Array, logvar: jax.Array,
                          key: jax.Array) -> jax.Array:
  """dlib's `sampled_representation`: z = mean + exp(logvar / 2) * eps,
  eps ~ N(0, I) drawn from `key` in the shape and dtype of `mean`."""
  noise = jax.random.normal(key, jnp.shape(mean), jnp.result_type(mean))
  return mean + jnp.exp(logvar / 2) * noise


@jax.jit
def _sample_members(mean: jax.Array, logvar: jax.Array, key: jax.Array,
                    call: jax.Array) -> jax.Array:
  """`sample_representation` of every member of mean, logvar [M, b, d];
  member m's noise from fold_in(fold_in(key, call), m)."""
  call_key = jax.random.fold_in(key, call)
  keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(
      call_key, jnp.arange(mean.shape[0]))
  return jax.vmap(sample_representation)(mean, logvar, keys)


def sampled_representation_fn(
    posterior_fn: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
    key: jax.Array) -> RepresentationFn:
  """The sampled representation of every member: observations -> codes
  [M, b, d] drawn from `posterior_fn`'s (mean, logvar) [M, b, d].

  Call c of the returned function draws member m's noise from
  fold_in(fold_in(key, c), m): a metric's scores are reproducible from
  `key`, a member's noise does not depend on how many members share the
  call, and every call draws afresh (dlib draws at every encoder call), so
  a fresh function per scored metric gives it the same noise whatever was
  scored before.
  """
  calls = itertools.count()

  def representation(observations: jax.Array) -> jax.Array:
    mean, logvar = posterior_fn(observations)
    return _sample_members(mean, logvar, key, next(calls))

  return representation
