"""Failure-rate tables from hand-made results rows, the whole report on the
synthetic sweep (`tests.synthetic_runs.make_sweep`, whose numbers the tables
are checked against), and the report CLI.
"""

import csv
import math
import os
import subprocess
import sys

import pytest

from disentax import results
from disentax.reporting import render, report, tables
from tests.conftest import needs_permissions
from tests.synthetic_runs import (BVAE_MIG, DEFT_MIG, EXPECTED_FIGURES,
                                  METRICS, ROWS, make_row, png_size,
                                  write_workdir)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_failure_rate_known_values():
  [entry] = tables.failure_rate_table(ROWS, metric="mig", threshold=0.1)
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
  rows = [make_row(0, 0.5), make_row(1, float("nan")),
          make_row(2, float("inf"))]
  [entry] = tables.failure_rate_table(rows)
  assert entry["n_scored"] == 1 and entry["n_failed"] == 0
  assert entry["non_finite_seeds"] == [1, 2]
  assert entry["failure_rate"] == 0.0


def test_threshold_is_strict():
  [entry] = tables.failure_rate_table([make_row(0, 0.1), make_row(1, 0.0999)],
                                      threshold=0.1)
  assert entry["failed_seeds"] == [1]


def test_groups_by_beta_sorted():
  rows = ([make_row(s, 0.5, beta=16.0) for s in range(3)]
          + [make_row(s, 0.01 * s, beta=1.0) for s in range(5)])
  table = tables.failure_rate_table(rows)
  assert [e["hparams"]["beta"] for e in table] == [1.0, 16.0]
  low, high = table
  assert (low["n_seeds"], low["n_failed"], low["failure_rate"]) == (5, 5, 100)
  assert (high["n_seeds"], high["n_failed"], high["failure_rate"]) == (3, 0, 0)
  assert high["std"] == 0.0


def test_groups_sorted_by_method_then_dataset():
  rows = [make_row(0, 0.5, method="factor_vae"),
          make_row(0, 0.5, dataset="cars3d"), make_row(0, 0.5)]
  table = tables.failure_rate_table(rows)
  assert [(e["method"], e["dataset"]) for e in table] == [
      ("beta_vae", "cars3d"), ("beta_vae", "dsprites"),
      ("factor_vae", "dsprites")]


def test_each_seed_counts_once_latest_step():
  rows = [make_row(0, 0.01, step=100), make_row(0, 0.5, step=200),
          make_row(1, 0.3)]
  [entry] = tables.failure_rate_table(rows)
  assert entry["n_seeds"] == 2 and entry["n_failed"] == 0
  assert entry["steps"] == [200, 1000]
  [at_100] = tables.failure_rate_table(rows, step=100)
  assert at_100["n_seeds"] == 1 and at_100["failed_seeds"] == [0]


def test_duplicate_seed_at_same_step_is_an_error():
  with pytest.raises(ValueError, match="two results rows for seed 0"):
    tables.failure_rate_table([make_row(0, 0.5), make_row(0, 0.4)])


def test_missing_metric_is_an_error():
  with pytest.raises(ValueError, match="metric 'dci' missing"):
    tables.failure_rate_table(ROWS, metric="dci")


def test_unknown_status_is_an_error():
  with pytest.raises(ValueError, match="unknown status 'exploded'"):
    tables.failure_rate_table([make_row(0, 0.5, status="exploded")])


def test_all_non_finite_group():
  [entry] = tables.failure_rate_table(
      [make_row(0, None, status="non_finite"),
       make_row(1, None, status="non_finite")])
  assert entry["n_scored"] == 0 and entry["failure_rate"] is None
  assert entry["mean"] is None and entry["non_finite_seeds"] == [0, 1]
  text = render.format_markdown([entry], "mig", 0.1)
  assert ("| 0/0 | n/a | n/a | n/a | n/a | n/a | n/a | 2 (seeds 0, 1) |"
          in text)


def test_markdown_contains_threshold_and_values():
  table = tables.failure_rate_table(ROWS + [make_row(0, 0.4, beta=16.0)])
  text = render.format_markdown(table, "mig", 0.1)
  assert "failure = MIG < 0.1" in text
  assert "5 seeds in 2 groups, 4 scored, 1 failed, 1 non-finite" in text
  assert ("| method | dataset | hyperparameters | seeds | failed | failure % "
          "| 95% CI | mean | median | median 95% CI | std | non-finite |"
          ) in text
  # Wilson 1/3: [6.1, 79.2] %; the bootstrap median of 0.05, 0.2, 0.3
  # spans them all.
  assert ("| beta_vae | dsprites | beta=4 | 4 | 1/3 | 33.3 | [6.1, 79.2] "
          "| 0.1833 | 0.2000 | [0.0500, 0.3000] | 0.1027 | 1 (seeds 3) |"
          ) in text
  assert ("| beta_vae | dsprites | beta=16 | 1 | 0/1 | 0.0 | [0.0, 79.3] "
          "| 0.4000 | 0.4000 | n/a | 0.0000 | 0 |") in text


def test_format_hparams():
  assert tables.format_hparams({"gamma": 10.0, "beta": 4.0}) == (
      "beta=4, gamma=10")
  assert tables.format_hparams({"beta": 0.5}) == "beta=0.5"
  assert tables.format_hparams({}) == "-"


def test_write_csv(tmp_path):
  path = tmp_path / "report.csv"
  render.write_csv(tables.failure_rate_table(ROWS), str(path))
  with open(path) as f:
    [row] = list(csv.DictReader(f))
  assert row["hparams"] == "beta=4"
  assert (row["n_seeds"], row["n_scored"], row["n_failed"]) == ("4", "3", "1")
  assert float(row["failure_rate"]) == pytest.approx(100 / 3)
  assert float(row["mean"]) == pytest.approx(0.55 / 3)
  assert row["non_finite_seeds"] == "3"


def _run_cli(*args):
  env = dict(os.environ, PYTHONPATH=REPO)
  return subprocess.run(
      [sys.executable, "-m", "disentax.report", *args], cwd=REPO, env=env,
      capture_output=True, text=True, timeout=120)


def test_cli_prints_and_writes_report(tmp_path):
  a = write_workdir(tmp_path, ROWS, "a")
  b = write_workdir(tmp_path, [make_row(s, 0.6, beta=16.0) for s in range(2)],
                     "b")
  result = _run_cli(f"--workdirs={a},{b}", "--metric=mig", "--threshold=0.1")
  assert result.returncode == 0, result.stderr
  assert "failure = MIG < 0.1" in result.stdout
  assert "| beta_vae | dsprites | beta=4 | 4 | 1/3 | 33.3 |" in result.stdout
  assert "| beta_vae | dsprites | beta=16 | 2 | 0/2 | 0.0 |" in result.stdout
  assert ("| beta_vae | beta=4 | 33.3 [6.1, 79.2] (1/3; 1 non-finite) |"
          in result.stdout)
  out = os.path.join(a, "results")
  with open(os.path.join(out, "report.md")) as f:
    assert f.read() == result.stdout
  with open(os.path.join(out, "report.csv")) as f:
    assert len(list(csv.DictReader(f))) == 2
  assert os.path.isfile(os.path.join(out, "report.tex"))
  # No trace or arrays: only the metric's distribution, the rest noted.
  assert png_size(os.path.join(out, "figures", "mig_distribution.png")) == (
      600, 350)
  assert "a: no trace.npz" in result.stderr
  assert "(9999 resamples, seed 0;" in result.stdout
  seeded = _run_cli(f"--workdirs={a},{b}", "--bootstrap_seed=7",
                    "--nofigures", f"--out={tmp_path / 'seeded'}")
  assert seeded.returncode == 0, seeded.stderr
  assert "(9999 resamples, seed 7;" in seeded.stdout


def test_cli_missing_results_fails_clearly(tmp_path):
  workdir = str(tmp_path / "empty")
  os.makedirs(workdir)
  result = _run_cli(f"--workdirs={workdir}", f"--out={tmp_path / 'out'}")
  assert result.returncode != 0
  assert "no results.json at" in result.stderr
  assert "python -m disentax.evaluate --workdir=" in result.stderr
  assert "Traceback" not in result.stderr
  assert not os.path.exists(tmp_path / "out")


# --- Table 4 layout on hand-made rows.


def test_pivot_rows_are_methods_columns_datasets():
  rows = (ROWS + [make_row(s, 0.5, dataset="cars3d") for s in range(2)]
          + [make_row(s, 0.01, method="deft", dataset="cars3d")
             for s in range(3)])
  table = tables.failure_rate_table(rows)
  datasets, pivot = tables.pivot_by_dataset(table)
  assert datasets == ["cars3d", "dsprites"]
  assert [(r["method"], sorted(r["cells"])) for r in pivot] == [
      ("beta_vae", ["cars3d", "dsprites"]), ("deft", ["cars3d"])]
  text = render.format_pivot_markdown(table, "mig", 0.1)
  assert "| method | hyperparameters | cars3d | dsprites |" in text
  assert ("| beta_vae | beta=4 | 0.0 [0.0, 65.8] (0/2) | 33.3 [6.1, 79.2] "
          "(1/3; 1 non-finite) |" in text)
  # not run: "-"
  assert "| deft | beta=4 | 100.0 [43.9, 100.0] (3/3) | - |" in text
  assert "2-4 seeds per cell" in text
  latex = render.format_pivot_latex(table, "mig", 0.1)
  assert "deft & beta=4 & 100.0 [43.9, 100.0] (3/3) & -- \\\\" in latex


def test_pivot_all_non_finite_cell_is_not_hidden():
  table = tables.failure_rate_table(
      [make_row(0, None, status="non_finite"),
       make_row(1, None, status="non_finite")])
  text = render.format_pivot_markdown(table, "mig", 0.1)
  assert "| beta_vae | beta=4 | n/a (0/0; 2 non-finite) |" in text
  assert "beta_vae (beta=4) on dsprites: seeds 0, 1" in text


def test_latex_escape():
  assert render.latex_escape("beta_vae 50% a&b <0.1> {x}") == (
      r"beta\_vae 50\% a\&b \textless{}0.1\textgreater{} \{x\}")


# --- The whole report on the synthetic sweep (make_sweep).

# Wilson 95% intervals (%) of failed/scored, from statsmodels'
# proportion_confint(failed, scored, method="wilson").
WILSON = {(1, 3): "[6.1, 79.2]", (1, 2): "[9.5, 90.5]", (0, 1): "[0.0, 79.3]",
          (2, 2): "[34.2, 100.0]"}


def _counts(migs, threshold=0.1):
  """(seeds, scored, failed, non-finite seeds) of a seed -> MIG dict."""
  scored = [v for v in migs.values() if v is not None]
  return (len(migs), len(scored), sum(v < threshold for v in scored),
          [s for s, v in migs.items() if v is None])


@pytest.fixture(scope="module")
def written(synthetic_sweep, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("report"))
  notes = []
  markdown, paths = report.run_report(synthetic_sweep[1], out, metric="mig",
                                      threshold=0.1, note=notes.append)
  return out, markdown, paths, notes


def _read(out, name):
  with open(os.path.join(out, name)) as f:
    return f.read()


def test_report_markdown_numbers_match_rows(written):
  out, markdown, _, _ = written
  assert _read(out, "report.md") == markdown
  for method, hparams, migs in (("beta_vae", "beta=4", BVAE_MIG),
                                ("deft", "gamma=0.1, pressures=70/30/12/4",
                                 DEFT_MIG)):
    seeds, scored, failed, bad = _counts(migs)
    cell = (f"{100 * failed / scored:.1f} {WILSON[failed, scored]} "
            f"({failed}/{scored}; {len(bad)} non-finite)")
    assert f"| {method} | {hparams} | {cell} |" in markdown
    assert (f"| {method} | dsprites | {hparams} | {seeds} | "
            f"{failed}/{scored} |") in markdown
    assert f"{method} ({hparams}) on dsprites: seed {bad[0]}" in markdown
  assert ("| beta_vae | beta=4 | 33.3 [6.1, 79.2] (1/3; 1 non-finite) |"
          in markdown)
  assert ("| deft | gamma=0.1, pressures=70/30/12/4 | 50.0 [9.5, 90.5] (1/2; "
          "1 ") in markdown
  assert "a seed fails when MIG < 0.1" in markdown
  assert ("7 seeds in 2 groups, 5 scored, 2 failed, 2 non-finite; 3-4 seeds "
          "per cell.") in markdown
  # The per-group table keeps its statistics (bvae: 0.05, 0.25, 0.30).
  assert ("| beta_vae | dsprites | beta=4 | 4 | 1/3 | 33.3 | [6.1, 79.2] "
          "| 0.2000 | 0.2500 | [0.0500, 0.3000] | 0.1080 | 1 (seeds 3) |"
          ) in markdown


def test_report_compares_the_groups(written):
  out, markdown, paths, _ = written
  # beta_vae 1/3 (MIG 0.05, 0.25, 0.30) vs deft 1/2 (0.35, 0.08): Fisher's
  # table [[1, 2], [1, 1]] gives p = 1; U = 2 of 6, exact two-sided p =
  # 2 x 4/10; telling 1/3 from 1/2 takes 136 seeds per group (statsmodels'
  # NormalIndPower: 135.92).
  assert ("| dsprites | beta_vae (beta=4) | deft (gamma=0.1, "
          "pressures=70/30/12/4) | 1/3 | 1/2 | 1 | 1 | 0.2500 | 0.2150 | 0.8 "
          "| 0.8 | 136 |") in markdown
  assert "95% intervals: failure % by the Wilson score interval" in markdown
  assert "(9999 resamples, seed 0;" in markdown
  with open(os.path.join(out, "report_comparisons.csv")) as f:
    [pair] = list(csv.DictReader(f))
  assert (float(pair["fisher_p"]), float(pair["mann_whitney_p"]),
          float(pair["seeds_needed"])) == (1.0, pytest.approx(0.8), 136.0)
  tex = _read(out, "report_comparisons.tex")
  assert ("dsprites & beta\\_vae (beta=4) & deft (gamma=0.1, "
          "pressures=70/30/12/4) & 1/3 & 1/2 & 1 & 1 & 0.2500 & 0.2150 & 0.8 "
          "& 0.8 & 136 \\\\") in tex
  assert {os.path.join(out, n) for n in ("report_comparisons.csv",
                                         "report_comparisons.tex")} <= set(
                                             paths)


def test_run_summary_has_intervals_and_comparisons(synthetic_sweep, tmp_path):
  text = report.run_summary(results.load_run(synthetic_sweep[1][0]), "mig",
                            0.1)
  assert "| 4 | 1/3 | 33.3 | [6.1, 79.2] | 0.2000 | 0.2500 |" in text
  assert "95% intervals: failure % by the Wilson score interval" in text
  assert "Groups compared" not in text  # one group: nothing to compare
  workdir = write_workdir(str(tmp_path), [
      make_row(s, 0.05 if s < 2 else 0.3, beta=beta)
      for beta, seeds in ((1.0, 3), (4.0, 4)) for s in range(seeds)], "two")
  text = report.run_summary(results.load_run(workdir), "mig", 0.1)
  assert "Groups compared pairwise on each dataset (1 pair)" in text
  assert ("| dsprites | beta_vae (beta=1) | beta_vae (beta=4) | 2/3 | 2/4 |"
          in text)


def test_report_markdown_nmi_matrix_and_figures(synthetic_sweep, written):
  _, markdown, _, notes = written
  arrays = results.load_arrays(synthetic_sweep[1][0])
  ok = [m for m, v in enumerate(BVAE_MIG.values()) if v is not None]
  mean = arrays["nmi_matrix"][ok].mean(axis=0)
  assert "| latent | shape | scale | orientation | posX | posY |" in markdown
  assert ("| z0 | " + " | ".join(f"{v:.2f}" for v in mean[0]) + " |"
          in markdown)
  assert "mean of 3 seeds" in markdown
  assert "![mig_distribution.png](figures/mig_distribution.png)" in markdown
  assert "- not drawn: bvae: the trace has no DEFT stages" in markdown
  assert len(notes) == 3 and all("\n" not in n for n in notes)


def test_report_csv_is_table4_layout(written):
  with open(os.path.join(written[0], "report.csv")) as f:
    rows = list(csv.DictReader(f))
  assert [(r["method"], r["hparams"]) for r in rows] == [
      ("beta_vae", "beta=4"), ("deft", "gamma=0.1, pressures=70/30/12/4")]
  for row, migs in zip(rows, (BVAE_MIG, DEFT_MIG)):
    seeds, scored, failed, bad = _counts(migs)
    assert (row["metric"], float(row["threshold"])) == ("mig", 0.1)
    assert float(row["dsprites:failure_rate"]) == pytest.approx(
        100 * failed / scored)
    assert (int(row["dsprites:n_failed"]), int(row["dsprites:n_scored"]),
            int(row["dsprites:n_non_finite"]), int(row["dsprites:n_seeds"])
            ) == (failed, scored, len(bad), seeds)
    assert row["dsprites:non_finite_seeds"] == " ".join(map(str, bad))
  with open(os.path.join(written[0], "report_groups.csv")) as f:
    groups = list(csv.DictReader(f))
  assert [(g["n_seeds"], g["n_failed"], g["non_finite_seeds"])
          for g in groups] == [("4", "1", "3"), ("3", "1", "12")]


def test_report_latex_is_booktabs_table(written):
  tex = _read(written[0], "report.tex")
  for line in ("\\begin{tabular}{llr}", "\\toprule", "\\midrule",
               "\\bottomrule", "\\end{table}",
               "Method & Hyperparameters & dsprites \\\\",
               "beta\\_vae & beta=4 & 33.3 [6.1, 79.2] (1/3; 1 non-finite) "
               "\\\\",
               "deft & gamma=0.1, pressures=70/30/12/4 & 50.0 [9.5, 90.5] "
               "(1/2; 1 non-finite) \\\\"):
    assert line in tex, line
  assert "\\caption{Failure rate (\\%) by MIG: a seed fails when MIG " \
         "\\textless{} 0.1" in tex
  assert "7 seeds in 2 groups, 5 scored, 2 failed, 2 non-finite" in tex
  assert "beta\\_vae (beta=4) on dsprites: seed 3" in tex
  assert tex.count("{") == tex.count("}")


def test_report_figures_are_pngs_of_fixed_size(written):
  out, _, paths, _ = written
  figures = {os.path.basename(p): p for p in paths if p.endswith(".png")}
  assert set(figures) == set(EXPECTED_FIGURES)
  for name, path in figures.items():
    assert os.path.dirname(path) == os.path.join(out, "figures")
    assert png_size(path) == EXPECTED_FIGURES[name], name


def test_report_at_step(synthetic_sweep, tmp_path):
  markdown, paths = report.run_report(synthetic_sweep[1], str(tmp_path),
                                      step=500, figures=False)
  assert "(at step 500)" in markdown
  assert "| beta_vae | beta=4 | 0.0 [0.0, 79.3] (0/1) |" in markdown
  assert "| deft |" not in markdown  # deft has no row at step 500
  assert not any(p.endswith(".png") for p in paths)
  with pytest.raises(ValueError, match="no results rows at step 7"):
    report.run_report(synthetic_sweep[1], str(tmp_path / "none"), step=7,
                      figures=False)


def test_unknown_metric_lists_the_metrics(synthetic_sweep, tmp_path):
  out = tmp_path / "out"
  with pytest.raises(ValueError) as info:
    report.run_report(synthetic_sweep[1], str(out), metric="sap")
  assert str(info.value) == (
      "unknown metric 'sap'; the results rows have: " + ", ".join(
          sorted(METRICS)))
  assert not out.exists()  # checked before anything is written


def test_no_workdirs_is_an_error(tmp_path):
  with pytest.raises(ValueError, match="no workdirs given"):
    report.run_report([], str(tmp_path))


def test_workdir_without_results_says_how_to_make_them(synthetic_sweep,
                                                       tmp_path):
  empty = str(tmp_path / "fresh_run")
  os.makedirs(empty)
  with pytest.raises(FileNotFoundError,
                     match="python -m disentax.evaluate --workdir="):
    report.run_report([synthetic_sweep[1][0], empty], str(tmp_path / "out"))


def test_cli_sweep_root_unknown_metric_fails_clearly(synthetic_sweep):
  result = _run_cli(f"--sweep_root={synthetic_sweep[0]}", "--metric=sap",
                    "--nofigures")
  assert result.returncode != 0
  assert "error: unknown metric 'sap'; the results rows have: " in (
      result.stderr)
  assert "Traceback" not in result.stderr
  assert not os.path.exists(os.path.join(synthetic_sweep[0], "report"))


def test_report_lists_ifp_of_an_annealing_test(tmp_path):
  rows = []
  for factor, ifps in ((-1, (40.0, 44.0)), (0, (30.0, None)), (1, (8.0, 12.0))):
    for seed, ifp in enumerate(ifps):
      row = make_row(seed, 0.0, method="annealing_test", member=len(rows))
      row["hparams"] = {"factor": float(factor)}
      row["metrics"]["ifp"] = ifp
      rows.append(row)
  workdir = write_workdir(str(tmp_path), rows, "anneal",
                           factor_names=["shape", "scale"])
  markdown, _ = report.run_report([workdir], str(tmp_path / "out"),
                                  figures=False)
  assert f"## Information freezing points of {workdir}" in markdown
  # Two IFPs: the bootstrap medians are 40, 42 and 44, so the interval is
  # theirs; one IFP has none.
  assert "| whole dataset | 2 | 2 | 42.0 | [40.0, 44.0] |" in markdown
  assert "| shape | 2 | 1 | 30.0 | n/a |" in markdown
  assert "| annealing_test | factor=1 | 100.0 [34.2, 100.0] (2/2) |" in (
      markdown)


def test_empty_results_file_is_an_error(tmp_path):
  workdir = write_workdir(str(tmp_path), [], "empty")
  with pytest.raises(ValueError, match="hold no rows"):
    report.run_report([workdir], str(tmp_path / "out"))


def test_a_row_missing_a_column_names_the_file_row_and_column(tmp_path):
  rows = [make_row(0, 0.5), make_row(1, 0.2)]
  del rows[1]["seed"]
  workdir = write_workdir(str(tmp_path), rows, "torn")
  path = os.path.join(workdir, "results", "results.json")
  message = (f"{path}: row 1 has no column 'seed'; every row has "
             f"{list(results.COLUMNS)} (schema version 1, "
             "disentax/results.py)")
  with pytest.raises(ValueError) as error:
    results.load_rows([workdir])
  assert str(error.value) == message
  del rows[0]["hparams"], rows[0]["status"]
  workdir = write_workdir(str(tmp_path), rows, "worse")
  with pytest.raises(ValueError, match=r"row 0 has no column 'hparams' \(nor "
                     r"\['status'\]\)"):
    results.load_rows([workdir])

  result = _run_cli(f"--workdirs={os.path.dirname(os.path.dirname(path))}",
                    f"--out={tmp_path / 'out'}")
  assert result.returncode == 1
  assert result.stderr.splitlines() == [f"error: {message}"]
  assert not os.path.exists(tmp_path / "out")


@needs_permissions
def test_a_read_only_out_directory_is_refused_before_reading(tmp_path):
  workdir = write_workdir(str(tmp_path), ROWS, "a")
  locked = tmp_path / "locked"
  locked.mkdir()
  locked.chmod(0o500)
  try:
    with pytest.raises(PermissionError) as error:
      report.run_report([workdir], str(locked / "out"))
  finally:
    locked.chmod(0o700)
  assert str(error.value) == (f"the report directory {locked / 'out'} is not "
                              f"writable (in {locked}): Permission denied")
  assert os.listdir(locked) == []


def test_metric_summary_medians_and_ranges():
  def row(seed, mig, dci, status="ok"):
    return {"method": "m", "dataset": "d", "config_hash": "h", "step": 10,
            "member": seed, "seed": seed, "hparams": {"beta": 1.0},
            "status": status, "metrics": {"mig": mig, "dci": dci}}
  rows = [row(0, 0.1, 0.5), row(1, 0.3, None, "non_finite"), row(2, 0.2, 0.7),
          row(3, 0.4, 0.6)]
  summary = tables.metric_summary(rows)
  text = render.format_metric_summary(summary)
  # mig over 4 finite seeds: median 0.25, 10% = 0.13, 90% = 0.37 (linear).
  # Its bootstrap interval spans the data: 9999 resamples of 4 values hold
  # all-low (0.1) and all-high (0.4) medians more than 2.5% of the time each.
  assert ("| m | d | beta=1 | mig | 0.25 | [0.1, 0.4] | 0.13 | 0.37 | 4/4 |"
          in text)
  # dci over its 3 finite seeds; the null one is counted, not dropped.
  assert ("| m | d | beta=1 | dci | 0.6 | [0.5, 0.7] | 0.52 | 0.68 | 3/4 |"
          in text)
  assert [(e["metric"], e["n_finite"], e["n_seeds"]) for e in summary] == [
      ("dci", 3, 4), ("mig", 4, 4)]
  assert summary[1]["median"] == pytest.approx(0.25)


NOTE = ("Note: procedural data (dsprites): rendered by disentax, not read "
        "from the original files; not comparable to published numbers on "
        "the original files.")


def test_procedural_data_is_noted_in_every_header(tmp_path):
  """results.json records `dataset_procedural` (as the evaluation job writes
  it); the summary, report.md and report.tex of such runs carry the note,
  those of runs on files or of older results without the record do not."""
  procedural, on_file, older = (str(tmp_path / n) for n in
                                ("procedural", "file", "older"))
  results.write(procedural, ROWS, dataset_procedural=True)
  results.write(on_file, [make_row(s, 0.3, dataset="cars3d") for s in (0, 1)],
                dataset_procedural=False)
  results.write(older, ROWS)
  assert render.procedural_note(["dsprites"]) == NOTE
  assert results.load_run(procedural).dataset_procedural is True
  assert results.load_run(older).dataset_procedural is None

  summary = report.run_summary(results.load_run(procedural), "mig", 0.1)
  assert summary.splitlines()[0] == NOTE
  markdown, _ = report.run_report([on_file, procedural],
                                  str(tmp_path / "both"), figures=False)
  assert markdown.splitlines()[:3] == ["# Failure rates", "", NOTE]
  latex = _read(str(tmp_path / "both"), report.LATEX_NAME)
  assert latex.splitlines()[-2] == "  \\par " + render.latex_escape(NOTE)

  for workdir in (on_file, older):
    out = str(tmp_path / ("out_" + os.path.basename(workdir)))
    assert "not comparable" not in report.run_summary(
        results.load_run(workdir), "mig", 0.1)
    markdown, _ = report.run_report([workdir], out, figures=False)
    assert "not comparable" not in markdown
    assert "not comparable" not in _read(out, report.LATEX_NAME)


def test_procedural_flag_of_the_datasets():
  from disentax.data import dsprites, files, make_dataset
  for section in ({"name": "dsprites", "image_size": 16},
                  {"name": "color_dsprites", "image_size": 16},
                  {"name": "shapes3d", "image_size": 16},
                  {"name": "correlated",
                   "base": {"name": "dsprites", "image_size": 16}}):
    assert make_dataset(section).procedural is True, section
  assert make_dataset({"name": "triangle"}).procedural is False
  assert dsprites.NpzDSprites.procedural is False
  assert files.FileImageDataset.procedural is False
