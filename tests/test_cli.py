"""The researcher's path as separate processes: train, evaluate, report;
and how every entry point fails (one line, exit status 2 or 1)."""

import csv
import json
import os

import pytest

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


# --------------------------------------------------------------------------
# Errors: one line naming what is wrong; exit 2 for a bad value, 1 for a
# failure; the traceback only with --verbose.

# (module, arguments, the error line) of a bad value for every entry point,
# each refused before anything runs.
BAD_VALUES = [
    ("disentax.main", ("--config=experiments/beta_vae.py:tiny",
                       "--config.num_seeds=0", "--workdir={tmp}/w"),
     "config.num_seeds=0; must be >= 1"),
    ("disentax.main", ("--config=experiments/beta_vae.py:tiny",
                       "--workdir={tmp}/w", "--coordinator=127.0.0.1:1234",
                       "--num_processes=2"),
     "--coordinator=127.0.0.1:1234 --num_processes=2 without --distributed: "
     "this process would train alone; add --distributed to join a "
     "multi-process run, or drop them"),
    ("disentax.main", ("--config=experiments/beta_vae.py:nope",
                       "--workdir={tmp}/w"),
     "flag --config=experiments/beta_vae.py:nope: Error whilst parsing config "
     "file: ValueError: unknown preset 'nope'; allowed: paper, cpu, tiny"),
    ("disentax.evaluate", ("--workdir={tmp}/w", "--failure_threshold=2"),
     "--failure_threshold=2.0; must be in (0, 1)"),
    ("disentax.evaluate", ("--workdir={tmp}/w", "--battery=nope"),
     "flag --battery=nope: value should be one of <config|full|none>"),
    ("disentax.report", ("--workdirs={tmp}/w", "--threshold=nan"),
     "threshold=nan; give a finite number"),
    ("disentax.sweep", ("nope", "--root={tmp}/w"),
     "usage: python -m disentax.sweep {plan,run,status,merge,slurm} "
     "--root=ROOT ...; got ['nope']"),
    ("disentax.propose", ("--workdir={tmp}/w", "--reference=a,b"),
     "--reference=['a', 'b']: give numbers"),
    ("disentax.pictures", ("--out={tmp}/w", "--num=0"),
     "--num must be >= 1, got 0"),
    ("disentax.bench", ("--items=nope",),
     "unknown benchmark item(s) nope; allowed: "),
    ("disentax.studies.tc_estimation", ("--steps_per_call=0",),
     "steps_per_call=0: must be an int >= 1"),
    ("disentax.visualize", ("--workdir={tmp}/w", "--members=nope"),
     "--members='nope'; allowed: best, median, worst, all or comma-separated "
     "member ids"),
    ("disentax.data.fetch", ("nope", "--dir={tmp}/d"),
     "unknown dataset 'nope' to fetch; allowed: dsprites, shapes3d"),
]


@pytest.mark.parametrize("module, args, line", BAD_VALUES,
                         ids=[f"{m}:{a[-1]}" for m, a, _ in BAD_VALUES])
def test_a_bad_value_is_one_line_and_exit_status_2(module, args, line,
                                                   tmp_path):
  result = run_module(module, *(a.format(tmp=tmp_path) for a in args),
                      check=False)
  assert result.returncode == 2, result.stderr
  [printed] = result.stderr.splitlines()
  assert printed.startswith(f"error: {line}"), printed
  assert os.listdir(tmp_path) == []  # refused before anything was written


def test_verbose_shows_the_traceback_before_the_line(tmp_path):
  result = run_module("disentax.main", "--config=experiments/beta_vae.py:tiny",
                      "--config.num_seeds=0", f"--workdir={tmp_path}/w",
                      "--verbose", check=False)
  assert result.returncode == 2
  lines = result.stderr.splitlines()
  assert lines[0] == "Traceback (most recent call last):"
  assert "disentax.cli.UsageError: config.num_seeds=0; must be >= 1" in lines
  assert lines[-1] == "error: config.num_seeds=0; must be >= 1"


def test_a_failure_is_one_line_and_exit_status_1(tmp_path):
  result = run_module("disentax.evaluate", f"--workdir={tmp_path}", check=False)
  assert result.returncode == 1
  assert result.stderr.splitlines() == [
      f"error: no checkpoints in {tmp_path}/checkpoints: train first with "
      f"`python -m disentax.main --config=... --workdir={tmp_path}`"]


def test_cli_one_line_of_errors_of_every_kind():
  from absl import flags
  from disentax import cli
  long = ValueError("x" * (cli.MAX_MESSAGE + 10))
  assert cli.one_line(long) == "x" * cli.MAX_MESSAGE + " ..."
  assert cli.one_line(OSError(28, "No space left on device")) == (
      "[Errno 28] No space left on device")
  assert cli.one_line(KeyError("seed")) == (
      "KeyError: 'seed' (--verbose shows the traceback)")
  quoting = flags.IllegalFlagValueError(
      "flag --config=c.py: Error whilst parsing config file:\n\nTraceback "
      "(most recent call last):\n  File \"c.py\", line 1\nValueError: bad\n")
  assert cli.one_line(quoting) == (
      "flag --config=c.py: Error whilst parsing config file: ValueError: bad")
  assert [cli.exit_status(e) for e in (cli.UsageError("u"), quoting,
                                       ValueError("v"), KeyboardInterrupt())
          ] == [2, 2, 1, 130]
