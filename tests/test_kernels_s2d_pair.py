"""The first two layers in space-to-depth layout (models/kernels/s2d_pair.py)
are two reference stride-2 layers (lax.conv, 4x4, SAME, bias, ReLU) with
the reference gradients, and the first layer's output is exactly the
space-to-depth view of the zero-padded map.  Inputs drawn with numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from disentax.models.kernels import s2d_pair, stride2

NHWC = ("NHWC", "HWIO", "NHWC")


def normal(rng, *shape):
  return jnp.asarray(rng.standard_normal(shape, np.float32))


def two_reference_layers(x, k0, b0, k1, b1):
  def layer(v, k, b):
    return jax.nn.relu(lax.conv_general_dilated(v, k, (2, 2), "SAME",
                                                dimension_numbers=NHWC) + b)
  return layer(layer(x, k0, b0), k1, b1)


def two_s2d_layers(x, k0, b0, k1, b1):
  z = s2d_pair.first_layer(s2d_pair.first_windows(x), k0, b0)
  return jax.nn.relu(s2d_pair.down_of_s2d(z, k1) + b1)


# (batch, height, width, cin, mid, cout): one channel (dSprites), RGB, a
# non-square image (rows and columns kept apart), a 4x4 image (one cell).
SHAPES = [(2, 16, 16, 1, 8, 8), (1, 8, 8, 3, 5, 4), (2, 16, 8, 1, 4, 6),
          (3, 4, 4, 2, 3, 2)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_two_layers_equal_the_reference_with_their_gradients(shape):
  batch, height, width, cin, mid, cout = shape
  rng = np.random.default_rng(0)
  args = (normal(rng, batch, height, width, cin), normal(rng, 4, 4, cin, mid),
          0.1 * normal(rng, mid), normal(rng, 4, 4, mid, cout),
          0.1 * normal(rng, cout))
  weights = normal(rng, batch, height // 4, width // 4, cout)

  def value_and_grads(layers):
    def functional(*args):
      return jnp.sum(weights * layers(*args))
    return layers(*args), jax.grad(functional, argnums=range(5))(*args)

  out, grads = jax.jit(lambda: value_and_grads(two_s2d_layers))()
  out_ref, grads_ref = value_and_grads(two_reference_layers)
  assert out.shape == out_ref.shape == (batch, height // 4, width // 4, cout)
  np.testing.assert_allclose(out, out_ref, rtol=1e-5, atol=1e-5)
  for grad, grad_ref in zip(grads, grads_ref):
    assert grad.shape == grad_ref.shape
    np.testing.assert_allclose(grad, grad_ref, rtol=1e-5, atol=1e-4)
    assert np.abs(np.asarray(grad_ref)).max() > 0.1  # not vacuous


def test_first_layer_is_the_space_to_depth_view_of_the_padded_map():
  rng = np.random.default_rng(1)
  x = normal(rng, 2, 8, 12, 1)
  kernel, bias = normal(rng, 4, 4, 1, 3), normal(rng, 3)
  z = s2d_pair.first_layer(s2d_pair.first_windows(x), kernel, bias)
  layer = jax.nn.relu(lax.conv_general_dilated(
      x, kernel, (2, 2), "SAME", dimension_numbers=NHWC) + bias)
  padded = jnp.pad(layer, ((0, 0), (1, 1), (1, 1), (0, 0)))
  np.testing.assert_allclose(z, stride2.space_to_depth(padded), rtol=1e-5,
                             atol=1e-5)
  # The padding ring is exactly zero despite the bias (cell (0, 0), phase
  # (0, 0) is the map's pixel (-1, -1)).
  assert z.shape == (2, 3, 4, 12) and np.all(np.asarray(z[:, 0, :, :6]) == 0)


@pytest.mark.parametrize("kernels, shape, expected", [
    (((4, 4, 1, 8), (4, 4, 8, 8)), (2, 64, 64, 1), True),
    (((4, 4, 1, 8), (2, 2, 8, 8)), (2, 64, 64, 1), False),
    (((2, 2, 1, 8), (4, 4, 8, 8)), (2, 64, 64, 1), False),
    (((4, 4, 1, 8), (4, 4, 8, 8)), (2, 18, 18, 1), False)])
def test_applies_to_two_4x4_layers_on_sides_divisible_by_4(kernels, shape,
                                                           expected):
  assert s2d_pair.applies(jnp.zeros(shape), *kernels) is expected
