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
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from disentax import config as config_lib
from disentax.config import MEMBER_EXECUTIONS
from disentax.data import GroundTruthDataset, make_dataset
from disentax.metrics import make_battery, make_metric
from disentax.metrics.base import Metric
from disentax.models import VAE, make_model
from disentax.objectives import Objective, make_objective


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


def over_members(fn: Callable, execution: str, in_axes: tuple) -> Callable:
  """`fn` of one member -> `fn` of all members (axis 0 where in_axes is 0).

  'vmap' batches the members into one computation (the fast choice on
  accelerators).  'unroll' places one copy of `fn` per member in the same
  compiled program: XLA:CPU runs vmapped (grouped) convolutions several
  times slower than separate ones, so on CPU this is faster; it computes the
  same function, member by member.  'sequential' is a train-loop choice
  (train.make_train_chunk steps one member per dispatch); everywhere else
  (evaluation, tracing: forward passes, cheap to compile) it unrolls.
  """
  if execution == "vmap":
    return jax.vmap(fn, in_axes=in_axes)
  if execution not in ("unroll", "sequential"):
    raise ValueError(f"member execution {execution!r}; allowed: "
                     f"{MEMBER_EXECUTIONS}")

  def unrolled(*args):
    mapped = [a for a, axis in zip(args, in_axes) if axis == 0]
    num_members = jax.tree.leaves(mapped)[0].shape[0]
    outputs = []
    for m in range(num_members):
      member_args = [jax.tree.map(lambda leaf: leaf[m], a) if axis == 0 else a
                     for a, axis in zip(args, in_axes)]
      outputs.append(fn(*member_args))
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *outputs)

  return unrolled


# A sequence of learning rates (config.train.learning_rates) is a grid like
# an objective's hyperparameters: the member's value scales its Adam update.
LEARNING_RATE = "learning_rate"


def make_members(hyperparameters: dict[str, Any], first_seed: int,
                 num_seeds: int) -> Members:
  names = sorted(hyperparameters)
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
  model: VAE
  objective: Objective
  optimizer: optax.GradientTransformation
  members: Members
  metric: Metric  # the evaluation metric, built now so bad options fail early
  battery: dict[str, Metric]  # further metrics (config.eval.battery)
  member_execution: str  # 'vmap' | 'unroll' | 'sequential' (not 'auto')
  loop: str              # 'scan' | 'host'  (likewise)

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


def build(config: ml_collections.ConfigDict) -> Experiment:
  """Validates the config and builds everything it names (no compilation)."""
  config_lib.validate(config)
  dataset = make_dataset(config.dataset)
  model = make_model(config.model, dataset.observation_shape)
  objective = make_objective(config.objective,
                             dataset_size=dataset.num_points,
                             factor_names=dataset.factor_names,
                             num_latents=model.encoder.num_latents,
                             latent_layers=getattr(model, "num_layers", 1),
                             encoder_groups=getattr(model.encoder,
                                                    "num_groups", None))
  optimizer = optax.adam(learning_rate_schedule(config.train),
                         b1=config.train.adam_b1, b2=config.train.adam_b2,
                         eps=config.train.adam_eps)
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
  check_micro_batches(config.train, objective)
  member_execution, loop = execution_and_loop(config.train, len(members))
  return Experiment(config, dataset, model, objective, optimizer, members,
                    metric, battery, member_execution, loop)


def check_micro_batches(train: ml_collections.ConfigDict,
                        objective: Objective) -> None:
  """config.train.micro_batches must divide the batch, and the objective's
  gradient must be the mean of its slices' (Objective.per_example_mean)."""
  count = train.micro_batches
  if count == 1:
    return
  if train.batch_size % count:
    raise ValueError(
        f"config.train.micro_batches={count} does not divide "
        f"config.train.batch_size={train.batch_size}; give a divisor of it")
  if not objective.per_example_mean or objective.update_aux is not None:
    raise ValueError(
        f"config.train.micro_batches={count}: objective {objective.name!r} "
        "is not a mean of per-example terms (or updates state of its own "
        "from the whole batch), so its gradient is not the mean of its "
        "slices' gradients; use micro_batches=1")


def execution_and_loop(train: ml_collections.ConfigDict, num_members: int
                       ) -> tuple[str, str]:
  """(member execution, loop) of a config's train section, 'auto' resolved
  for this backend, the number of members and of devices (see
  config.MEMBER_EXECUTIONS).  'sequential' needs one device and the host
  loop; asking for it otherwise is an error."""
  on_cpu = jax.default_backend() == "cpu"
  num_devices = train.num_devices or jax.device_count()
  execution = train.member_execution
  if execution == "auto":
    execution = ("vmap" if not on_cpu else
                 "sequential" if (num_members > config_lib.MANY_UNROLLED_MEMBERS
                                  and num_devices == 1) else "unroll")
  loop = train.loop
  if loop == "auto":
    loop = "host" if on_cpu or execution == "sequential" else "scan"
  if execution == "sequential" and (num_devices != 1 or loop != "host"):
    raise ValueError(
        f"config.train.member_execution='sequential' steps one member at a "
        f"time from the host: it needs train.loop 'host' or 'auto' (got "
        f"{train.loop!r}) and one device (train.num_devices=1; got "
        f"{train.num_devices}, {num_devices} device(s))")
  return execution, loop


def representation_controls(exp: Experiment) -> Callable:
  """(member hparams, step) -> {suffix: model control}: the objective's
  representations, or the plain encoder mean as the primary one ("")."""
  return (exp.objective.representations
          or (lambda member_hparams, at_step: {"": None}))


def make_encode_members(exp: Experiment) -> Callable:
  """Jitted (params, hparams, observations [b, ...], step) -> {suffix: mean
  codes [M, b, d]}: every member's representations (the objective's, or the
  plain encoder mean as "") at a training step, in one call."""
  representations = representation_controls(exp)

  def encode_member(params, member_hparams, x, step):
    return {name: exp.model.apply({"params": params}, x, control,
                                  method="encode")[0]
            for name, control in representations(member_hparams,
                                                 step).items()}

  return jax.jit(over_members(encode_member, exp.member_execution,
                              in_axes=(0, 0, None, None)))


def member_hparams(exp: Experiment) -> dict[str, jax.Array]:
  """The members' hyperparameters as device arrays (the mapped inputs)."""
  return {k: jnp.asarray(v) for k, v in exp.members.hparams.items()}
