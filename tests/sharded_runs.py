"""Trains the tiny config over several device layouts in one process and
saves every run's final parameters (run by tests/test_sharding.py in a
subprocess, since the CPU device count is fixed when JAX starts):

  XLA_FLAGS=--xla_force_host_platform_device_count=4 \\
      python -m tests.sharded_runs OUT.npz WORKDIR execution num_devices,...
"""

import os
import sys

import jax
import numpy as np

from disentax.training import trainer
from tests.conftest import tiny_config


def main(out: str, workdir: str, execution: str, device_counts: str) -> None:
  arrays = {"device_count": np.int64(jax.device_count())}
  for count in map(int, device_counts.split(",")):
    config = tiny_config(objective__beta=(1.0,), num_seeds=6,
                         train__num_devices=count,
                         train__member_execution=execution,
                         train__learning_rate=1e-3)
    state = trainer.train(config, os.path.join(workdir, f"devices{count}"))
    for i, leaf in enumerate(jax.tree.leaves(state.params)):
      arrays[f"devices{count}/{i}"] = np.asarray(leaf)
    arrays[f"devices{count}/sharding"] = np.asarray(
        str(jax.tree.leaves(state.params)[0].sharding))
  np.savez(out, **arrays)


if __name__ == "__main__":
  main(*sys.argv[1:])
