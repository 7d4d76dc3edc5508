"""Training objectives (pure losses), selected by name (`config.objective.name`)."""

from disentax.registry import Registry, import_submodules

OBJECTIVES = Registry("objective")

from disentax.objectives.base import Objective  # noqa: E402
import_submodules(__name__, __path__)  # each module registers itself


def make_objective(section, dataset_size: int) -> Objective:
  """Builds the objective of a config section; builders that need the
  dataset size (e.g. minibatch stratified sampling) declare `dataset_size`."""
  return OBJECTIVES.build(section, where="config.objective",
                          dataset_size=dataset_size)
