"""Report tables as text: Markdown (what `python -m disentax.report` prints
and writes to report.md), CSV and LaTeX (booktabs), from the numbers of
`disentax.reporting.tables`.

  * per group: `format_markdown`, `write_csv`;
  * DEFT journal Table 4 layout: `format_pivot_markdown`, `write_pivot_csv`,
    `format_pivot_latex` (cell = failure % [95% interval] (failed/scored)
    plus the non-finite count);
  * pairs of groups on a dataset: `format_comparisons_markdown`,
    `write_comparisons_csv`, `format_comparisons_latex`;
  * every metric's spread (`format_metric_summary`), group-mean NMI
    matrices (`format_nmi_matrices`), IFPs per factor (`format_ifp_table`);
  * `statistics_note`: how the intervals and tests were made, once per
    report.

Every table says what "failure" meant and how many seeds it counts, and
lists non-finite seeds apart rather than dropping them.  A failure rate or
a median is never printed without its 95% interval; a report over data
disentax rendered itself carries `procedural_note`.
"""

from __future__ import annotations

import csv
import math
from typing import Any, Sequence

from disentax.reporting.statistics import (ALPHA, BOOTSTRAP_RESAMPLES,
                                           POWER)
from disentax.reporting.tables import Entry, format_hparams, pivot_by_dataset


def metric_label(metric: str) -> str:
  """Acronym metrics read better upper-case ("MIG < 0.1"); long names stay."""
  return metric.upper() if len(metric) <= 4 else metric


def procedural_note(datasets: Sequence[str]) -> str:
  """The line heading every table over `datasets` that disentax rendered
  itself (`GroundTruthDataset.procedural`): their numbers measure the
  method on a stand-in, not on the published files."""
  return (f"Note: procedural data ({', '.join(datasets)}): rendered by "
          f"disentax, not read from the original files; not comparable to "
          f"published numbers on the original files.")


# --------------------------------------------------------------------------
# The per-group failure-rate table.


def _number(value: float | None, digits: int = 4) -> str:
  return "n/a" if value is None else f"{value:.{digits}f}"


def _interval(low: float | None, high: float | None, digits: int = 4,
              style: str = "f") -> str:
  """"[6.1, 79.2]"; "n/a" when the interval is undefined."""
  if low is None or high is None:
    return "n/a"
  return f"[{low:.{digits}{style}}, {high:.{digits}{style}}]"


def _rate_interval(entry: Entry) -> str:
  """The failure rate's 95% interval in percent, one decimal."""
  return _interval(entry["failure_rate_ci_low"],
                   entry["failure_rate_ci_high"], 1)


def statistics_note(seed: int) -> str:
  """How a report's intervals and tests are made (`seed`: the bootstrap's)."""
  return (f"95% intervals: failure % by the Wilson score interval; medians "
          f"by a percentile bootstrap ({BOOTSTRAP_RESAMPLES} resamples, seed "
          f"{seed}; n/a under two scored seeds). Comparisons: Fisher's exact "
          f"test of failed/scored and the Mann-Whitney U test of the scored "
          f"values (both two-sided), Holm-adjusted over the table's pairs; "
          f"seeds needed: seeds per group for a two-sided test at alpha "
          f"{ALPHA:g} with power {POWER:g} to tell the two observed failure "
          f"rates apart (arcsine approximation).")


def _diverged_text(entry: Entry) -> str:
  """"; diverged: seed 3 at step 120" for seeds training froze, else ""."""
  diverged = entry.get("diverged_seeds") or {}
  if not diverged:
    return ""
  return "; diverged: " + ", ".join(
      f"seed {seed} at step {step}" for seed, step in sorted(diverged.items()))


def _non_finite_cell(entry: Entry) -> str:
  if not entry["n_non_finite"]:
    return "0"
  seeds = ", ".join(str(s) for s in entry["non_finite_seeds"])
  return f"{entry['n_non_finite']} (seeds {seeds}{_diverged_text(entry)})"


def _totals(table: Sequence[Entry]) -> str:
  n = {k: sum(e[k] for e in table)
       for k in ("n_seeds", "n_scored", "n_failed", "n_non_finite")}
  return (f"{n['n_seeds']} seeds in {len(table)} groups, {n['n_scored']} "
          f"scored, {n['n_failed']} failed, {n['n_non_finite']} non-finite")


def format_markdown(table: Sequence[Entry], metric: str,
                    threshold: float) -> str:
  """The per-group table as Markdown, headed by what "failure" means and the
  seed counts."""
  name = metric_label(metric)
  lines = [
      f"Failure rate by {name} (failure = {name} < {threshold:g}): "
      f"{_totals(table)} "
      f"(failure % = failed / scored, with its Wilson 95% interval; the "
      f"median's is a seeded bootstrap's; non-finite seeds are listed "
      f"apart).",
      "",
      "| method | dataset | hyperparameters | seeds | failed | failure % | "
      "95% CI | mean | median | median 95% CI | std | non-finite |",
      "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
  ]
  for e in table:
    rate = _number(e["failure_rate"], 1)
    median_ci = _interval(e["median_ci_low"], e["median_ci_high"])
    lines.append(
        f"| {e['method']} | {e['dataset']} | {format_hparams(e['hparams'])} "
        f"| {e['n_seeds']} | {e['n_failed']}/{e['n_scored']} | {rate} "
        f"| {_rate_interval(e)} | {_number(e['mean'])} "
        f"| {_number(e['median'])} | {median_ci} "
        f"| {_number(e['std'])} | {_non_finite_cell(e)} |")
  return "\n".join(lines) + "\n"


CSV_COLUMNS = ("method", "dataset", "hparams", "n_seeds", "n_scored",
               "n_failed", "failure_rate", "failure_rate_ci_low",
               "failure_rate_ci_high", "mean", "median", "median_ci_low",
               "median_ci_high", "std", "n_non_finite", "non_finite_seeds",
               "failed_seeds", "steps", "config_hashes")


def _csv_cell(value: Any) -> Any:
  """Lists space-separated, None empty, floats at full precision."""
  if isinstance(value, list):
    return " ".join(str(v) for v in value)
  if value is None:
    return ""
  if isinstance(value, float):
    return repr(value)
  return value


def _write_entries(entries: Sequence[Entry], columns: Sequence[str],
                   path: str) -> None:
  """`columns` of `entries` as CSV; a column named hparams* holds
  `format_hparams` of its dict."""
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(columns)
    for e in entries:
      writer.writerow([format_hparams(e[c]) if c.startswith("hparams") else
                       _csv_cell(e[c]) for c in columns])


def write_csv(table: Sequence[Entry], path: str) -> None:
  """The per-group table as CSV (full precision, intervals as _ci_low /
  _ci_high columns, the failure rate's in percent; list cells
  space-separated, undefined statistics empty)."""
  _write_entries(table, CSV_COLUMNS, path)


# --------------------------------------------------------------------------
# DEFT journal Table 4 layout: methods (with hyperparameters) x datasets.


def _pivot_cell(entry: Entry | None) -> str | None:
  """"33.3 [6.1, 79.2] (1/3; 1 non-finite)"; None when there is no such
  group."""
  if entry is None:
    return None
  text = _number(entry["failure_rate"], 1)
  if entry["failure_rate"] is not None:
    text += f" {_rate_interval(entry)}"
  text += f" ({entry['n_failed']}/{entry['n_scored']}"
  if entry["n_non_finite"]:
    text += f"; {entry['n_non_finite']} non-finite"
  return text + ")"


def _step_text(step: int | None) -> str:
  return ("each seed's latest evaluated step" if step is None
          else f"step {step}")


def pivot_caption(table: Sequence[Entry], metric: str, threshold: float,
                  step: int | None = None) -> str:
  """What the Table 4 layout shows: metric, threshold, cell format, seeds."""
  name = metric_label(metric)
  sizes = [e["n_seeds"] for e in table]
  per_cell = (f"; {min(sizes)}-{max(sizes)} seeds per cell"
              if sizes and min(sizes) != max(sizes) else
              f"; {sizes[0]} seeds per cell" if sizes else "")
  return (f"Failure rate (%) by {name}: a seed fails when {name} < "
          f"{threshold:g} (at {_step_text(step)}). Rows: method "
          f"(hyperparameters); columns: dataset; cell: failure % [Wilson "
          f"95% interval] (failed/scored), non-finite seeds are not scored "
          f"and are counted apart. {_totals(table)}{per_cell}.")


def _non_finite_notes(table: Sequence[Entry]) -> list[str]:
  return [f"{e['method']} ({format_hparams(e['hparams'])}) on "
          f"{e['dataset']}: seed{'s' if e['n_non_finite'] > 1 else ''} "
          f"{', '.join(str(s) for s in e['non_finite_seeds'])}"
          f"{_diverged_text(e)}"
          for e in table if e["n_non_finite"]]


def format_pivot_markdown(table: Sequence[Entry], metric: str,
                          threshold: float, step: int | None = None) -> str:
  """The Table 4 layout as Markdown: caption, table, non-finite seeds."""
  datasets, rows = pivot_by_dataset(table)
  lines = [pivot_caption(table, metric, threshold, step), "",
           "| method | hyperparameters | " + " | ".join(datasets) + " |",
           "|---|---|" + "---:|" * len(datasets)]
  for row in rows:
    cells = [_pivot_cell(row["cells"].get(d)) or "-" for d in datasets]
    lines.append(f"| {row['method']} | {format_hparams(row['hparams'])} | "
                 + " | ".join(cells) + " |")
  notes = _non_finite_notes(table)
  lines += ["", "Non-finite seeds (not scored): "
            + ("; ".join(notes) if notes else "none") + "."]
  return "\n".join(lines) + "\n"


PIVOT_FIELDS = ("failure_rate", "failure_rate_ci_low", "failure_rate_ci_high",
                "n_failed", "n_scored", "n_non_finite", "non_finite_seeds",
                "n_seeds")


def write_pivot_csv(table: Sequence[Entry], path: str, metric: str,
                    threshold: float) -> None:
  """The Table 4 layout as CSV: one line per (method, hparams), and per
  dataset the columns `DATASET:failure_rate` (%), `:failure_rate_ci_low`,
  `:failure_rate_ci_high` (its Wilson 95% interval, %), `:n_failed`,
  `:n_scored`, `:n_non_finite`, `:non_finite_seeds` (space-separated),
  `:n_seeds`; empty where the row was not run on that dataset.  `metric`
  and `threshold` are columns too, so the file says what "failure"
  meant."""
  datasets, rows = pivot_by_dataset(table)
  header = ["metric", "threshold", "method", "hparams"]
  header += [f"{d}:{field}" for d in datasets for field in PIVOT_FIELDS]
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    for row in rows:
      cells = [metric, repr(float(threshold)), row["method"],
               format_hparams(row["hparams"])]
      for d in datasets:
        entry = row["cells"].get(d)
        cells += [_csv_cell(entry[field]) if entry else ""
                  for field in PIVOT_FIELDS]
      writer.writerow(cells)


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%",
                  "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "<": r"\textless{}", ">": r"\textgreater{}",
                  "∞": r"$\infty$"}


def latex_escape(text: str) -> str:
  """`text` with LaTeX's special characters escaped (beta_vae -> beta\\_vae)."""
  return "".join(_LATEX_SPECIAL.get(c, c) for c in text)


def _latex_table(what: str, caption: str, label: str, align: str,
                 header: Sequence[str], body: Sequence[Sequence[str]],
                 footnote: str | None = None, note: str | None = None
                 ) -> str:
  """A LaTeX `table` with a booktabs `tabular` (needs
  \\usepackage{booktabs}) headed by a comment naming `what`: `caption`,
  `header` and `body` cells (plain text, escaped here), `footnote` under
  it and then `note`, a paragraph of its own."""
  lines = [
      f"% {what}, written by disentax.report; needs "
      "\\usepackage{booktabs}.",
      "\\begin{table}[t]",
      "  \\centering",
      "  \\caption{" + latex_escape(caption) + "}",
      "  \\label{" + latex_escape(label) + "}",
      "  \\begin{tabular}{" + align + "}",
      "    \\toprule",
      "    " + " & ".join(latex_escape(h) for h in header) + " \\\\",
      "    \\midrule",
  ]
  lines += ["    " + " & ".join(latex_escape(c) for c in row) + " \\\\"
            for row in body]
  lines += ["    \\bottomrule", "  \\end{tabular}"]
  if footnote is not None:
    lines.append("  \\par\\smallskip\\footnotesize " + latex_escape(footnote))
  if note:
    lines.append("  \\par " + latex_escape(note))
  lines.append("\\end{table}")
  return "\n".join(lines) + "\n"


def format_pivot_latex(table: Sequence[Entry], metric: str, threshold: float,
                       step: int | None = None, note: str | None = None
                       ) -> str:
  """The Table 4 layout as a LaTeX `table` with a booktabs `tabular`
  (needs \\usepackage{booktabs}), captioned like the Markdown, non-finite
  seeds and then `note` (e.g. `procedural_note`) listed under it."""
  datasets, rows = pivot_by_dataset(table)
  notes = _non_finite_notes(table)
  return _latex_table(
      "Failure-rate table (DEFT journal Table 4 layout)",
      pivot_caption(table, metric, threshold, step),
      f"tab:failure-rate-{metric}", "ll" + "r" * len(datasets),
      ["Method", "Hyperparameters", *datasets],
      [[row["method"], format_hparams(row["hparams"]),
        *(_pivot_cell(row["cells"].get(d)) or "--" for d in datasets)]
       for row in rows],
      "Non-finite seeds (not scored): "
      + ("; ".join(notes) if notes else "none") + ".", note)


# --------------------------------------------------------------------------
# Pairs of groups on one dataset (`tables.comparison_table`).


def _group_name(method: str, hparams: dict[str, Any]) -> str:
  return f"{method} ({format_hparams(hparams)})"


def _p_text(p: float | None) -> str:
  return "n/a" if p is None else f"{p:.3g}"


def _seeds_text(n: float | None) -> str:
  """Seeds needed: an integer, "∞" for equal rates, n/a unscored."""
  if n is None:
    return "n/a"
  return "∞" if math.isinf(n) else f"{n:.0f}"


def _comparison_cells(pair: Entry) -> list[str]:
  """A pair's cells under `_COMPARISON_HEADER`."""
  return [pair["dataset"], _group_name(pair["method_a"], pair["hparams_a"]),
          _group_name(pair["method_b"], pair["hparams_b"]),
          f"{pair['n_failed_a']}/{pair['n_scored_a']}",
          f"{pair['n_failed_b']}/{pair['n_scored_b']}",
          _p_text(pair["fisher_p"]), _p_text(pair["fisher_p_holm"]),
          _number(pair["median_a"]), _number(pair["median_b"]),
          _p_text(pair["mann_whitney_p"]),
          _p_text(pair["mann_whitney_p_holm"]),
          _seeds_text(pair["seeds_needed"])]


_COMPARISON_HEADER = ("dataset", "A", "B", "failed A", "failed B", "Fisher p",
                      "Holm", "median A", "median B", "Mann-Whitney p",
                      "Holm", "seeds needed")


def comparisons_caption(pairs: Sequence[Entry], metric: str,
                        threshold: float) -> str:
  """What the comparisons table shows."""
  name = metric_label(metric)
  count = f"{len(pairs)} pair{'' if len(pairs) == 1 else 's'}"
  return (f"Groups compared pairwise on each dataset ({count}): "
          f"failed = seeds with {name} < {threshold:g} of those scored; "
          f"Fisher p: Fisher's exact test of the failure counts; "
          f"Mann-Whitney p: U test of the scored {name} values (both "
          f"two-sided); Holm: adjusted over the {count}; seeds "
          f"needed: per group, for a test at alpha {ALPHA:g} with power "
          f"{POWER:g} to tell the two observed failure rates apart (∞: "
          f"equal rates).")


def format_comparisons_markdown(pairs: Sequence[Entry], metric: str,
                                threshold: float) -> str:
  """The comparisons as Markdown: caption and one line per pair, or a
  line saying no two groups share a dataset."""
  if not pairs:
    return "No two groups share a dataset: nothing to compare.\n"
  lines = [comparisons_caption(pairs, metric, threshold), "",
           "| " + " | ".join(_COMPARISON_HEADER) + " |",
           "|---|---|---|" + "---:|" * (len(_COMPARISON_HEADER) - 3)]
  lines += ["| " + " | ".join(_comparison_cells(pair)) + " |"
            for pair in pairs]
  return "\n".join(lines) + "\n"


COMPARISON_COLUMNS = ("dataset", "method_a", "hparams_a", "method_b",
                      "hparams_b", "n_failed_a", "n_scored_a", "n_failed_b",
                      "n_scored_b", "failure_rate_a", "failure_rate_b",
                      "fisher_p", "fisher_p_holm", "median_a", "median_b",
                      "mann_whitney_p", "mann_whitney_p_holm",
                      "seeds_needed")


def write_comparisons_csv(pairs: Sequence[Entry], path: str) -> None:
  """The comparisons as CSV, full precision (seeds_needed `inf` for equal
  rates; undefined values empty)."""
  _write_entries(pairs, COMPARISON_COLUMNS, path)


def format_comparisons_latex(pairs: Sequence[Entry], metric: str,
                             threshold: float) -> str:
  """The comparisons as a LaTeX `table` (booktabs), captioned like the
  Markdown."""
  return _latex_table(
      "Pairwise comparisons of groups", comparisons_caption(
          pairs, metric, threshold), f"tab:comparisons-{metric}",
      "lll" + "r" * (len(_COMPARISON_HEADER) - 3), _COMPARISON_HEADER,
      [_comparison_cells(p) for p in pairs])


# --------------------------------------------------------------------------
# Further tables: every metric, NMI matrices, information freezing points.


def format_metric_summary(summary: Sequence[Entry]) -> str:
  """`tables.metric_summary` as Markdown: one line per group and metric
  (so a battery of twenty metrics stays readable) with the median and its
  bootstrap 95% interval, the 10-90% range and finite / seeds."""
  lines = ["| method | dataset | hyperparameters | metric | median | "
           "median 95% CI | 10% | 90% | finite / seeds |",
           "|---|---|---|---|---:|---:|---:|---:|---:|"]
  for e in summary:
    median_ci = _interval(e["median_ci_low"], e["median_ci_high"], 4, "g")
    stats = ("n/a | n/a | n/a | n/a" if e["median"] is None else
             f"{e['median']:.4g} | {median_ci} | {e['low']:.4g} | "
             f"{e['high']:.4g}")
    lines.append(f"| {e['method']} | {e['dataset']} | "
                 f"{format_hparams(e['hparams'])} | {e['metric']} | {stats} "
                 f"| {e['n_finite']}/{e['n_seeds']} |")
  return "\n".join(lines) + "\n"


def format_nmi_matrices(means: Sequence[Entry],
                        factor_names: Sequence[str]) -> str:
  """`tables.nmi_matrix_means` as one Markdown table per group: latents
  down, `factor_names` across, two decimals."""
  out = []
  for e in means:
    title = (f"NMI matrix, {e['method']} on {e['dataset']} "
             f"({format_hparams(e['hparams'])}), mean of "
             f"{len(e['members'])} seeds")
    mean = e["mean"]
    if mean is None:
      out.append(f"{title}: no finite seed\n")
      continue
    header = "| latent | " + " | ".join(factor_names) + " |"
    lines = [title, "", header, "|---" * (mean.shape[1] + 1) + "|"]
    lines += [f"| z{j} | " + " | ".join(f"{v:.2f}" for v in mean[j]) + " |"
              for j in range(mean.shape[0])]
    out.append("\n".join(lines) + "\n")
  return "\n".join(out)


def format_ifp_table(summary: Sequence[Entry],
                     factor_names: Sequence[str]) -> str:
  """`tables.ifp_summary` as a Markdown table (no final newline): per
  factor the seeds, how many froze, the IFP median with its bootstrap 95%
  interval and 10-90% range, and the change points' medians."""
  lines = ["| factor | seeds | froze | IFP median | 95% CI | 10% | 90% | "
           "change points (median) |", "|---|---|---|---|---|---|---|---|"]
  for e in summary:
    name = ("whole dataset" if e["factor"] < 0
            else factor_names[e["factor"]])
    median_ci = _interval(e["median_ci_low"], e["median_ci_high"], 1)
    stats = ("n/a | n/a | n/a | n/a" if e["median"] is None else
             f"{e['median']:.1f} | {median_ci} | {e['low']:.1f} | "
             f"{e['high']:.1f}")
    points = ", ".join(f"{p:.1f}" for p in e["change_points"])
    lines.append(f"| {name} | {e['n_seeds']} | {e['n_froze']} | {stats} | "
                 f"{points or '-'} |")
  return "\n".join(lines)
