"""Shared fixtures: the smallest real config, a trained tiny workdir, and
the synthetic results of two evaluated runs."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
# The suite's time is mostly XLA compiling the same small programs in many
# tests and subprocesses; JAX's persistent compilation cache (programs that
# took >= 1 s to compile, keyed by the program and compiler options) lets
# later ones load them. Inherited by every subprocess the tests start.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(REPO, ".pytest_cache", "jax_compilation"))
# XLA:CPU's LLVM backend without its expensive optimisations compiles the
# tests' programs ~2.5x faster; they run a few steps, so the slower code
# costs less than it saves. Tests compare programs compiled the same way
# (users' runs keep XLA's defaults).
TEST_XLA_FLAGS = ("--xla_backend_optimization_level=0 "
                  "--xla_llvm_disable_expensive_passes=true")
os.environ["XLA_FLAGS"] = " ".join(
    f for f in (os.environ.get("XLA_FLAGS"), TEST_XLA_FLAGS) if f)

from experiments import beta_vae  # noqa: E402


def tiny_config(**overrides):
  """16x16 dSprites, batch 8, 2 betas x 2 seeds, 20 steps in chunks of 5."""
  config = beta_vae.get_config("tiny")
  for dotted, value in overrides.items():
    *parents, leaf = dotted.split("__")
    node = config
    for part in parents:
      node = node[part]
    node[leaf] = value
  return config


def _permissions_bind() -> bool:
  """Whether a directory without write permission refuses this process
  (not for root, unless it runs without CAP_DAC_OVERRIDE)."""
  import tempfile
  with tempfile.TemporaryDirectory() as directory:
    os.chmod(directory, 0o500)
    try:
      with tempfile.TemporaryFile(dir=directory):
        return False
    except PermissionError:
      return True
    finally:
      os.chmod(directory, 0o700)


# For tests of read-only directories.
needs_permissions = pytest.mark.skipif(
    not _permissions_bind(), reason="write permissions do not bind (root); "
    "e.g. setpriv --bounding-set -dac_override,-dac_read_search python -m "
    "pytest ...")


def run_module(module, *args, env=None, check=True):
  """Runs `python -m module args` in a fresh process (as a user would)."""
  full_env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
  full_env.update(env or {})
  result = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO,
                          env=full_env, capture_output=True, text=True,
                          timeout=600)
  if check and result.returncode != 0:
    raise AssertionError(f"{module} {args} failed ({result.returncode}):\n"
                         f"{result.stdout}\n{result.stderr}")
  return result


# Trains tiny_config(**overrides) in argv[1] and SIGKILLs the process once
# the checkpoint of step argv[2] has been written ("after") or while it is
# being written ("during").
_KILL_SCRIPT = """
import json, os, signal, sys
from disentax import pipeline
from tests.conftest import tiny_config
workdir, kill_at, when = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def kill(step, manager):
  if step == kill_at:
    if when == "after":
      manager.wait_until_finished()
    os.kill(os.getpid(), signal.SIGKILL)

pipeline.run(tiny_config(**json.loads(sys.argv[4])), workdir,
             phases=("train",), on_save=kill)
"""


def run_killed(workdir, kill_at, during_save, **overrides):
  """Trains tiny_config(**overrides) in a fresh process that SIGKILLs
  itself at the checkpoint of step `kill_at` (while it is being written
  with `during_save`, else once it is); returns the finished process."""
  import json
  when = "during" if during_save else "after"
  return subprocess.run(
      [sys.executable, "-c", _KILL_SCRIPT, workdir, str(kill_at), when,
       json.dumps(overrides)], cwd=REPO, capture_output=True, text=True,
      env=dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu"),
      timeout=600)


def short_run(config, tmp_path, num_steps, steps_per_chunk=None,
              learning_rate=1e-3):
  """Trains `config` for num_steps at a test-friendly learning rate, members
  vmapped (one compile for all; the same function as unrolled), one
  checkpoint at the end.  Returns (final state, per-chunk log lines)."""
  from disentax import run_log
  from disentax.training import trainer
  from disentax.workdir import run_log_path
  config.train.num_steps = config.train.checkpoint_every = num_steps
  if steps_per_chunk:
    config.train.steps_per_chunk = steps_per_chunk
  config.train.learning_rate = learning_rate
  config.train.member_execution = "vmap"
  state = trainer.train(config, str(tmp_path))
  return state, run_log.read_lines(run_log_path(str(tmp_path)))


@pytest.fixture(scope="module")
def synthetic_sweep(tmp_path_factory):
  """(root, [bvae, deft]): the two synthetic workdirs of
  `tests.synthetic_runs.make_sweep`, written once per test module."""
  from tests.synthetic_runs import make_sweep
  root = str(tmp_path_factory.mktemp("sweep"))
  return root, make_sweep(root)
