"""VAE architectures, selected by name (`config.model.name`)."""

from disentax.registry import Registry

MODELS = Registry("model")

from disentax.models.vae import VAE, VAEOutput  # noqa: E402
from disentax.models import conv  # noqa: E402,F401  (registers "conv_vae")


def make_model(section, observation_shape) -> VAE:
  """Builds the model of a config section for the dataset's observations."""
  return MODELS.build(section, where="config.model",
                      observation_shape=tuple(observation_shape))
