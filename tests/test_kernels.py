"""`model.kernels` (disentax/models/kernels): 'auto' follows the backend, and
the reference and fast layers build the same models: the same parameter tree
and initial values, parameters of one apply in the other, the same outputs
and gradients to float32 rounding."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from disentax import backend
from disentax.models import kernels, make_model
from disentax.models.conv import FractionalEncoder
from disentax.models.kernels import fractional

TOL = dict(rtol=1e-5, atol=1e-5)


def random_params(abstract, seed=0):
  """Concrete params shaped like `abstract`, scaled by 1/sqrt(fan-in), drawn
  with numpy (initialising with jax compiles a large program)."""
  rng = np.random.default_rng(seed)

  def draw(leaf):
    fan_in = np.prod(leaf.shape[:-1]) if len(leaf.shape) > 1 else 10.0
    return jnp.asarray(rng.standard_normal(leaf.shape, np.float32)
                       / np.sqrt(fan_in))

  return jax.tree.map(draw, abstract)


def kl(mean, logvar):
  """A scalar of encoder outputs to differentiate: the KL to N(0, I)."""
  return (0.5 * (mean ** 2 + jnp.exp(logvar) - logvar - 1.0)).sum(-1).mean()


@pytest.mark.parametrize("on_cpu, expected", [(True, "fast"),
                                              (False, "reference")])
def test_auto_is_fast_on_cpu_and_reference_elsewhere(monkeypatch, on_cpu,
                                                     expected):
  monkeypatch.setattr(backend, "on_cpu", lambda: on_cpu)
  assert kernels.resolve("auto") == expected
  # An explicit choice is kept on every backend.
  assert kernels.resolve("reference") == "reference"
  assert kernels.resolve("fast") == "fast"
  assert kernels.layers("auto") is (kernels.FAST if on_cpu
                                    else kernels.REFERENCE)


@pytest.mark.parametrize("name, on_cpu", [("cpu", True), ("gpu", False),
                                          ("tpu", False)])
def test_on_cpu_reads_the_default_backend(monkeypatch, name, on_cpu):
  monkeypatch.setattr(jax, "default_backend", lambda: name)
  assert backend.on_cpu() is on_cpu


def test_reference_layers_are_flax_layers():
  assert kernels.REFERENCE.conv is nn.Conv
  assert kernels.REFERENCE.conv_transpose is nn.ConvTranspose
  assert issubclass(kernels.FAST.conv, nn.Conv)
  assert issubclass(kernels.FAST.conv_transpose, nn.ConvTranspose)


def test_unknown_kernels_are_rejected():
  with pytest.raises(ValueError, match=r"kernels='sequential'; allowed: "
                     r"\('auto', 'reference', 'fast'\)"):
    make_model({"name": "conv_vae", "kernels": "sequential"}, (16, 16, 1))


@pytest.mark.parametrize("section", [
    {"name": "conv_vae"}, {"name": "conv_vae", "encoder": "split"},
    {"name": "conv_vae", "encoder": "sharing"}, {"name": "devae"}])
@pytest.mark.parametrize("on_cpu", [True, False])
def test_builders_use_the_chosen_layers(monkeypatch, section, on_cpu):
  monkeypatch.setattr(backend, "on_cpu", lambda: on_cpu)
  for kernels_name in ("auto", "reference", "fast"):
    model = make_model({**section, "kernels": kernels_name}, (16, 16, 1))
    layers = kernels.layers(kernels_name)
    assert model.encoder.conv is layers.conv
    assert model.decoder.conv_transpose is layers.conv_transpose
  model = make_model({"name": "conv_vae", "encoder": "fractional",
                      "num_groups": 2, "num_latents": 4}, (16, 16, 1))
  assert model.encoder.call_groups is kernels.layers("auto").call_groups


MODELS = {
    "standard": {"name": "conv_vae"},
    "standard_4444": {"name": "conv_vae",
                      "encoder_kernel_sizes": (4, 4, 4, 4)},
    "split": {"name": "conv_vae", "encoder": "split", "num_latents": 3,
              "split_channels": 8, "split_hidden": 16},
    "sharing": {"name": "conv_vae", "encoder": "sharing"},
    "fractional": {"name": "conv_vae", "encoder": "fractional",
                   "num_groups": 3, "num_latents": 6,
                   "encoder_kernel_sizes": (4, 4, 4, 4)},
    "devae": {"name": "devae", "num_latents": 4},
}


# Their layers are the standard model's (sharing: its convs without the
# dense layer; split: its trunk, with heads of plain convolutions; devae:
# its encoder and decoder) or the fractional groups' (4,4,4,4 kernels),
# which the default suite checks: slow only.
SLOW_MODELS = ("standard_4444", "sharing", "split", "devae")


@pytest.mark.parametrize("section", [
    pytest.param(section, id=name,
                 marks=pytest.mark.slow if name in SLOW_MODELS else ())
    for name, section in MODELS.items()])
def test_reference_and_fast_models_are_one_function(section):
  """Same tree and initial values (so checkpoints of either restore in the
  other); random params applied in both give the same outputs and the same
  gradient of the reconstruction loss w.r.t. every parameter."""
  shape = (16, 16, 1)
  models = [make_model({**section, "kernels": k}, shape)
            for k in ("reference", "fast")]
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(2, *shape)),
                  jnp.float32)
  inits = jax.jit(lambda: [model.init(jax.random.key(1), x,
                                      jax.random.key(2))
                           for model in models])()  # one compile for both
  assert jax.tree.structure(inits[0]) == jax.tree.structure(inits[1])
  jax.tree.map(np.testing.assert_array_equal, *inits)
  params = random_params(inits[0])

  def loss(model, params):
    logits = model.apply(params, x, jax.random.key(3)).logits
    return jnp.sum(optax.sigmoid_binary_cross_entropy(logits, x))

  @jax.jit
  def both(params):
    return [(model.apply(params, x, jax.random.key(3)),
             jax.grad(lambda p, m=model: loss(m, p))(params))
            for model in models]

  (reference, grads_ref), (fast, grads) = both(params)
  assert np.asarray(reference.logits).std() > 1e-3  # not a constant image
  np.testing.assert_allclose(fast.z, reference.z, **TOL)
  np.testing.assert_allclose(fast.logits, reference.logits, **TOL)
  jax.tree.map(lambda g, r: np.testing.assert_allclose(
      g, r, rtol=1e-4, atol=1e-4 * float(np.abs(r).max())), grads, grads_ref)


@pytest.mark.parametrize("kernel_sizes", [(4, 4, 4, 4), (4, 4, 2, 2)])
def test_fast_fractional_groups_are_the_vmapped_ones(kernel_sizes):
  """The fractional encoder alone, its parameters batched over two members
  (as member_execution 'vmap' trains them) and 3-channel images: the same
  initial values, outputs and gradients for parameters and images."""
  groups, latents = 3, 6
  images = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3))
  encoders = [FractionalEncoder(latents, groups, kernel_sizes,
                                layers.call_groups)
              for layers in (kernels.REFERENCE, kernels.FAST)]
  inits = [e.init(jax.random.key(2), images[:1]) for e in encoders]
  jax.tree.map(np.testing.assert_array_equal, *inits)
  params = jax.vmap(lambda k: encoders[0].init(k, images[:1]))(
      jax.random.split(jax.random.key(3), 2))

  def outputs_and_grads(encoder):
    def loss(p, x):
      mean, logvar = encoder.apply(p, x)
      return kl(mean, logvar), (mean, logvar)
    grad = jax.grad(loss, argnums=(0, 1), has_aux=True)
    return jax.jit(jax.vmap(grad, in_axes=(0, None)))(params, images)

  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                       atol=1e-6),
               outputs_and_grads(encoders[1]), outputs_and_grads(encoders[0]))


def test_sequential_chunks_of_the_batch_compute_the_same_function():
  """The loop over chunks of the batch (with a last chunk padded by blank
  images) gives the vmapped encoder's outputs and its gradients for
  parameters and images alike."""
  groups, latents = 3, 6
  images = jax.random.uniform(jax.random.key(1), (5, 16, 16, 1))
  encoder = FractionalEncoder(latents, groups, (4, 4, 4, 4))
  params = encoder.init(jax.random.key(2), images[:1])

  def loss_of(apply):
    def loss(p, x):
      mean, logvar = apply(p, x)
      return kl(mean, logvar), (mean, logvar)
    return jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))

  reference = loss_of(encoder.apply)(params, images)
  for chunk in (1, 2, 5, 32):  # 5 chunks; 3 with 1 blank; 1 chunk; chunk > b
    def chunked(p, x, chunk=chunk):
      mean, logvar = fractional.sequential_lite_encoders(
          p["params"]["groups"], x, chunk=chunk)
      return mean.reshape(x.shape[0], -1), logvar.reshape(x.shape[0], -1)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                         atol=1e-6),
                 loss_of(chunked)(params, images), reference)
