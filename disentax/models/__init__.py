"""VAE architectures, selected by name (`config.model.name`)."""

from disentax.registry import Registry, import_submodules

MODELS = Registry("model")

from disentax.models.vae import (  # noqa: E402
    VAE, LatentGate, LatentVariableModel, ModelControl, VAEOutput)
import_submodules(__name__, __path__)  # each module registers itself


def make_model(section, observation_shape) -> LatentVariableModel:
  """Builds the model of a config section for the dataset's observations."""
  return MODELS.build(section, where="config.model",
                      observation_shape=tuple(observation_shape))


__all__ = ["MODELS", "VAE", "LatentGate", "LatentVariableModel",
           "ModelControl", "VAEOutput", "make_model"]
