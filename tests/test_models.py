"""Models: the decoder's upsampling is the transposed convolution of
lax.conv_transpose, and the conv VAE has the dlib-google shapes and
parameter count.  (tests/test_kernels.py: the fast layers compute the same
models.)"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from disentax.models import MODELS, VAE
from disentax.models.conv import conv_vae

# (batch, height, width, cin, cout): square, odd, non-square, 1 channel.
SHAPES = [(2, 4, 4, 3, 5), (1, 5, 6, 2, 3), (3, 7, 3, 1, 4), (2, 1, 1, 4, 1),
          (1, 8, 8, 16, 8)]


def random_inputs(shape, seed=0):
  """Inputs, kernel and bias from numpy (no compiles)."""
  batch, height, width, cin, cout = shape
  rng = np.random.default_rng(seed)
  normal = lambda *s: jnp.asarray(rng.standard_normal(s, np.float32))
  return (normal(batch, height, width, cin), normal(4, 4, cin, cout),
          normal(cout))


def count(params):
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params))


def shapes_of(params):
  return jax.tree.map(lambda leaf: leaf.shape, params)


def upsample(x, kernel, bias):
  """The reference 2x upsampling: a 4x4 stride-2 SAME transposed
  convolution (kernel as stored) plus bias."""
  return lax.conv_transpose(x, kernel, (2, 2), "SAME",
                            dimension_numbers=("NHWC", "HWIO", "NHWC")) + bias


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_flax_conv_transpose_is_lax_conv_transpose(shape):
  """nn.ConvTranspose(4x4, stride 2, SAME), the decoder's upsampling, has
  an HWIO kernel [4, 4, cin, cout] and a bias [cout], and computes exactly
  lax.conv_transpose + bias, output size 2H x 2W."""
  x, kernel, bias = random_inputs(shape)
  batch, height, width, cin, cout = shape
  layer = nn.ConvTranspose(cout, (4, 4), strides=(2, 2), padding="SAME")
  params = jax.eval_shape(layer.init, jax.random.key(0), x)["params"]
  assert shapes_of(params) == {"kernel": (4, 4, cin, cout), "bias": (cout,)}

  @jax.jit
  def outputs(x, kernel, bias):
    return (layer.apply({"params": {"kernel": kernel, "bias": bias}}, x),
            upsample(x, kernel, bias))

  flax_out, lax_out = outputs(x, kernel, bias)
  assert flax_out.shape == (batch, 2 * height, 2 * width, cout)
  np.testing.assert_array_equal(flax_out, lax_out)
  # Not trivially equal: the output really depends on the kernel.
  assert np.abs(np.asarray(flax_out) - np.asarray(bias)).max() > 0.1


def test_kernel_taps_match_a_hand_computed_transposed_convolution():
  """1x1 input, 1 channel: with SAME padding (2 each side) output row 2m reads
  input row m through kernel row 2 and row 2m+1 through kernel row 1
  (likewise columns), so the output is kernel[2:0:-1, 2:0:-1]."""
  kernel = jnp.arange(16.0).reshape(4, 4, 1, 1)
  x = jnp.ones((1, 1, 1, 1))
  layer = nn.ConvTranspose(1, (4, 4), strides=(2, 2), padding="SAME",
                           use_bias=False)
  np.testing.assert_array_equal(
      np.asarray(layer.apply({"params": {"kernel": kernel}}, x))[0, :, :, 0],
      [[10.0, 9.0], [6.0, 5.0]])


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
    (dict(kernels="paired"),
     r"kernels='paired'; allowed: \('auto', 'reference', 'fast'\)"),
    (dict(latent_projection="affine"),
     r"latent_projection='affine'; allowed: \('none', 'logvar_shift', "
     r"'logvar_scale'\)"),
    (dict(latent_projection="logvar_shift"),
     r"latent_projection='logvar_shift' projects the outputs of frozen "
     r"sub-encoders, so it needs encoder='fractional' \(got "
     r"encoder='standard'\)")])
def test_conv_vae_rejects_bad_options(kwargs, message):
  with pytest.raises(ValueError, match=message):
    conv_vae(observation_shape=(16, 16, 1), **kwargs)


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


# Each model kind with its (latent layers, parameter groups).
MODEL_CONTRACTS = [
    ({"name": "conv_vae"}, 1, None),
    ({"name": "conv_vae", "encoder": "split", "num_latents": 4}, 1, None),
    ({"name": "conv_vae", "encoder": "fractional", "num_groups": 2,
      "num_latents": 4}, 1, 2),
    ({"name": "fc_vae"}, 1, None),
    ({"name": "devae", "num_layers": 3}, 3, None)]


def test_the_contract_covers_every_registered_model():
  assert {section["name"] for section, _, _ in MODEL_CONTRACTS} == set(
      MODELS.names())


@pytest.mark.parametrize("section, layers, groups", MODEL_CONTRACTS,
                         ids=lambda v: str(v))
def test_every_model_offers_the_contract(section, layers, groups):
  """latent_layers, parameter_groups, and decode(z, control) with or
  without a control (shapes traced abstractly, nothing compiled); a model
  without groups refuses to scale them."""
  from disentax.models import make_model
  model = make_model(section, (16, 16, 1))
  assert model.latent_layers == layers
  assert model.parameter_groups == groups
  x = jax.ShapeDtypeStruct((2, 16, 16, 1), jnp.float32)
  rng = jax.eval_shape(jax.random.key, 0)
  params = jax.eval_shape(model.init, rng, x, rng)
  out = jax.eval_shape(model.apply, params, x, rng)
  # The control the pass ran with: none, or DeVAE's default layer 0.
  if layers == 1:
    assert out.control is None
  else:
    assert out.control.shape == () and out.control.dtype == jnp.int32
  for control in (None, jnp.int32(layers - 1) if layers > 1 else None):
    logits = jax.eval_shape(
        lambda p, z, c=control: model.apply(p, z, c, method="decode"),
        params, out.mean)
    assert logits.shape == x.shape
  if groups is None:
    with pytest.raises(ValueError, match="has no parameter groups"):
      model.scale_parameter_groups(params["params"], jnp.ones(2))


def test_plain_vae_decode_ignores_the_control_and_reports_it():
  from disentax.models import LatentGate, make_model
  model = make_model({"name": "conv_vae", "num_latents": 2}, (16, 16, 1))
  x = jnp.ones((2, 16, 16, 1))
  params = model.init(jax.random.key(0), x, jax.random.key(1))
  gate = LatentGate(jnp.array([1.0, 0.0]), jnp.ones(2))
  out = model.apply(params, x, jax.random.key(2), gate)
  assert out.control is gate
  np.testing.assert_array_equal(
      model.apply(params, out.z, gate, method="decode"),
      model.apply(params, out.z, method="decode"))


def test_scale_parameter_groups_scales_each_group_and_nothing_else():
  """Group g's leaves (stacked on axis 0) times scales[g], exactly (powers
  of two); the rest of the tree is unchanged."""
  from disentax.models import make_model
  model = make_model({"name": "conv_vae", "encoder": "fractional",
                      "num_groups": 3, "num_latents": 3}, (16, 16, 1))
  x = jnp.ones((1, 16, 16, 1))
  params = jax.eval_shape(model.init, jax.random.key(0), x,
                          jax.random.key(1))["params"]
  tree = jax.tree.map(lambda p: jnp.full(p.shape, 3.0), params)
  scales = jnp.array([0.5, 1.0, 4.0])
  scaled = model.scale_parameter_groups(tree, scales)
  leaves = jax.tree_util.tree_leaves_with_path(tree)
  scaled_leaves = dict(jax.tree_util.tree_leaves_with_path(scaled))
  assert len(scaled_leaves) == len(leaves)
  grouped = 0
  for path, leaf in leaves:
    names = [getattr(k, "key", None) for k in path]
    if names[:2] == ["encoder", "groups"]:
      grouped += 1
      for g in range(3):
        np.testing.assert_array_equal(scaled_leaves[path][g],
                                      scales[g] * leaf[g])
    else:
      np.testing.assert_array_equal(scaled_leaves[path], leaf)
  assert grouped == len(jax.tree.leaves(params["encoder"]))
  with pytest.raises(ValueError, match=r"shape \(2,\); the encoder has 3"):
    model.scale_parameter_groups(tree, jnp.ones(2))


def test_gate_sample_scales_the_reparameterisation_noise():
  """sample 0: z is the posterior mean exactly (no noise); sample 1 (the
  default): the same z as the ungated pass."""
  from disentax.models import LatentGate, make_model
  model = make_model({"name": "conv_vae", "num_latents": 3}, (16, 16, 1))
  x = jax.random.uniform(jax.random.key(0), (2, 16, 16, 1))
  params = model.init(jax.random.key(1), x, jax.random.key(2))
  ones = jnp.ones(3)
  plain = model.apply(params, x, jax.random.key(3))
  sampled = model.apply(params, x, jax.random.key(3), LatentGate(ones, ones))
  mean_only = model.apply(params, x, jax.random.key(3),
                          LatentGate(ones, ones, sample=0.0))
  np.testing.assert_array_equal(sampled.z, plain.z)
  np.testing.assert_array_equal(mean_only.z, mean_only.mean)
  np.testing.assert_array_equal(mean_only.mean, plain.mean)
  assert np.abs(np.asarray(plain.z - plain.mean)).max() > 0


@pytest.mark.parametrize("form, w2", [("logvar_shift", "logvar_shift"),
                                      ("logvar_scale", "logvar_log_scale")])
def test_latent_projection_adds_only_its_parameters(form, w2):
  """A fractional VAE without the option keeps its parameter tree; with it,
  the tree gains the projection's W1, W2 (one per latent, zeros), which
  scale_parameter_groups leaves alone.  Nothing is projected without a
  gate's `project`; projected at W = 0 the outputs are the plain ones."""
  from disentax.models import LatentGate, make_model
  section = {"name": "conv_vae", "encoder": "fractional", "num_groups": 2,
             "num_latents": 4}
  plain_model = make_model(section, (16, 16, 1))
  model = make_model({**section, "latent_projection": form}, (16, 16, 1))
  assert plain_model.latent_projection == "none"
  assert model.latent_projection == form
  x = jax.random.uniform(jax.random.key(0), (2, 16, 16, 1))
  plain = plain_model.init(jax.random.key(1), x, jax.random.key(2))["params"]
  params = model.init(jax.random.key(1), x, jax.random.key(2))["params"]
  assert set(plain) == {"encoder", "decoder"}
  assert set(params) == {"encoder", "decoder", "projection"}
  jax.tree.map(np.testing.assert_array_equal,
               {k: params[k] for k in plain}, plain)
  assert jax.tree.map(jnp.shape, params["projection"]) == {
      "mean_log_scale": (4,), w2: (4,)}
  for leaf in jax.tree.leaves(params["projection"]):
    np.testing.assert_array_equal(leaf, 0.0)
  tree = jax.tree.map(jnp.ones_like, params)
  scaled = model.scale_parameter_groups(tree, jnp.zeros(2))
  jax.tree.map(np.testing.assert_array_equal, scaled["projection"],
               tree["projection"])
  ones = jnp.ones(4)
  expected = plain_model.apply({"params": plain}, x, method="encode")
  for gate in (None, LatentGate(ones, ones), LatentGate(ones, ones,
                                                         project=ones)):
    got = model.apply({"params": params}, x, gate, method="encode")
    jax.tree.map(np.testing.assert_array_equal, got, expected)
