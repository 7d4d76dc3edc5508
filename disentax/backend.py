"""The one question disentax asks about the backend it computes on.

Some choices change how a run is computed, never what: which formulation of
the convolutions a model uses (disentax/models/kernels), how members and
steps are laid out in the program.  XLA:CPU and the accelerators' compilers
favour different ones, so 'auto' settings decide by the backend, and they
all ask here.
"""

from __future__ import annotations

import jax


def on_cpu() -> bool:
  """Whether jax computes on XLA:CPU (its default backend is the CPU)."""
  return jax.default_backend() == "cpu"
