"""Failure-rate tables from hand-made results rows, and the report CLI."""

import csv
import json
import math
import os
import subprocess
import sys

import pytest

from disentax import report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _row(seed, value, beta=4.0, status="ok", step=1000, method="beta_vae",
         dataset="dsprites", member=None):
  return {
      "schema_version": 1, "method": method, "dataset": dataset,
      "config_hash": "abc123", "step": step,
      "member": seed if member is None else member, "seed": seed,
      "hparams": {"beta": beta}, "status": status,
      "metrics": {"mig": value},
  }


# 4 seeds: one failure, two successes, one non-finite.
ROWS = [_row(0, 0.05), _row(1, 0.2), _row(2, 0.3),
        _row(3, None, status="non_finite")]


def _write_workdir(root, rows, name="run"):
  workdir = os.path.join(root, name)
  os.makedirs(os.path.join(workdir, "results"))
  with open(os.path.join(workdir, "results", "results.json"), "w") as f:
    json.dump({"schema_version": 1, "rows": rows}, f)
  return workdir


def test_failure_rate_known_values():
  [entry] = report.failure_rate_table(ROWS, metric="mig", threshold=0.1)
  assert entry["method"] == "beta_vae" and entry["dataset"] == "dsprites"
  assert entry["hparams"] == {"beta": 4.0}
  assert entry["n_seeds"] == 4
  assert entry["n_scored"] == 3
  assert entry["n_failed"] == 1
  assert entry["failed_seeds"] == [0]
  assert entry["failure_rate"] == pytest.approx(100 / 3)
  assert entry["mean"] == pytest.approx(0.55 / 3)
  assert entry["median"] == pytest.approx(0.2)
  mean = 0.55 / 3
  std = math.sqrt(sum((v - mean) ** 2 for v in (0.05, 0.2, 0.3)) / 3)
  assert entry["std"] == pytest.approx(std)
  assert entry["std"] == pytest.approx(0.1027402, abs=1e-7)
  assert entry["n_non_finite"] == 1
  assert entry["non_finite_seeds"] == [3]
  assert entry["steps"] == [1000]


def test_nan_metric_counts_as_non_finite():
  rows = [_row(0, 0.5), _row(1, float("nan")), _row(2, float("inf"))]
  [entry] = report.failure_rate_table(rows)
  assert entry["n_scored"] == 1 and entry["n_failed"] == 0
  assert entry["non_finite_seeds"] == [1, 2]
  assert entry["failure_rate"] == 0.0


def test_threshold_is_strict():
  [entry] = report.failure_rate_table([_row(0, 0.1), _row(1, 0.0999)],
                                      threshold=0.1)
  assert entry["failed_seeds"] == [1]


def test_groups_by_beta_sorted():
  rows = ([_row(s, 0.5, beta=16.0) for s in range(3)]
          + [_row(s, 0.01 * s, beta=1.0) for s in range(5)])
  table = report.failure_rate_table(rows)
  assert [e["hparams"]["beta"] for e in table] == [1.0, 16.0]
  low, high = table
  assert (low["n_seeds"], low["n_failed"], low["failure_rate"]) == (5, 5, 100)
  assert (high["n_seeds"], high["n_failed"], high["failure_rate"]) == (3, 0, 0)
  assert high["std"] == 0.0


def test_groups_sorted_by_method_then_dataset():
  rows = [_row(0, 0.5, method="factor_vae"), _row(0, 0.5, dataset="cars3d"),
          _row(0, 0.5)]
  table = report.failure_rate_table(rows)
  assert [(e["method"], e["dataset"]) for e in table] == [
      ("beta_vae", "cars3d"), ("beta_vae", "dsprites"),
      ("factor_vae", "dsprites")]


def test_each_seed_counts_once_latest_step():
  rows = [_row(0, 0.01, step=100), _row(0, 0.5, step=200), _row(1, 0.3)]
  [entry] = report.failure_rate_table(rows)
  assert entry["n_seeds"] == 2 and entry["n_failed"] == 0
  assert entry["steps"] == [200, 1000]
  [at_100] = report.failure_rate_table(rows, step=100)
  assert at_100["n_seeds"] == 1 and at_100["failed_seeds"] == [0]


def test_duplicate_seed_at_same_step_is_an_error():
  with pytest.raises(ValueError, match="two results rows for seed 0"):
    report.failure_rate_table([_row(0, 0.5), _row(0, 0.4)])


def test_missing_metric_is_an_error():
  with pytest.raises(ValueError, match="metric 'dci' missing"):
    report.failure_rate_table(ROWS, metric="dci")


def test_unknown_status_is_an_error():
  with pytest.raises(ValueError, match="unknown status 'diverged'"):
    report.failure_rate_table([_row(0, 0.5, status="diverged")])


def test_all_non_finite_group():
  [entry] = report.failure_rate_table(
      [_row(0, None, status="non_finite"), _row(1, None, status="non_finite")])
  assert entry["n_scored"] == 0 and entry["failure_rate"] is None
  assert entry["mean"] is None and entry["non_finite_seeds"] == [0, 1]
  text = report.format_markdown([entry], "mig", 0.1)
  assert "| 0/0 | n/a | n/a | n/a | n/a | 2 (seeds 0, 1) |" in text


def test_markdown_contains_threshold_and_values():
  table = report.failure_rate_table(ROWS + [_row(0, 0.4, beta=16.0)])
  text = report.format_markdown(table, "mig", 0.1)
  assert "failure = MIG < 0.1" in text
  assert "5 seeds in 2 groups, 4 scored, 1 failed, 1 non-finite" in text
  assert ("| method | dataset | hyperparameters | seeds | failed | failure % "
          "| mean | median | std | non-finite |") in text
  assert ("| beta_vae | dsprites | beta=4 | 4 | 1/3 | 33.3 | 0.1833 | 0.2000 "
          "| 0.1027 | 1 (seeds 3) |") in text
  assert ("| beta_vae | dsprites | beta=16 | 1 | 0/1 | 0.0 | 0.4000 | 0.4000 "
          "| 0.0000 | 0 |") in text


def test_format_hparams():
  assert report.format_hparams({"gamma": 10.0, "beta": 4.0}) == (
      "beta=4, gamma=10")
  assert report.format_hparams({"beta": 0.5}) == "beta=0.5"
  assert report.format_hparams({}) == "-"


def test_write_csv(tmp_path):
  path = tmp_path / "report.csv"
  report.write_csv(report.failure_rate_table(ROWS), str(path))
  with open(path) as f:
    [row] = list(csv.DictReader(f))
  assert row["hparams"] == "beta=4"
  assert (row["n_seeds"], row["n_scored"], row["n_failed"]) == ("4", "3", "1")
  assert float(row["failure_rate"]) == pytest.approx(100 / 3)
  assert float(row["mean"]) == pytest.approx(0.55 / 3)
  assert row["non_finite_seeds"] == "3"


def test_load_rows_concatenates_workdirs(tmp_path):
  a = _write_workdir(tmp_path, ROWS[:2], "a")
  b = _write_workdir(tmp_path, ROWS[2:], "b")
  assert report.load_rows([a, b]) == ROWS


def test_load_rows_missing_file_names_path(tmp_path):
  workdir = str(tmp_path / "never_evaluated")
  with pytest.raises(FileNotFoundError) as info:
    report.load_rows([workdir])
  message = str(info.value)
  assert os.path.join(workdir, "results", "results.json") in message
  assert f"python -m disentax.evaluate --workdir={workdir}" in message


def test_load_rows_rejects_unknown_schema(tmp_path):
  workdir = _write_workdir(tmp_path, ROWS)
  path = os.path.join(workdir, "results", "results.json")
  with open(path, "w") as f:
    json.dump({"schema_version": 2, "rows": ROWS}, f)
  with pytest.raises(ValueError, match="schema_version 2"):
    report.load_rows([workdir])


def _run_cli(*args):
  env = dict(os.environ, PYTHONPATH=REPO)
  return subprocess.run(
      [sys.executable, "-m", "disentax.report", *args], cwd=REPO, env=env,
      capture_output=True, text=True, timeout=120)


def test_cli_prints_and_writes_report(tmp_path):
  a = _write_workdir(tmp_path, ROWS, "a")
  b = _write_workdir(tmp_path, [_row(s, 0.6, beta=16.0) for s in range(2)],
                     "b")
  result = _run_cli(f"--workdirs={a},{b}", "--metric=mig", "--threshold=0.1")
  assert result.returncode == 0, result.stderr
  assert "failure = MIG < 0.1" in result.stdout
  assert "| beta_vae | dsprites | beta=4 | 4 | 1/3 | 33.3 |" in result.stdout
  assert "| beta_vae | dsprites | beta=16 | 2 | 0/2 | 0.0 |" in result.stdout
  out = os.path.join(a, "results")
  with open(os.path.join(out, "report.md")) as f:
    assert f.read() == result.stdout
  with open(os.path.join(out, "report.csv")) as f:
    assert len(list(csv.DictReader(f))) == 2


def test_cli_missing_results_fails_clearly(tmp_path):
  workdir = str(tmp_path / "empty")
  os.makedirs(workdir)
  result = _run_cli(f"--workdirs={workdir}", f"--out={tmp_path / 'out'}")
  assert result.returncode != 0
  assert "no results file at" in result.stderr
  assert "python -m disentax.evaluate --workdir=" in result.stderr
  assert "Traceback" not in result.stderr
  assert not os.path.exists(tmp_path / "out")
