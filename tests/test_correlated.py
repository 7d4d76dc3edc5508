"""Correlated sampling (disentax.data.correlated): training draws the
configured joint, evaluation still draws the uniform grid."""

import jax
import numpy as np
import pytest

from disentax.data import make_dataset
from disentax.data.correlated import (PAPER_CONFIGURATIONS, configuration_pmf,
                                      copula_pmf, pmf_correlation)
from disentax.metrics import sampling

NUM = 20_000
BASE = {"name": "dsprites", "image_size": 16}
POS_X, POS_Y = 3, 4   # dSprites columns of the default pair
# Sampling error of a correlation over NUM draws is ~1 / sqrt(NUM) = 0.007.
CORRELATION_TOLERANCE = 0.03


def correlated(configuration="D", strength=1.0, factors=(), base=BASE):
  return make_dataset({"name": "correlated", "base": base,
                       "configuration": configuration, "strength": strength,
                       "factors": factors})


def draw(dataset, seed=0):
  """NUM training factor rows of `dataset`, as numpy. Eager: its kernels
  are shared by every dataset of the module, where jit would compile each
  dataset's sampler anew (the jitted path is tested once, vmapped)."""
  return np.asarray(dataset.sample_factors(jax.random.key(seed), NUM))


def correlation(a, b):
  return float(np.corrcoef(a, b)[0, 1])


def chi_square(column, probabilities):
  """Pearson's chi-square of observed value counts against `probabilities`."""
  expected = len(column) * np.asarray(probabilities)
  counts = np.bincount(column, minlength=len(expected))
  return float(((counts - expected) ** 2 / expected).sum())


def uniform(size):
  return np.full(size, 1.0 / size)


# A generous bound for 32 values (31 degrees of freedom: mean 31, sd 7.9).
CHI_SQUARE_BOUND = 100.0


# ------------------------------------------------- the paper's joints (pmf)

@pytest.mark.parametrize("sizes", [(32, 32), (6, 40)])
def test_configurations_have_the_papers_properties(sizes):
  """Fig. 5: A uniform/independent; B non-uniform marginals, independent;
  C uncorrelated but dependent; D correlated; 4:1 max/min bias."""
  pmfs = {c: configuration_pmf(c, 1.0, *sizes) for c in PAPER_CONFIGURATIONS}
  for name, pmf in pmfs.items():
    assert pmf.shape == sizes and np.isclose(pmf.sum(), 1.0), name
    assert pmf.min() > 0, name                    # every cell possible
  np.testing.assert_allclose(pmfs["A"], 1.0 / np.prod(sizes))
  for name in "BCD":
    np.testing.assert_allclose(pmfs[name].max() / pmfs[name].min(), 4.0)

  def marginals(pmf):
    return pmf.sum(axis=1), pmf.sum(axis=0)

  def independent(pmf):
    return np.allclose(pmf, np.outer(*marginals(pmf)))

  b_rows, b_cols = marginals(pmfs["B"])
  assert independent(pmfs["B"]) and pmf_correlation(pmfs["B"]) == \
      pytest.approx(0.0, abs=1e-12)
  np.testing.assert_allclose(b_rows.max() / b_rows.min(), 2.0)  # sqrt(4)
  np.testing.assert_allclose(b_cols.max() / b_cols.min(), 2.0)
  for name in "CD":
    rows, cols = marginals(pmfs[name])
    np.testing.assert_allclose(rows, 1.0 / sizes[0])
    np.testing.assert_allclose(cols, 1.0 / sizes[1])
    assert not independent(pmfs[name]), name
  assert pmf_correlation(pmfs["C"]) == pytest.approx(0.0, abs=1e-12)
  assert pmf_correlation(pmfs["D"]) > 0.15
  for name in PAPER_CONFIGURATIONS:  # strength 0 is uniform
    np.testing.assert_allclose(configuration_pmf(name, 0.0, *sizes),
                               1.0 / np.prod(sizes))


def test_implied_correlation_grows_with_strength():
  d = [pmf_correlation(configuration_pmf("D", s, 32, 32))
       for s in (0.0, 0.25, 0.5, 1.0)]
  custom = [pmf_correlation(copula_pmf(s, 32, 32))
            for s in (0.0, 0.25, 0.5, 1.0)]
  assert d[0] == pytest.approx(0.0, abs=1e-12) and np.all(np.diff(d) > 0)
  assert custom[0] == pytest.approx(0.0, abs=1e-3)
  assert np.all(np.diff(custom) > 0)
  assert custom[-1] == pytest.approx(1.0, abs=1e-3)   # comonotone
  # Equal sizes: close to the copula's Spearman correlation.
  assert custom[2] == pytest.approx(6 / np.pi * np.arcsin(0.25), abs=0.01)


# --------------------------------------------------------- sampled factors

@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_configuration_d_produces_its_correlation(strength):
  dataset = correlated("D", strength)
  factors = draw(dataset)
  expected = dataset.implied_correlation("posX", "posY")
  assert expected > 0.1
  assert correlation(factors[:, POS_X], factors[:, POS_Y]) == pytest.approx(
      expected, abs=CORRELATION_TOLERANCE)
  for k in (POS_X, POS_Y):   # D keeps uniform marginals
    assert chi_square(factors[:, k], uniform(32)) < CHI_SQUARE_BOUND


@pytest.mark.parametrize("strength", [0.4, 1.0])
def test_custom_copula_produces_its_correlation(strength):
  dataset = correlated("custom", strength, ["scale", "orientation", "posX"])
  factors = draw(dataset)
  for (a, i), (b, j) in [(("scale", 1), ("orientation", 2)),
                         (("orientation", 2), ("posX", 3))]:
    expected = dataset.implied_correlation(a, b)
    assert correlation(factors[:, i], factors[:, j]) == pytest.approx(
        expected, abs=CORRELATION_TOLERANCE), (a, b)
  # Uncorrelated factors stay independent of the correlated ones.
  assert abs(correlation(factors[:, 2], factors[:, POS_Y])) < \
      CORRELATION_TOLERANCE
  for k, size in ((1, 6), (2, 40), (3, 32)):   # copula marginals: uniform
    assert chi_square(factors[:, k], uniform(size)) < 2 * CHI_SQUARE_BOUND


def test_strength_zero_and_configuration_a_are_uniform():
  for dataset in (correlated("D", 0.0), correlated("A", 1.0)):
    factors = draw(dataset, seed=1)
    for k, size in enumerate(dataset.factor_sizes):
      assert chi_square(factors[:, k], uniform(size)) < CHI_SQUARE_BOUND
    assert abs(correlation(factors[:, POS_X], factors[:, POS_Y])) < \
        CORRELATION_TOLERANCE


def test_configurations_b_and_c_marginals_and_dependence():
  b, c = correlated("B"), correlated("C")
  rows_b, rows_c = draw(b), draw(c)
  marginal = b.pair_pmf.sum(axis=1)
  assert chi_square(rows_b[:, POS_X], marginal) < CHI_SQUARE_BOUND
  assert chi_square(rows_b[:, POS_X], uniform(32)) > 5 * CHI_SQUARE_BOUND
  counts = np.bincount(rows_b[:, POS_Y], minlength=32)
  assert 1.6 < counts[-4:].mean() / counts[:4].mean() < 2.4  # ramp: 2:1
  assert abs(correlation(rows_b[:, POS_X], rows_b[:, POS_Y])) < \
      CORRELATION_TOLERANCE
  # C: uniform marginals, no correlation, yet |u| and |v| co-vary.
  assert chi_square(rows_c[:, POS_X], uniform(32)) < CHI_SQUARE_BOUND
  assert abs(correlation(rows_c[:, POS_X], rows_c[:, POS_Y])) < \
      CORRELATION_TOLERANCE
  distance = np.abs(rows_c[:, [POS_X, POS_Y]] - 15.5)
  assert correlation(distance[:, 0], distance[:, 1]) > 0.1


def test_evaluation_samples_the_uniform_grid():
  """Every metric samples through sampling.sample_factors: uniform and
  uncorrelated even on the most correlated dataset."""
  dataset = correlated("custom", 1.0, ["posX", "posY"])
  trained = draw(dataset)
  assert np.array_equal(trained[:, POS_X], trained[:, POS_Y])  # comonotone
  scored = sampling.sample_factors(dataset, jax.random.key(0), NUM)
  assert scored.shape == (NUM, 5) and scored.dtype == np.int32
  assert abs(correlation(scored[:, POS_X], scored[:, POS_Y])) < \
      CORRELATION_TOLERANCE
  for k, size in enumerate(dataset.factor_sizes):
    assert chi_square(scored[:, k], uniform(size)) < CHI_SQUARE_BOUND
  np.testing.assert_array_equal(
      scored, np.asarray(dataset.base.sample_factors(jax.random.key(0), NUM)))


def test_everything_else_is_the_base_dataset():
  dataset = correlated("D")
  base = dataset.base
  assert dataset.name == "correlated_D_s1_dsprites"
  assert (dataset.factor_names, dataset.factor_sizes,
          dataset.observation_shape, dataset.num_points, dataset.labelled) == (
              base.factor_names, base.factor_sizes, base.observation_shape,
              base.num_points, base.labelled)
  rows = np.array([[0, 1, 2, 3, 4], [2, 5, 39, 31, 0]], np.int32)
  np.testing.assert_array_equal(dataset.observations_from_factors(rows),
                                base.observations_from_factors(rows))
  np.testing.assert_array_equal(dataset.factor_values(rows),
                                base.factor_values(rows))
  # Training samples inside a jitted, vmapped step (one batch per member).
  keys = jax.random.split(jax.random.key(0), 2)
  factors, images = jax.jit(jax.vmap(lambda k: dataset.sample(k, 8)))(keys)
  assert factors.shape == (2, 8, 5) and factors.dtype == np.int32
  assert images.shape == (2, 8, 16, 16, 1)
  assert np.all((np.asarray(factors) >= 0)
                & (np.asarray(factors) < np.array(base.factor_sizes)))


def test_derived_factors_stay_consistent():
  """The triangle's orientation is a label of its position: correlating the
  positions keeps it derived; correlating it is refused."""
  dataset = correlated("custom", 1.0, ["pos_x", "pos_y"],
                       base={"name": "triangle"})
  factors = draw(dataset)
  np.testing.assert_array_equal(factors[:, 0], factors[:, 1])
  np.testing.assert_array_equal(
      factors[:, 2], np.asarray(dataset.base.orientation_from_positions(
          factors[:, 0], factors[:, 1])))
  assert correlated("D", base={"name": "triangle"}).factors == (
      "pos_x", "pos_y")
  with pytest.raises(ValueError, match="'orientation' of triangle is derived"
                     ".*allowed: pos_x, pos_y"):
    correlated("custom", 0.5, ["pos_x", "orientation"],
               base={"name": "triangle"})


@pytest.mark.parametrize("options, message", [
    ({"configuration": "E"},
     r"configuration 'E' is unknown; allowed: A, B, C, D, custom"),
    ({"strength": 1.5}, r"strength must be a number in \[0, 1\].*got 1.5"),
    ({"strength": -0.1}, r"strength must be a number in \[0, 1\].*got -0.1"),
    ({"strength": "high"}, r"strength must be a number.*'high'"),
    ({"factors": ["posX", "posZ"]},
     r"'posZ' is not a factor of dsprites; allowed: shape, scale, "
     r"orientation, posX, posY"),
    ({"factors": ["posX", "posY", "scale"]}, r"exactly two factors"),
    ({"factors": "posX"}, r"list of factor names, got the string 'posX'"),
    ({"configuration": "custom"}, r"'custom' needs `factors`"),
    ({"configuration": "custom", "factors": ["posX"]}, r"two or more"),
    ({"configuration": "custom", "factors": ["posX", "posX"]}, r"twice"),
])
def test_bad_options_raise(options, message):
  section = {"name": "correlated", "base": BASE, **options}
  with pytest.raises(ValueError, match=message):
    make_dataset(section)


def test_bad_base_and_keys_raise():
  with pytest.raises(ValueError, match="config.dataset.base.*unknown key"):
    make_dataset({"name": "correlated",
                  "base": {"name": "dsprites", "size": 16}})
  with pytest.raises(ValueError, match="unknown key.*'strenght'"):
    make_dataset({"name": "correlated", "strenght": 0.5})


# ------------------------------------------------------------ the config

def test_experiment_presets():
  from disentax.experiment import build
  from experiments import correlated as experiment
  for preset in experiment.PRESETS:
    exp = build(experiment.get_config(preset))
    letter = preset[0] if preset[0] in PAPER_CONFIGURATIONS else "D"
    assert exp.dataset.configuration == letter, preset
    assert exp.dataset.factors == ("posX", "posY")
    assert exp.method == ("beta_vae" if preset.endswith("beta_vae")
                          else "beta_tcvae"), preset
    assert len(exp.members) >= 2, preset
  tiny = experiment.get_config("tiny")
  assert (tiny.dataset.base.image_size, tiny.num_seeds,
          tiny.train.num_steps) == (16, 2, 20)
  paper = experiment.get_config("C")
  assert tuple(paper.objective.beta) == (6.0,) and paper.num_seeds == 50
  assert tuple(experiment.get_config("C_beta_vae").objective.beta) == (4.0,)
  with pytest.raises(ValueError, match="unknown preset 'E'"):
    experiment.get_config("E")
