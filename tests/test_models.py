"""Models: the stride-2 layers' formulations are one function with one parameter
layout, and the conv VAE has the dlib-google shapes and parameter count."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from disentax.models import MODELS, VAE
from disentax.models.conv import conv_vae
from disentax.models.upsample import Upsample2x, subpixel_conv, transpose_conv

# (batch, height, width, cin, cout): square, odd, non-square, 1 channel.
SHAPES = [(2, 4, 4, 3, 5), (1, 5, 6, 2, 3), (3, 7, 3, 1, 4), (2, 1, 1, 4, 1),
          (1, 8, 8, 16, 8)]
TOL = dict(rtol=1e-5, atol=1e-5)


def random_inputs(shape, seed=0):
  """Inputs, kernel, bias and functional weights from numpy (no compiles)."""
  batch, height, width, cin, cout = shape
  rng = np.random.default_rng(seed)
  normal = lambda *s: jnp.asarray(rng.standard_normal(s, np.float32))
  return (normal(batch, height, width, cin), normal(4, 4, cin, cout),
          normal(cout), normal(batch, 2 * height, 2 * width, cout))


def random_params(abstract, seed=0):
  """Concrete params shaped like `abstract`, scaled by 1/sqrt(fan-in), drawn
  with numpy (initialising with jax compiles a large program)."""
  rng = np.random.default_rng(seed)

  def draw(leaf):
    fan_in = np.prod(leaf.shape[:-1]) if len(leaf.shape) > 1 else 10.0
    return jnp.asarray(rng.standard_normal(leaf.shape, np.float32)
                       / np.sqrt(fan_in))

  return jax.tree.map(draw, abstract)


def count(params):
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params))


def shapes_of(params):
  return jax.tree.map(lambda leaf: leaf.shape, params)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_subpixel_equals_transpose_and_flax_conv_transpose(shape):
  """subpixel == lax.conv_transpose == flax ConvTranspose(4x4, stride 2,
  SAME) with the same kernel and bias, output size exactly 2H x 2W."""
  x, kernel, bias, _ = random_inputs(shape)
  batch, height, width, _, cout = shape
  reference = nn.ConvTranspose(cout, (4, 4), strides=(2, 2), padding="SAME")

  @jax.jit
  def outputs(x, kernel, bias):
    return (reference.apply({"params": {"kernel": kernel, "bias": bias}}, x),
            transpose_conv(x, kernel) + bias, subpixel_conv(x, kernel) + bias)

  flax_out, transpose_out, subpixel_out = outputs(x, kernel, bias)
  assert subpixel_out.shape == (batch, 2 * height, 2 * width, cout)
  np.testing.assert_allclose(transpose_out, flax_out, **TOL)
  np.testing.assert_allclose(subpixel_out, flax_out, **TOL)
  # Not trivially equal: the output really depends on the kernel.
  assert np.abs(np.asarray(flax_out) - np.asarray(bias)).max() > 0.1


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_subpixel_and_transpose_have_the_same_gradients(shape):
  """Gradients of a random linear functional w.r.t. input and kernel agree."""
  x, kernel, _, weights = random_inputs(shape, seed=1)

  def functional(conv):
    return lambda x, k: jnp.sum(weights * conv(x, k))

  grads_t = jax.grad(functional(transpose_conv), argnums=(0, 1))(x, kernel)
  grads_s = jax.grad(functional(subpixel_conv), argnums=(0, 1))(x, kernel)
  for gt, gs in zip(grads_t, grads_s):
    assert gt.shape == gs.shape
    np.testing.assert_allclose(gs, gt, rtol=1e-5, atol=1e-4)
    assert np.abs(np.asarray(gt)).max() > 0.1


def test_kernel_taps_match_a_hand_computed_transposed_convolution():
  """1x1 input, 1 channel: with SAME padding (2 each side) output row 2m reads
  input row m through kernel row 2 and row 2m+1 through kernel row 1
  (likewise columns), so the output is kernel[2:0:-1, 2:0:-1]."""
  kernel = jnp.arange(16.0).reshape(4, 4, 1, 1)
  x = jnp.ones((1, 1, 1, 1))
  expected = np.array([[10.0, 9.0], [6.0, 5.0]])
  for conv in (transpose_conv, subpixel_conv):
    np.testing.assert_array_equal(np.asarray(conv(x, kernel))[0, :, :, 0],
                                  expected)


def test_upsample2x_formulations_share_params_and_outputs():
  """Same param tree (names/shapes), hence interchangeable checkpoints, and
  the same output for the same params."""
  x, _, _, _ = random_inputs((2, 5, 6, 3, 7), seed=2)
  transpose = Upsample2x(7, formulation="transpose")
  subpixel = Upsample2x(7, formulation="subpixel")
  params_t = jax.eval_shape(transpose.init, jax.random.key(3), x)["params"]
  params_s = jax.eval_shape(subpixel.init, jax.random.key(3), x)["params"]
  assert shapes_of(params_t) == shapes_of(params_s) == {
      "kernel": (4, 4, 3, 7), "bias": (7,)}
  params = random_params(params_t)  # non-zero bias, so it is exercised too

  @jax.jit
  def both(params, x):
    return (transpose.apply({"params": params}, x),
            subpixel.apply({"params": params}, x))

  out_t, out_s = both(params, x)
  assert out_t.shape == (2, 10, 12, 7)
  np.testing.assert_allclose(out_s, out_t, **TOL)


def test_upsample2x_rejects_unknown_formulation():
  with pytest.raises(ValueError, match=r"'nearest'.*transpose.*subpixel"):
    Upsample2x(3, formulation="nearest").init(jax.random.key(0),
                                              jnp.zeros((1, 2, 2, 1)))


@pytest.mark.parametrize("observation_shape",
                         [(16, 16, 1), (32, 32, 1), (64, 64, 1), (64, 64, 3)])
def test_conv_vae_shapes(observation_shape):
  """Encoder heads are [b, 10]; decoder logits have the observation shape
  (shapes traced abstractly with eval_shape: the model's own chex shape
  assertions run, nothing is compiled)."""
  model = conv_vae(observation_shape=observation_shape)
  x = jax.ShapeDtypeStruct((3, *observation_shape), jnp.float32)
  rng = jax.eval_shape(jax.random.key, 0)
  params = jax.eval_shape(model.init, rng, x, rng)
  out = jax.eval_shape(model.apply, params, x, rng)
  assert out.mean.shape == out.logvar.shape == out.z.shape == (3, 10)
  assert out.logits.shape == x.shape
  mean, logvar = jax.eval_shape(
      lambda p, x: model.apply(p, x, method=VAE.encode), params, x)
  assert mean.shape == logvar.shape == (3, 10)
  logits = jax.eval_shape(lambda p, z: model.apply(p, z, method=VAE.decode),
                          params, mean)
  assert logits.shape == x.shape


def dlib_google_parameter_count(channels=1, num_latents=10):
  """Weights + biases of the dlib-google conv VAE for 64x64 images, from its
  layer list (conv kernels k*k*Cin*Cout, dense Din*Dout)."""
  encoder_convs = [(4, channels, 32), (4, 32, 32), (2, 32, 64), (2, 64, 64)]
  denses = [(4 * 4 * 64, 256), (256, num_latents), (256, num_latents),
            (num_latents, 256), (256, 4 * 4 * 64)]
  decoder_deconvs = [(4, 64, 64), (4, 64, 32), (4, 32, 32), (4, 32, channels)]
  total = 0
  for k, cin, cout in encoder_convs + decoder_deconvs:
    total += k * k * cin * cout + cout
  for din, dout in denses:
    total += din * dout + dout
  return total


def test_conv_vae_parameter_count_is_dlib_googles():
  """The 64x64x1 model with encoder kernels (4,4,2,2) has exactly the
  hand-computed count of disentanglement_lib's conv encoder/deconv decoder,
  and each conv/deconv kernel has the HWIO shape of its layer."""
  assert dlib_google_parameter_count() == 690_517
  model = MODELS.get("conv_vae")(observation_shape=(64, 64, 1),
                                 encoder_kernel_sizes=(4, 4, 2, 2))
  x = jnp.zeros((1, 64, 64, 1))
  params = jax.eval_shape(model.init, jax.random.key(0), x,
                          jax.random.key(1))["params"]
  assert count(params) == dlib_google_parameter_count()
  kernels = sorted(leaf.shape for leaf in jax.tree.leaves(params)
                   if leaf.ndim == 4)
  assert kernels == sorted([
      (4, 4, 1, 32), (4, 4, 32, 32), (2, 2, 32, 64), (2, 2, 64, 64),
      (4, 4, 64, 64), (4, 4, 64, 32), (4, 4, 32, 32), (4, 4, 32, 1)])


def test_conv_vae_encoder_kernel_sizes_change_the_count():
  """(4,4,4,4) adds 12 taps x 32x64 and 12 x 64x64 weights to (4,4,2,2)."""
  counts = {}
  for sizes in ((4, 4, 2, 2), (4, 4, 4, 4)):
    model = conv_vae(observation_shape=(16, 16, 1), encoder_kernel_sizes=sizes)
    counts[sizes] = count(jax.eval_shape(
        model.init, jax.random.key(0), jnp.zeros((1, 16, 16, 1)),
        jax.random.key(1)))
  assert counts[(4, 4, 4, 4)] - counts[(4, 4, 2, 2)] == 12 * (32 * 64 + 64 * 64)


FORMULATIONS = [dict(upsampling="transpose", downsampling="conv"),
                dict(upsampling="subpixel", downsampling="conv"),
                dict(upsampling="paired", downsampling="paired")]


@pytest.mark.parametrize("kernel_sizes", [(4, 4, 2, 2), (4, 4, 4, 4)])
def test_formulations_give_identical_vaes_and_gradients(kernel_sizes):
  """Same params (init with the reference, apply with every formulation) ->
  same logits, and the same gradient of the reconstruction loss w.r.t. every
  parameter: the fast formulations compute the reference function."""
  shape = (16, 16, 1)
  models = [conv_vae(observation_shape=shape,
                     encoder_kernel_sizes=kernel_sizes, **options)
            for options in FORMULATIONS]
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(2, *shape)),
                  jnp.float32)
  abstract = [jax.eval_shape(model.init, jax.random.key(1), x,
                             jax.random.key(2)) for model in models]
  for other in abstract[1:]:
    assert shapes_of(other) == shapes_of(abstract[0])
  params = random_params(abstract[0])

  def loss(model, params):
    logits = model.apply(params, x, jax.random.key(3)).logits
    return jnp.sum(optax.sigmoid_binary_cross_entropy(logits, x))

  @jax.jit
  def all_of_them(params):
    return [(model.apply(params, x, jax.random.key(3)),
             jax.grad(lambda p, m=model: loss(m, p))(params))
            for model in models]

  (reference, grads_ref), *others = all_of_them(params)
  assert np.asarray(reference.logits).std() > 1e-3  # not a constant image
  for out, grads in others:
    np.testing.assert_allclose(out.z, reference.z, **TOL)
    np.testing.assert_allclose(out.logits, reference.logits, **TOL)
    jax.tree.map(lambda g, r: np.testing.assert_allclose(
        g, r, rtol=1e-4, atol=1e-4 * float(np.abs(r).max())), grads,
        grads_ref)


@pytest.mark.parametrize("observation_shape, bad", [
    ((40, 40, 1), "40x40"), ((8, 8, 1), "8x8"), ((32, 16, 1), "32x16"),
    ((0, 0, 1), "0x0")])
def test_conv_vae_rejects_image_sizes(observation_shape, bad):
  with pytest.raises(ValueError) as error:
    conv_vae(observation_shape=observation_shape)
  assert bad in str(error.value)
  assert "multiple of 16" in str(error.value)


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_latents=0), r"num_latents=0; must be an integer >= 1"),
    (dict(num_latents=-3), r"num_latents=-3; must be an integer >= 1"),
    (dict(encoder_kernel_sizes=(4, 4, 2)), r"\(4, 4, 2\).*4 positive sizes"),
    (dict(encoder_kernel_sizes=(4, 4, 0, 2)), r"\(4, 4, 0, 2\)"),
    (dict(upsampling="bilinear"), r"'bilinear'.*transpose.*subpixel.*paired"),
    (dict(downsampling="pool"), r"downsampling='pool'.*'conv', 'paired'")])
def test_conv_vae_rejects_bad_options(kwargs, message):
  with pytest.raises(ValueError, match=message):
    conv_vae(observation_shape=(16, 16, 1), **kwargs)


@pytest.mark.parametrize("backend, upsampling, downsampling", [
    ("cpu", "paired", "paired"), ("gpu", "transpose", "conv"),
    ("tpu", "transpose", "conv")])
@pytest.mark.parametrize("name", ["conv_vae", "devae"])
def test_auto_stride2_formulations_follow_the_backend(
    monkeypatch, name, backend, upsampling, downsampling):
  import jax
  from disentax.models import make_model
  monkeypatch.setattr(jax, "default_backend", lambda: backend)
  model = make_model({"name": name}, (16, 16, 1))
  assert model.decoder.upsampling == upsampling
  assert model.encoder.downsampling == downsampling
  # An explicit choice is kept on every backend.
  model = make_model({"name": name, "upsampling": "subpixel",
                      "downsampling": "paired"}, (16, 16, 1))
  assert (model.decoder.upsampling, model.encoder.downsampling) == (
      "subpixel", "paired")


def test_fc_vae_is_the_beta_tcvae_paper_architecture():
  import jax
  import jax.numpy as jnp
  from disentax.models import make_model
  model = make_model({"name": "fc_vae"}, (64, 64, 1))
  x = jnp.zeros((2, 64, 64, 1))
  params = model.init(jax.random.key(0), x, jax.random.key(1))["params"]
  count = lambda tree: sum(p.size for p in jax.tree.leaves(tree))
  pixels = 64 * 64
  assert count(params["encoder"]) == (pixels * 1200 + 1200 + 1200 * 1200
                                      + 1200 + 2 * (1200 * 10 + 10))
  assert count(params["decoder"]) == (10 * 1200 + 1200
                                      + 2 * (1200 * 1200 + 1200)
                                      + 1200 * pixels + pixels)
  out = model.apply({"params": params}, x, jax.random.key(2))
  assert out.logits.shape == (2, 64, 64, 1) and out.mean.shape == (2, 10)
