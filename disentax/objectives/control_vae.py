"""ControlVAE (Shao et al., ICML 2020): beta-VAE with a positional PI
controller on beta, as in the authors' dSprites code (ControlVAE-ICML2020,
Disentangling/P_PID.py with solver_light.py).

  e(t)    = C(t) - KL(t)                       (KL of this step's batch)
  P(t)    = Kp / (1 + exp(e(t)))
  I(t)    = I(t-1) + Ki e(t), frozen while W(t-1) < 1
  W(t)    = 1 + P(t) + I(t);   beta(t) = max(1, W(t))
  C(t)    = min(C_max, 0.5 + 0.15 * floor((t + 1) / 5000))
  loss    = recon + beta(t) * KL

Kp 0.01, Ki -0.001, C from 0.5 by 0.15 every 5000 iterations (the
reference's 1-based iteration t + 1); C_max is the swept hyperparameter.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import jax

from disentax import schedules
from disentax.objectives import OBJECTIVES
from disentax.objectives import controllers
from disentax.objectives.base import (Objective, check_finite,
                                      check_reconstruction)


@OBJECTIVES.register("control_vae")
def control_vae(c_max: float | Iterable[float] = (16.0, 18.0),
                kp: float = 0.01, ki: float = -0.001, c_start: float = 0.5,
                c_step: float = 0.15, c_period: int = 5000,
                beta_min: float = 1.0,
                reconstruction: str = "bernoulli") -> Objective:
  """`c_max`: the KL set-point cap, one value or the grid to sweep (the
  reference's dSprites runs use 16 and 18).  The other options are the
  reference's constants (shared by all members)."""
  kp = check_finite("kp", kp, sign=+1)
  ki = check_finite("ki", ki, sign=-1)
  c_start, c_step, c_period = controllers.check_c_schedule(
      c_start, c_step, c_period)
  beta_min = check_finite("beta_min", beta_min, sign=+1)
  grid = controllers.c_max_grid(c_max, c_start)
  reconstruction = check_reconstruction(reconstruction)

  def target(step: jax.Array, c_max: jax.Array) -> jax.Array:
    return schedules.staircase(step + 1, c_start, c_step, c_period, c_max)

  def advance(state: controllers.PositionalPIState, kl: jax.Array,
              hparams: Mapping[str, jax.Array], step: jax.Array):
    c = target(step, hparams["c_max"])
    state = controllers.positional_pi_step(state, c - kl, kp=kp, ki=ki,
                                           beta_min=beta_min)
    return state, {"beta": state.beta, "c": c, "pi_integral": state.integral}

  return controllers.controlled_beta_objective(
      "control_vae", {"c_max": grid},
      lambda: controllers.positional_pi_init(beta_min), advance,
      reconstruction)
