"""Correlated sampling: train on a biased joint of factors, score on the grid.

Chen et al. 2018 (beta-TCVAE, section 6.1 "Correlated or Dependent Factors",
Fig. 5) ask whether a model still finds the factors of variation when the
generative process samples them non-uniformly and dependently. They keep two
factors of 3D Faces (the pose: azimuth and elevation), fix all others, and
train on four joint distributions (Fig. 5a):

  A  uniform and independent factors;
  B  non-uniform marginals, but uncorrelated and independent;
  C  uncorrelated but dependent;
  D  correlated and dependent;

where "all samples have non-zero probability in all joint distributions; the
most likely sample is 4 times as likely as the least likely sample" (Fig. 5
caption). The text gives no formula for the four joints, so ours are the
simplest ones with exactly these properties. With u and v the two factor
indices mapped linearly onto [-1, 1] (first value -1, last +1):

  A  p(u, v) = const;
  B  p(u, v) ~ (1 + b u)(1 + b v): a product of two ramp marginals;
  C  p(u, v) ~ 1 + c g(u) g(v), g(u) = |u| - mean_u |u|: uniform marginals
     (g sums to 0) and zero covariance (u g(u) is odd, so it sums to 0), yet
     dependent (corners and centre are favoured over the edge midpoints);
  D  p(u, v) ~ 1 + d u v: uniform marginals, positive correlation.

`strength` s in [0, 1] sets the bias: b, c and d are chosen so that the most
likely cell is 4**s times as likely as the least likely one. s = 1 is the
paper's 4 and s = 0 is uniform; A is uniform at every strength.

`configuration = 'custom'` correlates any number of named factors through a
discretised Gaussian copula instead: z_k = sqrt(s) w + sqrt(1 - s) e_k with
w, e_k independent standard normals (so corr(z_j, z_k) = s), and factor k
takes index floor(Phi(z_k) * size_k). Marginals stay exactly uniform; s = 0
is uniform and independent, s = 1 makes the factors comonotone (all equal
quantiles).

Only *training* sees the biased joint: `sample_factors` (what training and
`sample` draw from) is overridden, while `sample_uniform_factors` is the
base dataset's uniform sampler, which `disentax.metrics.sampling` uses so that
every metric still scores on the uniform grid, as a disentanglement score
should. Factors that are not correlated keep the base's (uniform) sampling.
Everything else (factor names and sizes, observations, indexing) is the base
dataset's.

Config: `[dataset] name = "correlated"`, options `base` (the wrapped
dataset's config section), `configuration`, `strength` and `factors` (see
`correlated` at the bottom of this module).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np
from scipy import special  # a dependency of scikit-learn

from disentax.data import DATASETS
from disentax.data.base import GroundTruthDataset

PAPER_CONFIGURATIONS = ("A", "B", "C", "D")
CONFIGURATIONS = PAPER_CONFIGURATIONS + ("custom",)
# Fig. 5 caption: the most likely sample is 4 times as likely as the least.
PAPER_MAX_RATIO = 4.0
# Factor pairs A-D correlate when `factors` is empty, first present wins: the
# paper's pose of 3D Faces, else the position of dSprites / the triangle.
DEFAULT_PAIRS = (("azimuth", "elevation"), ("posX", "posY"),
                 ("pos_x", "pos_y"))
# Points per cell of the first factor when integrating the copula's joint.
_QUADRATURE_POINTS = 4_000


# ------------------------------------------------------- the joint of a pair

def _centred(size: int) -> np.ndarray:
  """Indices 0 .. size-1 mapped linearly onto [-1, 1], float64 [size]."""
  return np.linspace(-1.0, 1.0, size)


def _bias_ratio(strength: float) -> float:
  """Most / least likely cell at this strength: 4**strength (1 = uniform)."""
  return PAPER_MAX_RATIO ** strength


def _interaction_pmf(h_a: np.ndarray, h_b: np.ndarray,
                     ratio: float) -> np.ndarray:
  """p ~ 1 + k h_a h_b with k >= 0 such that max p / min p = `ratio`."""
  outer = np.outer(h_a, h_b)
  k = (ratio - 1.0) / (outer.max() - ratio * outer.min())
  return 1.0 + k * outer


def configuration_pmf(configuration: str, strength: float, size_a: int,
                      size_b: int) -> np.ndarray:
  """The joint p(i, j) of two factors under the paper's configuration A, B,
  C or D (see the module docstring), float64 [size_a, size_b] summing to 1."""
  ratio = _bias_ratio(strength)
  u, v = _centred(size_a), _centred(size_b)
  if configuration == "A":
    pmf = np.ones((size_a, size_b))
  elif configuration == "B":
    # Each ramp marginal spans sqrt(ratio), so the product spans ratio.
    slope = (math.sqrt(ratio) - 1.0) / (math.sqrt(ratio) + 1.0)
    pmf = np.outer(1.0 + slope * u, 1.0 + slope * v)
  elif configuration == "C":
    pmf = _interaction_pmf(np.abs(u) - np.abs(u).mean(),
                           np.abs(v) - np.abs(v).mean(), ratio)
  elif configuration == "D":
    pmf = _interaction_pmf(u, v, ratio)
  else:
    raise ValueError(f"configuration_pmf: configuration {configuration!r} is "
                     f"not one of the paper's {PAPER_CONFIGURATIONS}")
  return pmf / pmf.sum()


def copula_pmf(strength: float, size_a: int, size_b: int) -> np.ndarray:
  """The joint p(i, j) of two factors under the 'custom' Gaussian copula with
  latent correlation `strength`, float64 [size_a, size_b] summing to 1.

  Integrates P(j | z_a) = Phi((c_{j+1} - s z_a) / sqrt(1 - s^2)) -
  Phi((c_j - s z_a) / sqrt(1 - s^2)), c_j = Phi^-1(j / size_b), over the
  quantiles of z_a in each cell i (midpoint rule); accurate to ~1e-4, far
  below the sampling error of any test.
  """
  points = _QUADRATURE_POINTS * size_a
  quantiles = (np.arange(points) + 0.5) / points
  z_a = special.ndtri(quantiles)
  edges = special.ndtri(np.arange(1, size_b) / size_b)
  spread = math.sqrt(max(1.0 - strength ** 2, 0.0))
  if spread < 1e-6:  # comonotone: z_b = z_a
    below = (z_a[:, None] >= edges[None, :]).astype(np.float64)
  else:  # z_b | z_a ~ N(s z_a, 1 - s^2)
    below = special.ndtr((strength * z_a[:, None] - edges[None, :]) / spread)
  # below[m, j] = P(z_b >= c_{j+1} | z_a); pad with P(z_b >= c_0) = 1 and
  # P(z_b >= c_size) = 0 and difference into the cell probabilities.
  tail = np.concatenate([np.ones((points, 1)), below,
                         np.zeros((points, 1))], axis=1)
  conditional = tail[:, :-1] - tail[:, 1:]           # [points, size_b]
  rows = np.minimum((quantiles * size_a).astype(int), size_a - 1)
  pmf = np.zeros((size_a, size_b))
  np.add.at(pmf, rows, conditional)
  return pmf / pmf.sum()


def pmf_correlation(pmf: np.ndarray) -> float:
  """Pearson correlation of the two indices (i, j) under a joint pmf
  [size_a, size_b] (0 when either marginal is degenerate)."""
  pmf = np.asarray(pmf, np.float64)
  i = np.arange(pmf.shape[0], dtype=np.float64)
  j = np.arange(pmf.shape[1], dtype=np.float64)
  p_i, p_j = pmf.sum(axis=1), pmf.sum(axis=0)
  mean_i, mean_j = p_i @ i, p_j @ j
  var_i, var_j = p_i @ (i - mean_i) ** 2, p_j @ (j - mean_j) ** 2
  if var_i <= 0 or var_j <= 0:
    return 0.0
  cov = (i - mean_i) @ pmf @ (j - mean_j)
  return float(cov / math.sqrt(var_i * var_j))


# -------------------------------------------------------------- the dataset

def _free_factors(base: GroundTruthDataset) -> tuple[bool, ...]:
  """Whether each factor of `base` can be set independently of the others.

  A factor derived from others (the triangle's orientation, a label of its
  position) is recomputed by the index round trip
  `factors_from_index(index_from_factors(.))`; setting every value on a few
  grid rows and checking the round trip keeps it tells the two apart.
  """
  rows = np.asarray(base.factors_from_index(
      jnp.arange(min(base.num_points, 16))))
  # Every value of every factor on every row, in one round trip.
  blocks = []
  for k, size in enumerate(base.factor_sizes):
    block = np.repeat(rows, size, axis=0)
    block[:, k] = np.tile(np.arange(size), len(rows))
    blocks.append(block)
  varied = np.concatenate(blocks)
  back = np.asarray(base.factors_from_index(
      base.index_from_factors(jnp.asarray(varied))))
  free, start = [], 0
  for k, block in enumerate(blocks):
    end = start + len(block)
    free.append(bool(np.array_equal(back[start:end, k], block[:, k])))
    start = end
  return tuple(free)


def _check_strength(strength: Any) -> float:
  if (isinstance(strength, bool) or not isinstance(strength, (int, float))
      or not 0.0 <= strength <= 1.0):
    raise ValueError(f"correlated strength must be a number in [0, 1] "
                     f"(0 = uniform), got {strength!r}")
  return float(strength)


class CorrelatedDataset(GroundTruthDataset):
  """`base` with training factors drawn from a biased joint (configuration
  A-D of the beta-TCVAE paper, or a Gaussian copula) and evaluation factors
  from the uniform grid; see the module docstring."""

  def __init__(self, base: GroundTruthDataset, configuration: str = "D",
               strength: float = 1.0, factors: Sequence[str] = ()):
    if configuration not in CONFIGURATIONS:
      raise ValueError(f"correlated configuration {configuration!r} is "
                       f"unknown; allowed: {', '.join(CONFIGURATIONS)}")
    self.base = base
    self.configuration = configuration
    self.strength = _check_strength(strength)
    if isinstance(factors, str):
      raise ValueError(f"correlated factors must be a list of factor names, "
                       f"got the string {factors!r}")
    self.factors = self._check_factors(tuple(factors or ()))
    self.factor_indices = tuple(base.factor_names.index(f)
                                for f in self.factors)
    self.name = (f"correlated_{configuration}_s{self.strength:g}_"
                 f"{base.name}")
    sizes = [base.factor_sizes[k] for k in self.factor_indices]
    if configuration in PAPER_CONFIGURATIONS:
      self.pair_pmf = configuration_pmf(configuration, self.strength, *sizes)
      self._cdf = jnp.asarray(np.cumsum(self.pair_pmf.ravel()), jnp.float32)

  def _check_factors(self, factors: tuple[str, ...]) -> tuple[str, ...]:
    """The factors to correlate: known, distinct, free, enough values."""
    names = self.base.factor_names
    if not factors:
      if self.configuration == "custom":
        raise ValueError(f"correlated configuration 'custom' needs `factors`: "
                         f"two or more of {', '.join(names)}")
      pairs = [p for p in DEFAULT_PAIRS if set(p) <= set(names)]
      if not pairs:
        raise ValueError(
            f"correlated: {self.base.name} has none of the default factor "
            f"pairs {DEFAULT_PAIRS}; set `factors` to two of "
            f"{', '.join(names)}")
      factors = pairs[0]
    for name in factors:
      if name not in names:
        raise ValueError(f"correlated factors: {name!r} is not a factor of "
                         f"{self.base.name}; allowed: {', '.join(names)}")
    if len(set(factors)) != len(factors):
      raise ValueError(f"correlated factors {list(factors)} name a factor "
                       f"twice")
    if self.configuration == "custom" and len(factors) < 2:
      raise ValueError(f"correlated configuration 'custom' needs two or more "
                       f"factors, got {list(factors)}")
    if self.configuration != "custom" and len(factors) != 2:
      raise ValueError(f"correlated configuration {self.configuration!r} "
                       f"(beta-TCVAE Fig. 5) correlates exactly two factors, "
                       f"got {list(factors)}")
    minimum = 3 if self.configuration == "C" else 2
    free = _free_factors(self.base)
    for name in factors:
      k = names.index(name)
      if not free[k]:
        raise ValueError(
            f"correlated factors: {name!r} of {self.base.name} is derived "
            f"from the other factors, so it cannot be sampled; allowed: "
            f"{', '.join(n for n, f in zip(names, free) if f)}")
      if self.base.factor_sizes[k] < minimum:
        raise ValueError(
            f"correlated factors: {name!r} has {self.base.factor_sizes[k]} "
            f"value(s); configuration {self.configuration!r} needs at least "
            f"{minimum}")
    return factors

  # Everything but the training sampler is the base dataset's.
  @property
  def factor_names(self) -> tuple[str, ...]:
    return self.base.factor_names

  @property
  def factor_sizes(self) -> tuple[int, ...]:
    return self.base.factor_sizes

  @property
  def observation_shape(self) -> tuple[int, int, int]:
    return self.base.observation_shape

  @property
  def labelled(self) -> bool:
    return self.base.labelled

  @property
  def procedural(self) -> bool:
    return self.base.procedural

  @property
  def num_points(self) -> int:
    return self.base.num_points

  def __getattr__(self, name: str) -> Any:
    """Any other attribute of the base (e.g. `factor_values`)."""
    if name.startswith("__") or name == "base":
      raise AttributeError(name)
    return getattr(self.base, name)

  def observations_from_factors(self, factors: jax.Array) -> jax.Array:
    return self.base.observations_from_factors(factors)

  def index_from_factors(self, factors: jax.Array) -> jax.Array:
    return self.base.index_from_factors(factors)

  def factors_from_index(self, index: jax.Array) -> jax.Array:
    return self.base.factors_from_index(index)

  def sample_uniform_factors(self, rng: jax.Array, num: int) -> jax.Array:
    """The base's uniform grid sampler: what evaluation draws from."""
    return self.base.sample_factors(rng, num)

  def sample_factors(self, rng: jax.Array, num: int) -> jax.Array:
    """Training factors, int32 [num, num_factors]: the correlated factors
    from the configured joint, the others from the base's sampler. Rows go
    through the index round trip so factors derived from the sampled ones
    (e.g. the triangle's orientation) stay consistent. Pure JAX."""
    base_key, joint_key = jax.random.split(rng)
    factors = self.base.sample_factors(base_key, num)
    chex.assert_shape(factors, (num, self.num_factors))
    columns = self.sample_joint(joint_key, num)
    factors = factors.at[:, jnp.asarray(self.factor_indices)].set(columns)
    factors = self.base.factors_from_index(
        self.base.index_from_factors(factors)).astype(jnp.int32)
    chex.assert_shape(factors, (num, self.num_factors))
    return factors

  def sample_joint(self, rng: jax.Array, num: int) -> jax.Array:
    """Only the correlated factors (in `self.factors` order), int32
    [num, len(factors)], drawn from the configured joint."""
    sizes = jnp.asarray([self.base.factor_sizes[k]
                         for k in self.factor_indices], jnp.int32)
    if self.configuration in PAPER_CONFIGURATIONS:
      # Inverse CDF over the flattened cells: O(num log cells), where a
      # Gumbel argmax would cost num x cells.
      uniform = jax.random.uniform(rng, (num,))
      cells = jnp.searchsorted(self._cdf, uniform, side="right")
      cells = jnp.minimum(cells, self._cdf.shape[0] - 1)
      columns = jnp.stack([cells // sizes[1], cells % sizes[1]], axis=1)
    else:
      shared_key, own_key = jax.random.split(rng)
      shared = jax.random.normal(shared_key, (num, 1))
      own = jax.random.normal(own_key, (num, len(self.factors)))
      latent = (math.sqrt(self.strength) * shared
                + math.sqrt(1.0 - self.strength) * own)
      quantile = jax.scipy.special.ndtr(latent)
      columns = jnp.clip(jnp.floor(quantile * sizes), 0, sizes - 1)
    columns = columns.astype(jnp.int32)
    chex.assert_shape(columns, (num, len(self.factors)))
    return columns

  def joint_pmf(self, first: str, second: str) -> np.ndarray:
    """The training joint p(i, j) of two correlated factors, float64
    [size_first, size_second] (host side; for tests and plots)."""
    for name in (first, second):
      if name not in self.factors:
        raise ValueError(f"joint_pmf: {name!r} is not a correlated factor; "
                         f"correlated: {', '.join(self.factors)}")
    sizes = tuple(self.base.factor_sizes[self.base.factor_names.index(n)]
                  for n in (first, second))
    if self.configuration == "custom":
      return copula_pmf(self.strength, *sizes)
    return (self.pair_pmf if (first, second) == self.factors
            else self.pair_pmf.T)

  def implied_correlation(self, first: str, second: str) -> float:
    """Pearson correlation of the two factors' indices under the training
    joint (what a large sample of `sample_factors` measures)."""
    return pmf_correlation(self.joint_pmf(first, second))


# ----------------------------------------------------------------- builder

@DATASETS.register("correlated")
def correlated(base: Mapping[str, Any] | None = None,
               configuration: str = "D", strength: float = 1.0,
               factors: Sequence[str] = ()) -> GroundTruthDataset:
  """`base` (a dataset config section, default `{name: 'dsprites'}`) trained
  on a correlated joint: `configuration` 'A', 'B', 'C' or 'D' (beta-TCVAE
  Fig. 5; two factors, default the pose / position pair) or 'custom' (a
  Gaussian copula over two or more `factors`); `strength` in [0, 1] (0 =
  uniform; 1 = the paper's 4:1 bias for A-D, comonotone for 'custom')."""
  section = dict(base) if base is not None else {"name": "dsprites"}
  return CorrelatedDataset(
      DATASETS.build(section, where="config.dataset.base"), configuration,
      strength, factors if factors is not None else ())
