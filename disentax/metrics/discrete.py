"""Discrete information measures shared by the information-based metrics.

Equal-width histogram discretisation of codes and the plug-in (empirical)
mutual information and entropy of discrete columns, following
disentanglement_lib's `discretize` / `discrete_mutual_info` /
`discrete_entropy`, so MIG, modularity, NMI and the mean pairwise MI give
numbers comparable with published tables. Pure JAX on one member's arrays:
vmap over a leading members axis to score a sweep.
"""

from __future__ import annotations

import functools
from typing import Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np

Sizes = int | Sequence[int]


@functools.partial(jax.jit, static_argnames="num_bins")
def discretize(codes: jax.Array, num_bins: int) -> jax.Array:
  """Equal-width histogram bin of every code, per latent: int32 [n, d].

  Each latent (column) gets `num_bins` equal-width bins between its own min
  and max over the n points, exactly like disentanglement_lib's
  `np.digitize(x, np.histogram(x, num_bins)[1][:-1]) - 1`: the max lands in
  the last bin, and a constant latent (min == max) uses numpy's widened range
  [x - 0.5, x + 0.5] so all its points fall into a single bin. Bins are
  needed because MI is estimated from empirical discrete distributions.
  """
  chex.assert_rank(codes, 2)
  if num_bins < 1:
    raise ValueError(f"num_bins must be >= 1, got {num_bins}")
  codes = jnp.asarray(codes)
  if not jnp.issubdtype(codes.dtype, jnp.floating):
    codes = codes.astype(jnp.float32)
  lo = jnp.min(codes, axis=0)
  hi = jnp.max(codes, axis=0)
  constant = lo == hi
  lo = jnp.where(constant, lo - 0.5, lo)
  hi = jnp.where(constant, hi + 0.5, hi)
  # Left edges of the bins, [num_bins, d]; edge 0 is exactly the minimum.
  fractions = jnp.arange(num_bins, dtype=codes.dtype)[:, None] / num_bins
  left_edges = lo[None, :] + (hi - lo)[None, :] * fractions
  # Bin = number of left edges <= x, minus one (np.digitize semantics).
  bins = jnp.sum(codes[:, None, :] >= left_edges[None, :, :], axis=1) - 1
  return bins.astype(jnp.int32)


def _max_size(sizes: Sizes) -> int:
  """Number of one-hot classes needed for values in [0, size) per column."""
  if isinstance(sizes, (int, np.integer)):
    size = int(sizes)
  else:
    sizes = [int(s) for s in sizes]
    if not sizes:
      raise ValueError("sizes must not be empty")
    size = max(sizes)
  if size < 1:
    raise ValueError(f"sizes must be >= 1, got {sizes}")
  return size


def _xlogy_ratio(count: jax.Array, numerator: jax.Array,
                 denominator: jax.Array) -> jax.Array:
  """count * log(numerator / denominator), with 0 where count == 0.

  Taking the log of a ratio of integer counts (rather than a difference of
  logs) makes exactly independent tables give exactly 0.
  """
  positive = count > 0
  ratio = jnp.where(positive, numerator / jnp.where(positive, denominator, 1),
                    1)
  return jnp.where(positive, count * jnp.log(ratio), 0)


def _static_sizes(sizes: Sizes) -> int | tuple[int, ...]:
  """Sizes as a hashable value, so they can be static arguments of jit."""
  if isinstance(sizes, (int, np.integer)):
    return int(sizes)
  return tuple(int(s) for s in sizes)


def discrete_mutual_info(a: jax.Array, b: jax.Array, a_sizes: Sizes,
                         b_sizes: Sizes) -> jax.Array:
  """Mutual information in nats between every column of `a` and of `b`.

  Args:
    a: int [n, d] discrete values, column i in [0, a_sizes[i]) (e.g. latent
      bins, `a_sizes = num_bins`).
    b: int [n, f] discrete values, column j in [0, b_sizes[j]) (e.g. factors).
    a_sizes, b_sizes: one size for all columns or one per column; static
      Python ints (they fix the one-hot widths).

  Returns:
    float [d, f]: I(a_i; b_j) of the empirical joint distribution (plug-in
    estimator, as sklearn's `mutual_info_score`). Values outside their range
    are not counted, so keep them in range.
  """
  return _discrete_mutual_info(a, b, _static_sizes(a_sizes),
                               _static_sizes(b_sizes))


@functools.partial(jax.jit, static_argnums=(2, 3))
def _discrete_mutual_info(a: jax.Array, b: jax.Array, a_sizes: Sizes,
                          b_sizes: Sizes) -> jax.Array:
  chex.assert_rank([a, b], 2)
  chex.assert_equal_shape_prefix([a, b], 1)
  n = a.shape[0]
  ka, kb = _max_size(a_sizes), _max_size(b_sizes)
  one_hot_a = jax.nn.one_hot(a, ka, dtype=jnp.float32)  # [n, d, ka]
  one_hot_b = jax.nn.one_hot(b, kb, dtype=jnp.float32)  # [n, f, kb]
  # Joint counts for all (latent, factor) pairs as one matmul over points.
  joint = jnp.einsum("ndi,nfj->dfij", one_hot_a, one_hot_b,
                     precision=jax.lax.Precision.HIGHEST)  # [d, f, ka, kb]
  count_a = jnp.sum(one_hot_a, axis=0)  # [d, ka]
  count_b = jnp.sum(one_hot_b, axis=0)  # [f, kb]
  total = jnp.float32(n)
  outer = count_a[:, None, :, None] * count_b[None, :, None, :]
  terms = _xlogy_ratio(joint, joint * total, outer)
  mi = jnp.sum(terms, axis=(2, 3)) / total
  chex.assert_shape(mi, (a.shape[1], b.shape[1]))
  return mi


def discrete_entropy(b: jax.Array, sizes: Sizes) -> jax.Array:
  """Entropy in nats of every column of int `b` [n, f]: float [f].

  Equals `discrete_mutual_info(b, b)` on the diagonal (the normaliser of
  MIG), computed directly from the marginal counts.
  """
  return _discrete_entropy(b, _static_sizes(sizes))


@functools.partial(jax.jit, static_argnums=1)
def _discrete_entropy(b: jax.Array, sizes: Sizes) -> jax.Array:
  chex.assert_rank(b, 2)
  n = b.shape[0]
  counts = jnp.sum(jax.nn.one_hot(b, _max_size(sizes), dtype=jnp.float32),
                   axis=0)  # [f, k]
  total = jnp.float32(n)
  entropy = -jnp.sum(_xlogy_ratio(counts, counts, total), axis=1) / total
  chex.assert_shape(entropy, (b.shape[1],))
  return entropy
