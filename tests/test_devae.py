"""DeVAE: the layer posteriors and KL against the paper's closed forms, the
layer-choice distribution, the shared decoder with layer embeddings, and
config validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from disentax.models import make_model
from disentax.models.devae import layer_posterior
from disentax.objectives import make_objective
from disentax.objectives.base import gaussian_kl
from disentax.objectives.devae import layer_log_probabilities

RNG = np.random.default_rng(0)
MU0 = RNG.normal(size=(5, 4)).astype(np.float32)
LOGVAR0 = RNG.normal(size=(5, 4)).astype(np.float32)
W1 = RNG.normal(scale=0.5, size=(2, 4)).astype(np.float32)
W2 = RNG.normal(scale=0.5, size=(2, 4)).astype(np.float32)


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_layer_posterior_is_eq_5(layer):
  mean, logvar = layer_posterior(MU0, LOGVAR0, W1, W2, jnp.int32(layer))
  s1, s2 = W1[:layer].sum(0), W2[:layer].sum(0)   # sum_{j<i} w_j
  np.testing.assert_allclose(mean, np.exp(s1) * MU0, rtol=1e-6)
  sigma0 = np.exp(0.5 * LOGVAR0)
  np.testing.assert_allclose(np.exp(0.5 * logvar), np.exp(s2) * sigma0,
                             rtol=1e-5)


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_layer_kl_is_eq_6(layer):
  mean, logvar = layer_posterior(MU0, LOGVAR0, W1, W2, jnp.int32(layer))
  s1, s2 = W1[:layer].sum(0), W2[:layer].sum(0)
  sigma0 = np.exp(0.5 * LOGVAR0)
  # Eq. 6 (printed as -KL): KL_i = -1/2 (1 + 2 sum w2 + 2 log sigma_0
  #   - exp(2 sum w2) sigma_0^2 - exp(2 sum w1) mu_0^2), per latent.
  expected = -0.5 * (1 + 2 * s2 + 2 * np.log(sigma0)
                     - np.exp(2 * s2) * sigma0 ** 2
                     - np.exp(2 * s1) * MU0 ** 2)
  np.testing.assert_allclose(gaussian_kl(mean, logvar), expected, rtol=1e-5,
                             atol=1e-6)


def test_layer_choice_probabilities():
  np.testing.assert_allclose(np.exp(layer_log_probabilities(1.0, 3)),
                             [1 / 3] * 3, rtol=1e-6)
  np.testing.assert_allclose(np.exp(layer_log_probabilities(2.0, 3)),
                             np.array([1, 2, 4]) / 7, rtol=1e-6)
  np.testing.assert_allclose(np.exp(layer_log_probabilities(0.0, 3)),
                             [1, 0, 0], atol=1e-7)   # s = 0: the plain VAE
  objective = make_objective({"name": "devae", "scale": 2.0},
                             latent_layers=3)
  draws = jax.vmap(lambda k: objective.control.for_step(
      {"scale": jnp.float32(2.0)}, 0, k))(
          jax.random.split(jax.random.key(0), 7000))
  np.testing.assert_allclose(np.bincount(draws, minlength=3) / 7000,
                             np.array([1, 2, 4]) / 7, atol=0.02)


def test_model_decodes_the_chosen_layer_with_its_embedding():
  model = make_model({"name": "devae", "num_latents": 3, "num_layers": 3},
                     (16, 16, 1))
  x = jnp.zeros((2, 16, 16, 1))
  params = model.init(jax.random.key(0), x, jax.random.key(1))["params"]
  assert params["w1"].shape == params["w2"].shape == (2, 3)
  assert params["embeddings"]["embedding"].shape == (3, 3)
  # DiT weights start at 0: every layer's posterior equals layer 0's.
  params = {**params, "w1": jnp.ones((2, 3)), "w2": jnp.zeros((2, 3))}
  x = jax.random.uniform(jax.random.key(2), (2, 16, 16, 1))
  out0 = model.apply({"params": params}, x, jax.random.key(3), jnp.int32(0))
  out2 = model.apply({"params": params}, x, jax.random.key(3), jnp.int32(2))
  np.testing.assert_allclose(out2.mean, np.exp(2.0) * out0.mean, rtol=1e-5)
  assert int(out2.control) == 2
  # Same z, other layer: the decoder output differs only by the embedding.
  z = out0.z
  d0 = model.apply({"params": params}, z, 0, method=model.decode)
  d1 = model.apply({"params": params}, z, 1, method=model.decode)
  assert np.abs(np.asarray(d0 - d1)).max() > 0
  np.testing.assert_allclose(d0, out0.logits, rtol=1e-5, atol=1e-6)
  # Without a control: layer 0, which the output reports as its control.
  np.testing.assert_array_equal(
      model.apply({"params": params}, z, method=model.decode), d0)
  assert int(model.apply({"params": params}, x, jax.random.key(3)).control
             ) == 0


def test_loss_uses_the_beta_of_the_decoded_layer():
  objective = make_objective({"name": "devae"}, latent_layers=3)
  from disentax.models import VAEOutput
  x = jnp.zeros((2, 4, 4, 1))
  output = VAEOutput(jnp.ones((2, 3)), jnp.zeros((2, 3)), jnp.ones((2, 3)),
                     jnp.zeros((2, 4, 4, 1)), jnp.int32(2))
  loss, metrics = objective.loss(
      output, x, {"betas": jnp.array([1.0, 10.0, 40.0]), "scale": 1.0}, 0)
  # KL = 3 latents x 0.5 * mu^2 = 1.5; recon = 16 px x log 2.
  np.testing.assert_allclose(metrics["kl"], 1.5, rtol=1e-6)
  np.testing.assert_allclose(loss, 16 * np.log(2) + 40 * 1.5, rtol=1e-6)


def test_summed_layers_loss_is_the_weighted_sum_of_each_layer_loss():
  """layers='summed' (the authors' code): one forward runs every layer on
  the same encoding, and the loss is sum_i s^i L_i of the per-layer
  losses the sampled form computes for that layer."""
  model = make_model({"name": "devae", "num_latents": 3, "num_layers": 3},
                     (16, 16, 1))
  x = jax.random.uniform(jax.random.key(2), (2, 16, 16, 1))
  params = model.init(jax.random.key(0), x, jax.random.key(1))["params"]
  params = {**params, "w1": 0.3 * jnp.ones((2, 3)),
            "w2": -0.2 * jnp.ones((2, 3))}
  hparams = {"betas": jnp.array([1.0, 10.0, 40.0]), "scale": 2.0}
  summed = make_objective({"name": "devae", "layers": "summed"},
                          latent_layers=3)
  sampled = make_objective({"name": "devae"}, latent_layers=3)
  control = summed.control.for_step(hparams, 0, jax.random.key(4))
  np.testing.assert_array_equal(control, [0, 1, 2])
  output = model.apply({"params": params}, x, jax.random.key(3), control)
  assert output.mean.shape == (3, 2, 3)
  assert output.logits.shape == (3, 2, 16, 16, 1)
  loss, metrics = summed.loss(output, x, hparams, 0)
  expected, kls = 0.0, []
  for i in range(3):
    layer = jax.tree.map(lambda field: field[i], output)
    single = model.apply({"params": params}, x, jax.random.key(9),
                         jnp.int32(i))
    np.testing.assert_allclose(layer.mean, single.mean, rtol=1e-6)
    layer_loss, layer_metrics = sampled.loss(layer, x, hparams, 0)
    expected += 2.0 ** i * layer_loss
    kls.append(layer_metrics["kl"])
  np.testing.assert_allclose(loss, expected, rtol=1e-6)
  np.testing.assert_allclose(metrics["kl"], np.mean(kls), rtol=1e-6)
  with pytest.raises(ValueError, match="layers='all'; allowed"):
    make_objective({"name": "devae", "layers": "all"}, latent_layers=3)


def test_devae_settings_are_checked():
  with pytest.raises(ValueError, match="2 values per member but the model "
                     "has 3 latent layers"):
    make_objective({"name": "devae", "betas": (1.0, 10.0)}, latent_layers=3)
  with pytest.raises(ValueError, match=r"scale=.*\[-1.0\] not allowed"):
    make_objective({"name": "devae", "scale": -1.0}, latent_layers=3)
  with pytest.raises(ValueError, match="num_layers=0"):
    make_model({"name": "devae", "num_layers": 0}, (16, 16, 1))
