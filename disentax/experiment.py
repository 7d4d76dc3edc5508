"""An experiment = the components a config names, plus its members.

A *member* is one trained model: one seed with one value of every
hyperparameter.  Members are the axis every program vmaps over, ordered
hyperparameter-major (all seeds of the first grid point, then the next).
Seed s draws the same initialisation and data whatever else shares its
program, because its keys derive from s alone.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from disentax import config as config_lib
from disentax.cli import UsageError
from disentax.data import GroundTruthDataset, make_dataset
from disentax.metrics import make_battery, make_metric
from disentax.metrics.base import Metric
from disentax.models import LatentVariableModel, make_model
from disentax.objectives import Objective, make_objective
from disentax.training import layouts


@dataclasses.dataclass(frozen=True)
class Members:
  seeds: np.ndarray                   # [M] int
  # name -> [M] float32, or [M, n] for a sequence-valued hyperparameter
  # (e.g. DEFT's per-stage pressures)
  hparams: dict[str, np.ndarray]

  def __len__(self) -> int:
    return len(self.seeds)

  def table(self) -> list[dict[str, Any]]:
    """One row per member: its index, seed and hyperparameter values."""
    return [{"member": m, "seed": int(self.seeds[m]),
             "hparams": {k: v[m].tolist() for k, v in self.hparams.items()}}
            for m in range(len(self))]

  def keys(self) -> jax.Array:
    """Per-member root PRNG keys, a function of the seed only."""
    return jax.vmap(jax.random.key)(jnp.asarray(self.seeds, jnp.uint32))


# A sequence of learning rates (config.train.learning_rates) is a grid like
# an objective's hyperparameters: the member's value scales its Adam update.
LEARNING_RATE = "learning_rate"


def make_members(hyperparameters: dict[str, Any], first_seed: int,
                 num_seeds: int) -> Members:
  """Every seed at every point of the hyperparameter grid.

  Raises:
    UsageError: a grid repeats a value (as the members hold it, float32):
      its members would train twice what others train, and a report would
      count their seeds twice.
  """
  names = sorted(hyperparameters)
  for name in names:
    values = [np.asarray(v, np.float32).tobytes()
              for v in hyperparameters[name]]
    if len(set(values)) < len(values):
      where = ("config.train.learning_rates" if name == LEARNING_RATE
               else f"config.objective.{name}")
      raise UsageError(
          f"{where}: the {name!r} grid {list(hyperparameters[name])} repeats "
          "a value (as float32); each value is its own set of members, so "
          "give each once")
  grid = list(itertools.product(*(hyperparameters[n] for n in names)))
  seeds = np.arange(first_seed, first_seed + num_seeds)
  return Members(
      seeds=np.tile(seeds, len(grid)),
      hparams={n: np.repeat(np.array([g[i] for g in grid], np.float32),
                            num_seeds, axis=0) for i, n in enumerate(names)})


@dataclasses.dataclass(frozen=True)
class Experiment:
  config: ml_collections.ConfigDict
  dataset: GroundTruthDataset
  model: LatentVariableModel
  objective: Objective
  optimizer: optax.GradientTransformation
  members: Members
  metric: Metric  # the evaluation metric, built now so bad options fail early
  battery: dict[str, Metric]  # further metrics (config.eval.battery)
  trace: dict[str, Metric]  # scored while training (config.eval.trace)
  layout: layouts.Layout  # how the member step is laid out (no 'auto')

  @property
  def method(self) -> str:
    return self.objective.name


def learning_rate_grid(train: ml_collections.ConfigDict
                       ) -> tuple[float, ...] | None:
  """The learning rates of a learning-rate grid, None for a single one."""
  return tuple(float(lr) for lr in train.learning_rates) or None


def learning_rate_schedule(train: ml_collections.ConfigDict) -> optax.Schedule:
  """Constant, or a staircase decay (e.g. CascadeVAE-C's x0.3 every 50k).
  With a learning-rate grid the schedule is relative (starts at 1) and each
  member's update is scaled by its own rate in the train step."""
  base = 1.0 if learning_rate_grid(train) else train.learning_rate
  if not train.lr_decay_every:
    return optax.constant_schedule(base)
  return optax.exponential_decay(base, train.lr_decay_every,
                                 train.lr_decay_factor, staircase=True)


# Flax's name of a layer's weight matrix (Dense, Conv, ConvTranspose and the
# faster layers of models/kernels), beside its `bias`.
KERNEL = "kernel"


def kernel_mask(params: Any) -> Any:
  """A params-shaped tree: True on every layer's weight matrix (a leaf
  Flax names `kernel`), False on biases and other parameters."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: getattr(path[-1], "key", None) == KERNEL, params)


def make_optimizer(train: ml_collections.ConfigDict
                   ) -> optax.GradientTransformation:
  """Adam with the config's learning-rate schedule; with
  `train.l2_regularization` s > 0, s * w is first added to the gradient of
  every kernel w (coupled L2: the gradient of s * sum(w^2) / 2, as TF's
  l2_regularizer(s) adds to the loss), so Adam normalises it with the
  rest."""
  adam = optax.adam(learning_rate_schedule(train), b1=train.adam_b1,
                    b2=train.adam_b2, eps=train.adam_eps)
  if not train.l2_regularization:
    return adam  # the state of runs saved without the option
  return optax.chain(optax.add_decayed_weights(train.l2_regularization,
                                               mask=kernel_mask), adam)


def build(config: ml_collections.ConfigDict) -> Experiment:
  """Validates the config and builds everything it names (no compilation).

  Raises:
    UsageError: a bad config value (the config's and every component's
      checks: each names the key, the value and what is allowed).
  """
  try:
    return _build(config)
  except UsageError:
    raise
  except ValueError as error:  # a component's check of its config section
    raise UsageError(str(error)) from error


def _build(config: ml_collections.ConfigDict) -> Experiment:
  config_lib.validate(config)
  dataset = make_dataset(config.dataset)
  model = make_model(config.model, dataset.observation_shape)
  objective = make_objective(config.objective,
                             dataset_size=dataset.num_points,
                             factor_names=dataset.factor_names,
                             num_latents=model.encoder.num_latents,
                             latent_layers=model.latent_layers,
                             encoder_groups=model.parameter_groups,
                             latent_projection=model.latent_projection)
  if config.train.reset_adam_at_stage and objective.stage is None:
    raise ValueError(
        f"config.train.reset_adam_at_stage=True: objective {objective.name} "
        "does not train in stages; a fresh Adam state per stage needs an "
        "objective with stages (e.g. deft, cascade_vae_c)")
  optimizer = make_optimizer(config.train)
  grid = dict(objective.hyperparameters)
  if learning_rate_grid(config.train):
    if LEARNING_RATE in grid:
      raise ValueError(f"objective {objective.name} has its own "
                       f"{LEARNING_RATE!r} hyperparameter; give "
                       "config.train.learning_rates empty")
    grid[LEARNING_RATE] = learning_rate_grid(config.train)
  members = make_members(grid, config.first_seed, config.num_seeds)
  metric = make_metric(config.eval.metric)
  battery = make_battery(config.eval.battery)
  trace = make_battery(config.eval.trace, where="config.eval.trace")
  check_trace_readers(config.eval, {"config.eval.metric": metric,
                                    **{f"config.eval.battery.{n}": m
                                       for n, m in battery.items()}}, trace)
  layout = layouts.resolve(config.train, len(members), objective)
  return Experiment(config, dataset, model, objective, optimizer, members,
                    metric, battery, trace, layout)


def check_trace_readers(eval_section: ml_collections.ConfigDict,
                        scored: dict[str, Metric],
                        trace: dict[str, Metric]) -> None:
  """Read-outs of the training-time trace (e.g. `ifp`) score in the
  evaluation job from a trace the run records; they cannot be traced
  themselves."""
  for name, metric in trace.items():
    if metric.reads_trace:
      raise ValueError(
          f"config.eval.trace.{name}: {name!r} reads the training-time "
          "trace, so it scores in the evaluation job (config.eval.battery), "
          "not while training")
  for where, metric in scored.items():
    if metric.reads_trace and not (eval_section.trace_every and trace):
      raise ValueError(
          f"{where}: {metric.name!r} reads the training-time trace "
          f"{list(metric.reads_trace)}; set config.eval.trace_every > 0 and "
          f"config.eval.trace (got trace_every="
          f"{eval_section.trace_every}, trace {sorted(trace)})")


def member_hparams(exp: Experiment) -> dict[str, jax.Array]:
  """The members' hyperparameters as device arrays (the mapped inputs)."""
  return {k: jnp.asarray(v) for k, v in exp.members.hparams.items()}
