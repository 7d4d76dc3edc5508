"""Preemption and divergence: a SIGTERM'd run resumes to the uninterrupted
result, a SIGKILL during a save costs only that save, and a member that
diverges is frozen and reported without touching the others."""

import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from disentax import checkpoint, preemption, run_log
from disentax.evaluation import job
from disentax.experiment import build
from disentax.reporting import render, tables
from disentax.training import train_state, trainer
from disentax.training.step import all_finite, freeze_if_not_finite
from disentax.training.train_state import MemberState
from disentax.workdir import checkpoint_dir, run_log_path
from tests.conftest import REPO, run_killed, run_module, tiny_config

# 60 steps in chunks of 5 (a few seconds of stepping at the tests' XLA
# flags): long enough to be interrupted mid-run, two checkpoints.
LONG_STEPS = 60
LONG = dict(train__num_steps=LONG_STEPS,
            train__checkpoint_every=LONG_STEPS // 2)
LONG_FLAGS = ("--config=experiments/beta_vae.py:tiny", "--noevaluate",
              f"--config.train.num_steps={LONG_STEPS}",
              f"--config.train.checkpoint_every={LONG_STEPS // 2}")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  """The long tiny config trained in one go: (final state, workdir)."""
  workdir = str(tmp_path_factory.mktemp("uninterrupted"))
  return trainer.train(tiny_config(**LONG), workdir), workdir


def assert_same_run(workdir, reference):
  state, reference_dir = reference
  manager, step = checkpoint.latest_step_or_fail(workdir)
  assert step == LONG_STEPS
  resumed = train_state.restore_members(manager, step, build(tiny_config(**LONG)))
  for name in ("params", "opt_state", "diverged_at"):
    for a, b in zip(jax.tree.leaves(getattr(resumed, name)),
                    jax.tree.leaves(getattr(state, name))):
      np.testing.assert_array_equal(a, b)
  assert (run_log.read_lines(run_log_path(workdir)) ==
          run_log.read_lines(run_log_path(reference_dir)))


def test_sigterm_checkpoints_exits_and_the_rerun_equals_an_uninterrupted_run(
    tmp_path, uninterrupted):
  workdir = str(tmp_path / "run")
  log = run_log_path(workdir)
  process = subprocess.Popen(
      [sys.executable, "-m", "disentax.main", f"--workdir={workdir}",
       *LONG_FLAGS], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True, env=dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu"))
  deadline = time.monotonic() + 300
  while not (os.path.exists(log) and os.path.getsize(log)):
    assert process.poll() is None and time.monotonic() < deadline
    time.sleep(0.02)
  process.send_signal(signal.SIGTERM)  # after the first chunk, mid-run
  stdout, stderr = process.communicate(timeout=300)
  assert process.returncode == preemption.PREEMPTED_EXIT, stderr
  assert "SIGTERM" in stdout
  _, stopped_at = checkpoint.latest_step_or_fail(workdir)
  assert 5 <= stopped_at < LONG_STEPS and stopped_at % 5 == 0
  assert run_log.read_lines(log)[-1]["step"] == stopped_at

  rerun = run_module("disentax.main", f"--workdir={workdir}", *LONG_FLAGS)
  assert f"resuming {workdir} from step {stopped_at}" in rerun.stdout
  assert_same_run(workdir, uninterrupted)


def test_sigkill_during_a_save_leaves_the_previous_checkpoint_usable(
    tmp_path, uninterrupted):
  workdir = str(tmp_path / "run")
  killed = run_killed(workdir, LONG_STEPS, during_save=True, **LONG)
  assert killed.returncode == -signal.SIGKILL, killed.stderr
  leftovers = os.listdir(checkpoint_dir(workdir))
  assert any("tmp" in name for name in leftovers), leftovers  # mid-save
  _, step = checkpoint.latest_step_or_fail(workdir)
  assert step == LONG_STEPS // 2
  run_module("disentax.main", f"--workdir={workdir}", *LONG_FLAGS)
  assert_same_run(workdir, uninterrupted)


def test_a_diverging_member_is_frozen_reported_and_leaves_the_others_alone(
    tmp_path):
  # Members: (lr 1e-3, seeds 0, 1), then (lr B, seeds 0, 1).
  def run(rates, name):
    config = tiny_config(objective__beta=(1.0,), train__learning_rates=rates)
    return trainer.train(config, str(tmp_path / name))

  diverging = run((1e-3, 1e30), "diverging")
  healthy = run((1e-3, 1e-4), "healthy")
  np.testing.assert_array_equal(diverging.diverged_at[:2], [-1, -1])
  # Adam's first update moves every weight by ~1e30: the next loss is not
  # finite, so both members freeze at step 1 with finite parameters.
  np.testing.assert_array_equal(diverging.diverged_at[2:], [1, 1])
  assert all(np.isfinite(leaf).all()
             for leaf in jax.tree.leaves(diverging.params))
  np.testing.assert_array_equal(healthy.diverged_at, [-1] * 4)
  for a, b in zip(jax.tree.leaves(diverging.params),
                  jax.tree.leaves(healthy.params)):
    np.testing.assert_array_equal(a[:2], b[:2])  # bit for bit

  rows, _ = job.evaluate(str(tmp_path / "diverging"), battery="none",
                              traversals=False)
  assert [r["status"] for r in rows] == ["ok", "ok", "diverged", "diverged"]
  assert [r["diverged_at_step"] for r in rows] == [None, None, 1, 1]
  table = tables.failure_rate_table(rows, metric="mig", threshold=0.1)
  frozen = max(table, key=lambda e: e["hparams"]["learning_rate"])
  assert frozen["diverged_seeds"] == {0: 1, 1: 1}
  assert frozen["n_scored"] == 0 and frozen["n_non_finite"] == 2
  text = render.format_markdown(table, metric="mig", threshold=0.1)
  assert "diverged: seed 0 at step 1, seed 1 at step 1" in text


def test_all_finite_checks_every_float_leaf_and_ignores_integers():
  finite = {"w": np.ones((2, 3), np.float32), "b": np.zeros(3, np.float16),
            "count": np.array([2**31 - 1], np.int32)}
  assert bool(all_finite(finite))
  assert bool(all_finite({"count": np.arange(3)}))  # no float leaf
  for leaf, bad in (("w", np.inf), ("w", -np.inf), ("b", np.nan)):
    broken = jax.tree.map(np.copy, finite)
    broken[leaf].flat[-1] = bad
    assert not bool(all_finite(broken)), (leaf, bad)


def test_the_guard_freezes_a_member_whose_new_state_is_not_finite():
  """A finite loss with a non-finite updated optimiser state still freezes
  the member: the guard checks every float of the new state."""
  guard = jax.jit(freeze_if_not_finite)
  at_step = jnp.int32(7)

  def member(diverged_at, scale=1.0):
    return MemberState(params=jnp.zeros(2) + (scale != 1.0),
                       opt_state=jnp.ones(3) * scale, aux=None,
                       diverged_at=jnp.int32(diverged_at))

  old, loss = member(-1), jnp.float32(0.5)
  healthy = guard(old, member(-1, scale=2.0), loss, at_step)
  np.testing.assert_array_equal(healthy.params, [1.0, 1.0])
  np.testing.assert_array_equal(healthy.opt_state, [2.0, 2.0, 2.0])
  assert int(healthy.diverged_at) == -1
  frozen = guard(old, member(-1, scale=jnp.inf), loss, at_step)
  np.testing.assert_array_equal(frozen.params, old.params)  # the previous
  np.testing.assert_array_equal(frozen.opt_state, old.opt_state)
  assert int(frozen.diverged_at) == 7
  # A non-finite loss alone freezes it too.
  assert int(guard(old, member(-1, scale=2.0), jnp.float32(jnp.nan),
                   at_step).diverged_at) == 7
  # A frozen member stays frozen, at its first divergence step.
  again = guard(member(3), member(3, scale=2.0), loss, at_step)
  np.testing.assert_array_equal(again.params, old.params)
  assert int(again.diverged_at) == 3


def test_sequential_members_freeze_a_diverging_member_alone(tmp_path):
  # As above, one member's step per dispatch (layout 'sequential').
  def run(rates, name):
    config = tiny_config(objective__beta=(1.0,), train__learning_rates=rates,
                         train__num_steps=5, train__checkpoint_every=5,
                         train__member_execution="sequential",
                         train__loop="host")
    return trainer.train(config, str(tmp_path / name))

  diverging = run((1e-3, 1e30), "diverging")
  healthy = run((1e-3, 1e-4), "healthy")
  np.testing.assert_array_equal(diverging.diverged_at, [-1, -1, 1, 1])
  np.testing.assert_array_equal(healthy.diverged_at, [-1] * 4)
  assert all(np.isfinite(leaf).all()
             for leaf in jax.tree.leaves(diverging.params))
  for a, b in zip(jax.tree.leaves(diverging.params),
                  jax.tree.leaves(healthy.params)):
    np.testing.assert_array_equal(a[:2], b[:2])  # bit for bit


def test_a_checkpoint_from_before_divergence_tracking_restores_and_resumes(
    tmp_path):
  """Runs written before train.learning_rates / num_devices and the
  diverged_at leaf existed still evaluate and resume: missing config keys
  take their defaults and every member counts as healthy."""
  from disentax import config as config_lib
  config = tiny_config(train__num_steps=5, train__checkpoint_every=5)
  exp = build(config)
  state = train_state.init_state(exp)
  meta = trainer.checkpoint_meta(exp)
  for key in ("learning_rates", "num_devices"):
    del meta["config"]["train"][key]
  manager = checkpoint.make_manager(str(tmp_path))
  checkpoint.save(manager, 5, {"step": state.step + 5, "params": state.params,
                               "opt_state": state.opt_state, "aux": None},
                  meta)
  manager.wait_until_finished()
  manager.close()

  manager, step = checkpoint.latest_step_or_fail(str(tmp_path))
  saved = build(config_lib.from_dict(checkpoint.restore_meta(manager,
                                                             step)["config"]))
  restored = train_state.restore_members(manager, step, saved)
  np.testing.assert_array_equal(restored.diverged_at, [-1] * 4)
  for a, b in zip(jax.tree.leaves(restored.params),
                  jax.tree.leaves(state.params)):
    np.testing.assert_array_equal(a, b)
  resumed = trainer.train(tiny_config(train__num_steps=10,
                                    train__checkpoint_every=5), str(tmp_path))
  assert int(resumed.step) == 10
