"""Figures of synthetic runs: every file is a PNG of the documented size,
figures without inputs are skipped with a note, the numbers behind the
plots (NMI1/NMI2, stage ends, median seed) are right, and drawing keeps the
session's plotting backend."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.container import BarContainer

from disentax import results
from disentax.reporting import figures, statistics, tables
from tests.conftest import REPO
from tests.synthetic_runs import (DEFT_MIG, DEFT_STAGES, EXPECTED_FIGURES,
                                  FACTORS, make_row, png_size)


@pytest.fixture(scope="module")
def drawn(synthetic_sweep):
  root, workdirs = synthetic_sweep
  out = os.path.join(root, "figures")
  notes = []
  paths = figures.write_figures([results.load_run(w) for w in workdirs], out,
                                metric="mig", threshold=0.1,
                                note=notes.append)
  return workdirs, out, paths, notes


def test_write_figures_sizes(drawn):
  _, out, paths, _ = drawn
  assert sorted(os.path.basename(p) for p in paths) == sorted(
      EXPECTED_FIGURES)
  for path in paths:
    assert os.path.dirname(path) == out
    assert png_size(path) == EXPECTED_FIGURES[os.path.basename(path)]


def test_write_figures_notes_what_it_skipped(drawn):
  notes = drawn[3]
  assert len(notes) == 3
  assert notes[0].startswith("bvae: the trace has no DEFT stages")
  assert [n.split(":")[0] for n in notes[1:]] == ["bvae", "deft"]
  assert all("no ifp" in n for n in notes[1:])


def test_write_figures_without_trace_or_arrays(drawn, tmp_path):
  rows = [dict(r, metrics={"mig": r["metrics"]["mig"]})
          for r in results.load_rows([drawn[0][0]])]
  bare = tmp_path / "bare"
  os.makedirs(bare / "results")
  with open(bare / "results" / "results.json", "w") as f:
    json.dump({"schema_version": 1, "rows": rows}, f)
  notes = []
  paths = figures.write_figures([results.load_run(str(bare))],
                                str(tmp_path / "out"), note=notes.append)
  assert [os.path.basename(p) for p in paths] == ["mig_distribution.png"]
  assert notes[0].startswith("bare: no metrics.jsonl")
  assert notes[1].startswith("bare: no trace.npz")
  assert notes[2].startswith("bare: no nmi_matrix in results/arrays.npz")


def test_metric_distributions_two_datasets(drawn, tmp_path):
  rows = results.load_rows(drawn[0])
  other = [dict(r, dataset="cars3d") for r in rows
           if r["method"] == "beta_vae"]
  path = figures.metric_distributions(rows + other, "reconstruction_error",
                                      str(tmp_path / "recon.png"))
  assert png_size(path) == (250 + 2 * 350, 350)
  with pytest.raises(ValueError, match="no results row reports 'sap'"):
    figures.metric_distributions(rows, "sap", str(tmp_path / "sap.png"))


def test_failure_rate_figure_draws_wilson_intervals():
  rows = ([make_row(s, 0.05 if s < 3 else 0.5, beta=1.0) for s in range(10)]
          + [make_row(s, 0.05 if s < 8 else 0.5, beta=4.0) for s in range(10)]
          + [make_row(s, None, beta=16.0, status="non_finite")
             for s in range(2)])
  table = tables.failure_rate_table(rows, "mig", 0.1)
  fig = figures.failure_rate_figure(table, "mig", 0.1)
  ax = fig.axes[0]
  # One bar per scored group (beta=16 scored nothing: no bar).
  [bars] = [c for c in ax.containers if isinstance(c, BarContainer)]
  assert [p.get_width() for p in bars] == pytest.approx([30.0, 80.0])
  assert [p.get_y() + p.get_height() / 2 for p in bars] == [0, 1]
  # Wilson 3/10 and 8/10 (statsmodels' proportion_confint, in %).
  segments = bars.errorbar.lines[2][0].get_segments()
  np.testing.assert_allclose(
      [(s[0][0], s[1][0]) for s in segments],
      [(10.779126740630104, 60.32218525388546),
       (49.01624715366418, 94.33178485456247)], atol=1e-9)
  texts = [t.get_text() for t in ax.texts]
  assert texts == ["3/10", "8/10", "0/0, 2 non-finite"]
  assert [t.get_text() for t in ax.get_yticklabels()] == [
      "beta_vae\nbeta=1", "beta_vae\nbeta=4", "beta_vae\nbeta=16"]


def test_metric_distribution_marks_the_median_interval(drawn):
  rows = results.load_rows(drawn[0])
  fig = figures.metric_distribution_figure(rows, "mig", seed=3)
  [ax] = fig.axes
  segments = [c.get_segments()[0] for c in ax.collections
              if c.get_gid() == "median_ci"]
  assert len(segments) == 2
  # beta_vae (y 0): 0.05, 0.25, 0.30; deft (y 1): 0.35, 0.08.
  for (start, end), (y, values) in zip(
      segments, ((0, [0.05, 0.25, 0.30]), (1, [0.35, 0.08]))):
    interval = statistics.bootstrap_median_interval(values, 3)
    assert (start[0], end[0]) == pytest.approx(interval)
    assert start[1] == end[1] == y


def test_nmi_top2_known_values():
  nmi = np.array([[0.9, 0.1], [0.3, 0.2], [0.1, 0.6]])  # [d=3, F=2]
  first, second = figures.nmi_top2(nmi)
  np.testing.assert_allclose(first, [0.9, 0.6])
  np.testing.assert_allclose(second, [0.3, 0.2])
  with_nan = nmi.copy()
  with_nan[1, 0] = np.nan
  first, second = figures.nmi_top2(with_nan)
  assert np.isnan(first[0]) and np.isnan(second[0]) and first[1] == 0.6
  first, second = figures.nmi_top2(nmi[:1])
  np.testing.assert_allclose(second, [0.0, 0.0])


def test_stage_end_values_and_median_member(drawn):
  trace = results.load_trace(drawn[0][1])
  mig = trace["mig"]
  ends = figures.stage_end_values(trace["stage"], mig, [0, 1, 2])
  assert sorted(ends) == sorted(set(DEFT_STAGES))
  # Stage 3 ends at the last step (4), where the non-finite member 2 is NaN.
  assert ends[3] == [mig[4, 0], mig[4, 1]]
  assert ends[0] == [mig[0, m] for m in range(3)]
  assert ends[2] == [mig[2, m] for m in range(3)]
  # Median of the last finite MIG: member 2's is at step index 2.
  finals = {0: mig[4, 0], 1: mig[4, 1], 2: mig[2, 2]}
  median = sorted(finals, key=finals.get)[1]
  assert figures.median_member(mig, list(range(len(DEFT_MIG)))) == median


def test_mig_per_stage_needs_stages(drawn, tmp_path):
  trace = results.load_trace(drawn[0][0])  # beta_vae: stage -1
  with pytest.raises(ValueError, match="no DEFT stage"):
    figures.mig_per_stage(trace, None, str(tmp_path / "x.png"))
  deft = results.load_trace(drawn[0][1])
  path = figures.mig_per_stage(deft, None, str(tmp_path / "stages.png"))
  assert png_size(path) == (800, 450)


def test_nmi_figures_check_factor_names(drawn, tmp_path):
  # (Both are drawn, at their documented sizes, in test_write_figures_sizes.)
  run = results.load_run(drawn[0][1])
  with pytest.raises(ValueError, match="2 factor names"):
    figures.nmi_over_training(run.trace, ["a", "b"], str(tmp_path / "x.png"))
  with pytest.raises(ValueError, match="2 factor names"):
    figures.nmi_matrix_figure(run.arrays, run.rows, ["a", "b"],
                              str(tmp_path / "y.png"))


def _ifp_rows():
  rows = []
  for factor in range(-1, 5):
    for seed in range(3):
      value = None if (factor, seed) == (2, 0) else 5.0 * (factor + 2) + seed
      rows.append({"schema_version": 1, "method": "annealing_test",
                   "dataset": "dsprites", "config_hash": "ab", "step": 100,
                   "member": len(rows), "seed": seed,
                   "hparams": {"factor": float(factor)}, "status": "ok",
                   "metrics": {"ifp": value, "mig": 0.0}})
  return rows


def test_ifp_distributions(tmp_path):
  path = figures.ifp_distributions(_ifp_rows(), FACTORS,
                                   str(tmp_path / "ifp.png"))
  assert png_size(path) == (800, 450)
  with pytest.raises(ValueError, match="no results row reports an 'ifp'"):
    figures.ifp_distributions([dict(r, metrics={"mig": 0.1})
                               for r in _ifp_rows()], FACTORS,
                              str(tmp_path / "none.png"))


def test_workdir_tags_distinct():
  assert figures.workdir_tags(["runs/a", "runs/b/"]) == ["a", "b"]
  assert figures.workdir_tags(["x/beta=4/run", "y/beta=4/run"]) == [
      "x-beta-4-run", "y-beta-4-run"]


def test_matplotlib_only_when_drawing_and_backend_kept(tmp_path):
  """Importing the report costs no matplotlib, and drawing keeps the
  session's plotting backend and adds no pyplot figure."""
  code = ("import sys\n"
          "import numpy as np\n"
          "import disentax.results\n"
          "from disentax.reporting import figures, report, render, tables\n"
          "print('matplotlib' in sys.modules)\n"
          "import matplotlib\n"
          "matplotlib.use('pdf')\n"
          "figures.mig_per_stage({'step': np.arange(2), 'mig': np.ones((2, 1)),"
          " 'stage': np.zeros((2, 1), int)}, None, sys.argv[1])\n"
          "import matplotlib.pyplot as plt\n"
          "print(matplotlib.get_backend(), plt.get_fignums())\n")
  path = str(tmp_path / "stages.png")
  result = subprocess.run([sys.executable, "-c", code, path], cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=REPO),
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr
  assert result.stdout.split("\n")[:2] == ["False", "pdf []"]
  assert png_size(path) == (800, 450)
