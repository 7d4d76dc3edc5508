"""Training objectives (pure losses), selected by name (`config.objective.name`)."""

from disentax.registry import Registry

OBJECTIVES = Registry("objective")

from disentax.objectives.base import Objective  # noqa: E402
from disentax.objectives import beta_vae  # noqa: E402,F401  (registers "beta_vae")


def make_objective(section) -> Objective:
  return OBJECTIVES.build(section, where="config.objective")
