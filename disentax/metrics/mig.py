"""Mutual Information Gap (MIG; Chen et al., 2018), as in disentanglement_lib.

For every ground-truth factor, MIG takes the mutual information between that
factor and each (histogram-discretised) latent, and measures the gap between
the most and the second most informative latent, normalised by the factor's
entropy. The score is the mean gap over factors: 1 when each factor is
captured by exactly one latent, 0 when no latent (or two equally) carries it.

The math is pure JAX on arrays of one member, so a whole sweep is scored with
`jax.vmap` over a leading `members` axis of the codes inside one `jax.jit`
(no host loop over seeds, no sklearn).  The estimator follows
disentanglement_lib's `discretize` / `discrete_mutual_info` /
`discrete_entropy`, so numbers are comparable with published tables.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Callable, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np

from disentax.metrics import METRICS

if TYPE_CHECKING:  # only for annotations; keeps metrics free of dataset imports
  from disentax.data.base import GroundTruthDataset

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


def mig_score(codes: jax.Array, factors: jax.Array,
              factor_sizes: Sequence[int],
              num_bins: int = 20) -> dict[str, jax.Array]:
  """MIG of one member's codes [n, d] against int factors [n, f].

  disentanglement_lib's definition: discretise each latent into `num_bins`
  equal-width bins, compute the MI matrix [d, f], sort it per factor, and
  average (top1 - top2) / H(factor) over factors.

  Two deliberate edge cases, so a sweep table never reads wrong silently:
  * codes containing NaN/inf (a diverged member) give NaN scores, so the
    member is reported as non-finite rather than as a (meaningless) 0;
  * a factor with zero empirical entropy (e.g. a size-1 factor such as
    dSprites' colour) has no information to capture: its per-factor score is
    0 and it is left out of the mean (disentanglement_lib would give NaN).

  `factor_sizes` and `num_bins` are static; jit/vmap over codes (and factors)
  with them bound, e.g.
  `jax.vmap(functools.partial(mig_score, factor_sizes=s), in_axes=(0, None))`.

  With a single latent there is no runner-up: the gap is to 0 (MIG equals
  NMI1), e.g. for the annealing test's one-latent models.

  Returns:
    {"mig": scalar, "mig_per_factor": [f], "nmi_matrix": [d, f]} where
    nmi_matrix[j, k] = I(z_j; c_k) / H(c_k) (DEFT papers eq. 7; 0 for a
    factor without entropy).
  """
  return _mig_score(codes, factors, _static_sizes(factor_sizes), num_bins)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _mig_score(codes: jax.Array, factors: jax.Array,
               factor_sizes: tuple[int, ...],
               num_bins: int) -> dict[str, jax.Array]:
  chex.assert_rank([codes, factors], 2)
  chex.assert_equal_shape_prefix([codes, factors], 1)
  chex.assert_axis_dimension(factors, 1, len(factor_sizes))
  if num_bins < 2:
    raise ValueError(f"num_bins must be >= 2, got {num_bins}")
  bins = discretize(codes, num_bins)
  mi = discrete_mutual_info(bins, factors, num_bins, factor_sizes)  # [d, f]
  entropy = discrete_entropy(factors, factor_sizes)  # [f]
  # One latent: no runner-up, its MI counts as 0 (MIG = NMI1).
  padded = jnp.concatenate([mi, jnp.zeros((1, mi.shape[1]), mi.dtype)])
  top2 = jax.lax.top_k(padded.T, 2)[0]  # [f, 2], descending
  informative = entropy > 0
  per_factor = jnp.where(
      informative, (top2[:, 0] - top2[:, 1]) / jnp.where(informative,
                                                         entropy, 1), 0.0)
  score = jnp.sum(per_factor) / jnp.sum(informative)
  finite = jnp.all(jnp.isfinite(codes))
  nmi = mi / jnp.where(informative, entropy, 1.0)
  return {
      "mig": jnp.where(finite, score, jnp.nan),
      "mig_per_factor": jnp.where(finite, per_factor, jnp.nan),
      "nmi_matrix": jnp.where(finite, nmi, jnp.nan),
  }


@functools.partial(jax.jit, static_argnums=(2, 3))
def _score_members(codes: jax.Array, factors: jax.Array,
                   factor_sizes: tuple[int, ...],
                   num_bins: int) -> dict[str, jax.Array]:
  """`mig_score` of every member, codes [members, n, d] (shared factors)."""
  return jax.vmap(lambda c: _mig_score(c, factors, factor_sizes, num_bins))(
      codes)


def _check_int(name: str, value: int, minimum: int) -> None:
  if (not isinstance(value, (int, np.integer)) or isinstance(value, bool)
      or value < minimum):
    raise ValueError(
        f"mig: {name} must be an integer >= {minimum}, got {value!r}")


RepresentationFn = Callable[[jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class MIG:
  """The MIG metric over a ground-truth dataset for all members at once."""

  num_points: int = 10000
  num_bins: int = 20
  batch_size: int = 1000

  def __post_init__(self):
    _check_int("num_points", self.num_points, 2)
    _check_int("num_bins", self.num_bins, 2)
    _check_int("batch_size", self.batch_size, 1)

  def __call__(self, dataset: GroundTruthDataset,
               representation_fn: RepresentationFn,
               rng: jax.Array) -> dict[str, np.ndarray]:
    return self.evaluate(dataset, representation_fn, rng)

  def evaluate(self, dataset: GroundTruthDataset,
               representation_fn: RepresentationFn,
               rng: jax.Array) -> dict[str, np.ndarray]:
    """Scores every member of `representation_fn` on `num_points` samples.

    Args:
      dataset: samples factors and renders observations.
      representation_fn: observations [b, H, W, C] -> codes [members, b, d]
        (e.g. the vmapped encoder means of all members). It is always called
        with exactly `batch_size` observations (the last batch is padded and
        trimmed), so a jitted encoder compiles once.
      rng: PRNG key for the factor sample (the same points for all members).

    Returns:
      {"mig": [members], "mig_per_factor": [members, num_factors],
       "nmi_matrix": [members, d, num_factors]} as numpy.
    """
    factor_sizes = tuple(int(s) for s in dataset.factor_sizes)
    # Jitted: one compile instead of a dispatch (and compile) per eager op.
    factors = np.asarray(jax.jit(dataset.sample_factors, static_argnums=1)(
        rng, self.num_points))
    chex.assert_shape(factors, (self.num_points, len(factor_sizes)))
    render = jax.jit(dataset.observations_from_factors)
    codes = []
    for start in range(0, self.num_points, self.batch_size):
      batch = factors[start:start + self.batch_size]
      size = batch.shape[0]
      if size < self.batch_size:  # pad with valid rows, trimmed below
        batch = np.concatenate(
            [batch, np.zeros((self.batch_size - size, batch.shape[1]),
                             batch.dtype)])
      batch_codes = np.asarray(representation_fn(render(batch)))
      if batch_codes.ndim != 3 or batch_codes.shape[1] != self.batch_size:
        raise ValueError(
            f"mig: representation_fn must return codes [members, "
            f"{self.batch_size}, d] for {self.batch_size} observations, got "
            f"shape {batch_codes.shape}")
      codes.append(batch_codes[:, :size])
    codes = np.concatenate(codes, axis=1)  # [members, num_points, d]
    chex.assert_axis_dimension(codes, 1, self.num_points)
    scores = _score_members(codes, factors, factor_sizes, self.num_bins)
    members = codes.shape[0]
    chex.assert_shape(scores["mig"], (members,))
    chex.assert_shape(scores["mig_per_factor"], (members, len(factor_sizes)))
    return {name: np.asarray(value) for name, value in scores.items()}


@METRICS.register("mig")
def mig(num_points: int = 10000, num_bins: int = 20,
        batch_size: int = 1000) -> MIG:
  """MIG on `num_points` uniformly sampled factor tuples (dlib: 10000, 20
  bins), encoded `batch_size` observations at a time."""
  return MIG(num_points=num_points, num_bins=num_bins, batch_size=batch_size)
