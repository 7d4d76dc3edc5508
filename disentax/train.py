"""Training: every member (seed x hyperparameters) in one jitted program.

`make_member_step` is the pure step of a single model.  `make_train_chunk`
vmaps it over members and scans it over a chunk of steps, so the host only
wakes up between chunks (to log, checkpoint and show progress).  Per-step
randomness is `fold_in(member key, step)`, so a resumed run draws exactly the
randomness an uninterrupted one would.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from tqdm import tqdm

from disentax import checkpoint
from disentax import config as config_lib
from disentax import run_log, sharding, tracing
from disentax.experiment import (LEARNING_RATE, Experiment, build,
                                 over_members)
from disentax.models.vae import BatchRows
from disentax.workdir import config_path, run_log_path, write_json

# Test hook: SIGKILL this process right after the checkpoint of this step has
# been written, to prove that a killed run resumes exactly.
KILL_AFTER_STEP_ENV = "DISENTAX_TEST_KILL_AFTER_STEP"
# Test hook: SIGKILL this process while the checkpoint of this step is being
# written, to prove that an interrupted save leaves the previous one usable.
KILL_DURING_SAVE_ENV = "DISENTAX_TEST_KILL_DURING_SAVE"
# fold_in constant of the per-step key that draws an objective's model control
# (independent of the data/noise/aux keys split from the same step key).
CONTROL_STREAM = 3


# Exit status of a preempted run (what a shell reports for a process ended
# by SIGTERM); the SLURM script requeues a job that exits with it.
PREEMPTED_EXIT = 128 + 15


class Preempted(Exception):
  """Raised by `train` after a SIGTERM (what SLURM sends before preempting
  or at the time limit): the current state was checkpointed at `step`, and
  rerunning the same command resumes from there."""

  def __init__(self, workdir: str, step: int):
    super().__init__(f"{workdir}: stopped by SIGTERM, checkpointed at step "
                     f"{step}; rerun the same command to resume")
    self.workdir, self.step = workdir, step


@flax.struct.dataclass
class TrainState:
  step: jax.Array         # scalar int32, shared by all members
  params: Any             # every leaf stacked over members, [M, ...]
  opt_state: Any          # likewise
  diverged_at: jax.Array  # [M] int32: step of the first non-finite update
                          # (the member is frozen from then on), -1 if none
  aux: Any = None         # the objective's own per-member state, likewise


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

  def init_member(key):
    init_key, _ = split_member_key(key)
    param_key, noise_key, aux_key = jax.random.split(init_key, 3)
    params = exp.model.init(param_key, probe, noise_key)["params"]
    aux = None
    if exp.objective.init_aux is not None:
      probe_output = exp.model.apply({"params": params}, probe, noise_key)
      aux = exp.objective.init_aux(aux_key, probe_output)
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


def make_member_step(exp: Experiment) -> Callable:
  """The pure train step of one member: (params, opt_state, aux, hparams,
  key, step) -> (params, opt_state, aux, metrics).  Its batch is drawn on the
  device; the objective's own state `aux` is updated after the VAE."""
  batch_size = exp.config.train.batch_size
  objective = exp.objective
  micro_batches = exp.config.train.micro_batches

  def member_step(params, opt_state, aux, hparams, key, step):
    _, run_key = split_member_key(key)
    step_key = jax.random.fold_in(run_key, step)
    data_key, noise_key, aux_key = jax.random.split(step_key, 3)
    if objective.sample_batch is not None:
      x = objective.sample_batch(exp.dataset, hparams, run_key, data_key,
                                 batch_size)
    else:
      _, x = exp.dataset.sample(data_key, batch_size)
    control = None
    if objective.model_control is not None:
      control = objective.model_control(
          hparams, step, jax.random.fold_in(step_key, CONTROL_STREAM))

    def loss_fn(p, x, noise):
      output = exp.model.apply({"params": p}, x, noise, control)
      loss, metrics = objective.loss(output, x, hparams, step, aux)
      return loss, (metrics, output)

    if micro_batches == 1:
      grads, (metrics, output) = jax.grad(loss_fn, has_aux=True)(
          params, x, noise_key)
    else:  # objectives with update_aux are refused by check_micro_batches
      grads, metrics = sliced_gradient(loss_fn, params, x, noise_key,
                                       micro_batches)
    updates, opt_state = exp.optimizer.update(grads, opt_state, params)
    if LEARNING_RATE in hparams:  # a learning-rate grid: Adam ran at lr 1
      updates = jax.tree.map(lambda u: u * hparams[LEARNING_RATE], updates)
    if objective.scale_updates is not None:
      updates = objective.scale_updates(updates, hparams, step)
    if objective.update_aux is not None:
      aux, aux_metrics = objective.update_aux(
          aux, jax.lax.stop_gradient(output), hparams, step, aux_key)
      metrics = {**metrics, **aux_metrics}
    return optax.apply_updates(params, updates), opt_state, aux, metrics

  return member_step


def sliced_gradient(loss_fn: Callable, params: Any, x: jax.Array,
                    noise_key: jax.Array, micro_batches: int
                    ) -> tuple[Any, dict[str, jax.Array]]:
  """(gradient, metrics) of a per-example-mean loss over the batch `x`,
  accumulated over `micro_batches` equal slices in a loop: the mean of the
  slices' gradients and metrics, with the whole batch's noise
  (`BatchRows`), so it is the whole batch's up to float summation order.
  On a CPU a slice's activations stay in cache: ~10-15% faster at 64x64
  and batch 64-256, slower at 32x32 and batch 32 (BUILD_NOTES, issue 8)."""
  batch_size = x.shape[0]
  size = batch_size // micro_batches
  slices = x.reshape(micro_batches, size, *x.shape[1:])
  grad_fn = jax.grad(lambda p, xs, rows: _without_output(loss_fn(p, xs, rows)),
                     has_aux=True)

  def add_slice(total, inputs):
    index, xs = inputs
    rows = BatchRows(noise_key, index * size, batch_size)
    grads, metrics = grad_fn(params, xs, rows)
    return jax.tree.map(jnp.add, total, grads), metrics

  zeros = jax.tree.map(jnp.zeros_like, params)
  total, metrics = jax.lax.scan(add_slice, zeros,
                                (jnp.arange(micro_batches), slices))
  return (jax.tree.map(lambda g: g / micro_batches, total),
          jax.tree.map(lambda m: m.mean(axis=0), metrics))


def _without_output(loss_and_aux: tuple) -> tuple:
  loss, (metrics, _) = loss_and_aux
  return loss, metrics


def isolate_divergence(member_step: Callable) -> Callable:
  """`member_step` that freezes a member at its first non-finite step.

  If the loss or any updated parameter, optimiser or objective state is not
  finite, the member keeps its previous state and `diverged_at` records the
  step; a frozen member stays frozen.  A healthy member's update passes
  through unchanged (`where` with a true condition), so the other members'
  results do not depend on whether one diverged."""

  def guarded(params, opt_state, aux, diverged_at, hparams, key, step):
    new = member_step(params, opt_state, aux, hparams, key, step)
    *new_state, metrics = new
    finite = jnp.isfinite(metrics["loss"]) & all_finite(new_state)
    healthy = diverged_at < 0
    keep = healthy & finite
    params, opt_state, aux = jax.tree.map(
        lambda updated, old: jnp.where(keep, updated, old),
        tuple(new_state), (params, opt_state, aux))
    diverged_at = jnp.where(healthy & ~finite, step, diverged_at)
    return params, opt_state, aux, diverged_at, metrics

  return guarded


def all_finite(tree: Any) -> jax.Array:
  """Whether every float in `tree` is finite: one reduction over its
  leaves concatenated.  A reduction per leaf compiles to its own XLA:CPU
  kernels (~40 leaves with Adam's moments), which made this check ~40% of
  a train step's compile time (BUILD_NOTES, issue 8, eighth session); the
  step's run time is unchanged."""
  leaves = [jnp.ravel(leaf) for leaf in jax.tree.leaves(tree)
            if jnp.issubdtype(leaf.dtype, jnp.inexact)]
  if not leaves:
    return jnp.bool_(True)
  return jnp.all(jnp.isfinite(jnp.concatenate(leaves)))


def _carry_of(state: TrainState) -> tuple:
  """The loop carry of a train state: (params, opt_state, aux, diverged_at,
  step)."""
  return (state.params, state.opt_state, state.aux, state.diverged_at,
          state.step)


def _state_of(carry: tuple) -> TrainState:
  params, opt_state, aux, diverged_at, step = carry
  return TrainState(step, params, opt_state, diverged_at, aux)


def make_train_chunk(exp: Experiment,
                     layout: sharding.MemberLayout | None = None) -> Callable:
  """(state, hparams, keys, num_steps) -> (state, chunk-mean metrics [M]).

  Members are split over `layout`'s devices (default: one device), each
  device stepping its own block.  With loop 'scan' the whole chunk is one
  jitted lax.scan (one host round trip per chunk).  XLA:CPU runs
  convolutions inside loops about 20x slower than outside them, so 'host'
  instead jits one step of all members and dispatches it num_steps times
  from Python: the same computation, for CPUs.  Member execution
  'sequential' jits one member's step instead (`sequential_chunk`).
  """
  layout = layout or single_device(exp)
  if exp.member_execution == "sequential":
    return sequential_chunk(exp)
  in_axes = (0, 0, 0, 0, 0, 0, None)
  all_members_step = sharding.over_devices(
      over_members(isolate_divergence(make_member_step(exp)),
                   exp.member_execution, in_axes=in_axes),
      layout, in_axes)

  def step_fn(carry, _, hparams, keys):
    params, opt_state, aux, diverged_at, step = carry
    params, opt_state, aux, diverged_at, metrics = all_members_step(
        params, opt_state, aux, diverged_at, hparams, keys, step)
    return (params, opt_state, aux, diverged_at, step + 1), metrics

  @functools.partial(jax.jit, static_argnames="num_steps",
                     donate_argnames="state")
  def scan_chunk(state: TrainState, hparams, keys, num_steps: int):
    carry, metrics = jax.lax.scan(
        functools.partial(step_fn, hparams=hparams, keys=keys),
        _carry_of(state), length=num_steps)
    metrics = jax.tree.map(lambda m: m.mean(axis=0), metrics)
    return _state_of(carry), metrics

  # Jitted so that zero_metric_sums' shape query and host_step share one
  # trace of the step (XLA inlines the nested call).
  traced_step = jax.jit(step_fn)

  @functools.partial(jax.jit, donate_argnums=0)
  def host_step(carry, metric_sums, hparams, keys):
    carry, metrics = traced_step(carry, None, hparams, keys)
    return carry, jax.tree.map(jnp.add, metric_sums, metrics)

  @functools.partial(jax.jit, out_shardings=layout.members)
  def zero_metric_sums(carry, hparams, keys):
    metric_shapes = jax.eval_shape(traced_step, carry, None, hparams,
                                   keys)[1]
    return jax.tree.map(lambda m: jnp.zeros(m.shape, m.dtype), metric_shapes)

  def host_chunk(state: TrainState, hparams, keys, num_steps: int):
    carry = _carry_of(state)
    sums = zero_metric_sums(carry, hparams, keys)
    for _ in range(num_steps):
      carry, sums = host_step(carry, sums, hparams, keys)
    metrics = jax.tree.map(lambda m: m / num_steps, sums)
    return _state_of(carry), metrics

  loops = {"scan": scan_chunk, "host": host_chunk}
  return loops[exp.loop]


def _member_of(stacked: jax.Array, member: jax.Array) -> jax.Array:
  """Row `member` of a member-stacked array (a dynamic slice: the update
  back is then a dynamic-update-slice, done in place in a donated buffer,
  where `.at[].set` would lower to a scatter)."""
  return jax.lax.dynamic_index_in_dim(stacked, member, 0, keepdims=False)


def sequential_chunk(exp: Experiment) -> Callable:
  """make_train_chunk's chunk, one member per dispatch: a program of one
  member's step (compiled once, whatever the number of members) reads
  member m from the stacked state and writes it back in place (the state is
  donated), for m = 0 .. M-1, then the step counter advances.  Each member
  computes what it computes in the other executions; the compile time no
  longer grows with M (unrolling 50 members compiled for 15.6 min on a
  2-core VM, BUILD_NOTES issue 8 item 2)."""
  member_step = isolate_divergence(make_member_step(exp))

  @jax.jit  # one trace, shared by step_member and zero_metric_sums
  def update(carry, hparams, keys, member):
    """(member's new params, opt_state, aux, diverged_at; its metrics)."""
    *stacked, step = carry
    mine = jax.tree.map(lambda leaf: _member_of(leaf, member),
                        (*stacked, hparams, keys))
    *new_state, metrics = member_step(*mine, step)
    return tuple(new_state), metrics

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step_member(carry, metric_sums, hparams, keys, member):
    new_state, metrics = update(carry, hparams, keys, member)
    stacked = jax.tree.map(
        lambda all_, one: jax.lax.dynamic_update_index_in_dim(
            all_, one, member, 0), tuple(carry[:4]), new_state)
    metric_sums = jax.tree.map(
        lambda all_, one: jax.lax.dynamic_update_index_in_dim(
            all_, _member_of(all_, member) + one, member, 0),
        metric_sums, metrics)
    return (*stacked, carry[4]), metric_sums

  @jax.jit
  def zero_metric_sums(carry, hparams, keys):
    members = carry[3].shape[0]  # diverged_at [M]
    shapes = jax.eval_shape(update, carry, hparams, keys, 0)[1]
    return jax.tree.map(lambda m: jnp.zeros((members, *m.shape), m.dtype),
                        shapes)

  def chunk(state: TrainState, hparams, keys, num_steps: int):
    carry = _carry_of(state)
    members = state.diverged_at.shape[0]
    sums = zero_metric_sums(carry, hparams, keys)
    for _ in range(num_steps):
      for member in range(members):
        carry, sums = step_member(carry, sums, hparams, keys, member)
      carry = (*carry[:4], carry[4] + 1)
    return _state_of(carry), jax.tree.map(lambda m: m / num_steps, sums)

  return chunk


def checkpoint_meta(exp: Experiment) -> dict[str, Any]:
  return {"config": config_lib.to_dict(exp.config),
          "config_hash": config_lib.config_hash(exp.config),
          "method": exp.method, "dataset": exp.dataset.name,
          "members": exp.members.table()}


def _check_same_run(saved: dict[str, Any], current: dict[str, Any],
                    workdir: str) -> None:
  saved_id, current_id = (
      config_lib.identity(config_lib.with_defaults(saved["config"])),
      config_lib.identity(current["config"]))
  if saved_id != current_id:
    differing = sorted(_diff_keys(saved_id, current_id))
    raise ValueError(
        f"{workdir} holds a run of a different config (differing keys: "
        f"{differing}); resume it with its own config or use a new --workdir")


def _diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
  keys = []
  for key in set(a) | set(b):
    if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
      keys += _diff_keys(a[key], b[key], f"{prefix}{key}.")
    elif a.get(key) != b.get(key):
      keys.append(prefix + key)
  return keys


class _SigtermFlag:
  """Records SIGTERM instead of dying, while training (main thread only)."""

  def __enter__(self) -> "_SigtermFlag":
    self.received = False
    self._previous = None
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame) -> None:
    del signum, frame
    self.received = True

  def __exit__(self, *exc_info) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def compile_advice(exp: Experiment) -> str | None:
  """A heads-up before compiling many unrolled members (compile time grows
  with their number: 50 standard-model seeds at 64x64 took 15.6 min on a
  2-core VM, BUILD_NOTES item 2), naming the alternatives; None otherwise.
  ('auto' on one CPU device trains that many members 'sequential'.)"""
  count = len(exp.members)
  if (exp.member_execution != "unroll"
      or count <= config_lib.MANY_UNROLLED_MEMBERS):
    return None
  return (f"compiling {count} unrolled members (train.member_execution="
          f"'unroll'): compile time grows with the number of members and "
          f"can take many minutes.  Faster to start: "
          f"train.member_execution='sequential' (one device: one member's "
          f"step compiled once), split the seeds into jobs (python -m "
          f"disentax.sweep, seeds_per_job), or 'vmap' (compiles once; ~3x "
          f"slower per step on CPU).")


def _report_divergence(exp: Experiment, before: np.ndarray,
                       after: np.ndarray) -> None:
  for m in np.flatnonzero((before < 0) & (after >= 0)):
    row = exp.members.table()[m]
    print(f"member {m} (seed {row['seed']}, {row['hparams']}) diverged at "
          f"step {after[m]}: frozen, the others continue", flush=True)


def train(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Trains all members of `config` in `workdir`, resuming if it has a
  checkpoint, and returns their final state.  Everything is validated
  before compiling or writing.

  Members are split over `config.train.num_devices` devices (0: all of
  every process).  On SIGTERM the run checkpoints after the current chunk
  and raises `Preempted`; rerunning resumes."""
  exp = build(config)
  layout = sharding.member_layout(len(exp.members), config.train.num_devices)
  writer = sharding.is_writer()
  meta = checkpoint_meta(exp)
  manager = checkpoint.make_manager(workdir, config.train.keep_checkpoints)
  latest = manager.latest_step()
  if latest is not None:
    _check_same_run(checkpoint.restore_meta(manager, latest), meta, workdir)

  if latest is None:
    state = init_state(exp, layout)
  else:  # restored straight into the layout; no initialisation to discard
    state = restore_members(manager, latest, exp, layout)
    if writer:
      print(f"resuming {workdir} from step {latest}", flush=True)
  start = int(state.step)
  log = tracer = None
  if writer:
    log = run_log.RunLog(run_log_path(workdir), resume_step=start)
    write_json(config_path(workdir), meta["config"])
    if config.train.trace_every:
      tracer = tracing.Tracer(exp, workdir, start)
  tracing_on = bool(config.train.trace_every)
  if tracing_on and start == 0:  # the untrained models, the series' origin
    host_params = sharding.to_host(state.params, layout)
    if tracer is not None:
      tracer(host_params, 0)

  train_chunk = make_train_chunk(exp, layout)
  advice = compile_advice(exp)
  if advice and writer and start < config.train.num_steps:
    print(advice, flush=True)
  hparams, keys = member_inputs(exp, layout)
  diverged = sharding.to_host(state.diverged_at, layout)
  total, chunk = config.train.num_steps, config.train.steps_per_chunk
  kill_after = int(os.environ.get(KILL_AFTER_STEP_ENV, -1))
  kill_during = int(os.environ.get(KILL_DURING_SAVE_ENV, -1))
  devices = (f" on {layout.num_devices} devices"
             if layout.num_devices > 1 else "")
  with tqdm(total=total, initial=start, unit="step",
            desc=f"{exp.method} x {len(exp.members)} members{devices}",
            disable=not (config.train.progress and writer)) as progress, \
      _SigtermFlag() as sigterm:
    step = start
    while step < total:
      num_steps = min(chunk, total - step)
      state, metrics = train_chunk(state, hparams, keys, num_steps)
      step += num_steps
      metrics = sharding.to_host(metrics, layout)
      now_diverged = sharding.to_host(state.diverged_at, layout)
      postfix = dict(loss=f"{np.nanmean(metrics['loss']):.2f}",
                     kl=f"{np.nanmean(metrics['kl']):.2f}")
      if np.any(now_diverged >= 0):
        postfix["diverged"] = int(np.sum(now_diverged >= 0))
      if tracing_on and step % config.train.trace_every == 0:
        host_params = sharding.to_host(state.params, layout)
        if tracer is not None:
          point = tracer(host_params, step)
          postfix["mig"] = f"{np.nanmedian(point['mig']):.2f}"
      if writer:
        log.append(step, metrics)
        _report_divergence(exp, diverged, now_diverged)
      diverged = now_diverged
      progress.update(num_steps)
      progress.set_postfix(**postfix)
      stop = sharding.any_process(sigterm.received)
      if step % config.train.checkpoint_every == 0 or step == total or stop:
        checkpoint.save(manager, step, state, meta)
        if step == kill_during:  # the save is still being written
          os.kill(os.getpid(), signal.SIGKILL)
        if step == kill_after:
          manager.wait_until_finished()
          os.kill(os.getpid(), signal.SIGKILL)
      if stop and step < total:
        manager.wait_until_finished()
        manager.close()
        raise Preempted(workdir, step)
  manager.wait_until_finished()
  manager.close()
  return unpadded(state, layout)


def unpadded(state: TrainState, layout: sharding.MemberLayout) -> TrainState:
  """`state` without the padding members (the real members only)."""
  if layout.num_padded == layout.num_members:
    return state
  return jax.tree.map(
      lambda leaf: leaf[:layout.num_members]
      if leaf.ndim and leaf.shape[0] == layout.num_padded else leaf, state)
