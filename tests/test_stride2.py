"""The paired stride-2 convolutions (models/stride2.py) compute the reference
layers exactly, with the reference gradients, and read the same parameters.

Reference: lax.conv_general_dilated (stride 2, SAME) for the encoder and
lax.conv_transpose (4x4, stride 2, SAME) for the decoder, differentiated by
autodiff.  Inputs are drawn with numpy; sizes are small."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from disentax.models import stride2
from disentax.models.upsample import transpose_conv

NHWC = ("NHWC", "HWIO", "NHWC")
TOL = dict(rtol=1e-5, atol=1e-5)
GRAD_TOL = dict(rtol=1e-5, atol=1e-4)


def normal(rng, *shape):
  return jnp.asarray(rng.standard_normal(shape, np.float32))


def reference_down(x, kernel):
  return lax.conv_general_dilated(x, kernel, (2, 2), "SAME",
                                  dimension_numbers=NHWC)


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
  assert_same(stride2.up, transpose_conv, x, kernel)


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


def test_downsample2x_is_flax_conv_in_both_formulations():
  """Same parameter tree and initial values as nn.Conv (so checkpoints and
  seeds carry over) and the same output from either formulation."""
  x = normal(np.random.default_rng(6), 2, 8, 8, 3)
  flax_conv = nn.Conv(5, (4, 4), strides=(2, 2), padding="SAME")
  expected_params = flax_conv.init(jax.random.key(7), x)
  expected = flax_conv.apply(expected_params, x)
  for formulation in stride2.DOWNSAMPLINGS:
    layer = stride2.Downsample2x(5, 4, formulation)
    params = layer.init(jax.random.key(7), x)
    jax.tree.map(np.testing.assert_array_equal, params, expected_params)
    bias = {"params": {**params["params"],
                       "bias": jnp.arange(5.0)}}
    np.testing.assert_allclose(
        layer.apply(bias, x),
        flax_conv.apply(bias, x), **TOL)
    np.testing.assert_allclose(layer.apply(params, x), expected, **TOL)


def test_downsample2x_rejects_unknown_formulation():
  with pytest.raises(ValueError, match=r"'strided'.*'conv', 'paired'"):
    stride2.Downsample2x(3, 4, "strided").init(jax.random.key(0),
                                               jnp.zeros((1, 4, 4, 1)))


@pytest.mark.parametrize("groups", [1, 3])
def test_input_grad_of_a_grouped_conv_is_autodiffs(groups):
  """The grouped transposed convolution by phase = jax's input gradient of
  the grouped strided convolution (DEFT's stacked sub-encoders use it)."""
  rng = np.random.default_rng(8)
  x = normal(rng, 2, 8, 6, 2 * groups)
  kernel = normal(rng, 4, 4, 2, 5 * groups)
  dy = normal(rng, 2, 4, 3, 5 * groups)

  def conv(x):
    return lax.conv_general_dilated(x, kernel, (2, 2), "SAME",
                                    dimension_numbers=NHWC,
                                    feature_group_count=groups)
  expected = jax.vjp(conv, x)[1](dy)[0]
  np.testing.assert_allclose(stride2.input_grad(dy, kernel, groups),
                             expected, **GRAD_TOL)
  assert np.abs(np.asarray(expected)).max() > 0.1


def test_grouped_adjoint_kernel_is_each_groups_adjoint():
  rng = np.random.default_rng(9)
  kernel = normal(rng, 4, 4, 2, 3 * 5)  # 3 groups of 2 -> 5 channels
  star = stride2.adjoint_kernel(kernel, 3)
  assert star.shape == (4, 4, 5, 3 * 2)
  for g in range(3):
    np.testing.assert_array_equal(
        star[..., 2 * g:2 * g + 2],
        stride2.adjoint_kernel(kernel[..., 5 * g:5 * g + 5]))

