"""Ground-truth datasets, selected by name (`config.dataset.name`)."""

import jax

from disentax.registry import Registry, import_submodules

# Datasets held on the device (the dSprites npz, `in_memory=True` loaders) are
# constants of the jitted step; by default XLA embeds them in every compiled
# program, so compile time grows with the data (a 354 MB array at 50 seeds did
# not compile in 100 s on an H100). Simplified constants pass them as
# arguments instead (compile ~1 s).
jax.config.update("jax_use_simplified_jaxpr_constants", True)

DATASETS = Registry("dataset")

from disentax.data.base import Batch, GroundTruthDataset  # noqa: E402
import_submodules(__name__, __path__)  # each module registers itself


def make_dataset(section) -> GroundTruthDataset:
  """Builds the dataset described by a config section `{name, **options}`."""
  return DATASETS.build(section, where="config.dataset")
