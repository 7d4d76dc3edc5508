"""The seed-by-seed baseline: disentanglement_lib's evaluation, one seed at a
time, in numpy and scikit-learn.

This is what researchers run today with disentanglement_lib (dlib-google):
one evaluation process per trained seed and metric, each drawing its own
sample with a `numpy.random.RandomState(random_seed)`, calling the seed's
representation function on `batch_size` observations at a time
(`generate_batch_factor_code`), and fitting scikit-learn estimators on the
codes.  disentax scores all seeds at once in JAX; this module is the
baseline its speed is measured against (`disentax.bench.eval_speed`), and a
second, independent reading of the metric definitions.

It follows dlib's structure and estimators, written anew:

* mig: each latent discretised into `num_bins` equal-width `np.histogram`
  bins, `sklearn.metrics.mutual_info_score` per (latent, factor) pair,
  mean over factors of (top1 - top2) / H(factor);
* beta_vae_score: mean |z1 - z2| features over `batch_size` pairs sharing
  one factor, `sklearn.linear_model.LogisticRegression()`;
* factor_vae_score: majority vote of argmin(local / global variance) among
  the latents whose global std is >= `prune_threshold`;
* dci: one `GradientBoostingClassifier()` per factor, importance matrix,
  entropy-based disentanglement and completeness (`scipy.stats.entropy`);
* sap: per (latent, factor) `LinearSVC(C=0.01, class_weight="balanced")`
  test accuracy (discrete factors) or squared correlation (continuous);
* modularity_explicitness: modularity from the histogram MI matrix,
  explicitness as the ROC-AUC of a `LogisticRegression()` per factor on
  standardised codes;
* irs: interventional robustness on histogram-discretised factors;
* unsupervised: Gaussian total correlation and Wasserstein correlation of
  the code covariance (`np.cov`, `np.linalg.slogdet`, `scipy.linalg.sqrtm`),
  and the mean pairwise MI of discretised latents.

Every metric takes `(dataset, representation_fn, random_state, **options)`
with dlib's defaults as keyword options (sizes such as `num_train` can be set
to run at the reduced sizes of a disentax battery) and returns a dict of
numpy scores.  `representation_fn` is a *single seed's* function:
observations [b, H, W, C] (numpy) -> codes [b, d].  Output keys use the
disentax metric's names where disentax has the same quantity (e.g. "mig",
"dci_disentanglement"), so the two can be compared key by key.

Where dlib's code divides by zero or crashes (a factor with one value, a
constant latent), the numbers here are dlib's (NaN) unless noted otherwise
in a function's docstring; disentax decides those edge cases differently on
purpose (see its modules).
"""

from __future__ import annotations

import time
import warnings
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import jax
import numpy as np
import scipy.linalg
import scipy.stats
from sklearn import svm
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import mutual_info_score, roc_auc_score

if TYPE_CHECKING:  # only for annotations
  from disentax.data.base import GroundTruthDataset

# One seed's representation: observations [b, H, W, C] -> codes [b, d].
SeedRepresentationFn = Callable[[np.ndarray], np.ndarray]

# dlib adds this to every importance before its entropies (DCI).
_DCI_EPSILON = 1e-11
# Seed of the sklearn estimators that take one (GBT, LinearSVC): dlib leaves
# them unseeded; a fixed seed makes the baseline reproducible, as disentax's
# fits are.
ESTIMATOR_SEED = 0


# --- data: dlib's GroundTruthData on top of a disentax dataset -------------


# id(dataset) -> (dataset, renderer); holding the dataset keeps its id unique.
_RENDERERS: dict[int, tuple[Any, Callable[[np.ndarray], np.ndarray]]] = {}


def _renderer(dataset: GroundTruthDataset) -> Callable[[np.ndarray],
                                                       np.ndarray]:
  """The dataset's jitted factors -> observations map, returning numpy (the
  observations dlib hands to a representation function); built once per
  dataset object."""
  if id(dataset) not in _RENDERERS:
    render = jax.jit(dataset.observations_from_factors)
    _RENDERERS[id(dataset)] = (dataset, lambda factors: np.asarray(
        render(np.asarray(factors, np.int32))))
  return _RENDERERS[id(dataset)][1]


def sample_factors(dataset: GroundTruthDataset, num: int,
                   random_state: np.random.RandomState) -> np.ndarray:
  """`num` factor tuples drawn uniformly, int [num, F], with numpy's
  RandomState as dlib does (`randint(size, size=num)` factor by factor)."""
  return np.stack([random_state.randint(size, size=num)
                   for size in dataset.factor_sizes], axis=1)


def observations(dataset: GroundTruthDataset,
                 factors: np.ndarray) -> np.ndarray:
  """Numpy observations [n, H, W, C] of the factor tuples [n, F]."""
  return _renderer(dataset)(factors)


def _encode(representation_fn: SeedRepresentationFn,
            obs: np.ndarray) -> np.ndarray:
  codes = np.asarray(representation_fn(obs))
  if codes.ndim != 2 or codes.shape[0] != obs.shape[0]:
    raise ValueError(f"a seed's representation_fn must map {obs.shape[0]} "
                     f"observations to codes [b, d], got {codes.shape}")
  return codes


def generate_batch_factor_code(dataset: GroundTruthDataset,
                               representation_fn: SeedRepresentationFn,
                               num_points: int,
                               random_state: np.random.RandomState,
                               batch_size: int
                               ) -> tuple[np.ndarray, np.ndarray]:
  """dlib's sampling loop: draw and encode `batch_size` points at a time
  (the last batch is smaller).  Returns codes [n, d] and factors [n, F]
  (points first; dlib returns both transposed)."""
  codes, factors = [], []
  done = 0
  while done < num_points:
    size = min(num_points - done, batch_size)
    batch = sample_factors(dataset, size, random_state)
    codes.append(_encode(representation_fn, observations(dataset, batch)))
    factors.append(batch)
    done += size
  return np.concatenate(codes), np.concatenate(factors)


# --- discrete information (dlib's utils) -----------------------------------


def histogram_discretize(codes: np.ndarray, num_bins: int = 20) -> np.ndarray:
  """Each column [n, d] binned into `num_bins` equal-width bins between its
  own min and max: `np.digitize(x, np.histogram(x, num_bins)[1][:-1])`
  (labels 1..num_bins; only their partition matters for MI)."""
  codes = np.asarray(codes)
  out = np.zeros(codes.shape, dtype=np.int64)
  for j in range(codes.shape[1]):
    edges = np.histogram(codes[:, j], num_bins)[1]
    out[:, j] = np.digitize(codes[:, j], edges[:-1])
  return out


def discrete_mutual_info(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """[d, f] matrix of `mutual_info_score(b[:, j], a[:, i])` (nats)."""
  return np.array([[mutual_info_score(b[:, j], a[:, i])
                    for j in range(b.shape[1])] for i in range(a.shape[1])])


def discrete_entropy(b: np.ndarray) -> np.ndarray:
  """[f] entropies in nats, as dlib: the MI of each column with itself."""
  return np.array([mutual_info_score(b[:, j], b[:, j])
                   for j in range(b.shape[1])])


# --- MIG -------------------------------------------------------------------


def mig_from_codes(codes: np.ndarray, factors: np.ndarray,
                   num_bins: int = 20) -> dict[str, Any]:
  """MIG of codes [n, d] against factors [n, F] (dlib's `_compute_mig`).

  A factor without entropy gives NaN (0 / 0), as in dlib.
  """
  mi = discrete_mutual_info(histogram_discretize(codes, num_bins), factors)
  entropy = discrete_entropy(factors)
  ranked = np.sort(mi, axis=0)[::-1]
  with np.errstate(divide="ignore", invalid="ignore"):
    per_factor = (ranked[0] - ranked[1]) / entropy
  return {"mig": float(np.mean(per_factor)), "mig_per_factor": per_factor}


def compute_mig(dataset: GroundTruthDataset,
                representation_fn: SeedRepresentationFn,
                random_state: np.random.RandomState, num_train: int = 10000,
                batch_size: int = 16, num_bins: int = 20) -> dict[str, Any]:
  """MIG on `num_train` points (dlib: 10000, batch 16, 20 bins)."""
  codes, factors = generate_batch_factor_code(
      dataset, representation_fn, num_train, random_state, batch_size)
  return mig_from_codes(codes, factors, num_bins)


# --- BetaVAE score ---------------------------------------------------------


def _beta_vae_points(dataset: GroundTruthDataset,
                     representation_fn: SeedRepresentationFn,
                     batch_size: int, num_points: int,
                     random_state: np.random.RandomState
                     ) -> tuple[np.ndarray, np.ndarray]:
  """Features [n, d] and labels [n]: per point one random factor is shared
  by `batch_size` pairs; the feature is the mean |z1 - z2| of the pairs."""
  labels = np.zeros(num_points, dtype=np.int64)
  features = None
  for i in range(num_points):
    index = random_state.randint(dataset.num_factors)
    first = sample_factors(dataset, batch_size, random_state)
    second = sample_factors(dataset, batch_size, random_state)
    second[:, index] = first[:, index]
    z1 = _encode(representation_fn, observations(dataset, first))
    z2 = _encode(representation_fn, observations(dataset, second))
    feature = np.mean(np.abs(z1 - z2), axis=0)
    if features is None:
      features = np.zeros((num_points, feature.shape[0]))
    labels[i] = index
    features[i] = feature
  return features, labels


def fit_beta_vae_classifier(features: np.ndarray, labels: np.ndarray,
                            random_state: Any = None) -> LogisticRegression:
  """dlib's classifier: `LogisticRegression(random_state=random_state)`
  fitted on BetaVAE features [n, d] and labels [n] (convergence warnings of
  lbfgs' 100 iterations silenced, as dlib's logs are)."""
  model = LogisticRegression(random_state=random_state)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    model.fit(features, labels)
  return model


def compute_beta_vae(dataset: GroundTruthDataset,
                     representation_fn: SeedRepresentationFn,
                     random_state: np.random.RandomState,
                     batch_size: int = 64, num_train: int = 10000,
                     num_eval: int = 5000) -> dict[str, Any]:
  """BetaVAE score (dlib's `compute_beta_vae_sklearn`: batch 64, 10000 /
  5000 points): accuracy of `LogisticRegression()` on the eval points.

  The classifier uses today's sklearn defaults (lbfgs, multinomial,
  max_iter 100), the problem disentax's `logistic` solves exactly; dlib-era
  sklearn (< 0.22) defaulted to liblinear one-vs-rest.
  """
  train_x, train_y = _beta_vae_points(dataset, representation_fn, batch_size,
                                      num_train, random_state)
  model = fit_beta_vae_classifier(train_x, train_y, random_state)
  eval_x, eval_y = _beta_vae_points(dataset, representation_fn, batch_size,
                                    num_eval, random_state)
  return {"beta_vae_score": float(np.mean(model.predict(eval_x) == eval_y)),
          "beta_vae_train_accuracy": float(np.mean(model.predict(train_x)
                                                   == train_y))}


# --- FactorVAE score -------------------------------------------------------


def _factor_vae_votes(dataset: GroundTruthDataset,
                      representation_fn: SeedRepresentationFn,
                      batch_size: int, num_points: int,
                      random_state: np.random.RandomState,
                      global_variances: np.ndarray,
                      active: np.ndarray) -> np.ndarray:
  """Votes [F, d]: per point one random factor is fixed over `batch_size`
  tuples, and the active latent with the smallest variance relative to its
  global variance gets the vote."""
  votes = np.zeros((dataset.num_factors, global_variances.shape[0]),
                   dtype=np.int64)
  for _ in range(num_points):
    index = random_state.randint(dataset.num_factors)
    factors = sample_factors(dataset, batch_size, random_state)
    factors[:, index] = factors[0, index]
    codes = _encode(representation_fn, observations(dataset, factors))
    votes[index, factor_vae_vote(codes, global_variances, active)] += 1
  return votes


def factor_vae_vote(codes: np.ndarray, global_variances: np.ndarray,
                    active: np.ndarray) -> int:
  """The latent voted for by one batch of codes [batch, d] with one factor
  fixed: the active latent with the smallest local variance (ddof 1)
  relative to its global variance.

  dlib votes for the position among the active latents; voting for the
  latent itself is the same classifier with its columns relabelled.
  """
  local = np.var(codes, axis=0, ddof=1)
  active_index = np.flatnonzero(active)
  return int(active_index[np.argmin(local[active] / global_variances[active])])


def majority_vote_accuracy(train_votes: np.ndarray, eval_votes: np.ndarray
                           ) -> tuple[float, float]:
  """(train, eval) accuracy of the classifier mapping each latent to its
  most voted factor in `train_votes` [F, d] (dlib)."""
  classifier = np.argmax(train_votes, axis=0)  # latent -> factor
  latents = np.arange(train_votes.shape[1])
  return (float(train_votes[classifier, latents].sum() / train_votes.sum()),
          float(eval_votes[classifier, latents].sum() / eval_votes.sum()))


def compute_factor_vae(dataset: GroundTruthDataset,
                       representation_fn: SeedRepresentationFn,
                       random_state: np.random.RandomState,
                       batch_size: int = 64, num_train: int = 10000,
                       num_eval: int = 5000,
                       num_variance_estimate: int = 10000,
                       prune_threshold: float = 0.05,
                       variance_batch_size: int = 1000) -> dict[str, Any]:
  """FactorVAE score (dlib's `compute_factor_vae` with the study's
  `prune_dims.threshold = 0.05`): majority-vote accuracy on `num_eval`
  points.

  The global variances (ddof 1) come from `num_variance_estimate` points
  sampled at once, as in dlib; they are encoded `variance_batch_size` at a
  time (dlib encodes them in one call, which needs the memory of 10000
  images' activations; the codes are the same).  With no active latent every
  accuracy is 0.  `factor_vae_active_dims` counts the active latents (dlib's
  `num_active_dims` reports the mask's length instead).
  """
  factors = sample_factors(dataset, num_variance_estimate, random_state)
  codes = np.concatenate([
      _encode(representation_fn,
              observations(dataset, factors[i:i + variance_batch_size]))
      for i in range(0, num_variance_estimate, variance_batch_size)])
  global_variances = np.var(codes, axis=0, ddof=1)
  active = np.sqrt(global_variances) >= prune_threshold
  if not active.any():
    return {"factor_vae_score": 0.0, "factor_vae_train_accuracy": 0.0,
            "factor_vae_active_dims": 0}
  train_votes = _factor_vae_votes(dataset, representation_fn, batch_size,
                                  num_train, random_state, global_variances,
                                  active)
  eval_votes = _factor_vae_votes(dataset, representation_fn, batch_size,
                                 num_eval, random_state, global_variances,
                                 active)
  train_accuracy, eval_accuracy = majority_vote_accuracy(train_votes,
                                                         eval_votes)
  return {"factor_vae_score": eval_accuracy,
          "factor_vae_train_accuracy": train_accuracy,
          "factor_vae_active_dims": int(active.sum())}


# --- DCI -------------------------------------------------------------------


def importance_gbt(codes_train: np.ndarray, factors_train: np.ndarray,
                   codes_test: np.ndarray, factors_test: np.ndarray
                   ) -> tuple[np.ndarray, float, float]:
  """dlib's `compute_importance_gbt`: one `GradientBoostingClassifier()` per
  factor; returns |feature importances| [d, F] and the mean train and test
  accuracy over factors."""
  num_codes, num_factors = codes_train.shape[1], factors_train.shape[1]
  importance = np.zeros((num_codes, num_factors))
  train_acc, test_acc = [], []
  for k in range(num_factors):
    model = GradientBoostingClassifier(random_state=ESTIMATOR_SEED)
    model.fit(codes_train, factors_train[:, k])
    importance[:, k] = np.abs(model.feature_importances_)
    train_acc.append(np.mean(model.predict(codes_train) == factors_train[:, k]))
    test_acc.append(np.mean(model.predict(codes_test) == factors_test[:, k]))
  return importance, float(np.mean(train_acc)), float(np.mean(test_acc))


def dci_disentanglement(importance: np.ndarray) -> float:
  """sum_i rho_i (1 - H_F(P_i.)) with scipy's entropy of R + 1e-11; an
  all-zero R weighs the latents equally (dlib)."""
  per_code = 1.0 - scipy.stats.entropy(importance.T + _DCI_EPSILON,
                                       base=importance.shape[1])
  if importance.sum() == 0.0:
    importance = np.ones_like(importance)
  weights = importance.sum(axis=1) / importance.sum()
  return float(np.sum(per_code * weights))


def dci_completeness(importance: np.ndarray) -> float:
  """sum_k rho_k (1 - H_d(P_.k)) (dlib's `completeness`)."""
  per_factor = 1.0 - scipy.stats.entropy(importance + _DCI_EPSILON,
                                         base=importance.shape[0])
  if importance.sum() == 0.0:
    importance = np.ones_like(importance)
  weights = importance.sum(axis=0) / importance.sum()
  return float(np.sum(per_factor * weights))


def compute_dci(dataset: GroundTruthDataset,
                representation_fn: SeedRepresentationFn,
                random_state: np.random.RandomState, num_train: int = 10000,
                num_test: int = 5000, batch_size: int = 16
                ) -> dict[str, Any]:
  """DCI (dlib: 10000 train / 5000 test points, batch 16)."""
  codes_train, factors_train = generate_batch_factor_code(
      dataset, representation_fn, num_train, random_state, batch_size)
  codes_test, factors_test = generate_batch_factor_code(
      dataset, representation_fn, num_test, random_state, batch_size)
  importance, train_acc, test_acc = importance_gbt(
      codes_train, factors_train, codes_test, factors_test)
  return {"dci_disentanglement": dci_disentanglement(importance),
          "dci_completeness": dci_completeness(importance),
          "dci_informativeness_train": train_acc,
          "dci_informativeness_test": test_acc,
          "dci_importance": importance}


# --- SAP -------------------------------------------------------------------


def sap_score_matrix(codes_train: np.ndarray, factors_train: np.ndarray,
                     codes_test: np.ndarray, factors_test: np.ndarray,
                     continuous_factors: bool = False) -> np.ndarray:
  """[d, F] score matrix (dlib's `_compute_score_matrix`).

  Discrete factors: test accuracy of `LinearSVC(C=0.01,
  class_weight="balanced")` on the one latent, with `dual=True` (sklearn's
  default when dlib was written; it is slower than today's "auto", so the
  baseline times what dlib ran).  Continuous: squared correlation, 0 for a
  latent with variance <= 1e-12.
  """
  num_codes, num_factors = codes_train.shape[1], factors_train.shape[1]
  matrix = np.zeros((num_codes, num_factors))
  for i in range(num_codes):
    for j in range(num_factors):
      z, y = codes_train[:, i], factors_train[:, j]
      if continuous_factors:
        cov = np.cov(z, y, ddof=1)
        matrix[i, j] = (cov[0, 1] ** 2 / (cov[0, 0] * cov[1, 1])
                        if cov[0, 0] > 1e-12 else 0.0)
      else:
        classifier = svm.LinearSVC(C=0.01, class_weight="balanced", dual=True,
                                   random_state=ESTIMATOR_SEED)
        with warnings.catch_warnings():
          warnings.simplefilter("ignore", ConvergenceWarning)
          classifier.fit(z[:, None], y)
        prediction = classifier.predict(codes_test[:, i][:, None])
        matrix[i, j] = np.mean(prediction == factors_test[:, j])
  return matrix


def sap_from_matrix(matrix: np.ndarray) -> float:
  """Mean over factors of best minus second-best latent (dlib)."""
  ranked = np.sort(matrix, axis=0)
  return float(np.mean(ranked[-1] - ranked[-2]))


def compute_sap(dataset: GroundTruthDataset,
                representation_fn: SeedRepresentationFn,
                random_state: np.random.RandomState, num_train: int = 10000,
                num_test: int = 5000, batch_size: int = 16,
                continuous_factors: bool = False) -> dict[str, Any]:
  """SAP (dlib's study: 10000 / 5000 points, discrete factors)."""
  codes_train, factors_train = generate_batch_factor_code(
      dataset, representation_fn, num_train, random_state, batch_size)
  codes_test, factors_test = generate_batch_factor_code(
      dataset, representation_fn, num_test, random_state, batch_size)
  matrix = sap_score_matrix(codes_train, factors_train, codes_test,
                            factors_test, continuous_factors)
  return {"sap": sap_from_matrix(matrix), "sap_matrix": matrix}


# --- Modularity and explicitness -------------------------------------------


def modularity(mutual_information: np.ndarray) -> float:
  """Ridgeway & Mozer's modularity of an MI matrix [d, F] (dlib): per latent
  1 - (sum MI^2 - max MI^2) / (max MI^2 (F - 1)), 0 for a latent without
  MI; the mean over latents."""
  squared = np.square(mutual_information)
  peak = np.max(squared, axis=1)
  with np.errstate(divide="ignore", invalid="ignore"):
    delta = (np.sum(squared, axis=1) - peak) / (peak * (squared.shape[1] - 1.0))
  score = 1.0 - delta
  score[peak == 0.0] = 0.0
  return float(np.mean(score))


def explicitness_per_factor(codes_train: np.ndarray, y_train: np.ndarray,
                            codes_test: np.ndarray, y_test: np.ndarray
                            ) -> tuple[float, float]:
  """ROC-AUC (macro over one-vs-rest class columns) of a
  `LogisticRegression()` predicting one factor from all codes.

  dlib binarises each set's labels on the classes present in that set and
  crashes when they differ from the classifier's; here the indicator columns
  are the classifier's classes, and a column without both positives and
  negatives (a class absent from the set) is left out of the mean.
  """
  model = LogisticRegression()
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    model.fit(codes_train, y_train)

  def auc(codes: np.ndarray, y: np.ndarray) -> float:
    indicator = (y[:, None] == model.classes_[None, :]).astype(np.int64)
    usable = (indicator.min(axis=0) == 0) & (indicator.max(axis=0) == 1)
    return float(roc_auc_score(indicator[:, usable],
                               model.predict_proba(codes)[:, usable]))

  return auc(codes_train, y_train), auc(codes_test, y_test)


def modularity_explicitness_from_codes(codes_train: np.ndarray,
                                       factors_train: np.ndarray,
                                       codes_test: np.ndarray,
                                       factors_test: np.ndarray,
                                       num_bins: int = 20) -> dict[str, Any]:
  """dlib's `compute_modularity_explicitness` after sampling.

  Codes are standardised with the training mean and std before the
  classifiers (dlib); a constant latent (std 0, where dlib divides by zero
  and sklearn then refuses the NaN codes) is only centred.  Keys are the
  disentax metric's (dlib: modularity_score, explicitness_score_train/test).
  """
  mi = discrete_mutual_info(histogram_discretize(codes_train, num_bins),
                            factors_train)
  mean, std = codes_train.mean(axis=0), codes_train.std(axis=0)
  std = np.where(std > 0, std, 1.0)
  train_norm = (codes_train - mean) / std
  test_norm = (codes_test - mean) / std
  aucs = np.array([explicitness_per_factor(train_norm, factors_train[:, k],
                                           test_norm, factors_test[:, k])
                   for k in range(factors_train.shape[1])])
  return {"modularity": modularity(mi),
          "explicitness_train": float(np.mean(aucs[:, 0])),
          "explicitness_test": float(np.mean(aucs[:, 1])),
          "modularity_mutual_info": mi}


def compute_modularity_explicitness(dataset: GroundTruthDataset,
                                    representation_fn: SeedRepresentationFn,
                                    random_state: np.random.RandomState,
                                    num_train: int = 10000,
                                    num_test: int = 5000,
                                    batch_size: int = 16,
                                    num_bins: int = 20) -> dict[str, Any]:
  """Modularity and explicitness (dlib: 10000 / 5000 points, batch 16, 20
  bins)."""
  codes_train, factors_train = generate_batch_factor_code(
      dataset, representation_fn, num_train, random_state, batch_size)
  codes_test, factors_test = generate_batch_factor_code(
      dataset, representation_fn, num_test, random_state, batch_size)
  return modularity_explicitness_from_codes(codes_train, factors_train,
                                            codes_test, factors_test,
                                            num_bins)


# --- IRS -------------------------------------------------------------------


def scalable_disentanglement_score(groups: np.ndarray, codes: np.ndarray,
                                   diff_quantile: float = 0.99
                                   ) -> dict[str, Any]:
  """IRS of codes [n, d] (active latents only) against discrete factor
  groups [n, F] (dlib's `scalable_disentanglement_score`): per factor the
  mean over its values of the `diff_quantile` quantile of |z - E[z | g]|,
  normalised by max |z - E z|; the best factor per latent, averaged with
  the max deviations as weights."""
  max_deviations = np.max(np.abs(codes - codes.mean(axis=0)), axis=0)
  deviations = np.zeros((codes.shape[1], groups.shape[1]))
  for k in range(groups.shape[1]):
    values = np.unique(groups[:, k])
    for value in values:
      match = groups[:, k] == value
      diffs = np.abs(codes[match] - codes[match].mean(axis=0))
      deviations[:, k] += np.quantile(diffs, q=diff_quantile, axis=0)
    deviations[:, k] /= values.size
  irs_matrix = 1.0 - deviations / max_deviations[:, None]
  per_latent = irs_matrix.max(axis=1)
  if np.sum(max_deviations) > 0.0:
    score = np.average(per_latent, weights=max_deviations)
  else:
    score = np.mean(per_latent)
  return {"irs": float(score), "irs_matrix": irs_matrix,
          "irs_per_latent": per_latent, "max_deviations": max_deviations}


def irs_from_codes(codes: np.ndarray, factors: np.ndarray,
                   diff_quantile: float = 0.99,
                   num_bins: int = 20) -> dict[str, Any]:
  """IRS of codes [n, d] against factors [n, F] (dlib's `compute_irs` after
  sampling): factors histogram-discretised, constant latents dropped, 0 when
  none is left."""
  groups = histogram_discretize(factors, num_bins)
  active = codes.var(axis=0) > 0.0
  if not active.any():
    return {"irs": 0.0, "irs_active_dims": 0}
  scores = scalable_disentanglement_score(groups, codes[:, active],
                                          diff_quantile)
  return {"irs": scores["irs"], "irs_active_dims": int(active.sum())}


def compute_irs(dataset: GroundTruthDataset,
                representation_fn: SeedRepresentationFn,
                random_state: np.random.RandomState,
                diff_quantile: float = 0.99, num_train: int = 10000,
                batch_size: int = 16, num_bins: int = 20) -> dict[str, Any]:
  """IRS (dlib's study: 10000 points, batch 16, quantile 0.99, 20 bins)."""
  codes, factors = generate_batch_factor_code(
      dataset, representation_fn, num_train, random_state, batch_size)
  return irs_from_codes(codes, factors, diff_quantile, num_bins)


# --- Unsupervised scores ---------------------------------------------------


def gaussian_total_correlation(cov: np.ndarray) -> float:
  """0.5 (sum log diag C - log det C) (dlib)."""
  with np.errstate(divide="ignore", invalid="ignore"):
    return float(0.5 * (np.sum(np.log(np.diag(cov)))
                        - np.linalg.slogdet(cov)[1]))


def gaussian_wasserstein_correlation(cov: np.ndarray) -> float:
  """2 tr C - 2 tr sqrtm(diag(C) C) (dlib; the real part of scipy's
  sqrtm, which may carry round-off imaginary parts)."""
  with warnings.catch_warnings():  # a singular C (duplicated latents)
    warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
    root = scipy.linalg.sqrtm(cov * np.diag(cov)[:, None])
  return float(np.real(2 * np.trace(cov) - 2 * np.trace(root)))


def unsupervised_from_codes(codes: np.ndarray,
                            num_bins: int = 20) -> dict[str, Any]:
  """dlib's `unsupervised_metrics` after sampling, codes [n, d]."""
  cov = np.atleast_2d(np.cov(codes.T))
  num_codes = cov.shape[0]
  wasserstein = gaussian_wasserstein_correlation(cov)
  discrete = histogram_discretize(codes, num_bins)
  mi = discrete_mutual_info(discrete, discrete)
  np.fill_diagonal(mi, 0.0)
  with np.errstate(divide="ignore", invalid="ignore"):
    return {
        "gaussian_total_correlation": gaussian_total_correlation(cov),
        "gaussian_wasserstein_correlation": wasserstein,
        "gaussian_wasserstein_correlation_norm": float(
            np.float64(wasserstein) / np.trace(cov)),
        "mutual_info_score": float(np.sum(mi) / (num_codes ** 2 - num_codes)),
    }


def compute_unsupervised(dataset: GroundTruthDataset,
                         representation_fn: SeedRepresentationFn,
                         random_state: np.random.RandomState,
                         num_train: int = 10000, batch_size: int = 16,
                         num_bins: int = 20) -> dict[str, Any]:
  """Unsupervised scores (dlib: 10000 points, batch 16, 20 bins)."""
  codes, _ = generate_batch_factor_code(
      dataset, representation_fn, num_train, random_state, batch_size)
  return unsupervised_from_codes(codes, num_bins)


# --- the seed-by-seed loop -------------------------------------------------

# Reference metric name (the disentax metric's name where one exists) ->
# function(dataset, representation_fn, random_state, **options).
REFERENCE_METRICS: dict[str, Callable[..., dict[str, Any]]] = {
    "mig": compute_mig,
    "beta_vae_score": compute_beta_vae,
    "factor_vae_score": compute_factor_vae,
    "dci": compute_dci,
    "sap": compute_sap,
    "modularity_explicitness": compute_modularity_explicitness,
    "irs": compute_irs,
    "unsupervised": compute_unsupervised,
}

# Metrics whose `batch_size` is dlib's encoding batch (16), not part of the
# metric's definition (BetaVAE / FactorVAE's 64).
ENCODING_BATCH_METRICS = ("mig", "dci", "sap", "modularity_explicitness",
                          "irs", "unsupervised")

# dlib's sizes (its unsupervised study's gin configs), and reduced sizes for
# quick comparisons; option names are the reference functions'.
BATTERY_SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "dlib": {
        "mig": {"num_train": 10000},
        "beta_vae_score": {"batch_size": 64, "num_train": 10000,
                           "num_eval": 5000},
        "factor_vae_score": {"batch_size": 64, "num_train": 10000,
                             "num_eval": 5000,
                             "num_variance_estimate": 10000},
        "dci": {"num_train": 10000, "num_test": 5000},
        "sap": {"num_train": 10000, "num_test": 5000},
        "modularity_explicitness": {"num_train": 10000, "num_test": 5000},
        "irs": {"num_train": 10000},
        "unsupervised": {"num_train": 10000},
    },
    "small": {
        "mig": {"num_train": 2000},
        "beta_vae_score": {"batch_size": 64, "num_train": 500,
                           "num_eval": 250},
        "factor_vae_score": {"batch_size": 64, "num_train": 500,
                             "num_eval": 250, "num_variance_estimate": 2000},
        "dci": {"num_train": 1000, "num_test": 500},
        "sap": {"num_train": 1000, "num_test": 500},
        "modularity_explicitness": {"num_train": 1000, "num_test": 500},
        "irs": {"num_train": 2000},
        "unsupervised": {"num_train": 2000},
    },
}


def score_seed_by_seed(dataset: GroundTruthDataset,
                       representation_fns: Sequence[SeedRepresentationFn],
                       rng_seed: int,
                       metrics: Mapping[str, Mapping[str, Any] | None]
                       ) -> tuple[list[dict[str, Any]], dict[str, float]]:
  """Scores every seed with every metric, one after the other, as one dlib
  evaluation process per seed and metric would.

  Args:
    dataset: the ground-truth dataset (factors are sampled with numpy).
    representation_fns: one function per seed, observations [b, ...] ->
      codes [b, d] (numpy or anything `np.asarray` takes).
    rng_seed: every (seed, metric) evaluation starts from
      `np.random.RandomState(rng_seed)` (dlib's `evaluation.random_seed`),
      so all seeds are scored on the same points.
    metrics: {reference metric name: options} (see `REFERENCE_METRICS`).

  Returns:
    (per-seed {score name: value}, {metric name: seconds summed over
    seeds}).
  """
  unknown = sorted(set(metrics) - set(REFERENCE_METRICS))
  if unknown:
    raise ValueError(f"unknown reference metric(s) {unknown}; known: "
                     f"{sorted(REFERENCE_METRICS)}")
  seconds = {name: 0.0 for name in metrics}
  per_seed = []
  for representation_fn in representation_fns:
    scores: dict[str, Any] = {}
    for name, options in metrics.items():
      start = time.perf_counter()
      scores.update(REFERENCE_METRICS[name](
          dataset, representation_fn, np.random.RandomState(rng_seed),
          **dict(options or {})))
      seconds[name] += time.perf_counter() - start
    per_seed.append(scores)
  return per_seed, seconds
