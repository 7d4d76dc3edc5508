"""L2-regularised logistic regression in JAX with scikit-learn's defaults.

The BetaVAE score and the explicitness score of disentanglement_lib train a
`sklearn.linear_model.LogisticRegression()` with default settings.  This
module solves the same optimisation problem in JAX, so a whole sweep of
members is fitted in one vmapped, jitted call instead of a host loop over
seeds:

  minimise  C * sum_i -log p(y_i | x_i) + 0.5 * ||W||^2      (C = 1.0)

with an unpenalised intercept, softmax probabilities over the classes
(multinomial loss) when 3 or more classes are present in the training labels,
and the binomial loss of a single weight vector when exactly 2 are (sklearn
uses the binomial loss for binary problems, which is *not* the 2-class
multinomial loss: that one would penalise the weight difference only half as
much).  The problem is strictly convex in everything predictions depend on,
so its optimum is unique and any solver run to convergence agrees with
sklearn's (its own lbfgs stops at `max_iter=100` / `tol=1e-4`, so it can be
slightly off the optimum on ill-conditioned data; this one is not).

Solver: damped Newton with an exact Hessian and an Armijo backtracking line
search, in `lax.while_loop`s with fixed iteration caps, so `fit` is pure,
jittable and vmappable over members (or factors).  Matmuls use HIGHEST
precision, so GPUs do not silently drop to TF32.

Classes are the integers [0, num_classes).  A class absent from the training
labels (an "unseen" class) has no finite maximum-likelihood intercept (it
would run to -inf), so it is left out of the model exactly as sklearn would
never know of it: its parameters are 0, its logit is -inf, it is predicted
with probability 0 and never predicted.  The fit over the remaining classes
is sklearn's fit on the training set (multinomial with >= 3 seen classes,
binomial with 2; with 1 seen class, which sklearn refuses, that class gets
probability 1 everywhere).

Sample weights (sklearn's `sample_weight`) scale each point's term of the
data loss.  Points of weight 0 are left out of the fit but still name their
class as *known*: whether the problem is binary (binomial) or multinomial is
decided by the known classes, as `LogisticRegressionCV` decides it from the
whole training set for every cross-validation fold (a fold that sees 2 of 3
classes fits the 3-class multinomial model, whose third class is absent).
A fold is thus a weight vector, and every fold compiles to one program.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

_HIGHEST = jax.lax.Precision.HIGHEST


class LogisticParams(NamedTuple):
  """A fitted model over classes [0, num_classes).

  Attributes:
    weights: [num_classes, k]; rows of unseen classes are 0.  In the binary
      case the lower seen class has weights 0 and intercept 0, so
      `weights[hi] - weights[lo]` is sklearn's `coef_[0]`.
    intercept: [num_classes]; in the multinomial case the seen classes'
      intercepts sum to 0 (as sklearn's, which starts at 0 and whose
      gradient keeps that sum), since only their differences matter.
    seen: bool [num_classes], the classes of the training points of positive
      weight (all of them without sample weights).
  """

  weights: jax.Array
  intercept: jax.Array
  seen: jax.Array


def _with_bias(features: jax.Array) -> jax.Array:
  """Features [n, k] with a trailing column of ones: [n, k + 1]."""
  return jnp.concatenate(
      [features, jnp.ones((features.shape[0], 1), features.dtype)], axis=1)


def _masked_logits(theta: jax.Array, x: jax.Array,
                   seen: jax.Array) -> jax.Array:
  """Logits [n, c] of parameters theta [c, k + 1]; -inf for unseen classes."""
  logits = jnp.matmul(x, theta.T, precision=_HIGHEST)
  return jnp.where(seen[None, :], logits, -jnp.inf)


def _log_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-sample -log softmax(logits)[label], [n] (labels must be seen)."""
  picked = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
  return jax.nn.logsumexp(logits, axis=1) - picked


@functools.partial(jax.jit, static_argnames=("num_classes", "max_iter",
                                             "max_backtracks"))
def fit(features: jax.Array, labels: jax.Array, num_classes: int,
        C: float = 1.0, max_iter: int = 100, tol: float = 1e-10,
        max_backtracks: int = 40,
        sample_weight: jax.Array | None = None) -> LogisticParams:
  """Fits sklearn's default `LogisticRegression` (C=1, L2) by Newton's method.

  Args:
    features: float [n, k].
    labels: int [n] in [0, num_classes).
    num_classes: static number of classes (e.g. a factor's size); classes
      missing from `labels` are handled as described in the module docstring.
    C: inverse regularisation strength (sklearn's `C`).
    max_iter: cap on Newton iterations (it usually converges in 5-30; the
      loop stops early once the Newton decrement is below `tol` relative to
      the objective).
    tol: relative Newton-decrement tolerance.
    max_backtracks: cap on step halvings per line search.
    sample_weight: float [n] >= 0, each point's weight in the data loss
      (default 1); a class whose points all weigh 0 is unseen but known
      (module docstring).

  Returns:
    `LogisticParams`.  Vmappable over a leading axis of features and labels.
  """
  chex.assert_rank(features, 2)
  chex.assert_rank(labels, 1)
  chex.assert_equal_shape_prefix([features, labels], 1)
  if num_classes < 1:
    raise ValueError(f"num_classes must be >= 1, got {num_classes}")
  dtype = jnp.result_type(features.dtype, jnp.float32)
  x = _with_bias(features.astype(dtype))  # [n, k1]
  n, k1 = x.shape
  labels = labels.astype(jnp.int32)
  one_hot = jax.nn.one_hot(labels, num_classes, dtype=dtype)  # [n, c]
  weight = (jnp.ones((n,), dtype) if sample_weight is None
            else jnp.asarray(sample_weight, dtype))
  chex.assert_shape(weight, (n,))
  known = jnp.sum(one_hot, axis=0) > 0
  seen = jnp.sum(one_hot * weight[:, None], axis=0) > 0
  # Binary: the lowest seen class is the reference (its row pinned to 0),
  # which turns the 2-class softmax into sklearn's binomial model.
  binary = jnp.sum(known) == 2
  lowest_seen = jnp.argmax(seen)
  pinned = binary & (jnp.arange(num_classes) == lowest_seen)
  free = (seen & ~pinned).astype(dtype)  # [c] classes with free parameters
  # With no pinned class the softmax is invariant to shifting all seen
  # intercepts; 0.5 * (sum of free intercepts)^2 removes that flat direction
  # (it is 0 at the solution sklearn reaches) so the Hessian is invertible.
  shift = jnp.where(binary, 0.0, 1.0).astype(dtype)
  weight_mask = jnp.concatenate(
      [jnp.ones((k1 - 1,), dtype), jnp.zeros((1,), dtype)])  # no bias penalty
  bias_mask = 1.0 - weight_mask
  C = jnp.asarray(C, dtype)

  def objective(theta):
    logits = _masked_logits(theta, x, seen)
    # A point of an unseen class has an infinite loss and weight 0.
    data = C * jnp.sum(jnp.where(weight > 0,
                                 weight * _log_loss(logits, labels), 0.0))
    penalty = 0.5 * jnp.sum(jnp.square(theta * weight_mask))
    flat = 0.5 * shift * jnp.square(jnp.sum(theta[:, -1] * free))
    return data + penalty + flat

  def gradient_and_hessian(theta):
    logits = _masked_logits(theta, x, seen)
    p = jax.nn.softmax(logits, axis=1)  # [n, c], 0 for unseen
    residual = (p - one_hot) * weight[:, None]
    grad = C * jnp.matmul(residual.T, x, precision=_HIGHEST)  # [c, k1]
    grad = grad + theta * weight_mask
    grad = grad + shift * jnp.sum(theta[:, -1] * free) * free[:, None] * (
        bias_mask[None, :])
    grad = grad * free[:, None]
    # Hessian of the data term:
    # sum_i w_i (diag(p_i) - p_i p_i^T) (x) x_i x_i^T.
    px = (p[:, :, None] * x[:, None, :]).reshape(n, num_classes * k1)
    weighted_px = px * weight[:, None]
    diag_blocks = jnp.matmul(
        weighted_px.reshape(n, num_classes, k1).transpose(1, 2, 0), x,
        precision=_HIGHEST)  # [c, k1, k1]
    size = num_classes * k1
    eye_c = jnp.eye(num_classes, dtype=dtype)
    block = (diag_blocks[:, :, None, :] * eye_c[:, None, :, None]).reshape(
        size, size)
    outer = jnp.matmul(weighted_px.T, px, precision=_HIGHEST)
    hess = C * (block - outer)
    coord_free = (free[:, None] * jnp.ones((1, k1), dtype)).reshape(size)
    penalty = (jnp.ones((num_classes, 1), dtype) * weight_mask[None, :]
               ).reshape(size)
    bias_coord = (free[:, None] * bias_mask[None, :]).reshape(size)
    hess = hess + jnp.diag(penalty) + shift * jnp.outer(bias_coord,
                                                        bias_coord)
    # Fixed coordinates: identity rows/columns, so their Newton step is 0.
    hess = hess * coord_free[:, None] * coord_free[None, :] + jnp.diag(
        1.0 - coord_free)
    return grad, hess

  def newton_direction(theta):
    grad, hess = gradient_and_hessian(theta)
    size = num_classes * k1
    factor = jax.scipy.linalg.cho_factor(hess, lower=True)
    step = -jax.scipy.linalg.cho_solve(factor, grad.reshape(size))
    step = jnp.where(jnp.all(jnp.isfinite(step)), step, -grad.reshape(size))
    return grad, step.reshape(num_classes, k1)

  def line_search(theta, value, grad, direction):
    slope = jnp.sum(grad * direction)  # < 0 for a descent direction
    # Objective values carry float rounding of ~1e-6 relative; a step within
    # that noise is accepted, so the last (quadratically convergent) Newton
    # steps are not rejected for differences rounding cannot resolve.
    noise = 1e-6 * (1.0 + jnp.abs(value))

    def cond(state):
      t, new_value, tries = state
      accepted = (new_value <= value + 1e-4 * t * slope) | (
          new_value <= value + noise)
      return ~accepted & (tries < max_backtracks)

    def body(state):
      t, _, tries = state
      t = 0.5 * t
      return t, objective(theta + t * direction), tries + 1

    t0 = jnp.asarray(1.0, dtype)
    t, new_value, tries = jax.lax.while_loop(
        cond, body, (t0, objective(theta + direction), 0))
    ok = jnp.isfinite(new_value) & (tries < max_backtracks)
    return jnp.where(ok, t, 0.0), jnp.where(ok, new_value, value)

  def cond(state):
    _, _, it, done = state
    return (it < max_iter) & ~done

  def body(state):
    theta, value, it, _ = state
    grad, direction = newton_direction(theta)
    decrement = -jnp.sum(grad * direction)  # Newton decrement squared
    t, new_value = line_search(theta, value, grad, direction)
    theta = theta + t * direction
    done = (decrement <= tol * (1.0 + jnp.abs(value))) | (t == 0) | ~(
        jnp.isfinite(decrement))
    return theta, new_value, it + 1, done

  theta0 = jnp.zeros((num_classes, k1), dtype)
  theta, _, _, _ = jax.lax.while_loop(
      cond, body, (theta0, objective(theta0), 0, jnp.asarray(False)))
  theta = theta * free[:, None]
  intercept = theta[:, -1]
  # Exactly zero-sum seen intercepts in the multinomial case (the flat
  # direction of the softmax), as sklearn's.
  centre = jnp.sum(intercept * free) / jnp.maximum(jnp.sum(free), 1.0)
  intercept = jnp.where(binary, intercept, (intercept - centre) * free)
  return LogisticParams(weights=theta[:, :-1], intercept=intercept,
                        seen=seen)


def decision_function(params: LogisticParams,
                      features: jax.Array) -> jax.Array:
  """Logits [n, num_classes] of features [n, k]; -inf for unseen classes."""
  chex.assert_rank(features, 2)
  chex.assert_axis_dimension(features, 1, params.weights.shape[1])
  logits = jnp.matmul(features.astype(params.weights.dtype),
                      params.weights.T, precision=_HIGHEST) + params.intercept
  return jnp.where(params.seen[None, :], logits, -jnp.inf)


def predict_proba(params: LogisticParams, features: jax.Array) -> jax.Array:
  """Class probabilities [n, num_classes] (0 for unseen classes)."""
  return jax.nn.softmax(decision_function(params, features), axis=1)


def predict(params: LogisticParams, features: jax.Array) -> jax.Array:
  """Most probable class, int32 [n] (ties -> lowest class, as np.argmax)."""
  return jnp.argmax(decision_function(params, features), axis=1).astype(
      jnp.int32)


def accuracy(params: LogisticParams, features: jax.Array,
             labels: jax.Array) -> jax.Array:
  """Fraction of `labels` [n] predicted correctly (sklearn's `score`)."""
  chex.assert_rank(labels, 1)
  return jnp.mean(predict(params, features) == labels)
