"""The member axis over devices and processes: 6 seeds on 4 devices, and
two processes training one run, give the members of a one-device run, and
their checkpoints are read by the one-device evaluator."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from disentax import checkpoint, run_log, sharding
from disentax.evaluation import job
from disentax.experiment import build
from disentax.training import train_state, trainer
from disentax.workdir import results_json_path, run_log_path
from tests.conftest import REPO, run_module, tiny_config

FOUR_CPU_DEVICES = {"XLA_FLAGS": os.environ["XLA_FLAGS"]  # conftest's
                    + " --xla_force_host_platform_device_count=4"}


def test_padding_repeats_member_zero_to_a_multiple_of_the_devices():
  np.testing.assert_array_equal(
      sharding.pad_members(np.array([[1, 2], [3, 4], [5, 6]]), 4),
      [[1, 2], [3, 4], [5, 6], [1, 2]])
  layout = sharding.member_layout(6, num_devices=1)
  assert (layout.num_members, layout.num_padded, layout.num_devices) == (
      6, 6, 1)


def test_more_devices_than_exist_is_refused_before_anything_runs():
  with pytest.raises(ValueError, match=r"num_devices=5; allowed: 0 \(all\) "
                     r"to 1"):
    sharding.member_layout(6, num_devices=5)


def sharded_runs(tmp_path, execution):
  """Final params of 6 seeds trained on 1 and on 4 (padded to 8) devices."""
  out = str(tmp_path / "params.npz")
  run_module("tests.sharded_runs", out, str(tmp_path), execution, "1,4",
             env=FOUR_CPU_DEVICES)
  with np.load(out) as saved:
    arrays = {k: saved[k] for k in saved.files}
  assert arrays["device_count"] == 4
  assert "'members': 4" in str(arrays["devices4/sharding"])  # really split
  one = sorted((k for k in arrays if k.startswith("devices1/")
                and not k.endswith("sharding")),
               key=lambda k: int(k.split("/")[1]))  # leaf order
  return [(arrays[k], arrays[k.replace("devices1", "devices4")]) for k in one]


def test_six_seeds_on_four_devices_match_one_device(tmp_path):
  pairs = sharded_runs(tmp_path, "vmap")
  for on_one, on_four in pairs:
    assert on_one.shape == on_four.shape and on_one.shape[0] == 6
    # Vmapped members run as grouped convolutions whose group count differs
    # (6 on one device, 2 per device on four): float32 rounding apart.
    np.testing.assert_allclose(on_four, on_one, rtol=1e-4, atol=1e-5)
  # The 4-device checkpoint (8 padded members) restores on this 1-device
  # process as the 6 real members.
  config = tiny_config(objective__beta=(1.0,), num_seeds=6)
  manager, step = checkpoint.latest_step_or_fail(str(tmp_path / "devices4"))
  restored = train_state.restore_members(manager, step, build(config))
  for leaf, (_, on_four) in zip(jax.tree.leaves(restored.params), pairs):
    np.testing.assert_array_equal(leaf, on_four)


@pytest.mark.slow
def test_unrolled_members_are_bit_identical_on_any_device_count(tmp_path):
  for on_one, on_four in sharded_runs(tmp_path, "unroll"):
    np.testing.assert_array_equal(on_four, on_one)


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_train_one_run_that_the_evaluator_reads(tmp_path):
  workdir = str(tmp_path / "run")
  port = free_port()
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
  processes = [subprocess.Popen(
      [sys.executable, "-m", "disentax.main",
       "--config=experiments/beta_vae.py:tiny", f"--workdir={workdir}",
       "--distributed", f"--coordinator=127.0.0.1:{port}",
       "--num_processes=2", f"--process_id={i}"],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True) for i in range(2)]
  outputs = [p.communicate(timeout=600) for p in processes]
  for p, (_, stderr) in zip(processes, outputs):
    assert p.returncode == 0, stderr[-3000:]
  assert "evaluate with" in outputs[0][0]  # process 0 only, no evaluation
  # Process 0 alone writes the log: one line per chunk, not two.
  lines = run_log.read_lines(run_log_path(workdir))
  assert [line["step"] for line in lines] == [5, 10, 15, 20]

  job.evaluate(workdir)  # in this process (the CLI: test_cli)
  with open(results_json_path(workdir)) as f:
    rows = json.load(f)["rows"]
  assert [(r["seed"], r["hparams"]["beta"], r["status"]) for r in rows] == [
      (0, 1.0, "ok"), (1, 1.0, "ok"), (0, 4.0, "ok"), (1, 4.0, "ok")]
  manager, step = checkpoint.latest_step_or_fail(workdir)
  together = train_state.restore_members(manager, step, build(tiny_config()))
  alone = trainer.train(tiny_config(), str(tmp_path / "alone"))
  for a, b in zip(jax.tree.leaves(together.params),
                  jax.tree.leaves(alone.params)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
