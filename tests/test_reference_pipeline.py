"""The seed-by-seed numpy / scikit-learn baseline (dlib-google's pipeline).

Two kinds of checks:
* known answers, as in disentanglement_lib's own metric tests: the identity
  representation of a factor-identity dataset scores high, zeros (or a
  duplicated code, where dlib's tests say so) score low;
* cross-checks of the definitions against the disentax metric modules on
  the *same* codes and factors, where both are deterministic given them
  (MIG exactly; the rest to tight tolerances).  A disentax module that does
  not exist or does not import is skipped with the reason.

Sizes are small so the file runs in well under a minute on two busy cores.
"""

from __future__ import annotations

import importlib
import inspect
import math
from types import ModuleType

import numpy as np
import pytest

from disentax.bench import eval_speed
from disentax.bench import reference_pipeline as rp
from tests.metric_datasets import FactorDataset

# Ten factors (a constant code guesses 1 in 10: the 0-0.2 band of dlib's
# tests), and five for the metrics that fit one sklearn model per factor.
TEN = FactorDataset((4,) * 10)
FIVE = FactorDataset((4,) * 5)


def identity(x: np.ndarray) -> np.ndarray:
  return np.asarray(x, np.float64).reshape(len(x), -1)


def zeros(x: np.ndarray) -> np.ndarray:
  return np.zeros_like(identity(x))


def duplicated(x: np.ndarray) -> np.ndarray:
  return np.concatenate([identity(x), identity(x)], axis=1)


def permuted(x: np.ndarray) -> np.ndarray:
  return identity(x)[:, ::-1]


def run(name: str, dataset: FactorDataset, representation_fn, **options):
  """One reference metric of one seed, from RandomState(0) as dlib."""
  return rp.REFERENCE_METRICS[name](dataset, representation_fn,
                                    np.random.RandomState(0), **options)


def disentax_module(name: str) -> ModuleType:
  """disentax.metrics.<name>, or a skip saying why it cannot be used."""
  try:
    return importlib.import_module(f"disentax.metrics.{name}")
  except Exception as error:  # noqa: BLE001 - any import failure skips
    pytest.skip(f"disentax.metrics.{name} does not import ({error!r}); "
                f"nothing to cross-check yet")


def disentax_function(module: ModuleType, name: str):
  if not hasattr(module, name):
    pytest.skip(f"{module.__name__} has no `{name}` (its API changed?); "
                f"cannot cross-check")
  return getattr(module, name)


def factor_sample(dataset: FactorDataset, num: int, seed: int = 0
                  ) -> np.ndarray:
  return rp.sample_factors(dataset, num, np.random.RandomState(seed))


# --- known answers ---------------------------------------------------------

# (metric, dataset, options, [(score key, identity band, zeros band)])
KNOWN_ANSWERS = [
    ("mig", TEN, {"num_train": 1000, "batch_size": 250},
     [("mig", (0.9, 1.0), (0.0, 0.1))]),
    ("beta_vae_score", TEN, {"batch_size": 8, "num_train": 300,
                             "num_eval": 200},
     [("beta_vae_score", (0.9, 1.0), (0.0, 0.2)),
      ("beta_vae_train_accuracy", (0.9, 1.0), (0.0, 0.2))]),
    ("factor_vae_score", TEN, {"batch_size": 8, "num_train": 300,
                               "num_eval": 200,
                               "num_variance_estimate": 1000},
     [("factor_vae_score", (0.9, 1.0), (0.0, 0.2)),
      ("factor_vae_train_accuracy", (0.9, 1.0), (0.0, 0.2))]),
    ("dci", FIVE, {"num_train": 300, "num_test": 200, "batch_size": 100},
     [("dci_disentanglement", (0.9, 1.0), (0.0, 0.2)),
      ("dci_completeness", (0.9, 1.0), (0.0, 0.2))]),
    ("sap", TEN, {"num_train": 1000, "num_test": 1000, "batch_size": 250,
                  "continuous_factors": True},
     [("sap", (0.9, 1.0), (0.0, 0.2))]),
    ("modularity_explicitness", FIVE, {"num_train": 500, "num_test": 500,
                                       "batch_size": 250},
     [("modularity", (0.9, 1.0), (0.0, 0.2)),
      ("explicitness_test", (0.9, 1.0), (0.5, 0.5))]),
    ("irs", TEN, {"num_train": 1000, "batch_size": 250},
     [("irs", (0.9, 1.0), (0.0, 0.1))]),
]


@pytest.mark.parametrize("metric,dataset,options,bands", KNOWN_ANSWERS,
                         ids=[case[0] for case in KNOWN_ANSWERS])
def test_identity_scores_high_and_zeros_low(metric, dataset, options, bands):
  good = run(metric, dataset, identity, **options)
  bad = run(metric, dataset, zeros, **options)
  slack = 1e-9  # round-off, e.g. 1 - entropy(uniform) = -2e-16
  for key, (good_lo, good_hi), (bad_lo, bad_hi) in bands:
    assert good_lo - slack <= good[key] <= good_hi + slack, (key, good[key])
    assert bad_lo - slack <= bad[key] <= bad_hi + slack, (key, bad[key])


def test_discrete_sap_of_a_constant_code_is_zero():
  # Every latent is the same useless feature: no gap between the top two.
  scores = run("sap", FIVE, zeros, num_train=300, num_test=300,
               batch_size=150)
  assert scores["sap"] == 0.0
  assert scores["sap_matrix"].shape == (5, 5)


def test_duplicated_code_known_answers():
  """dlib's duplicated-latent tests: [z, z] loses MIG and SAP (every factor
  has two equally good latents), keeps DCI disentanglement and modularity,
  and splits completeness: 1 - ln 2 / ln(2F)."""
  mig = run("mig", TEN, duplicated, num_train=1000, batch_size=250)
  assert 0.0 <= mig["mig"] <= 0.1
  sap = run("sap", TEN, duplicated, num_train=1000, num_test=1000,
            batch_size=250, continuous_factors=True)
  assert 0.0 <= sap["sap"] <= 0.2
  dci = run("dci", FIVE, duplicated, num_train=300, num_test=200,
            batch_size=100)
  assert 0.9 <= dci["dci_disentanglement"] <= 1.0
  target = 1.0 - math.log(2) / math.log(10)  # 10 latents
  assert abs(dci["dci_completeness"] - target) < 0.1
  modularity = run("modularity_explicitness", FIVE, duplicated,
                   num_train=500, num_test=500, batch_size=250)
  assert 0.9 <= modularity["modularity"] <= 1.0


def test_unsupervised_scores_of_independent_and_duplicated_latents():
  options = {"num_train": 2000, "batch_size": 500}
  independent = run("unsupervised", TEN, identity, **options)
  assert abs(independent["gaussian_total_correlation"]) < 0.1
  assert abs(independent["gaussian_wasserstein_correlation_norm"]) < 0.05
  assert 0.0 <= independent["mutual_info_score"] < 0.05
  twice = run("unsupervised", TEN, duplicated, **options)
  assert twice["gaussian_total_correlation"] > 5  # singular: +inf
  assert twice["mutual_info_score"] > 5 * independent["mutual_info_score"]


def test_gaussian_scores_match_dlib_closed_forms():
  # dlib's unit tests: 0 for the identity covariance; TC is the KL to the
  # product of marginals, -0.5 log(1 - rho^2) for two unit variables.
  assert abs(rp.gaussian_total_correlation(np.eye(5))) < 1e-12
  assert abs(rp.gaussian_wasserstein_correlation(np.eye(5))) < 1e-12
  cov = np.array([[1.0, 0.9], [0.9, 1.0]])
  assert rp.gaussian_total_correlation(cov) == pytest.approx(
      -0.5 * math.log(1 - 0.81))
  # W2^2(N(0, C), N(0, I)) = 2 tr C - 2 tr sqrt(C) for diag(C) = I.
  eigenvalues = np.linalg.eigvalsh(cov)
  assert rp.gaussian_wasserstein_correlation(cov) == pytest.approx(
      4 - 2 * np.sum(np.sqrt(eigenvalues)))


@pytest.mark.parametrize("matrix,expected", [
    (np.diag(5.0 * np.ones(5)), 1.0),
    (np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), 2.0 / 3.0),
    (np.zeros((10, 10)), 0.0),
    (np.vstack([np.diag(5.0 * np.ones(5))] * 2), 1.0),
    (np.hstack([np.diag(5.0 * np.ones(5))] * 2), 1.0 - 1.0 / 9.0),
])
def test_modularity_of_dlib_matrices(matrix, expected):
  assert rp.modularity(matrix) == pytest.approx(expected)


@pytest.mark.parametrize("matrix,disentanglement,completeness", [
    (np.diag(5.0 * np.ones(5)), 1.0, 1.0),
    (np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), 1.0, 1.0),
    (np.zeros((10, 10)), 0.0, 0.0),
    (np.vstack([np.diag(5.0 * np.ones(5))] * 2), 1.0,
     1.0 - math.log(2) / math.log(10)),
    (np.hstack([np.diag(5.0 * np.ones(5))] * 2),
     1.0 - math.log(2) / math.log(10), 1.0),
])
def test_dci_of_dlib_matrices(matrix, disentanglement, completeness):
  assert rp.dci_disentanglement(matrix) == pytest.approx(disentanglement,
                                                         abs=1e-7)
  assert rp.dci_completeness(matrix) == pytest.approx(completeness, abs=1e-7)


def test_histogram_discretize_is_dlibs_digitize():
  codes = np.array([[0.0, 5.0], [1.0, 5.0], [2.0, 5.0], [3.0, 5.0]])
  bins = rp.histogram_discretize(codes, num_bins=3)
  # Equal-width bins [0, 1), [1, 2), [2, 3]; the max lands in the last one;
  # a constant column falls into a single bin.
  np.testing.assert_array_equal(bins[:, 0], [1, 2, 3, 3])
  assert len(np.unique(bins[:, 1])) == 1


# --- the seed-by-seed loop -------------------------------------------------


def test_score_seed_by_seed_scores_every_seed_on_the_same_points():
  metrics = {"mig": {"num_train": 500, "batch_size": 100},
             "irs": {"num_train": 500, "batch_size": 100}}
  per_seed, seconds = rp.score_seed_by_seed(TEN, [identity, permuted, zeros],
                                            0, metrics)
  assert len(per_seed) == 3
  assert set(seconds) == set(metrics)
  assert all(value >= 0 for value in seconds.values())
  # The same points for every seed: a permuted code scores exactly the same.
  assert per_seed[0]["mig"] == per_seed[1]["mig"] > 0.9
  assert per_seed[0]["irs"] == pytest.approx(per_seed[1]["irs"])
  assert per_seed[2]["mig"] == 0.0
  with pytest.raises(ValueError, match="unknown reference metric"):
    rp.score_seed_by_seed(TEN, [identity], 0, {"nope": {}})


def test_generate_batch_factor_code_encodes_every_point():
  # 250 points in batches of 16: fifteen full batches and one of 10.
  codes, factors = rp.generate_batch_factor_code(
      TEN, identity, 250, np.random.RandomState(0), batch_size=16)
  assert codes.shape == (250, 10) and factors.shape == (250, 10)
  np.testing.assert_array_equal(codes, factors)  # identity representation


def test_battery_sizes_are_options_of_the_reference_metrics():
  for sizes in rp.BATTERY_SIZES.values():
    assert set(sizes) == set(rp.REFERENCE_METRICS)
    for name, options in sizes.items():
      accepted = inspect.signature(rp.REFERENCE_METRICS[name]).parameters
      assert set(options) <= set(accepted), (name, options)
  for name in rp.ENCODING_BATCH_METRICS:
    assert "batch_size" in inspect.signature(
        rp.REFERENCE_METRICS[name]).parameters


def test_disentax_options_translate_size_names():
  if eval_speed.disentax_name("mig") is None:
    pytest.skip("disentax has no registered mig")
  options, dropped = eval_speed.disentax_options("mig", {"num_train": 7,
                                                         "nope": 1})
  assert options == {"num_points": 7} and dropped == ["nope"]


# --- cross-checks with disentax (same codes and factors) -------------------


def _codes_for_cross_check(factors: np.ndarray) -> dict[str, np.ndarray]:
  """Codes of several kinds for the same factors, float32 (what disentax
  computes in) so both sides see identical numbers."""
  rng = np.random.default_rng(3)
  f = factors.astype(np.float32)
  mixed = f @ rng.normal(size=(f.shape[1], f.shape[1])).astype(np.float32)
  return {
      "identity": f,
      "permuted": f[:, ::-1].copy(),
      "duplicated": np.concatenate([f, f], axis=1),
      "noisy": f + rng.normal(scale=0.7, size=f.shape).astype(np.float32),
      "mixed": mixed,
      "noise": rng.normal(size=f.shape).astype(np.float32),
  }


def test_reference_mig_equals_disentax_mig():
  mig = disentax_module("mig")
  factors = factor_sample(FIVE, 2000)
  discretize = disentax_function(disentax_module("discrete"), "discretize")
  for kind, codes in _codes_for_cross_check(factors).items():
    # The histogram bins are identical (dlib's labels start at 1) ...
    np.testing.assert_array_equal(np.asarray(discretize(codes, 20)) + 1,
                                  rp.histogram_discretize(codes, 20),
                                  err_msg=kind)
    # ... so the scores differ only by float32 vs float64 rounding (< 1e-7
    # seen).
    ours = mig.mig_score(codes, factors, FIVE.factor_sizes)
    theirs = rp.mig_from_codes(codes, factors, num_bins=20)
    np.testing.assert_allclose(float(ours["mig"]), theirs["mig"], rtol=0,
                               atol=1e-6, err_msg=kind)
    np.testing.assert_allclose(np.asarray(ours["mig_per_factor"]),
                               theirs["mig_per_factor"], rtol=0, atol=1e-6,
                               err_msg=kind)


def test_reference_unsupervised_equals_disentax():
  unsupervised = disentax_module("unsupervised")
  scores_fn = disentax_function(unsupervised, "unsupervised_scores")
  rng = np.random.default_rng(0)
  mixing = rng.normal(size=(6, 6))
  codes = (rng.normal(size=(3000, 6)) @ mixing).astype(np.float32)
  ours = {k: float(v[0]) for k, v in scores_fn(codes[None]).items()}
  theirs = rp.unsupervised_from_codes(codes.astype(np.float64))
  for key in ("gaussian_total_correlation",
              "gaussian_wasserstein_correlation",
              "gaussian_wasserstein_correlation_norm"):  # both float64
    assert ours[key] == pytest.approx(theirs[key], rel=1e-9, abs=1e-12), key
  # The discretisation is exact in both, so only float summation differs.
  assert ours["mutual_info_score"] == pytest.approx(
      theirs["mutual_info_score"], rel=1e-5, abs=1e-7)


def test_reference_dci_equals_disentax_given_the_importance():
  dci = disentax_module("dci")
  disentanglement = disentax_function(dci, "disentanglement")
  completeness = disentax_function(dci, "completeness")
  rng = np.random.default_rng(1)
  matrices = [np.diag(5.0 * np.ones(5)),
              np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]),
              np.hstack([np.diag(5.0 * np.ones(5))] * 2),
              np.vstack([np.diag(5.0 * np.ones(5))] * 2),
              rng.random((10, 5)), rng.random((6, 4)) ** 4]
  for importance in matrices:
    assert float(disentanglement(importance)) == pytest.approx(
        rp.dci_disentanglement(importance), abs=1e-12)
    assert float(completeness(importance)) == pytest.approx(
        rp.dci_completeness(importance), abs=1e-12)


def test_reference_dci_importance_equals_disentax_fits():
  dci = disentax_module("dci")
  importance_fn = disentax_function(dci, "importance_gbt")
  factors_train = factor_sample(FIVE, 200, seed=0)
  factors_test = factor_sample(FIVE, 100, seed=1)
  rng = np.random.default_rng(2)
  noisy_train = factors_train + rng.normal(scale=0.5, size=factors_train.shape)
  noisy_test = factors_test + rng.normal(scale=0.5, size=factors_test.shape)
  ours, train_acc, test_acc = importance_fn(
      noisy_train[None], factors_train, noisy_test[None], factors_test,
      n_jobs=1)
  theirs, their_train, their_test = rp.importance_gbt(
      noisy_train, factors_train, noisy_test, factors_test)
  np.testing.assert_allclose(ours[0], theirs, rtol=1e-12, atol=1e-12)
  assert float(np.mean(train_acc[0])) == pytest.approx(their_train)
  assert float(np.mean(test_acc[0])) == pytest.approx(their_test)


def test_reference_modularity_equals_disentax():
  module = disentax_module("modularity")
  modularity = disentax_function(module, "modularity")
  rng = np.random.default_rng(4)
  matrices = [np.diag(5.0 * np.ones(5)),
              np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]),
              np.zeros((10, 10)),
              np.hstack([np.diag(5.0 * np.ones(5))] * 2),
              rng.random((10, 5)), rng.random((7, 3)) ** 3]
  for mi in matrices:
    assert float(modularity(mi)) == pytest.approx(rp.modularity(mi),
                                                  rel=1e-5, abs=1e-6)


def test_reference_irs_equals_disentax():
  irs = disentax_module("irs")
  irs_score = disentax_function(irs, "irs_score")
  factors = factor_sample(FIVE, 1500)
  for kind, codes in _codes_for_cross_check(factors).items():
    ours = irs_score(codes, factors)
    theirs = rp.irs_from_codes(codes.astype(np.float64), factors)
    assert float(ours["irs"]) == pytest.approx(theirs["irs"], rel=1e-4,
                                               abs=1e-5), kind
    assert int(ours["irs_active_dims"]) == theirs["irs_active_dims"], kind


def test_reference_sap_matrix_equals_disentax():
  sap = disentax_module("sap")
  matrix_fn = disentax_function(sap, "sap_score_matrix")
  factors_train = factor_sample(FIVE, 300, seed=0)
  factors_test = factor_sample(FIVE, 200, seed=1)
  rng = np.random.default_rng(5)
  codes_train = factors_train + rng.normal(scale=0.5, size=(300, 5))
  codes_test = factors_test + rng.normal(scale=0.5, size=(200, 5))
  ours = matrix_fn(codes_train[None], factors_train, codes_test[None],
                   factors_test, n_jobs=1)[0]
  theirs = rp.sap_score_matrix(codes_train, factors_train, codes_test,
                               factors_test)
  np.testing.assert_allclose(ours, theirs, atol=1e-12)
  assert float(sap.sap_from_matrix(ours)) == pytest.approx(
      rp.sap_from_matrix(theirs))


def test_reference_factor_vae_equals_disentax_on_the_same_codes():
  factor_vae = disentax_module("factor_vae")
  score_fn = disentax_function(factor_vae, "factor_vae_score")
  rng = np.random.default_rng(6)
  num_factors, d, batch = 4, 6, 16
  scale = np.array([1.0, 1.0, 1.0, 1.0, 0.5, 0.01])  # the last is pruned

  def batches(num):
    labels = rng.integers(0, num_factors, num)
    codes = rng.normal(size=(num, batch, d)) * scale
    # The fixed factor's latent barely moves within its batch.
    codes[np.arange(num), :, labels] *= 0.2
    return codes.astype(np.float32), labels.astype(np.int32)

  variance_codes = (rng.normal(size=(2000, d)) * scale).astype(np.float32)
  train_codes, train_labels = batches(300)
  eval_codes, eval_labels = batches(200)
  ours = score_fn(variance_codes, train_codes, train_labels, eval_codes,
                  eval_labels, num_factors, 0.05)
  variances = np.var(variance_codes.astype(np.float64), axis=0, ddof=1)
  active = np.sqrt(variances) >= 0.05

  def votes(codes, labels):
    table = np.zeros((num_factors, d), np.int64)
    for batch_codes, label in zip(codes.astype(np.float64), labels):
      table[label, rp.factor_vae_vote(batch_codes, variances, active)] += 1
    return table

  train, evaluation = rp.majority_vote_accuracy(
      votes(train_codes, train_labels), votes(eval_codes, eval_labels))
  assert float(ours["factor_vae_train_accuracy"]) == pytest.approx(train)
  assert float(ours["factor_vae_score"]) == pytest.approx(evaluation)
  assert int(ours["factor_vae_active_dims"]) == int(active.sum()) == 5


def test_reference_beta_vae_classifier_agrees_with_disentax():
  """Same features, two solvers of the same problem: sklearn's lbfgs stops
  after 100 iterations, disentax's Newton solve is run to the optimum, so
  accuracies may differ by a few points near the decision boundary."""
  beta_vae = disentax_module("beta_vae")
  score_fn = disentax_function(beta_vae, "beta_vae_score")
  rng = np.random.default_rng(7)
  num, d, num_factors = 400, 6, 5
  labels = rng.integers(0, num_factors, num).astype(np.int32)
  features = rng.gamma(2.0, size=(num, d)).astype(np.float32)
  features[np.arange(num), labels] *= 0.5
  train, evaluation = slice(0, 250), slice(250, None)
  ours = score_fn(features[train], labels[train], features[evaluation],
                  labels[evaluation], num_factors)
  model = rp.fit_beta_vae_classifier(features[train], labels[train])
  theirs = np.mean(model.predict(features[evaluation]) == labels[evaluation])
  assert abs(float(ours["beta_vae_score"]) - theirs) <= 0.02


def test_reference_modularity_explicitness_agrees_with_disentax():
  """Same codes: modularity is the same MI arithmetic; explicitness fits
  the same logistic regressions with two solvers (sklearn's lbfgs, 100
  iterations, vs disentax's exact optimum), so AUCs agree closely."""
  module = disentax_module("modularity")
  score_fn = disentax_function(module, "modularity_explicitness")
  factors_train = factor_sample(FIVE, 600, seed=0)
  factors_test = factor_sample(FIVE, 300, seed=1)
  codes_train = _codes_for_cross_check(factors_train)["mixed"]
  codes_test = _codes_for_cross_check(factors_test)["mixed"]
  ours = score_fn(codes_train, factors_train, codes_test, factors_test,
                  FIVE.factor_sizes)
  theirs = rp.modularity_explicitness_from_codes(
      codes_train.astype(np.float64), factors_train,
      codes_test.astype(np.float64), factors_test)
  assert float(ours["modularity"]) == pytest.approx(theirs["modularity"],
                                                    abs=1e-6)
  for key in ("explicitness_train", "explicitness_test"):
    assert float(ours[key]) == pytest.approx(theirs[key], abs=1e-3), key
