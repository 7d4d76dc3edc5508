"""Image panels of a few members while training: what the tracking writers
show every `config.log.images_every` steps.

For each member shown -- the first member (lowest seed) of each
hyperparameter group, at most `MAX_SHOWN` -- two panels:

  reconstructions  `NUM_INPUTS` fixed observations (drawn once with the
                   evaluation seed) above the decoder's mean of their
                   posterior means
  traversals       each latent swept from -2 to 2 around the posterior mean
                   of the first of them (`reporting.visualize.traversal_images`,
                   as the evaluation job draws them)

built with the members' functions the trace uses (`MemberFunctions`) and
drawn by `reporting.pictures`.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from disentax.evaluation.members import MemberFunctions, hyperparameter_groups
from disentax.reporting import pictures
from disentax.reporting.visualize import traversal_images

MAX_SHOWN = 6
NUM_INPUTS = 8


def shown_members(groups: np.ndarray, limit: int = MAX_SHOWN) -> list[int]:
  """The first member of each group (groups [M], in order of first
  appearance), at most `limit` of them."""
  _, first = np.unique(np.asarray(groups), return_index=True)
  return sorted(int(m) for m in first)[:limit]


class Panels:
  """`panels(state, step)` -> {"reconstructions": {member: image},
  "traversals": {member: image}}, RGB uint8 images of the members shown."""

  def __init__(self, functions: MemberFunctions):
    exp = functions.exp
    self._functions = functions
    self.members = shown_members(hyperparameter_groups(exp.members.hparams,
                                                       len(exp.members)))
    _, self.inputs = exp.dataset.sample(jax.random.key(exp.config.eval.seed),
                                        NUM_INPUTS)

  def __call__(self, state: Any, step: int
               ) -> dict[str, dict[int, np.ndarray]]:
    members, _ = self._functions.at(state, step)
    mean, _ = members.posterior_fn(self.inputs)  # [M, n, d]
    reconstructions = np.asarray(members.decode_fn(mean))
    traversals = traversal_images(members.decode_fn,
                                  np.asarray(mean)[:, 0])
    inputs = np.asarray(self.inputs)
    return {
        "reconstructions": {
            m: pictures.pair_grid(inputs, reconstructions[m],
                                  cols=len(inputs))
            for m in self.members},
        "traversals": {m: pictures.traversal_panel(traversals[m])
                       for m in self.members}}
