"""Known-answer tests of the downstream tasks (disentanglement_lib's
`downstream_task`, `reduced_downstream_task`, `strong_downstream_task`):
perfect and constant codes of `FactorDataset`, sklearn's own estimators on
the same arrays, the interventions' definition, and members in one call
scoring as each alone."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from disentax.metrics import METRICS
from disentax.metrics import downstream as ds
from tests.metric_datasets import (FactorDataset, duplicated, flat, identity,
                                   members, noise_of, zeros)

KEY = jax.random.key(1)  # no tied majority in its 60-point samples
SIZES = (2, 3, 4)
# One training size and one test size throughout, so the logistic programs
# (one per training size, test size and factor size) compile once.
SMALL = {"num_train": (60,), "num_test": 40, "batch_size": 50, "n_jobs": 1}


def nan_codes(x):
  """A diverged member: identity codes with one NaN."""
  return flat(x).at[0, 0].set(jnp.nan)


def _build(name, **options):
  return METRICS.build({"name": name, **{**SMALL, **options}})


def _arrays(metric, dataset, representation):
  """The (training factors, codes, test factors, codes) the metric fits on
  for its first training size."""
  _, _, *arrays = next(metric.samples(dataset, representation, KEY))
  return arrays


def _majority_rates(factors_train, factors_test):
  """Per factor: the training sample's most frequent value's frequency in
  the training and in the test sample (a constant code's accuracies)."""
  train, test = [], []
  for train_column, test_column in zip(factors_train.T, factors_test.T):
    counts = np.bincount(train_column)
    assert np.sum(counts == counts.max()) == 1, "tied majority: pick a key"
    train.append(counts.max() / len(train_column))
    test.append(np.mean(test_column == np.argmax(counts)))
  return np.array(train), np.array(test)


# --- the folds and the cross-validated logistic regression -----------------


@pytest.mark.parametrize("n", [5, 10, 12, 13, 60])
def test_kfold_assignment_is_sklearns_unshuffled_kfold(n):
  from sklearn.model_selection import KFold
  fold = ds.kfold_assignment(n)
  for f, (_, held_out) in enumerate(KFold(n_splits=5).split(np.zeros(n))):
    np.testing.assert_array_equal(np.flatnonzero(fold == f), held_out)


def test_logistic_cv_equals_sklearn_logistic_regression_cv():
  """dlib's `logistic_regression_cv`, LogisticRegressionCV(Cs=10,
  cv=KFold(5)), solved to convergence (Newton: the same optimum as the
  default lbfgs, which takes minutes at this tolerance), on the same
  arrays: the same C and
  the same accuracies for every member and factor.  40 points and a factor
  of 5 values: most folds miss a class (sklearn then keeps the whole set's
  classes, multinomial); a binary factor (binomial)."""
  from sklearn.linear_model import LogisticRegressionCV
  from sklearn.model_selection import KFold
  rng = np.random.default_rng(0)
  n, m = 40, 30
  factors = np.stack([rng.integers(0, size, n + m) for size in (2, 5)], 1)
  codes = np.stack([factors + rng.normal(scale=s, size=factors.shape)
                    for s in (0.3, 3.0)])
  codes = np.concatenate([codes, rng.normal(size=(2, n + m, 1))], 2).astype(
      np.float32)
  train, test, chosen = ds.logistic_cv_fits(
      codes[:, :n], factors[:n], codes[:, n:], factors[n:], (2, 5))
  assert len(set(chosen.ravel())) > 1  # different Cs win
  for member in range(2):
    for k in range(2):
      with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # near-separable classes
        model = LogisticRegressionCV(Cs=10, cv=KFold(n_splits=5), tol=1e-10,
                                     max_iter=10_000,
                                     solver="newton-cholesky")
        model.fit(codes[member, :n].astype(np.float64), factors[:n, k])
      expected = (np.mean(model.predict(codes[member, :n]) == factors[:n, k]),
                  np.mean(model.predict(codes[member, n:]) == factors[n:, k]),
                  model.C_[0])
      np.testing.assert_allclose(
          (train[member, k], test[member, k], chosen[member, k]), expected,
          rtol=1e-12, err_msg=f"member {member}, factor {k}")


def test_logistic_sample_weights_equal_sklearns():
  """A fold is a weight vector: `logistic.fit` with 0/1 weights fits the
  weighted points only; with general weights it is sklearn's
  `sample_weight` fit."""
  from sklearn.linear_model import LogisticRegression
  from disentax.metrics import logistic
  rng = np.random.default_rng(2)
  x = rng.normal(size=(60, 3)).astype(np.float32)
  y = (x[:, 0] + 0.5 * rng.normal(size=60) > 0).astype(int) + (
      x[:, 1] > 0.8)
  weight = rng.uniform(0.2, 3.0, 60)
  params = logistic.fit(x, y, 3, C=0.5, sample_weight=weight)
  expected = LogisticRegression(C=0.5, tol=1e-12, max_iter=10_000).fit(
      x.astype(np.float64), y, sample_weight=weight)
  np.testing.assert_allclose(params.weights, expected.coef_, atol=2e-4)
  np.testing.assert_allclose(params.intercept, expected.intercept_,
                             atol=2e-4)


# --- downstream_task -------------------------------------------------------


@pytest.mark.parametrize("name, prefix", [
    ("downstream_task", "downstream_logistic"),
    ("downstream_task_boosted_trees", "downstream_gbt")])
def test_identity_is_perfect_and_a_constant_code_scores_the_majority(
    name, prefix):
  dataset = FactorDataset(SIZES)
  metric = _build(name)
  scores = metric(dataset, members(identity, zeros, nan_codes), KEY)
  factors_train, _, factors_test, _ = _arrays(metric, dataset,
                                              members(identity))
  train_rate, test_rate = _majority_rates(factors_train, factors_test)
  key = f"{prefix}_60"
  np.testing.assert_array_equal(scores[f"{key}_train_accuracy_per_factor"][0],
                                1.0)
  np.testing.assert_array_equal(scores[f"{key}_test_accuracy_per_factor"][0],
                                1.0)
  np.testing.assert_allclose(scores[f"{key}_train_accuracy_per_factor"][1],
                             train_rate, rtol=1e-12)
  np.testing.assert_allclose(scores[f"{key}_test_accuracy_per_factor"][1],
                             test_rate, rtol=1e-12)
  np.testing.assert_allclose(scores[f"{key}_test_accuracy"][:2],
                             [1.0, test_rate.mean()], rtol=1e-12)
  np.testing.assert_allclose(scores[f"{key}_min_test_accuracy"][:2],
                             [1.0, test_rate.min()], rtol=1e-12)
  np.testing.assert_allclose(scores[f"{key}_min_train_accuracy"][:2],
                             [1.0, train_rate.min()], rtol=1e-12)
  assert all(np.all(np.isnan(value[2])) for value in scores.values())


def test_boosted_trees_equal_sklearn_on_the_same_arrays_and_members_alone():
  """dlib's `gradient_boosting_classifier`: GradientBoostingClassifier()
  per factor on the codes of the same points; all members in one call equal
  each scored alone."""
  from sklearn.ensemble import GradientBoostingClassifier
  dataset = FactorDataset(SIZES)
  metric = _build("downstream_task_boosted_trees")
  codes = [identity, noise_of, zeros]
  together = metric(dataset, members(*codes), KEY)
  factors_train, codes_train, factors_test, codes_test = _arrays(
      metric, dataset, members(*codes))
  for m, code in enumerate(codes):
    for k in range(len(SIZES)):
      model = GradientBoostingClassifier(random_state=0).fit(
          codes_train[m], factors_train[:, k])
      assert together["downstream_gbt_60_test_accuracy_per_factor"][m, k] == (
          np.mean(model.predict(codes_test[m]) == factors_test[:, k]))
      assert together["downstream_gbt_60_train_accuracy_per_factor"][
          m, k] == np.mean(model.predict(codes_train[m]) == factors_train[:, k])
    alone = metric(dataset, members(code), KEY)
    for name, value in alone.items():
      np.testing.assert_array_equal(together[name][m], value[0], name)


def test_each_training_size_draws_its_own_samples():
  # dlib draws a fresh training and test sample per size: more points give
  # the noise code's trees more to memorise, the test samples differ.
  dataset = FactorDataset(SIZES)
  metric = _build("downstream_task_boosted_trees", num_train=(20, 60))
  scores = metric(dataset, members(noise_of), KEY)
  assert {"downstream_gbt_20_test_accuracy",
          "downstream_gbt_60_test_accuracy"} <= set(scores)
  samples = list(metric.samples(dataset, members(noise_of), KEY))
  assert [s[0] for s in samples] == [20, 60]
  assert not np.array_equal(samples[0][4], samples[1][4])  # test factors


# --- reduced_downstream_task -----------------------------------------------


def test_reduced_task_removes_the_factors_own_latent():
  """Identity code: removing the latent most important for factor i leaves
  the others perfect and factor i at chance; the duplicated code [z, z]
  keeps a copy (its accuracy stays 1, the leak the task measures) until
  both copies are removed."""
  dataset = FactorDataset(SIZES)
  one = _build("reduced_downstream_task")
  scores = one(dataset, members(identity), KEY)
  test = scores["reduced_downstream_60_test_accuracy"][0]  # [interest, k]
  off = ~np.eye(3, dtype=bool)
  np.testing.assert_array_equal(test[off], 1.0)
  assert np.all(np.diag(test) < 0.75)
  np.testing.assert_allclose(
      scores["reduced_downstream_60_factor_of_interest_test_accuracy"],
      [np.mean(np.diag(test))], rtol=1e-12)
  np.testing.assert_array_equal(
      scores["reduced_downstream_60_other_factors_test_accuracy"], [1.0])
  kept = one(dataset, members(duplicated), KEY)
  np.testing.assert_array_equal(
      kept["reduced_downstream_60_test_accuracy"], 1.0)
  two = _build("reduced_downstream_task", num_factors_to_remove=2)
  leak = two(dataset, members(duplicated), KEY)[
      "reduced_downstream_60_test_accuracy"][0]
  np.testing.assert_array_equal(leak[off], 1.0)
  assert np.all(np.diag(leak) < 0.75)


def test_reduced_task_refuses_removing_every_latent():
  metric = _build("reduced_downstream_task", num_factors_to_remove=3)
  with pytest.raises(ValueError, match="num_factors_to_remove=3 must be "
                     r"below the number of latents \(3\)"):
    metric(FactorDataset(SIZES), members(identity), KEY)


# --- strong_downstream_task ------------------------------------------------


def test_intervention_fixes_one_other_factor_and_shifts_it_at_test():
  rng = np.random.default_rng(0)
  sizes = (2, 1, 3, 4)  # factor 1 has one value: never intervened on
  train = np.stack([rng.integers(0, s, 200) for s in sizes], 1)
  test = np.stack([rng.integers(0, s, 100) for s in sizes], 1)
  chosen = set()
  for i in range(20):
    target = i % 4
    new_train, new_test, factor, value = ds.intervene(
        train, test, target, sizes, jax.random.key(i))
    chosen.add(factor)
    assert factor not in (target, 1)
    np.testing.assert_array_equal(new_train[:, factor], value)
    assert np.all(new_test[:, factor] != value)
    assert np.all((0 <= new_test[:, factor])
                  & (new_test[:, factor] < sizes[factor]))
    others = np.arange(4) != factor
    np.testing.assert_array_equal(new_train[:, others], train[:, others])
    np.testing.assert_array_equal(new_test[:, others], test[:, others])
  assert chosen == {0, 2, 3}
  with pytest.raises(ValueError, match="nothing to intervene on"):
    ds.intervene(train[:, :2], test[:, :2], 0, (2, 1), jax.random.key(0))


def test_strong_task_identity_generalises_and_a_sum_code_does_not():
  """Identity: a factor's latent does not move when another factor does,
  so the trees fitted with one factor fixed predict as well under the shift
  (gap 0).  z = (c0 + c1, c1, c2) in-distribution is as good, but with c1
  fixed in training the trees read c0 off z0 alone and every shifted test
  point of target 0 moves: the gap is positive."""
  dataset = FactorDataset((3, 3, 3))

  def summed(x):
    c = flat(x)
    return jnp.stack([c[:, 0] + c[:, 1], c[:, 1], c[:, 2]], axis=1)

  metric = _build("strong_downstream_task", num_train=(150,), num_test=60,
                  n_experiment=3, batch_size=60)
  scores = metric(dataset, members(identity, summed), KEY)
  prefix = "strong_downstream_150"
  np.testing.assert_array_equal(scores[f"{prefix}_test_accuracy"], 1.0)
  np.testing.assert_array_equal(
      scores[f"{prefix}_strong_test_accuracy_per_factor"][0], 1.0)
  np.testing.assert_array_equal(
      scores[f"{prefix}_strong_generalization_gap"][0], 0.0)
  assert scores[f"{prefix}_strong_generalization_gap"][1] > 0.05
  np.testing.assert_allclose(
      scores[f"{prefix}_strong_generalization_gap"],
      1 - scores[f"{prefix}_strong_test_accuracy"]
      / scores[f"{prefix}_test_accuracy"], rtol=1e-12)


# --- options ----------------------------------------------------------------


@pytest.mark.parametrize("section, match", [
    ({"name": "downstream_task", "predictor": "svm"},
     r"downstream_task: predictor='svm'; allowed: \('logistic_regression_cv'"),
    ({"name": "downstream_task", "num_train": ()}, "non-empty sequence"),
    ({"name": "downstream_task", "num_train": 100}, "non-empty sequence"),
    ({"name": "downstream_task", "num_train": (4,)},
     "num_train must be an integer >= 5, got 4"),
    ({"name": "downstream_task_boosted_trees", "num_train": (1,)},
     "num_train must be an integer >= 2, got 1"),
    ({"name": "downstream_task", "num_train": (10, 10)}, "repeats a size"),
    ({"name": "downstream_task", "num_test": 0}, "num_test"),
    ({"name": "downstream_task", "n_jobs": 0}, "n_jobs"),
    ({"name": "reduced_downstream_task", "num_factors_to_remove": 0},
     "num_factors_to_remove"),
    ({"name": "strong_downstream_task", "n_experiment": 0}, "n_experiment"),
])
def test_invalid_options_are_rejected(section, match):
  with pytest.raises(ValueError, match=match):
    METRICS.build(section)


def test_a_config_list_of_sizes_is_the_default_tuple():
  """A JSON config gives lists: they build the same metric."""
  assert METRICS.build({"name": "downstream_task",
                        "num_train": [10, 100, 1000, 10000]}) == (
                            METRICS.build({"name": "downstream_task"}))
