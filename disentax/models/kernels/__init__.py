"""Fast formulations of the architectures' layers, chosen by one switch.

The architectures (models/conv.py, models/devae.py) are written with flax's
own layers: nn.Conv for the stride-2 downsampling, nn.ConvTranspose for the
2x upsampling, nn.vmap for the fractional encoder's groups.  XLA:CPU
differentiates those slowly (base-dilated and batch-grouped convolutions),
so this package computes the same functions from the same parameters
another way:

  stride2.Conv / stride2.ConvTranspose
              nn.Conv / nn.ConvTranspose whose stride-2 layers have
              hand-written gradients that are again strided and transposed
              convolutions (kernels/stride2.py);
  fractional.call_groups
              the vmapped groups as loops of ordinary convolutions, one
              group and one chunk of the batch at a time
              (kernels/fractional.py, with kernels/s2d_pair.py).

`model.kernels` picks the layers every conv model is built from: 'reference'
(flax's own: `REFERENCE`), 'fast' (`FAST`) or 'auto' (the default: fast on
CPU, where they are measured fastest, figures in BUILD_NOTES.md; reference
elsewhere, until they are measured there).  Either way the parameter tree,
the initial values and the function are the same, so checkpoints of one
restore in the other: the choice changes how a run computes, not what.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax

from disentax import backend
from disentax.models.kernels import fractional, stride2

KERNELS = ("auto", "reference", "fast")


def call_module(module: nn.Module, x: jax.Array) -> Any:
  """`module(x)`: the vmapped groups computed by XLA as jax.vmap writes
  them."""
  return module(x)


class Layers(NamedTuple):
  """The layers a conv architecture is built from."""
  conv: type[nn.Conv]                     # the stride-2 downsampling
  conv_transpose: type[nn.ConvTranspose]  # the 2x upsampling
  # call_groups(groups, x): applies the fractional encoder's nn.vmap-ed
  # sub-encoders `groups` to the images x.
  call_groups: Callable[[nn.Module, jax.Array], tuple[jax.Array, jax.Array]]


REFERENCE = Layers(nn.Conv, nn.ConvTranspose, call_module)
FAST = Layers(stride2.Conv, stride2.ConvTranspose, fractional.call_groups)


def resolve(kernels: str) -> str:
  """'reference' or 'fast': `kernels` with 'auto' decided for this backend
  (fast on CPU, reference elsewhere)."""
  if kernels not in KERNELS:
    raise ValueError(f"kernels={kernels!r}; allowed: {KERNELS}")
  if kernels == "auto":
    return "fast" if backend.on_cpu() else "reference"
  return kernels


def layers(kernels: str) -> Layers:
  """The layers of a `model.kernels` setting ('auto' decided by `resolve`)."""
  return FAST if resolve(kernels) == "fast" else REFERENCE
