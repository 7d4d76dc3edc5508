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
from disentax import run_log, tracing
from disentax.experiment import (Experiment, build, member_hparams,
                                 over_members)

# Test hook: SIGKILL this process right after the checkpoint of this step has
# been written, to prove that a killed run resumes exactly.
KILL_AFTER_STEP_ENV = "DISENTAX_TEST_KILL_AFTER_STEP"
# fold_in constant of the per-step key that draws an objective's model control
# (independent of the data/noise/aux keys split from the same step key).
CONTROL_STREAM = 3


@flax.struct.dataclass
class TrainState:
  step: jax.Array   # scalar int32, shared by all members
  params: Any       # every leaf stacked over members, [M, ...]
  opt_state: Any    # likewise
  aux: Any = None   # the objective's own per-member state, likewise


def split_member_key(key: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(init key, run key) of a member's root key."""
  init_key, run_key = jax.random.split(key)
  return init_key, run_key


def init_state(exp: Experiment) -> TrainState:
  """Fresh parameters for every member, each from its own seed."""
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

  params, opt_state, aux = jax.jit(jax.vmap(init_member))(exp.members.keys())
  return TrainState(jnp.zeros((), jnp.int32), params, opt_state, aux)


def make_member_step(exp: Experiment) -> Callable:
  """The pure train step of one member: (params, opt_state, aux, hparams,
  key, step) -> (params, opt_state, aux, metrics).  Its batch is drawn on the
  device; the objective's own state `aux` is updated after the VAE."""
  batch_size = exp.config.train.batch_size
  objective = exp.objective

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

    def loss_fn(p):
      output = exp.model.apply({"params": p}, x, noise_key, control)
      loss, metrics = objective.loss(output, x, hparams, step, aux)
      return loss, (metrics, output)

    grads, (metrics, output) = jax.grad(loss_fn, has_aux=True)(params)
    updates, opt_state = exp.optimizer.update(grads, opt_state, params)
    if objective.scale_updates is not None:
      updates = objective.scale_updates(updates, hparams, step)
    if objective.update_aux is not None:
      aux, aux_metrics = objective.update_aux(
          aux, jax.lax.stop_gradient(output), hparams, step, aux_key)
      metrics = {**metrics, **aux_metrics}
    return optax.apply_updates(params, updates), opt_state, aux, metrics

  return member_step


def make_train_chunk(exp: Experiment) -> Callable:
  """(state, hparams, keys, num_steps) -> (state, chunk-mean metrics [M]).

  With loop 'scan' the whole chunk is one jitted lax.scan (one host
  round trip per chunk).  XLA:CPU runs convolutions inside loops about 20x
  slower than outside them, so 'host' instead jits one step of all members
  and dispatches it num_steps times from Python: the same computation, for
  CPUs.
  """
  all_members_step = over_members(make_member_step(exp),
                                  exp.member_execution,
                                  in_axes=(0, 0, 0, 0, 0, None))

  def step_fn(carry, _, hparams, keys):
    params, opt_state, aux, step = carry
    params, opt_state, aux, metrics = all_members_step(
        params, opt_state, aux, hparams, keys, step)
    return (params, opt_state, aux, step + 1), metrics

  @functools.partial(jax.jit, static_argnames="num_steps",
                     donate_argnames="state")
  def scan_chunk(state: TrainState, hparams, keys, num_steps: int):
    (params, opt_state, aux, step), metrics = jax.lax.scan(
        functools.partial(step_fn, hparams=hparams, keys=keys),
        (state.params, state.opt_state, state.aux, state.step),
        length=num_steps)
    metrics = jax.tree.map(lambda m: m.mean(axis=0), metrics)
    return TrainState(step, params, opt_state, aux), metrics

  @functools.partial(jax.jit, donate_argnums=0)
  def host_step(carry, metric_sums, hparams, keys):
    carry, metrics = step_fn(carry, None, hparams, keys)
    return carry, jax.tree.map(jnp.add, metric_sums, metrics)

  def host_chunk(state: TrainState, hparams, keys, num_steps: int):
    carry = (state.params, state.opt_state, state.aux, state.step)
    sums = jax.tree.map(
        lambda m: jnp.zeros(m.shape, m.dtype),
        jax.eval_shape(step_fn, carry, None, hparams, keys)[1])
    for _ in range(num_steps):
      carry, sums = host_step(carry, sums, hparams, keys)
    metrics = jax.tree.map(lambda m: m / num_steps, sums)
    params, opt_state, aux, step = carry
    return TrainState(step, params, opt_state, aux), metrics

  loops = {"scan": scan_chunk, "host": host_chunk}
  return loops[exp.loop]


def checkpoint_meta(exp: Experiment) -> dict[str, Any]:
  return {"config": config_lib.to_dict(exp.config),
          "config_hash": config_lib.config_hash(exp.config),
          "method": exp.method, "dataset": exp.dataset.name,
          "members": exp.members.table()}


def _check_same_run(saved: dict[str, Any], current: dict[str, Any],
                    workdir: str) -> None:
  saved_id, current_id = (config_lib.identity(saved["config"]),
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


def train(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Trains all members of `config` in `workdir`, resuming if it has a
  checkpoint.  Everything is validated before compiling or writing."""
  exp = build(config)
  meta = checkpoint_meta(exp)
  manager = checkpoint.make_manager(workdir, config.train.keep_checkpoints)
  latest = manager.latest_step()
  if latest is not None:
    _check_same_run(checkpoint.restore_meta(manager, latest), meta, workdir)

  state = init_state(exp)
  if latest is not None:
    state = checkpoint.restore_state(manager, latest, state)
    print(f"resuming {workdir} from step {latest}", flush=True)
  start = int(state.step)
  log = run_log.RunLog(os.path.join(workdir, run_log.FILENAME),
                       resume_step=start)
  run_log.write_json(os.path.join(workdir, "config.json"), meta["config"])

  train_chunk = make_train_chunk(exp)
  tracer = tracing.Tracer(exp, workdir, start) if config.train.trace_every \
      else None
  if tracer is not None and start == 0:
    tracer(state.params, 0)  # the untrained models, the series' origin
  hparams = member_hparams(exp)
  keys = exp.members.keys()
  total, chunk = config.train.num_steps, config.train.steps_per_chunk
  kill_after = int(os.environ.get(KILL_AFTER_STEP_ENV, -1))
  with tqdm(total=total, initial=start, unit="step",
            desc=f"{exp.method} x {len(exp.members)} members",
            disable=not config.train.progress) as progress:
    step = start
    while step < total:
      num_steps = min(chunk, total - step)
      state, metrics = train_chunk(state, hparams, keys, num_steps)
      step += num_steps
      metrics = jax.tree.map(np.asarray, metrics)
      log.append(step, metrics)
      progress.update(num_steps)
      postfix = dict(loss=f"{np.nanmean(metrics['loss']):.2f}",
                     kl=f"{np.nanmean(metrics['kl']):.2f}")
      if tracer is not None and tracer.due(step):
        point = tracer(state.params, step)
        postfix["mig"] = f"{np.nanmedian(point['mig']):.2f}"
      progress.set_postfix(**postfix)
      if step % config.train.checkpoint_every == 0 or step == total:
        checkpoint.save(manager, step, state, meta)
        if step == kill_after:
          manager.wait_until_finished()
          os.kill(os.getpid(), signal.SIGKILL)
  manager.wait_until_finished()
  manager.close()
  return state
