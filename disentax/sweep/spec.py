"""Loading sweep files ("path[:arg]" specs, `load_sweep`; config files load
with `disentax.config.load_config`) and setting dotted overrides in a config
(`apply_overrides`).
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import ml_collections

from disentax.config import COMPONENT_SECTIONS, load_file, split_spec


# --------------------------------------------------------------------------
# Loading sweep files.


def load_sweep(spec: str) -> ml_collections.ConfigDict:
  """The sweep of "path[:arg]": `get_sweep(arg)` of the sweep file (a path
  relative to the working directory)."""
  path, arg = split_spec(spec)
  module = load_file(path, "sweep")
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
  return any(dotted.startswith(section + ".") for section in COMPONENT_SECTIONS)


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
          f"{', '.join(COMPONENT_SECTIONS)}, checked by their builders)")
    try:
      node[leaf] = _plain(value)
    except (TypeError, ValueError, AttributeError) as e:
      raise ValueError(f"override {dotted}={value!r} in {where}: {e}") from None
  return config
