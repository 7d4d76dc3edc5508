"""Split encoder (split-encoder paper 3.2) and its ablations (5.1): shapes,
per-latent unshared parameters, the sharing-parameter encoder's structure,
correlated reparameterisation noise with the requested covariance, s = 0 the
standard VAE exactly, and bad options refused before anything compiles."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from disentax.experiment import build
from disentax.models import VAE
from disentax.models.conv import conv_vae
from disentax.models.vae import reparameterisation_noise
from experiments import split_encoder as split_encoder_config


def abstract_params(model, shape, batch=2):
  x = jax.ShapeDtypeStruct((batch, *shape), jnp.float32)
  rng = jax.eval_shape(jax.random.key, 0)
  return jax.eval_shape(model.init, rng, x, rng)["params"]


def random_params(abstract, seed=0):
  """Concrete params drawn with numpy (initialising with jax compiles)."""
  rng = np.random.default_rng(seed)

  def draw(leaf):
    fan_in = np.prod(leaf.shape[-3:-1]) if leaf.ndim >= 3 else (
        leaf.shape[-2] if leaf.ndim == 2 else 10)
    return jnp.asarray(rng.standard_normal(leaf.shape, np.float32)
                       / np.sqrt(fan_in))

  return jax.tree.map(draw, abstract)


def shapes_of(tree):
  return jax.tree.map(lambda leaf: tuple(leaf.shape), tree)


def count(tree):
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


@pytest.mark.parametrize("encoder", ["split", "sharing"])
@pytest.mark.parametrize("observation_shape", [(16, 16, 1), (64, 64, 1),
                                               (32, 32, 3)])
def test_output_shapes(encoder, observation_shape):
  model = conv_vae(observation_shape=observation_shape, encoder=encoder,
                   num_latents=7)
  x = jax.ShapeDtypeStruct((3, *observation_shape), jnp.float32)
  rng = jax.eval_shape(jax.random.key, 0)
  params = jax.eval_shape(model.init, rng, x, rng)
  out = jax.eval_shape(model.apply, params, x, rng)
  assert out.mean.shape == out.logvar.shape == out.z.shape == (3, 7)
  assert out.logits.shape == x.shape
  mean, logvar = jax.eval_shape(
      lambda p, x: model.apply(p, x, method=VAE.encode), params, x)
  assert mean.shape == logvar.shape == (3, 7)


def test_split_parameter_tree_is_trunk_plus_stacked_per_latent_heads():
  """Trunk conv 32, 32, 64 (the standard first three); then under 'latents'
  every leaf has a leading axis of num_latents (one unshared copy per
  latent): conv 64 (the 4th kernel size), dense 256, dense 2.  The count is
  trunk + d x one head, computed by hand."""
  d = 10
  params = abstract_params(conv_vae(observation_shape=(64, 64, 1),
                                    encoder="split", num_latents=d),
                           (64, 64, 1))["encoder"]
  assert shapes_of(params) == {
      "Conv_0": {"kernel": (4, 4, 1, 32), "bias": (32,)},
      "Conv_1": {"kernel": (4, 4, 32, 32), "bias": (32,)},
      "Conv_2": {"kernel": (2, 2, 32, 64), "bias": (64,)},
      "latents": {
          "Conv_0": {"kernel": (d, 2, 2, 64, 64), "bias": (d, 64)},
          "Dense_0": {"kernel": (d, 4 * 4 * 64, 256), "bias": (d, 256)},
          "Dense_1": {"kernel": (d, 256, 2), "bias": (d, 2)}}}
  trunk = (16 * 32 + 32) + (16 * 32 * 32 + 32) + (4 * 32 * 64 + 64)
  head = (4 * 64 * 64 + 64) + (1024 * 256 + 256) + (256 * 2 + 2)
  assert count(params) == trunk + d * head


def test_split_widths_are_options():
  params = abstract_params(conv_vae(observation_shape=(16, 16, 1),
                                    encoder="split", num_latents=3,
                                    split_channels=8, split_hidden=16),
                           (16, 16, 1))["encoder"]["latents"]
  assert shapes_of(params)["Conv_0"]["kernel"] == (3, 2, 2, 64, 8)
  assert shapes_of(params)["Dense_0"]["kernel"] == (3, 8, 16)


def test_sharing_encoder_flattens_conv_features_straight_into_the_heads():
  """The four standard convs, then the heads read the flattened features
  (4x4x64 at 64 px): no dense-256 layer in between."""
  params = abstract_params(conv_vae(observation_shape=(64, 64, 1),
                                    encoder="sharing"), (64, 64, 1))["encoder"]
  assert sorted(params) == ["Conv_0", "Conv_1", "Conv_2", "Conv_3", "logvar",
                            "mean"]
  assert params["mean"]["kernel"].shape == (4 * 4 * 64, 10)
  assert params["logvar"]["kernel"].shape == (4 * 4 * 64, 10)


def test_standard_encoder_is_unchanged():
  """encoder='standard' (the default) keeps the parameter tree."""
  default = abstract_params(conv_vae(observation_shape=(32, 32, 1)),
                            (32, 32, 1))
  explicit = abstract_params(conv_vae(observation_shape=(32, 32, 1),
                                      encoder="standard",
                                      noise_correlation=0.0), (32, 32, 1))
  assert shapes_of(default) == shapes_of(explicit)
  assert sorted(default["encoder"]) == ["Conv_0", "Conv_1", "Conv_2",
                                        "Conv_3", "Dense_0", "logvar", "mean"]


def test_each_latent_has_its_own_parameters():
  """Perturbing latent k's own sub-network changes mean[:, k] and
  logvar[:, k] only; perturbing the shared trunk changes every latent."""
  d = 5
  model = conv_vae(observation_shape=(16, 16, 1), encoder="split",
                   num_latents=d)
  params = random_params(abstract_params(model, (16, 16, 1)))
  x = jnp.asarray(np.random.default_rng(1).uniform(size=(4, 16, 16, 1)),
                  jnp.float32)
  encode = jax.jit(lambda p: model.apply({"params": p}, x, method=VAE.encode))
  mean0, logvar0 = map(np.asarray, encode(params))

  def changed(new_params):
    mean, logvar = map(np.asarray, encode(new_params))
    return (np.abs(mean - mean0).max(axis=0) > 1e-6,
            np.abs(logvar - logvar0).max(axis=0) > 1e-6)

  for k in (0, 3):
    perturbed = jax.tree.map(
        lambda leaf: leaf.at[k].add(0.5),
        params["encoder"]["latents"])
    new = {**params, "encoder": {**params["encoder"], "latents": perturbed}}
    mean_changed, logvar_changed = changed(new)
    expected = np.arange(d) == k
    np.testing.assert_array_equal(mean_changed, expected)
    np.testing.assert_array_equal(logvar_changed, expected)

  trunk = {**params["encoder"],
           "Conv_2": jax.tree.map(lambda leaf: leaf + 0.5,
                                  params["encoder"]["Conv_2"])}
  mean_changed, logvar_changed = changed({**params, "encoder": trunk})
  assert mean_changed.all() and logvar_changed.all()


def test_split_encoder_trains_every_head():
  """One gradient of recon + KL reaches every latent's own sub-network."""
  d = 4
  model = conv_vae(observation_shape=(16, 16, 1), encoder="split",
                   num_latents=d, split_channels=8, split_hidden=16)
  params = random_params(abstract_params(model, (16, 16, 1)))
  x = jnp.asarray(np.random.default_rng(2).uniform(size=(4, 16, 16, 1)) > 0.7,
                  jnp.float32)

  @jax.jit
  def grads(p):
    def loss(p):
      out = model.apply({"params": p}, x, jax.random.key(0))
      kl = 0.5 * (out.mean ** 2 + jnp.exp(out.logvar) - out.logvar - 1)
      recon = jnp.sum(jnp.maximum(out.logits, 0) - out.logits * x
                      + jnp.log1p(jnp.exp(-jnp.abs(out.logits))))
      return recon + kl.sum()
    return jax.grad(loss)(p)

  head = grads(params)["encoder"]["latents"]["Dense_1"]["kernel"]
  assert head.shape == (d, 16, 2)
  assert np.all(np.abs(np.asarray(head)).reshape(d, -1).max(axis=1) > 0)


class _Zeros(nn.Module):
  """Encoder returning mean 0, log-variance 0: then z is the noise."""
  num_latents: int

  @nn.compact
  def __call__(self, x):
    zeros = jnp.zeros((x.shape[0], self.num_latents))
    return zeros, zeros


class _Identity(nn.Module):
  @nn.compact
  def __call__(self, z):
    return z


@pytest.mark.parametrize("correlation", [0.9, 0.5, 0.0])
def test_correlated_noise_has_the_requested_covariance(correlation):
  """Empirical covariance of 100k draws of z (mean 0, variance 1) inside the
  VAE is (1 - s) I + s 11^T within 0.02 per entry (the standard error of a
  covariance entry is at most sqrt(2 / 1e5) = 0.0045, so this is ~4.5
  standard errors; s = 0.9 vs 0.85 differ by 0.05 and would fail)."""
  d, n = 6, 100_000
  vae = VAE(_Zeros(d), _Identity(), noise_correlation=correlation)
  out = jax.jit(lambda rng: vae.apply({}, jnp.zeros((n, 1)), rng))(
      jax.random.key(4))
  z = np.asarray(out.z, np.float64)
  covariance = z.T @ z / n
  expected = (1 - correlation) * np.eye(d) + correlation * np.ones((d, d))
  np.testing.assert_allclose(covariance, expected, atol=0.02)
  np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=0.02)


def test_zero_correlation_is_the_standard_reparameterisation_exactly():
  """s = 0: z = mean + exp(logvar / 2) * normal(rng, shape), bit for bit,
  and the noise function is jax.random.normal itself."""
  shape = (16, 16, 1)
  model = conv_vae(observation_shape=shape, encoder="split", num_latents=3,
                   split_channels=4, split_hidden=8)
  params = {"params": random_params(abstract_params(model, shape))}
  x = jnp.asarray(np.random.default_rng(3).uniform(size=(5, *shape)),
                  jnp.float32)
  rng = jax.random.key(7)


  @jax.jit
  def model_and_formula(params, x, rng):
    out = model.apply(params, x, rng)
    noise = jax.random.normal(rng, out.mean.shape, out.mean.dtype)
    return out.z, out.mean + jnp.exp(0.5 * out.logvar) * noise

  z, formula = model_and_formula(params, x, rng)
  np.testing.assert_array_equal(z, formula)
  np.testing.assert_array_equal(
      reparameterisation_noise(rng, (5, 3), jnp.float32, 0.0),
      jax.random.normal(rng, (5, 3)))
  # s > 0 really changes the noise (the test above can fail).
  assert not np.allclose(
      reparameterisation_noise(rng, (5, 3), jnp.float32, 0.5),
      jax.random.normal(rng, (5, 3)))


def test_noise_is_shared_along_latents_only():
  """Per example one common component: examples stay independent."""
  noise = np.asarray(reparameterisation_noise(jax.random.key(0),
                                              (50_000, 2, 3), jnp.float32,
                                              0.9), np.float64)
  across_examples = np.mean(noise[:, 0, :] * noise[:, 1, :])
  assert abs(across_examples) < 0.03
  within = np.mean(noise[:, 0, 0] * noise[:, 0, 2])
  assert within == pytest.approx(0.9, abs=0.03)


@pytest.mark.parametrize("kwargs, message", [
    (dict(encoder="splitt"), r"encoder='splitt'.*standard.*split.*sharing"),
    (dict(encoder="Split"), r"encoder='Split'"),
    (dict(noise_correlation=1.0), r"noise_correlation=1.0; must be a number "
                                  r"in \[0, 1\)"),
    (dict(noise_correlation=-0.1), r"noise_correlation=-0.1"),
    (dict(noise_correlation=math.nan), r"noise_correlation=nan"),
    (dict(noise_correlation="0.9"), r"noise_correlation='0.9'"),
    (dict(encoder="split", split_channels=0), r"split_channels=0"),
    (dict(encoder="split", split_hidden=2.5), r"split_hidden=2.5")])
def test_bad_options_raise_before_compiling(kwargs, message):
  with pytest.raises(ValueError, match=message):
    conv_vae(observation_shape=(16, 16, 1), **kwargs)
  config = split_encoder_config.get_config("tiny")
  config.model = ml_collections.ConfigDict({**config.model.to_dict(),
                                            **kwargs})
  with pytest.raises(ValueError, match=message):
    build(config)  # validates and builds; compiles nothing


def test_reparameterisation_noise_refuses_bad_correlation():
  with pytest.raises(ValueError, match=r"noise_correlation=1.5"):
    reparameterisation_noise(jax.random.key(0), (2, 3), jnp.float32, 1.5)


@pytest.mark.parametrize("preset, encoder, correlation, betas", [
    ("paper", "split", 0.0, (1.0, 2.0, 4.0, 6.0, 8.0, 16.0)),
    (None, "split", 0.0, (1.0, 2.0, 4.0, 6.0, 8.0, 16.0)),
    ("correlated_noise", "standard", 0.9, (1.0,)),
    ("sharing", "sharing", 0.0, (1.0,)),
    ("cpu", "split", 0.0, (1.0, 8.0)),
    ("tiny", "split", 0.0, (1.0, 4.0))])
def test_experiment_config_presets_build(preset, encoder, correlation, betas):
  exp = build(split_encoder_config.get_config(preset))
  assert exp.objective.name == "beta_vae"
  assert exp.objective.hyperparameters == {"beta": betas}
  assert exp.config.model.encoder == encoder
  assert exp.model.noise_correlation == correlation
  assert (type(exp.model.encoder).__name__,
          getattr(exp.model.encoder, "hidden", None)) == {
      "split": ("SplitEncoder", None), "sharing": ("ConvEncoder", 0),
      "standard": ("ConvEncoder", 256)}[encoder]


def test_experiment_config_rejects_unknown_preset():
  with pytest.raises(ValueError, match=r"'huge'.*correlated_noise.*sharing"):
    split_encoder_config.get_config("huge")
