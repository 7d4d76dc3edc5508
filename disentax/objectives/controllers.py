"""PI controllers of the KL weight beta, shared by ControlVAE and DynamicVAE.

Both methods train recon + beta(t) * KL, where beta(t) is set by a PI
controller that drives the batch KL towards a rising set-point C(t).  The
controller is per-member state: with 50 seeds x a C_max grid there are that
many independent controllers, each the objective's `aux` (see
objectives/base.py), vmapped, checkpointed and resumed with the parameters.

Timing follows the references (Shao et al.'s ControlVAE and DynamicVAE
code): at step t the controller reads the KL of this step's batch (a
gradient-stopped copy), outputs beta(t), and the loss uses that beta(t).  So
`loss` advances the controller to get beta(t) and the aux update stores the
very same advance (a pure function of the same aux, output and step); the state in
the train state after step t is the controller after seeing KL(t).

Both controllers store their *unclamped* output W(t) and return
beta(t) = max(W(t), beta_min), as the references do; their anti-windup tests
the previous unclamped output W(t-1) < beta_min.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import flax.struct
import jax
import jax.numpy as jnp

from disentax.models import VAEOutput
from disentax.objectives.base import (AuxState, Objective, check_finite,
                                      check_steps, gaussian_kl,
                                      hyperparameter_grid,
                                      reconstruction_loss)

Metrics = dict[str, jax.Array]


def error_sigmoid(error: jax.Array) -> jax.Array:
  """s(e) = 1 / (1 + exp(e)): the references' nonlinear P term."""
  return jax.nn.sigmoid(-error)


def batch_kl(output: VAEOutput) -> jax.Array:
  """Batch mean of the KL summed over latents (the references' total_kld)."""
  return gaussian_kl(output.mean, output.logvar).sum(axis=1).mean()


# --------------------------------------------------------------------------
# Positional PI (ControlVAE).


@flax.struct.dataclass
class PositionalPIState:
  integral: jax.Array  # I(t-1)
  output: jax.Array    # W(t-1) = beta_min + P(t-1) + I(t-1), unclamped
  beta: jax.Array      # beta(t-1) = max(W(t-1), beta_min)


def positional_pi_init(beta_min: float) -> PositionalPIState:
  """I = 0 and W = beta_min (the reference's W_k1 = 1), so the integral is
  live on the first step."""
  zero = jnp.zeros((), jnp.float32)
  return PositionalPIState(integral=zero, output=zero + beta_min,
                           beta=zero + beta_min)


def positional_pi_step(state: PositionalPIState, error: jax.Array, *,
                       kp: float, ki: float, beta_min: float
                       ) -> PositionalPIState:
  """P = kp s(e); I += ki e unless W(t-1) < beta_min (anti-windup: frozen);
  W = beta_min + P + I; beta = max(W, beta_min)."""
  error = jnp.asarray(error, jnp.float32)
  proportional = kp * error_sigmoid(error)
  integral = jnp.where(state.output < beta_min, state.integral,
                       state.integral + ki * error)
  output = beta_min + proportional + integral
  return PositionalPIState(integral=integral, output=output,
                           beta=jnp.maximum(output, beta_min))


# --------------------------------------------------------------------------
# Incremental PI (DynamicVAE).


@flax.struct.dataclass
class IncrementalPIState:
  output: jax.Array    # W(t-1), unclamped (W(-1) = beta_init)
  error: jax.Array     # e(t-1) (e(-1) = 0)
  beta: jax.Array      # beta(t-1) = max(W(t-1), beta_min)


def incremental_pi_init(beta_init: float, beta_min: float
                        ) -> IncrementalPIState:
  zero = jnp.zeros((), jnp.float32)
  return IncrementalPIState(output=zero + beta_init, error=zero,
                            beta=jnp.maximum(zero + beta_init, beta_min))


def incremental_pi_step(state: IncrementalPIState, error: jax.Array, *,
                        kp: float, ki: float, beta_min: float
                        ) -> IncrementalPIState:
  """dP = kp (s(e) - s(e(t-1))); dI = ki e, or 0 while W(t-1) < beta_min;
  W = W(t-1) + dP + dI; beta = max(W, beta_min)."""
  error = jnp.asarray(error, jnp.float32)
  d_proportional = kp * (error_sigmoid(error) - error_sigmoid(state.error))
  d_integral = jnp.where(state.output < beta_min, 0.0, ki * error)
  output = state.output + d_proportional + d_integral
  return IncrementalPIState(output=output, error=error,
                            beta=jnp.maximum(output, beta_min))


# --------------------------------------------------------------------------
# KL moving average (DynamicVAE).


def moving_average_init(window: int) -> jax.Array:
  """The window-1 previous KL values, zeros at the start (as the reference's
  deque of past_T - 1 zeros: its first averages include those zeros)."""
  return jnp.zeros((window - 1,), jnp.float32)


def moving_average_push(history: jax.Array, value: jax.Array
                        ) -> tuple[jax.Array, jax.Array]:
  """(mean of the previous window-1 values and `value`, new history)."""
  value = jnp.asarray(value, jnp.float32)
  window = jnp.concatenate([history, value[None]])
  return window.mean(), window[1:]


# --------------------------------------------------------------------------
# The objective around a controller.

# (aux, kl, hparams, step) -> (aux after seeing kl, metrics incl. "beta")
Advance = Callable[[Any, jax.Array, Mapping[str, jax.Array], jax.Array],
                   tuple[Any, Metrics]]


def controlled_beta_objective(name: str, hyperparameters: Mapping[str, Any],
                              init: Callable[[], Any], advance: Advance,
                              reconstruction: str) -> Objective:
  """recon + beta(t) * KL with beta(t) from a controller kept in `aux`.

  `advance` must be pure: `loss` and the aux update both call it with the same
  aux, (gradient-stopped) KL and step, so the beta the loss uses is the beta
  stored.  The controller never receives a gradient.
  """

  def loss(output: VAEOutput, x: jax.Array, hparams: Mapping[str, jax.Array],
           step: jax.Array, aux: Any) -> tuple[jax.Array, Metrics]:
    if aux is None:
      raise ValueError(f"{name}: the loss needs the controller state (aux); "
                       "train it with disentax.training, which keeps it")
    recon = reconstruction_loss(output.logits, x, reconstruction).mean()
    kl = batch_kl(output)
    _, metrics = advance(aux, jax.lax.stop_gradient(kl), hparams, step)
    beta = jax.lax.stop_gradient(metrics["beta"])
    total = recon + beta * kl
    return total, {"loss": total, "recon": recon, "kl": kl, **metrics}

  def init_aux(key: jax.Array, probe_output: VAEOutput) -> Any:
    del key, probe_output
    return init()

  def update_aux(aux: Any, output: VAEOutput,
                 hparams: Mapping[str, jax.Array], step: jax.Array,
                 key: jax.Array) -> tuple[Any, Metrics]:
    del key
    aux, _ = advance(aux, batch_kl(jax.lax.stop_gradient(output)), hparams,
                     step)
    return aux, {}

  return Objective(name=name, loss=loss, hyperparameters=hyperparameters,
                   reconstruction=reconstruction,
                   aux=AuxState(init=init_aux, update=update_aux))


# --------------------------------------------------------------------------
# Option checks shared by the builders.


def check_c_schedule(c_start: float, c_step: float, c_period: int
                     ) -> tuple[float, float, int]:
  """The set-point schedule C(t) = c_start + c_step per c_period steps."""
  c_start = check_finite("c_start", c_start)
  c_step = check_finite("c_step", c_step)
  if c_start < 0 or c_step < 0:
    raise ValueError(f"config.objective c_start={c_start}, c_step={c_step}; "
                     "both must be >= 0")
  return c_start, c_step, check_steps("c_period", c_period)


def c_max_grid(c_max: float | Iterable[float], c_start: float
               ) -> tuple[float, ...]:
  grid = hyperparameter_grid("c_max", c_max, positive=True)
  low = [v for v in grid if v < c_start]
  if low:
    raise ValueError(f"config.objective.c_max={grid}: value(s) {low} below "
                     f"c_start={c_start}; the set-point only rises")
  return grid
