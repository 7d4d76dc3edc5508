"""The member step: one pure train step of one member, written once.

(member state, hyperparameters, root key, step) -> (member state, metrics):
draw the member's batch on the device, run the model under the objective's
control, take the gradient of the objective's loss, update the parameters
(and the objective's own state), and freeze the member at its first
non-finite step.  With `train.reset_adam_at_stage`, the member's Adam state
is replaced by a fresh one at the first step of every new stage of the
objective, before that step's update.  Per-step randomness is
`fold_in(member key, step)`, so a resumed run draws exactly the randomness
an uninterrupted one would.  How the step is laid out over members and
steps is `training/layouts.py`'s business.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import optax

from disentax.experiment import LEARNING_RATE, Experiment
from disentax.objectives.base import StageFn
from disentax.training.layouts import Gradient, MemberStep
from disentax.training.train_state import MemberState, split_member_key

# fold_in constant of the per-step key that draws an objective's model control
# (independent of the data/noise/aux keys split from the same step key).
CONTROL_STREAM = 3


def sample_member_batch(exp: Experiment, hparams: Mapping[str, jax.Array],
                        run_key: jax.Array, data_key: jax.Array,
                        batch_size: int) -> jax.Array:
  """A member's training batch: the objective's sampler, or a uniform draw
  from the dataset."""
  if exp.objective.batch_sampler is not None:
    return exp.objective.batch_sampler(exp.dataset, hparams, run_key,
                                       data_key, batch_size)
  return exp.dataset.sample(data_key, batch_size)[1]


def make_member_step(exp: Experiment, gradient: Gradient) -> MemberStep:
  """The member step of `exp`, its gradient computed by `gradient`
  (`layouts.batch_gradient`)."""
  batch_size = exp.config.train.batch_size
  objective = exp.objective
  reset_at_stage = exp.config.train.reset_adam_at_stage

  def member_step(member: MemberState, hparams: Mapping[str, jax.Array],
                  key: jax.Array, step: jax.Array
                  ) -> tuple[MemberState, dict[str, jax.Array]]:
    _, run_key = split_member_key(key)
    step_key = jax.random.fold_in(run_key, step)
    data_key, noise_key, aux_key = jax.random.split(step_key, 3)
    x = sample_member_batch(exp, hparams, run_key, data_key, batch_size)
    control = None
    if objective.control is not None:
      control = objective.control.for_step(
          hparams, step, jax.random.fold_in(step_key, CONTROL_STREAM))

    def loss_fn(params, x, noise):
      output = exp.model.apply({"params": params}, x, noise, control)
      loss, metrics = objective.loss(output, x, hparams, step, member.aux)
      return loss, (metrics, output)

    grads, metrics, output = gradient(loss_fn, member.params, x, noise_key)
    opt_state = member.opt_state
    if reset_at_stage:
      opt_state = restart_adam(opt_state, exp.optimizer.init(member.params),
                               stage_changed(objective.stage, step))
    updates, opt_state = exp.optimizer.update(grads, opt_state,
                                              member.params)
    if LEARNING_RATE in hparams:  # a learning-rate grid: Adam ran at lr 1
      updates = jax.tree.map(lambda u: u * hparams[LEARNING_RATE], updates)
    if objective.update_transform is not None:
      updates = objective.update_transform(updates, hparams, step, exp.model)
    aux = member.aux
    if objective.aux is not None:
      aux, aux_metrics = objective.aux.update(
          aux, jax.lax.stop_gradient(output), hparams, step, aux_key)
      metrics = {**metrics, **aux_metrics}
    params = optax.apply_updates(member.params, updates)
    updated = MemberState(params, opt_state, aux, member.diverged_at)
    return freeze_if_not_finite(member, updated, metrics["loss"], step), metrics

  return member_step


def stage_changed(stage: StageFn, step: jax.Array) -> jax.Array:
  """Whether `step` is the first step of a stage other than the first."""
  return (step > 0) & (stage(step) != stage(step - 1))


def restart_adam(opt_state: Any, fresh: Any, restart: jax.Array) -> Any:
  """`opt_state` with every Adam state (count, mu, nu) taken from `fresh`
  where `restart` holds (a traced bool: `where`, no recompilation).  Other
  states are kept: the learning-rate schedule goes on counting the global
  step, as CascadeVAE's per-stage optimisers share one global step."""
  def is_adam(node: Any) -> bool:
    return isinstance(node, optax.ScaleByAdamState)

  def pick(old: Any, new: Any) -> Any:
    if not is_adam(old):
      return old
    return jax.tree.map(lambda o, n: jnp.where(restart, n, o), old, new)

  return jax.tree.map(pick, opt_state, fresh, is_leaf=is_adam)


def freeze_if_not_finite(old: MemberState, new: MemberState, loss: jax.Array,
                         step: jax.Array) -> MemberState:
  """`new`, or `old` with the step recorded in `diverged_at` when the loss
  or any updated parameter, optimiser or objective state is not finite; a
  frozen member stays frozen.  A healthy member's update passes through
  unchanged (`where` with a true condition), so the other members' results
  do not depend on whether one diverged."""
  finite = jnp.isfinite(loss) & all_finite((new.params, new.opt_state,
                                            new.aux))
  healthy = old.diverged_at < 0
  keep = healthy & finite
  params, opt_state, aux = jax.tree.map(
      lambda updated, previous: jnp.where(keep, updated, previous),
      (new.params, new.opt_state, new.aux),
      (old.params, old.opt_state, old.aux))
  diverged_at = jnp.where(healthy & ~finite, step, old.diverged_at)
  return MemberState(params, opt_state, aux, diverged_at)


def all_finite(tree: Any) -> jax.Array:
  """Whether every float in `tree` is finite: one reduction over its
  leaves concatenated.  A reduction per leaf compiles to its own XLA:CPU
  kernels (~40 leaves with Adam's moments), which made this check ~40% of
  a train step's compile time; the step's run time is the same."""
  leaves = [jnp.ravel(leaf) for leaf in jax.tree.leaves(tree)
            if jnp.issubdtype(leaf.dtype, jnp.inexact)]
  if not leaves:
    return jnp.bool_(True)
  return jnp.all(jnp.isfinite(jnp.concatenate(leaves)))
