"""Shared fixtures: the smallest real config, and a trained tiny workdir."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

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
