"""Information freezing points (IFP) read off the training-time trace.

The annealing test (DEFT journal 4.1, 5.2) trains while beta is annealed
down; a member's IFP is the largest beta at which its KL (an upper bound of
I(x; z)) exceeds `threshold` (`disentax.ifp.freezing_points`).  The (beta,
KL) curve is the trace of the `loss_terms` evaluator, scored every
`config.eval.trace_every` steps during training, so the IFP's resolution is
part of the run's config (and its hash).  Members trained on the whole
dataset (the annealing test's `factor` -1, or any run without that
hyperparameter) also get the change points of the information increment,
the unsupervised variant (journal 5.5, Fig. 13): `change_point_<i>`, largest
beta first, NaN where fewer were found.

A NaN IFP means the KL never rose above the threshold: an outcome, not a
broken member (`nan_is_outcome`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import numpy as np

from disentax import ifp
from disentax.metrics import METRICS
from disentax.metrics.base import Metric, TrainedMembers

# The annealing test's hyperparameter naming the factor a member varies
# (-1: the whole dataset; objectives/annealing_test.py).
FACTOR = "factor"


@METRICS.register("ifp")
@dataclasses.dataclass(frozen=True)
class InformationFreezingPoints(Metric):
  """Every member's IFP from its traced (beta, KL) curve.

  Options: `threshold` (the journal's 0.1: "I(x; z) is over 0.1") and
  `num_change_points` (change points reported for whole-dataset members).
  Needs `config.eval.trace` to include `loss_terms` (its `beta` and `kl`).
  """

  name: ClassVar[str] = "ifp"
  supervised: ClassVar[bool] = False
  needs: ClassVar[tuple[str, ...]] = ("trace",)
  reads_trace: ClassVar[tuple[str, ...]] = ("beta", "kl")
  nan_is_outcome: ClassVar[bool] = True
  int_fields = {"num_change_points": 0}

  threshold: float = ifp.DEFAULT_THRESHOLD
  num_change_points: int = 3

  def check(self) -> None:
    if (isinstance(self.threshold, bool)
        or not isinstance(self.threshold, (int, float))
        or not math.isfinite(self.threshold) or self.threshold <= 0):
      raise ValueError(f"ifp: threshold must be a finite number > 0, got "
                       f"{self.threshold!r}")

  def score(self, members: TrainedMembers,
            rng: jax.Array) -> dict[str, np.ndarray]:
    del rng  # a read-out of the trace: nothing is drawn
    members.require(self.name, *self.needs)
    missing = [n for n in self.reads_trace if n not in members.trace]
    if missing or not len(members.trace["step"]):
      raise ValueError(
          f"ifp reads the training-time trace's {list(self.reads_trace)}, "
          f"which this run's trace lacks ({missing or 'no trace points'}): "
          "train with config.eval.trace including 'loss_terms' and "
          "config.eval.trace_every > 0")
    betas = np.asarray(members.trace["beta"], np.float64)  # [T, M]
    kls = np.asarray(members.trace["kl"], np.float64)
    scores = {"ifp": ifp.freezing_points(betas, kls, self.threshold)}
    factors = (members.hparams or {}).get(FACTOR)
    whole = (np.ones(kls.shape[1], bool) if factors is None
             else np.asarray(factors) < 0)
    if not whole.any() or not self.num_change_points:
      return scores
    points = np.full((self.num_change_points, kls.shape[1]), np.nan)
    for m in np.flatnonzero(whole):
      positive = (betas[:, m] > 0) & np.isfinite(kls[:, m])
      found = ifp.increment_change_points(
          betas[positive, m], kls[positive, m], self.num_change_points)
      points[:len(found), m] = found
    scores.update({f"change_point_{i}": points[i]
                   for i in range(self.num_change_points)})
    return scores
