"""The objective's loss terms of every member, on held-out batches.

The training curves in metrics.jsonl are means over each chunk's training
batches; this evaluator scores the objective's loss and its terms
(reconstruction, KL, the current beta or pressure, ...) at one step, on
`num_points` observations drawn with the evaluation key from each member's
own training distribution (its batch sampler, e.g. the annealing test's
one-factor sub-datasets).  Traced during training (`config.eval.trace`) it
gives the curves the IFP is read from (`ifp`).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import numpy as np

from disentax.metrics import METRICS
from disentax.metrics.base import Metric, TrainedMembers


@METRICS.register("loss_terms")
@dataclasses.dataclass(frozen=True)
class LossTerms(Metric):
  """Mean loss terms over `num_points` observations per member, drawn
  `batch_size` at a time (`num_points` a multiple of it)."""

  name: ClassVar[str] = "loss_terms"
  supervised: ClassVar[bool] = False
  needs: ClassVar[tuple[str, ...]] = ("loss_terms_fn",)
  int_fields = {"num_points": 1, "batch_size": 1}

  num_points: int = 1000
  batch_size: int = 500

  def check(self) -> None:
    if self.num_points % self.batch_size:
      raise ValueError(
          f"loss_terms: num_points={self.num_points} must be a multiple of "
          f"batch_size={self.batch_size}")

  def score(self, members: TrainedMembers,
            rng: jax.Array) -> dict[str, np.ndarray]:
    members.require(self.name, *self.needs)
    num_batches = self.num_points // self.batch_size
    total = None
    for i in range(num_batches):
      terms = members.loss_terms_fn(jax.random.fold_in(rng, i),
                                    self.batch_size)
      terms = {k: np.asarray(v, np.float64) for k, v in terms.items()}
      total = terms if total is None else {k: total[k] + v
                                           for k, v in terms.items()}
    return {k: (v / num_batches).astype(np.float32) for k, v in total.items()}
