"""Benchmarks: `python -m disentax.bench` prints one table of ratios measured
in one run on the current machine.  Timings never go in tests;
tests check that the fast kernels compute the same function.

Each item is a module of this package with a `measure(quick: bool) ->
list[Row]` function, registered in `ITEMS` (name -> module name), so a new
benchmark is one new file plus one line here:

  train_step   disentax vs PyTorch (CPU), the standard beta-VAE step
  seeds        N seeds in one program vs N single-seed runs, N = 1, 8, 50
  fractional   DEFT's fractional encoder vs a standard one of equal size
  data         images/s the data pipeline produces vs what a step consumes
  evaluation   the metric battery for all members vs seed by seed
  compile      compile time per program; no recompilation across stages
               and hyperparameter values
  accelerator  50-seed DEFT on a GPU: seed-steps/s, model FLOP/s against
               the device's peak, the projected DEFT Table 4 grid

`quick=True` shrinks every size so the whole table runs in a few minutes on
2 CPU cores (for trying it; numbers to record come from the full sizes).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Sequence

import jax

ITEMS = {
    "train_step": "disentax.bench.train_step",
    "seeds": "disentax.bench.seeds",
    "fractional": "disentax.bench.fractional",
    "data": "disentax.bench.data",
    "evaluation": "disentax.bench.evaluation",
    "compile": "disentax.bench.compile",
    "accelerator": "disentax.bench.accelerator",
}


class Skipped(Exception):
  """An item that cannot run here (e.g. a GPU item on a CPU); its message
  goes into the table's notes."""


@dataclasses.dataclass(frozen=True)
class Row:
  """One line of the table: `disentax` vs `baseline` in `unit`, and their
  ratio (disentax / baseline, so < 1 is faster for times), with the target
  the issue sets, if any."""
  item: str
  case: str            # what was measured, e.g. "batch 64, 64x64x1, 1 seed"
  disentax: float
  baseline: float | None
  unit: str            # e.g. "ms/step", "seed-steps/s", "images/s", "s"
  baseline_name: str = ""  # e.g. "PyTorch 2.13 CPU", "8 single-seed runs"
  target: str = ""     # e.g. "ratio <= 0.5"
  note: str = ""

  @property
  def ratio(self) -> float | None:
    if self.baseline in (None, 0):
      return None
    return self.disentax / self.baseline


def format_table(rows: list[Row]) -> str:
  """The rows as a Markdown table (numbers to 3 significant digits)."""
  lines = ["| item | case | disentax | baseline | unit | ratio | target | "
           "note |", "|---|---|---:|---:|---|---:|---|---|"]
  for r in rows:
    baseline = "" if r.baseline is None else f"{r.baseline:.3g}"
    if r.baseline_name:
      baseline += f" ({r.baseline_name})"
    ratio = "" if r.ratio is None else f"{r.ratio:.3g}"
    lines.append(f"| {r.item} | {r.case} | {r.disentax:.3g} | {baseline} | "
                 f"{r.unit} | {ratio} | {r.target} | {r.note} |")
  return "\n".join(lines)


def with_sizes(sizes: object, overrides: Sequence[str]) -> object:
  """`sizes` (an item's frozen Sizes dataclass) with "name=value"
  overrides, each value read as the field's default is typed: a tuple as
  "/"-separated elements, a bool as true/false; an unknown name or a value
  of the wrong kind is an error naming what is allowed."""
  fields = {f.name: getattr(sizes, f.name) for f in dataclasses.fields(sizes)}
  changes = {}
  for override in overrides:
    name, sep, text = override.partition("=")
    if not sep or name not in fields:
      raise ValueError(f"--sizes {override!r}: give name=value with a name "
                       f"of {type(sizes).__module__}.Sizes: "
                       f"{', '.join(fields)}")
    default = fields[name]
    try:
      if isinstance(default, tuple):
        kind = type(default[0]) if default else str
        changes[name] = tuple(kind(v) for v in text.split("/") if v)
      elif isinstance(default, bool):
        if text.lower() not in ("true", "false"):
          raise ValueError(text)
        changes[name] = text.lower() == "true"
      elif isinstance(default, (int, float)):
        changes[name] = type(default)(text)
      else:  # str, or None (a path such as a workdir)
        changes[name] = text
    except ValueError:
      raise ValueError(f"--sizes {override!r}: {name} takes a value like "
                       f"{default!r}") from None
  return dataclasses.replace(sizes, **changes)


def seconds_per_call(fn: Callable[[], object], repeats: int,
                     warmup: int = 1) -> float:
  """Mean wall seconds of `fn()` (results blocked on) after `warmup` calls."""
  for _ in range(warmup):
    jax.block_until_ready(fn())
  start = time.perf_counter()
  for _ in range(repeats):
    jax.block_until_ready(fn())
  return (time.perf_counter() - start) / repeats


def fastest_in_alternation(passes: Sequence[Callable[[], float]],
                           rounds: int) -> list[float]:
  """The fastest of `rounds` timings of each pass, the passes called in
  turn within every round, so a shared machine's slow spells hit every
  side of a ratio alike (2-core cloud hosts drift by 1.5x in minutes)."""
  best = [math.inf] * len(passes)
  for _ in range(rounds):
    for i, one_pass in enumerate(passes):
      best[i] = min(best[i], one_pass())
  return best
