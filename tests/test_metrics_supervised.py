"""Known-answer tests of the supervised metrics: BetaVAE score, FactorVAE
score, modularity/explicitness, and their JAX logistic regression (checked
against scikit-learn)."""

import functools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import MultiLabelBinarizer

from disentax.metrics import METRICS
from disentax.metrics import beta_vae as beta_vae_lib
from disentax.metrics import factor_vae as factor_vae_lib
from disentax.metrics import logistic
from disentax.metrics import modularity as modularity_lib
from tests.metric_datasets import (FactorDataset, flat, identity, members,
                                   permuted, zeros)

DATASET = FactorDataset()  # 10 factors of 10 values, observation = factors
SMALL = {
    "beta_vae_score": {"num_train": 500, "num_eval": 200, "batch_size": 16},
    "factor_vae_score": {"num_train": 500, "num_eval": 200, "batch_size": 16,
                         "num_variance_estimate": 1000},
    "modularity_explicitness": {"num_train": 600, "num_test": 300},
}
SINGLES = {"identity": identity, "zeros": zeros, "permuted": permuted}


def nan_codes(x):
  """A diverged member: NaN in one latent of every code."""
  return flat(x).at[:, 3].set(jnp.nan)


def _metric(name, **overrides):
  return METRICS.build({"name": name, **SMALL[name], **overrides})


@functools.lru_cache(maxsize=None)
def _stacked(name):
  """Scores of [identity, zeros, permuted, nan] in one call (rng 0)."""
  representation = members(identity, zeros, permuted, nan_codes)
  return _metric(name)(DATASET, representation, jax.random.key(0))


def _random_problem(seed, n, k, num_classes, scale=1.0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, k)) * scale
  w = rng.normal(size=(k, num_classes))
  y = np.argmax(x @ w + rng.gumbel(size=(n, num_classes)), axis=1)
  return x.astype(np.float32), y


def _exact_sklearn(x, y):
  """sklearn's default model, solved to the optimum (its default stops at
  max_iter=100 / tol=1e-4, a little short of it)."""
  return LogisticRegression(tol=1e-12, max_iter=100000).fit(
      x.astype(np.float64), y)


# --- logistic regression --------------------------------------------------
# Every problem is 300 points x 4 features over 5 classes (some unseen), so
# the solver compiles once for the whole section.


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_logistic_matches_sklearn_multinomial(scale):
  x, y = _random_problem(int(scale), 300, 4, 5, scale)
  params = logistic.fit(x, y, 5)
  assert np.all(params.seen)
  reference = _exact_sklearn(x, y)
  np.testing.assert_allclose(params.weights, reference.coef_, atol=1e-3)
  np.testing.assert_allclose(params.intercept, reference.intercept_,
                             atol=1e-3)
  np.testing.assert_allclose(logistic.predict_proba(params, x),
                             reference.predict_proba(x), atol=1e-4)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the default may not converge
    default = LogisticRegression().fit(x, y)
  agree = np.mean(np.asarray(logistic.predict(params, x))
                  == default.predict(x))
  assert agree >= 0.99
  np.testing.assert_allclose(logistic.accuracy(params, x, y),
                             reference.score(x, y), atol=1e-6)


@pytest.mark.parametrize("present", [(0, 2, 3), (1, 4)])
def test_logistic_unseen_classes_are_never_predicted(present):
  x, y = _random_problem(5, 300, 4, len(present))
  y = np.asarray(present)[y]
  params = logistic.fit(x, y, 5)
  np.testing.assert_array_equal(params.seen, np.isin(np.arange(5), present))
  proba = np.asarray(logistic.predict_proba(params, x))
  unseen = [c for c in range(5) if c not in present]
  np.testing.assert_array_equal(proba[:, unseen], 0.0)
  np.testing.assert_array_equal(params.weights[np.array(unseen)], 0.0)
  # Over the seen classes it is sklearn's fit on the training set.
  reference = _exact_sklearn(x, y)
  np.testing.assert_allclose(proba[:, list(present)],
                             reference.predict_proba(x), atol=1e-4)
  assert set(np.asarray(logistic.predict(params, x))) <= set(present)
  if len(present) == 2:
    # Binary: sklearn's binomial model (one weight vector; a 2-class softmax
    # would penalise it half as much), the lower class as reference.
    lo, hi = present
    np.testing.assert_array_equal(params.weights[lo], 0.0)
    np.testing.assert_allclose(params.weights[hi], reference.coef_[0],
                               atol=1e-3)
    np.testing.assert_allclose(params.intercept[hi] - params.intercept[lo],
                               reference.intercept_[0], atol=1e-3)


def test_logistic_single_seen_class_predicts_it():
  x, _ = _random_problem(6, 300, 4, 2)
  params = logistic.fit(x, np.full(300, 2), 5)
  np.testing.assert_array_equal(logistic.predict(params, x), 2)
  np.testing.assert_allclose(logistic.predict_proba(params, x)[:, 2], 1.0)


# --- BetaVAE score --------------------------------------------------------


def test_beta_vae_feature_of_a_tiny_batch():
  # Two pairs of 3-latent codes: |z1 - z2| = [1, 0, 2] and [3, 0, 0].
  codes = np.array([[[0., 5., 1.], [2., 1., 1.]],     # first of each pair
                    [[1., 5., 3.], [-1., 1., 1.]]])   # second of each pair
  np.testing.assert_allclose(beta_vae_lib.beta_vae_features(codes),
                             [2.0, 0.0, 1.0])


def test_pairs_share_the_chosen_factor_and_chunked_features():
  labels, factors = beta_vae_lib.sample_pair_factors(
      DATASET, jax.random.key(1), 60, 4)
  assert factors.shape == (60, 2, 4, 10) and labels.shape == (60,)
  same = factors[:, 0] == factors[:, 1]  # [n, batch, F]
  assert np.all(same[np.arange(60), :, labels])
  # The fixed factor is drawn per pair, and the others mostly differ.
  assert np.mean([len(np.unique(factors[i, 0, :, labels[i]]))
                  for i in range(60)]) > 2
  others = np.ones_like(same)
  others[np.arange(60), :, labels] = False
  assert np.mean(same[others]) < 0.2
  # A tiny encoder batch forces several chunks and padded batches; the
  # features must still be the mean |f1 - f2| of the (identity) codes.
  calls = []

  def representation(x):
    calls.append(x.shape[0])
    return flat(x)[None]

  features = beta_vae_lib.encode_groups(
      DATASET, representation, factors.reshape(60, 8, 10),
      beta_vae_lib._pair_features, encode_batch_size=7)
  assert beta_vae_lib.points_per_chunk(8, 7) < 60  # really chunked
  expected = np.abs(factors[:, 0] - factors[:, 1]).mean(axis=1)
  np.testing.assert_allclose(features[0], expected, rtol=1e-6)
  assert set(calls) == {7}
  # Each point's fixed factor has feature exactly 0.
  np.testing.assert_array_equal(features[0, np.arange(60), labels], 0.0)


def test_beta_vae_known_answers():
  result = _stacked("beta_vae_score")
  assert set(result) == {"beta_vae_score", "beta_vae_train_accuracy"}
  for value in result.values():
    assert value.shape == (4,)
  score, train = result["beta_vae_score"], result["beta_vae_train_accuracy"]
  assert score[0] >= 0.9 and train[0] >= 0.9  # identity
  assert score[1] <= 0.2 and train[1] <= 0.2  # zeros (dlib: 0-0.2)
  assert score[2] >= 0.9 and train[2] >= 0.9  # permuted identity
  assert np.isnan(score[3]) and np.isnan(train[3])  # non-finite codes


# --- FactorVAE score ------------------------------------------------------


def test_factor_vae_majority_vote_on_a_vote_table():
  # votes[factor, latent]; latent 0 -> factor 1 (3 vs 1), latent 1 ->
  # factor 0 (tie 2-2 -> lowest), latent 2 -> factor 2, latent 3 unvoted ->
  # factor 0.
  train = np.array([[1, 2, 0, 0],
                    [3, 2, 1, 0],
                    [0, 0, 4, 0]])
  evaluation = np.array([[0, 1, 0, 2],
                         [2, 0, 1, 0],
                         [1, 3, 0, 0]])
  result = factor_vae_lib.majority_vote_accuracy(train, evaluation)
  np.testing.assert_array_equal(result["classifier"], [1, 0, 2, 0])
  np.testing.assert_allclose(result["train_accuracy"], (3 + 2 + 4 + 0) / 13)
  np.testing.assert_allclose(result["eval_accuracy"], (2 + 1 + 0 + 2) / 10)


def test_factor_vae_votes_hand_computed():
  # Batch of 3 codes over 3 latents: local variances (ddof=1) 1, 0.25, 4;
  # global variances 1, 1, 100 -> ratios 1, 0.25, 0.04.
  codes = np.array([[[0., 0.5, 0.], [1., 1., 2.], [2., 1., 4.]]])
  local = np.var(codes[0], axis=0, ddof=1)
  np.testing.assert_allclose(local, [1.0, 1 / 12, 4.0])
  variances = np.array([1.0, 1.0, 100.0])
  all_active = np.ones(3, bool)
  assert factor_vae_lib.vote_latents(codes, variances, all_active)[0] == 2
  # Pruning latent 2 hands the vote to the next smallest ratio.
  pruned = np.array([True, True, False])
  assert factor_vae_lib.vote_latents(codes, variances, pruned)[0] == 1
  table = factor_vae_lib.vote_table(np.array([2, 1, 2]), np.array([0, 1, 0]),
                                    3, 2)
  np.testing.assert_array_equal(table, [[0, 0, 2], [0, 1, 0]])


def test_factor_vae_prunes_by_standard_deviation():
  variances = np.array([0.0, 0.05 ** 2 * 0.99, 0.05 ** 2 * 1.01, 3.0])
  np.testing.assert_array_equal(
      factor_vae_lib.active_dims(variances, 0.05), [False, False, True, True])
  # Threshold 0 (dlib's code default) keeps all but exactly constant ones.
  np.testing.assert_array_equal(
      factor_vae_lib.active_dims(variances, 0.0), [False, True, True, True])


def test_fixed_factor_batches_hold_one_value():
  labels, batches, uniform = factor_vae_lib.sample_fixed_factor_batches(
      DATASET, jax.random.key(3), 40, 16, num_uniform=25)
  assert batches.shape == (40, 16, 10) and uniform.shape == (25, 10)
  fixed = batches[np.arange(40), :, labels]  # [n, batch]
  assert np.all(fixed == fixed[:, :1])
  assert len(np.unique(fixed[:, 0])) > 3


def test_factor_vae_known_answers():
  result = _stacked("factor_vae_score")
  assert set(result) == {"factor_vae_score", "factor_vae_train_accuracy",
                         "factor_vae_active_dims"}
  score = result["factor_vae_score"]
  assert score[0] >= 0.9 and score[2] >= 0.9
  assert result["factor_vae_train_accuracy"][0] >= 0.9
  # Zeros: no active latent -> 0 (dlib's answer), with 0 active dims.
  assert score[1] == 0.0 and result["factor_vae_train_accuracy"][1] == 0.0
  np.testing.assert_array_equal(result["factor_vae_active_dims"][:3],
                                [10, 0, 10])
  for value in result.values():
    assert value.shape == (4,) and np.isnan(value[3])


def test_factor_vae_direct_score_matches_definition():
  # The pure per-member function on codes built by hand: latent j copies
  # factor j, so each batch votes (its fixed factor, that factor).
  labels, batches, uniform = factor_vae_lib.sample_fixed_factor_batches(
      DATASET, jax.random.key(4), 30, 8, num_uniform=200)
  codes = batches.astype(np.float32)
  result = factor_vae_lib.factor_vae_score(
      uniform.astype(np.float32), codes[:20], labels[:20], codes[20:],
      labels[20:], num_factors=10)
  assert result["factor_vae_score"] == 1.0
  assert result["factor_vae_active_dims"] == 10


# --- modularity and explicitness ------------------------------------------


def test_modularity_of_a_hand_computed_mi_matrix():
  mi = np.array([[3.0, 1.0, 0.0],    # 1 - 1 / (9 * 2) = 17/18
                 [0.0, 0.0, 0.0],    # dead latent: 0 (dlib)
                 [2.0, 2.0, 2.0],    # 1 - 8 / (4 * 2) = 0
                 [0.0, 0.5, 0.0]])   # one factor only: 1
  np.testing.assert_allclose(modularity_lib.modularity_per_latent(mi),
                             [17 / 18, 0.0, 0.0, 1.0], rtol=1e-6)
  np.testing.assert_allclose(modularity_lib.modularity(mi),
                             (17 / 18 + 1) / 4, rtol=1e-6)
  # Leaving factor 1 out (e.g. constant): K = 2, latent 0 -> 1,
  # latent 2 -> 1 - 4 / 4 = 0, latent 3 loses its only factor -> 0.
  informative = np.array([True, False, True])
  np.testing.assert_allclose(
      modularity_lib.modularity_per_latent(mi, informative),
      [1.0, 0.0, 0.0, 0.0], atol=1e-6)


def test_roc_auc_with_ties_matches_sklearn():
  rng = np.random.default_rng(9)
  targets = rng.integers(0, 2, 300).astype(bool)
  scores = np.round(rng.normal(size=300) + targets, 1).astype(np.float32)
  auc, valid = modularity_lib.roc_auc(targets, scores)
  assert valid
  np.testing.assert_allclose(auc, roc_auc_score(targets, scores), atol=1e-6)
  _, valid = modularity_lib.roc_auc(np.ones(5, bool), np.arange(5.0))
  assert not valid


@pytest.mark.parametrize("num_positive", [3_096, 10_244, 15_929])
def test_roc_auc_exact_for_ties_and_perfect_separation(num_positive):
  # 20,000 points: float32 rank sums gave 0.49999976 for all-tied scores
  # and 0.99999988 / 1.00000012 for a perfect separation at these counts;
  # the doubled integer ranks are exact.
  targets = np.random.default_rng(0).permutation(20_000) < num_positive
  auc, _ = modularity_lib.roc_auc(targets, np.zeros(20_000, np.float32))
  assert float(auc) == 0.5
  auc, _ = modularity_lib.roc_auc(targets, targets.astype(np.float32))
  assert float(auc) == 1.0
  auc, _ = modularity_lib.roc_auc(targets, (~targets).astype(np.float32))
  assert float(auc) == 0.0


def test_macro_roc_auc_matches_dlib_binarizer():
  rng = np.random.default_rng(10)
  labels = rng.integers(0, 4, 200)
  labels[labels == 3] = 2  # class 3 absent: not averaged
  proba = rng.dirichlet(np.ones(4), size=200).astype(np.float32)
  proba[:, 0] += 0.3 * (labels == 0)
  auc, valid = modularity_lib.macro_roc_auc(labels, proba)
  binarized = MultiLabelBinarizer().fit_transform(labels[:, None])
  assert valid
  np.testing.assert_allclose(auc, roc_auc_score(binarized, proba[:, :3]),
                             atol=1e-6)


def test_explicitness_matches_sklearn_pipeline():
  # dlib's explicitness_per_factor with sklearn (solved to the optimum) on a
  # noisy 3-latent code of 2 factors.
  rng = np.random.default_rng(11)
  factors = np.stack([rng.integers(0, 3, 400), rng.integers(0, 5, 400)], 1)
  codes = (np.stack([factors[:, 0], factors[:, 1], factors.sum(1)], 1)
           + rng.normal(size=(400, 3))).astype(np.float32)
  train, test = slice(0, 300), slice(300, 400)
  result = modularity_lib.explicitness_per_factor(
      codes[train], factors[train], codes[test], factors[test], (3, 5))
  mean, std = codes[train].mean(0), codes[train].std(0)
  for k in range(2):
    clf = _exact_sklearn((codes[train] - mean) / std, factors[train, k])
    for name, part in (("train", train), ("test", test)):
      proba = clf.predict_proba((codes[part] - mean) / std)
      binarized = MultiLabelBinarizer().fit_transform(factors[part, k, None])
      np.testing.assert_allclose(result[name][k],
                                 roc_auc_score(binarized, proba), atol=1e-4)
  assert np.all(result["train_valid"]) and np.all(result["test_valid"])


def test_modularity_explicitness_known_answers():
  result = _stacked("modularity_explicitness")
  assert set(result) == {"modularity", "explicitness_train",
                         "explicitness_test"}
  for value in result.values():
    assert value.shape == (4,) and np.isnan(value[3])
  for m in (0, 2):  # identity and permuted identity
    assert result["modularity"][m] >= 0.9
    assert result["explicitness_train"][m] >= 0.9
    assert result["explicitness_test"][m] >= 0.9
  # Zeros: every latent is dead (modularity 0) and every class is ranked
  # by tied probabilities (AUC exactly 0.5).
  assert result["modularity"][1] == 0.0
  np.testing.assert_allclose(result["explicitness_test"][1], 0.5, atol=1e-6)


# --- all metrics: members, registry, validation ---------------------------


@pytest.mark.parametrize("name", sorted(SMALL))
def test_members_in_one_call_equal_members_alone(name):
  stacked = _stacked(name)
  for m, code in enumerate(SINGLES.values()):
    alone = _metric(name)(DATASET, members(code), jax.random.key(0))
    for key, value in alone.items():
      assert value.shape == (1,)
      np.testing.assert_allclose(value[0], stacked[key][m], atol=1e-6,
                                 err_msg=f"{name} {key} member {m}")


@pytest.mark.parametrize("name, kwargs, match", [
    ("beta_vae_score", {"batch_size": 0},
     "beta_vae_score: batch_size must be an integer >= 1, got 0"),
    ("beta_vae_score", {"num_train": 2.5}, "num_train must be an integer"),
    ("factor_vae_score", {"batch_size": 1},
     "factor_vae_score: batch_size must be an integer >= 2, got 1"),
    ("factor_vae_score", {"prune_threshold": -0.1},
     "prune_threshold must be a finite number >= 0"),
    ("factor_vae_score", {"num_variance_estimate": 1},
     "num_variance_estimate must be an integer >= 2"),
    ("modularity_explicitness", {"num_bins": 1},
     "modularity_explicitness: num_bins must be an integer >= 2, got 1"),
    ("modularity_explicitness", {"num_test": True}, "num_test must be"),
])
def test_metrics_validate_options(name, kwargs, match):
  with pytest.raises(ValueError, match=match):
    METRICS.build({"name": name, **kwargs})


def test_metrics_are_registered_with_dlib_defaults():
  beta = METRICS.build({"name": "beta_vae_score"})
  assert (beta.batch_size, beta.num_train, beta.num_eval) == (64, 10000, 5000)
  factor = METRICS.build({"name": "factor_vae_score"})
  assert (factor.batch_size, factor.num_train, factor.num_eval,
          factor.num_variance_estimate) == (64, 10000, 5000, 10000)
  assert math.isclose(factor.prune_threshold, 0.05)
  modular = METRICS.build({"name": "modularity_explicitness"})
  assert (modular.num_train, modular.num_test, modular.num_bins) == (
      10000, 5000, 20)
  with pytest.raises(ValueError, match="unknown key"):
    METRICS.build({"name": "factor_vae_score", "threshold": 0.1})
