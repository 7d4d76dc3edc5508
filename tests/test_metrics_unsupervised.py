"""Known-answer tests of the metrics that need no ground-truth factors:
unsupervised scores, active latents, UDR and the ELBO TC decomposition."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.stats

from disentax.data import make_dataset
from disentax.metrics import METRICS
from disentax.metrics import active as active_lib
from disentax.metrics import elbo as elbo_lib
from disentax.metrics import sampling
from disentax.metrics import udr as udr_lib
from disentax.metrics import unsupervised as unsupervised_lib
from disentax.metrics.base import TrainedMembers
from tests import metric_datasets as md

KEY = jax.random.key(0)


def fake_members(*posteriors, groups=None, error=None):
  """TrainedMembers with closed-form posteriors: each `posterior(x)` returns
  (mean [b, d], logvar [b, d]); the reconstruction error of every member is
  `error(x)` [b] (default 0)."""
  error = error or (lambda x: jnp.zeros(x.shape[0]))

  def posterior_fn(x):
    outs = [posterior(x) for posterior in posteriors]
    return (jnp.stack([mean for mean, _ in outs]),
            jnp.stack([logvar for _, logvar in outs]))

  count = len(posteriors)
  return TrainedMembers(
      posterior_fn=posterior_fn,
      reconstruction_error_fn=lambda x: jnp.stack([error(x)] * count),
      decode_fn=lambda z: z,
      groups=np.asarray(groups if groups is not None else [0] * count))


def sharp(code, logvar=math.log(0.01)):
  """A posterior with mean `code(x)` and a fixed small variance."""
  return lambda x: (code(x), jnp.full(code(x).shape, logvar))


def nan_code(x):
  return jnp.full(md.flat(x).shape, jnp.nan)


# --- unsupervised: Gaussian total / Wasserstein correlation ----------------


def test_diagonal_covariance_has_no_correlation():
  cov = np.diag([1.0, 2.0, 0.5]).astype(np.float32)
  assert abs(unsupervised_lib.gaussian_total_correlation(cov)) < 1e-6
  assert abs(unsupervised_lib.gaussian_wasserstein_correlation(cov)) < 1e-5


@pytest.mark.parametrize("rho", [0.3, 0.9, -0.6])
def test_gaussian_total_correlation_of_correlated_pair(rho):
  # Scales do not matter: TC of a correlated pair is -0.5 log(1 - rho^2).
  s = np.array([2.0, 0.5])
  cov = (np.array([[1, rho], [rho, 1]]) * np.outer(s, s)).astype(np.float32)
  np.testing.assert_allclose(
      unsupervised_lib.gaussian_total_correlation(cov),
      -0.5 * math.log(1 - rho ** 2), rtol=1e-4)


def test_gaussian_wasserstein_correlation_matches_sqrtm_definition():
  # dlib: 2 tr C - 2 tr sqrtm(C * diag(C)[:, None]), on a random SPD matrix.
  a = np.random.default_rng(0).normal(size=(4, 4))
  cov = a @ a.T + 0.1 * np.eye(4)
  expected = 2 * np.trace(cov) - 2 * np.trace(
      scipy.linalg.sqrtm(cov * np.diag(cov)[:, None])).real
  np.testing.assert_allclose(
      unsupervised_lib.gaussian_wasserstein_correlation(
          cov.astype(np.float32)), expected, rtol=1e-4)
  # The correlated unit pair: 4 - 2 (sqrt(1 + rho) + sqrt(1 - rho)).
  cov = np.array([[1, 0.9], [0.9, 1]], np.float32)
  np.testing.assert_allclose(
      unsupervised_lib.gaussian_wasserstein_correlation(cov),
      4 - 2 * (math.sqrt(1.9) + math.sqrt(0.1)), rtol=1e-5)


def test_total_correlation_from_samples():
  rho = 0.8
  cov = np.array([[1, rho, 0], [rho, 1, 0], [0, 0, 1]])
  codes = np.random.default_rng(1).multivariate_normal(np.zeros(3), cov,
                                                       20000)
  scores = unsupervised_lib.gaussian_scores(codes.astype(np.float32))
  np.testing.assert_allclose(scores["gaussian_total_correlation"],
                             -0.5 * math.log(1 - rho ** 2), atol=0.02)


def _dsprites_like_identity_code(n=10_000, seed=0):
  """Codes equal to uniformly drawn dSprites factor indices (sizes 3, 6, 40,
  32, 32): tr C ~ 305, the identity code on which float32 lost 16%."""
  rng = np.random.default_rng(seed)
  return np.stack([rng.integers(0, size, n) for size in (3, 6, 40, 32, 32)],
                  axis=1).astype(np.float32)


def _sqrt_eigen_sum(matrix):
  return np.sum(np.sqrt(np.linalg.eigvalsh(matrix)))


def test_gaussian_scores_in_float64_on_identity_code():
  codes = _dsprites_like_identity_code()
  cov = np.cov(codes.astype(np.float64), rowvar=False)
  expected_w = 2 * np.trace(cov) - 2 * np.trace(
      scipy.linalg.sqrtm(cov * np.diag(cov)[:, None])).real
  _, logdet = np.linalg.slogdet(cov)
  expected_tc = 0.5 * (np.sum(np.log(np.diag(cov))) - logdet)
  scores = unsupervised_lib.gaussian_scores(codes)
  np.testing.assert_allclose(scores["gaussian_wasserstein_correlation"],
                             expected_w, rtol=1e-8)
  np.testing.assert_allclose(scores["gaussian_wasserstein_correlation_norm"],
                             expected_w / np.trace(cov), rtol=1e-8)
  np.testing.assert_allclose(scores["gaussian_total_correlation"],
                             expected_tc, rtol=1e-8)


def test_gaussian_scores_of_duplicated_code():
  # [z, z]: C = [[S, S], [S, S]], so D^1/2 C D^1/2 = [[A, A], [A, A]] with
  # A = D_S^1/2 S D_S^1/2, whose eigenvalues are 2 eig(A) and zeros:
  # W = 4 tr S - 2 sqrt(2) sum sqrt(eig A), computed from the nonsingular A.
  z = _dsprites_like_identity_code()
  s = np.cov(z.astype(np.float64), rowvar=False)
  root = np.sqrt(np.diag(s))
  expected = 4 * np.trace(s) - 2 * math.sqrt(2) * _sqrt_eigen_sum(
      s * root[:, None] * root[None, :])
  scores = unsupervised_lib.gaussian_scores(np.concatenate([z, z], axis=1))
  # The five zero eigenvalues come out as ~eps x 100 in float64 and add
  # sqrt of that, ~1e-6, each (float32 was off by 0.087).
  np.testing.assert_allclose(scores["gaussian_wasserstein_correlation"],
                             expected, rtol=0, atol=1e-4)
  assert scores["gaussian_total_correlation"] == np.inf  # singular


def test_gaussian_scores_of_rank_deficient_rotated_code():
  # 3 independent latents rotated into 6: C = Q^T S Q has rank 3, and the
  # nonzero eigenvalues of D^1/2 C D^1/2 are those of S^1/2 Q D Q^T S^1/2.
  rng = np.random.default_rng(1)
  z = rng.normal(size=(20_000, 3)) * [3.0, 1.0, 0.3]
  q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
  codes = (z @ q[:3]).astype(np.float32)
  s = np.cov(codes.astype(np.float64) @ q[:3].T, rowvar=False)
  c = q[:3].T @ s @ q[:3]
  s_root = scipy.linalg.sqrtm(s).real
  small = s_root @ q[:3] @ np.diag(np.diag(c)) @ q[:3].T @ s_root
  expected = 2 * np.trace(c) - 2 * _sqrt_eigen_sum(small)
  scores = unsupervised_lib.gaussian_scores(codes)
  np.testing.assert_allclose(scores["gaussian_wasserstein_correlation"],
                             expected, rtol=1e-6)
  assert scores["gaussian_total_correlation"] == np.inf


def test_mutual_info_score_hand_computed():
  # With 2 bins over [0, 1] the codes are their own bins.  Latents 0 and 1
  # have the joint counts [[2, 0], [1, 1]] over 4 points; latent 2 is
  # constant (no information).  Off-diagonal mean: 2 I(z0; z1) / (9 - 3).
  codes = np.array([[0, 0, 5], [0, 0, 5], [1, 0, 5], [1, 1, 5]], np.float32)
  p = np.array([[2, 0], [1, 1]]) / 4
  pa, pb = p.sum(1), p.sum(0)
  mi = sum(p[i, j] * math.log(p[i, j] / (pa[i] * pb[j]))
           for i in range(2) for j in range(2) if p[i, j] > 0)
  np.testing.assert_allclose(
      unsupervised_lib.mutual_info_score(codes, num_bins=2), mi / 3,
      rtol=1e-5)
  # One latent: no pair, score 0.
  assert unsupervised_lib.mutual_info_score(codes[:, :1], 2) == 0.0


def test_unsupervised_metric_known_codes():
  metric = METRICS.build({"name": "unsupervised", "num_train": 2000})
  scores = metric(md.FactorDataset((10,) * 4),
                  md.members(md.identity, md.zeros,
                             lambda x: md.flat(x)[:, [0, 0, 1, 1]], nan_code),
                  KEY)
  assert set(scores) == {"gaussian_total_correlation",
                         "gaussian_wasserstein_correlation",
                         "gaussian_wasserstein_correlation_norm",
                         "mutual_info_score"}
  for value in scores.values():
    assert value.shape == (4,)
  # Independent factors: all scores near 0 (sampling noise only).
  assert scores["gaussian_total_correlation"][0] < 0.01
  assert scores["gaussian_wasserstein_correlation_norm"][0] < 0.01
  assert scores["mutual_info_score"][0] < 0.05
  # Constant codes: nothing is correlated (dlib would give NaN).
  for name in scores:
    assert scores[name][1] == 0.0
  # (z0, z0, z1, z1): each latent is a copy of another one.
  assert scores["gaussian_total_correlation"][2] > 3
  assert scores["mutual_info_score"][2] > 0.2
  # A non-finite member: NaN, never a crash.
  for name in scores:
    assert np.isnan(scores[name][3])


# --- active latents --------------------------------------------------------


def test_active_latents_identity_zeros_and_scaled():
  dataset = md.FactorDataset((2, 2, 2))
  scale = jnp.array([1.0, 0.1, 0.3])
  metric = METRICS.build({"name": "active_latents", "num_points": 2000})
  scores = metric(dataset, md.members(md.identity, md.zeros,
                                      lambda x: md.flat(x) * scale, nan_code),
                  KEY)
  # Var of a fair coin is 1/4: activities 0.25, 0.0025, 0.0225.
  np.testing.assert_array_equal(scores["active_latents"][:3], [3, 0, 2])
  assert np.isnan(scores["active_latents"][3])
  assert scores["latent_activity"].shape == (4, 3)
  np.testing.assert_allclose(scores["latent_activity"][2],
                             [0.25, 0.0025, 0.0225], rtol=0.1)
  np.testing.assert_array_equal(scores["latent_activity"][1], 0.0)


def test_active_latents_threshold_option():
  codes = jnp.array([[0.0, 0.0], [1.0, 0.2]])  # variances 0.5 and 0.02
  scores = active_lib.active_latent_scores(codes, 0.01)
  assert scores["active_latents"] == 2
  np.testing.assert_allclose(scores["latent_activity"], [0.5, 0.02],
                             rtol=1e-6)
  assert active_lib.active_latent_scores(codes, 0.1)["active_latents"] == 1


# --- UDR -------------------------------------------------------------------


def test_udr_from_similarity_hand_cases():
  on = jnp.ones(3, bool)
  assert udr_lib.udr_from_similarity(jnp.eye(3), on, on) == 1.0
  # dlib's relative-strength example: two latents of a shared by two of b.
  # Rows and columns: 1/2, 1/2, 1 each -> (2 + 2) / (3 + 3).
  shared = jnp.array([[1.0, 1, 0], [1, 1, 0], [0, 0, 1]])
  np.testing.assert_allclose(udr_lib.udr_from_similarity(shared, on, on),
                             2 / 3, rtol=1e-6)
  np.testing.assert_allclose(
      udr_lib.udr_from_similarity(jnp.ones((3, 3)), on, on), 1 / 3,
      rtol=1e-6)
  assert udr_lib.udr_from_similarity(jnp.zeros((3, 3)), on, on) == 0.0
  # Uninformative latents are dropped: only the identity block remains.
  noisy = jnp.array([[1.0, 0, 0.5], [0, 1, 0.5], [0.5, 0.5, 0.5]])
  keep = jnp.array([True, True, False])
  assert udr_lib.udr_from_similarity(noisy, keep, keep) == 1.0
  # Unequal counts (d_a = 2, d_b = 1): rows 1 + 0, column 1: 2 / 3.
  np.testing.assert_allclose(
      udr_lib.udr_from_similarity(jnp.eye(3), keep, jnp.array([1, 0, 0],
                                                               bool)),
      2 / 3, rtol=1e-6)
  off = jnp.zeros(3, bool)
  assert udr_lib.udr_from_similarity(jnp.eye(3), off, off) == 0.0


def test_spearman_matches_scipy_with_ties():
  rng = np.random.default_rng(0)
  a = rng.integers(0, 5, (300, 3)).astype(np.float32)  # many ties
  b = np.stack([a[:, 0] + rng.normal(size=300), -a[:, 1],
                rng.normal(size=300)], axis=1).astype(np.float32)
  expected = np.abs(scipy.stats.spearmanr(a, b)[0][:3, 3:])
  np.testing.assert_allclose(udr_lib.spearman_matrix(a, b), expected,
                             atol=1e-5)


def _reference_udr(means, logvars, threshold=0.01):
  """numpy/scipy UDR matrix of two members (the paper's eq. 3)."""
  kl = np.mean(0.5 * (means ** 2 + np.exp(logvars) - logvars - 1), axis=1)
  keep = kl > threshold
  r = np.abs(scipy.stats.spearmanr(means[0], means[1])[0])
  d = means.shape[2]
  r = r[:d, d:][keep[0]][:, keep[1]]
  rows = np.sum(r.max(1) ** 2 / r.sum(1))
  cols = np.sum(r.max(0) ** 2 / r.sum(0))
  return (rows + cols) / (keep[0].sum() + keep[1].sum())


def test_udr_scores_match_reference():
  rng = np.random.default_rng(3)
  z = rng.normal(size=(500, 4))
  mixed = np.stack([z[:, 0] + z[:, 1], z[:, 0] - 0.5 * z[:, 1], z[:, 2],
                    0.01 * z[:, 3]], axis=1)
  means = np.stack([z, mixed]).astype(np.float32)
  logvars = np.zeros_like(means)
  logvars[1, :, 3] = 0.0  # latent 3 of member 1: KL ~ 5e-5, filtered
  scores = udr_lib.udr_scores(means, logvars, np.array([0, 0]),
                              correlation_matrix="spearman")
  expected = _reference_udr(means, logvars)
  np.testing.assert_allclose(scores["udr"], [expected, expected], rtol=1e-4)
  np.testing.assert_allclose(scores["udr_matrix"][0, 1], expected, rtol=1e-4)
  assert np.isnan(scores["udr_matrix"][0, 0])


def test_udr_metric_identical_permuted_and_mixed():
  dataset = md.FactorDataset((10,) * 4)

  def mixed(x):
    c = md.flat(x)
    return jnp.stack([c[:, 0] + c[:, 1], c[:, 0] - c[:, 1], c[:, 2], c[:, 3]],
                     axis=1)

  def flipped(x):
    return md.permuted(x) * jnp.array([1.0, -1.0, 1.0, -1.0])

  members = fake_members(sharp(md.identity), sharp(md.identity),
                         sharp(md.identity), sharp(flipped),
                         sharp(md.identity), sharp(mixed),
                         groups=[0, 0, 1, 1, 2, 2])
  metric = METRICS.build({"name": "udr", "num_points": 4000,
                          "correlation_matrix": "spearman"})
  scores = metric(dataset, md.identity, KEY, members=members)
  assert scores["udr"].shape == (6,)
  assert scores["udr_matrix"].shape == (6, 6)
  # The same points as the metric's (its rng draws the factors), for an
  # exact scipy reference of every pair.
  factors = np.asarray(sampling.sample_factors(dataset, KEY, 4000))
  identity = factors.astype(np.float32)
  logvars = np.full((2, 4000, 4), math.log(0.01), np.float32)
  for pair, other in ((0, identity), (1, np.asarray(flipped(identity))),
                      (2, np.asarray(mixed(identity)))):
    expected = _reference_udr(np.stack([identity, other]), logvars)
    np.testing.assert_allclose(scores["udr"][2 * pair:2 * pair + 2],
                               expected, rtol=1e-4)
  # Identical, and permuted with flipped signs: 1 but for the sampling noise
  # of the off-diagonal |Spearman| (about 0.8 / sqrt(n) each, 3 per row).
  np.testing.assert_allclose(scores["udr"][2:4], scores["udr"][:2],
                             rtol=1e-6)
  assert np.all(scores["udr"][:4] > 0.9)
  # Mixing two latents: the 2 x 2 block has |rho| ~ 0.7 everywhere, so its
  # rows and columns score rho / 2 instead of 1: UDR = (rho + 2) / 4 without
  # sampling noise, which lowers it by a few hundredths here (as it lowers
  # the identical pairs' 1 to ~0.94); the exact value for this sample is
  # the scipy reference above.
  grid = np.stack(np.meshgrid(np.arange(10), np.arange(10)), -1).reshape(-1, 2)
  rho = abs(scipy.stats.spearmanr(grid[:, 0], grid.sum(1))[0])
  np.testing.assert_allclose(scores["udr"][4:], (rho + 2) / 4, atol=0.05)
  # Groups: NaN across groups and on the diagonal.
  matrix = scores["udr_matrix"]
  same = np.equal.outer([0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2])
  assert np.all(np.isnan(matrix[~same]))
  assert np.all(np.isnan(np.diag(matrix)))
  assert np.all(np.isfinite(matrix[same & ~np.eye(6, dtype=bool)]))


def test_udr_groups_are_separate_and_singletons_nan():
  dataset = md.FactorDataset((10,) * 3)

  def mixed(x):
    c = md.flat(x)
    return jnp.stack([c[:, 0] + c[:, 1], c[:, 0] - c[:, 1], c[:, 2]], axis=1)

  a, b = sharp(md.identity), sharp(mixed)
  metric = METRICS.build({"name": "udr", "num_points": 500})
  both = metric(dataset, md.identity, KEY,
                members=fake_members(a, b, a, b, a, groups=[0, 1, 0, 1, 2]))
  alone0 = metric(dataset, md.identity, KEY,
                  members=fake_members(a, a, groups=[0, 0]))
  alone1 = metric(dataset, md.identity, KEY,
                  members=fake_members(b, b, groups=[1, 1]))
  np.testing.assert_allclose(both["udr"][[0, 2]], alone0["udr"], rtol=1e-5)
  np.testing.assert_allclose(both["udr"][[1, 3]], alone1["udr"], rtol=1e-5)
  assert np.isnan(both["udr"][4])  # the only member of group 2


def test_udr_non_finite_member_and_collapsed_latents():
  dataset = md.FactorDataset((10,) * 3)
  prior = lambda x: (jnp.zeros(md.flat(x).shape),) * 2  # KL 0: uninformative
  members = fake_members(sharp(md.identity), sharp(nan_code),
                         sharp(md.identity), prior, prior,
                         groups=[0, 0, 0, 1, 1])
  metric = METRICS.build({"name": "udr", "num_points": 1000})
  scores = metric(dataset, md.identity, KEY, members=members)
  # The diverged member is NaN and left out of its peers' medians.
  assert np.isnan(scores["udr"][1])
  # Identical members under dlib's default Lasso: 1 - alpha (below).
  np.testing.assert_allclose(scores["udr"][[0, 2]], 0.9, rtol=1e-6)
  # Fully collapsed members share nothing disentangled: 0.
  np.testing.assert_array_equal(scores["udr"][3:], 0.0)


def _dlib_lasso_udr(means, logvars, alpha=0.1, threshold=0.01):
  """dlib's `compute_udr_sklearn` with `correlation_matrix='lasso'`, written
  out with sklearn on float64 copies: StandardScaler, uninformative latents
  zeroed, one multi-target Lasso per ordered pair, the relative strength of
  the filtered |coefficients| (mean of row and column means), and each
  model's median over the pairs that regress onto it."""
  from sklearn.linear_model import Lasso
  from sklearn.preprocessing import StandardScaler
  kl = np.mean(0.5 * (means ** 2 + np.exp(logvars) - logvars - 1), axis=1)
  keep = kl > threshold
  reps = [StandardScaler().fit_transform(m.astype(np.float64)) * k
          for m, k in zip(means, keep)]
  count = len(reps)
  similarity = np.zeros((count, count) + means.shape[2:] * 2)
  pairwise = np.full((count, count), np.nan)
  for i in range(count):
    for j in range(count):
      if i == j:
        continue
      model = Lasso(alpha=alpha, random_state=0).fit(reps[i], reps[j])
      similarity[i, j] = np.abs(model.coef_).T
      r = similarity[i, j][keep[i]][:, keep[j]]
      with np.errstate(invalid="ignore", divide="ignore"):
        columns = np.nan_to_num(r.max(axis=0) ** 2 / r.sum(axis=0), nan=0.0)
        rows = np.nan_to_num(r.max(axis=1) ** 2 / r.sum(axis=1), nan=0.0)
      pairwise[i, j] = (np.mean(columns) + np.mean(rows)) / 2
  scores = [np.median(np.delete(pairwise[:, i], i)) for i in range(count)]
  return similarity, pairwise, np.array(scores)


def test_udr_lasso_matches_dlib_sklearn_computation():
  # Three models of the same 4 sources, each with one uninformative latent
  # (as many informative latents each, where the paper's eq. 3 and dlib's
  # mean of row and column means agree); member 2 mixes two sources.
  rng = np.random.default_rng(5)
  z = rng.normal(size=(400, 4))
  first = np.stack([z[:, 0], 2 * z[:, 1], z[:, 2], 0.02 * z[:, 3]], 1)
  second = np.stack([-z[:, 1], z[:, 0] + 0.3 * rng.normal(size=400),
                     0.01 * z[:, 2], z[:, 3]], 1)
  third = np.stack([z[:, 0] + z[:, 1], z[:, 0] - z[:, 1], z[:, 2],
                    0.01 * z[:, 3]], 1)
  means = np.stack([first, second, third]).astype(np.float32)
  logvars = np.zeros_like(means)
  similarity, pairwise, expected = _dlib_lasso_udr(means, logvars)
  scores = udr_lib.udr_scores(means, logvars, np.zeros(3, int), n_jobs=1)
  compared = ~np.eye(3, dtype=bool)
  informative = np.asarray(udr_lib.gaussian_kl_per_latent(means,
                                                          logvars)) > 0.01
  assert informative.sum(axis=1).tolist() == [3, 3, 3]
  np.testing.assert_allclose(
      udr_lib.lasso_similarities(means, informative, compared, n_jobs=1),
      similarity, rtol=1e-9, atol=1e-12)
  np.testing.assert_allclose(scores["udr_matrix"][compared],
                             pairwise[compared], rtol=1e-6)
  np.testing.assert_allclose(scores["udr"], expected, rtol=1e-6)
  # The Lasso is not symmetric: a member's score is its column's median
  # (the pairs regressing onto it), not its row's.
  assert abs(pairwise[1, 2] - pairwise[2, 1]) > 1e-3
  np.testing.assert_allclose(scores["udr"][2], np.median(pairwise[:2, 2]),
                             rtol=1e-6)
  assert abs(scores["udr"][2] - np.median(pairwise[2, :2])) > 1e-3


@pytest.mark.parametrize("alpha", [0.1, 0.3])
def test_udr_lasso_of_identical_members_is_one_minus_alpha(alpha):
  # Standardised identical latents: the Lasso of latent j on all of them is
  # (1 - alpha) e_j exactly (the others' KKT conditions hold, since every
  # correlation is at most 1), so R = (1 - alpha) I and every row and
  # column scores (1 - alpha)^2 / (1 - alpha).
  codes = np.random.default_rng(1).normal(size=(300, 3)).astype(np.float32)
  means = np.stack([codes, codes])
  scores = udr_lib.udr_scores(means, np.zeros_like(means), np.array([0, 0]),
                              lasso_alpha=alpha, n_jobs=1)
  np.testing.assert_allclose(scores["udr"], 1 - alpha, rtol=1e-6)


# --- ELBO decomposition ----------------------------------------------------


def _elbo(posteriors, dataset, num_points=1000, error=None, **options):
  metric = METRICS.build({"name": "elbo_decomposition",
                          "num_points": num_points, **options})
  return metric(dataset, md.identity, KEY,
                members=fake_members(*posteriors, error=error))


def test_elbo_prior_and_input_independent_posteriors():
  # Member 0: q(z|x) = p(z) for every x, so every term is 0.
  # Member 1: q(z|x) = N((1, 0, 0), diag(0.25, 1, 1)) for every x: no
  # information and no dependence; KL = 0.5 (1 + 0.25 - log 0.25 - 1) is all
  # dimension-wise.
  def prior(x):
    return (jnp.zeros(md.flat(x).shape),) * 2

  def constant(x):
    b = x.shape[0]
    return (jnp.tile(jnp.array([1.0, 0.0, 0.0]), (b, 1)),
            jnp.tile(jnp.array([math.log(0.25), 0.0, 0.0]), (b, 1)))

  scores = _elbo([prior, constant], md.FactorDataset((5, 5, 5)),
                 error=lambda x: 2 * md.flat(x)[:, 0] + 1)
  assert set(scores) == {"reconstruction_error", "kl", "index_code_mi",
                         "total_correlation", "dimwise_kl", "kl_per_latent"}
  for name in ("kl", "index_code_mi", "total_correlation", "dimwise_kl"):
    assert scores[name].shape == (2,)
    np.testing.assert_allclose(scores[name][0], 0.0, atol=1e-5)
  np.testing.assert_array_equal(scores["kl_per_latent"][0], np.zeros(3))
  # E[2 c0 + 1] with c0 uniform on 0..4: 5, up to sampling noise.
  np.testing.assert_allclose(scores["reconstruction_error"], 5.0, atol=0.3)
  kl = 0.5 * (1 + 0.25 - math.log(0.25) - 1)
  np.testing.assert_allclose(scores["kl_per_latent"][1], [kl, 0.0, 0.0],
                             atol=1e-6)
  np.testing.assert_allclose(scores["kl"][1], kl, rtol=1e-6)
  np.testing.assert_allclose(scores["index_code_mi"][1], 0.0, atol=1e-5)
  np.testing.assert_allclose(scores["total_correlation"][1], 0.0, atol=1e-5)
  # Single-sample Monte Carlo KL: per-point sd 0.73, 1000 points -> se 0.023.
  np.testing.assert_allclose(scores["dimwise_kl"][1], kl, atol=5 * 0.023)


def test_elbo_index_code_mi_of_separated_posteriors():
  # One binary factor, posteriors N(+-3, 0.01) that never overlap: the code
  # identifies the factor value, I(z; n) = H(factor) on the sample, and one
  # latent has no total correlation.
  dataset = md.FactorDataset((2,))
  scores = _elbo([sharp(lambda x: 6 * md.flat(x) - 3)], dataset, 2000)
  factors = np.asarray(dataset.sample_factors(jax.random.split(KEY)[0], 2000))
  p = factors.mean()
  entropy = -(p * math.log(p) + (1 - p) * math.log(1 - p))
  np.testing.assert_allclose(scores["index_code_mi"], entropy, atol=1e-3)
  np.testing.assert_allclose(scores["total_correlation"], 0.0, atol=1e-5)


def test_elbo_total_correlation_independent_vs_dependent():
  # Latents driven by independent factors: TC ~ 0 (the sample's empirical
  # joint is only nearly a product: about (K - 1)^2 / 2N).  Two latents
  # reading the same factor: TC ~ H(factor) = log 4 (sigma 0.1 keeps the
  # four values apart).
  dataset = md.FactorDataset((4, 4))
  independent = sharp(md.identity)
  same = sharp(lambda x: md.flat(x)[:, :1] * jnp.ones((1, 2)))
  scores = _elbo([independent, same], dataset)
  assert abs(scores["total_correlation"][0]) < 0.02
  np.testing.assert_allclose(scores["total_correlation"][1], math.log(4),
                             atol=0.05)


def test_elbo_terms_sum_to_monte_carlo_kl():
  # The three terms telescope to the sample's Monte Carlo KL exactly (up to
  # float32 rounding), whatever the aggregate-posterior estimate; the
  # closed-form KL is their expectation over the noise.
  rng = np.random.default_rng(0)
  n, d = 400, 3
  mean = rng.normal(size=(n, d)).astype(np.float32)
  logvar = rng.uniform(-2, 0, size=(n, d)).astype(np.float32)
  noise = rng.normal(size=(n, d)).astype(np.float32)
  scores = elbo_lib.elbo_decomposition(mean, logvar, noise, chunk_size=64)
  z = mean + np.exp(0.5 * logvar) * noise
  log_q = -0.5 * (np.log(2 * np.pi) + logvar + noise ** 2)
  log_p = -0.5 * (np.log(2 * np.pi) + z ** 2)
  per_point = np.sum(log_q - log_p, axis=1)
  total = (scores["index_code_mi"] + scores["total_correlation"]
           + scores["dimwise_kl"])
  np.testing.assert_allclose(total, per_point.mean(), rtol=1e-4, atol=1e-4)
  se = per_point.std() / math.sqrt(n)
  assert abs(total - scores["kl"]) < 5 * se
  # The decomposition is the same whatever the chunking (here with padding).
  whole = elbo_lib.elbo_decomposition(mean, logvar, noise, chunk_size=n)
  for name in scores:
    np.testing.assert_allclose(scores[name], whole[name], rtol=1e-5,
                               atol=1e-6)


# --- shared contract -------------------------------------------------------


@pytest.mark.parametrize("name, options", [
    ("unsupervised", {"num_train": 500}),
    ("active_latents", {"num_points": 500}),
])
def test_members_in_one_call_equal_each_alone(name, options):
  dataset = md.FactorDataset((6,) * 3)
  codes = [md.identity, md.zeros, md.noise_of]
  metric = METRICS.build({"name": name, **options})
  together = metric(dataset, md.members(*codes), KEY)
  for i, code in enumerate(codes):
    alone = metric(dataset, md.members(code), KEY)
    for key in together:
      # atol: W-correlation is 2 tr C - 2 tr sqrtm, a float32 difference of
      # numbers ~ tr C, so vmapped and single rounding differ by ~1e-6 tr C.
      np.testing.assert_allclose(together[key][i], alone[key][0], rtol=1e-5,
                                 atol=1e-5, err_msg=f"{key} member {i}")


def test_elbo_members_in_one_call_equal_each_alone():
  # The same points and noise for every member; a non-finite member is NaN
  # throughout and does not disturb the others.
  dataset = md.FactorDataset((4, 4))
  posteriors = [sharp(md.identity), sharp(md.permuted, 0.0),
                lambda x: (jnp.zeros(md.flat(x).shape),) * 2]
  metric = METRICS.build({"name": "elbo_decomposition", "num_points": 300,
                          "chunk_size": 64})
  together = metric(dataset, md.identity, KEY,
                    members=fake_members(*posteriors, sharp(nan_code)))
  for value in together.values():
    assert np.all(np.isnan(value[3]))
  for i, posterior in enumerate(posteriors):
    alone = metric(dataset, md.identity, KEY,
                   members=fake_members(posterior))
    for key in together:
      assert np.all(np.isfinite(together[key][i]))
      np.testing.assert_allclose(together[key][i], alone[key][0], rtol=1e-5,
                                 atol=1e-6, err_msg=f"{key} member {i}")


@pytest.mark.parametrize("name", ["udr", "elbo_decomposition"])
def test_metrics_needing_a_model_reject_missing_members(name):
  metric = METRICS.build({"name": name, "num_points": 10})
  with pytest.raises(ValueError, match="needs a trained model"):
    metric(md.FactorDataset((2, 2)), md.members(md.identity), KEY)


@pytest.mark.parametrize("section, match", [
    ({"name": "unsupervised", "num_train": 1}, "unsupervised: num_train"),
    ({"name": "unsupervised", "num_bins": 1}, "unsupervised: num_bins"),
    ({"name": "active_latents", "threshold": -0.1},
     "active_latents: threshold"),
    ({"name": "active_latents", "threshold": float("nan")},
     "active_latents: threshold"),
    ({"name": "active_latents", "num_points": 0},
     "active_latents: num_points"),
    ({"name": "udr", "kl_filter_threshold": "0.01"},
     "udr: kl_filter_threshold"),
    ({"name": "udr", "num_points": 1.5}, "udr: num_points"),
    ({"name": "udr", "correlation_matrix": "pearson"},
     "udr: correlation_matrix='pearson'; allowed: \\('lasso', 'spearman'\\)"),
    ({"name": "udr", "lasso_alpha": 0.0}, "udr: lasso_alpha"),
    ({"name": "udr", "n_jobs": 0}, "udr: n_jobs"),
    ({"name": "elbo_decomposition", "chunk_size": 0},
     "elbo_decomposition: chunk_size"),
    ({"name": "elbo_decomposition", "num_points": 1},
     "elbo_decomposition: num_points"),
])
def test_invalid_options_are_rejected(section, match):
  with pytest.raises(ValueError, match=match):
    METRICS.build(section)


# --------------------------------------------------------------------------
# Sampling: metrics draw factors in power-of-two sizes (fewer compiles).


def test_draw_sizes_are_powers_of_two_from_the_minimum():
  assert [sampling.draw_size(n) for n in (1, 60, 4096, 4097, 10_000)] == [
      4096, 4096, 4096, 8192, 16384]


@pytest.mark.parametrize("name", ["dsprites", "triangle", "correlated"])
def test_metric_draws_equal_a_draw_of_exactly_that_size(name):
  """The rows come from a larger draw; they must be the same rows a draw
  of exactly `num` gives (this fails without partitionable threefry)."""
  dataset = make_dataset({"name": name})
  sampler = jax.jit(dataset.sample_uniform_factors, static_argnums=1)
  for num in (60, 4097):
    np.testing.assert_array_equal(
        sampling.sample_factors(dataset, KEY, num),
        np.asarray(sampler(KEY, num)))


# --------------------------------------------------------------------------
# The sampled representation (dlib's `sampled_representation`).


def test_sample_representation_is_the_mean_plus_scaled_noise():
  mean = jnp.array([[0.0, 1.0, -2.0]])
  logvar = jnp.array([[0.0, math.log(4.0), math.log(0.01)]])
  noise = jax.random.normal(KEY, mean.shape)
  np.testing.assert_allclose(
      sampling.sample_representation(mean, logvar, KEY),
      mean + jnp.array([1.0, 2.0, 0.1]) * noise, rtol=1e-6)


def _posteriors(*logvars):
  """posterior_fn of members whose mean is the identity code, each with
  its constant log-variance."""
  return lambda x: (jnp.stack([md.flat(x)] * len(logvars)),
                    jnp.stack([jnp.full(md.flat(x).shape, v)
                               for v in logvars]))


def test_sampled_representation_of_a_vanishing_variance_scores_the_mean():
  """exp(-1000 / 2) is 0 in float32: the samples are the means and every
  score is exactly the mean's; with unit variance the noise blurs the
  code and MIG falls."""
  dataset = md.FactorDataset((4, 4, 4))
  metric = METRICS.build({"name": "mig", "num_points": 1000})
  sampled = sampling.sampled_representation_fn(_posteriors(-1000.0, 0.0),
                                               KEY)
  mean = metric(dataset, md.members(md.identity, md.identity), KEY)
  scores = metric(dataset, sampled, KEY)
  for name in mean:
    np.testing.assert_array_equal(scores[name][0], mean[name][0])
  assert scores["mig"][1] < mean["mig"][1] - 0.1


def test_sampled_representation_noise_is_per_member_and_per_call():
  """Member m's noise of call c comes from fold_in(fold_in(key, c), m):
  the same whatever else shares the call, fresh on every call."""
  x = md.FactorDataset((4, 4)).observations_from_factors(
      jnp.array([[0, 1], [2, 3], [1, 1]]))
  together = sampling.sampled_representation_fn(_posteriors(0.0, 0.5), KEY)
  alone = sampling.sampled_representation_fn(_posteriors(0.0), KEY)
  first, second = np.asarray(together(x)), np.asarray(together(x))
  np.testing.assert_array_equal(first[0], np.asarray(alone(x))[0])
  assert not np.allclose(first, second)
  noise = jax.random.normal(jax.random.fold_in(jax.random.fold_in(KEY, 1), 1),
                            (3, 2))
  np.testing.assert_allclose(second[1], md.flat(x) + math.exp(0.25) * noise,
                             rtol=1e-6)
