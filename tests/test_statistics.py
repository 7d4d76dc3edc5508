"""Intervals, tests and sample sizes of `disentax.reporting.statistics`
against published or independently computed values, and their place in the
tables (Markdown, CSV, LaTeX) built from rows with known counts.

Values marked "statsmodels" were computed with statsmodels 0.15:
`proportion_confint(k, n, method="wilson")`,
`multipletests(p, method="holm")[1]` and
`NormalIndPower().solve_power(effect_size=abs(proportion_effectsize(p1,
p2)), alpha=0.05, power=0.8, ratio=1, alternative="two-sided")`.
"""

import csv
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from disentax.reporting import render, statistics, tables
from tests.synthetic_runs import make_row

# (failures, n) -> statsmodels' Wilson interval.
WILSON = {
    (0, 10): (0.0, 0.27753279986288926),
    (5, 10): (0.23659309051256394, 0.7634069094874361),
    (10, 10): (0.7224672001371106, 1.0),
    (3, 50): (0.020614970348973943, 0.16217091688838173),
    (3, 10): (0.10779126740630104, 0.6032218525388546),
    (1, 3): (0.06149194472039626, 0.7923403991979523),
}


def test_wilson_matches_statsmodels():
  counts = np.array(list(WILSON))
  low, high = statistics.wilson_interval(counts[:, 0], counts[:, 1])
  expected = np.array(list(WILSON.values()))
  np.testing.assert_allclose(low, expected[:, 0], rtol=0, atol=1e-12)
  np.testing.assert_allclose(high, expected[:, 1], rtol=0, atol=1e-12)
  assert low[0] == 0.0 and high[2] == 1.0  # exact at 0/n and n/n


def test_wilson_nothing_scored_and_bad_counts():
  low, high = statistics.wilson_interval(0, 0)
  assert np.isnan(low) and np.isnan(high)
  with pytest.raises(ValueError, match=r"failures must be in \[0, n\]"):
    statistics.wilson_interval(4, 3)
  with pytest.raises(ValueError, match="confidence must be in"):
    statistics.wilson_interval(1, 3, confidence=95)


# 20 values with ties, the kind a sweep's metric has.
SAMPLE = np.round(np.random.default_rng(7).beta(2, 5, 20), 2)


def test_bootstrap_median_equals_scipy_percentile_bootstrap():
  for seed in (0, 3):
    expected = scipy_stats.bootstrap(
        (SAMPLE,), np.median, method="percentile", n_resamples=9999,
        rng=np.random.default_rng(seed)).confidence_interval
    low, high = statistics.bootstrap_median_interval(SAMPLE, seed)
    assert low == pytest.approx(expected.low, abs=1e-12)
    assert high == pytest.approx(expected.high, abs=1e-12)
    assert low <= np.median(SAMPLE) <= high and low < high


def test_bootstrap_median_is_reproducible_and_seeded():
  first = statistics.bootstrap_median_interval(SAMPLE, 0)
  assert statistics.bootstrap_median_interval(SAMPLE, 0) == first
  # 9999 resamples put the quantiles on the same atoms of the medians'
  # distribution whatever the seed; 50 do not.
  assert statistics.bootstrap_median_interval(SAMPLE, 1) == first
  few = [statistics.bootstrap_median_interval(SAMPLE, seed, resamples=50)
         for seed in (0, 0, 1)]
  assert few[0] == few[1] != few[2]
  # Non-finite values are not resampled; under two finite values there is
  # no interval.
  with_nan = np.concatenate([SAMPLE, [np.nan, np.inf]])
  assert statistics.bootstrap_median_interval(with_nan, 0) == first
  assert statistics.bootstrap_median_interval([0.3, np.nan], 0) is None
  assert statistics.bootstrap_median_interval([], 0) is None


def test_fisher_exact_known_values():
  # Fisher's tea-tasting table: two-sided p = (1 + 16 + 16 + 1) / 70.
  assert statistics.fisher_exact_p(3, 4, 1, 4) == pytest.approx(
      34 / 70, abs=1e-12)
  assert statistics.fisher_exact_p(3, 10, 8, 10) == pytest.approx(
      scipy_stats.fisher_exact([[3, 7], [8, 2]]).pvalue, abs=1e-15)
  assert math.isnan(statistics.fisher_exact_p(0, 0, 1, 3))
  with pytest.raises(ValueError, match=r"failed must be in \[0, scored\]"):
    statistics.fisher_exact_p(5, 4, 1, 4)


def test_mann_whitney_known_values():
  # Untied, fully separated 3 vs 3: exact two-sided p = 2 / C(6, 3).
  assert statistics.mann_whitney_p([1, 2, 3], [4, 5, 6]) == pytest.approx(
      0.1, abs=1e-12)
  a, b = [0.1, 0.2, 0.2, 0.5, np.nan], [0.3, 0.3, 0.6, 0.7, 0.9]
  assert statistics.mann_whitney_p(a, b) == pytest.approx(
      scipy_stats.mannwhitneyu(a[:4], b).pvalue, abs=1e-15)
  assert math.isnan(statistics.mann_whitney_p([np.nan], [0.1, 0.2]))


def test_holm_matches_statsmodels():
  np.testing.assert_allclose(statistics.holm([0.01, 0.04, 0.03, 0.005]),
                             [0.03, 0.06, 0.06, 0.02], rtol=0, atol=1e-15)
  np.testing.assert_allclose(
      statistics.holm([0.2, 0.8, 0.01, 0.5, 0.049]),
      [0.6, 1.0, 0.05, 1.0, 0.196], rtol=0, atol=1e-15)
  # A test that could not be made is not in the family.
  adjusted = statistics.holm([0.01, np.nan, 0.04])
  assert np.isnan(adjusted[1])
  np.testing.assert_allclose(adjusted[[0, 2]], [0.02, 0.04], atol=1e-15)
  assert statistics.holm([]).shape == (0,)


# (p1, p2) -> statsmodels' NormalIndPower sample size (before rounding up).
SEEDS = {(0.1, 0.3): 59.007926292484456, (0.0, 0.2): 18.255787268324635,
         (0.02, 0.5): 9.477155718971321,
         (1 / 3, 1 / 2): 135.92380443279146, (0.3, 0.8): 14.103175335713036}


def test_seeds_needed_matches_statsmodels():
  rates = np.array(list(SEEDS))
  needed = statistics.seeds_needed(rates[:, 0], rates[:, 1])
  np.testing.assert_array_equal(needed, np.ceil(list(SEEDS.values())))
  np.testing.assert_array_equal(needed, [60, 19, 10, 136, 15])
  assert statistics.seeds_needed(0.3, 0.1) == 60  # symmetric
  assert statistics.seeds_needed(0.4, 0.4) == math.inf
  with pytest.raises(ValueError, match="rates must be fractions"):
    statistics.seeds_needed(30, 10)


# --- In the tables: two groups of 10 seeds, 3 and 8 of them failing.


def _rows():
  low = [0.01, 0.02, 0.05] + [0.2 + 0.01 * s for s in range(7)]  # 3 fail
  high = [0.3, 0.4] + [0.01 * s for s in range(8)]                # 8 fail
  return ([make_row(s, v, beta=1.0) for s, v in enumerate(low)]
          + [make_row(s, v, beta=4.0) for s, v in enumerate(high)]
          + [make_row(s, 0.5, beta=4.0, dataset="cars3d") for s in range(2)])


@pytest.fixture(scope="module")
def known():
  table = tables.failure_rate_table(_rows(), "mig", 0.1)
  return table, tables.comparison_table(table)


def test_failure_table_intervals(known):
  table, _ = known
  beta1, beta4, cars = sorted(table, key=lambda e: (e["dataset"] != "dsprites",
                                                    e["hparams"]["beta"]))
  assert (beta1["n_failed"], beta1["n_scored"]) == (3, 10)
  assert beta1["failure_rate_ci_low"] == pytest.approx(
      100 * WILSON[3, 10][0], abs=1e-10)
  assert beta1["failure_rate_ci_high"] == pytest.approx(
      100 * WILSON[3, 10][1], abs=1e-10)
  assert (beta1["median_ci_low"], beta1["median_ci_high"]) == (
      statistics.bootstrap_median_interval(beta1["scored_values"], 0))
  assert cars["failure_rate_ci_low"] == 0.0  # 0 of 2
  other = tables.failure_rate_table(_rows(), "mig", 0.1, seed=5)
  assert [e["median_ci_low"] for e in other] == [
      statistics.bootstrap_median_interval(e["scored_values"], 5)[0]
      for e in table]


def test_comparison_table_known_values(known):
  _, [pair] = known  # cars3d has one group: nothing to compare there
  assert (pair["dataset"], pair["hparams_a"], pair["hparams_b"]) == (
      "dsprites", {"beta": 1.0}, {"beta": 4.0})
  assert (pair["n_failed_a"], pair["n_scored_a"], pair["n_failed_b"]) == (
      3, 10, 8)
  fisher = scipy_stats.fisher_exact([[3, 7], [8, 2]]).pvalue
  assert pair["fisher_p"] == pytest.approx(fisher, abs=1e-15)
  assert pair["fisher_p_holm"] == pytest.approx(fisher, abs=1e-15)
  low = [0.01, 0.02, 0.05] + [0.2 + 0.01 * s for s in range(7)]
  high = [0.3, 0.4] + [0.01 * s for s in range(8)]
  assert pair["mann_whitney_p"] == pytest.approx(
      scipy_stats.mannwhitneyu(low, high).pvalue, abs=1e-15)
  assert pair["seeds_needed"] == 15  # SEEDS[0.3, 0.8], rounded up


def test_comparison_holm_family_skips_unscored_groups():
  rows = ([make_row(s, 0.01 * s, beta=1.0) for s in range(6)]
          + [make_row(s, 0.5, beta=2.0) for s in range(6)]
          + [make_row(s, None, beta=4.0, status="non_finite")
             for s in range(2)])
  pairs = tables.comparison_table(tables.failure_rate_table(rows))
  assert [(p["hparams_a"]["beta"], p["hparams_b"]["beta"]) for p in pairs] == [
      (1.0, 2.0), (1.0, 4.0), (2.0, 4.0)]
  assert pairs[0]["fisher_p"] == pytest.approx(
      scipy_stats.fisher_exact([[6, 0], [0, 6]]).pvalue, abs=1e-15)
  # One test in the family: Holm leaves it as it is.
  assert pairs[0]["fisher_p_holm"] == pairs[0]["fisher_p"]
  for pair in pairs[1:]:
    assert pair["fisher_p"] is None and pair["fisher_p_holm"] is None
    assert pair["mann_whitney_p"] is None and pair["seeds_needed"] is None


def test_rendered_tables_hold_the_intervals(known, tmp_path):
  table, pairs = known
  markdown = render.format_markdown(table, "mig", 0.1)
  assert "| 3/10 | 30.0 | [10.8, 60.3] |" in markdown
  assert "| 8/10 | 80.0 | [49.0, 94.3] |" in markdown
  pivot = render.format_pivot_markdown(table, "mig", 0.1)
  assert ("| beta_vae | beta=1 | - | 30.0 [10.8, 60.3] (3/10) |" in pivot)
  assert "cell: failure % [Wilson 95% interval] (failed/scored)" in pivot
  latex = render.format_pivot_latex(table, "mig", 0.1)
  assert "beta\\_vae & beta=1 & -- & 30.0 [10.8, 60.3] (3/10) \\\\" in latex

  render.write_csv(table, str(tmp_path / "groups.csv"))
  with open(tmp_path / "groups.csv") as f:
    row = next(r for r in csv.DictReader(f) if r["hparams"] == "beta=1"
               and r["dataset"] == "dsprites")
  assert float(row["failure_rate_ci_low"]) == pytest.approx(
      100 * WILSON[3, 10][0], abs=1e-10)
  assert float(row["failure_rate_ci_high"]) == pytest.approx(
      100 * WILSON[3, 10][1], abs=1e-10)
  render.write_pivot_csv(table, str(tmp_path / "pivot.csv"), "mig", 0.1)
  with open(tmp_path / "pivot.csv") as f:
    rows = list(csv.DictReader(f))
  assert float(rows[0]["dsprites:failure_rate_ci_high"]) == pytest.approx(
      100 * WILSON[3, 10][1], abs=1e-10)
  assert rows[0]["cars3d:failure_rate_ci_low"] == ""  # beta=1: not run

  fisher = f"{pairs[0]['fisher_p']:.3g}"
  text = render.format_comparisons_markdown(pairs, "mig", 0.1)
  assert ("| dsprites | beta_vae (beta=1) | beta_vae (beta=4) | 3/10 | 8/10 | "
          f"{fisher} | {fisher} |") in text
  assert text.rstrip().endswith("| 15 |")
  render.write_comparisons_csv(pairs, str(tmp_path / "pairs.csv"))
  with open(tmp_path / "pairs.csv") as f:
    [row] = list(csv.DictReader(f))
  assert float(row["fisher_p"]) == pairs[0]["fisher_p"]
  assert float(row["seeds_needed"]) == 15
  latex = render.format_comparisons_latex(pairs, "mig", 0.1)
  assert "beta\\_vae (beta=1) & beta\\_vae (beta=4) & 3/10 & 8/10 & " in latex
  assert latex.count("{") == latex.count("}")


def test_equal_rates_need_infinitely_many_seeds(tmp_path):
  rows = ([make_row(s, 0.5, beta=1.0) for s in range(3)]
          + [make_row(s, 0.6, beta=4.0) for s in range(3)])
  pairs = tables.comparison_table(tables.failure_rate_table(rows))
  assert pairs[0]["seeds_needed"] == math.inf
  assert pairs[0]["fisher_p"] == 1.0
  assert render.format_comparisons_markdown(pairs, "mig", 0.1).rstrip(
      ).endswith("| ∞ |")
  assert "& $\\infty$ \\\\" in render.format_comparisons_latex(
      pairs, "mig", 0.1)
  render.write_comparisons_csv(pairs, str(tmp_path / "pairs.csv"))
  with open(tmp_path / "pairs.csv") as f:
    assert next(csv.DictReader(f))["seeds_needed"] == "inf"
  assert render.format_comparisons_markdown([], "mig", 0.1) == (
      "No two groups share a dataset: nothing to compare.\n")
