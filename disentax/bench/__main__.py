"""`python -m disentax.bench`: the benchmark table on this machine.

  python -m disentax.bench [--items=train_step,seeds,data] [--quick]
      [--sizes=name=value,...]

Prints a header (host, CPU, cores, jax version, backend and devices, date,
the command line), then each item's rows as the item completes, then the
whole table in Markdown (to paste into BUILD_NOTES.md with the header).
Items run in the order of `disentax.bench.ITEMS`; each is imported only
when it runs.  An unknown item name, or an item whose module does not
exist, is an error before anything runs.  An item that needs an optional
dependency which is missing (PyTorch: `pip install -e '.[bench]'`), or
that cannot run on this machine (the GPU item on a CPU), is reported in the
notes instead of stopping the run, and so is an item that fails: the other
items' figures are still printed (exit status 1).
"""

from __future__ import annotations

import datetime
import importlib
import importlib.util
import os
import platform
import shlex
import sys
import traceback
from typing import Sequence

from absl import flags

from disentax import cli
from disentax.bench import ITEMS, Row, Skipped, format_table, with_sizes

_ITEMS = flags.DEFINE_list(
    "items", list(ITEMS),
    f"benchmark items to run (in this order of ITEMS): {', '.join(ITEMS)}")
_QUICK = flags.DEFINE_bool(
    "quick", False,
    "small sizes, to try the table in a few minutes (record full sizes)")
_SIZES = flags.DEFINE_list(
    "sizes", [], "name=value overrides of the items' sizes (fields of their "
    "Sizes; a tuple as 1/2/3), e.g. --items=fractional "
    "--sizes=groups=10/100,repeats=5")

INSTALL_HINT = "pip install -e '.[bench]'"
# Modules an item may need that the `bench` extra installs.
OPTIONAL_MODULES = ("torch",)
# Environment variables that change the figures; the header shows those set.
ENV_SETTINGS = ("JAX_PLATFORMS", "XLA_FLAGS", "OMP_NUM_THREADS",
                "MKL_NUM_THREADS", "JAX_COMPILATION_CACHE_DIR")


def resolve_items(names: Sequence[str]) -> list[str]:
  """The requested item names in ITEMS order, without repeats.  Raises
  ValueError naming the allowed items for an unknown name, or an item whose
  module is not in this installation, before anything has run."""
  names = [n.strip() for n in names if n.strip()]
  unknown = [n for n in names if n not in ITEMS]
  if unknown:
    raise ValueError(f"unknown benchmark item(s) {', '.join(unknown)}; "
                     f"allowed: {', '.join(ITEMS)}")
  if not names:
    raise ValueError(f"no benchmark item given; allowed: {', '.join(ITEMS)}")
  chosen = [n for n in ITEMS if n in names]
  missing = [n for n in chosen if importlib.util.find_spec(ITEMS[n]) is None]
  if missing:
    raise ValueError(
        f"benchmark item(s) {', '.join(missing)} have no module yet ("
        f"{', '.join(ITEMS[n] for n in missing)} not found); available: "
        f"{', '.join(n for n in ITEMS if importlib.util.find_spec(ITEMS[n]))}")
  return chosen


def cpu_model() -> str:
  """The CPU's model name (from /proc/cpuinfo on Linux)."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def header(argv: Sequence[str]) -> str:
  """Where, when and how the figures were measured."""
  import jax  # after flag parsing; importing disentax.bench loaded it anyway

  try:
    usable = len(os.sched_getaffinity(0))
  except AttributeError:
    usable = os.cpu_count()
  devices = jax.devices()
  now = datetime.datetime.now(datetime.timezone.utc).astimezone()
  command = shlex.join(["python", "-m", "disentax.bench", *argv[1:]])
  env = " ".join(f"{name}={os.environ[name]}" for name in ENV_SETTINGS
                 if name in os.environ)
  return "\n".join([
      f"host: {platform.node()} ({platform.platform()})",
      f"cpu: {cpu_model()}, {os.cpu_count()} cores ({usable} usable)",
      f"jax {jax.__version__}, backend {jax.default_backend()}, "
      f"{len(devices)} device(s): {devices[0].device_kind}",
      f"python {platform.python_version()}",
      *([f"env: {env}"] if env else []),
      f"date: {now.isoformat(timespec='seconds')}",
      f"command: {command}",
  ])


def item_sizes(module: object, quick: bool, overrides: Sequence[str]
               ) -> object | None:
  """The item's sizes with `overrides` (None: its own, without any)."""
  if not overrides:
    return None
  if not hasattr(module, "Sizes"):
    raise ValueError(f"{module.__name__} has no sizes to override")
  return with_sizes(module.QUICK if quick else module.FULL, overrides)


def run_item(name: str, quick: bool, overrides: Sequence[str] = ()
             ) -> tuple[list[Row], str]:
  """(rows, note) of one item; the note says why an item gave no rows."""
  try:
    module = importlib.import_module(ITEMS[name])
    sizes = item_sizes(module, quick, overrides)
    if sizes is None:
      return list(module.measure(quick)), ""
    return list(module.measure(quick, sizes=sizes)), ""
  except Skipped as skipped:
    return [], str(skipped)
  except ImportError as error:
    if error.name not in OPTIONAL_MODULES:
      raise
    return [], (f"{name}: skipped, needs {error.name} ({INSTALL_HINT})")


def main(argv: Sequence[str]) -> int:
  try:
    names = resolve_items(_ITEMS.value)
    for name in names:  # bad sizes fail before anything runs
      item_sizes(importlib.import_module(ITEMS[name]), _QUICK.value,
                 _SIZES.value)
  except ValueError as error:
    raise cli.UsageError(str(error)) from error
  print(header(sys.argv), flush=True)
  print(f"items: {', '.join(names)}{' (quick sizes)' if _QUICK.value else ''}"
        "\n", flush=True)
  rows: list[Row] = []
  notes: list[str] = []
  failed = False
  for name in names:
    print(f"== {name}", flush=True)
    try:
      item_rows, note = run_item(name, _QUICK.value, _SIZES.value)
    except Exception:  # one broken item must not lose the others' figures
      traceback.print_exc()
      sys.stderr.flush()
      item_rows, note, failed = [], f"{name}: FAILED (traceback above)", True
    if item_rows:
      print(format_table(item_rows), flush=True)
    if note:
      print(note, flush=True)
      notes.append(note)
    rows.extend(item_rows)
    print(flush=True)
  print("== all items\n")
  print(header(sys.argv))
  print()
  print(format_table(rows))
  for note in notes:
    print(f"\nnote: {note}")
  sys.stdout.flush()
  return 1 if failed else 0


if __name__ == "__main__":
  cli.run(main)
