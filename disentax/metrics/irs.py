"""Interventional Robustness Score (IRS; Suter et al., 2019), as in
disentanglement_lib's `irs.py` (`scalable_disentanglement_score`).

For a latent z_j and a factor g_k, IRS asks how much z_j still moves when
g_k is held fixed and every other factor varies.  Points are grouped by the
value of g_k; within each group the deviation of z_j from the group mean
E[z_j | g_k] is summarised by its `diff_quantile` quantile (dlib: 0.99, the
paper's maximum is 1.0), and these are averaged over the groups.  Dividing by
the latent's largest deviation from its overall mean, max |z_j - E[z_j]|,
gives IRS[j, k] = 1 - normalised deviation.  Each latent's score is its best
factor's, and the representation's IRS is their average weighted by the same
max deviations (so nearly constant latents hardly count).  Constant latents
are dropped first; if all are constant IRS is 0.  Factors are discretised as
dlib does, into `num_bins` equal-width histogram bins (a no-op for factors
with at most `num_bins` values).

Pure JAX: one member is scored by `irs_score`, and a sweep by `jax.vmap` over
the members axis inside one `jax.jit` (the factors are looped with
`lax.map` to bound memory).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING

import chex
import jax
import jax.numpy as jnp
import numpy as np

from disentax.metrics import METRICS
from disentax.metrics.discrete import discretize
from disentax.metrics.base import Metric, RepresentationFn
from disentax.metrics.sampling import sample_codes

if TYPE_CHECKING:  # only for annotations; keeps metrics free of dataset imports
  from disentax.data.base import GroundTruthDataset


def _group_deviation(codes: jax.Array, groups: jax.Array, num_groups: int,
                     diff_quantile: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Mean over the observed groups of the `diff_quantile` quantile of
  |z - E[z | group]|, per latent: ([d], number of observed groups).

  Quantiles use numpy's default linear interpolation.  Groups of different
  sizes are handled with static shapes: sort (group, deviation)
  lexicographically, so each group is a contiguous, sorted run, and gather
  the two order statistics around the quantile's position in its run.
  """
  n = codes.shape[0]
  counts = jnp.bincount(groups, length=num_groups)  # [B]
  sums = jax.ops.segment_sum(codes, groups, num_segments=num_groups)  # [B, d]
  means = sums / jnp.maximum(counts, 1)[:, None].astype(codes.dtype)
  deviations = jnp.abs(codes - means[groups])  # [n, d]
  keys = jnp.broadcast_to(groups[:, None], deviations.shape)
  _, ranked = jax.lax.sort((keys, deviations), dimension=0, num_keys=2)
  starts = jnp.cumsum(counts) - counts
  position = diff_quantile * (jnp.maximum(counts, 1) - 1).astype(codes.dtype)
  below = jnp.floor(position)
  fraction = (position - below)[:, None]
  below = below.astype(jnp.int32)
  above = jnp.minimum(below + 1, jnp.maximum(counts, 1) - 1)
  low = ranked[jnp.clip(starts + below, 0, n - 1)]  # [B, d]
  high = ranked[jnp.clip(starts + above, 0, n - 1)]
  quantiles = low + (high - low) * fraction
  observed = counts > 0
  num_observed = jnp.sum(observed)
  mean_quantile = jnp.sum(jnp.where(observed[:, None], quantiles, 0),
                          axis=0) / num_observed
  return mean_quantile, num_observed


def scalable_disentanglement_score(codes: jax.Array, groups: jax.Array,
                                   num_groups: int,
                                   diff_quantile: float = 0.99
                                   ) -> dict[str, jax.Array]:
  """IRS of one member's codes [n, d] against discrete factor groups [n, F].

  dlib's `compute_irs` + `scalable_disentanglement_score`, with static
  shapes: constant latents (max == min) are masked instead of dropped.
  `groups` holds ints in [0, num_groups) (e.g. discretised factors);
  `num_groups` is static.

  Factors with a single observed group carry no intervention and are left
  out of each latent's max over factors (as for dlib's dSprites, which omits
  the size-1 colour factor); if no factor varies, all are used.

  Returns:
    {"irs": scalar (0 when every latent is constant), "irs_active_dims":
     number of non-constant latents, "irs_matrix": [d, F] (NaN rows for
     constant latents), "irs_per_latent": [d], "max_deviations": [d]};
    NaN everywhere for non-finite codes.
  """
  return _scalable_disentanglement_score(codes, groups, num_groups,
                                         jnp.asarray(diff_quantile))


@functools.partial(jax.jit, static_argnums=2)
def _scalable_disentanglement_score(codes: jax.Array, groups: jax.Array,
                                    num_groups: int, diff_quantile: jax.Array
                                    ) -> dict[str, jax.Array]:
  chex.assert_rank([codes, groups], 2)
  chex.assert_equal_shape_prefix([codes, groups], 1)
  codes = jnp.asarray(codes, jnp.float32)
  groups = jnp.asarray(groups, jnp.int32)
  finite = jnp.all(jnp.isfinite(codes))
  codes = jnp.where(finite, codes, 0.0)  # keep the sort NaN-free
  active = jnp.max(codes, axis=0) > jnp.min(codes, axis=0)  # [d]
  max_deviations = jnp.max(jnp.abs(codes - jnp.mean(codes, axis=0)), axis=0)
  deviation, num_observed = jax.lax.map(
      lambda g: _group_deviation(codes, g, num_groups, diff_quantile),
      groups.T)  # [F, d], [F]
  normaliser = jnp.where(active, max_deviations, 1.0)
  irs_matrix = 1.0 - deviation.T / normaliser[:, None]  # [d, F]
  varied = num_observed > 1
  varied = varied | ~jnp.any(varied)
  per_latent = jnp.max(jnp.where(varied[None, :], irs_matrix, -jnp.inf),
                       axis=1)
  weights = jnp.where(active, max_deviations, 0.0)
  any_active = jnp.any(active)
  average = (jnp.sum(jnp.where(active, per_latent, 0.0) * weights)
             / jnp.where(any_active, jnp.sum(weights), 1.0))
  irs = jnp.where(any_active, average, 0.0)
  nan = jnp.nan
  return {
      "irs": jnp.where(finite, irs, nan),
      "irs_active_dims": jnp.where(finite, jnp.sum(active), nan),
      "irs_matrix": jnp.where(finite & active[:, None], irs_matrix, nan),
      "irs_per_latent": jnp.where(finite & active, per_latent, nan),
      "max_deviations": jnp.where(finite, max_deviations, nan),
  }


def irs_score(codes: jax.Array, factors: jax.Array, num_bins: int = 20,
              diff_quantile: float = 0.99) -> dict[str, jax.Array]:
  """IRS of one member's codes [n, d] against int factors [n, F]: the factors
  are discretised into `num_bins` equal-width bins (dlib's histogram
  discretizer, `discretizer.num_bins = 20`), then see
  `scalable_disentanglement_score`."""
  groups = discretize(jnp.asarray(factors, jnp.float32), num_bins)
  return scalable_disentanglement_score(codes, groups, num_bins,
                                        diff_quantile)


@functools.partial(jax.jit, static_argnums=2)
def _score_members(codes: jax.Array, factors: jax.Array, num_bins: int,
                   diff_quantile: jax.Array) -> dict[str, jax.Array]:
  """IRS of every member, codes [members, n, d] (shared factors)."""
  groups = discretize(jnp.asarray(factors, jnp.float32), num_bins)
  return jax.vmap(lambda c: _scalable_disentanglement_score(
      c, groups, num_bins, diff_quantile))(codes)


@METRICS.register("irs")
@dataclasses.dataclass(frozen=True)
class IRS(Metric):
  """The IRS metric over a ground-truth dataset for all members at once.

  Attributes:
    num_train: uniformly sampled points scored (dlib: 10000).
    diff_quantile: quantile of the within-group deviations (dlib: 0.99; the
      paper's maximum is 1.0).
    num_bins: equal-width histogram bins the factors are discretised into
      (dlib: 20).
    batch_size: observations per `representation_fn` call.
  """

  name = "irs"
  int_fields = {"num_train": 2, "num_bins": 2, "batch_size": 1}

  num_train: int = 10000
  diff_quantile: float = 0.99
  num_bins: int = 20
  batch_size: int = 1000

  def check(self):
    quantile = self.diff_quantile
    if (not isinstance(quantile, (int, float, np.integer, np.floating))
        or isinstance(quantile, bool) or not 0.0 <= quantile <= 1.0):
      raise ValueError(f"irs: diff_quantile must be a number in [0, 1] (1.0 "
                       f"is the paper's max), got {quantile!r}")

  def evaluate(self, dataset: GroundTruthDataset,
               representation_fn: RepresentationFn,
               rng: jax.Array) -> dict[str, np.ndarray]:
    """Scores every member on `num_train` uniformly sampled points.

    Args:
      dataset: samples factors and renders observations.
      representation_fn: observations [b, H, W, C] -> codes [members, b, d],
        always called with exactly `batch_size` observations.
      rng: PRNG key of the sample (the same points for all members).

    Returns:
      {"irs": [members], "irs_active_dims": [members]} as numpy; NaN for
      members with non-finite codes.
    """
    factors, codes = sample_codes(dataset, representation_fn, rng,
                                  self.num_train, self.batch_size, "irs")
    scores = _score_members(codes, factors, self.num_bins,
                            jnp.float32(self.diff_quantile))
    members = codes.shape[0]
    result = {"irs": np.asarray(scores["irs"]),
              "irs_active_dims": np.asarray(scores["irs_active_dims"])}
    for value in result.values():
      chex.assert_shape(value, (members,))
    return result
