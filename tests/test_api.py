"""The Python API: `disentax.evaluate_representation` (known answers of the
ground-truth and a constant code, the evaluation job's scores reproduced
from outside, the sampled representation, bad input caught before any
scoring, results the report reads) and `disentax.train / evaluate /
load_results` on a tiny run."""

import json
import os

import jax
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mutual_info_score

import disentax
from disentax import checkpoint, results
from disentax.evaluation import external
from disentax.evaluation.members import MemberFunctions
from disentax.experiment import build
from disentax.metrics.sampling import sample_factors
from disentax.reporting.report import run_report
from disentax.reporting.tables import failure_rate_table
from disentax.training.train_state import restore_members
from disentax.workdir import results_json_path
from tests.conftest import REPO, tiny_config
from tests.metric_datasets import FactorDataset

DATASET = FactorDataset((4, 3, 5))
SIZES = np.asarray(DATASET.factor_sizes, np.float32)
MIG_POINTS = 2_000
MIG = {"mig": {"num_points": MIG_POINTS, "batch_size": 500}}
FACTOR_VAE = {"factor_vae_score": {"num_train": 50, "num_eval": 50,
                                   "num_variance_estimate": 500,
                                   "batch_size": 16}}
BATTERY = {**MIG, **FACTOR_VAE,
           "beta_vae_score": {"num_train": 50, "num_eval": 50,
                              "batch_size": 16},
           "dci": {"num_train": 300, "num_test": 150, "batch_size": 150,
                   "n_jobs": 1}}


def factors_code(x):
  """The ground-truth factors of FactorDataset observations, in [0, 1]."""
  return x.reshape(len(x), -1) / (SIZES - 1)


def constant_code(x):
  return np.zeros((len(x), 3), np.float32)


def metrics_of(table, i=0):
  """{metric: value} of line `i` of a results DataFrame."""
  return {k[len("metric."):]: v for k, v in table.iloc[i].items()
          if k.startswith("metric.")}


@pytest.fixture(scope="module")
def scored():
  return {fn.__name__: disentax.evaluate_representation(
      fn, DATASET, battery=BATTERY, seeds=(0, 1))
          for fn in (factors_code, constant_code)}


def reference_mig(seed):
  """MIG of the ground-truth code on the points the metric draws with
  key(seed): latent j is a bijection of factor j, so I(z_j; c_j) = H(c_j)
  and the runner-up is the largest I(c_k; c_j) (sklearn's plug-in MI)."""
  factors = sample_factors(DATASET, jax.random.key(seed), MIG_POINTS)
  gaps = []
  for j in range(DATASET.num_factors):
    entropy = mutual_info_score(factors[:, j], factors[:, j])
    runner_up = max(mutual_info_score(factors[:, k], factors[:, j])
                    for k in range(DATASET.num_factors) if k != j)
    gaps.append((entropy - runner_up) / entropy)
  return np.mean(gaps)


def test_ground_truth_code_scores_the_perfect_values(scored):
  table = scored["factors_code"]
  assert list(table["seed"]) == [0, 1] and list(table["member"]) == [0, 1]
  assert set(table["method"]) == {"external"}
  assert set(table["dataset"]) == {"factor_identity"}
  for i, seed in enumerate((0, 1)):
    got = metrics_of(table, i)
    # Each seed is its own draw of points (key(seed)).
    assert got["mig"] == pytest.approx(reference_mig(seed), rel=1e-5)
    assert got["mig"] > 0.99 and got["nmi1"] == pytest.approx(1, rel=1e-6)
    assert got["factor_vae_score"] == 1.0
    assert got["factor_vae_active_dims"] == DATASET.num_factors
    assert got["beta_vae_score"] == 1.0
    # The trees give the other latents importance ~1e-10, not exactly 0.
    for name in ("dci_disentanglement", "dci_completeness"):
      assert got[name] == pytest.approx(1.0, abs=1e-8), name
    assert got["dci_informativeness_test"] == 1.0
  assert metrics_of(table, 0)["mig"] != metrics_of(table, 1)["mig"]


def test_constant_code_scores_zero_where_defined(scored):
  for i in range(2):
    got = metrics_of(scored["constant_code"], i)
    assert got["mig"] == 0.0 and got["nmi1"] == 0.0
    # No active latent: dlib's answer is 0, with 0 active dimensions.
    assert got["factor_vae_score"] == 0.0
    assert got["factor_vae_active_dims"] == 0
    # No importance anywhere (entropy of a uniform row is 1 - 1 = 0).
    assert got["dci_disentanglement"] == pytest.approx(0.0, abs=1e-12)
    assert got["dci_completeness"] == pytest.approx(0.0, abs=1e-12)
    # (BetaVAE's score of a constant code is the majority class's share of
    # the votes, chance rather than 0.)


# --- a trained tiny run ----------------------------------------------------

JOB_BATTERY = {**FACTOR_VAE,
               "unsupervised": {"num_train": 200, "batch_size": 100}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """The tiny beta-VAE (2 betas x 2 seeds) through the API: trained,
  evaluated with MIG, FactorVAE and the unsupervised scores."""
  workdir = str(tmp_path_factory.mktemp("tiny"))
  config = tiny_config()
  config.eval.battery = JOB_BATTERY
  assert disentax.train(config, workdir) == workdir
  return workdir, config, disentax.evaluate(workdir)


def test_a_members_encoder_reproduces_the_jobs_scores(trained):
  workdir, config, _ = trained
  manager, step = checkpoint.latest_step_or_fail(workdir)
  exp = build(config)
  state = restore_members(manager, step, exp)
  manager.close()
  members, _ = MemberFunctions(exp).at(state, step)
  battery = {config.eval.metric.name: {
      k: v for k, v in config.eval.metric.items() if k != "name"},
             **JOB_BATTERY}
  rows = results.load_rows([workdir])

  def check(got, expected):
    """Equal scores: exactly, but for the covariance-based Gaussian ones,
    whose float32 reductions XLA orders differently for one member than
    for four (the job's), equal to float rounding."""
    assert set(got) == set(expected)
    for name, value in expected.items():
      if name.startswith("gaussian_"):
        assert got[name] == pytest.approx(value, rel=1e-5, abs=1e-9), name
      else:
        assert got[name] == value, name

  for m in (0, 3):  # one member of each beta
    # The job's own encoder program, member m's codes.
    check(metrics_of(disentax.evaluate_representation(
        lambda x, m=m: np.asarray(members.representation_fn(x))[m],
        config.dataset, battery=battery, seeds=(config.eval.seed,))),
          rows[m]["metrics"])
  # Member 3's encoder compiled on its own: its codes differ from the
  # vmapped program's in float rounding (~3e-8), which the discretised and
  # voted scores do not see.
  params = jax.tree.map(lambda leaf: leaf[3], state.params)
  check(metrics_of(disentax.evaluate_representation(
      jax.jit(lambda x: exp.model.apply({"params": params}, x, None,
                                        method="encode")[0]),
      config.dataset, battery=battery, seeds=(config.eval.seed,))),
        rows[3]["metrics"])


def test_load_results_is_one_row_per_member(trained, tmp_path):
  workdir, _, evaluated = trained
  table = disentax.load_results(workdir)
  pd.testing.assert_frame_equal(table, evaluated)
  with open(results_json_path(workdir)) as f:
    rows = json.load(f)["rows"]
  assert len(table) == len(rows) == 4
  assert list(table.columns[:11]) == [
      "workdir", "schema_version", "method", "dataset", "config_hash",
      "step", "member", "seed", "status", "diverged_at_step", "hp.beta"]
  assert list(table["seed"]) == [0, 1, 0, 1]
  assert list(table["hp.beta"]) == [1.0, 1.0, 4.0, 4.0]
  for (_, line), row in zip(table.iterrows(), rows):
    assert line["workdir"] == workdir
    for key in ("method", "dataset", "config_hash", "step", "member",
                "status"):
      assert line[key] == row[key]
    assert {f"metric.{k}" for k in row["metrics"]} == {
        c for c in table.columns if c.startswith("metric.")}
    for name, value in row["metrics"].items():
      assert line[f"metric.{name}"] == value, name
  # Several workdirs: their rows in the order given.
  other = str(tmp_path / "oracle")
  disentax.evaluate_representation(factors_code, DATASET, battery=MIG,
                                   seeds=(0, 1), workdir=other)
  both = disentax.load_results([workdir, other])
  assert list(both["workdir"]) == [workdir] * 4 + [other] * 2
  assert both["metric.mig"].notna().all()
  assert both["metric.factor_vae_score"].isna().sum() == 2  # oracle: MIG only
  assert len(disentax.load_results([], sweep_root=str(tmp_path))) == 2


def test_a_training_workdir_is_not_overwritten(trained):
  with pytest.raises(ValueError, match="holds a disentax training run"):
    disentax.evaluate_representation(factors_code, DATASET, battery=MIG,
                                     workdir=trained[0])


# --- the sampled representation --------------------------------------------


def posterior_of(logvar):
  def posterior_fn(x):
    mean = factors_code(x)
    return mean, np.full_like(mean, logvar)
  return posterior_fn


def test_sampled_equals_mean_without_posterior_noise():
  # exp(-1000 / 2) is 0 in float32: z = mean exactly.
  table = disentax.evaluate_representation(
      None, DATASET, posterior_fn=posterior_of(-1000.0),
      battery={**MIG, **FACTOR_VAE}, representation=("mean", "sampled"))
  got = metrics_of(table)
  for name in ("mig", "nmi1", "nmi2", "factor_vae_score",
               "factor_vae_active_dims"):
    assert got[f"{name}_sampled"] == got[name], name
  # Unit noise on codes in [0, 1] drowns most of the information.
  noisy = metrics_of(disentax.evaluate_representation(
      None, DATASET, posterior_fn=posterior_of(0.0), battery=MIG,
      representation="sampled"))
  assert set(noisy) == {"mig_sampled", "nmi1_sampled", "nmi2_sampled"}
  assert noisy["mig_sampled"] < 0.5 * got["mig"]


def test_sampled_codes_are_the_mean_plus_seeded_noise():
  std = 0.5
  functions = external._HostFunctions(DATASET, None,
                                      posterior_of(np.log(std**2)), None,
                                      probe_seed=0)
  sampled = functions.members("sampled", seed=5).representation_fn
  x = DATASET.observations_from_factors(
      sample_factors(DATASET, jax.random.key(1), 8))
  first, second = sampled(x), sampled(x)
  root = jax.random.fold_in(jax.random.key(5), external.NOISE_STREAM)
  mean = factors_code(np.asarray(x))[None]
  for i, codes in enumerate((first, second)):
    eps = np.asarray(jax.random.normal(jax.random.fold_in(root, i),
                                       mean.shape))
    np.testing.assert_allclose(codes, mean + std * eps, rtol=1e-6,
                               atol=1e-6)
  assert not np.allclose(first, second)  # fresh noise for every batch
  # A new member (the next metric) restarts the stream: reproducible.
  again = functions.members("sampled", seed=5).representation_fn(x)
  np.testing.assert_array_equal(again, first)


def test_the_elbo_terms_of_a_given_posterior():
  # q(z|x) = N(0, I) is the prior: KL 0 exactly; the reconstruction error
  # is the function's.
  table = disentax.evaluate_representation(
      None, DATASET,
      posterior_fn=lambda x: (np.zeros((len(x), 3)), np.zeros((len(x), 3))),
      reconstruction_error_fn=lambda x: np.full(len(x), 5.0),
      battery={"elbo_decomposition": {"num_points": 200, "batch_size": 100}})
  got = metrics_of(table)
  assert got["kl"] == 0.0 and got["reconstruction_error"] == 5.0


def test_the_full_battery_skips_what_the_functions_cannot_give():
  metrics, skipped = external._metrics(
      "full", DATASET, {"dataset", "representation_fn"})
  assert set(skipped) == {"udr", "elbo_decomposition", "loss_terms", "ifp"}
  assert "pass posterior_fn" in skipped["elbo_decomposition"]
  assert "one function is one model" in skipped["udr"]
  assert {"mig", "dci", "unsupervised"} <= set(metrics)
  with_posterior, skipped = external._metrics(
      "full", DATASET, {"dataset", "representation_fn", "posterior_fn",
                        "reconstruction_error_fn"})
  assert "elbo_decomposition" in with_posterior and "udr" in skipped


# --- results the report reads ------------------------------------------------


def test_written_results_are_a_run_the_report_reads(tmp_path):
  workdir = str(tmp_path / "scored")
  table = disentax.evaluate_representation(
      factors_code, DATASET, battery=MIG, seeds=(0, 1, 2), name="oracle",
      step=7, workdir=workdir)
  pd.testing.assert_frame_equal(disentax.load_results(workdir), table)
  rows = results.load_rows([workdir])
  assert [(r["seed"], r["member"], r["step"], r["method"], r["status"])
          for r in rows] == [(s, s, 7, "oracle", "ok") for s in range(3)]
  assert [r["metrics"]["mig"] for r in rows] == [
      pytest.approx(reference_mig(s), rel=1e-5) for s in range(3)]
  assert results.load_run(workdir).factor_names == ["f0", "f1", "f2"]
  markdown, paths = run_report([workdir], str(tmp_path / "report"),
                               metric="mig", threshold=0.1, figures=False)
  assert "| oracle | factor_identity |" in markdown
  assert all(os.path.isfile(p) for p in paths)
  # No seed of the ground-truth code fails.
  [group] = failure_rate_table(rows, "mig", 0.1)
  assert (group["method"], group["n_seeds"], group["n_failed"]) == (
      "oracle", 3, 0)
  # The options identify the evaluation: the same ones, the same hash.
  again = disentax.evaluate_representation(
      factors_code, DATASET, battery=["mig"], name="oracle")
  assert again["config_hash"][0] != table["config_hash"][0]
  same = disentax.evaluate_representation(
      factors_code, DATASET, battery=MIG, name="oracle", seeds=(4,))
  assert same["config_hash"][0] == table["config_hash"][0]


# --- bad input, caught before any scoring ------------------------------------


class Recorded:
  """A representation function recording the batch sizes it was called
  with."""

  def __init__(self, fn):
    self.fn, self.calls = fn, []

  def __call__(self, x):
    self.calls.append(len(x))
    return self.fn(x)


@pytest.mark.parametrize("fn, match", [
    (lambda x: factors_code(x)[:, 0], r"representation_fn returned shape "
     r"\(2,\) for 2 observations; expected \[2, d\]"),
    (lambda x: factors_code(x)[:1], r"returned shape \(1, 3\) for 2 "
     r"observations"),
    (lambda x: factors_code(x) * np.nan, r"representation_fn returned 6 "
     r"non-finite value\(s\) of 6"),
    (lambda x: "codes", "must return a numeric array, got str"),
])
def test_bad_codes_fail_on_the_probe_batch(fn, match):
  recorded = Recorded(fn)
  with pytest.raises(ValueError, match=match):
    disentax.evaluate_representation(recorded, DATASET, battery=MIG)
  assert recorded.calls == [external.PROBE_SIZE]


def test_codes_checked_on_every_batch():
  def late_nan(x):
    codes = factors_code(x)
    return codes if len(x) == external.PROBE_SIZE else codes * np.nan
  with pytest.raises(ValueError, match="non-finite"):
    disentax.evaluate_representation(late_nan, DATASET, battery=MIG)


@pytest.mark.parametrize("kwargs, match", [
    ({"battery": ["mig", "no_such_metric"]},
     r"unknown metric 'no_such_metric'; registered metrics: .*dci.*mig"),
    ({"battery": {"mig": {"num_bins": 0}}}, "num_bins"),
    ({"battery": "config"}, r"battery='config'; allowed: 'full'"),
    ({"battery": []}, "battery is empty"),
    ({"battery": ["mig", "udr"]}, r"cannot score udr \(needs posterior_fn"),
    ({"battery": ["elbo_decomposition"], "posterior_fn": posterior_of(0.0)},
     r"needs reconstruction_error_fn"),
    ({"representation": "sampled"}, "pass posterior_fn"),
    ({"representation": "median"}, "allowed: mean, sampled"),
    ({"seeds": (0, 0)}, "give each once"),
    ({"seeds": (-1,)}, r"integers in \[0, 2\*\*32\)"),
    ({"seeds": ()}, "non-empty"),
    ({"name": ""}, "non-empty string"),
    ({"dataset": "no_such_data"}, "unknown dataset 'no_such_data'"),
    ({"dataset": 3}, "give a registered dataset name"),
])
def test_bad_arguments_fail_before_any_call(kwargs, match):
  recorded = Recorded(factors_code)
  arguments = {"dataset": DATASET, "battery": MIG, **kwargs}
  with pytest.raises(ValueError, match=match):
    disentax.evaluate_representation(recorded, **arguments)
  assert recorded.calls == []


def test_posterior_outputs_are_checked():
  with pytest.raises(ValueError, match=r"posterior_fn's logvar returned "
                     r"shape \(2, 2\) for 2 observations; expected \[2, 3\]"):
    disentax.evaluate_representation(
        None, DATASET, battery=MIG,
        posterior_fn=lambda x: (factors_code(x), np.zeros((len(x), 2))))
  with pytest.raises(ValueError, match=r"must return \(mean, logvar\)"):
    disentax.evaluate_representation(None, DATASET, battery=MIG,
                                     posterior_fn=factors_code)
  with pytest.raises(ValueError, match="give representation_fn or "
                     "posterior_fn"):
    disentax.evaluate_representation(None, DATASET, battery=MIG)


def test_train_reads_a_config_file_and_rejects_other_configs(tmp_path):
  with pytest.raises(FileNotFoundError, match="no_such.py does not exist"):
    disentax.train("experiments/no_such.py:tiny", str(tmp_path))
  with pytest.raises(ValueError, match="give an ml_collections.ConfigDict"):
    disentax.train({"num_seeds": 2}, str(tmp_path))
  config = disentax.load_config(os.path.join(REPO, "experiments",
                                             "beta_vae.py") + ":tiny")
  assert config.train.num_steps == tiny_config().train.num_steps
