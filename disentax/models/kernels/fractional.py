"""The fractional encoder's groups as loops of ordinary convolutions: the
same function as its vmapped groups, fast on XLA:CPU.

The fractional encoder (models/conv.py) applies G sub-encoders to the same
images as one nn.vmap-ed module whose parameters are stacked over the
groups on axis 0.  Each sub-encoder is a LiteEncoder: stride-2 'SAME' ReLU
convolutions Conv_0 .. Conv_{n-1}, a ReLU dense layer Dense_0 on the
flattened map, Gaussian heads `mean` and `logvar`.  jax.vmap turns their
convolutions into grouped convolutions, which XLA:CPU runs far slower than
the same groups as separate ordinary convolutions (G = 10, 32x32, 8 -> 8
channels per group: 90 ms against 12 ms) and differentiates slower still.
`call_groups` computes the same function from the same parameters with
`sequential_lite_encoders` (tests/test_kernels.py checks values and
gradients against the vmapped groups).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from disentax.models.kernels import s2d_pair, stride2

# Images per step of the loop over the batch: one group's 32x32x8 maps of 32
# images (1 MB) stay in cache from its forward through its gradients, where a
# whole batch of 256 (8 MB) streams every layer from memory (measured:
# BUILD_NOTES.md, the fractional encoder benchmark).
SEQUENTIAL_CHUNK = 32


def _dense_and_heads(params: Any, features: jax.Array
                     ) -> tuple[jax.Array, jax.Array]:
  """LiteEncoder's dense layer and Gaussian heads on flat features [b, f]:
  (mean, log-variance) [b, K]."""
  def dense(name, x):
    return x @ params[name]["kernel"] + params[name]["bias"]
  hidden = nn.relu(dense("Dense_0", features))
  return dense("mean", hidden), dense("logvar", hidden)


def sequential_lite_encoders(params: Any, x: jax.Array,
                             chunk: int = SEQUENTIAL_CHUNK
                             ) -> tuple[jax.Array, jax.Array]:
  """The G LiteEncoders whose parameters `params` are stacked on a leading
  axis G (as nn.vmap stores them), applied to the shared images x [b, H, W,
  C]: (mean, log-variance) [b, G, K], the vmapped module's function.

  Written as loops that keep each step's maps small: a lax.map over chunks
  of `chunk` images of a lax.map over the groups of one LiteEncoder on that
  chunk, its layers ordinary convolutions.

  - Each (chunk, group) forward pass is recomputed in the backward pass
    (jax.checkpoint) instead of stored: stored, the loops would write every
    group's activations into stacked buffers and read them back, which cost
    more than the recomputation.
  - Where the first two layers are 4x4, all groups' first layers read one
    set of image windows, built once per batch, and pass the second layer
    its map in space-to-depth layout (kernels/s2d_pair.py); the other layers
    are `stride2.strided_conv` (paired gradients).
  - A batch that is not a multiple of `chunk` is padded with blank images
    whose outputs are dropped (so they add nothing to any gradient).

  One program for any G and batch size."""
  batch = x.shape[0]
  chunk = min(chunk, batch)
  num_chunks = -(-batch // chunk)
  num_convs = sum(name.startswith("Conv_") for name in params)
  first, second = (params[f"Conv_{i}"]["kernel"].shape[1:] for i in (0, 1))
  shared_windows = s2d_pair.applies(x, first, second)
  inputs = s2d_pair.first_windows(x) if shared_windows else x
  padding = [(0, num_chunks * chunk - batch)] + [(0, 0)] * (inputs.ndim - 1)
  chunks = jnp.pad(inputs, padding).reshape(num_chunks, chunk,
                                            *inputs.shape[1:])

  @jax.checkpoint
  def one_chunk(group_params: Any, inputs: jax.Array
                ) -> tuple[jax.Array, jax.Array]:
    layers = [group_params[f"Conv_{i}"] for i in range(num_convs)]
    y = inputs
    if shared_windows:
      z = s2d_pair.first_layer(inputs, layers[0]["kernel"], layers[0]["bias"])
      y = nn.relu(s2d_pair.down_of_s2d(z, layers[1]["kernel"])
                  + layers[1]["bias"])
      layers = layers[2:]
    for layer in layers:
      y = nn.relu(stride2.strided_conv(y, layer["kernel"]) + layer["bias"])
    return _dense_and_heads(group_params, y.reshape(chunk, -1))

  def all_groups(inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
    return lax.map(lambda group_params: one_chunk(group_params, inputs),
                   params)

  mean, logvar = lax.map(all_groups, chunks)        # [chunks, G, chunk, K]

  def batch_major(v: jax.Array) -> jax.Array:
    num_groups = v.shape[1]
    return v.transpose(0, 2, 1, 3).reshape(num_chunks * chunk, num_groups,
                                           -1)[:batch]

  return batch_major(mean), batch_major(logvar)


def call_groups(groups: nn.Module, x: jax.Array
                ) -> tuple[jax.Array, jax.Array]:
  """`groups(x)` for the fractional encoder's nn.vmap-ed LiteEncoders,
  computed by `sequential_lite_encoders` from their parameters.  At
  initialisation it is `groups(x)` itself, so the parameters are created,
  named and drawn exactly as the vmapped groups create them."""
  if groups.is_initializing():
    return groups(x)
  return sequential_lite_encoders(groups.variables["params"], x)
