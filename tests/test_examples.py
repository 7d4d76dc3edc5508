"""The scripts under docs/examples, run as a user runs them (from the
repository's root): what they print is what their results files hold."""

import os
import subprocess
import sys

import pytest

import disentax
from disentax import results
from disentax.reporting.report import MARKDOWN_NAME
from disentax.workdir import results_dir
from tests.conftest import REPO

EXAMPLES = os.path.join(REPO, "docs", "examples")


def run_example(name, *args):
  """Runs docs/examples/NAME with `args` in a fresh process; its stdout."""
  result = subprocess.run(
      [sys.executable, os.path.join(EXAMPLES, name), *args], cwd=REPO,
      env=dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu"),
      capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-4000:]
  return result.stdout


def report_of(workdir):
  with open(os.path.join(results_dir(workdir), MARKDOWN_NAME)) as f:
    return f.read()


def test_api_tour_trains_evaluates_and_reads_back(tmp_path):
  workdir = str(tmp_path / "tour")
  printed = run_example("api_tour.py", f"--workdir={workdir}")
  rows = results.load_rows([workdir])
  assert [(r["hparams"]["beta"], r["seed"], r["step"]) for r in rows] == [
      (1.0, 0, 20), (1.0, 1, 20), (4.0, 0, 20), (4.0, 1, 20)]
  table = disentax.load_results(workdir)
  assert (f"4 members, columns: {', '.join(table.columns)}\n"
          in printed)
  medians = table.groupby("hp.beta")[[
      "metric.mig", "metric.gaussian_total_correlation"]].median()
  assert medians.notna().all().all()
  assert medians.to_string() in printed
  assert report_of(workdir) in printed
  assert "| beta_vae | dsprites | beta=1 |" in printed


# The PyTorch variant trains the model and scores the ELBO terms too (~20 s
# of CPU); the numpy one runs the same script's scoring path.
@pytest.mark.parametrize("encoder", [
    pytest.param("torch", marks=pytest.mark.slow), "numpy"])
def test_score_pytorch_model_writes_a_run(tmp_path, encoder):
  if encoder == "torch":
    pytest.importorskip("torch")
  workdir = str(tmp_path / encoder)
  printed = run_example("score_pytorch_model.py", f"--workdir={workdir}",
                        f"--encoder={encoder}", "--train_steps=20",
                        "--image_size=16", "--num_seeds=2")
  rows = results.load_rows([workdir])
  step = 20 if encoder == "torch" else 0
  assert [(r["method"], r["dataset"], r["seed"], r["step"], r["status"])
          for r in rows] == [(f"{encoder}_vae", "dsprites", s, step, "ok")
                             for s in (0, 1)]
  scores = {"mig", "nmi1", "nmi2", "factor_vae_score", "sap"}
  expected = scores | {f"{name}_sampled" for name in scores}
  if encoder == "torch":  # its decoder gives the ELBO terms
    expected |= {"reconstruction_error", "kl", "total_correlation"}
  for row in rows:
    assert expected <= set(row["metrics"])
    assert all(v is not None for v in row["metrics"].values())
  table = disentax.load_results(workdir)
  assert table[["seed", "metric.mig", "metric.mig_sampled",
                "metric.factor_vae_score"]].to_string(index=False) in printed
  assert report_of(workdir) in printed
