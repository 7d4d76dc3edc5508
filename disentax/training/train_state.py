"""The train state of every member, stacked on a leading member axis.

`TrainState` is what a checkpoint holds: the shared step counter and, for
each member, its parameters, optimiser state, objective state (`aux`) and
the step it diverged at.  `MemberState` is the same without the step: what
the member step maps over.  A member's keys derive from its seed alone
(`split_member_key`), so its initialisation and data do not depend on what
else shares the program.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from disentax import checkpoint, sharding
from disentax.experiment import Experiment


@flax.struct.dataclass
class MemberState:
  """What changes per member at every step; each leaf has the member axis
  first when stacked, none inside the member step."""
  params: Any
  opt_state: Any
  aux: Any                # the objective's own state (None without one)
  diverged_at: jax.Array  # int32: step of the first non-finite update (the
                          # member is frozen from then on), -1 if none


@flax.struct.dataclass
class TrainState:
  step: jax.Array         # scalar int32, shared by all members
  params: Any             # every leaf stacked over members, [M, ...]
  opt_state: Any          # likewise
  diverged_at: jax.Array  # [M] int32, see MemberState
  aux: Any = None         # likewise

  @property
  def members(self) -> MemberState:
    return MemberState(self.params, self.opt_state, self.aux,
                       self.diverged_at)

  @classmethod
  def of(cls, step: jax.Array, members: MemberState) -> "TrainState":
    return cls(step, members.params, members.opt_state, members.diverged_at,
               members.aux)


def split_member_key(key: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(init key, run key) of a member's root key."""
  init_key, run_key = jax.random.split(key)
  return init_key, run_key


def single_device(exp: Experiment) -> sharding.MemberLayout:
  """All members on the default device (the evaluator's layout)."""
  return sharding.member_layout(len(exp.members), num_devices=1)


def member_inputs(exp: Experiment, layout: sharding.MemberLayout
                  ) -> tuple[dict[str, jax.Array], jax.Array]:
  """(hyperparameters, root keys) of every member, padded and placed as
  `layout` says: the mapped inputs of the train step."""
  seeds = sharding.put_members(exp.members.seeds.astype(np.uint32), layout)
  keys = jax.jit(jax.vmap(jax.random.key),
                 out_shardings=layout.members)(seeds)
  return sharding.put_members(exp.members.hparams, layout), keys


def init_state(exp: Experiment,
               layout: sharding.MemberLayout | None = None) -> TrainState:
  """Fresh parameters for every member, each from its own seed."""
  layout = layout or single_device(exp)
  probe = jnp.zeros((1, *exp.dataset.observation_shape), jnp.float32)
  aux_state = exp.objective.aux

  def init_member(key):
    init_key, _ = split_member_key(key)
    param_key, noise_key, aux_key = jax.random.split(init_key, 3)
    params = exp.model.init(param_key, probe, noise_key)["params"]
    aux = None
    if aux_state is not None:
      probe_output = exp.model.apply({"params": params}, probe, noise_key)
      aux = aux_state.init(aux_key, probe_output)
    return params, exp.optimizer.init(params), aux

  def init_all(keys):
    params, opt_state, aux = jax.vmap(init_member)(keys)
    return TrainState(jnp.zeros((), jnp.int32), params, opt_state,
                      jnp.full(keys.shape, -1, jnp.int32), aux)

  _, keys = member_inputs(exp, layout)
  shardings = jax.tree.map(layout.sharding_like,
                           jax.eval_shape(init_all, keys))
  return jax.jit(init_all, out_shardings=shardings)(keys)


def abstract_state(exp: Experiment, layout: sharding.MemberLayout) -> Any:
  """The state's shapes, dtypes and placement: a checkpoint restore target."""
  return jax.tree.map(
      lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype,
                                        sharding=layout.sharding_like(leaf)),
      jax.eval_shape(lambda: init_state(exp, layout)))


def restore_members(manager: Any, step: int, exp: Experiment,
                    layout: sharding.MemberLayout | None = None
                    ) -> TrainState:
  """A checkpoint's state laid out as `layout` (default: one device, no
  padding), whatever device count wrote it."""
  layout = layout or single_device(exp)
  target = abstract_state(exp, layout)
  try:
    return checkpoint.restore_state(manager, step, target)
  except ValueError as error:  # the tree on disk has no diverged_at?
    try:  # written before divergence tracking: every member was healthy
      old = checkpoint.restore_state(manager, step, {
          name: getattr(target, name)
          for name in ("step", "params", "opt_state", "aux")})
    except ValueError:
      raise error from None
  healthy = jax.jit(lambda: jnp.full((layout.num_padded,), -1, jnp.int32),
                    out_shardings=layout.members)()
  return TrainState(diverged_at=healthy, **old)


def restore_member_steps(manager: Any, steps: np.ndarray, exp: Experiment
                         ) -> TrainState:
  """Member m's state from the checkpoint of steps[m] ([M] ints, each a
  saved step), on one device; the state's `step` is the latest of them.
  Checkpoints are restored one at a time (at most two states in memory)."""
  steps = np.asarray(steps)
  chosen = None
  for step in np.unique(steps):
    state = restore_members(manager, int(step), exp)
    if chosen is None:
      chosen = state
      continue
    rows = jnp.asarray(steps == step)

    def take(old: jax.Array, new: jax.Array) -> jax.Array:
      return jnp.where(rows.reshape(-1, *[1] * (new.ndim - 1)), new, old)

    chosen = chosen.replace(**{
        name: jax.tree.map(take, getattr(chosen, name), getattr(state, name))
        for name in ("params", "opt_state", "aux", "diverged_at")})
  return chosen.replace(step=jnp.int32(steps.max()))


def unpadded(state: TrainState, layout: sharding.MemberLayout) -> TrainState:
  """`state` without the padding members (the real members only)."""
  if layout.num_padded == layout.num_members:
    return state
  return jax.tree.map(
      lambda leaf: leaf[:layout.num_members]
      if leaf.ndim and leaf.shape[0] == layout.num_padded else leaf, state)
