"""The workdir layout (the names old workdirs were written with) and the
atomic writers."""

import json
import os

import numpy as np
import pytest

from disentax import workdir


def test_layout_names_are_those_of_existing_workdirs():
  run = os.path.join("runs", "bvae")
  assert workdir.config_path(run) == "runs/bvae/config.json"
  assert workdir.run_log_path(run) == "runs/bvae/metrics.jsonl"
  assert workdir.checkpoint_dir(run) == os.path.abspath("runs/bvae/checkpoints")
  assert workdir.trace_path(run) == "runs/bvae/trace.npz"
  assert workdir.job_path(run) == "runs/bvae/job.json"
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
