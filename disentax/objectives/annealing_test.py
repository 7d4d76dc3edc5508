"""The annealing test (DEFT journal section 4.1): a beta-VAE whose beta is
annealed from a high value down to about 1; the information freezing point
(IFP) is the largest beta at which the KL (an upper bound of I(x;z)) exceeds
0.1 (`disentax.ifp`).

Per-factor IFP distributions (section 5.2): each member trains on the
sub-dataset in which one factor varies over all its values while the others
stay at values drawn from the member's seed; the `factor` hyperparameter
picks it (-1: the whole dataset, for the unsupervised variant of section
5.5), so factors x 50 seeds (the 50 repeats) are one vmapped program.  The
KL-vs-beta curve of every member is traced during training (evaluator
`loss_terms` in `config.eval.trace`) and the evaluation job reads its IFP
off it (evaluator `ifp`, disentax/metrics/freezing_points.py).

Schedules: 'exponential' beta = end + (start - end) exp(-rate t), t = step /
anneal_steps (dlib-deft: 70 exp(-15 t) + 1, 8,000 steps, 1 latent, batch
64); 'linear' from start to end over anneal_steps (journal Fig. 4: 200 to 0
over 100,000 steps).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import jax
import jax.numpy as jnp

from disentax import schedules
from disentax.models import VAEOutput
from disentax.objectives import OBJECTIVES
from disentax.objectives.base import (Objective, check_finite,
                                      check_reconstruction, check_steps,
                                      elbo_loss)

SCHEDULES = ("exponential", "linear")
WHOLE_DATASET = -1
# fold_in constant of a member's key that draws its fixed factor values.
BASE_FACTORS_STREAM = 11


def annealed_beta(step: jax.Array, schedule: str, beta_start: float,
                  beta_end: float, anneal_steps: int, rate: float) -> jax.Array:
  if schedule == "linear":
    return schedules.linear(step, beta_start, beta_end, 0, anneal_steps)
  return schedules.exponential_anneal(step, beta_start, beta_end, rate,
                                      anneal_steps)


def factor_grid(factors: str | Iterable[str], factor_names: Sequence[str]
                ) -> tuple[float, ...]:
  """'all' -> every factor index; 'dataset' -> (-1,); names (a sequence or
  one comma-separated string, handy on the command line) -> indices."""
  if factors == "all":
    return tuple(float(i) for i in range(len(factor_names)))
  if factors == "dataset":
    return (float(WHOLE_DATASET),)
  names = (factors.split(",") if isinstance(factors, str)
           else list(factors))
  unknown = [n for n in names if n not in factor_names]
  if unknown or not names:
    raise ValueError(
        f"config.objective.factors={factors!r}: unknown factor(s) {unknown}; "
        f"give 'all', 'dataset' or names from {list(factor_names)}")
  return tuple(float(factor_names.index(n)) for n in names)


@OBJECTIVES.register("annealing_test")
def annealing_test(schedule: str = "exponential", beta_start: float = 71.0,
                   beta_end: float = 1.0, anneal_steps: int = 8_000,
                   rate: float = 15.0, factors: str | Iterable[str] = "all",
                   reconstruction: str = "bernoulli",
                   *, factor_names: Sequence[str]) -> Objective:
  """`factors`: 'all' (one member group per factor), 'dataset' (the whole
  dataset) or factor names (e.g. 'posX,posY').  Defaults: dlib-deft's annealing test."""
  if schedule not in SCHEDULES:
    raise ValueError(f"config.objective.schedule={schedule!r}; allowed: "
                     f"{SCHEDULES}")
  beta_start = check_finite("beta_start", beta_start, sign=1)
  beta_end = check_finite("beta_end", beta_end)
  if not 0.0 <= beta_end < beta_start:
    raise ValueError(f"config.objective.beta_end={beta_end}: must be >= 0 "
                     f"and < beta_start={beta_start}")
  anneal_steps = check_steps("anneal_steps", anneal_steps)
  rate = check_finite("rate", rate, sign=1)
  reconstruction = check_reconstruction(reconstruction)
  schedule_args = (schedule, beta_start, beta_end, anneal_steps, rate)

  def loss(output: VAEOutput, x, hparams, step, aux=None):
    del aux
    beta = annealed_beta(step, *schedule_args)
    value, metrics = elbo_loss(output, x, beta, reconstruction)
    return value, {**metrics, "beta": beta}

  def sample_batch(dataset, hparams, member_key, key, batch_size):
    base_key = jax.random.fold_in(member_key, BASE_FACTORS_STREAM)
    factor = hparams["factor"].astype(jnp.int32)
    return dataset.sample_varying_one_factor(base_key, key, factor,
                                             batch_size)[1]

  return Objective(
      name="annealing_test", loss=loss, reconstruction=reconstruction,
      hyperparameters={"factor": factor_grid(factors, factor_names)},
      batch_sampler=sample_batch,
      per_example_mean=True)
