"""Execution layouts: how the member step is laid out in a program.

The member step (`training/step.py`) is one pure function of one member.
This module only decides how it runs for all members and all steps of a
chunk; every choice computes the same function (up to float summation
order), so none of them is part of a run's identity (config hash):

  members  'vmap' batches the members into one computation (the fast
           choice on accelerators); 'unroll' places one copy of the step
           per member in one program (XLA:CPU runs vmapped, i.e. grouped,
           convolutions several times slower than separate ones);
           'sequential' compiles one member's step once and dispatches it
           per member from the host (compile time independent of the
           member count; one device, host loop).
  loop     'scan': the chunk is one jitted lax.scan (one host round trip
           per chunk); 'host': one step of all members is jitted and
           dispatched per step (XLA:CPU runs convolutions inside loops
           ~20x slower than outside them).
  micro_batches
           k > 1 accumulates each step's gradient over k equal slices of
           the batch with the whole batch's noise, for objectives whose loss
           is a mean of per-example terms.

`resolve` is the one place 'auto' is decided for these options.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections

from disentax import backend, sharding
from disentax.models.vae import BatchRows

MEMBER_EXECUTIONS = ("auto", "vmap", "unroll", "sequential")
TRAIN_LOOPS = ("auto", "scan", "host")
# Above this many members on one CPU device, 'auto' trains them
# 'sequential' instead of 'unroll' (whose compile time grows with them).
MANY_UNROLLED_MEMBERS = 16

# (member state, hparams, key, step) -> (member state, metrics)
MemberStep = Callable[..., tuple[Any, dict[str, jax.Array]]]
# (loss_fn, params, x, noise_key) -> (gradient, metrics, model output or
# None); loss_fn(params, x, noise) -> (loss, (metrics, output)).
Gradient = Callable[..., tuple[Any, dict[str, jax.Array], Any]]


@dataclasses.dataclass(frozen=True)
class Layout:
  """A resolved layout: no 'auto' left."""
  members: str        # 'vmap' | 'unroll' | 'sequential'
  loop: str           # 'scan' | 'host'
  micro_batches: int  # >= 1


def resolve(train: ml_collections.ConfigDict, num_members: int,
            objective: Any) -> Layout:
  """The layout of a config's train section for this backend and member
  count, 'auto' resolved: on accelerators vmap + scan; on CPU unroll +
  host, or sequential above MANY_UNROLLED_MEMBERS members on one device.
  `objective` (objectives.Objective) says whether micro-batches can
  compute its gradient.  Raises ValueError naming the option for choices
  that cannot work."""
  if train.member_execution not in MEMBER_EXECUTIONS:
    raise ValueError(f"config.train.member_execution="
                     f"{train.member_execution!r}; allowed: "
                     f"{MEMBER_EXECUTIONS}")
  if train.loop not in TRAIN_LOOPS:
    raise ValueError(f"config.train.loop={train.loop!r}; allowed: "
                     f"{TRAIN_LOOPS}")
  on_cpu = backend.on_cpu()
  num_devices = train.num_devices or jax.device_count()
  members = train.member_execution
  if members == "auto":
    members = ("vmap" if not on_cpu else
               "sequential" if (num_members > MANY_UNROLLED_MEMBERS
                                and num_devices == 1) else "unroll")
  loop = train.loop
  if loop == "auto":
    loop = "host" if on_cpu or members == "sequential" else "scan"
  if members == "sequential" and (num_devices != 1 or loop != "host"):
    raise ValueError(
        f"config.train.member_execution='sequential' steps one member at a "
        f"time from the host: it needs train.loop 'host' or 'auto' (got "
        f"{train.loop!r}) and one device (train.num_devices=1; got "
        f"{train.num_devices}, {num_devices} device(s))")
  check_micro_batches(train.micro_batches, train.batch_size, objective)
  return Layout(members, loop, train.micro_batches)


def check_micro_batches(count: int, batch_size: int, objective: Any) -> None:
  """`count` must divide the batch, and the objective's gradient must be
  the mean of its slices' (a per-example-mean loss, no state of its own
  updated from the whole batch)."""
  if count == 1:
    return
  if batch_size % count:
    raise ValueError(
        f"config.train.micro_batches={count} does not divide "
        f"config.train.batch_size={batch_size}; give a divisor of it")
  if not objective.per_example_mean or objective.aux is not None:
    raise ValueError(
        f"config.train.micro_batches={count}: objective {objective.name!r} "
        "is not a mean of per-example terms (or updates state of its own "
        "from the whole batch), so its gradient is not the mean of its "
        "slices' gradients; use micro_batches=1")


def compile_advice(layout: Layout, num_members: int) -> str | None:
  """A heads-up before compiling many unrolled members (compile time grows
  with their number: 50 standard-model seeds at 64x64 took 15.6 min on a
  2-core VM), naming the alternatives; None otherwise."""
  if layout.members != "unroll" or num_members <= MANY_UNROLLED_MEMBERS:
    return None
  return (f"compiling {num_members} unrolled members (train.member_execution="
          f"'unroll'): compile time grows with the number of members and "
          f"can take many minutes.  Faster to start: "
          f"train.member_execution='sequential' (one device: one member's "
          f"step compiled once), split the seeds into jobs (python -m "
          f"disentax.sweep, seeds_per_job), or 'vmap' (compiles once; ~3x "
          f"slower per step on CPU).")


# --------------------------------------------------------------------------
# Members: one function of one member -> one function of all members.


def over_members(fn: Callable, execution: str, in_axes: tuple) -> Callable:
  """`fn` of one member -> `fn` of all members (axis 0 where in_axes is 0).

  'vmap' batches the members; 'unroll' places one copy of `fn` per member
  in the same program.  'sequential' is a train-loop choice
  (`train_chunk`); everywhere else (evaluation: forward passes, cheap to
  compile) it unrolls.
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


# --------------------------------------------------------------------------
# The batch: one gradient, or the mean of micro-batches' gradients.


def whole_batch_gradient(loss_fn: Callable, params: Any, x: jax.Array,
                         noise_key: jax.Array
                         ) -> tuple[Any, dict[str, jax.Array], Any]:
  grads, (metrics, output) = jax.grad(loss_fn, has_aux=True)(
      params, x, noise_key)
  return grads, metrics, output


def sliced_gradient(loss_fn: Callable, params: Any, x: jax.Array,
                    noise_key: jax.Array, micro_batches: int
                    ) -> tuple[Any, dict[str, jax.Array], None]:
  """(gradient, metrics, None) of a per-example-mean loss over the batch
  `x`, accumulated over `micro_batches` equal slices in a loop: the mean of
  the slices' gradients and metrics, with the whole batch's noise
  (`BatchRows`), so it is the whole batch's up to float summation order.
  No whole-batch model output exists (objectives with state of their own
  are refused by `check_micro_batches`).  On a CPU a slice's activations
  stay in cache: ~10-15% faster at 64x64 and batch 64-256, slower at 32x32
  and batch 32."""
  batch_size = x.shape[0]
  size = batch_size // micro_batches
  slices = x.reshape(micro_batches, size, *x.shape[1:])

  def slice_loss(p, xs, rows):
    loss, (metrics, _) = loss_fn(p, xs, rows)
    return loss, metrics

  grad_fn = jax.grad(slice_loss, has_aux=True)

  def add_slice(total, inputs):
    index, xs = inputs
    rows = BatchRows(noise_key, index * size, batch_size)
    grads, metrics = grad_fn(params, xs, rows)
    return jax.tree.map(jnp.add, total, grads), metrics

  zeros = jax.tree.map(jnp.zeros_like, params)
  total, metrics = jax.lax.scan(add_slice, zeros,
                                (jnp.arange(micro_batches), slices))
  return (jax.tree.map(lambda g: g / micro_batches, total),
          jax.tree.map(lambda m: m.mean(axis=0), metrics), None)


def batch_gradient(micro_batches: int) -> Gradient:
  """The gradient computation of a layout's `micro_batches`."""
  if micro_batches == 1:
    return whole_batch_gradient
  return functools.partial(sliced_gradient, micro_batches=micro_batches)


# --------------------------------------------------------------------------
# Steps: a chunk of steps of all members.
#
# A chunk maps (member states [M, ...], hparams [M], keys [M], step, number
# of steps) to (member states, chunk-mean metrics [M]); the step counter is
# shared by all members.


def train_chunk(member_step: MemberStep, layout: Layout,
                devices: sharding.MemberLayout) -> Callable:
  """(members, hparams, keys, step, num_steps) -> (members, step + num_steps,
  chunk-mean metrics [M]) for `layout`, members split over `devices`."""
  if layout.members == "sequential":
    return _sequential_chunk(member_step)
  in_axes = (0, 0, 0, None)
  all_members_step = sharding.over_devices(
      over_members(member_step, layout.members, in_axes=in_axes),
      devices, in_axes)

  def step_fn(carry, _, hparams, keys):
    members, step = carry
    members, metrics = all_members_step(members, hparams, keys, step)
    return (members, step + 1), metrics

  if layout.loop == "scan":
    return _scan_chunk(step_fn)
  return _host_chunk(step_fn, devices)


def _scan_chunk(step_fn: Callable) -> Callable:
  @functools.partial(jax.jit, static_argnames="num_steps",
                     donate_argnames="members")
  def chunk(members, hparams, keys, step, num_steps: int):
    (members, step), metrics = jax.lax.scan(
        functools.partial(step_fn, hparams=hparams, keys=keys),
        (members, step), length=num_steps)
    return members, step, jax.tree.map(lambda m: m.mean(axis=0), metrics)

  return chunk


def _host_chunk(step_fn: Callable, devices: sharding.MemberLayout
                ) -> Callable:
  # Jitted so that zero_metric_sums' shape query and host_step share one
  # trace of the step (XLA inlines the nested call).
  traced_step = jax.jit(step_fn)

  @functools.partial(jax.jit, donate_argnums=0)
  def host_step(carry, metric_sums, hparams, keys):
    carry, metrics = traced_step(carry, None, hparams, keys)
    return carry, jax.tree.map(jnp.add, metric_sums, metrics)

  @functools.partial(jax.jit, out_shardings=devices.members)
  def zero_metric_sums(carry, hparams, keys):
    shapes = jax.eval_shape(traced_step, carry, None, hparams, keys)[1]
    return jax.tree.map(lambda m: jnp.zeros(m.shape, m.dtype), shapes)

  def chunk(members, hparams, keys, step, num_steps: int):
    carry = (members, step)
    sums = zero_metric_sums(carry, hparams, keys)
    for _ in range(num_steps):
      carry, sums = host_step(carry, sums, hparams, keys)
    members, step = carry
    return members, step, jax.tree.map(lambda m: m / num_steps, sums)

  return chunk


def _num_members(members: Any) -> int:
  return jax.tree.leaves(members)[0].shape[0]


def _member_of(stacked: jax.Array, member: jax.Array) -> jax.Array:
  """Row `member` of a member-stacked array (a dynamic slice: the update
  back is then a dynamic-update-slice, done in place in a donated buffer,
  where `.at[].set` would lower to a scatter)."""
  return jax.lax.dynamic_index_in_dim(stacked, member, 0, keepdims=False)


def _sequential_chunk(member_step: MemberStep) -> Callable:
  """One member per dispatch: a program of one member's step (compiled
  once, whatever the number of members) reads member m from the stacked
  states and writes it back in place (the states are donated), for m = 0
  .. M-1, then the step counter advances.  Each member computes what it
  computes in the other layouts; the compile time no longer grows with M
  (unrolling 50 members compiled for 15.6 min on a 2-core VM)."""

  @jax.jit  # one trace, shared by step_member and zero_metric_sums
  def update(members, hparams, keys, step, member):
    mine = jax.tree.map(lambda leaf: _member_of(leaf, member),
                        (members, hparams, keys))
    return member_step(*mine, step)

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step_member(members, metric_sums, hparams, keys, step, member):
    new, metrics = update(members, hparams, keys, step, member)
    members = jax.tree.map(
        lambda all_, one: jax.lax.dynamic_update_index_in_dim(
            all_, one, member, 0), members, new)
    metric_sums = jax.tree.map(
        lambda all_, one: jax.lax.dynamic_update_index_in_dim(
            all_, _member_of(all_, member) + one, member, 0),
        metric_sums, metrics)
    return members, metric_sums

  @jax.jit
  def zero_metric_sums(members, hparams, keys, step):
    count = _num_members(members)
    shapes = jax.eval_shape(update, members, hparams, keys, step, 0)[1]
    return jax.tree.map(lambda m: jnp.zeros((count, *m.shape), m.dtype),
                        shapes)

  def chunk(members, hparams, keys, step, num_steps: int):
    count = _num_members(members)
    sums = zero_metric_sums(members, hparams, keys, step)
    for _ in range(num_steps):
      for member in range(count):
        members, sums = step_member(members, sums, hparams, keys, step,
                                    member)
      step = step + 1
    return members, step, jax.tree.map(lambda m: m / num_steps, sums)

  return chunk
