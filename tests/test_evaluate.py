"""The evaluation job with the whole metric battery on a real (tiny) run, and
the report built from its files."""

import dataclasses
import json
import math
import os

import numpy as np
import pytest
from PIL import Image

import jax

from disentax import checkpoint, results
from disentax.evaluation import job
from disentax.experiment import build
from disentax.training.train_state import (restore_member_steps,
                                           restore_members)
from disentax.workdir import trace_path, write_npz
from disentax.metrics import METRICS
from disentax.reporting import render, report
from disentax.training import trainer
from experiments.common import battery
from tests.conftest import tiny_config

NUM_LATENTS = 10


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
  """Tiny beta-VAE, 2 betas x 2 seeds, traced, scored with every metric."""
  workdir = str(tmp_path_factory.mktemp("battery"))
  config = tiny_config()
  config.eval.trace_every = 10
  config.eval.trace = {"mig": {"num_points": 200, "batch_size": 200}}
  config.eval.traversals = True  # the tiny preset leaves them out
  config.eval.battery = battery(num_train=120, num_test=60)
  config.eval.battery.beta_vae_score.batch_size = 8
  config.eval.battery.factor_vae_score.batch_size = 8
  config.eval.battery.sap.n_jobs = 1
  # DCI's trees take 40 s even here (a tree per class and stage); its own
  # tests cover it, and it runs through the same evaluator path as SAP.
  del config.eval.battery["dci"]
  trainer.train(config, workdir)
  rows, _ = job.evaluate(workdir)
  return workdir, rows


def test_every_metric_scores_every_member(evaluated):
  workdir, rows = evaluated
  assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
  expected = {"mig", "nmi1", "nmi2", "beta_vae_score", "factor_vae_score",
              "modularity", "explicitness_test", "sap", "irs",
              "gaussian_total_correlation", "mutual_info_score",
              "active_latents", "udr", "reconstruction_error", "kl",
              "index_code_mi", "total_correlation", "dimwise_kl"}
  for row in rows:
    missing = expected - set(row["metrics"])
    assert not missing, missing
    assert all(v is not None and math.isfinite(v)
               for v in row["metrics"].values())
    assert 0 <= row["metrics"]["active_latents"] <= NUM_LATENTS
  arrays = results.load_arrays(workdir)
  assert arrays["sap_matrix"].shape == (4, NUM_LATENTS, 5)
  assert arrays["udr_matrix"].shape == (4, 4)
  timings = json.load(open(os.path.join(workdir, "results",
                                        "timings.json")))
  assert set(timings["seconds"]) == {"mig", *battery()} - {"dci"}


def test_udr_compares_seeds_within_a_beta(evaluated):
  """Members 0,1 share beta 1, members 2,3 beta 4 (hyperparameter-major).
  udr_matrix[a, b] regresses b on a (dlib's Lasso): b's score is the
  median of its column."""
  udr = results.load_arrays(evaluated[0])["udr_matrix"]
  within = [(0, 1), (1, 0), (2, 3), (3, 2)]
  across = [(i, j) for i in range(4) for j in range(4)
            if i != j and (i, j) not in within]
  assert all(np.isfinite(udr[i, j]) for i, j in within)
  assert all(np.isnan(udr[i, j]) for i, j in across)
  # Each member's UDR is the median over its one peer: the pair's score.
  for row in evaluated[1]:
    peer = {0: 1, 1: 0, 2: 3, 3: 2}[row["member"]]
    assert row["metrics"]["udr"] == pytest.approx(
        float(udr[peer, row["member"]]), rel=1e-6)


def test_elbo_terms_sum_to_the_kl(evaluated):
  """Chen et al.'s decomposition on the evaluated sample: index-code MI +
  TC + dimension-wise KL = E KL(q(z|x) || p(z)), up to Monte Carlo error
  (the terms use one posterior sample per point)."""
  for row in evaluated[1]:
    m = row["metrics"]
    total = m["index_code_mi"] + m["total_correlation"] + m["dimwise_kl"]
    assert total == pytest.approx(m["kl"], rel=0.1, abs=0.05)


def test_traversals_of_best_median_worst(evaluated):
  workdir, rows = evaluated
  directory = os.path.join(workdir, "results", "traversals")
  names = sorted(os.listdir(directory))
  assert [n.split("_")[0] for n in names] == ["best", "median", "worst"]
  best = max(rows, key=lambda r: r["metrics"]["mig"])
  assert f"best_member{best['member']}_seed{best['seed']}.png" in names
  for name in names:
    with Image.open(os.path.join(directory, name)) as image:
      # pictures.traversal_figure: (1.5 + 0.75 steps) x (1 + 0.75 d) inches
      # at 100 dpi; 10 steps, 10 latents.
      assert image.size == (900, 850)


def test_report_of_the_evaluated_run(evaluated, tmp_path):
  workdir, rows = evaluated
  markdown, paths = report.run_report([workdir], str(tmp_path))
  names = {os.path.basename(p) for p in paths}
  assert {"report.md", "report.csv", "report.tex"} <= names
  assert "mig_distribution.png" in names
  assert "sap_distribution.png" in names
  assert any(n.endswith("nmi_over_training.png") or "nmi_over_training_" in n
             for n in names)
  # Every seed of the tiny run has MIG < 0.1: 2/2 fail per beta, whose
  # Wilson 95% interval is [34.2, 100].
  assert markdown.count("100.0 [34.2, 100.0] (2/2") == 2
  # The tiny preset renders dSprites: the job records it, the report says so.
  assert results.load_run(workdir).dataset_procedural is True
  assert markdown.splitlines()[2] == render.procedural_note(["dsprites"])


def test_sampled_representation_of_the_members():
  """`at(..., sampled=True)` adds each representation's posterior sample:
  mean + exp(logvar / 2) * eps, member m's eps of call c from
  fold_in(fold_in(fold_in(key(eval.seed), 1), c), m); fresh on each call."""
  import jax
  from disentax.evaluation.members import MemberFunctions
  from disentax.experiment import build
  from disentax.training.train_state import init_state
  exp = build(tiny_config())
  state = init_state(exp)
  functions = MemberFunctions(exp)
  _, plain = functions.at(state, 0)
  members, representations = functions.at(state, 0, sampled=True)
  assert sorted(plain) == [""] and sorted(representations) == ["",
                                                                "_sampled"]
  _, x = exp.dataset.sample(jax.random.key(3), 4)
  mean, logvar = (np.asarray(a) for a in members.posterior_fn(x))
  sampled = representations["_sampled"]
  key = jax.random.fold_in(jax.random.key(exp.config.eval.seed), 1)
  for call in range(2):
    codes = np.asarray(sampled(x))
    for m in range(len(exp.members)):
      noise = jax.random.normal(
          jax.random.fold_in(jax.random.fold_in(key, call), m), mean.shape[1:])
      np.testing.assert_allclose(
          codes[m], mean[m] + np.exp(logvar[m] / 2) * np.asarray(noise),
          rtol=1e-6, atol=1e-6)


def test_primary_metric_on_the_sampled_representation(tmp_path):
  """eval.representations = (mean, sampled): the primary metric also scores
  a posterior sample, as `mig_sampled`; the battery scores the means."""
  workdir = str(tmp_path / "run")
  config = tiny_config()
  config.eval.representations = ("mean", "sampled")
  config.eval.battery = {"active_latents": {"num_points": 100}}
  trainer.train(config, workdir)
  rows, _ = job.evaluate(workdir)
  timings = json.load(open(os.path.join(workdir, "results", "timings.json")))
  assert set(timings["seconds"]) == {"mig", "mig_sampled", "active_latents"}
  for row in rows:
    assert {"mig", "nmi1", "mig_sampled", "nmi1_sampled",
            "active_latents"} <= set(row["metrics"])
    assert "active_latents_sampled" not in row["metrics"]
  assert any(row["metrics"]["mig_sampled"] != row["metrics"]["mig"]
             for row in rows)


def test_unknown_battery_is_refused_before_restoring(evaluated):
  with pytest.raises(ValueError, match=r"--battery='most'; allowed: "
                     r"\('config', 'full', 'none'\)"):
    job.evaluate(evaluated[0], battery="most")


# Registered metrics the paper presets leave out: the annealing test's loss
# terms and the IFP read off their trace (experiments/annealing_test.py), and
# the downstream tasks, whose cross-validated logistic regressions (60 fits
# per factor and training size) and trees on up to 10,000 points cost
# minutes per member on a CPU (`--battery=full` or by name).
NOT_IN_THE_BATTERY = {"mig", "loss_terms", "ifp", "downstream_task",
                      "downstream_task_boosted_trees",
                      "reduced_downstream_task", "strong_downstream_task"}


def test_every_registered_metric_is_in_the_battery():
  """A new metric file joins the paper presets' battery (or this fails,
  unless it is listed above with its reason)."""
  assert set(battery()) | NOT_IN_THE_BATTERY == set(METRICS.names())


def test_only_factor_free_metrics_score_unlabelled_data():
  from disentax.metrics import make_battery
  built = make_battery({name: {} for name in METRICS.names()})
  assert {n for n, m in built.items() if not m.supervised} == {
      "unsupervised", "active_latents", "udr", "elbo_decomposition",
      "loss_terms", "ifp"}


@pytest.mark.parametrize("name", METRICS.names())
def test_metric_options_are_its_dataclass_fields(name):
  """A metric declares its options once, as dataclass fields: they are its
  config keys (no ClassVar among them), and it is registered under its
  own name."""
  metric = METRICS.get(name)
  assert METRICS.allowed_keys(name) == [
      field.name for field in dataclasses.fields(metric)]
  assert metric.name == name
  assert METRICS.build({"name": name}) == metric()


# ------------------------------------------------ best of run


@pytest.fixture(scope="module")
def checkpointed(tmp_path_factory):
  """Tiny beta-VAE (4 members), a checkpoint every 5 steps, all 4 kept, no
  trace (the tests write their own)."""
  workdir = str(tmp_path_factory.mktemp("checkpointed"))
  config = tiny_config(train__checkpoint_every=5, train__keep_checkpoints=4)
  trainer.train(config, workdir)
  return workdir, config


# Member m peaks at BEST[m]; step 0 (no checkpoint) scores highest of all
# and is ignored; member 1 ties at 15 and 20 (the earliest wins).
TRACE_STEPS = np.array([0, 5, 10, 15, 20])
TRACE_MIG = np.array([[0.9, 0.9, 0.9, 0.9],
                      [0.1, 0.1, 0.5, 0.1],
                      [0.4, 0.2, 0.3, np.nan],
                      [0.2, 0.6, 0.3, 0.1],
                      [0.3, 0.6, 0.1, 0.2]])
BEST = [10, 15, 5, 20]


def test_best_of_run_scores_each_member_at_its_best_traced_step(checkpointed):
  """eval.checkpoint 'best': each member is restored from the checkpoint of
  its best traced primary metric (its parameters are that checkpoint's
  row, bitwise) and its row names that step; a member whose best is the
  last step scores as with 'last'."""
  workdir, config = checkpointed
  with pytest.raises(ValueError, match=r"needs the training-time trace of "
                     r"'mig' \(trace.npz\).*--checkpoint=last"):
    job.evaluate(workdir, checkpoint_selection="best")
  write_npz(trace_path(workdir), {"step": TRACE_STEPS, "mig": TRACE_MIG,
                                  "stage": np.full((5, 4), -1, np.int32)})
  rows, _ = job.evaluate(workdir, checkpoint_selection="best",
                         traversals=False)
  assert [row["step"] for row in rows] == BEST
  timings = json.load(open(os.path.join(workdir, "results",
                                        "timings.json")))
  assert timings["checkpoint"] == "best" and timings["step"] == BEST

  exp = build(config)
  manager = checkpoint.make_manager(workdir, read_only=True)
  chosen = restore_member_steps(manager, np.array(BEST), exp)
  assert int(chosen.step) == 20
  last = restore_members(manager, 20, exp)
  for m, step in enumerate(BEST):
    own = restore_members(manager, step, exp)
    for got, want, final in zip(jax.tree.leaves(chosen.params),
                                jax.tree.leaves(own.params),
                                jax.tree.leaves(last.params)):
      np.testing.assert_array_equal(got[m], want[m])
      if step != 20:
        assert np.any(np.asarray(got[m]) != np.asarray(final[m]))
  manager.close()

  last_rows, _ = job.evaluate(workdir, checkpoint_selection="last",
                              traversals=False)
  assert [row["step"] for row in last_rows] == [20] * 4
  assert rows[3]["metrics"]["mig"] == pytest.approx(
      last_rows[3]["metrics"]["mig"], rel=1e-6)
  assert rows[0]["metrics"]["mig"] != last_rows[0]["metrics"]["mig"]


def test_best_steps_ties_nans_and_errors():
  """The earliest of equal scores (CascadeVAE's code keeps a checkpoint
  only when strictly better); NaN scores never win; a member with no
  finite score gets the latest step; clear errors without a usable
  trace."""
  saved = [5, 10, 15, 20]
  np.testing.assert_array_equal(job.best_steps(
      {"step": TRACE_STEPS, "mig": TRACE_MIG}, "mig", saved, 4), BEST)
  never = TRACE_MIG.copy()
  never[:, 0] = np.nan
  np.testing.assert_array_equal(job.best_steps(
      {"step": TRACE_STEPS, "mig": never}, "mig", saved, 4), [20, *BEST[1:]])
  np.testing.assert_array_equal(job.best_steps(
      {"step": TRACE_STEPS, "mig": TRACE_MIG}, "mig", [5, 20], 4),
      [20, 20, 5, 20])
  with pytest.raises(ValueError, match=r"selects by the primary metric "
                     r"'dci'.*it has \['mig'\]"):
    job.best_steps({"step": TRACE_STEPS, "mig": TRACE_MIG}, "dci", saved, 4)
  with pytest.raises(ValueError, match=r"no traced step \[0, 5, 10, 15, 20\] "
                     r"has a checkpoint \(saved: \[7, 30\]\)"):
    job.best_steps({"step": TRACE_STEPS, "mig": TRACE_MIG}, "mig", [7, 30], 4)
  with pytest.raises(ValueError, match=r"--checkpoint='middle'; allowed"):
    job.evaluate("unused", checkpoint_selection="middle")
