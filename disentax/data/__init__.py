"""Ground-truth datasets, selected by name (`config.dataset.name`)."""

from disentax.registry import Registry

DATASETS = Registry("dataset")

from disentax.data.base import Batch, GroundTruthDataset  # noqa: E402
from disentax.data import dsprites  # noqa: E402,F401  (registers 'dsprites')


def make_dataset(section) -> GroundTruthDataset:
  """Builds the dataset described by a config section `{name, **options}`."""
  return DATASETS.build(section, where="config.dataset")
