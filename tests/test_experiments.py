"""Every experiment config: all presets build, and its tiny preset goes
through training and the evaluation job (so each objective's checkpoints,
including its own state, are readable by the evaluator)."""

import glob
import importlib
import os

import pytest

from disentax.evaluation import job
from disentax.experiment import build
from disentax.training import trainer
from tests.conftest import REPO

EXPERIMENTS = sorted(
    os.path.basename(p)[:-3]
    for p in glob.glob(os.path.join(REPO, "experiments", "*.py"))
    if not os.path.basename(p).startswith(("_", "common")))


def get_config(name, preset):
  return importlib.import_module(f"experiments.{name}").get_config(preset)


def test_every_objective_has_an_experiment():
  from disentax.objectives import OBJECTIVES
  used = {get_config(name, "tiny").objective.name for name in EXPERIMENTS}
  assert used == set(OBJECTIVES.names())


def presets(name):
  from experiments import common
  return getattr(importlib.import_module(f"experiments.{name}"), "PRESETS",
                 common.PRESETS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_presets_build(name):
  from disentax.data import DATASETS
  for preset in presets(name):
    config = get_config(name, preset)
    assert config.dataset.name in DATASETS.names(), preset
    if "data_dir" in config.dataset:
      # Real data (SmallNORB): nothing is downloaded, so building without
      # the user's TFDS directory must say which option to set.
      with pytest.raises(ValueError, match="set dataset.data_dir"):
        build(config)
      continue
    assert len(build(config).members) >= 2, preset


def distinct_programs(names):
  """One experiment per (objective, model, encoder, dataset) of its tiny
  preset: configs that only change numbers train the same program."""
  seen, kept = set(), []
  for name in names:
    config = get_config(name, "tiny")
    key = (config.objective.name, config.model.name,
           config.model.get("encoder"), config.dataset.name)
    if key not in seen:
      seen.add(key)
      kept.append(name)
  return kept


# Experiments whose tiny preset another test module already trains (and
# checks): stateless objectives trained by their own modules, beta_vae and
# deft (trained, traced and evaluated by test_evaluate / test_tracing),
# annealing_test (test_evaluators), vae and autoencoder (test_baselines),
# factor_vae (test_factor_vae's tiny run) and the PI-controller objectives
# control_vae and dynamic_vae (test_controllers' tiny runs); evaluating them
# is the objective-independent path the others here cover.
# Training them here again would only cost CI time.
TRAINED_ELSEWHERE = ("annealed_vae", "beta_tcvae", "cascade_vae", "dip_vae_i",
                     "dip_vae_ii", "beta_vae", "deft", "control_vae",
                     "dynamic_vae", "factor_vae", "annealing_test", "vae",
                     "autoencoder")


@pytest.mark.parametrize("name", [n for n in distinct_programs(EXPERIMENTS)
                                  if n not in TRAINED_ELSEWHERE])
def test_tiny_preset_trains_and_evaluates(name, tmp_path):
  config = get_config(name, "tiny")
  # 5 steps, members vmapped: compiling dominates, and vmap compiles once
  # for all members (the objectives' own tests train longer).
  config.train.num_steps = config.train.checkpoint_every = 5
  config.train.steps_per_chunk = 5
  if config.eval.trace_every:  # traced at the chunks' end
    config.eval.trace_every = 5
  config.train.member_execution = "vmap"
  trainer.train(config, str(tmp_path))
  rows, _ = job.evaluate(str(tmp_path))
  assert len(rows) == len(build(config).members)
  assert {r["step"] for r in rows} == {5}
  assert all(r["status"] == "ok" and 0 <= r["metrics"]["mig"] <= 1
             for r in rows)
