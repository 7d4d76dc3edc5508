"""Training: seeds are real, vmapping is transparent, runs are reproducible
and a killed run resumes to exactly the uninterrupted result."""

import json
import os
import shutil

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from disentax import backend, checkpoint, run_log
from disentax.experiment import build, member_hparams
from disentax.training import layouts, train_state, trainer
from disentax.training.layouts import over_members
from disentax.training.step import make_member_step
from disentax.workdir import run_log_path
from experiments import cascade_vae as cascade_config
from tests.conftest import run_killed, run_module, tiny_config


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
  """The tiny config trained once, uninterrupted: (final state, workdir)."""
  workdir = str(tmp_path_factory.mktemp("straight"))
  return trainer.train(tiny_config(), workdir), workdir


def member_params(state, member):
  return jax.tree.map(lambda leaf: np.asarray(leaf[member]), state.params)


def assert_trees(a, b, **tolerance):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, **tolerance)


def test_members_are_hparam_major_product_of_grid_and_seeds():
  exp = build(tiny_config(objective__beta=(1.0, 4.0, 8.0), num_seeds=2,
                          first_seed=5))
  assert [m["seed"] for m in exp.members.table()] == [5, 6] * 3
  assert [m["hparams"]["beta"] for m in exp.members.table()] == [
      1, 1, 4, 4, 8, 8]


def test_different_seeds_start_from_different_parameters():
  state = train_state.init_state(build(tiny_config(objective__beta=(1.0,),
                                             num_seeds=3)))
  kernels = [leaf for leaf in jax.tree.leaves(state.params) if leaf.ndim > 2]
  for leaf in kernels:
    for a in range(3):
      for b in range(a + 1, 3):
        assert not np.allclose(leaf[a], leaf[b]), "seeds share an init"


def test_same_seed_different_beta_shares_init_but_not_training(straight_run):
  # Members 0 and 2 of the tiny run: seed 0 at beta 1 and at beta 4.
  init = train_state.init_state(build(tiny_config()))
  assert_trees(member_params(init, 0), member_params(init, 2), rtol=0, atol=0)
  final, _ = straight_run
  with pytest.raises(AssertionError):
    assert_trees(member_params(final, 0), member_params(final, 2), atol=1e-6)


def test_seed_in_a_vmapped_batch_matches_seed_trained_alone(tmp_path,
                                                            straight_run):
  # Member 1 of the tiny run (beta 1, seed 1; vmapped with three others).
  together, _ = straight_run
  alone = trainer.train(tiny_config(objective__beta=(1.0,), num_seeds=1,
                                  first_seed=1), str(tmp_path / "alone"))
  # Vmapping turns convolutions into grouped ones, which XLA may sum in a
  # different order: equal up to float32 rounding after 20 Adam steps.
  assert_trees(member_params(together, 1), member_params(alone, 0),
               rtol=1e-4, atol=1e-5)


def test_two_runs_of_one_config_are_identical(tmp_path, straight_run):
  first, first_dir = straight_run
  second = trainer.train(tiny_config(), str(tmp_path / "b"))
  assert_trees(first.params, second.params, rtol=0, atol=0)
  lines_a = run_log.read_lines(run_log_path(first_dir))
  lines_b = run_log.read_lines(run_log_path(str(tmp_path / "b")))
  assert lines_a == lines_b
  assert [l["step"] for l in lines_a] == [5, 10, 15, 20]
  assert all(len(l["loss"]) == 4 for l in lines_a)  # one value per member


def test_training_reduces_the_loss_of_every_member(tmp_path):
  trainer.train(tiny_config(train__num_steps=60, train__checkpoint_every=60,
                          train__learning_rate=1e-3), str(tmp_path))
  lines = run_log.read_lines(run_log_path(str(tmp_path)))
  first, last = np.array(lines[0]["loss"]), np.array(lines[-1]["loss"])
  assert np.all(last < 0.8 * first), (first, last)


# Slow: test_fault_tolerance's SIGKILL during a save checks the same (a
# resumed run equals the uninterrupted one, log included) from a harder
# point (a half-written checkpoint and log lines past it); this one kills
# between chunks, two more processes for CI.
@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path,
                                                        straight_run):
  workdir = str(tmp_path / "killed")
  args = ("--config=experiments/beta_vae.py:tiny", f"--workdir={workdir}",
          "--noevaluate")
  killed = run_killed(workdir, 10, during_save=False)
  assert killed.returncode == -9, killed.stderr
  manager, step = checkpoint.latest_step_or_fail(workdir)
  assert step == 10
  run_module("disentax.main", *args)
  uninterrupted, straight_dir = straight_run

  exp = build(tiny_config())
  manager, step = checkpoint.latest_step_or_fail(workdir)
  assert step == 20
  resumed = checkpoint.restore_state(
      manager, step, jax.eval_shape(lambda: train_state.init_state(exp)))
  assert_trees(resumed.params, uninterrupted.params, rtol=0, atol=0)
  assert_trees(resumed.opt_state, uninterrupted.opt_state, rtol=0, atol=0)
  # The log describes one history: each chunk once, as in a straight run.
  assert (run_log.read_lines(run_log_path(workdir)) ==
          run_log.read_lines(run_log_path(straight_dir)))


def test_rerun_of_a_finished_run_trains_nothing_and_extending_continues(
    tmp_path, straight_run):
  shutil.copytree(straight_run[1], tmp_path, dirs_exist_ok=True)
  again = trainer.train(tiny_config(), str(tmp_path))
  assert int(again.step) == 20
  longer = trainer.train(tiny_config(train__num_steps=30), str(tmp_path))
  assert int(longer.step) == 30
  straight = trainer.train(tiny_config(train__num_steps=30),
                         str(tmp_path / "straight"))
  assert_trees(longer.params, straight.params, rtol=0, atol=0)


def test_resuming_with_a_different_config_is_refused(tmp_path, straight_run):
  shutil.copytree(straight_run[1], tmp_path, dirs_exist_ok=True)
  before = sorted(os.listdir(tmp_path / "checkpoints"))
  with pytest.raises(ValueError, match=r"different config.*objective.beta"):
    trainer.train(tiny_config(objective__beta=(2.0,)), str(tmp_path))
  assert sorted(os.listdir(tmp_path / "checkpoints")) == before
  assert json.load(open(tmp_path / "config.json"))["objective"]["beta"] == [
      1.0, 4.0]


def test_cpu_execution_mode_computes_the_same_training(tmp_path):
  """unroll/host (the cpu preset's layout) vs the default vmap/scan."""
  # One beta x 2 seeds, one chunk: XLA:CPU runs the scan reference slowly.
  def run(execution, loop):
    return trainer.train(tiny_config(objective__beta=(4.0,), train__num_steps=5,
                                   train__checkpoint_every=5,
                                   train__member_execution=execution,
                                   train__loop=loop),
                       str(tmp_path / f"{execution}_{loop}"))
  reference, other = run("vmap", "scan"), run("unroll", "host")
  # Same function; XLA may fuse and order float32 sums differently.
  assert_trees(other.params, reference.params, rtol=1e-4, atol=1e-5)


def test_sequential_members_train_as_vmapped_ones(tmp_path):
  """One member's step per dispatch, in place in the stacked state: the
  same training as one program of all members, chunk metrics included.
  (The reference is vmapped: unrolled, its four copies of the step cost a
  minute of compilation; test_cpu_execution_mode_computes_the_same_training
  checks unrolled members against vmapped ones.)"""
  def run(execution):
    workdir = str(tmp_path / execution)
    state = trainer.train(tiny_config(
        objective__beta=(1.0, 4.0), num_seeds=2, train__num_steps=4,
        train__steps_per_chunk=2, train__checkpoint_every=4,
        train__member_execution=execution, train__loop="host"), workdir)
    rows = [json.loads(line) for line in open(
        run_log_path(workdir))]
    return state, rows
  (reference, reference_rows), (state, rows) = run("vmap"), run(
      "sequential")
  assert int(state.step) == 4
  np.testing.assert_array_equal(state.diverged_at, [-1] * 4)
  assert_trees(state.params, reference.params, rtol=1e-4, atol=1e-5)
  assert_trees(state.opt_state, reference.opt_state, rtol=1e-4, atol=1e-5)
  assert [r["step"] for r in rows] == [r["step"] for r in reference_rows]
  assert_trees([r["loss"] for r in rows],
               [r["loss"] for r in reference_rows], rtol=1e-5)


def test_over_members_executions_compute_the_same_function():
  # Evaluation and tracing map forward passes over members; 'sequential'
  # (a train-loop choice) unrolls there.
  def fn(w, b, x):
    return jnp.tanh(x @ w) + b
  w = jnp.arange(24.0).reshape(3, 4, 2) / 10
  b = jnp.arange(6.0).reshape(3, 2)
  x = jnp.ones((5, 4))
  expected = jnp.stack([fn(w[m], b[m], x) for m in range(3)])
  for execution in ("vmap", "unroll", "sequential"):
    got = over_members(fn, execution, in_axes=(0, 0, None))(w, b, x)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
  with pytest.raises(ValueError, match="'auto'"):
    over_members(fn, "auto", in_axes=(0, 0, None))


def test_auto_member_execution_by_backend_members_and_devices(monkeypatch):
  def resolved(num_members, **train_options):
    options = {"member_execution": "auto", "loop": "auto", **train_options}
    section = tiny_config(**{f"train__{k}": v for k, v in
                             options.items()}).train
    layout = layouts.resolve(section, num_members,
                             build(tiny_config()).objective)
    return layout.members, layout.loop
  limit = layouts.MANY_UNROLLED_MEMBERS
  if backend.on_cpu() and jax.device_count() == 1:
    assert resolved(limit) == ("unroll", "host")
    assert resolved(limit + 1) == ("sequential", "host")
  with pytest.raises(ValueError, match=r"'sequential'.*loop 'host'.*'scan'"):
    resolved(2, member_execution="sequential", loop="scan")
  with pytest.raises(ValueError, match=r"one device.*got 2, 2 device"):
    resolved(2, member_execution="sequential", num_devices=2)
  monkeypatch.setattr(backend, "on_cpu", lambda: False)
  assert resolved(limit + 1) == ("vmap", "scan")
  assert resolved(limit + 1, member_execution="sequential") == (
      "sequential", "host")


def test_many_unrolled_members_get_a_compile_heads_up():
  def advice(execution, seeds):
    exp = build(tiny_config(objective__beta=(4.0,), num_seeds=seeds,
                            train__member_execution=execution))
    return layouts.compile_advice(exp.layout, len(exp.members))
  limit = layouts.MANY_UNROLLED_MEMBERS
  assert advice("unroll", limit) is None
  assert advice("vmap", limit + 1) is None
  assert advice("sequential", limit + 1) is None
  message = advice("unroll", limit + 1)
  assert message.startswith(f"compiling {limit + 1} unrolled members")
  assert "seeds_per_job" in message and "'sequential'" in message


def test_staircase_learning_rate_decay_values():
  """CascadeVAE-C's schedule: 1e-4, x0.3 every 50k steps."""
  from disentax.experiment import learning_rate_schedule
  schedule = learning_rate_schedule(tiny_config(
      train__learning_rate=1e-4, train__lr_decay_factor=0.3,
      train__lr_decay_every=50_000).train)
  for step, expected in [(0, 1e-4), (49_999, 1e-4), (50_000, 3e-5),
                         (149_999, 9e-6), (150_000, 2.7e-6)]:
    np.testing.assert_allclose(float(schedule(step)), expected, rtol=1e-5)
  constant = learning_rate_schedule(tiny_config(train__learning_rate=1e-3).train)
  assert float(constant(10**6)) == pytest.approx(1e-3)


# ------------------------------------------------ CascadeVAE's optimiser


def adam_state(opt_state):
  """The one optax.ScaleByAdamState inside an optimiser state."""
  found = [node for node in jax.tree.leaves(
      opt_state, is_leaf=lambda n: isinstance(n, optax.ScaleByAdamState))
           if isinstance(node, optax.ScaleByAdamState)]
  assert len(found) == 1
  return found[0]


def schedule_count(opt_state):
  found = [node for node in jax.tree.leaves(
      opt_state, is_leaf=lambda n: isinstance(n, optax.ScaleByScheduleState))
           if isinstance(node, optax.ScaleByScheduleState)]
  assert len(found) == 1
  return int(found[0].count)


def with_adam_state(opt_state, adam, count=None):
  """`opt_state` with its Adam state replaced by `adam` and, if given, the
  learning-rate schedule's count set to `count`."""
  def replace(node):
    if isinstance(node, optax.ScaleByAdamState):
      return adam
    if isinstance(node, optax.ScaleByScheduleState) and count is not None:
      return optax.ScaleByScheduleState(jnp.int32(count))
    return node
  return jax.tree.map(replace, opt_state, is_leaf=lambda n: isinstance(
      n, (optax.ScaleByAdamState, optax.ScaleByScheduleState)))


def first_member(exp):
  """(member 0's state, hyperparameters, key) of a fresh `exp`."""
  state = train_state.init_state(exp)
  member = jax.tree.map(lambda leaf: leaf[0], state.members)
  hparams = {k: v[0] for k, v in member_hparams(exp).items()}
  return member, hparams, exp.members.keys()[0]


def test_fresh_adam_at_every_stage_switch():
  """CascadeVAE's code trains each stage with its own, new Adam optimiser.
  With train.reset_adam_at_stage, the first step of a stage (tiny preset:
  a stage every 2 steps) runs exactly as a step from a fresh Adam state:
  count 1, mu = (1 - b1) g, nu = (1 - b2) g^2, and the update is Adam's
  first, -lr g / (|g| + eps).  The learning-rate schedule keeps counting
  the global step (x0.5 every 3 steps: lr(7) = lr / 4).  Within a stage
  nothing is reset: the step equals the step without the option."""
  config = cascade_config.get_config("tiny")
  config.train.lr_decay_factor, config.train.lr_decay_every = 0.5, 3
  plain = build(config)
  config.train.reset_adam_at_stage = True
  exp = build(config)
  member, hparams, key = first_member(exp)
  fresh = adam_state(member.opt_state)
  stale = optax.ScaleByAdamState(
      count=jnp.int32(7), mu=jax.tree.map(lambda p: p * 0 + 0.01, fresh.mu),
      nu=jax.tree.map(lambda p: p * 0 + 1e-4, fresh.nu))
  trained = member.replace(opt_state=with_adam_state(member.opt_state, stale,
                                                     count=7))
  step = jax.jit(make_member_step(exp, layouts.batch_gradient(1)))
  plain_step = jax.jit(make_member_step(plain, layouts.batch_gradient(1)))

  after, _ = step(trained, hparams, key, jnp.int32(2))  # stage 0 -> 1
  restarted = trained.replace(opt_state=with_adam_state(
      trained.opt_state, fresh))
  expected, _ = plain_step(restarted, hparams, key, jnp.int32(2))
  for got, want in zip(jax.tree.leaves((after.params, after.opt_state)),
                       jax.tree.leaves((expected.params, expected.opt_state))):
    np.testing.assert_array_equal(got, want)
  adam = adam_state(after.opt_state)
  assert int(adam.count) == 1 and schedule_count(after.opt_state) == 8
  b1, b2 = config.train.adam_b1, config.train.adam_b2
  lr = config.train.learning_rate * 0.5 ** (7 // 3)
  for mu, nu, new, old in zip(*(jax.tree.leaves(t) for t in (
      adam.mu, adam.nu, after.params, trained.params))):
    g = np.asarray(mu, float) / (1 - b1)
    np.testing.assert_allclose(nu, (1 - b2) * g ** 2, rtol=1e-4, atol=1e-30)
    np.testing.assert_allclose(
        np.asarray(new, float) - np.asarray(old, float),
        -lr * g / (np.abs(g) + config.train.adam_eps), rtol=0, atol=1e-7)

  same_stage, _ = step(trained, hparams, key, jnp.int32(3))
  unchanged, _ = plain_step(trained, hparams, key, jnp.int32(3))
  for got, want in zip(jax.tree.leaves(same_stage),
                       jax.tree.leaves(unchanged)):
    np.testing.assert_array_equal(got, want)
  assert int(adam_state(same_stage.opt_state).count) == 8


def test_l2_regularisation_adds_scale_times_each_kernel_to_the_gradient():
  """train.l2_regularization s adds s * w to the gradient of every layer's
  kernel (encoder and decoder, conv, dense, transposed conv) and nothing to
  biases: the gradient of TF's l2_regularizer(s) = s * sum(w^2) / 2 summed
  over kernels, computed directly.  Seen through Adam's first moment after
  one update on a zero loss gradient (mu = (1 - b1) * gradient)."""
  scale = 4e-5
  exp = build(tiny_config(train__l2_regularization=scale))
  member, _, _ = first_member(exp)
  params = member.params
  zero = jax.tree.map(jnp.zeros_like, params)
  _, opt_state = jax.jit(exp.optimizer.update)(
      zero, exp.optimizer.init(params), params)
  gradient = jax.tree.map(lambda mu: mu / (1 - exp.config.train.adam_b1),
                          adam_state(opt_state).mu)

  def l2_loss(tree):
    flat = flax.traverse_util.flatten_dict(tree)
    return scale * sum(jnp.sum(w ** 2) / 2 for path, w in flat.items()
                       if path[-1] == "kernel")

  direct = jax.jit(jax.grad(l2_loss))(params)
  flat_got = flax.traverse_util.flatten_dict(gradient)
  flat_direct = flax.traverse_util.flatten_dict(direct)
  assert flat_got.keys() == flat_direct.keys()
  kernels = [path for path in flat_got if path[-1] == "kernel"]
  assert len(kernels) == 13  # 4 conv + 3 dense, 2 dense + 4 transposed conv
  assert {path[0] for path in kernels} == {"encoder", "decoder"}
  for path, value in flat_got.items():
    np.testing.assert_allclose(value, flat_direct[path], rtol=1e-5,
                               atol=1e-12)
    if path[-1] == "kernel":
      np.testing.assert_allclose(
          value, scale * np.asarray(flax.traverse_util.flatten_dict(
              params)[path]), rtol=1e-5, atol=1e-12)
      assert np.any(np.asarray(value) != 0)
    else:
      np.testing.assert_array_equal(value, 0.0)
  # Without the option the optimiser is plain Adam (saved states restore).
  plain = build(tiny_config()).optimizer.init(params)
  assert jax.tree.structure(plain) == jax.tree.structure(
      optax.adam(optax.constant_schedule(1e-4)).init(params))
