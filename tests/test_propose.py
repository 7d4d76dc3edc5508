"""From an evaluated annealing test to a DEFT config: results rows ->
per-factor IFP samples -> stage plan -> a config file that builds."""

import importlib.util
import json
import os

import numpy as np
import pytest

from disentax import config as config_lib
from disentax import proposal, results
from disentax.experiment import build
from experiments import annealing_test

# Median IFPs per dSprites factor: positions freeze first, orientation last.
MEDIANS = {"shape": 18.0, "scale": 45.0, "orientation": 8.0, "posX": 90.0,
           "posY": 88.0}


def annealing_workdir(tmp_path, seeds=20):
  config = annealing_test.get_config("tiny")
  workdir = str(tmp_path / "ifp")
  os.makedirs(workdir)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    json.dump(config_lib.to_dict(config), f)
  rng = np.random.default_rng(0)
  names = list(MEDIANS)
  members, ifps = [], []
  for factor, name in enumerate(names):
    for seed in range(seeds):
      members.append({"member": len(members), "seed": seed,
                      "hparams": {"factor": float(factor)}})
      ifps.append(MEDIANS[name] * np.exp(0.08 * rng.normal()))
  ifps[0] = float("nan")  # one seed of 'shape' never froze
  rows = results.make_rows(
      method="annealing_test", dataset="dsprites", config_hash="x", step=20,
      members=members, scores={"mig": np.zeros(len(members))},
      finite_params=np.ones(len(members), bool),
      outcome_scores={"ifp": np.asarray(ifps)})
  results.write(workdir, rows)
  return workdir


def test_nan_ifp_is_reported_but_not_a_divergence(tmp_path):
  rows = json.load(open(os.path.join(annealing_workdir(tmp_path),
                                     "results", "results.json")))["rows"]
  assert rows[0]["status"] == "ok" and rows[0]["metrics"]["ifp"] is None


def test_proposal_from_results_and_the_config_it_writes(tmp_path):
  workdir = annealing_workdir(tmp_path)
  plan, samples = proposal.propose(workdir)
  assert len(samples["shape"]) == 20 and np.isnan(samples["shape"][0])
  assert plan.groups == [["posX", "posY"], ["scale"], ["shape"],
                         ["orientation"]]
  assert plan.latents_per_group == 2 and plan.betas[-1] == 1.0
  # Each stage pressure separates its groups: above every sample of the
  # factors it must block... of the next group, below those it lets pass.
  for beta, passing, blocked in zip(plan.betas, plan.groups,
                                    plan.groups[1:]):
    assert min(np.nanmin(samples[n]) for n in passing) > beta
    assert max(np.nanmax(samples[n]) for n in blocked) < beta
  path = str(tmp_path / "deft_proposed.py")
  proposal.write_config(path, plan, workdir)
  spec = importlib.util.spec_from_file_location("deft_proposed", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("cpu")
  assert config.model.num_groups == 4 and config.model.num_latents == 8
  assert config.objective.pressures == tuple(round(b, 2) for b in plan.betas)
  exp = build(config)
  assert exp.objective.hyperparameters["pressures"][0][-1] == 1.0


def test_rows_without_ifp_are_refused(tmp_path):
  with pytest.raises(ValueError, match="without metric 'ifp'"):
    proposal.ifp_samples([{"hparams": {"factor": 0.0}, "metrics": {}}],
                        ["shape"])
