"""The paired stride-2 convolutions (models/kernels/stride2.py) compute the
reference layers exactly, with the reference gradients, and read the same
parameters.

Reference: lax.conv_general_dilated (stride 2, SAME) for the encoder and
lax.conv_transpose (4x4, stride 2, SAME) for the decoder, differentiated by
autodiff.  Inputs are drawn with numpy; sizes are small."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from disentax.models.kernels import stride2

NHWC = ("NHWC", "HWIO", "NHWC")
TOL = dict(rtol=1e-5, atol=1e-5)
GRAD_TOL = dict(rtol=1e-5, atol=1e-4)


def normal(rng, *shape):
  return jnp.asarray(rng.standard_normal(shape, np.float32))


def reference_down(x, kernel):
  return lax.conv_general_dilated(x, kernel, (2, 2), "SAME",
                                  dimension_numbers=NHWC)


def reference_up(y, kernel):
  return lax.conv_transpose(y, kernel, (2, 2), "SAME", dimension_numbers=NHWC)


def value_and_grads(conv, x, kernel, weights):
  """conv(x, k) and the gradients of a random linear functional of it."""
  def functional(x, k):
    return jnp.sum(weights * conv(x, k))
  return conv(x, kernel), jax.grad(functional, argnums=(0, 1))(x, kernel)


def assert_same(conv, reference, x, kernel, seed=1):
  rng = np.random.default_rng(seed)
  out_ref = reference(x, kernel)
  weights = normal(rng, *out_ref.shape)
  out, grads = jax.jit(lambda x, k: value_and_grads(conv, x, k, weights))(
      x, kernel)
  _, grads_ref = value_and_grads(reference, x, kernel, weights)
  assert out.shape == out_ref.shape
  np.testing.assert_allclose(out, out_ref, **TOL)
  for grad, grad_ref in zip(grads, grads_ref):
    assert grad.shape == grad_ref.shape
    np.testing.assert_allclose(grad, grad_ref, **GRAD_TOL)
    assert np.abs(np.asarray(grad_ref)).max() > 0.1  # not vacuous


# (batch, height, width, cin, cout).  Both kernel-gradient branches: cout >
# 4 cin (1 -> 8, the first encoder layer's case) and cout <= 4 cin.
DOWN_SHAPES = [(2, 8, 8, 1, 8), (2, 8, 6, 3, 5), (1, 4, 4, 16, 4),
               (3, 2, 2, 2, 3), (2, 16, 16, 8, 8)]


@pytest.mark.parametrize("shape", DOWN_SHAPES, ids=str)
@pytest.mark.parametrize("size", [4, 2])
def test_strided_conv_equals_lax_conv_with_its_gradients(shape, size):
  batch, height, width, cin, cout = shape
  rng = np.random.default_rng(0)
  x = normal(rng, batch, height, width, cin)
  kernel = normal(rng, size, size, cin, cout)
  assert_same(stride2.strided_conv, reference_down, x, kernel)


# Both forward branches of `up`: 16 cout <= cin (overlap-add, the last
# decoder layer's case) and the phase convolution; odd and non-square sides.
UP_SHAPES = [(2, 4, 4, 3, 5), (1, 5, 6, 2, 3), (3, 7, 3, 1, 4),
             (2, 1, 1, 4, 1), (2, 4, 4, 32, 1), (1, 3, 5, 17, 1),
             (2, 8, 8, 16, 8)]


@pytest.mark.parametrize("shape", UP_SHAPES, ids=str)
def test_up_equals_conv_transpose_with_its_gradients(shape):
  batch, height, width, cin, cout = shape
  rng = np.random.default_rng(2)
  x = normal(rng, batch, height, width, cin)
  kernel = normal(rng, 4, 4, cin, cout)
  assert_same(stride2.up, reference_up, x, kernel)


def test_up_equals_flax_conv_transpose():
  rng = np.random.default_rng(3)
  x, kernel = normal(rng, 2, 4, 6, 3), normal(rng, 4, 4, 3, 5)
  flax_layer = nn.ConvTranspose(5, (4, 4), strides=(2, 2), padding="SAME",
                                use_bias=False)
  np.testing.assert_allclose(
      stride2.up(x, kernel),
      flax_layer.apply({"params": {"kernel": kernel}}, x), **TOL)


def test_up_and_down_are_adjoint():
  """<down(x, k), y> = <x, up(y, k*)> with k* the adjoint kernel (flipped,
  in/out swapped), which is also an involution."""
  rng = np.random.default_rng(4)
  x, kernel = normal(rng, 2, 8, 8, 3), normal(rng, 4, 4, 3, 5)
  y = normal(rng, 2, 4, 4, 5)
  star = stride2.adjoint_kernel(kernel)
  assert star.shape == (4, 4, 5, 3)
  np.testing.assert_array_equal(stride2.adjoint_kernel(star), kernel)
  left = jnp.vdot(stride2.down(x, kernel), y)
  right = jnp.vdot(x, stride2.up(y, star))
  np.testing.assert_allclose(left, right, rtol=1e-5)
  assert abs(float(left)) > 1.0


def test_kernel_grad_of_a_single_pixel_pair_is_one_tap():
  """x is one 1 at (row 3, col 2), dy one 1 at (1, 1): with SAME padding (1)
  output (1, 1) reads input rows 1..4 and columns 1..4, so the gradient is
  1 at tap (3 - 1, 2 - 1) = (2, 1) and 0 elsewhere, for both branches."""
  for cin, cout in ((1, 8), (4, 2)):
    x = jnp.zeros((1, 8, 8, cin)).at[0, 3, 2, 0].set(1.0)
    dy = jnp.zeros((1, 4, 4, cout)).at[0, 1, 1, cout - 1].set(1.0)
    expected = np.zeros((4, 4, cin, cout), np.float32)
    expected[2, 1, 0, cout - 1] = 1.0
    np.testing.assert_array_equal(stride2.kernel_grad(x, dy), expected)


def test_odd_inputs_fall_back_to_xla():
  rng = np.random.default_rng(5)
  x, kernel = normal(rng, 1, 5, 7, 2), normal(rng, 4, 4, 2, 3)
  assert_same(stride2.strided_conv, reference_down, x, kernel)


def check_drop_in(fast, flax_layer, x, seed=7):
  """`fast` creates flax_layer's parameter tree with the same initial values
  and computes its function, with a bias too; returns the output."""
  expected_params = flax_layer.init(jax.random.key(seed), x)
  params = fast.init(jax.random.key(seed), x)
  jax.tree.map(np.testing.assert_array_equal, params, expected_params)
  inner = params["params"]
  if "bias" in inner:
    params = {"params": {**inner, "bias": jnp.arange(
        inner["bias"].shape[0], dtype=jnp.float32)}}
  out = fast.apply(params, x)
  np.testing.assert_allclose(out, flax_layer.apply(params, x), **TOL)
  return out


@pytest.mark.parametrize("size", [4, 2])
@pytest.mark.parametrize("strides, sides", [((2, 2), (8, 8)), (2, (8, 6)),
                                            ((2, 2), (5, 7)), ((1, 1), (8, 8))])
def test_conv_is_flax_conv(size, strides, sides):
  """stride2.Conv is nn.Conv: same parameters and initial values, same
  output (the paired formulation for stride 2 on even sides, flax's own
  layer otherwise)."""
  x = normal(np.random.default_rng(6), 2, *sides, 3)
  options = dict(strides=strides, padding="SAME")
  check_drop_in(stride2.Conv(5, (size, size), **options),
                nn.Conv(5, (size, size), **options), x)
  check_drop_in(stride2.Conv(5, (size, size), use_bias=False, **options),
                nn.Conv(5, (size, size), use_bias=False, **options), x)


@pytest.mark.parametrize("kernel_size, strides, padding", [
    ((4, 4), (2, 2), "SAME"), ((4, 4), 2, "SAME"), ((3, 3), (2, 2), "SAME"),
    ((4, 4), (2, 2), "VALID")])
def test_conv_transpose_is_flax_conv_transpose(kernel_size, strides, padding):
  """stride2.ConvTranspose is nn.ConvTranspose: same parameters and initial
  values, same output (`up` for the 4x4 stride-2 SAME layer, flax's own
  otherwise)."""
  x = normal(np.random.default_rng(6), 2, 4, 3, 6)
  options = dict(strides=strides, padding=padding)
  check_drop_in(stride2.ConvTranspose(5, kernel_size, **options),
                nn.ConvTranspose(5, kernel_size, **options), x)


def test_drop_ins_use_the_paired_formulation():
  """The covered layers really are computed by `strided_conv` / `up` (their
  jaxprs call the custom gradients), the others are not."""
  x = jnp.zeros((1, 8, 8, 2))

  def custom_calls(layer):
    params = layer.init(jax.random.key(0), x)
    return str(jax.make_jaxpr(layer.apply)(params, x)).count("custom_vjp")

  assert custom_calls(stride2.Conv(3, (4, 4), strides=(2, 2))) == 1
  assert custom_calls(stride2.Conv(3, (4, 4), strides=(1, 1))) == 0
  assert custom_calls(stride2.ConvTranspose(3, (4, 4), strides=(2, 2))) == 1
  assert custom_calls(nn.ConvTranspose(3, (4, 4), strides=(2, 2))) == 0
