"""FactorVAE (Kim & Mnih 2018), as dlib-google trains it.

  loss = recon + KL + gamma * TC,  TC = mean_i [logit_real - logit_perm](z_i)

where D is a discriminator with two logits (0: "z from q(z)", 1: "z from the
product of marginals"), so logit_real - logit_permuted estimates the density
ratio log q(z) / prod_k q(z_k), and its batch mean the total correlation.
The discriminator is trained to tell the step's sampled z from a copy whose
every latent dimension is shuffled independently across the batch (the same
batch, as dlib-google; Kim & Mnih permute a second batch):

  discriminator loss = -[0.5 mean log softmax(D(z))_0
                         + 0.5 mean log softmax(D(z_perm))_1]

(dlib-google takes the log of softmax probabilities clipped to
[1e-6, 1 - 1e-6]; log_softmax here is the exact value, so the two differ
only where the discriminator is more than 1 - 1e-6 sure, where the clipped
version has no gradient.)

The discriminator's parameters and Adam state are this objective's `aux`
state: `loss` reads them (the VAE update does not change them) and the aux
update (`update_discriminator`) takes one Adam step on the step's
gradient-stopped z, with the step's key for the permutation.  Both updates see the same pre-step
parameters, like dlib-google's single grouped train op, and both live in the
one pure, vmapped member step.
"""

from __future__ import annotations

import functools
from typing import Any, Iterable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from disentax.models import VAEOutput
from disentax.objectives import OBJECTIVES
from disentax.objectives.base import (AuxState, Objective,
                                      check_reconstruction,
                                      gaussian_kl, hyperparameter_grid,
                                      reconstruction_loss)

REAL, PERMUTED = 0, 1


DISCRIMINATOR_INITIALIZERS = ("glorot", "torch")


class Discriminator(nn.Module):
  """`depth` dense layers of `width` units with leaky ReLU, then 2 logits.

  The defaults are dlib-google's (TF): leaky-ReLU slope 0.2 and
  `initializer` "glorot" (Glorot-uniform kernels, zero biases, TF's dense
  defaults).  `initializer` "torch" is PyTorch's `nn.Linear` default,
  kernel and bias both U(-1/sqrt(fan_in), 1/sqrt(fan_in)), what the PyTorch
  ports (the DeVAE authors' disentanglement_lib fork) train, there with
  `nn.LeakyReLU()`'s slope 0.01."""
  width: int = 1000
  depth: int = 6
  negative_slope: float = 0.2
  initializer: str = "glorot"

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    if self.initializer not in DISCRIMINATOR_INITIALIZERS:
      raise ValueError(f"initializer={self.initializer!r}; must be one of "
                       f"{DISCRIMINATOR_INITIALIZERS}")
    h = z
    for _ in range(self.depth):
      h = nn.leaky_relu(_dense(self.width, h.shape[-1], self.initializer)(h),
                        self.negative_slope)
    return _dense(2, h.shape[-1], self.initializer)(h)


def _dense(features: int, fan_in: int, initializer: str) -> nn.Dense:
  if initializer == "glorot":
    return nn.Dense(features, kernel_init=nn.initializers.xavier_uniform())
  bound = fan_in ** -0.5  # variance_scaling(1/3) is U(+-sqrt(1 / fan_in))

  def bias_init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return nn.Dense(features, kernel_init=nn.initializers.variance_scaling(
      1 / 3, "fan_in", "uniform"), bias_init=bias_init)


def permute_dims(key: jax.Array, z: jax.Array) -> jax.Array:
  """Shuffles each column of z [b, d] across the batch with its own
  permutation: every column keeps its values, their pairing is broken."""
  keys = jax.random.split(key, z.shape[1])
  order = jax.vmap(lambda k: jax.random.permutation(k, z.shape[0]))(keys)
  return jnp.take_along_axis(z, order.T, axis=0)


def tc_estimate(logits: jax.Array) -> jax.Array:
  """Batch mean of logit_real - logit_permuted on real z: the TC estimate."""
  return jnp.mean(logits[:, REAL] - logits[:, PERMUTED])


def discriminator_loss(logits_real: jax.Array, logits_permuted: jax.Array,
                       probability_clip: float = 0.0
                       ) -> tuple[jax.Array, jax.Array]:
  """(loss, accuracy): the cross-entropy of classifying real z as REAL and
  permuted z as PERMUTED, half weight each; accuracy over both halves.
  `probability_clip` c > 0 takes the log of the softmax probabilities
  clipped to [c, 1 - c], as dlib-google and the PyTorch ports do (c = 1e-6;
  no gradient from a sample classified with more than 1 - c certainty,
  right or wrong); 0 is the exact log-softmax."""
  if probability_clip:
    def log_p(logits):
      return jnp.log(jnp.clip(jax.nn.softmax(logits), probability_clip,
                              1 - probability_clip))
  else:
    log_p = jax.nn.log_softmax
  log_p_real = log_p(logits_real)[:, REAL]
  log_p_perm = log_p(logits_permuted)[:, PERMUTED]
  loss = -(0.5 * log_p_real.mean() + 0.5 * log_p_perm.mean())
  accuracy = 0.5 * (jnp.mean(jnp.argmax(logits_real, -1) == REAL)
                    + jnp.mean(jnp.argmax(logits_permuted, -1) == PERMUTED))
  return loss, accuracy


def factor_vae_loss(output: VAEOutput, x: jax.Array,
                    hparams: Mapping[str, jax.Array], step: jax.Array,
                    aux: Mapping[str, Any], *, discriminator: Discriminator,
                    reconstruction: str = "bernoulli"
                    ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """recon + KL + gamma * TC, TC from the current (aux) discriminator; the
  gradient reaches the encoder through z, never the discriminator."""
  del step
  recon = reconstruction_loss(output.logits, x, reconstruction).mean()
  kl = gaussian_kl(output.mean, output.logvar).sum(axis=1).mean()
  params = jax.lax.stop_gradient(aux["params"])
  tc = tc_estimate(discriminator.apply({"params": params}, output.z))
  vae_loss = recon + kl
  loss = vae_loss + hparams["gamma"] * tc
  return loss, {"loss": loss, "recon": recon, "kl": kl, "vae_loss": vae_loss,
                "tc": tc}


def init_discriminator(key: jax.Array, probe_output: VAEOutput, *,
                       discriminator: Discriminator,
                       optimizer: optax.GradientTransformation
                       ) -> dict[str, Any]:
  params = discriminator.init(key, probe_output.z)["params"]
  return {"params": params, "opt_state": optimizer.init(params)}


def update_discriminator(aux: Mapping[str, Any], output: VAEOutput,
                         hparams: Mapping[str, jax.Array], step: jax.Array,
                         key: jax.Array, *, discriminator: Discriminator,
                         optimizer: optax.GradientTransformation,
                         permuted_from: jax.Array | None = None,
                         probability_clip: float = 0.0
                         ) -> tuple[dict[str, Any], dict[str, jax.Array]]:
  """One Adam step of the discriminator on this step's z (gradient-stopped)
  against a per-dimension permutation of `permuted_from` (default z itself,
  as dlib-google and the PyTorch ports; Kim & Mnih's Algorithm 2 permute a
  second batch); `probability_clip` as in `discriminator_loss`; metrics
  are pre-update."""
  del hparams, step
  z = jax.lax.stop_gradient(output.z)
  z_permuted = permute_dims(
      key, z if permuted_from is None else jax.lax.stop_gradient(
          permuted_from))

  def loss_fn(params):
    logits = discriminator.apply({"params": params},
                                 jnp.concatenate([z, z_permuted]))
    return discriminator_loss(logits[:z.shape[0]], logits[z.shape[0]:],
                              probability_clip)

  (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      aux["params"])
  updates, opt_state = optimizer.update(grads, aux["opt_state"],
                                        aux["params"])
  params = optax.apply_updates(aux["params"], updates)
  return ({"params": params, "opt_state": opt_state},
          {"discriminator_loss": loss, "discriminator_accuracy": accuracy})


def _check(name: str, value: Any, ok: bool, allowed: str) -> None:
  if not ok:
    raise ValueError(f"config.objective.{name}={value!r}; must be {allowed}")


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


@OBJECTIVES.register("factor_vae")
def factor_vae(gamma: float | Iterable[float] = 10.0,
               reconstruction: str = "bernoulli",
               discriminator_width: int = 1000,
               discriminator_depth: int = 6,
               discriminator_learning_rate: float = 1e-4,
               discriminator_b1: float = 0.5,
               discriminator_b2: float = 0.9) -> Objective:
  """`gamma` (>= 0): one value or the grid to sweep.  The discriminator is
  `discriminator_depth` x dense `discriminator_width` (dlib-google: 6 x 1000)
  with its own Adam (dlib-google: lr 1e-4, b1 0.5, b2 0.9)."""
  _check("discriminator_width", discriminator_width,
         _is_int(discriminator_width) and discriminator_width >= 1,
         "an int >= 1")
  _check("discriminator_depth", discriminator_depth,
         _is_int(discriminator_depth) and discriminator_depth >= 1,
         "an int >= 1")
  _check("discriminator_learning_rate", discriminator_learning_rate,
         _is_number(discriminator_learning_rate)
         and 0 < discriminator_learning_rate < float("inf"),
         "a finite number > 0")
  for name, value in (("discriminator_b1", discriminator_b1),
                      ("discriminator_b2", discriminator_b2)):
    _check(name, value, _is_number(value) and 0 <= value < 1, "in [0, 1)")
  discriminator = Discriminator(width=discriminator_width,
                                depth=discriminator_depth)
  optimizer = optax.adam(discriminator_learning_rate, b1=discriminator_b1,
                         b2=discriminator_b2)
  reconstruction = check_reconstruction(reconstruction)
  return Objective(
      name="factor_vae", reconstruction=reconstruction,
      loss=functools.partial(
          factor_vae_loss, discriminator=discriminator,
          reconstruction=reconstruction),
      hyperparameters={
          "gamma": hyperparameter_grid("gamma", gamma, non_negative=True)},
      aux=AuxState(
          init=functools.partial(init_discriminator,
                                 discriminator=discriminator,
                                 optimizer=optimizer),
          update=functools.partial(update_discriminator,
                                   discriminator=discriminator,
                                   optimizer=optimizer)))
