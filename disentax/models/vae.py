"""A VAE = a Gaussian encoder, the reparameterisation, and a decoder.

An objective may steer the forward pass per step with a *control* (computed
from the member's hyperparameters and the traced step, so it is data, never a
recompile).  The plain VAE understands a `LatentGate`: which latents are in
use (the others output exactly zero: mean 0, log-variance 0, z 0), how
strongly the gradient flowing back into each latent's encoder outputs is
scaled, how much reparameterisation noise z gets (none: z is the
posterior mean, a deterministic autoencoder's forward pass), and, for a
model built with a latent projection, which latents pass through it.  DEFT's
stages are such gates; models with other controls (DeVAE's layer index)
define their own.

Every model offers the same contract to objectives, the trainer and the
evaluator (`LatentVariableModel`): `encode(x, control)`, `decode(z,
control)`, the forward pass `(x, rng, control) -> VAEOutput`, its number of
latent layers, its encoder's parameter groups with a way to scale them, and
which latent projection it has, so nothing outside models/ inspects a model's signatures or addresses its
parameters by path.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp


class LatentGate(NamedTuple):
  keep: jax.Array        # [d] 1.0: latent in use; 0.0: it outputs zeros
  grad_scale: jax.Array  # [d] factor on the gradient into its encoder outputs
  # Factor on the reparameterisation noise: 1 samples z ~ q(z | x); 0 gives
  # z = mean exactly.
  sample: float | jax.Array = 1.0
  # [d] 1.0: the latent's encoder outputs are frozen (no gradient) and pass
  # through the model's learnable projection (`LatentProjection`); None or
  # 0.0: unchanged.  Only a model built with a projection reads it.
  project: jax.Array | None = None


# What a model's forward pass takes as `control`, chosen per step by the
# objective: the plain VAE's `LatentGate`, DeVAE's latent layer index (an int
# scalar), or None (the plain forward pass).
ModelControl = LatentGate | jax.Array | None


class VAEOutput(NamedTuple):
  mean: jax.Array     # [b, d] encoder mean (the representation evaluated)
  logvar: jax.Array   # [b, d] encoder log-variance
  z: jax.Array        # [b, d] reparameterised sample
  logits: jax.Array   # [b, H, W, C] decoder output for z
  # The control the forward pass ran with, as the model resolved it: the
  # plain VAE's gate (None without one), the layer DeVAE decoded (layer 0
  # without one), which the DeVAE loss reads.
  control: ModelControl = None


@jax.custom_vjp
def scale_gradient(x: jax.Array, scale: jax.Array) -> jax.Array:
  """Identity forward; the cotangent is multiplied by `scale` (broadcast
  over the last axis) on the way back.  `scale` gets no gradient."""
  return x


def _scale_gradient_fwd(x, scale):
  return x, scale


def _scale_gradient_bwd(scale, cotangent):
  return cotangent * scale, jnp.zeros_like(scale)


scale_gradient.defvjp(_scale_gradient_fwd, _scale_gradient_bwd)


def gate_posterior(mean: jax.Array, logvar: jax.Array,
                   gate: LatentGate | None) -> tuple[jax.Array, jax.Array]:
  """Applies a LatentGate to the encoder outputs (no gate: unchanged)."""
  if gate is None:
    return mean, logvar
  keep = gate.keep.astype(mean.dtype)
  return (scale_gradient(mean, gate.grad_scale) * keep,
          scale_gradient(logvar, gate.grad_scale) * keep)


# How the encoder's second head parameterises the posterior's standard
# deviation: 'log_variance' (the head is log sigma^2, dlib's) or 'softplus'
# (sigma = softplus(head), CascadeVAE's code).  Either way the model's
# interface is the log-variance.
STD_PARAMETERIZATIONS = ("log_variance", "softplus")
# CascadeVAE's code takes log(sigma + 1e-8) in its KL; the same offset keeps
# a softplus that underflows to 0 from giving an infinite log-variance.
SOFTPLUS_STD_EPSILON = 1e-8


def check_std_parameterization(parameterization: str) -> str:
  if parameterization not in STD_PARAMETERIZATIONS:
    raise ValueError(f"std_parameterization={parameterization!r}; allowed: "
                     f"{STD_PARAMETERIZATIONS}")
  return parameterization


def posterior_logvar(head: jax.Array, parameterization: str) -> jax.Array:
  """The log-variance from the encoder's second head: the head itself
  ('log_variance'), or 2 log(softplus(head) + 1e-8) ('softplus': sigma =
  softplus(head), offset as CascadeVAE's KL; its sampled sigma and KL
  differ from the code's by at most 1e-8 in sigma)."""
  if parameterization == "log_variance":
    return head
  return 2.0 * jnp.log(jax.nn.softplus(head) + SOFTPLUS_STD_EPSILON)


# A learnable per-latent projection of frozen encoder outputs (the DEFT
# authors' fork): none, or how it maps the log-variance.
PROJECTIONS = ("none", "logvar_shift", "logvar_scale")


class LatentProjection(nn.Module):
  """Per latent, learnable W1 and W2 (zeros at initialisation, so the
  projection starts as the identity) on the encoder's frozen outputs:
  mean * exp(W1), and log-variance + W2 ('logvar_shift') or log-variance *
  exp(W2) ('logvar_scale').  Latents whose `project` entry is 1 take the
  projected outputs of their encoder outputs under stop_gradient (the
  encoder gets no gradient from them, W1 and W2 do); the others pass
  unchanged (and their W1, W2 get no gradient).  The parameters exist from
  initialisation whatever the gate, so the parameter tree does not depend
  on the control."""
  form: str

  @nn.compact
  def __call__(self, mean: jax.Array, logvar: jax.Array,
               project: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    num_latents = mean.shape[-1]
    w1 = self.param("mean_log_scale", nn.initializers.zeros, (num_latents,))
    w2 = self.param("logvar_shift" if self.form == "logvar_shift"
                    else "logvar_log_scale", nn.initializers.zeros,
                    (num_latents,))
    if project is None:
      return mean, logvar
    frozen_mean = jax.lax.stop_gradient(mean)
    frozen_logvar = jax.lax.stop_gradient(logvar)
    projected_mean = frozen_mean * jnp.exp(w1).astype(mean.dtype)
    if self.form == "logvar_shift":
      projected_logvar = frozen_logvar + w2.astype(logvar.dtype)
    else:
      projected_logvar = frozen_logvar * jnp.exp(w2).astype(logvar.dtype)
    on = jnp.asarray(project) > 0
    return (jnp.where(on, projected_mean, mean),
            jnp.where(on, projected_logvar, logvar))


def check_projection(form: str) -> str:
  if form not in PROJECTIONS:
    raise ValueError(f"latent_projection={form!r}; allowed: {PROJECTIONS}")
  return form


def check_noise_correlation(correlation: float) -> float:
  """s must be a number in [0, 1) (at 1 the covariance is singular)."""
  if isinstance(correlation, bool) or not isinstance(
      correlation, (int, float)) or not math.isfinite(correlation) or not (
          0.0 <= correlation < 1.0):
    raise ValueError(f"noise_correlation={correlation!r}; must be a number "
                     "in [0, 1)")
  return float(correlation)


class BatchRows(NamedTuple):
  """In place of a model's noise key: the key of a whole batch of
  `batch_size` examples, of which this call sees rows `start` onwards.  The
  model then draws exactly those rows' noise of the whole batch, so a batch
  processed in slices (`train.micro_batches`) gets the same noise as in one
  piece."""
  key: jax.Array
  start: jax.Array  # int scalar, may be traced
  batch_size: int


def reparameterisation_noise(rng: jax.Array | BatchRows,
                             shape: tuple[int, ...], dtype=jnp.float32,
                             correlation: float = 0.0) -> jax.Array:
  """eps ~ N(0, (1 - s) I + s 11^T) over the last axis, i.i.d. elsewhere.

  s = 0 is exactly the standard `jax.random.normal(rng, shape)`.  For s > 0,
  eps = sqrt(1 - s) n + sqrt(s) c 1 with n that same standard draw and c one
  N(0, 1) scalar per example (from fold_in(rng, 1)), shared by all latents:
  Cov = (1 - s) I + s 11^T (split-encoder paper, 5.1; ablation s = 0.9).
  `rng` may be `BatchRows`: the rows `shape[0]` from `start` of the whole
  batch's draw.
  """
  if isinstance(rng, BatchRows):
    whole = reparameterisation_noise(rng.key, (rng.batch_size, *shape[1:]),
                                     dtype, correlation)
    return jax.lax.dynamic_slice_in_dim(whole, rng.start, shape[0])
  correlation = check_noise_correlation(correlation)
  noise = jax.random.normal(rng, shape, dtype)
  if correlation == 0.0:
    return noise
  common = jax.random.normal(jax.random.fold_in(rng, 1), (*shape[:-1], 1),
                             dtype)
  return (math.sqrt(1.0 - correlation) * noise
          + math.sqrt(correlation) * common)


def scale_stacked(tree: Any, scales: jax.Array) -> Any:
  """`tree` with slice g of every leaf's leading axis multiplied by
  scales[g] (for parameters stacked over groups on axis 0)."""
  def scale(leaf):
    shape = (-1, *([1] * (leaf.ndim - 1)))
    return leaf * scales.astype(leaf.dtype).reshape(shape)
  return jax.tree.map(scale, tree)


class GroupedEncoder(nn.Module):
  """An encoder made of independent sub-encoders, one per latent group,
  whose parameters are stacked on a leading group axis (DEFT's fractional
  encoder).  Subclasses say how many groups they have and where in their
  own parameter tree the stacked parameters live."""

  @property
  def parameter_groups(self) -> int:
    raise NotImplementedError

  def scale_parameter_groups(self, params: Any, scales: jax.Array) -> Any:
    """`params` (this encoder's parameter-shaped tree) with group g's
    parameters multiplied by scales[g]."""
    raise NotImplementedError


class LatentVariableModel(nn.Module):
  """The contract of every model (module docstring).  Subclasses define
  `encode(x, control=None) -> (mean, logvar)`, `decode(z, control=None) ->
  logits` and `__call__(x, rng, control=None) -> VAEOutput`; the defaults
  below describe a model with one latent layer and no parameter groups."""

  @property
  def latent_layers(self) -> int:
    """How many latent layers the model has (DeVAE's hierarchy; 1 for a
    plain VAE), the layers a control may select."""
    return 1

  @property
  def parameter_groups(self) -> int | None:
    """G, the number of independent encoder groups whose parameters are
    stacked on a leading axis (the fractional encoder's sub-encoders);
    None for an encoder without such groups."""
    return None

  @property
  def latent_projection(self) -> str:
    """How the model projects frozen encoder outputs (one of PROJECTIONS):
    'none' for a model without a `LatentProjection`."""
    return "none"

  def scale_parameter_groups(self, tree: Any, scales: jax.Array) -> Any:
    """`tree` (shaped like the model's parameters, e.g. Adam updates) with
    encoder group g's leaves multiplied by scales[g] ([G]); every other
    leaf unchanged.  Raises ValueError on a model without groups."""
    raise ValueError(
        f"model {type(self).__name__} has no parameter groups to scale; "
        "scaling per group needs an encoder of independent sub-encoders "
        "(conv_vae with encoder='fractional')")


class VAE(LatentVariableModel):
  """Any encoder (x -> mean, logvar) with any decoder (z -> logits).

  `noise_correlation` s: the reparameterisation noise is N(0, (1-s)I +
  s 11^T) across latents (0: the standard independent noise).
  `std_parameterization`: what the encoder's second output is
  (`posterior_logvar`).  `projection`: a `LatentProjection` applied to the
  encoder outputs before the gate, where the gate's `project` says (None:
  no such parameters)."""
  encoder: nn.Module
  decoder: nn.Module
  noise_correlation: float = 0.0
  std_parameterization: str = "log_variance"
  projection: LatentProjection | None = None

  @property
  def latent_projection(self) -> str:
    return "none" if self.projection is None else self.projection.form

  @property
  def parameter_groups(self) -> int | None:
    if isinstance(self.encoder, GroupedEncoder):
      return self.encoder.parameter_groups
    return None

  def scale_parameter_groups(self, tree: Any, scales: jax.Array) -> Any:
    groups = self.parameter_groups
    if groups is None:
      return super().scale_parameter_groups(tree, scales)
    if jnp.shape(scales) != (groups,):
      raise ValueError(f"scales of shape {jnp.shape(scales)}; the encoder "
                       f"has {groups} parameter groups, one scale each")
    return {**tree, "encoder": self.encoder.scale_parameter_groups(
        tree["encoder"], scales)}

  def encode(self, x: jax.Array, control: ModelControl = None
             ) -> tuple[jax.Array, jax.Array]:
    """The posterior's (mean, log-variance), projected where the gate says
    (a model with a projection) and gated by a `LatentGate`."""
    mean, head = self.encoder(x)
    logvar = posterior_logvar(head, self.std_parameterization)
    if self.projection is not None:
      mean, logvar = self.projection(
          mean, logvar, None if control is None else control.project)
    return gate_posterior(mean, logvar, control)

  def decode(self, z: jax.Array, control: ModelControl = None) -> jax.Array:
    """Decoder logits of `z`; the plain VAE's decoder takes no control."""
    del control
    return self.decoder(z)

  def __call__(self, x: jax.Array, rng: jax.Array,
               control: ModelControl = None) -> VAEOutput:
    mean, logvar = self.encode(x, control)
    noise = reparameterisation_noise(rng, mean.shape, mean.dtype,
                                     self.noise_correlation)
    if control is not None:
      noise = noise * jnp.asarray(control.sample, noise.dtype)
    z = mean + jnp.exp(0.5 * logvar) * noise
    if control is not None:
      z = z * control.keep.astype(z.dtype)
    return VAEOutput(mean, logvar, z, self.decoder(z), control)
