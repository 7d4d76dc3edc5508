"""Reading results files back: rows, arrays, the trace, whole runs, and the
workdirs under a sweep root (each file checked against its schema)."""

import json
import os

import numpy as np
import pytest

from disentax import results
from tests.synthetic_runs import (FACTORS, NUM_LATENTS, ROWS, make_row,
                                  write_workdir)


def test_load_rows_concatenates_workdirs(tmp_path):
  a = write_workdir(tmp_path, ROWS[:2], "a")
  b = write_workdir(tmp_path, ROWS[2:], "b")
  assert results.load_rows([a, b]) == ROWS


def test_load_rows_missing_file_names_path(tmp_path):
  workdir = str(tmp_path / "never_evaluated")
  with pytest.raises(FileNotFoundError) as info:
    results.load_rows([workdir])
  message = str(info.value)
  assert os.path.join(workdir, "results", "results.json") in message
  assert f"python -m disentax.evaluate --workdir={workdir}" in message


def test_load_rows_rejects_unknown_schema(tmp_path):
  workdir = write_workdir(tmp_path, ROWS)
  path = os.path.join(workdir, "results", "results.json")
  with open(path, "w") as f:
    json.dump({"schema_version": 2, "rows": ROWS}, f)
  with pytest.raises(ValueError, match="schema_version 2"):
    results.load_rows([workdir])


def test_written_rows_read_back(tmp_path):
  rows = [dict(make_row(0, 0.25), diverged_at_step=None)]
  results.write(str(tmp_path), rows, factor_names=list(FACTORS))
  results.write_arrays(str(tmp_path), {"nmi_matrix": np.ones((1, 2, 5))})
  run = results.load_run(str(tmp_path))
  assert run.rows == rows and run.factor_names == list(FACTORS)
  np.testing.assert_array_equal(run.arrays["nmi_matrix"], np.ones((1, 2, 5)))
  assert run.trace is None


def test_no_workdirs_is_an_error():
  with pytest.raises(ValueError, match="no workdirs given"):
    results.resolve_workdirs(["", ""])


def test_sweep_root_without_results_says_how_to_make_them(tmp_path):
  with pytest.raises(ValueError, match="no directory under .* holds "
                     "results/results.json"):
    results.resolve_workdirs([], str(tmp_path))


def test_sweep_root_finds_workdirs_once(synthetic_sweep, tmp_path):
  root, (bvae, deft) = synthetic_sweep
  assert results.find_workdirs(root) == [bvae, deft]
  assert results.resolve_workdirs([deft, ""], root) == [deft, bvae]
  nested = tmp_path / "grid" / "beta=4"
  write_workdir(str(nested), ROWS, "seed_block")
  assert results.find_workdirs(str(tmp_path)) == [
      str(nested / "seed_block")]


def test_run_results_factor_names_and_trace(synthetic_sweep):
  run = results.load_run(synthetic_sweep[1][1])
  assert run.factor_names == list(FACTORS)
  assert run.trace["nmi_matrix"].shape == (5, 3, NUM_LATENTS, 5)
  assert run.factor_labels(5) == list(FACTORS)
  assert run.factor_labels(2) == ["c0", "c1"]


def test_load_trace_rejects_misaligned_arrays(tmp_path):
  np.savez(tmp_path / "trace.npz", step=np.arange(5), mig=np.zeros((4, 2)))
  with pytest.raises(ValueError, match="mig has T=4 but another array has "
                     "T=5"):
    results.load_trace(str(tmp_path))
  assert results.load_trace(str(tmp_path / "missing")) is None
