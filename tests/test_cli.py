"""The researcher's path as separate processes: train, evaluate, report."""

import csv
import json
import os

from disentax import results
from tests.conftest import run_module

ROW_KEYS = {"schema_version", "method", "dataset", "config_hash", "step",
            "member", "seed", "hparams", "status", "diverged_at_step",
            "metrics"}


def test_train_evaluate_report_end_to_end(tmp_path):
  workdir = str(tmp_path / "run")
  trained = run_module("disentax.main", "--config=experiments/beta_vae.py:tiny",
                       f"--workdir={workdir}", "--config.num_seeds=3",
                       "--noevaluate")
  assert "evaluate with: python -m disentax.evaluate" in trained.stdout
  assert not os.path.exists(os.path.join(workdir, "results"))
  evaluated = run_module("disentax.evaluate", f"--workdir={workdir}")

  data = json.load(open(os.path.join(workdir, "results", "results.json")))
  assert data["schema_version"] == results.SCHEMA_VERSION == 1
  rows = data["rows"]
  assert len(rows) == 6  # 2 betas x 3 seeds, one row each
  assert all(set(r) == ROW_KEYS for r in rows)
  assert [(r["member"], r["seed"], r["hparams"]["beta"]) for r in rows] == [
      (0, 0, 1.0), (1, 1, 1.0), (2, 2, 1.0), (3, 0, 4.0), (4, 1, 4.0),
      (5, 2, 4.0)]
  assert {r["step"] for r in rows} == {20}
  assert {(r["method"], r["dataset"], r["status"]) for r in rows} == {
      ("beta_vae", "dsprites", "ok")}
  assert len({r["config_hash"] for r in rows}) == 1
  assert all(0 <= r["metrics"]["mig"] <= 1 for r in rows)

  with open(os.path.join(workdir, "results", "results.csv")) as f:
    table = list(csv.DictReader(f))
  assert [float(r["metric.mig"]) for r in table] == pytest_approx(
      [r["metrics"]["mig"] for r in rows])
  assert "hp.beta" in table[0]

  # The printed failure-rate table: one line per beta, 3 seeds each.
  assert "failure = MIG < 0.1" in evaluated.stdout
  assert "| beta_vae | dsprites | beta=1 | 3 |" in evaluated.stdout
  assert "| beta_vae | dsprites | beta=4 | 3 |" in evaluated.stdout
  # The table has the failure rates' intervals; the two betas are compared.
  assert "| failure % | 95% CI |" in evaluated.stdout
  assert ("| dsprites | beta_vae (beta=1) | beta_vae (beta=4) |"
          in evaluated.stdout)

  reported = run_module("disentax.report", f"--workdirs={workdir}",
                        "--threshold=0.5")
  assert "MIG < 0.5" in reported.stdout
  # Every seed of the tiny run scores below 0.5, so all 3 fail per beta.
  assert reported.stdout.count("| 3/3 | 100.0 |") == 2


def pytest_approx(values):
  import pytest
  return pytest.approx(values, rel=1e-6)
