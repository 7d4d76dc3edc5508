"""Model FLOPs of a config's train step, counted from its architecture.

The count is the usual "model FLOPs" of utilisation figures: the
multiply-adds of the network's convolutions and dense layers (2 FLOPs each)
for one forward pass, times 3 for a training step (the backward pass takes
an input gradient and a kernel gradient per layer, each as many
multiply-adds as the forward).  Elementwise work (activations, the loss,
Adam) is left out: it is a few per cent of the arithmetic and none of the
peak the accelerators quote.

It is counted by walking the jaxpr of one forward pass of the model built
with its reference layers (`model.kernels` 'reference': `lax.conv`
downsampling, `lax.conv_transpose` upsampling, the vmapped fractional
encoder), so the figure is the architecture's, whichever kernels train: a
transposed convolution counts the taps that meet real input pixels (not
the zeros that dilating its input inserts), a grouped convolution only its
groups' blocks, a vmapped sub-network once per member of its batch.  Padding is
counted as if it were data, as is usual.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import jax.extend.core as jex_core
import jax.numpy as jnp
import ml_collections

from disentax.data import make_dataset
from disentax.models import MODELS, make_model

TRAIN_FORWARDS = 3  # forward + input gradient + kernel gradient
# Datasets read from files the bench cannot assume: their image shape,
# (height, width, channels), as the loaders produce it.
FILE_DATASET_SHAPES = {"smallnorb": (64, 64, 1)}


def _conv_flops(eqn: Any) -> int:
  """2 x multiply-adds of one conv_general_dilated: every output element
  sums its kernel's taps over its group's input channels; of those taps only
  1 / prod(lhs_dilation) meet real (not inserted-zero) input pixels."""
  out_shape = eqn.outvars[0].aval.shape
  rhs_shape = eqn.invars[1].aval.shape
  rhs_spec = eqn.params["dimension_numbers"].rhs_spec
  in_per_group = rhs_shape[rhs_spec[1]]
  taps = math.prod(rhs_shape[d] for d in rhs_spec[2:])
  dilation = math.prod(eqn.params["lhs_dilation"])
  return 2 * math.prod(out_shape) * in_per_group * taps // dilation


def _dot_flops(eqn: Any) -> int:
  """2 x multiply-adds of one dot_general: every output element sums over
  the contracting dimensions."""
  (lhs_contracting, _), _ = eqn.params["dimension_numbers"]
  lhs_shape = eqn.invars[0].aval.shape
  out_shape = eqn.outvars[0].aval.shape
  return 2 * math.prod(out_shape) * math.prod(
      lhs_shape[d] for d in lhs_contracting)


_COUNTED = {"conv_general_dilated": _conv_flops, "dot_general": _dot_flops}


def _sub_jaxprs(value: Any) -> list[Any]:
  if isinstance(value, jex_core.ClosedJaxpr):
    return [value.jaxpr]
  if isinstance(value, jex_core.Jaxpr):
    return [value]
  if isinstance(value, (tuple, list)):
    return [j for v in value for j in _sub_jaxprs(v)]
  return []


def jaxpr_flops(jaxpr: Any) -> int:
  """FLOPs of the convolutions and matrix products of a (closed) jaxpr,
  nested calls included: a scan's body counts `length` times, a cond its
  costliest branch.  A while loop (unknown trip count) is an error."""
  if isinstance(jaxpr, jex_core.ClosedJaxpr):
    jaxpr = jaxpr.jaxpr
  total = 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name in _COUNTED:
      total += _COUNTED[name](eqn)
      continue
    if name == "while":
      raise ValueError("jaxpr_flops: a while loop's trip count is unknown; "
                       "count a program without one")
    nested = [jaxpr_flops(j) for v in eqn.params.values()
              for j in _sub_jaxprs(v)]
    if not nested:
      continue
    if name == "cond":
      total += max(nested)
    else:
      total += sum(nested) * int(eqn.params.get("length", 1))
  return total


def observation_shape(config: ml_collections.ConfigDict
                      ) -> tuple[int, int, int]:
  """The image shape the config trains on (file datasets: their loaders'
  shape, without reading the files)."""
  name = config.dataset.name
  if name in FILE_DATASET_SHAPES:
    return FILE_DATASET_SHAPES[name]
  return tuple(make_dataset(config.dataset).observation_shape)


def forward_flops(config: ml_collections.ConfigDict, batch_size: int,
                  shape: Sequence[int] | None = None) -> int:
  """Model FLOPs of one forward pass of `config`'s model (its reference
  kernels, for models that take `kernels`) on `batch_size` images of
  `shape` (default: the config's dataset's)."""
  model_config = ml_collections.ConfigDict(config.model.to_dict())
  if "kernels" in MODELS.allowed_keys(model_config.name):
    model_config.kernels = "reference"
  shape = tuple(shape or observation_shape(config))
  model = make_model(model_config, shape)
  images = jax.ShapeDtypeStruct((batch_size, *shape), jnp.float32)
  key = jax.eval_shape(lambda: jax.random.key(0))
  params = jax.eval_shape(model.init, key, images, key)
  return jaxpr_flops(jax.make_jaxpr(model.apply)(params, images, key))


def train_step_flops(config: ml_collections.ConfigDict,
                     shape: Sequence[int] | None = None) -> int:
  """Model FLOPs of one member's train step (one batch of
  config.train.batch_size): TRAIN_FORWARDS x the forward pass."""
  return TRAIN_FORWARDS * forward_flops(config, config.train.batch_size, shape)
