"""Loading sweep and config files ("path[:arg]" specs, `load_sweep`,
`load_config`) and setting dotted overrides in a config (`apply_overrides`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from typing import Any, Mapping

import ml_collections

# The repo root (this file is disentax/sweep/spec.py).
REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

# Config sections whose keys are checked by their component's builder (at
# `build`), so an override may add a key there; elsewhere it must exist.
OPEN_SECTIONS = ("dataset", "model", "objective", "eval.metric",
                 "eval.battery")


# --------------------------------------------------------------------------
# Loading sweep and config files.


def split_spec(spec: str) -> tuple[str, str | None]:
  """"path[:arg]" -> (path, arg or None)."""
  path, _, arg = spec.partition(":")
  return path, (arg or None)


def _resolve(path: str, cwd_first: bool = False) -> str:
  """An absolute path: relative ones are relative to the repo root (or,
  with `cwd_first`, to the working directory when the file is there)."""
  path = os.path.expanduser(path)
  if os.path.isabs(path):
    return path
  if cwd_first and os.path.exists(path):
    return os.path.abspath(path)
  return os.path.join(REPO, path)


def _repo_relative(path: str) -> str:
  """`path` relative to the repo root when it lies inside it (what plan.json
  records, so a plan does not depend on where it was made), else absolute."""
  path = os.path.abspath(path)
  relative = os.path.relpath(path, REPO)
  return path if relative.startswith(os.pardir) else relative


_MODULES: dict[tuple[str, int, int], Any] = {}


def _load_module(path: str, what: str) -> Any:
  """Imports the Python file at absolute `path` (again only once it has
  changed)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{what} file {path} does not exist")
  real = os.path.realpath(path)
  stat = os.stat(real)
  key = (real, stat.st_mtime_ns, stat.st_size)
  if key not in _MODULES:
    if REPO not in sys.path:  # experiment files import `experiments.common`
      sys.path.insert(0, REPO)
    name = "_disentax_sweep_" + "".join(
        c if c.isalnum() else "_" for c in os.path.relpath(real, "/"))
    spec = importlib.util.spec_from_file_location(name, real)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _MODULES[key] = module
  return _MODULES[key]


def load_config(spec: str) -> ml_collections.ConfigDict:
  """The config of "path[:preset]" (path relative to the repo root)."""
  path, preset = split_spec(spec)
  module = _load_module(_resolve(path), "config")
  if not hasattr(module, "get_config"):
    raise ValueError(f"config file {path} has no get_config(preset)")
  return module.get_config(preset) if preset else module.get_config()


def load_sweep(spec: str) -> ml_collections.ConfigDict:
  """The sweep of "path[:arg]": `get_sweep(arg)` of the sweep file (a path
  relative to the working directory, or else to the repo root)."""
  path, arg = split_spec(spec)
  module = _load_module(_resolve(path, cwd_first=True), "sweep")
  if not hasattr(module, "get_sweep"):
    raise ValueError(f"sweep file {path} has no get_sweep(arg)")
  return module.get_sweep(arg)


# --------------------------------------------------------------------------
# Overrides.


def _plain(value: Any) -> Any:
  """ConfigDicts and mappings as dicts, lists as tuples, recursively (the
  form configs use; JSON turns tuples into lists, this turns them back)."""
  if isinstance(value, ml_collections.ConfigDict):
    value = value.to_dict()
  if isinstance(value, Mapping):
    return {str(k): _plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return tuple(_plain(v) for v in value)
  return value


def _json_form(value: Any) -> Any:
  """`value` as it reads back from JSON (tuples as lists)."""
  return json.loads(json.dumps(value))


def _in_open_section(dotted: str) -> bool:
  return any(dotted.startswith(section + ".") for section in OPEN_SECTIONS)


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Mapping[str, Any],
                    where: str = "config") -> ml_collections.ConfigDict:
  """Sets each dotted key of `overrides` in `config` (in place; returned).

  A key must exist, except inside the component sections (dataset, model,
  objective, eval.metric, eval.battery) whose builders check their own keys
  when the config is built.

  Raises:
    ValueError: an unknown key (naming the keys allowed there) or a value of
      the wrong type.
  """
  for dotted, value in overrides.items():
    *parents, leaf = dotted.split(".")
    node = config
    for depth, part in enumerate(parents):
      child = node.get(part) if hasattr(node, "get") else None
      if not isinstance(child, (ml_collections.ConfigDict, dict)):
        section = ".".join(parents[:depth]) or "the top level"
        sections = sorted(k for k, v in node.items() if isinstance(
            v, (ml_collections.ConfigDict, dict)))
        raise ValueError(
            f"unknown config key {dotted!r} in {where}: {part!r} is not a "
            f"section of {section}; sections there: {sections}")
      node = child
    if leaf not in node and not _in_open_section(dotted):
      section = ".".join(parents) or "the top level"
      raise ValueError(
          f"unknown config key {dotted!r} in {where}; allowed in {section}: "
          f"{sorted(node)} (new keys only inside "
          f"{', '.join(OPEN_SECTIONS)}, checked by their builders)")
    try:
      node[leaf] = _plain(value)
    except (TypeError, ValueError, AttributeError) as e:
      raise ValueError(f"override {dotted}={value!r} in {where}: {e}") from None
  return config
