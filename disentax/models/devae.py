"""DeVAE's hierarchical latent spaces (DeVAE paper, section 2, Algorithm 1).

One encoder gives layer 0's posterior N(mu_0, sigma_0^2).  Layer i > 0 is
the disentanglement-invariant transformation (DiT, eqs. 4-5) of it: learned
positive diagonal scalings

  mu_i    = exp(sum_{j<i} w1_j) * mu_0
  sigma_i = exp(sum_{j<i} w2_j) * sigma_0   (log-variance + 2 sum_{j<i} w2_j)

so every layer's mean representation is the same code up to a per-latent
positive factor (disentanglement cannot differ between layers).  One shared
decoder takes [z_i, v_i], v_i a learned embedding of the layer.  Which layer
is decoded is the model's `control` (an int scalar, chosen per minibatch by
the `devae` objective); without one, layer 0.  A control of layer indices
[K] runs every listed layer on the same encoding (the authors' code, which
sums the layers' losses every step): the output's fields gain a leading
layer axis.

Our choices (BUILD_NOTES): Algorithm 1 adds w2 to the log-variance while
eq. 5 scales sigma by exp(w2); we follow eq. 5 (same family, w2 halved).
w1, w2 start at 0 (every layer starts equal to layer 0).  The embedding size
is not given; it defaults to num_latents (our reading of v_i in R^{1 x D}).
Encoder and decoder are the standard conv architecture (models/conv.py).
"""

from __future__ import annotations

from typing import Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from disentax.models import MODELS
from disentax.models.conv import (ConvEncoder, DeconvDecoder,
                                  check_architecture)
from disentax.models.vae import (LatentVariableModel, ModelControl, VAEOutput,
                                 reparameterisation_noise)


def layer_posterior(mean0: jax.Array, logvar0: jax.Array, w1: jax.Array,
                    w2: jax.Array, layer: jax.Array
                    ) -> tuple[jax.Array, jax.Array]:
  """(mu_i, log sigma_i^2) of layer `layer` from layer 0's, eq. 5; w1, w2
  are [num_layers - 1, d], row j the DiT between layers j and j + 1."""
  used = (jnp.arange(w1.shape[0]) < layer)[:, None]
  log_scale_mean = jnp.sum(jnp.where(used, w1, 0.0), axis=0)
  log_scale_std = jnp.sum(jnp.where(used, w2, 0.0), axis=0)
  return (jnp.exp(log_scale_mean) * mean0,
          logvar0 + 2.0 * log_scale_std)


def layer_index(control: ModelControl) -> jax.Array:
  """The latent layer(s) a control selects: an int scalar, or [K] layer
  indices; layer 0 without one."""
  layer = jnp.asarray(0 if control is None else control, jnp.int32)
  chex.assert_rank(layer, {0, 1})
  return layer


class DeVAE(LatentVariableModel):
  """Latent layers joined by DiT scalings (module docstring); the control
  is the layer index."""
  encoder: nn.Module
  decoder: nn.Module
  num_layers: int
  embedding_size: int

  def setup(self):
    num_latents = self.encoder.num_latents
    self.w1 = self.param("w1", nn.initializers.zeros,
                         (self.num_layers - 1, num_latents))
    self.w2 = self.param("w2", nn.initializers.zeros,
                         (self.num_layers - 1, num_latents))
    self.embeddings = nn.Embed(self.num_layers, self.embedding_size)

  @property
  def latent_layers(self) -> int:
    return self.num_layers

  def encode(self, x: jax.Array, control: ModelControl = None
             ) -> tuple[jax.Array, jax.Array]:
    """Layer `control`'s posterior parameters (layer 0 without one)."""
    return layer_posterior(*self.encoder(x), self.w1, self.w2,
                           layer_index(control))

  def decode(self, z: jax.Array, control: ModelControl = None) -> jax.Array:
    """Logits of `z` decoded as layer `control` (layer 0 without one): the
    shared decoder sees z with the layer's embedding."""
    embedding = self.embeddings(layer_index(control))
    embedding = jnp.broadcast_to(embedding, (z.shape[0], self.embedding_size))
    return self.decoder(jnp.concatenate([z, embedding], axis=-1))

  def __call__(self, x: jax.Array, rng: jax.Array,
               control: ModelControl = None) -> VAEOutput:
    layer = layer_index(control)
    mean0, logvar0 = self.encoder(x)

    def one_layer(layer, rng):
      mean, logvar = layer_posterior(mean0, logvar0, self.w1, self.w2, layer)
      z = mean + jnp.exp(0.5 * logvar) * reparameterisation_noise(
          rng, mean.shape, mean.dtype)
      return VAEOutput(mean, logvar, z, self.decode(z, layer), layer)

    if layer.ndim == 0:
      return one_layer(layer, rng)
    # Every listed layer (a handful), each with its own noise, stacked.
    keys = jax.random.split(rng, layer.shape[0])
    outputs = [one_layer(layer[i], keys[i]) for i in range(layer.shape[0])]
    return jax.tree.map(lambda *fields: jnp.stack(fields), *outputs)


@MODELS.register("devae")
def devae(*, observation_shape: tuple[int, int, int], num_latents: int = 10,
          num_layers: int = 3, embedding_size: int | None = None,
          encoder_kernel_sizes: Sequence[int] = (4, 4, 2, 2),
          kernels: str = "auto") -> DeVAE:
  """DeVAE with `num_layers` latent layers (DeVAE paper: 3, betas 1, 10,
  40) of `num_latents` each on the standard conv encoder and decoder;
  `kernels` as for conv_vae (how the layers are computed, never what)."""
  kernel_sizes, layers = check_architecture(
      observation_shape, num_latents, encoder_kernel_sizes, kernels)
  if isinstance(num_layers, bool) or not isinstance(num_layers, int) or (
      num_layers < 1):
    raise ValueError(f"num_layers={num_layers!r}; must be an integer >= 1")
  embedding_size = num_latents if embedding_size is None else embedding_size
  if isinstance(embedding_size, bool) or not isinstance(
      embedding_size, int) or embedding_size < 1:
    raise ValueError(f"embedding_size={embedding_size!r}; must be an integer "
                     ">= 1 (or None: num_latents)")
  return DeVAE(ConvEncoder(num_latents, kernel_sizes, conv=layers.conv),
               DeconvDecoder(tuple(observation_shape), layers.conv_transpose),
               num_layers, embedding_size)
