"""Known-answer tests of DCI, SAP and IRS (disentanglement_lib's
definitions): hand-computed matrices, the identity / zeros / duplicated /
noise codes of `FactorDataset`, and "a sweep of members in one call scores
each member as if alone"."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from disentax.metrics import METRICS
from disentax.metrics import dci as dci_lib
from disentax.metrics import irs as irs_lib
from disentax.metrics import sap as sap_lib
from disentax.metrics.sampling import sample_codes
from tests.metric_datasets import (FactorDataset, duplicated, flat, identity,
                                   members, noise_of, permuted, zeros)

# Small factors keep the gradient-boosted trees fast.
SIZES = (2, 3, 4, 2)
SMALL = {"num_train": 300, "num_test": 150, "batch_size": 150, "n_jobs": 1}


def nan_codes(x):
  """A diverged member: identity codes with one NaN."""
  return flat(x).at[0, 0].set(jnp.nan)


def _build(name, **options):
  return METRICS.build({"name": name, **options})


# --- DCI: disentanglement / completeness of hand matrices (dlib's tests) -----

DIAGONAL = np.diag(5.0 * np.ones(5))
DLIB_CASES = [
    # (name, importance, disentanglement, completeness)
    ("diagonal", DIAGONAL, 1.0, 1.0),
    ("diagonal_empty_codes", np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]),
     1.0, 1.0),
    ("zero", np.zeros((10, 10)), 0.0, 0.0),
    ("redundant_codes", np.vstack([DIAGONAL, DIAGONAL]), 1.0,
     1.0 - math.log(2) / math.log(10)),
    ("missed_factors", DIAGONAL[:2], 1.0, 1.0),
    ("one_code_two_factors", np.hstack([DIAGONAL, DIAGONAL]),
     1.0 - math.log(2) / math.log(10), 1.0),
]


@pytest.mark.parametrize("name, importance, expected_d, expected_c",
                         DLIB_CASES, ids=[c[0] for c in DLIB_CASES])
def test_dci_hand_matrices_match_dlib(name, importance, expected_d,
                                      expected_c):
  del name
  np.testing.assert_allclose(dci_lib.disentanglement(importance), expected_d,
                             atol=1e-7)
  np.testing.assert_allclose(dci_lib.completeness(importance), expected_c,
                             atol=1e-7)


def test_dci_hand_computed_2x2():
  # Latent 0 serves factor 0 only (score 1, weight 1/3); latent 1 splits
  # evenly (score 0, weight 2/3).  Factor 0 is split over both latents
  # (score 0, weight 2/3); factor 1 has latent 1 only (score 1, weight 1/3).
  importance = np.array([[1.0, 0.0], [1.0, 1.0]])
  np.testing.assert_allclose(dci_lib.disentanglement(importance), 1 / 3,
                             rtol=1e-8)
  np.testing.assert_allclose(dci_lib.completeness(importance), 1 / 3,
                             rtol=1e-8)


def test_dci_hand_computed_3x2():
  importance = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # sum 5
  # Rows: one-hot, one-hot, even split -> (1, 1, 0), weights (2, 1, 2) / 5.
  np.testing.assert_allclose(dci_lib.disentanglement(importance), 3 / 5,
                             rtol=1e-8)
  # Columns in base 3: (2/3, 0, 1/3) with weight 3/5, (0, 1/2, 1/2) with 2/5.
  h0 = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3)) / math.log(3)
  h1 = math.log(2) / math.log(3)
  np.testing.assert_allclose(dci_lib.completeness(importance),
                             3 / 5 * (1 - h0) + 2 / 5 * (1 - h1), rtol=1e-8)
  np.testing.assert_allclose(dci_lib.disentanglement_per_code(importance),
                             [1, 1, 0], atol=1e-8)
  np.testing.assert_allclose(dci_lib.completeness_per_factor(importance),
                             [1 - h0, 1 - h1], atol=1e-8)


def test_dci_scores_are_vectorised_over_members():
  rng = np.random.default_rng(0)
  stack = rng.uniform(size=(4, 6, 3))
  stack[1] = 0.0
  stack[2, :, 1] = np.nan  # a diverged member
  batched_d = dci_lib.disentanglement(stack)
  batched_c = dci_lib.completeness(stack)
  assert batched_d.shape == batched_c.shape == (4,)
  for m in (0, 1, 3):
    np.testing.assert_allclose(batched_d[m], dci_lib.disentanglement(stack[m]),
                               rtol=1e-12)
    np.testing.assert_allclose(batched_c[m], dci_lib.completeness(stack[m]),
                               rtol=1e-12)
  assert np.isnan(batched_d[2]) and np.isnan(batched_c[2])


def test_dci_single_factor_or_latent_is_trivially_perfect():
  # Entropy over an axis of length 1 is 0 (dlib divides by log 1 -> NaN).
  np.testing.assert_allclose(dci_lib.disentanglement([[0.3], [0.7]]), 1.0)
  np.testing.assert_allclose(dci_lib.completeness([[0.3, 0.7]]), 1.0)


# --- DCI on FactorDataset ----------------------------------------------------


def test_dci_known_answers_for_a_sweep_of_members():
  metric = _build("dci", **SMALL)
  result = metric(FactorDataset(SIZES),
                  members(identity, permuted, zeros, noise_of, nan_codes),
                  jax.random.key(0))
  assert set(result) == {"dci_disentanglement", "dci_completeness",
                         "dci_informativeness_train",
                         "dci_informativeness_test", "dci_importance"}
  assert result["dci_importance"].shape == (5, 4, 4)
  for name, value in result.items():
    assert isinstance(value, np.ndarray)
    if name != "dci_importance":
      assert value.shape == (5,)
  for m in (0, 1):  # identity and its permutation: perfect
    for name in ("dci_disentanglement", "dci_completeness",
                 "dci_informativeness_train", "dci_informativeness_test"):
      assert result[name][m] >= 0.9, (m, name, result[name][m])
  # Zeros: no importance at all, so 0 and 0; accuracy of the majority class.
  np.testing.assert_array_equal(result["dci_importance"][2], 0.0)
  assert result["dci_disentanglement"][2] == 0.0
  assert result["dci_completeness"][2] == pytest.approx(0.0, abs=1e-7)
  assert result["dci_informativeness_test"][2] <= 0.6
  # Noise: importance spread over every latent and factor.
  assert result["dci_disentanglement"][3] <= 0.2
  assert result["dci_completeness"][3] <= 0.2
  assert result["dci_informativeness_test"][3] <= 0.6
  # A diverged member is NaN everywhere, never 0.
  for value in result.values():
    assert np.all(np.isnan(value[4]))


def test_dci_duplicated_code_completeness_and_n_jobs_determinism():
  # [z, z]: each factor's importance is split over its two copies, so
  # completeness is about 1 - ln 2 / ln d with d = 2F latents (dlib's test:
  # 5 factors and 10 codes -> 1 - ln2/ln10), and disentanglement stays 1.
  # The split between two identical latents is decided by the trees'
  # random feature order: fixed random_state, so n_jobs cannot change it.
  dataset = FactorDataset(SIZES)
  codes = members(duplicated)
  factors_train, train = sample_codes(dataset, codes, jax.random.key(1), 300,
                                      300)
  factors_test, test = sample_codes(dataset, codes, jax.random.key(2), 150,
                                    150)
  one = dci_lib.dci_scores(train, factors_train, test, factors_test, 1)
  two = dci_lib.dci_scores(train, factors_train, test, factors_test, 2)
  target = 1 - math.log(2) / math.log(2 * len(SIZES))
  assert abs(one["dci_completeness"][0] - target) <= 0.1
  assert one["dci_disentanglement"][0] >= 0.9
  for name in one:
    np.testing.assert_array_equal(one[name], two[name])


def test_dci_members_in_one_call_equal_each_alone():
  dataset = FactorDataset(SIZES)
  codes = members(identity, noise_of)
  factors_train, train = sample_codes(dataset, codes, jax.random.key(2), 200,
                                      200)
  factors_test, test = sample_codes(dataset, codes, jax.random.key(3), 100,
                                    100)
  together = dci_lib.dci_scores(train, factors_train, test, factors_test, 1)
  for m in range(2):
    alone = dci_lib.dci_scores(train[m:m + 1], factors_train, test[m:m + 1],
                               factors_test, 1)
    for name in together:
      np.testing.assert_allclose(together[name][m], alone[name][0],
                                 rtol=1e-12)


def test_dci_single_valued_factor_is_left_out():
  # Factor 0 has one value: no classifier can be fitted (dlib would crash);
  # its importance column is 0 and it is left out of every score.
  dataset = FactorDataset((1, 3, 2))
  result = _build("dci", **SMALL)(dataset, members(identity),
                                  jax.random.key(4))
  np.testing.assert_array_equal(result["dci_importance"][0, :, 0], 0.0)
  for name in ("dci_disentanglement", "dci_completeness",
               "dci_informativeness_test"):
    assert result[name][0] >= 0.9


# --- SAP ---------------------------------------------------------------------


def test_sap_top_two_gap_of_hand_matrix():
  matrix = np.array([[0.9, 0.2, 0.5],
                     [0.5, 0.6, 0.5],
                     [0.1, 0.1, 0.5]])
  np.testing.assert_allclose(sap_lib.top_two_gap(matrix), [0.4, 0.4, 0.0],
                             atol=1e-12)
  np.testing.assert_allclose(sap_lib.sap_from_matrix(matrix), 0.8 / 3,
                             atol=1e-12)
  # Vectorised over leading axes; a single latent's gap is to 0.
  stacked = np.stack([matrix, matrix[::-1]])
  np.testing.assert_allclose(sap_lib.sap_from_matrix(stacked),
                             [0.8 / 3, 0.8 / 3], atol=1e-12)
  np.testing.assert_allclose(sap_lib.top_two_gap(matrix[:1]), matrix[0])


def test_sap_leaves_single_valued_factors_out_of_the_mean():
  matrix = np.array([[1.0, 0.7], [1.0, 0.2]])
  factors = np.array([[0, 0], [0, 1], [0, 2]])
  np.testing.assert_allclose(sap_lib.sap_from_matrix(matrix, factors), 0.5)
  np.testing.assert_allclose(sap_lib.sap_from_matrix(matrix), 0.25)


def test_sap_known_answers_on_binary_factors():
  # With binary factors one threshold on the right latent is a perfect
  # classifier, while the runner-up (an independent latent) classifies at
  # chance, so the identity code scores about 1 - 0.5.  (dlib's identity
  # threshold 0.9-1.0 is for its continuous variant.)  Identical or constant
  # latents tie, so their gap is exactly 0.
  dataset = FactorDataset((2, 2, 2, 2))
  result = _build("sap", **SMALL)(
      dataset, members(identity, permuted, zeros, noise_of, nan_codes),
      jax.random.key(5))
  assert set(result) == {"sap", "sap_matrix"}
  assert result["sap"].shape == (5,)
  assert result["sap_matrix"].shape == (5, 4, 4)
  identity_matrix = result["sap_matrix"][0]
  np.testing.assert_allclose(np.diag(identity_matrix), 1.0)
  off_diagonal = identity_matrix[~np.eye(4, dtype=bool)]
  assert np.all(np.abs(off_diagonal - 0.5) <= 0.1)  # chance
  np.testing.assert_allclose(
      result["sap"][0], np.mean(1 - np.sort(identity_matrix, axis=0)[-2]))
  assert 0.4 <= result["sap"][0] <= 0.6
  np.testing.assert_allclose(result["sap"][1], result["sap"][0], atol=0.1)
  assert result["sap"][2] == 0.0  # constant latents: all predict alike
  assert result["sap"][3] <= 0.2
  assert np.isnan(result["sap"][4])
  assert np.all(np.isnan(result["sap_matrix"][4]))
  duplicate = _build("sap", **SMALL)(dataset, members(duplicated),
                                     jax.random.key(5))
  assert duplicate["sap"][0] == 0.0  # dlib's duplicated threshold 0-0.2


def test_sap_on_multi_class_factors_favours_the_right_latent():
  # One linear threshold cannot separate a factor's middle values, so the
  # discrete SAP of even a perfect code is well below 1 here; each factor is
  # still predicted best from its own latent, and noise is near 0.
  dataset = FactorDataset(SIZES)
  codes = members(identity, noise_of)
  factors_train, train = sample_codes(dataset, codes, jax.random.key(6), 400,
                                      400)
  factors_test, test = sample_codes(dataset, codes, jax.random.key(7), 200,
                                    200)
  together = sap_lib.sap_scores(train, factors_train, test, factors_test, 1)
  matrix = together["sap_matrix"][0]
  np.testing.assert_array_equal(np.argmax(matrix, axis=0), np.arange(4))
  assert together["sap"][0] >= together["sap"][1] + 0.3
  for m in range(2):  # and each member scored alone gives the same
    alone = sap_lib.sap_scores(train[m:m + 1], factors_train, test[m:m + 1],
                               factors_test, 1)
    for name in together:
      np.testing.assert_allclose(together[name][m], alone[name][0],
                                 rtol=1e-12)


def test_sap_n_jobs_does_not_change_scores():
  dataset = FactorDataset(SIZES)
  codes = members(identity, noise_of)
  factors_train, train = sample_codes(dataset, codes, jax.random.key(8), 300,
                                      300)
  factors_test, test = sample_codes(dataset, codes, jax.random.key(9), 150,
                                    150)
  one = sap_lib.sap_scores(train, factors_train, test, factors_test, 1)
  two = sap_lib.sap_scores(train, factors_train, test, factors_test, 2)
  for name in one:
    np.testing.assert_array_equal(one[name], two[name])


def test_sap_continuous_matrix_is_the_squared_correlation():
  """dlib's continuous_factors=True: S[j, k] = cov(z_j, v_k)^2 /
  (var z_j var v_k), numpy's corrcoef squared; 0 for a latent of variance
  <= 1e-12 (even a perfectly correlated one) and for a factor that never
  varies; NaN for a non-finite member."""
  rng = np.random.default_rng(4)
  factors = np.stack([rng.integers(0, 5, 200), rng.integers(0, 3, 200),
                      np.full(200, 2)], 1)
  mixed = np.stack([factors[:, 0] + 0.5 * factors[:, 1],
                    rng.normal(size=200) + factors[:, 1],
                    1e-7 * factors[:, 0], np.full(200, 3.0)], 1)
  broken = mixed.copy()
  broken[3, 1] = np.nan
  matrix = sap_lib.squared_correlation_matrix(np.stack([mixed, broken]),
                                              factors)
  assert matrix.shape == (2, 4, 3)
  expected = np.zeros((4, 3))
  for j in range(2):
    for k in range(2):
      expected[j, k] = np.corrcoef(mixed[:, j], factors[:, k])[0, 1] ** 2
  np.testing.assert_allclose(matrix[0], expected, rtol=1e-12, atol=1e-15)
  assert np.all(np.isnan(matrix[1]))
  # The SAP of that matrix: the gap of each varied factor's column.
  scores = sap_lib.sap_scores(np.stack([mixed]), factors, np.stack([mixed]),
                              factors, continuous_factors=True)
  gaps = [np.diff(np.sort(expected[:, k])[-2:])[0] for k in range(2)]
  np.testing.assert_allclose(scores["sap"], [np.mean(gaps)], rtol=1e-12)


def test_sap_continuous_known_answers_and_members_alone():
  """dlib's known answers (its tests use the continuous variant): the
  identity code scores 0.9-1.0 (exactly 1 - the largest chance r^2 of
  each factor with another latent), zeros 0; members scored together equal
  each alone, on the training points only."""
  dataset = FactorDataset((6, 6, 6, 6))
  codes = [identity, permuted, zeros, noise_of]
  metric = _build("sap", continuous_factors=True, **SMALL)
  key = jax.random.key(5)
  result = metric(dataset, members(*codes), key)
  train_rng, _ = jax.random.split(key)
  factors, train = sample_codes(dataset, members(identity), train_rng,
                                SMALL["num_train"], SMALL["batch_size"])
  chance = np.corrcoef(factors.T) ** 2
  np.fill_diagonal(chance, 0.0)
  np.testing.assert_allclose(result["sap"][0], np.mean(1 - chance.max(0)),
                             rtol=1e-10)
  assert 0.9 <= result["sap"][0] <= 1.0
  np.testing.assert_allclose(result["sap"][1], result["sap"][0], rtol=1e-12)
  assert result["sap"][2] == 0.0
  assert result["sap"][3] < 0.2
  for m, code in enumerate(codes):
    alone = metric(dataset, members(code), key)
    for name in result:
      np.testing.assert_allclose(result[name][m], alone[name][0],
                                 rtol=1e-12)


# --- IRS ---------------------------------------------------------------------


def _irs_reference(codes, groups, diff_quantile):
  """IRS from its definition, one loop per (factor, value), in float64."""
  codes = np.asarray(codes, np.float64)
  active = codes.max(0) > codes.min(0)
  z = codes[:, active]
  if not active.any():
    return 0.0
  max_dev = np.abs(z - z.mean(0)).max(0)
  matrix = np.zeros((z.shape[1], groups.shape[1]))
  for k in range(groups.shape[1]):
    values = np.unique(groups[:, k])
    for value in values:
      members_ = z[groups[:, k] == value]
      spread = np.abs(members_ - members_.mean(0))
      matrix[:, k] += np.quantile(spread, diff_quantile, axis=0)
    matrix[:, k] /= len(values)
  per_latent = (1 - matrix / max_dev[:, None]).max(1)
  return np.average(per_latent, weights=max_dev)


def test_irs_hand_computed():
  # Four points, factors g = (0,0,1,1), h = (0,1,0,1); z0 = g, z1 = h.
  # Holding g fixed, z0 does not move (IRS 1) but z1 spans its whole range
  # (IRS 0), and the other way round for h.
  groups = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.int32)
  codes = groups.astype(np.float32)
  both = irs_lib.scalable_disentanglement_score(codes, groups, 2, 1.0)
  np.testing.assert_allclose(both["irs_matrix"], [[1, 0], [0, 1]], atol=1e-6)
  np.testing.assert_allclose(both["max_deviations"], [0.5, 0.5])
  np.testing.assert_allclose(both["irs"], 1.0, atol=1e-6)
  assert both["irs_active_dims"] == 2
  # Only g observed: z1 has nothing it is robust to, and both latents have
  # equal weight -> (1 + 0) / 2.
  only_g = irs_lib.scalable_disentanglement_score(codes, groups[:, :1], 2,
                                                  1.0)
  np.testing.assert_allclose(only_g["irs_per_latent"], [1.0, 0.0], atol=1e-6)
  np.testing.assert_allclose(only_g["irs"], 0.5, atol=1e-6)


@pytest.mark.parametrize("diff_quantile", [0.0, 0.5, 0.9, 0.99, 1.0])
def test_irs_matches_its_definition_on_uneven_groups(diff_quantile):
  rng = np.random.default_rng(int(diff_quantile * 100))
  n = 700
  groups = np.stack([rng.integers(0, 3, n), rng.choice(5, n, p=[.5, .3, .1,
                                                                .07, .03])],
                    axis=1).astype(np.int32)
  codes = np.stack([groups[:, 0] + 0.3 * rng.normal(size=n),
                    rng.normal(size=n), groups[:, 1] * 2.0,
                    np.full(n, 4.0)], axis=1).astype(np.float32)
  score = irs_lib.scalable_disentanglement_score(codes, groups, 5,
                                                 diff_quantile)
  np.testing.assert_allclose(score["irs"],
                             _irs_reference(codes, groups, diff_quantile),
                             rtol=1e-4, atol=1e-5)
  assert score["irs_active_dims"] == 3  # the constant latent is dropped
  assert np.all(np.isnan(score["irs_matrix"][3]))


def test_irs_discretises_factors_into_bins():
  # A 40-valued factor falls into 20 histogram bins of two values each
  # (dlib's discretizer), so a code equal to the factor moves within a bin.
  rng = np.random.default_rng(1)
  factors = rng.integers(0, 40, (2000, 1)).astype(np.int32)
  codes = factors.astype(np.float32)
  binned = irs_lib.irs_score(codes, factors, num_bins=20, diff_quantile=1.0)
  exact = irs_lib.irs_score(codes, factors, num_bins=40, diff_quantile=1.0)
  np.testing.assert_allclose(exact["irs"], 1.0, atol=1e-5)
  np.testing.assert_allclose(
      binned["irs"], _irs_reference(codes, factors // 2, 1.0), rtol=1e-4)
  assert binned["irs"] < 0.99


def test_irs_known_answers_for_a_sweep_of_members():
  dataset = FactorDataset(SIZES)
  metric = _build("irs", num_train=500, batch_size=250)
  result = metric(dataset, members(identity, permuted, zeros, noise_of,
                                   nan_codes), jax.random.key(9))
  assert set(result) == {"irs", "irs_active_dims"}
  assert result["irs"].shape == result["irs_active_dims"].shape == (5,)
  assert result["irs"][0] >= 0.9 and result["irs"][1] >= 0.9
  assert result["irs"][2] == 0.0  # every latent constant (dlib: 0)
  np.testing.assert_array_equal(result["irs_active_dims"][:4], [4, 4, 0, 4])
  assert result["irs"][3] <= 0.4
  assert np.isnan(result["irs"][4]) and np.isnan(result["irs_active_dims"][4])
  duplicate = metric(dataset, members(duplicated), jax.random.key(9))
  assert duplicate["irs"][0] >= 0.9  # IRS does not punish redundancy
  # Each member scored alone gives the same numbers (the metric samples
  # the same points from the same key).
  factors, codes = sample_codes(
      dataset, members(identity, permuted, zeros, noise_of, nan_codes),
      jax.random.key(9), 500, 250)
  for m in range(5):
    alone = irs_lib.irs_score(codes[m], factors)
    for name in result:
      np.testing.assert_allclose(alone[name], result[name][m], atol=1e-6)


def test_irs_ignores_a_single_valued_factor():
  # dSprites in dlib scores 5 factors, not its size-1 colour factor: a factor
  # that never varies offers no intervention, so adding one changes nothing.
  rng = np.random.default_rng(2)
  factors = rng.integers(0, 5, (600, 2)).astype(np.int32)
  codes = np.concatenate([factors, rng.normal(size=(600, 1))],
                         axis=1).astype(np.float32)
  with_constant = np.concatenate([np.zeros((600, 1), np.int32), factors], 1)
  np.testing.assert_allclose(irs_lib.irs_score(codes, with_constant)["irs"],
                             irs_lib.irs_score(codes, factors)["irs"],
                             rtol=1e-6)


# --- options -----------------------------------------------------------------


@pytest.mark.parametrize("name, options, match", [
    ("dci", {"num_train": 1}, "dci: num_train must be an integer >= 2, got 1"),
    ("dci", {"num_test": 0}, "dci: num_test must be an integer >= 1, got 0"),
    ("dci", {"n_jobs": 0}, "dci: n_jobs must be a nonzero integer"),
    ("dci", {"n_jobs": 1.5}, "dci: n_jobs must be a nonzero integer"),
    ("sap", {"batch_size": 0}, "sap: batch_size must be an integer >= 1"),
    ("sap", {"n_jobs": True}, "sap: n_jobs must be a nonzero integer"),
    ("sap", {"continuous_factors": "yes"},
     "sap: continuous_factors must be True or False, got 'yes'"),
    ("irs", {"diff_quantile": 1.5}, r"irs: diff_quantile must be a number in "
     r"\[0, 1\].*got 1.5"),
    ("irs", {"diff_quantile": "high"}, "irs: diff_quantile must be a number"),
    ("irs", {"num_bins": 1}, "irs: num_bins must be an integer >= 2, got 1"),
])
def test_metrics_validate_options(name, options, match):
  with pytest.raises(ValueError, match=match):
    _build(name, **options)


@pytest.mark.parametrize("name", ["dci", "sap", "irs"])
def test_metrics_reject_unknown_keys_and_have_dlib_defaults(name):
  with pytest.raises(ValueError, match="unknown key"):
    _build(name, num_points=10)
  metric = _build(name)
  assert metric.num_train == 10000
  if name == "irs":
    assert metric.diff_quantile == 0.99 and metric.num_bins == 20
  else:
    assert metric.num_test == 5000 and metric.n_jobs == -1


@pytest.mark.parametrize("name", ["dci", "sap"])
def test_sklearn_metrics_reject_factors_that_never_vary(name):
  dataset = FactorDataset((1, 1))
  with pytest.raises(ValueError, match=f"{name}: every factor takes a single"):
    _build(name, **SMALL)(dataset, members(identity), jax.random.key(0))
