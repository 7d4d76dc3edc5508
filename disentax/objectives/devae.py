"""DeVAE (decremental information bottleneck; DeVAE paper section 2.4,
Algorithm 1): each minibatch optimises one latent layer's beta-VAE objective

  L_i = recon(x | z_i, v_i) + beta_i * KL(q(z_i | x) || N(0, I))

with layer i drawn per minibatch with p(i) proportional to s^i (s = 1:
uniform, the paper's choice; s = 0: always layer 0, the plain VAE).  Eq. 8
as printed does not sum to one for s > 1; we use the normalised geometric
weights it describes (BUILD_NOTES).  `layers='summed'` is the authors' code
instead: every step optimises sum_i s^i L_i over all layers (one encoding,
each layer its own sample).  Needs the `devae` model, whose control
is the layer index; evaluation scores every layer's mean representation
(metric names get `_layer<i>`; the unsuffixed metric is the last layer, the
most disentangled by design).
"""

from __future__ import annotations

import functools
from typing import Iterable, Mapping

import jax
import jax.numpy as jnp

from disentax.models import VAEOutput
from disentax.objectives import OBJECTIVES
from disentax.objectives.base import (Objective, StagedControl,
                                      check_reconstruction, elbo_loss,
                                      hyperparameter_grid, sequence_grid)

# 'sampled': Algorithm 1, one layer per step; 'summed': the authors' code.
LAYER_MODES = ("sampled", "summed")


def layer_log_probabilities(scale: jax.Array, num_layers: int) -> jax.Array:
  """log p(i), p(i) = s^i / sum_j s^j for i < num_layers (s >= 0)."""
  scale = jnp.asarray(scale, jnp.float32)
  index = jnp.arange(num_layers)
  logits = jnp.where(index == 0, 0.0, index * jnp.log(scale))
  return jax.nn.log_softmax(logits)


def devae_loss(output: VAEOutput, x: jax.Array,
               hparams: Mapping[str, jax.Array], step: jax.Array,
               aux: None = None, *, reconstruction: str = "bernoulli"
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The beta-VAE loss with the beta of the layer the model decoded (the
  model's control)."""
  del step, aux
  beta = hparams["betas"][output.control]
  loss, metrics = elbo_loss(output, x, beta, reconstruction)
  return loss, {**metrics, "beta": beta,
                "layer": output.control.astype(jnp.float32)}


def summed_devae_loss(output: VAEOutput, x: jax.Array,
                      hparams: Mapping[str, jax.Array], step: jax.Array,
                      aux: None = None, *, reconstruction: str = "bernoulli"
                      ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """sum_i s^i L_i over every layer of `output` (fields [K, ...]), L_i the
  beta_i-VAE loss of layer i; the metrics are the layers' means."""
  del step, aux
  losses, metrics = jax.vmap(
      lambda layer_output, beta: elbo_loss(layer_output, x, beta,
                                           reconstruction))(
                                               output, hparams["betas"])
  num_layers = losses.shape[0]
  weights = jnp.asarray(hparams["scale"], jnp.float32) ** jnp.arange(
      num_layers)
  loss = jnp.sum(weights * losses)
  means = {name: jnp.mean(value) for name, value in metrics.items()}
  return loss, {**means, "loss": loss}


@OBJECTIVES.register("devae")
def devae(betas: Iterable = (1.0, 10.0, 40.0),
          scale: float | Iterable[float] = 1.0,
          reconstruction: str = "bernoulli", layers: str = "sampled", *,
          latent_layers: int) -> Objective:
  """`betas`: one beta per latent layer (the model's num_layers of them;
  DeVAE paper: 1, 10, 40) or a grid of such sequences; `scale` s >= 0: the
  layer weights, one value or a grid; `layers`: 'sampled' (Algorithm 1:
  one layer per step, p(i) ~ s^i) or 'summed' (the authors' code: every
  layer every step, weighted s^i)."""
  if layers not in LAYER_MODES:
    raise ValueError(f"config.objective.layers={layers!r}; allowed: "
                     f"{LAYER_MODES}")
  beta_grid = sequence_grid("betas", betas, positive=True)
  if len(beta_grid[0]) != latent_layers:
    raise ValueError(
        f"config.objective.betas has {len(beta_grid[0])} values per member "
        f"but the model has {latent_layers} latent layers "
        "(config.model.num_layers); give one beta per layer")
  scales = hyperparameter_grid("scale", scale, non_negative=True)

  def control(hparams, step, key):
    del step
    if layers == "summed":
      return jnp.arange(latent_layers, dtype=jnp.int32)
    return jax.random.categorical(
        key, layer_log_probabilities(hparams["scale"], latent_layers))

  def representations(hparams, step):
    del hparams, step
    layers = {f"_layer{i}": jnp.int32(i) for i in range(latent_layers)}
    return {"": jnp.int32(latent_layers - 1), **layers}

  reconstruction = check_reconstruction(reconstruction)
  return Objective(
      name="devae", reconstruction=reconstruction,
      loss=functools.partial(
          summed_devae_loss if layers == "summed" else devae_loss,
          reconstruction=reconstruction),
      hyperparameters={"betas": beta_grid, "scale": scales},
      control=StagedControl(for_step=control,
                            representations=representations),
      per_example_mean=True)
