"""The workdir layout (the names old workdirs were written with), the atomic
writers and what they leave when killed, and the writable check."""

import json
import os

import numpy as np
import pytest

from disentax import workdir
from tests.conftest import needs_permissions


def test_layout_names_are_those_of_existing_workdirs():
  run = os.path.join("runs", "bvae")
  assert workdir.config_path(run) == "runs/bvae/config.json"
  assert workdir.run_log_path(run) == "runs/bvae/metrics.jsonl"
  assert workdir.checkpoint_dir(run) == os.path.abspath("runs/bvae/checkpoints")
  assert workdir.trace_path(run) == "runs/bvae/trace.npz"
  assert workdir.job_path(run) == "runs/bvae/job.json"
  assert workdir.lock_path(run) == "runs/bvae/lock"
  assert workdir.unreadable_checkpoints_dir(run) == os.path.abspath(
      "runs/bvae/unreadable_checkpoints")
  assert workdir.results_dir(run) == "runs/bvae/results"
  assert workdir.results_json_path(run) == "runs/bvae/results/results.json"
  assert workdir.results_csv_path(run) == "runs/bvae/results/results.csv"
  assert workdir.arrays_path(run) == "runs/bvae/results/arrays.npz"
  assert workdir.timings_path(run) == "runs/bvae/results/timings.json"
  assert workdir.traversals_dir(run) == "runs/bvae/results/traversals"


def test_writers_create_the_directory_and_leave_no_temporary(tmp_path):
  results = tmp_path / "run" / "results"
  workdir.write_json(str(results / "a.json"), {"x": [1, 2]})
  workdir.write_text(str(results / "b.csv"), "a,b\r\n1,2\r\n")
  workdir.write_npz(str(results / "c.npz"), {"m": np.eye(2), "n": ["a"]})
  assert sorted(os.listdir(results)) == ["a.json", "b.csv", "c.npz"]
  assert json.load(open(results / "a.json")) == {"x": [1, 2]}
  with open(results / "b.csv", newline="") as f:
    assert f.read() == "a,b\r\n1,2\r\n"  # CSV line ends kept as written
  with np.load(results / "c.npz", allow_pickle=False) as data:
    np.testing.assert_array_equal(data["m"], np.eye(2))
    assert data["n"].tolist() == ["a"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
  path = str(tmp_path / "a.json")
  workdir.write_json(path, {"x": 1})
  with pytest.raises(ValueError):
    workdir.write_json(path, {"x": float("nan")})  # JSON has no NaN
  assert json.load(open(path)) == {"x": 1}
  assert os.listdir(tmp_path) == ["a.json"]


def test_read_json_says_how_to_make_a_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"no plan.json at .*; make it"):
    workdir.read_json(str(tmp_path / "plan.json"), "make it")
  (tmp_path / "bad.json").write_text("{")
  with pytest.raises(ValueError, match="bad.json is not valid JSON"):
    workdir.read_json(str(tmp_path / "bad.json"), "")


def test_a_failed_rename_leaves_no_temporary(tmp_path):
  target = tmp_path / "results.json"
  target.mkdir()  # a directory where the file goes: the rename fails
  with pytest.raises(OSError):
    workdir.write_json(str(target), {"x": 1})
  assert os.listdir(tmp_path) == ["results.json"]


def test_temporaries_of_killed_writes_are_removed_and_nothing_else(tmp_path):
  run = tmp_path / "run"
  (run / "results").mkdir(parents=True)
  left = [run / ".config.json.k2j3_x9.tmp", run / "tmpa8b7c6.tmp",
          run / "results" / ".results.csv.abcdef.tmp",
          run / "results" / "tmpq1w2e3.tmp.npz"]
  kept = [run / "config.json", run / "metrics.jsonl", run / "notes.tmp",
          run / "results" / "results.json", run / ".hidden"]
  for path in left + kept:
    path.write_text("x")
  (run / "checkpoints" / "tmpdir.tmp").mkdir(parents=True)
  removed = workdir.remove_temporaries(str(run))
  assert sorted(removed) == sorted(str(p) for p in left)
  assert all(p.exists() for p in kept) and not any(p.exists() for p in left)
  assert (run / "checkpoints" / "tmpdir.tmp").is_dir()  # Orbax's, not ours


def test_check_writable_creates_nothing(tmp_path):
  workdir.check_writable(str(tmp_path / "a" / "b"), "the output")
  assert os.listdir(tmp_path) == []
  (tmp_path / "file").write_text("x")
  with pytest.raises(PermissionError, match=r"the output .*file/out cannot "
                     r"be created: .*file is not a directory"):
    workdir.check_writable(str(tmp_path / "file" / "out"), "the output")


@needs_permissions
def test_check_writable_refuses_a_read_only_directory(tmp_path):
  tmp_path.chmod(0o500)
  try:
    with pytest.raises(PermissionError) as error:
      workdir.check_writable(str(tmp_path / "out"), "the output")
    with pytest.raises(PermissionError) as locking:
      with workdir.locked(str(tmp_path)):
        pass
  finally:
    tmp_path.chmod(0o700)
  assert str(error.value) == (f"the output {tmp_path / 'out'} is not "
                              f"writable (in {tmp_path}): Permission denied")
  assert str(locking.value) == (
      f"workdir {tmp_path} is not writable ({tmp_path / 'lock'}: Permission "
      "denied); a run keeps its lock, checkpoints, log and results there")
