"""The one question disentax asks about the backend it computes on.

Some choices change how a run is computed, never what: which formulation of
the convolutions a model uses (disentax/models/kernels), how members and
steps are laid out in the program.  XLA:CPU and the accelerators' compilers
favour different ones, so 'auto' settings decide by the backend, and they
all ask here.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import jax


def on_cpu() -> bool:
  """Whether jax computes on XLA:CPU (its default backend is the CPU)."""
  return jax.default_backend() == "cpu"


@contextlib.contextmanager
def program_settings() -> Iterator[None]:
  """The JAX settings disentax compiles its programs under, for the calls
  inside the block only (importing disentax changes no global setting).

  Datasets held on the device (the dSprites npz, `in_memory=True` loaders)
  are constants of the jitted step; by default XLA embeds them in every
  compiled program, so compile time grows with the data (a 354 MB array at
  50 seeds did not compile in 100 s on an H100).  Simplified constants pass
  them as arguments instead (compile ~1 s)."""
  name = "jax_use_simplified_jaxpr_constants"
  previous = getattr(jax.config, name)
  jax.config.update(name, True)
  try:
    yield
  finally:
    jax.config.update(name, previous)
