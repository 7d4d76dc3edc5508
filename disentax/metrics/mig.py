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
from typing import TYPE_CHECKING, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np

from disentax.metrics import METRICS
from disentax.metrics.base import Metric, RepresentationFn
from disentax.metrics.sampling import sample_codes
from disentax.metrics.discrete import (_static_sizes, discrete_entropy,
                                         discrete_mutual_info, discretize)

if TYPE_CHECKING:  # only for annotations; keeps metrics free of dataset imports
  from disentax.data.base import GroundTruthDataset

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
    {"mig": scalar, "mig_per_factor": [f], "nmi_matrix": [d, f],
     "nmi1", "nmi2": scalars (means over factors), "nmi1_per_factor",
     "nmi2_per_factor": [f]} where
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
  # NMI(c_k, m): the m-th largest normalised MI of factor k (DEFT papers
  # eq. 8); MIG per factor is NMI1 - NMI2.
  nmi_top = jnp.where(informative[:, None],
                      top2 / jnp.where(informative, entropy, 1)[:, None], 0)
  nmi_means = jnp.sum(nmi_top, axis=0) / jnp.sum(informative)
  return {
      "nmi1": jnp.where(finite, nmi_means[0], jnp.nan),
      "nmi2": jnp.where(finite, nmi_means[1], jnp.nan),
      "nmi1_per_factor": jnp.where(finite, nmi_top[:, 0], jnp.nan),
      "nmi2_per_factor": jnp.where(finite, nmi_top[:, 1], jnp.nan),
      "mig": jnp.where(finite, score, jnp.nan),
      "mig_per_factor": jnp.where(finite, per_factor, jnp.nan),
      "nmi_matrix": jnp.where(finite, nmi, jnp.nan),
  }


@functools.partial(jax.jit, static_argnums=(2, 3))
def score_members(codes: jax.Array, factors: jax.Array,
                   factor_sizes: tuple[int, ...],
                   num_bins: int) -> dict[str, jax.Array]:
  """`mig_score` of every member, codes [members, n, d] (shared factors)."""
  return jax.vmap(lambda c: _mig_score(c, factors, factor_sizes, num_bins))(
      codes)


@METRICS.register("mig")
@dataclasses.dataclass(frozen=True)
class MIG(Metric):
  """The MIG metric over a ground-truth dataset for all members at once.

  Attributes:
    num_points: uniformly sampled factor tuples scored (dlib: 10000).
    num_bins: equal-width histogram bins per latent (dlib: 20).
    batch_size: observations per `representation_fn` call.
  """

  name = "mig"
  int_fields = {"num_points": 2, "num_bins": 2, "batch_size": 1}

  num_points: int = 10000
  num_bins: int = 20
  batch_size: int = 1000

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
    factors, codes = sample_codes(dataset, representation_fn, rng,
                                  self.num_points, self.batch_size, "mig")
    scores = score_members(codes, factors, factor_sizes, self.num_bins)
    members = codes.shape[0]
    chex.assert_shape(scores["mig"], (members,))
    chex.assert_shape(scores["mig_per_factor"], (members, len(factor_sizes)))
    return {name: np.asarray(value) for name, value in scores.items()}
