"""Known-answer tests of the MIG metric (disentanglement_lib's definitions)."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from disentax.data.base import GroundTruthDataset
from disentax.metrics import METRICS
from disentax.metrics import mig as mig_lib
from disentax.metrics.base import TrainedMembers


def _random_factors(seed, num_points=10000, factor_sizes=(10,) * 5):
  rng = np.random.default_rng(seed)
  return np.stack([rng.integers(0, s, num_points) for s in factor_sizes],
                  axis=1).astype(np.int32)


# --- discrete MI / entropy ------------------------------------------------


def test_entropy_of_uniform_variables():
  b = np.array([[0, 0], [1, 0], [2, 1], [3, 1]] * 5, np.int32)
  entropy = mig_lib.discrete_entropy(b, sizes=(4, 2))
  np.testing.assert_allclose(entropy, [math.log(4), math.log(2)], rtol=1e-6)


def test_entropy_of_skewed_variable():
  b = np.array([[0], [0], [0], [1]], np.int32)  # p = (3/4, 1/4)
  expected = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
  np.testing.assert_allclose(mig_lib.discrete_entropy(b, 2), [expected],
                             rtol=1e-6)


def test_mutual_info_hand_computed():
  # Column 0 of `a` is a copy of b, column 1 is balanced-independent of b,
  # column 2 is constant.
  b = np.array([[0], [0], [1], [1]], np.int32)
  a = np.array([[0, 0, 0], [0, 1, 0], [1, 0, 0], [1, 1, 0]], np.int32)
  mi = np.asarray(mig_lib.discrete_mutual_info(a, b, 2, 2))
  assert mi.shape == (3, 1)
  np.testing.assert_allclose(mi[0, 0], math.log(2), rtol=1e-6)
  assert mi[1, 0] == 0.0  # independent balanced table: exactly zero
  assert mi[2, 0] == 0.0


def test_mutual_info_asymmetric_table():
  # Joint counts [[2, 1], [0, 1]] over 4 points.
  a = np.array([[0], [0], [0], [1]], np.int32)
  b = np.array([[0], [0], [1], [1]], np.int32)
  p = np.array([[2, 1], [0, 1]]) / 4
  pa, pb = p.sum(1), p.sum(0)
  expected = sum(p[i, j] * math.log(p[i, j] / (pa[i] * pb[j]))
                 for i in range(2) for j in range(2) if p[i, j] > 0)
  np.testing.assert_allclose(mig_lib.discrete_mutual_info(a, b, 2, 2),
                             [[expected]], rtol=1e-5)


def test_entropy_is_self_mutual_info():
  b = _random_factors(0, 500, (3, 7))
  mi = mig_lib.discrete_mutual_info(b, b, (3, 7), (3, 7))
  np.testing.assert_allclose(np.diag(mi), mig_lib.discrete_entropy(b, (3, 7)),
                             rtol=1e-5)


# --- discretize -----------------------------------------------------------


def _numpy_discretize(codes, num_bins):
  return np.stack([
      np.digitize(c, np.histogram(c, num_bins)[1][:-1]) - 1 for c in codes.T
  ], axis=1)


@pytest.mark.parametrize("num_bins", [2, 20])
def test_discretize_matches_numpy_histogram(num_bins):
  rng = np.random.default_rng(1)
  codes = np.concatenate([
      rng.normal(size=(1000, 3)), rng.uniform(-5, 3, size=(1000, 2)) ** 3
  ], axis=1).astype(np.float32)
  bins = np.asarray(mig_lib.discretize(codes, num_bins))
  assert bins.dtype == np.int32
  np.testing.assert_array_equal(bins, _numpy_discretize(codes, num_bins))
  assert bins.min() == 0 and bins.max() == num_bins - 1


def test_discretize_constant_latent_is_one_bin():
  codes = np.stack([np.full(50, 3.0), np.arange(50.0)], 1).astype(np.float32)
  bins = np.asarray(mig_lib.discretize(codes, 20))
  assert len(np.unique(bins[:, 0])) == 1
  np.testing.assert_array_equal(bins, _numpy_discretize(codes, 20))


# --- mig_score: dlib known answers ----------------------------------------

FACTOR_SIZES = (10,) * 5


def test_mig_identity_representation_is_high():
  factors = _random_factors(2)
  scores = mig_lib.mig_score(factors.astype(np.float32), factors, FACTOR_SIZES)
  assert scores["mig"] >= 0.9
  assert scores["mig_per_factor"].shape == (5,)
  assert np.all(scores["mig_per_factor"] >= 0.9)


def test_mig_zero_representation_is_zero():
  factors = _random_factors(3)
  scores = mig_lib.mig_score(np.zeros((10000, 5), np.float32), factors,
                             FACTOR_SIZES)
  assert scores["mig"] == 0.0
  np.testing.assert_array_equal(scores["mig_per_factor"], np.zeros(5))


def test_mig_duplicated_representation_is_low():
  factors = _random_factors(4)
  z = factors.astype(np.float32)
  scores = mig_lib.mig_score(np.concatenate([z, z], 1), factors, FACTOR_SIZES)
  assert scores["mig"] <= 0.1


def test_mig_non_finite_codes_give_nan():
  factors = _random_factors(5, 200)
  codes = factors.astype(np.float32)
  codes[3, 1] = np.nan
  scores = mig_lib.mig_score(codes, factors, FACTOR_SIZES)
  assert np.isnan(scores["mig"])
  assert np.all(np.isnan(scores["mig_per_factor"]))


def test_mig_constant_factor_is_left_out_of_the_mean():
  factors = _random_factors(6, 2000, (1, 10, 10))
  scores = mig_lib.mig_score(factors[:, 1:].astype(np.float32), factors,
                             (1, 10, 10))
  assert scores["mig_per_factor"][0] == 0.0
  np.testing.assert_allclose(scores["mig"],
                             np.mean(scores["mig_per_factor"][1:]), rtol=1e-6)
  assert scores["mig"] >= 0.9


def test_single_latent_mig_is_its_normalised_mutual_information():
  # One latent equal to factor 1 (10 values): no runner-up, so MIG per
  # factor = NMI = I(z; c_k) / H(c_k): 1 for factor 1, ~0 for the others.
  factors = _random_factors(7, 4000, (1, 10, 10))
  scores = mig_lib.mig_score(factors[:, 1:2].astype(np.float32), factors,
                             (1, 10, 10), num_bins=10)
  np.testing.assert_allclose(scores["mig_per_factor"][1], 1.0, atol=1e-5)
  assert scores["mig_per_factor"][2] < 0.05
  np.testing.assert_allclose(scores["nmi_matrix"][0],
                             scores["mig_per_factor"], atol=1e-6)


def test_nmi_matrix_is_mutual_information_over_factor_entropy():
  factors = _random_factors(8, 3000, (1, 10, 10))
  codes = np.stack([factors[:, 2], factors[:, 1]], axis=1).astype(np.float32)
  nmi = np.asarray(mig_lib.mig_score(codes, factors, (1, 10, 10),
                                     num_bins=10)["nmi_matrix"])
  assert nmi.shape == (2, 3)
  np.testing.assert_allclose(nmi[0, 2], 1.0, atol=1e-5)
  np.testing.assert_allclose(nmi[1, 1], 1.0, atol=1e-5)
  assert nmi[0, 1] < 0.05 and nmi[1, 2] < 0.05
  np.testing.assert_array_equal(nmi[:, 0], 0.0)  # no entropy: 0


def test_mig_vmapped_members_match_single_scores():
  factors = _random_factors(8, 2000)
  z = factors.astype(np.float32)
  noise = np.random.default_rng(9).normal(size=(2000, 5)).astype(np.float32)
  members = np.stack([z + 0.3 * noise, noise, z[:, ::-1] * 2 - 1])
  score = functools.partial(mig_lib.mig_score, factor_sizes=FACTOR_SIZES,
                            num_bins=20)
  batched = jax.jit(jax.vmap(score, in_axes=(0, None)))(members, factors)
  assert batched["mig"].shape == (3,)
  assert batched["mig_per_factor"].shape == (3, 5)
  for m in range(3):
    single = score(members[m], factors)
    np.testing.assert_allclose(batched["mig"][m], single["mig"], atol=1e-6)
    np.testing.assert_allclose(batched["mig_per_factor"][m],
                               single["mig_per_factor"], atol=1e-6)


# --- the registered metric over a dataset ---------------------------------


class _TinyDataset(GroundTruthDataset):
  """Two factors; the observation is a 2x2 image holding the factor values."""

  name = "tiny"
  factor_names = ("a", "b")
  factor_sizes = (4, 6)
  observation_shape = (2, 2, 1)

  def observations_from_factors(self, factors):
    f = jnp.asarray(factors, jnp.float32) / jnp.array([3.0, 5.0])
    image = jnp.stack([f[:, 0], f[:, 1], f[:, 0], f[:, 1]], axis=1)
    return image.reshape(-1, 2, 2, 1)


def test_registered_mig_on_tiny_dataset():
  calls = []

  def representation_fn(observations):
    calls.append(observations.shape)
    flat = observations.reshape(observations.shape[0], -1)
    identity = flat[:, :2]
    return jnp.stack([identity, jnp.zeros_like(identity)])

  metric = METRICS.build({"name": "mig", "num_points": 1000, "batch_size": 300})
  result = metric.evaluate(_TinyDataset(), representation_fn,
                           jax.random.key(0))
  assert set(result) == {"mig", "mig_per_factor", "nmi_matrix", "nmi1",
                         "nmi2", "nmi1_per_factor", "nmi2_per_factor"}
  assert result["nmi_matrix"].shape == (2, 2, 2)
  # NMI1/NMI2 (DEFT eq. 8) are the top two normalised MIs per factor, and
  # MIG per factor is exactly their difference.
  np.testing.assert_allclose(result["nmi1_per_factor"][0], [1.0, 1.0],
                             rtol=1e-6)
  np.testing.assert_allclose(result["nmi1"], [1.0, 0.0], atol=1e-6)
  np.testing.assert_allclose(
      result["nmi1_per_factor"] - result["nmi2_per_factor"],
      result["mig_per_factor"], atol=1e-6)
  np.testing.assert_allclose(result["nmi2"],
                             result["nmi2_per_factor"].mean(1), atol=1e-6)
  assert isinstance(result["mig"], np.ndarray)
  assert result["mig"].shape == (2,)
  assert result["mig_per_factor"].shape == (2, 2)
  assert result["mig"][0] >= 0.9
  assert result["mig"][1] == 0.0
  # Always called with full batches (the last one padded), 4 batches.
  assert calls == [(300, 2, 2, 1)] * 4
  # Callable form, same rng -> same sample -> same scores.
  again = metric(_TinyDataset(), representation_fn, jax.random.key(0))
  np.testing.assert_array_equal(again["mig"], result["mig"])
  # The evaluator protocol: the trained members carry dataset and codes.
  scored = metric.score(TrainedMembers(dataset=_TinyDataset(),
                                       representation_fn=representation_fn),
                        jax.random.key(0))
  np.testing.assert_array_equal(scored["mig"], result["mig"])


def test_score_names_what_the_members_lack():
  metric = METRICS.build({"name": "mig", "num_points": 20, "batch_size": 10})
  with pytest.raises(ValueError, match=r"mig needs a trained model: "
                     r"members.representation_fn is None"):
    metric.score(TrainedMembers(dataset=_TinyDataset()), jax.random.key(0))


def test_registered_mig_matches_direct_score():
  dataset = _TinyDataset()
  rng = jax.random.key(1)

  def representation_fn(observations):
    return observations.reshape(1, observations.shape[0], -1)

  result = METRICS.get("mig")(num_points=500, num_bins=10,
                              batch_size=128).evaluate(
                                  dataset, representation_fn, rng)
  factors = dataset.sample_factors(rng, 500)
  codes = representation_fn(dataset.observations_from_factors(factors))[0]
  direct = mig_lib.mig_score(codes, factors, dataset.factor_sizes, num_bins=10)
  np.testing.assert_allclose(result["mig"][0], direct["mig"], rtol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    ({"num_points": 1}, "num_points must be an integer >= 2, got 1"),
    ({"num_bins": 1}, "num_bins must be an integer >= 2, got 1"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
    ({"num_points": 10.5}, "num_points must be an integer"),
])
def test_metric_validates_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    METRICS.build({"name": "mig", **kwargs})


def test_metric_rejects_unknown_keys():
  with pytest.raises(ValueError, match="unknown key"):
    METRICS.build({"name": "mig", "bins": 10})


def test_metric_rejects_codes_without_members_axis():
  metric = METRICS.build({"name": "mig", "num_points": 20, "batch_size": 10})
  with pytest.raises(ValueError, match="members"):
    metric.evaluate(_TinyDataset(),
                    lambda obs: obs.reshape(obs.shape[0], -1),
                    jax.random.key(0))
