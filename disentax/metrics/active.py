"""Number of active latents (Burda et al., 2016, "Importance Weighted
Autoencoders", section 5.2).

A latent u is *active* when its activity A_u = Var_x(E_{q(u|x)}[u]) exceeds a
threshold (0.01 in the paper): the encoder mean of an inactive latent hardly
moves with the input, so the decoder cannot read anything from it (it has
collapsed to the prior).  The count tells how many of the d latents a model
actually uses, which a disentanglement score alone does not.

Pure JAX on one member's codes, vmapped over the members axis in one jit.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, ClassVar

import chex
import jax
import jax.numpy as jnp
import numpy as np

from disentax.metrics import METRICS
from disentax.metrics.base import Metric, RepresentationFn, check_int
from disentax.metrics.sampling import sample_codes

if TYPE_CHECKING:  # only for annotations; keeps metrics free of dataset imports
  from disentax.data.base import GroundTruthDataset


def check_threshold(metric: str, name: str, value: float) -> None:
  """Raises a ValueError unless `value` is a finite real number >= 0."""
  if (isinstance(value, bool) or not isinstance(value, (int, float,
                                                        np.integer,
                                                        np.floating))
      or not math.isfinite(value) or value < 0):
    raise ValueError(f"{metric}: {name} must be a finite number >= 0, "
                     f"got {value!r}")


@jax.jit
def latent_activity(codes: jax.Array) -> jax.Array:
  """Activity [d] of codes [n, d]: the sample variance (ddof 1) of every
  latent's encoder mean over the points; NaN when a code is not finite."""
  chex.assert_rank(codes, 2)
  n = codes.shape[0]
  centred = codes - jnp.mean(codes, axis=0, keepdims=True)
  return jnp.sum(jnp.square(centred), axis=0) / max(n - 1, 1)


@jax.jit
def active_latent_scores(codes: jax.Array,
                         threshold: jax.Array | float = 0.01
                         ) -> dict[str, jax.Array]:
  """{"active_latents": scalar count (float; NaN for a non-finite member),
  "latent_activity": [d]} of one member's codes [n, d]."""
  activity = latent_activity(codes)
  finite = jnp.all(jnp.isfinite(codes))
  count = jnp.sum(activity > threshold).astype(jnp.float32)
  return {"active_latents": jnp.where(finite, count, jnp.nan),
          "latent_activity": jnp.where(finite, activity, jnp.nan)}


@jax.jit
def _score_members(codes: jax.Array, threshold: jax.Array
                   ) -> dict[str, jax.Array]:
  """`active_latent_scores` of every member, codes [members, n, d]."""
  return jax.vmap(active_latent_scores, in_axes=(0, None))(codes, threshold)


@METRICS.register("active_latents")
@dataclasses.dataclass(frozen=True)
class ActiveLatents(Metric):
  """Active-latent count of all members at once.

  Attributes:
    num_points: uniformly sampled observations the activity is measured on.
    threshold: a latent is active when the variance of its mean exceeds it
      (Burda et al.: 0.01).
    batch_size: observations per `representation_fn` call.
  """

  supervised: ClassVar[bool] = False  # needs no ground-truth factors
  name = "active_latents"
  int_fields = {"num_points": 2}  # batch_size after threshold: `check`

  num_points: int = 10000
  threshold: float = 0.01
  batch_size: int = 1000

  def check(self):
    check_threshold(self.name, "threshold", self.threshold)
    check_int(self.name, "batch_size", self.batch_size, 1)

  def evaluate(self, dataset: GroundTruthDataset,
               representation_fn: RepresentationFn,
               rng: jax.Array) -> dict[str, np.ndarray]:
    """Counts, per member, the latents whose mean varies by more than
    `threshold` (variance) over `num_points` uniformly sampled observations.

    Returns:
      {"active_latents": [members] float counts,
       "latent_activity": [members, d]} as numpy.
    """
    _, codes = sample_codes(dataset, representation_fn, rng, self.num_points,
                            self.batch_size, "active_latents")
    scores = _score_members(codes, jnp.float32(self.threshold))
    chex.assert_shape(scores["active_latents"], (codes.shape[0],))
    chex.assert_shape(scores["latent_activity"], codes.shape[::2])
    return {name: np.asarray(value) for name, value in scores.items()}
