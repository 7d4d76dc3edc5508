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

# The end of every check: nothing global changed since `before` (the JAX
# settings when the check began).
UNCHANGED = """
changed = {k: (before[k], v) for k, v in jax.config.values.items()
           if before.get(k) != v}
assert not changed, changed
assert "matplotlib" not in sys.modules, [
    n for n, m in list(sys.modules.items()) if n.startswith("disentax")
    and "matplotlib" in getattr(m, "__dict__", {})]
ours = [name for name in flags.FLAGS if (flags.FLAGS.find_module_defining_flag(
    name) or "").startswith("disentax")]
assert not ours, ("library modules defined flags", ours)
"""

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
""" + UNCHANGED + """
print(len(names), "modules")
"""

# `import disentax` and its API names, in a process that has imported
# nothing else: the package loads no other module until a name is used, and
# using every name changes nothing global either.
API_CHECK = """
import sys
import disentax
heavy = sorted({m.split(".")[0] for m in sys.modules} & {
    "jax", "flax", "numpy", "pandas", "matplotlib", "absl", "ml_collections"})
assert not heavy, ("import disentax loaded", heavy)
assert [m for m in sys.modules if m.startswith("disentax.")] == []
import jax
from absl import flags
before = dict(jax.config.values)
assert sorted(disentax.__all__) == sorted(set(dir(disentax)) & set(
    disentax.__all__)) == ["evaluate", "evaluate_representation",
                           "load_config", "load_results", "train"]
api = {name: getattr(disentax, name) for name in disentax.__all__}
assert all(callable(f) and f.__name__ == name for name, f in api.items())
from disentax import evaluate  # the function, not the command line's module
assert evaluate is api["evaluate"]
try:
  disentax.no_such_name
except AttributeError as error:
  assert "no_such_name" in str(error)
else:
  raise AssertionError("disentax.no_such_name did not raise")
""" + UNCHANGED + """
print("ok")
"""


def run_check(code):
  """Runs `code` in a fresh Python process; its stdout."""
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu",
                               "PATH": "/usr/bin:/bin"})
  assert result.returncode == 0, result.stderr
  return result.stdout


def test_importing_every_library_module_changes_nothing_global():
  assert int(run_check(CHECK).split()[0]) > 60


def test_importing_disentax_and_its_api_changes_nothing_global():
  assert run_check(API_CHECK).split() == ["ok"]
