"""One writer per workdir, and recovery from what a killed process, a full
disk or a failing disk leaves behind: a second process on a workdir is
refused before it writes anything, a torn last log line and an unreadable
checkpoint cost only what they hold, a failed save says what is intact.

Two real processes on one workdir: the lock held by this test process
against `python -m disentax.main` / `disentax.evaluate` (in CI), and two
`python -m disentax.main` started together or one mid-run (slow).
"""

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from disentax import checkpoint, run_log
from disentax import workdir as workdir_lib
from disentax.bench.compile import recorded_compiles
from disentax.evaluation import job
from disentax.experiment import build
from disentax.training import train_state, trainer
from disentax.workdir import checkpoint_dir, run_log_path
from tests.conftest import REPO, needs_permissions, run_module, tiny_config

# TensorStore completes the reads a failed restore abandoned after Orbax
# closed their event loop; disentax drops that noise through
# sys.unraisablehook (disentax.checkpoint), which pytest replaces per test.
pytestmark = pytest.mark.filterwarnings(
    "ignore::pytest.PytestUnraisableExceptionWarning")

TINY = "--config=experiments/beta_vae.py:tiny"
# The tiny config: 20 steps in chunks of 5, checkpoints at 10 and 20.
IN_USE = (f"workdir in use by pid {os.getpid()} on host "
          f"{socket.gethostname()} since ")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """The tiny config trained in one go: (final state, workdir)."""
  workdir = str(tmp_path_factory.mktemp("trained"))
  return trainer.train(tiny_config(), workdir), workdir


def files_of(directory):
  """{relative path: bytes} of every file under `directory`."""
  found = {}
  for path, _, names in os.walk(directory):
    for name in names:
      full = os.path.join(path, name)
      with open(full, "rb") as f:
        found[os.path.relpath(full, directory)] = f.read()
  return found


def copy_of(trained, tmp_path, name="copy"):
  target = str(tmp_path / name)
  shutil.copytree(trained[1], target)
  return target


def assert_same_training(workdir, trained):
  """`workdir` holds what the uninterrupted run left: its final state bit
  for bit, and the same log, byte for byte."""
  state, reference = trained
  manager, step = checkpoint.latest_step_or_fail(workdir)
  assert step == 20
  restored = train_state.restore_members(manager, step, build(tiny_config()))
  for name in ("params", "opt_state", "diverged_at"):
    for a, b in zip(jax.tree.leaves(getattr(restored, name)),
                    jax.tree.leaves(getattr(state, name))):
      np.testing.assert_array_equal(a, b)
  with open(run_log_path(workdir), "rb") as a, \
      open(run_log_path(reference), "rb") as b:
    assert a.read() == b.read()


# --------------------------------------------------------------------------
# The lock.


_TAKE_LOCK = """
import os, signal, sys
from disentax import workdir
lock = workdir.locked(sys.argv[1])
try:
  lock.__enter__()
except workdir.WorkdirInUse as error:
  print(error)
  sys.exit(3)
if sys.argv[2] == "die":
  os.kill(os.getpid(), signal.SIGKILL)
"""


def take_lock(workdir, then):
  return subprocess.run([sys.executable, "-c", _TAKE_LOCK, workdir, then],
                        cwd=REPO, capture_output=True, text=True, timeout=60,
                        env=dict(os.environ, PYTHONPATH=REPO))


def test_a_held_lock_refuses_other_processes_and_threads_but_not_its_holder(
    tmp_path):
  workdir = str(tmp_path / "run")
  with workdir_lib.locked(workdir):
    with open(workdir_lib.lock_path(workdir)) as f:
      record = json.load(f)
    assert (record["pid"], record["host"]) == (os.getpid(),
                                               socket.gethostname())
    other = take_lock(workdir, "release")
    assert other.returncode == 3, other.stderr
    assert other.stdout.startswith(IN_USE)
    assert f"{workdir} is written by one process at a time" in other.stdout

    refused = []

    def in_a_thread():
      try:
        with workdir_lib.locked(workdir):
          pass
      except workdir_lib.WorkdirInUse as error:
        refused.append(str(error))

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join()
    assert len(refused) == 1 and refused[0].startswith(IN_USE)
    with workdir_lib.locked(workdir):  # the holder's thread may nest
      assert os.path.exists(workdir_lib.lock_path(workdir))
    assert os.path.exists(workdir_lib.lock_path(workdir))  # still held
  assert os.listdir(workdir) == []  # let go: the lock file is gone
  assert take_lock(workdir, "release").returncode == 0


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path):
  workdir = str(tmp_path / "run")
  killed = take_lock(workdir, "die")
  assert killed.returncode == -signal.SIGKILL, killed.stderr
  with open(workdir_lib.lock_path(workdir)) as f:
    dead = json.load(f)["pid"]
  assert dead != os.getpid()
  with workdir_lib.locked(workdir):
    with open(workdir_lib.lock_path(workdir)) as f:
      assert json.load(f)["pid"] == os.getpid()
  assert os.listdir(workdir) == []


def test_a_second_run_on_a_held_workdir_is_refused_and_writes_nothing(
    trained, tmp_path):
  """A real second process (python -m disentax.main, then evaluate) on a
  workdir this process holds: refused at once, in one line naming the
  holder, exit status 1, every file as it was."""
  workdir = copy_of(trained, tmp_path)
  before = files_of(workdir)
  with workdir_lib.locked(workdir):
    lock_file = os.path.relpath(workdir_lib.lock_path(workdir), workdir)
    for module, flags in (("disentax.main", (TINY,)),
                          ("disentax.evaluate", ())):
      result = run_module(module, f"--workdir={workdir}", *flags, check=False)
      assert result.returncode == 1, result.stderr
      [line] = result.stderr.splitlines()
      assert line.startswith(f"error: {IN_USE}")
      assert line.endswith(f": {workdir} is written by one process at a "
                           "time; wait for that one to end, or use another "
                           "workdir")
      assert result.stdout == ""
      after = files_of(workdir)
      del after[lock_file]
      assert after == before, module


# --------------------------------------------------------------------------
# Recovery.


def test_a_torn_last_log_line_is_dropped_and_the_resumed_log_is_clean(
    trained, tmp_path):
  workdir = copy_of(trained, tmp_path)
  shutil.rmtree(os.path.join(checkpoint_dir(workdir), "20"))
  path = run_log_path(workdir)
  with open(path) as f:
    lines = f.readlines()
  assert [json.loads(line)["step"] for line in lines] == [5, 10, 15, 20]
  torn = lines[2][:len(lines[2]) // 2]  # step 15, cut off mid-line
  with open(path, "w") as f:
    f.writelines(lines[:2] + [torn])
  assert [line["step"] for line in run_log.read_lines(path)] == [5, 10]

  trainer.train(tiny_config(), workdir)
  assert_same_training(workdir, trained)


def test_only_the_last_log_line_may_be_torn(tmp_path):
  path = str(tmp_path / "metrics.jsonl")
  with open(path, "w") as f:
    f.write('{"step": 5}\n{"step": 1\n{"step": 15}\n')
  with pytest.raises(ValueError, match=r"metrics.jsonl: line 2 is not a log "
                     r"line .*only the last line can be cut short"):
    run_log.read_lines(path)


def corrupt(workdir, step, kind):
  """Cuts the largest data file of checkpoint `step` to half ("data") or
  writes garbage into its meta ("meta"); returns the step's files."""
  directory = os.path.join(checkpoint_dir(workdir), str(step))
  if kind == "data":
    data = [os.path.join(path, name)
            for path, _, names in os.walk(os.path.join(directory, "state"))
            for name in names if os.sep + "d" + os.sep in path + os.sep]
    largest = max(data, key=os.path.getsize)
    os.truncate(largest, os.path.getsize(largest) // 2)
  else:
    with open(os.path.join(directory, "meta", "metadata"), "w") as f:
      f.write("{garbage")
  return files_of(directory)


@pytest.mark.parametrize("kind", ["data", "meta"])
def test_training_resumes_from_the_newest_readable_checkpoint(
    trained, tmp_path, capsys, kind):
  workdir = copy_of(trained, tmp_path)
  corrupted = corrupt(workdir, 20, kind)
  trainer.train(tiny_config(), workdir)
  out = capsys.readouterr().out.splitlines()
  path = os.path.join(checkpoint_dir(workdir), "20")
  kept = os.path.join(workdir, "unreadable_checkpoints", "20")
  [line] = [l for l in out if "unreadable" in l]
  assert line.startswith(f"checkpoint step 20 at {path} is unreadable: ")
  assert line.endswith(f"; resuming from step 10 (the unreadable checkpoint "
                       f"is kept in {kept})")
  assert len(line) < 600
  assert f"resuming {workdir} from step 10" in out
  assert files_of(kept) == corrupted  # kept as it was, never deleted
  assert_same_training(workdir, trained)


def test_evaluation_scores_the_newest_readable_checkpoint_and_says_so(
    trained, tmp_path, capsys):
  workdir = copy_of(trained, tmp_path)
  corrupted = corrupt(workdir, 20, "data")
  rows, _ = job.evaluate(workdir, battery="none", traversals=False)
  out = capsys.readouterr().out.splitlines()
  path = os.path.join(checkpoint_dir(workdir), "20")
  [line] = [l for l in out if "unreadable" in l]
  assert line.startswith(f"checkpoint step 20 at {path} is unreadable: ")
  assert line.endswith("; scoring step 10 instead (the unreadable "
                       "checkpoint is left as it is)")
  assert any(l.startswith("scoring 4 members") and l.endswith(
      f"{workdir} at step 10 with ['mig']") for l in out), out
  assert {row["step"] for row in rows} == {10}
  assert files_of(path) == corrupted


def test_no_readable_checkpoint_names_each(trained, tmp_path):
  workdir = copy_of(trained, tmp_path)
  corrupt(workdir, 20, "meta")
  corrupt(workdir, 10, "meta")
  directory = checkpoint_dir(workdir)
  with pytest.raises(checkpoint.UnreadableCheckpoint) as error:
    job.evaluate(workdir, battery="none", traversals=False)
  assert str(error.value) == (
      f"checkpoint step 20 at {directory}/20 is unreadable: JSONDecodeError: "
      "Expecting property name enclosed in double quotes: line 1 column 2 "
      f"(char 1); so is step 10 at {directory}/10: JSONDecodeError: "
      "Expecting property name enclosed in double quotes: line 1 column 2 "
      "(char 1); no checkpoint left to fall back to")


def test_a_full_disk_during_a_save_names_the_step_path_and_intact_ones(
    tmp_path, monkeypatch):
  save = ocp.CheckpointManager.save

  def save_until_the_disk_fills(manager, step, *args, **kwargs):
    if step == 20:
      raise OSError(errno.ENOSPC, "No space left on device")
    return save(manager, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, "save", save_until_the_disk_fills)
  workdir = str(tmp_path / "run")
  with pytest.raises(checkpoint.SaveFailed) as error:
    trainer.train(tiny_config(), workdir)
  assert error.value.errno == errno.ENOSPC
  assert str(error.value) == (
      f"writing checkpoint step 20 to {checkpoint_dir(workdir)}/20 failed: no "
      "space left on device; intact checkpoints: step(s) 10 (rerunning "
      "resumes from step 10)")
  assert not os.path.exists(workdir_lib.lock_path(workdir))  # let go
  monkeypatch.undo()
  _, step = checkpoint.latest_step_or_fail(workdir)
  assert step == 10


@needs_permissions
def test_read_only_locations_are_refused_before_any_work(trained, tmp_path,
                                                        capsys):
  read_only = tmp_path / "read_only"
  read_only.mkdir()
  workdir = copy_of(trained, tmp_path)
  results = os.path.join(workdir, "results")
  os.makedirs(results)
  for directory in (read_only, results):
    os.chmod(directory, 0o500)
  try:
    with recorded_compiles() as compiles:
      with pytest.raises(PermissionError) as training:
        trainer.train(tiny_config(), str(read_only / "w"))
      with pytest.raises(PermissionError) as evaluation:
        job.evaluate(workdir, battery="none", traversals=False)
  finally:
    for directory in (read_only, results):
      os.chmod(directory, 0o700)
  assert not compiles.backend and not compiles.cache_hits
  assert str(training.value) == (
      f"workdir {read_only / 'w'} is not writable ({read_only / 'w' / 'lock'}"
      ": Permission denied); a run keeps its lock, checkpoints, log and "
      "results there")
  assert str(evaluation.value) == (
      f"the results directory {results} is not writable: Permission denied")
  assert capsys.readouterr().out == ""  # nothing scored
  assert os.listdir(read_only) == [] and os.listdir(results) == []


# --------------------------------------------------------------------------
# Two trainings on one workdir (real processes).


def start_main(workdir, *flags):
  return subprocess.Popen(
      [sys.executable, "-m", "disentax.main", TINY, f"--workdir={workdir}",
       *flags], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True, env=dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu"))


def outputs_of(workdir):
  """What a run leaves that must not depend on who else tried: the log,
  the config and the results, byte for byte, and the restored state."""
  found = {name: open(os.path.join(workdir, name), "rb").read()
           for name in ("metrics.jsonl", "config.json",
                        os.path.join("results", "results.json"),
                        os.path.join("results", "results.csv"))}
  manager, step = checkpoint.latest_step_or_fail(workdir)
  meta = checkpoint.restore_meta(manager, step)
  from disentax import config as config_lib
  state = train_state.restore_members(
      manager, step, build(config_lib.from_dict(meta["config"])))
  found["steps"] = manager.all_steps()
  found["state"] = [np.asarray(leaf) for leaf in jax.tree.leaves(state)]
  return found


def assert_same_outputs(a, b):
  assert a.keys() == b.keys()
  for key in a:
    if key == "state":
      for x, y in zip(a[key], b[key]):
        np.testing.assert_array_equal(x, y)
    else:
      assert a[key] == b[key], key


@pytest.mark.slow
@pytest.mark.parametrize("second", [(), ("--config.objective.beta=(16.0,)",)],
                         ids=["same_config", "different_config"])
def test_two_runs_started_together_one_is_refused(tmp_path, second):
  workdir = str(tmp_path / "run")
  processes = [start_main(workdir), start_main(workdir, *second)]
  results = [p.communicate(timeout=600) for p in processes]
  codes = sorted(p.returncode for p in processes)
  assert codes == [0, 1], results
  winner = [p.returncode for p in processes].index(0)
  [line] = results[1 - winner][1].splitlines()
  assert line.startswith(f"error: workdir in use by pid "
                         f"{processes[winner].pid} on host ")
  alone = str(tmp_path / "alone")
  run_module("disentax.main", TINY, f"--workdir={alone}",
             *([(), second][winner]))
  assert_same_outputs(outputs_of(workdir), outputs_of(alone))


@pytest.mark.slow
def test_a_second_run_started_mid_run_is_refused(tmp_path):
  workdir = str(tmp_path / "run")
  long = ("--config.train.num_steps=60", "--config.train.checkpoint_every=30")
  first = start_main(workdir, *long)
  deadline = time.monotonic() + 300
  log = run_log_path(workdir)
  while not (os.path.exists(log) and os.path.getsize(log)):
    assert first.poll() is None and time.monotonic() < deadline
    time.sleep(0.02)
  second = run_module("disentax.main", TINY, f"--workdir={workdir}", *long,
                      check=False)
  assert second.returncode == 1
  [line] = second.stderr.splitlines()
  assert line.startswith(f"error: workdir in use by pid {first.pid} on host "
                         f"{socket.gethostname()} since ")
  _, stderr = first.communicate(timeout=600)
  assert first.returncode == 0, stderr
  alone = str(tmp_path / "alone")
  run_module("disentax.main", TINY, f"--workdir={alone}", *long)
  assert_same_outputs(outputs_of(workdir), outputs_of(alone))
