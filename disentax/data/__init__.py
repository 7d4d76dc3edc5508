"""Ground-truth datasets, selected by name (`config.dataset.name`)."""

from disentax.registry import Registry, import_submodules

DATASETS = Registry("dataset")

from disentax.data.base import Batch, GroundTruthDataset  # noqa: E402
import_submodules(__name__, __path__)  # each module registers itself


def make_dataset(section) -> GroundTruthDataset:
  """Builds the dataset described by a config section `{name, **options}`."""
  return DATASETS.build(section, where="config.dataset")
