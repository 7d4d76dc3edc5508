"""DynamicVAE (Shao et al., CVPR 2022): beta-VAE with an incremental PI
controller on beta fed by a moving average of the KL, as in the authors'
dSprites code (DynamicVAE-CVPR2022, 2D-sprites/I_PID.py with
solver_dynamic.py and run_dynamic.sh).

  KLbar(t) = mean of KL(t) and the 4 KL values before it (zeros before the
             first step, as the reference's deque)
  e(t)     = C(t) - KLbar(t)
  dP(t)    = Kp (s(e(t)) - s(e(t-1))),  s(e) = 1 / (1 + exp(e)),  e(-1) = 0
  dI(t)    = Ki e(t), or 0 while W(t-1) < 0.1
  W(t)     = W(t-1) + dP(t) + dI(t),  W(-1) = 50;   beta(t) = max(0.1, W(t))
  C(t)     = 0.5 during the first 6000 iterations, then +0.15 per 6000-step
             window, ramped linearly over the window's first 1000 steps,
             capped at C_max (reference iteration t + 1)
  loss     = recon + beta(t) * KL(t)

Kp 0.01, Ki -0.005, C_max 20 (run_dynamic.sh).
"""

from __future__ import annotations

from typing import Iterable, Mapping

import flax.struct
import jax

from disentax import schedules
from disentax.objectives import OBJECTIVES
from disentax.objectives import controllers
from disentax.objectives.base import (Objective, check_finite,
                                      check_reconstruction, check_steps)


@flax.struct.dataclass
class DynamicVAEState:
  controller: controllers.IncrementalPIState
  kl_history: jax.Array  # the previous kl_window - 1 batch KLs


@OBJECTIVES.register("dynamic_vae")
def dynamic_vae(c_max: float | Iterable[float] = 20.0, kp: float = 0.01,
                ki: float = -0.005, beta_init: float = 50.0,
                beta_min: float = 0.1, kl_window: int = 5,
                c_start: float = 0.5, c_step: float = 0.15,
                c_period: int = 6000, c_ramp_steps: int = 1000,
                reconstruction: str = "bernoulli") -> Objective:
  """`c_max`: the KL set-point cap, one value or the grid to sweep.  The
  other options are the reference's constants (shared by all members)."""
  kp = check_finite("kp", kp, sign=+1)
  ki = check_finite("ki", ki, sign=-1)
  beta_min = check_finite("beta_min", beta_min, sign=+1)
  beta_init = check_finite("beta_init", beta_init, sign=+1)
  if beta_init < beta_min:
    raise ValueError(f"config.objective.beta_init={beta_init}; must be >= "
                     f"beta_min={beta_min}")
  kl_window = check_steps("kl_window", kl_window)
  c_start, c_step, c_period = controllers.check_c_schedule(
      c_start, c_step, c_period)
  c_ramp_steps = check_steps("c_ramp_steps", c_ramp_steps)
  if c_ramp_steps > c_period:
    raise ValueError(f"config.objective.c_ramp_steps={c_ramp_steps}; must be "
                     f"<= c_period={c_period}")
  grid = controllers.c_max_grid(c_max, c_start)
  reconstruction = check_reconstruction(reconstruction)

  def target(step: jax.Array, c_max: jax.Array) -> jax.Array:
    return schedules.staircase(step + 1, c_start, c_step, c_period, c_max,
                               ramp_steps=c_ramp_steps)

  def init() -> DynamicVAEState:
    return DynamicVAEState(
        controllers.incremental_pi_init(beta_init, beta_min),
        controllers.moving_average_init(kl_window))

  def advance(state: DynamicVAEState, kl: jax.Array,
              hparams: Mapping[str, jax.Array], step: jax.Array):
    c = target(step, hparams["c_max"])
    kl_average, history = controllers.moving_average_push(state.kl_history,
                                                          kl)
    controller = controllers.incremental_pi_step(
        state.controller, c - kl_average, kp=kp, ki=ki, beta_min=beta_min)
    return DynamicVAEState(controller, history), {
        "beta": controller.beta, "c": c, "kl_average": kl_average}

  return controllers.controlled_beta_objective(
      "dynamic_vae", {"c_max": grid}, init, advance, reconstruction)
