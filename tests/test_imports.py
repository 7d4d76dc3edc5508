"""Importing disentax has no side effects on the user's process: no JAX
setting changes, no matplotlib backend is chosen, no flags are defined by
library modules (only the entry points define them)."""

import subprocess
import sys

from tests.conftest import REPO

# Every entry point run as `python -m X`: it defines its flags at import.
ENTRY_POINTS = ("disentax.main", "disentax.evaluate", "disentax.report",
                "disentax.pictures", "disentax.propose", "disentax.visualize",
                "disentax.bench.train_layouts")

CHECK = f"""
import importlib, pkgutil, sys
import jax
from absl import flags
import disentax
before = dict(jax.config.values)
names = [m.name for m in pkgutil.walk_packages(disentax.__path__, "disentax.")
         if not m.name.endswith("__main__") and m.name not in {ENTRY_POINTS!r}]
for name in names:
  try:
    importlib.import_module(name)
  except ImportError as error:  # an optional extra (bench: torch)
    assert error.name in ("torch",), error
changed = {{k: (before[k], v) for k, v in jax.config.values.items()
           if before.get(k) != v}}
assert not changed, changed
assert "matplotlib" not in sys.modules, [
    n for n in names if "matplotlib" in getattr(sys.modules[n], "__dict__", {{}})]
ours = [name for name in flags.FLAGS if (flags.FLAGS.find_module_defining_flag(
    name) or "").startswith("disentax")]
assert not ours, ("library modules defined flags", ours)
print(len(names), "modules")
"""


def test_importing_every_library_module_changes_nothing_global():
  result = subprocess.run([sys.executable, "-c", CHECK], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu",
                               "PATH": "/usr/bin:/bin"})
  assert result.returncode == 0, result.stderr
  assert int(result.stdout.split()[0]) > 60
