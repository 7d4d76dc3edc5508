"""Training objectives (pure losses), selected by name (`config.objective.name`)."""

from disentax.registry import Registry, import_submodules

OBJECTIVES = Registry("objective")

from disentax.objectives.base import Objective  # noqa: E402
import_submodules(__name__, __path__)  # each module registers itself


def make_objective(section, **context) -> Objective:
  """Builds the objective of a config section.  `context` offers what comes
  from the rest of the run (dataset_size, factor_names, num_latents);
  builders take the parts they declare (e.g. minibatch stratified sampling
  needs `dataset_size`)."""
  return OBJECTIVES.build(section, where="config.objective", **context)
