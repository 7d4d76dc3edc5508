"""Figures of evaluated runs, after the DEFT journal (Wu et al., Machine
Learning 2022): what a failure-rate table alone does not show.

  * `metric_distributions`: a metric's distribution over seeds per method
    (with hyperparameters), one panel per dataset, the median's bootstrap
    95% interval marked (Fig. 7; Fig. 9 for reconstruction_error);
  * `failure_rates`: each group's failure rate with its Wilson 95%
    interval, one panel per dataset (the failure table as a picture);
  * `mig_per_stage`: MIG at the end of each DEFT stage, over seeds (Fig. 8);
  * `nmi_over_training`: NMI1 / NMI2 per factor over training, and the NMI of
    every latent for the median-MIG seed (Fig. 3: information diffusion);
  * `nmi_matrix_figure`: the group-mean NMI matrix latents x factors
    (Fig. 11b);
  * `ifp_distributions`: information freezing points per factor (Fig. 6);
  * `metric_correlation_figure`: how the metrics rank the members alike
    (Spearman, `tables.metric_correlations`);
  * `response_figure`: a member's mean code over each factor's values
    (drawn by `disentax.reporting.visualize` from a model's codes);
  * `training_curves`: every quantity of metrics.jsonl over training, the
    median over seeds per hyperparameter group with a 10-90% band
    (`curve_bands`);
  * `write_figures`: every figure some loaded runs have inputs for.

Figures take loaded results (rows, arrays, traces, curves, `RunResults` from
`disentax.results.load_run`); they read no file and load no model.  Every
figure has a title, axis labels and (with several series) a legend, and a
size fixed by its content as documented per function, saved at `DPI`
without tight cropping, so its pixel size is predictable.  Sizes are whole
quarter inches so inches x DPI is an exact pixel count.

matplotlib is imported when the first figure is made.  Figures are
`matplotlib.figure.Figure`s, not pyplot figures, and PNGs are rendered by
Agg whatever the session's backend: importing or drawing neither sets that
backend nor adds to pyplot's open figures.
"""

from __future__ import annotations

import math
import os
import re
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from disentax.reporting.render import metric_label
from disentax.reporting.statistics import bootstrap_median_interval
from disentax.reporting.tables import (Entry, failure_rate_table,
                                       finite_value, format_hparams,
                                       group_rows, hparams_key, ifp_rows,
                                       metric_correlations, metric_names,
                                       nmi_matrix_means, quiet_nan_stats,
                                       select_rows)
from disentax.results import Row, RunResults
from disentax.workdir import (ARRAYS_NAME, RESULTS_DIR, RUN_LOG_NAME,
                              TRACE_NAME)

if TYPE_CHECKING:
  from matplotlib.axes import Axes
  from matplotlib.figure import Figure

DPI = 100
Note = Callable[[str], None]

# Fixed sizes (inches) of the figures whose layout does not grow with the
# data; the others are documented in their functions.
STAGE_SIZE = (8.0, 4.5)
IFP_SIZE = (8.0, 4.5)
# The spread over seeds drawn around a median: these quantiles.
BAND_QUANTILES = (0.1, 0.9)
# The training curves drawn first, in this order; the others follow sorted.
FIRST_CURVES = ("loss", "recon", "kl")


def new_figure(size: tuple[float, float], rows: int = 1, cols: int = 1,
               **subplots: Any) -> tuple[Figure, np.ndarray]:
  """A figure of `size` inches (constrained layout) and its rows x cols
  axes as a 2-D array; `subplots` go to `Figure.subplots` (sharey...)."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  fig = Figure(figsize=size, layout="constrained")
  return fig, fig.subplots(rows, cols, squeeze=False, **subplots)


def save(fig: Figure, path: str) -> str:
  """Saves `fig` as PNG at `DPI` (creating the directory); returns `path`."""
  directory = os.path.dirname(path)
  if directory:
    os.makedirs(directory, exist_ok=True)
  fig.savefig(path, dpi=DPI)
  return path


def _group_label(method: str, hparams: Mapping[str, Any]) -> str:
  return f"{method}\n{format_hparams(hparams)}"


def _horizontal() -> dict[str, Any]:
  """Keyword for horizontal violins/boxes across matplotlib versions."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  major, minor = (int(p) for p in matplotlib.__version__.split(".")[:2])
  return ({"orientation": "horizontal"} if (major, minor) >= (3, 10)
          else {"vert": False})


def _panel_size(datasets: int, groups: int) -> tuple[float, float]:
  """Inches of a figure with a panel per dataset and a line per group."""
  return 2.5 + 3.5 * datasets, max(3.5, 1.5 + 0.5 * groups)


def _group_axis(ax: Axes, groups: Sequence[tuple[str, Any]]) -> None:
  """The y axis of the first panel: one line per (method, hparams_key)
  group, top down."""
  ax.set_yticks(range(len(groups)), [_group_label(m, dict(h))
                                     for m, h in groups], fontsize=8)
  ax.set_ylim(len(groups) - 0.5, -0.5)
  ax.set_ylabel("method (hyperparameters)")


def _step_title(step: int | None) -> str:
  return "latest evaluated step" if step is None else f"step {step}"


def metric_distributions(rows: Sequence[Row], metric: str, path: str, *,
                         threshold: float | None = None,
                         step: int | None = None, seed: int = 0) -> str:
  """`metric_distribution_figure` saved to `path`; returns `path`."""
  return save(metric_distribution_figure(rows, metric, threshold=threshold,
                                         step=step, seed=seed), path)


def metric_distribution_figure(rows: Sequence[Row], metric: str, *,
                               threshold: float | None = None,
                               step: int | None = None, seed: int = 0
                               ) -> Figure:
  """Violins (with every seed as a point, the median marked with its
  bootstrap 95% interval drawn from `seed`) of `metric` per
  method/hyperparameter group, one panel per dataset; DEFT Fig. 7 (and
  Fig. 9 with reconstruction_error).  The interval is a horizontal segment
  with gid "median_ci" (none under two scored seeds).

  Seeds are chosen as in the failure table (`step`, or each seed's latest);
  each group's count of scored and non-finite seeds is written beside it, so
  nothing is dropped silently.  `threshold` adds the failure line.  Size:
  (2.5 + 3.5 x datasets) x max(3.5, 1.5 + 0.5 x groups) inches.
  """
  selected = [r for r in select_rows(rows, step)
              if metric in (r.get("metrics") or {})]
  if not selected:
    raise ValueError(f"no results row reports {metric!r}")
  datasets = sorted({r["dataset"] for r in selected})
  groups = sorted({(r["method"], hparams_key(r["hparams"]))
                   for r in selected})
  finite_values: dict[tuple, list[float]] = {}
  non_finite_counts: dict[tuple, int] = {}
  for row in selected:
    key = ((row["method"], hparams_key(row["hparams"])), row["dataset"])
    value = finite_value(row, metric)
    if value is None:
      non_finite_counts[key] = non_finite_counts.get(key, 0) + 1
    else:
      finite_values.setdefault(key, []).append(value)

  fig, axes = new_figure(_panel_size(len(datasets), len(groups)), 1,
                         len(datasets), sharey=True)
  ys = np.arange(len(groups))
  legend: dict[str, Any] = {}  # label -> handle, first drawn
  for ax, dataset in zip(axes[0], datasets):
    for y, group in zip(ys, groups):
      finite = finite_values.get((group, dataset), [])
      non_finite = non_finite_counts.get((group, dataset), 0)
      n = len(finite) + non_finite
      if len(finite) >= 2 and np.ptp(finite) > 0:
        parts = ax.violinplot([finite], positions=[y], widths=0.8,
                              showextrema=False, **_horizontal())
        for body in parts["bodies"]:
          body.set_facecolor("C0")
          body.set_alpha(0.3)
        legend.setdefault("distribution", parts["bodies"][0])
      if finite:
        jitter = (np.linspace(-0.15, 0.15, len(finite)) if len(finite) > 1
                  else np.zeros(1))
        legend.setdefault("seed", ax.scatter(
            finite, y + jitter, s=14, color="k", alpha=0.7, zorder=3))
        legend.setdefault("median", ax.scatter(
            [np.median(finite)], [y], marker="|", s=400, color="C3",
            zorder=4))
        interval = bootstrap_median_interval(finite, seed)
        if interval is not None:
          legend.setdefault("median 95% CI", ax.hlines(
              y, *interval, color="C3", linewidth=3, alpha=0.6, zorder=4,
              gid="median_ci"))
      text = ("no runs" if n == 0 else f"n={n}"
              + (f", {non_finite} non-finite" if non_finite else ""))
      ax.text(0.99, y + 0.3, text, transform=ax.get_yaxis_transform(),
              ha="right", va="center", fontsize=8,
              color="C3" if non_finite else "0.3")
    if threshold is not None:
      legend.setdefault(f"failure threshold {threshold:g}", ax.axvline(
          threshold, color="C1", linestyle="--"))
    ax.set_title(dataset)
    ax.set_xlabel(metric)
    ax.grid(axis="x", alpha=0.3)
  _group_axis(axes[0][0], groups)
  if legend:  # below the panels, clear of the per-group counts
    fig.legend(list(legend.values()), list(legend), loc="outside lower center",
               ncols=len(legend), fontsize=8)
  fig.suptitle(f"{metric} over seeds per method ({_step_title(step)})")
  return fig


def failure_rate_figure(table: Sequence[Entry], metric: str,
                        threshold: float, step: int | None = None
                        ) -> Figure:
  """Horizontal bars of each group's failure % (`tables.failure_rate_table`
  entries) with its Wilson 95% interval as error bars, one panel per
  dataset, "failed/scored" (and non-finite seeds) beside each bar; a group
  that scored nothing has no bar and says so.  Size as
  `metric_distribution_figure`'s.
  """
  if not table:
    raise ValueError("no failure-table entries to draw")
  datasets = sorted({e["dataset"] for e in table})
  groups = sorted({(e["method"], hparams_key(e["hparams"])) for e in table})
  fig, axes = new_figure(_panel_size(len(datasets), len(groups)), 1,
                         len(datasets), sharey=True)
  for ax, dataset in zip(axes[0], datasets):
    entries = {(e["method"], hparams_key(e["hparams"])): e for e in table
               if e["dataset"] == dataset}
    scored = [(y, entries[g]) for y, g in enumerate(groups)
              if g in entries and entries[g]["n_scored"]]
    if scored:
      ys, shown = zip(*scored)
      rates = np.array([e["failure_rate"] for e in shown])
      errors = np.abs(np.array([[e["failure_rate_ci_low"] for e in shown],
                                [e["failure_rate_ci_high"] for e in shown]])
                      - rates)
      ax.barh(ys, rates, height=0.6, color="C0", alpha=0.6, xerr=errors,
              error_kw={"ecolor": "k", "capsize": 4},
              label="failure % (Wilson 95% CI)")
    for y, group in enumerate(groups):
      e = entries.get(group)
      text = ("no runs" if e is None else f"{e['n_failed']}/{e['n_scored']}"
              + (f", {e['n_non_finite']} non-finite" if e["n_non_finite"]
                 else ""))
      ax.text(0.99, y + 0.3, text, transform=ax.get_yaxis_transform(),
              ha="right", va="center", fontsize=8,
              color="C3" if e and e["n_non_finite"] else "0.3")
    ax.set_xlim(0, 100)
    ax.set_title(dataset)
    ax.set_xlabel("failure %")
    ax.grid(axis="x", alpha=0.3)
  _group_axis(axes[0][0], groups)
  fig.suptitle(f"Failure rate ({metric_label(metric)} < {threshold:g}) "
               f"with Wilson 95% intervals\n({_step_title(step)})")
  return fig


def _boxes(ax: Axes, data: Sequence[Sequence[Sequence[float]]],
           series: Sequence[str], categories: Sequence[str]) -> None:
  """Box plots of data[s][c] (finite values) at category c, side by side per
  series s, each value as a point, "n=" under each box; a legend naming the
  series and the points."""
  from matplotlib.patches import Patch  # pylint: disable=g-import-not-at-top
  width = 0.8 / len(series)
  handles = []
  for s, label in enumerate(series):
    color = f"C{s % 10}"
    offset = (s - (len(series) - 1) / 2) * width
    for c in range(len(categories)):
      vals = list(data[s][c])
      x = c + offset
      if vals:
        ax.boxplot([vals], positions=[x], widths=width * 0.8,
                   patch_artist=True, showfliers=False,
                   boxprops={"facecolor": color, "alpha": 0.35},
                   medianprops={"color": color})
        jitter = (np.linspace(-width / 4, width / 4, len(vals))
                  if len(vals) > 1 else np.zeros(1))
        ax.scatter(x + jitter, vals, s=12, color="k", alpha=0.7, zorder=3)
      ax.text(x, 0.01, f"n={len(vals)}", transform=ax.get_xaxis_transform(),
              ha="center", va="bottom", fontsize=7, color="0.3")
    handles.append(Patch(facecolor=color, alpha=0.35, label=label))
  ax.set_xticks(range(len(categories)), categories)
  ax.set_xlim(-0.5, len(categories) - 0.5)
  point = ax.scatter([], [], s=12, color="k", label="seed")
  ax.legend(handles=handles + [point], fontsize=8, loc="best")


def _member_groups(rows: Sequence[Row] | None, num_members: int
                   ) -> list[tuple[str, list[int]]]:
  """(label, member indices) per method/dataset/hparams group of the rows
  (their latest step), or one group of every member without rows."""
  if not rows:
    return [("all members", list(range(num_members)))]
  groups = []
  for (method, dataset, hparams), group in group_rows(
      select_rows(rows)).items():
    members = sorted(int(r["member"]) for r in group
                     if 0 <= int(r["member"]) < num_members)
    if members:
      groups.append((f"{method} on {dataset} "
                     f"({format_hparams(dict(hparams))})", members))
  if not groups:
    raise ValueError(f"no results row names a member of the trace's "
                     f"{num_members}")
  return groups


def stage_end_values(stage: np.ndarray, values: np.ndarray,
                     members: Sequence[int]) -> dict[int, list[float]]:
  """Per stage index s >= 0 of stage [T, M]: the finite values[t, m] of the
  `members` at the last traced step t of stage s (what a stage ends with;
  a member whose value there is NaN is left out)."""
  stage = np.asarray(stage)
  out = {}
  for s in sorted(int(s) for s in np.unique(stage[stage >= 0])):
    out[s] = []
    for m in members:
      at = np.flatnonzero(stage[:, m] == s)
      if at.size and np.isfinite(values[at[-1], m]):
        out[s].append(float(values[at[-1], m]))
  return out


def mig_per_stage(trace: Mapping[str, np.ndarray], rows: Sequence[Row] | None,
                  path: str) -> str:
  """MIG of every seed at the last traced step of each DEFT stage, as boxes
  per stage (one series per hyperparameter group of `rows`, which map trace
  members to groups); DEFT Fig. 8.  Size `STAGE_SIZE`.  Returns `path`.

  Raises:
    ValueError: the trace has no stage >= 0 (not a staged objective) or no
      `mig`.
  """
  for name in ("mig", "stage"):
    if name not in trace:
      raise ValueError(f"the trace has no {name!r} array")
  stage = np.asarray(trace["stage"])
  mig = np.asarray(trace["mig"], float)
  stages = sorted(int(s) for s in np.unique(stage[stage >= 0]))
  if not stages:
    raise ValueError("the trace has no DEFT stage (stage is -1 throughout)")
  groups = _member_groups(rows, mig.shape[1])
  data = []
  for _, members in groups:
    ends = stage_end_values(stage, mig, members)
    data.append([ends[s] for s in stages])
  fig, [[ax]] = new_figure(STAGE_SIZE)
  _boxes(ax, data, [label for label, _ in groups],
         [f"stage {s + 1}" for s in stages])
  ax.set_xlabel("DEFT stage (MIG at its last traced step)")
  ax.set_ylabel("MIG")
  ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
  ax.grid(axis="y", alpha=0.3)
  ax.set_title("MIG at the end of each DEFT stage, over seeds")
  return save(fig, path)


def nmi_top2(nmi_matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(NMI1, NMI2) of [..., d, F]: per factor the largest and second largest
  NMI over latents (DEFT eq. 8 before the mean over factors), [..., F];
  NaN where any latent's NMI is NaN; NMI2 = 0 with a single latent."""
  nmi = np.asarray(nmi_matrix, float)
  ranked = -np.sort(-np.nan_to_num(nmi, nan=-np.inf), axis=-2)
  bad = np.isnan(nmi).any(axis=-2)
  first = np.where(bad, np.nan, ranked[..., 0, :])
  second = (np.where(bad, np.nan, ranked[..., 1, :]) if nmi.shape[-2] > 1
            else np.where(bad, np.nan, 0.0))
  return first, second


def median_member(mig: np.ndarray, members: Sequence[int]) -> int:
  """The member whose last finite traced MIG is the (lower) median of the
  members' (the one Fig. 3's heatmaps show); the first member if none is
  finite."""
  finals = []
  for m in members:
    finite = np.flatnonzero(np.isfinite(mig[:, m]))
    if finite.size:
      finals.append((float(mig[finite[-1], m]), m))
  if not finals:
    return int(members[0])
  finals.sort()
  return int(finals[(len(finals) - 1) // 2][1])


def _step_ticks(ax: Axes, steps: np.ndarray) -> None:
  """At most 6 x ticks on a heatmap whose columns are trace steps."""
  at = np.unique(np.linspace(0, len(steps) - 1, min(6, len(steps))).round()
                 .astype(int))
  ax.set_xticks(at, [f"{int(steps[i]):g}" for i in at], fontsize=7)


def nmi_over_training(trace: Mapping[str, np.ndarray],
                      factor_names: Sequence[str], path: str, *,
                      members: Sequence[int] | None = None,
                      title: str | None = None) -> str:
  """Per factor (a column): NMI1 and NMI2 vs training step, median over the
  `members` (default all) with a 10-90% band, above a heatmap latents x
  steps of that factor's NMI for the median-MIG member; DEFT Fig. 3 (a
  falling NMI1 / rising NMI2 is information diffusion).  Size
  (1 + 3 x factors) x 6 inches.  Returns `path`.
  """
  if "nmi_matrix" not in trace:
    raise ValueError("the trace has no 'nmi_matrix' array")
  nmi = np.asarray(trace["nmi_matrix"], float)  # [T, M, d, F]
  steps = np.asarray(trace["step"])
  num_latents, num_factors = nmi.shape[2:]
  if len(factor_names) != num_factors:
    raise ValueError(f"{len(factor_names)} factor names for a trace of "
                     f"{num_factors} factors")
  members = list(range(nmi.shape[1])) if members is None else list(members)
  nmi1, nmi2 = nmi_top2(nmi[:, members])  # [T, m, F]
  mig = np.asarray(trace["mig"], float) if "mig" in trace else None
  shown = median_member(mig, members) if mig is not None else members[0]

  fig, axes = new_figure((1.0 + 3.0 * num_factors, 6.0), 2, num_factors)
  image = None
  with quiet_nan_stats():
    for k, name in enumerate(factor_names):
      ax = axes[0][k]
      for values, label, color in ((nmi1, "NMI1", "C0"), (nmi2, "NMI2", "C1")):
        low, mid, high = np.nanquantile(values[:, :, k], [0.1, 0.5, 0.9],
                                        axis=1)
        ax.fill_between(steps, low, high, color=color, alpha=0.25,
                        label=f"{label} 10-90%")
        ax.plot(steps, mid, color=color, marker="o", markersize=3,
                label=f"{label} median")
      ax.set_ylim(0, 1.02)
      ax.set_title(name)
      ax.set_xlabel("training step")
      ax.grid(alpha=0.3)
      heat = axes[1][k]
      image = heat.imshow(nmi[:, shown, :, k].T, aspect="auto", vmin=0,
                          vmax=1, cmap="viridis", interpolation="nearest")
      heat.set_yticks(range(num_latents),
                      [f"z{j}" for j in range(num_latents)], fontsize=7)
      _step_ticks(heat, steps)
      heat.set_xlabel("training step")
  axes[0][0].set_ylabel(f"NMI over {len(members)} seeds")
  axes[1][0].set_ylabel(f"latent (member {shown})")
  axes[0][0].legend(fontsize=7, loc="best")
  fig.colorbar(image, ax=list(axes[1]), label="NMI I(z_j; c_k) / H(c_k)",
               shrink=0.9)
  fig.suptitle((title or "NMI over training")
               + f" (heatmaps: median-MIG member {shown})")
  return save(fig, path)


def nmi_matrix_figure(arrays: Mapping[str, np.ndarray], rows: Sequence[Row],
                      factor_names: Sequence[str], path: str) -> str:
  """A heatmap latents x factors of each group's NMI matrix I(z_j; c_k) /
  H(c_k), the mean over its finite seeds, numbers in the cells; DEFT Fig.
  11b.  `rows` are the workdir's (their latest step: the arrays belong to
  the latest evaluation); one panel per group, 3 per line.  Size
  (1 + cols x (1.5 + 0.75 F)) x (0.5 + lines x (1.5 + 0.5 d)) inches.
  Returns `path`.
  """
  if "nmi_matrix" not in arrays:
    raise ValueError("no nmi_matrix in the results arrays")
  nmi = np.asarray(arrays["nmi_matrix"], float)  # [M, d, F]
  num_latents, num_factors = nmi.shape[1:]
  if len(factor_names) != num_factors:
    raise ValueError(f"{len(factor_names)} factor names for an NMI matrix of "
                     f"{num_factors} factors")
  groups = nmi_matrix_means(select_rows(rows), {"nmi_matrix": nmi})
  if not groups:
    raise ValueError("no results rows to group the NMI matrices by")
  cols = min(3, len(groups))
  lines = math.ceil(len(groups) / cols)
  size = (1.0 + cols * (1.5 + 0.75 * num_factors),
          0.5 + lines * (1.5 + 0.5 * num_latents))
  fig, axes = new_figure(size, lines, cols)
  image = None
  for ax, group in zip(axes.flat, groups):
    ax.set_title(f"{group['method']} on {group['dataset']}\n"
                 f"{format_hparams(group['hparams'])}, mean of "
                 f"{len(group['members'])}/{group['n_seeds']} seeds",
                 fontsize=9)
    ax.set_xticks(range(num_factors), factor_names, rotation=30, fontsize=8)
    ax.set_yticks(range(num_latents), [f"z{j}" for j in range(num_latents)],
                  fontsize=8)
    ax.set_xlabel("factor")
    ax.set_ylabel("latent")
    mean = group["mean"]
    if mean is None:
      ax.text(0.5, 0.5, "no finite seed", transform=ax.transAxes,
              ha="center", va="center")
      continue
    image = ax.imshow(mean, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for j in range(num_latents):
      for k in range(num_factors):
        value = mean[j, k]
        ax.text(k, j, "nan" if np.isnan(value) else f"{value:.2f}",
                ha="center", va="center", fontsize=8,
                color="k" if value > 0.6 else "w")
  for ax in list(axes.flat)[len(groups):]:
    ax.set_axis_off()
  if image is not None:
    fig.colorbar(image, ax=list(axes.flat), label="NMI", shrink=0.9)
  fig.suptitle("NMI matrix I(z_j; c_k) / H(c_k), mean over seeds")
  return save(fig, path)


def ifp_distributions(rows: Sequence[Row], factor_names: Sequence[str],
                      path: str) -> str:
  """Boxes of the information freezing point per factor (the annealing
  test's `factor` hyperparameter; -1 = the whole dataset) over seeds, one
  series per method/dataset; "n=" counts the seeds that froze; log scale
  when the IFPs span more than a decade.  DEFT Fig. 6.  Size `IFP_SIZE`.
  Returns `path`.

  Raises:
    ValueError: no row reports `ifp`.
  """
  selected = ifp_rows(select_rows(rows))
  if not selected:
    raise ValueError("no results row reports an 'ifp' (annealing test)")
  factors = sorted({int(r["hparams"]["factor"]) for r in selected})
  series = sorted({(r["method"], r["dataset"]) for r in selected})
  data = [[[] for _ in factors] for _ in series]
  totals = {f: 0 for f in factors}
  for row in selected:
    factor = int(row["hparams"]["factor"])
    totals[factor] += 1
    value = finite_value(row, "ifp")
    if value is not None:
      data[series.index((row["method"], row["dataset"]))][
          factors.index(factor)].append(value)

  def name(f: int) -> str:
    label = ("whole dataset" if f < 0 else factor_names[f]
             if f < len(factor_names) else f"c{f}")
    return f"{label}\n({totals[f]} seeds)"

  fig, [[ax]] = new_figure(IFP_SIZE)
  _boxes(ax, data, [f"{m} on {d}" for m, d in series],
         [name(f) for f in factors])
  finite = [v for s in data for c in s for v in c]
  if finite and min(finite) > 0 and max(finite) / min(finite) > 10:
    ax.set_yscale("log")
  ax.set_xlabel("factor (n = seeds that froze)")
  ax.set_ylabel("IFP (beta where I(x;z) starts to grow)")
  ax.grid(axis="y", alpha=0.3)
  ax.set_title("Information freezing point per factor (annealing test)")
  return save(fig, path)


def metric_correlation_figure(rows: Sequence[Row], path: str, title: str,
                              step: int | None = None) -> str:
  """A heatmap metrics x metrics of their Spearman correlation over the
  members of `rows` (`tables.metric_correlations`, one row per seed at
  `step` or each seed's latest), the value in every cell ("n/a" where it
  is undefined), -1 blue to 1 red.  Size (3 + 0.5 k) x (2.5 + 0.5 k)
  inches for k metrics.  Returns `path`.

  Raises:
    ValueError: the rows have fewer than two metrics.
  """
  names, matrix, counts = metric_correlations(rows, step)
  k = len(names)
  if k < 2:
    raise ValueError(f"a correlation needs two metrics; the rows have "
                     f"{names or 'none'}")
  fig, [[ax]] = new_figure((3.0 + 0.5 * k, 2.5 + 0.5 * k))
  image = ax.imshow(matrix, vmin=-1, vmax=1, cmap="RdBu_r")
  for a in range(k):
    for b in range(k):
      value = matrix[a, b]
      ax.text(b, a, "n/a" if np.isnan(value) else f"{value:.2f}",
              ha="center", va="center", fontsize=7,
              color="w" if abs(np.nan_to_num(value)) > 0.6 else "k")
  ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize=8)
  ax.set_yticks(range(k), names, fontsize=8)
  fig.colorbar(image, ax=ax, label="Spearman correlation", shrink=0.8)
  ax.set_title(f"{title}\nover {int(counts.max())} members (pairs: members "
               f"where both are finite)", fontsize=9)
  return save(fig, path)


def response_figure(responses: Sequence[np.ndarray],
                    factor_names: Sequence[str],
                    latent_labels: Sequence[str], path: str,
                    title: str) -> str:
  """One panel per factor k: the mean code of every latent over the
  factor's values, a line per column of responses[k] float [values_k, d]
  (named by `latent_labels`, in legend order), row v the mean over the
  points whose factor k has value index v (NaN: no point; a gap).  A
  latent that encodes factor k varies along its panel and is flat in the
  others.  Three panels a line; size (2.5 + 3.5 cols) x (1 + 3 lines)
  inches.  Returns `path`.
  """
  if len(responses) != len(factor_names):
    raise ValueError(f"{len(responses)} responses for {len(factor_names)} "
                     f"factors")
  num_latents = len(latent_labels)
  for name, response in zip(factor_names, responses):
    if np.ndim(response) != 2 or np.shape(response)[1] != num_latents:
      raise ValueError(f"responses of {name} must be [values, "
                       f"{num_latents}], got shape {np.shape(response)}")
  cols = min(3, len(responses))
  lines = math.ceil(len(responses) / cols)
  fig, axes = new_figure((2.5 + 3.5 * cols, 1.0 + 3.0 * lines), lines, cols)
  handles = []
  for ax, name, response in zip(axes.flat, factor_names, responses):
    values = np.arange(len(response))
    handles = [ax.plot(values, response[:, j], color=f"C{j % 10}",
                       linestyle="-" if j < 10 else "--",
                       marker="." if len(values) <= 16 else None)[0]
               for j in range(num_latents)]
    ax.set_title(name)
    ax.set_xlabel(f"{name} (value index)")
    ax.grid(alpha=0.3)
  for line in axes:
    line[0].set_ylabel("mean code")
  for ax in list(axes.flat)[len(responses):]:
    ax.set_axis_off()
  fig.legend(handles, list(latent_labels), loc="outside right upper",
             fontsize=8)
  fig.suptitle(title)
  return save(fig, path)


def curve_bands(values: np.ndarray, members: Sequence[int]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(median, low, high) [T] of values [T, M] over the `members` at each
  step: the finite values' median and `BAND_QUANTILES` (linear
  interpolation between order statistics); NaN at a step where none is
  finite."""
  chosen = np.asarray(values, float)[:, list(members)]
  with quiet_nan_stats():
    low, median, high = np.nanquantile(
        chosen, [BAND_QUANTILES[0], 0.5, BAND_QUANTILES[1]], axis=1)
  return median, low, high


def curve_names(curves: Mapping[str, np.ndarray]) -> list[str]:
  """The quantities of `curves` (all but `step`): `FIRST_CURVES` first,
  then the others sorted."""
  names = [n for n in curves if n != "step"]
  return ([n for n in FIRST_CURVES if n in names]
          + sorted(n for n in names if n not in FIRST_CURVES))


def training_curves(curves: Mapping[str, np.ndarray],
                    rows: Sequence[Row] | None, path: str, *,
                    title: str | None = None) -> str:
  """One panel per quantity of `curves` (metrics.jsonl read by
  `run_log.read_curves`: step [T], name -> [T, M]), 3 per line: per
  hyperparameter group of `rows` (which map members to groups; all
  members as one without rows) the median over its seeds against the
  training step, with a band from the 10% to the 90% quantile
  (`curve_bands`); steps where a group has no finite value are left out.
  Size (1 + 4 x cols) x (1 + 3 x lines) inches.  Returns `path`.
  """
  names = curve_names(curves)
  if not names:
    raise ValueError("the curves hold no quantity besides the step")
  steps = np.asarray(curves["step"])
  groups = _member_groups(rows, np.shape(curves[names[0]])[1])
  cols = min(3, len(names))
  lines = math.ceil(len(names) / cols)
  fig, axes = new_figure((1.0 + 4.0 * cols, 1.0 + 3.0 * lines), lines, cols)
  handles = []
  for ax, name in zip(axes.flat, names):
    for i, (label, members) in enumerate(groups):
      median, low, high = curve_bands(curves[name], members)
      shown = np.isfinite(median)
      color = f"C{i % 10}"
      ax.fill_between(steps[shown], low[shown], high[shown], color=color,
                      alpha=0.25, linewidth=0)
      line, = ax.plot(steps[shown], median[shown], color=color,
                      marker="o" if shown.sum() < 12 else None, markersize=3,
                      label=f"{label} (n={len(members)})")
      if len(handles) < len(groups):
        handles.append(line)
    ax.set_title(name)
    ax.set_xlabel("training step")
    ax.grid(alpha=0.3)
  for ax in list(axes.flat)[len(names):]:
    ax.set_axis_off()
  fig.legend(handles=handles, loc="outside lower center", fontsize=8,
             ncols=min(len(handles), 3))
  low, high = (round(100 * q) for q in BAND_QUANTILES)
  fig.suptitle(f"{title or 'Training curves'}: median over seeds, "
               f"{low}-{high}% band")
  return save(fig, path)


def _slug(text: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


def workdir_tags(workdirs: Sequence[str]) -> list[str]:
  """Short distinct file-name prefixes: each workdir's base name, or its path
  below the common parent when base names repeat."""
  names = [os.path.basename(os.path.normpath(w)) or "run" for w in workdirs]
  if len(set(names)) == len(names):
    return [_slug(n) for n in names]
  parent = os.path.commonpath([os.path.abspath(w) for w in workdirs])
  tags = [_slug(os.path.relpath(os.path.abspath(w), parent)) for w in workdirs]
  return [f"{t}-{i}" if tags.count(t) > 1 else t for i, t in enumerate(tags)]


def write_figures(runs: Sequence[RunResults], out_dir: str, *, note: Note,
                  metric: str = "mig", threshold: float | None = None,
                  step: int | None = None, seed: int = 0) -> list[str]:
  """Every figure the loaded `runs` have inputs for, into `out_dir`; returns
  the paths written.  `note` gets one line per figure skipped and why.

  Files: METRIC_distribution.png for every metric in the rows (all runs
  pooled; the failure threshold drawn on `metric`'s; medians' bootstrap
  intervals from `seed`), METRIC_failure_rate.png with a `threshold`
  (`failure_rate_figure`), and per run TAG
  (`workdir_tags` of their workdirs): TAG_training_curves.png (from its
  metrics.jsonl), TAG_nmi_over_training[_GROUP].png and
  TAG_mig_per_stage.png (from its trace), TAG_nmi_matrix.png (from its
  results arrays), TAG_ifp.png (annealing-test rows).
  """
  rows = [row for run in runs for row in run.rows]
  paths = []
  for name in metric_names(select_rows(rows, step)):
    paths.append(metric_distributions(
        rows, name, os.path.join(out_dir, f"{_slug(name)}_distribution.png"),
        threshold=threshold if name == metric else None, step=step,
        seed=seed))
  if threshold is not None:
    paths.append(save(failure_rate_figure(
        failure_rate_table(rows, metric, threshold, step, seed), metric,
        threshold, step), os.path.join(out_dir,
                                       f"{_slug(metric)}_failure_rate.png")))
  for run, tag in zip(runs, workdir_tags([run.workdir for run in runs])):
    base = os.path.join(out_dir, tag)
    if run.curves is None:
      note(f"{tag}: no {RUN_LOG_NAME} in {run.workdir}: no training-curves "
           f"figure")
    else:
      paths.append(training_curves(run.curves, run.rows,
                                   f"{base}_training_curves.png",
                                   title=f"Training curves of {tag}"))
    trace = run.trace
    if trace is None:
      note(f"{tag}: no {TRACE_NAME} in {run.workdir} (training-time "
           f"tracing was off): no NMI-over-training or MIG-per-stage figure")
    else:
      if "nmi_matrix" in trace:
        labels = run.factor_labels(trace["nmi_matrix"].shape[-1])
        groups = _member_groups(run.rows, trace["nmi_matrix"].shape[1])
        for i, (label, members) in enumerate(groups):
          suffix = f"_{i}" if len(groups) > 1 else ""
          paths.append(nmi_over_training(
              trace, labels, f"{base}_nmi_over_training{suffix}.png",
              members=members, title=f"NMI over training, {label}"))
      else:
        note(f"{tag}: {TRACE_NAME} has no nmi_matrix: no "
             f"NMI-over-training figure")
      if "stage" in trace and "mig" in trace and (trace["stage"] >= 0).any():
        paths.append(mig_per_stage(trace, run.rows,
                                   f"{base}_mig_per_stage.png"))
      else:
        note(f"{tag}: the trace has no DEFT stages (or no mig): no "
             f"MIG-per-stage figure")
    if run.arrays is not None and "nmi_matrix" in run.arrays:
      labels = run.factor_labels(run.arrays["nmi_matrix"].shape[-1])
      paths.append(nmi_matrix_figure(run.arrays, run.rows, labels,
                                     f"{base}_nmi_matrix.png"))
    else:
      note(f"{tag}: no nmi_matrix in {RESULTS_DIR}/{ARRAYS_NAME} (evaluate "
           f"with MIG): no NMI-matrix figure")
    if ifp_rows(run.rows):
      paths.append(ifp_distributions(run.rows, run.factor_names or [],
                                     f"{base}_ifp.png"))
    else:
      note(f"{tag}: no ifp in the rows (not an annealing test): no IFP "
           f"figure")
  return paths
