"""Known answers for the IFP analysis (disentax/ifp.py): freezing points of
synthetic annealing traces, change points of a piecewise-linear KL(beta),
and DEFT stage plans from synthetic per-factor IFP distributions."""

import math

import numpy as np
import pytest

from disentax import ifp

# A linear anneal 200 -> 1 in 704 chunks: spacing ~0.283; 32 lies about
# half-way between two grid points.
BETAS = np.linspace(200.0, 1.0, 704)


def ramp_kl(betas, onset=32.0, slope=1.0):
  """KL = 0 above `onset`, rising linearly (slope per unit of beta) below."""
  return slope * np.maximum(0.0, onset - betas)


def test_grid_does_not_contain_the_onset():
  assert np.min(np.abs(BETAS - 32.0)) > 0.1


def test_ifp_of_a_linear_ramp_is_recovered_between_grid_points():
  spacing = BETAS[0] - BETAS[1]
  # KL = 0.1 at beta = 31.9, but the bracketing grid point above it is past
  # the kink at 32 (KL = 0 there): within the tolerance 0.5 of 32, and
  # within one grid spacing of 31.9.
  ifp_value = ifp.information_freezing_point(BETAS, ramp_kl(BETAS))
  assert abs(ifp_value - 32.0) < 0.5 and abs(ifp_value - 31.9) < spacing
  # Where both bracketing points lie on the ramp, interpolation is exact,
  # far finer than the grid spacing: KL = 0.1 at 31 and at 22.
  for slope, expected in ((0.1, 31.0), (0.01, 22.0)):
    assert abs(ifp.information_freezing_point(
        BETAS, ramp_kl(BETAS, slope=slope)) - expected) < 1e-9


def test_ifp_never_crossing_is_nan_and_crossing_at_start_is_betas0():
  assert math.isnan(ifp.information_freezing_point(BETAS,
                                                   np.full(704, 0.05)))
  assert math.isnan(ifp.information_freezing_point(BETAS, np.full(704, 0.1)))
  assert ifp.information_freezing_point(BETAS, np.full(704, 3.0)) == 200.0


def test_ifp_of_a_noisy_trace_is_the_first_crossing():
  rng = np.random.default_rng(0)
  kls = np.abs(ramp_kl(BETAS, slope=0.5) + rng.normal(0, 0.02, BETAS.size))
  assert abs(ifp.information_freezing_point(BETAS, kls) - 32.0) < 0.5
  # A later dip below the threshold does not move it.
  dipped = kls.copy()
  dipped[BETAS < 20] = 0.0
  assert ifp.information_freezing_point(BETAS, dipped) == (
      ifp.information_freezing_point(BETAS, kls))
  # A single spike before the onset is ignored with persistence > 1.
  spiked = kls.copy()
  spiked[100] = 0.5
  assert ifp.information_freezing_point(BETAS, spiked) > 150
  assert abs(ifp.information_freezing_point(BETAS, spiked, persistence=3)
             - 32.0) < 0.5


def test_vectorised_freezing_points_equal_the_scalar_ones():
  rng = np.random.default_rng(1)
  onsets = rng.uniform(5, 150, size=12)
  kls = np.stack([ramp_kl(BETAS, o, s) for o, s in
                  zip(onsets, rng.uniform(0.01, 1.0, 12))], axis=1)
  kls += rng.normal(0, 0.03, kls.shape)
  kls[:, 0] = 0.0            # never crosses
  kls[:, 1] = 1.0            # crosses at the first point
  for persistence in (1, 4):
    shared = ifp.freezing_points(BETAS, kls, persistence=persistence)
    per_column = ifp.freezing_points(np.repeat(BETAS[:, None], 12, 1), kls,
                                     persistence=persistence)
    expected = [ifp.information_freezing_point(BETAS, kls[:, m],
                                               persistence=persistence)
                for m in range(12)]
    np.testing.assert_allclose(shared, expected, rtol=1e-12)
    np.testing.assert_allclose(per_column, expected, rtol=1e-12)
  assert math.isnan(shared[0]) and shared[1] == 200.0


def test_change_points_of_a_piecewise_linear_kl():
  betas = np.linspace(200.0, 1.0, 2000)
  kls = (0.05 * np.maximum(0, 36 - betas) + 0.2 * np.maximum(0, 16 - betas))
  points = ifp.increment_change_points(betas, kls, num_points=4)
  assert len(points) == 2
  np.testing.assert_allclose(points, [36.0, 16.0], atol=0.05)
  # The largest jump of the increment first when only one is asked for.
  np.testing.assert_allclose(
      ifp.increment_change_points(betas, kls, num_points=1), [16.0], atol=0.5)
  # Noisy, with an exponential anneal (dense at low beta) and repeats at 1.
  rng = np.random.default_rng(2)
  t = np.linspace(0, 1, 3000)
  betas = np.maximum(200 * np.exp(-6 * t), 1.0)
  kls = (0.05 * np.maximum(0, 36 - betas) + 0.2 * np.maximum(0, 16 - betas)
         + rng.normal(0, 0.01, t.size))
  np.testing.assert_allclose(
      ifp.increment_change_points(betas, kls, num_points=2), [36.0, 16.0],
      atol=1.0)
  # No kink, no change point.
  assert ifp.increment_change_points(betas, np.zeros_like(betas), 3) == []


def lognormal(rng, median, spread=0.05, n=50):
  return median * np.exp(rng.normal(0, spread, n))


def dsprites_like(seed=0):
  rng = np.random.default_rng(seed)
  return {"pos_x": lognormal(rng, 90), "pos_y": lognormal(rng, 88),
          "scale": lognormal(rng, 45), "shape": lognormal(rng, 18),
          "orientation": lognormal(rng, 8)}


def test_propose_stages_separates_the_dsprites_like_factors():
  samples = dsprites_like()
  plan = ifp.propose_stages(samples, quantile=0.1)
  assert plan.groups == [["pos_x", "pos_y"], ["scale"], ["shape"],
                         ["orientation"]]
  assert plan.num_groups == 4 and plan.latents_per_group == 2
  assert len(plan.betas) == 4 and plan.betas[-1] == 1.0
  assert all(a > b for a, b in zip(plan.betas, plan.betas[1:]))
  q = lambda name, level: np.quantile(samples[name], level)
  for beta, upper, lower in zip(plan.betas[:3], plan.groups[:3],
                                plan.groups[1:]):
    top = min(q(n, 0.1) for n in upper)
    bottom = max(q(n, 0.9) for n in lower)
    assert bottom < beta < top
    assert beta == pytest.approx(math.sqrt(top * bottom))
  pairs = [(p["higher"], p["lower"], p["separable"], p["cut"])
           for p in plan.separability]
  assert pairs == [("pos_x", "pos_y", False, False),
                   ("pos_y", "scale", True, True),
                   ("scale", "shape", True, True),
                   ("shape", "orientation", True, True)]
  assert plan.separability[0]["overlap"] > 0.2
  assert plan.separability[1]["overlap"] == 0.0
  assert plan.warnings == []


def test_overlapping_distributions_are_not_split():
  rng = np.random.default_rng(3)
  plan = ifp.propose_stages({"a": lognormal(rng, 40, 0.3),
                             "b": lognormal(rng, 36, 0.3)})
  assert plan.groups == [["a", "b"]] and plan.betas == [1.0]
  assert plan.latents_per_group == 2
  # Neighbours b/c are separable, but a's wide lower tail reaches c: no cut.
  rng = np.random.default_rng(4)
  plan = ifp.propose_stages({
      "a": np.concatenate([np.full(40, 100.0), np.full(10, 30.0)]),
      "b": lognormal(rng, 90, 0.01), "c": lognormal(rng, 40, 0.01)})
  assert plan.groups == [["a", "b", "c"]]
  assert [p["separable"] for p in plan.separability] == [False, True]


def test_nan_samples_are_ignored_with_warnings():
  samples = dsprites_like()
  samples["shape"] = np.concatenate([samples["shape"], [np.nan] * 5])
  samples["color"] = np.full(50, np.nan)
  plan = ifp.propose_stages(samples)
  assert plan.groups == [["pos_x", "pos_y"], ["scale"], ["shape"],
                         ["orientation"]]
  assert plan.factor_stats["shape"]["dropped"] == 5
  assert plan.factor_stats["shape"]["count"] == 50
  assert any("shape: 5 of 55" in w for w in plan.warnings)
  assert any(w.startswith("color: all 50") for w in plan.warnings)
  assert "color" not in plan.samples


def test_to_config_overrides_is_exact():
  plan = ifp.propose_stages({"a": [100.0, 100.0], "b": [25.0, 25.0]})
  assert plan.groups == [["a"], ["b"]]
  assert plan.to_config_overrides() == {
      "objective.pressures": (50.0, 1.0), "model.num_groups": 2,
      "model.num_latents": 2}
  plan = ifp.propose_stages(dsprites_like())
  overrides = plan.to_config_overrides()
  assert overrides["model.num_groups"] == 4
  assert overrides["model.num_latents"] == 8
  assert overrides["objective.pressures"] == tuple(plan.betas)


def test_format_plan_and_compare_with_the_papers_betas():
  plan = ifp.propose_stages(dsprites_like())
  text = ifp.format_plan(plan)
  assert "G = 4, K = 2" in text and "| pos_x |" in text
  assert "`model.num_latents` = `8`" in text
  lines = ifp.compare_with(plan, [70, 30, 12, 1])
  assert lines[0] == ("| set | stage | beta | pos_x | pos_y | scale | shape "
                      "| orientation |")
  assert len(lines) == 2 + 4 + 4
  assert lines[-4] == ("| reference | 1 | 70 | 1.00 | 1.00 | 0.00 | 0.00 "
                       "| 0.00 |")
  assert lines[-1].endswith("| 1.00 | 1.00 | 1.00 | 1.00 | 1.00 |")
  assert all(line.startswith("| proposed") for line in lines[2:6])


@pytest.mark.parametrize("call, match", [
    (lambda: ifp.propose_stages({}), "non-empty mapping"),
    (lambda: ifp.propose_stages({"a": []}), r"ifp_samples\['a'\]"),
    (lambda: ifp.propose_stages({"a": [1.0, 2.0]}, quantile=0.5),
     r"quantile=0.5 .*\(0, 0.5\)"),
    (lambda: ifp.propose_stages({"a": [1.0]}, quantile=0.0), "quantile=0.0"),
    (lambda: ifp.propose_stages({"a": [np.nan]}), "no factor has a finite"),
    (lambda: ifp.propose_stages({"a": [-3.0]}), r"contains \[-3.0\]"),
    (lambda: ifp.propose_stages({"a": [2.0]}, final_beta=0), "final_beta=0"),
    (lambda: ifp.information_freezing_point([3, 2, 1], [0, 0]),
     r"betas shape \(3,\) and kls shape \(2,\)"),
    (lambda: ifp.information_freezing_point([3, np.inf, 1], [0, 0, 1]),
     r"non-finite values \[inf\]"),
    (lambda: ifp.information_freezing_point([1, 2, 3], [0, 0, 1]),
     "non-increasing"),
    (lambda: ifp.information_freezing_point([3, 2, 1], [0, 0, 1],
                                            threshold=np.nan), "threshold"),
    (lambda: ifp.freezing_points([3, 2, 1], np.zeros((2, 4))),
     r"kls must be \[T, M\]"),
    (lambda: ifp.freezing_points([3, 2, 1], np.zeros(3)),
     r"kls must be \[T, M\]"),
    (lambda: ifp.increment_change_points([3, 2, 1], [0, 0, 1], 0),
     "num_points=0"),
    (lambda: ifp.increment_change_points([3, 2, 0], [0, 0, 1], 1),
     "betas must be > 0"),
    (lambda: ifp.compare_with(ifp.propose_stages({"a": [2.0]}), []),
     "reference_betas"),
])
def test_validation_errors(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_initial_transient_of_an_untrained_encoder_is_not_the_ifp():
  """A fresh model starts with KL above 0.1 and compresses it away in the
  first points; the IFP is the later onset (KL 0 above beta 32, rising 0.05
  per unit below), not the starting beta."""
  betas = np.arange(70.5, 0, -1.0)
  kls = 0.05 * np.maximum(32.0 - betas, 0.0)
  kls[:3] = [4.0, 1.0, 0.2]
  expected = 30.0  # KL = 0.1 at beta 30
  assert abs(ifp.information_freezing_point(betas, kls) - expected) < 0.05
  both = ifp.freezing_points(betas, np.stack([kls, kls + 1.0], axis=1))
  assert abs(both[0] - expected) < 0.05
  assert both[1] == betas[0]  # never fell below: at least the start
