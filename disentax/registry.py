"""Selection of components by name.

Datasets, models, objectives and metrics each keep one `Registry`; a new
component is one module that decorates its builder with `@REGISTRY.register`,
and configs pick it with `name = '...'`.  A builder is a function or a class
(a metric's dataclass: its `__init__` takes the fields, not the ClassVars);
it takes keyword arguments, and its signature *is* the schema of the config
section that builds it, so an unknown or misspelt key is reported (with the
allowed keys) before anything is compiled.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any, Callable, Generic, Mapping, Sequence, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
  """A name -> builder table for one kind of component."""

  def __init__(self, kind: str):
    self.kind = kind
    self._builders: dict[str, Callable[..., T]] = {}

  def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    def decorator(builder: Callable[..., T]) -> Callable[..., T]:
      if name in self._builders:
        raise ValueError(f"{self.kind} {name!r} is registered twice")
      self._builders[name] = builder
      return builder
    return decorator

  def names(self) -> list[str]:
    return sorted(self._builders)

  def get(self, name: str) -> Callable[..., T]:
    if name not in self._builders:
      raise ValueError(
          f"unknown {self.kind} {name!r}; registered {self.kind}s: "
          f"{', '.join(self.names())}")
    return self._builders[name]

  def allowed_keys(self, name: str) -> list[str]:
    """Keyword arguments the builder of `name` accepts (its config keys; a
    class's are those of its `__init__`)."""
    params = inspect.signature(self.get(name)).parameters.values()
    return [p.name for p in params
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]

  def check_keys(self, name: str, keys: Any, where: str,
                 reserved: Any = ()) -> None:
    """Raises on keys the builder does not take; `reserved` are builder
    arguments disentax fills in itself, so a config may not set them."""
    allowed = [k for k in self.allowed_keys(name) if k not in reserved]
    unknown = sorted(set(keys) - set(allowed))
    if unknown:
      raise ValueError(
          f"{where}: unknown key(s) {unknown} for {self.kind} {name!r}; "
          f"allowed: {allowed}")

  def build(self, section: Mapping[str, Any], where: str = "config",
            **context: Any) -> T:
    """Builds from a config section `{name: ..., **kwargs}`, validating keys.

    `context` offers arguments that come from elsewhere in the run (e.g. the
    dataset's observation shape for a model, its size for an objective), not
    from this config section; a builder receives those it declares.
    """
    section = dict(section)
    if "name" not in section:
      raise ValueError(f"{where}: missing 'name'; choose one of {self.names()}")
    name = section.pop("name")
    self.check_keys(name, section, where, reserved=context)
    accepted = self.allowed_keys(name)
    return self.get(name)(**section, **{k: v for k, v in context.items()
                                         if k in accepted})


def import_submodules(package_name: str, package_path: Sequence[str]) -> None:
  """Imports every module of a package so each registers its components:
  adding a method is adding a file, with no list of imports to edit."""
  for module in pkgutil.iter_modules(package_path):
    importlib.import_module(f"{package_name}.{module.name}")
