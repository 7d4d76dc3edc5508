"""Disentanglement metrics, selected by name.

A metric is a frozen dataclass of its options, registered under its name
(`disentax.metrics.base.Metric`); its fields are the keys of its config
section.  `metric.score(members, rng) -> {name: np.ndarray}` scores every
trained seed x hyperparameter member of a sweep in one vmapped call, from
`members` (`disentax.metrics.base.TrainedMembers`: the dataset, the
representation function and the model's other functions); every value has a
leading `members` axis.  `metric(dataset, representation_fn, rng)` scores
any representation function.

`config.eval.metric` is the primary metric (the one failure is defined by);
`config.eval.battery` maps further metric names to their options.
"""

from typing import Any, Mapping

from disentax.metrics.base import Metric
from disentax.registry import Registry, import_submodules

METRICS: Registry[Metric] = Registry("metric")

import_submodules(__name__, __path__)  # each module registers itself


def make_metric(section: Mapping[str, Any]) -> Metric:
  """Builds the metric described by a config section `{name, **options}`."""
  return METRICS.build(section, where="config.eval.metric")


def make_battery(battery: Mapping[str, Mapping[str, Any]],
                 where: str = "config.eval.battery") -> dict[str, Metric]:
  """{metric name: options} -> {metric name: built metric}; unknown names or
  options fail here, before anything is compiled."""
  return {name: METRICS.build({"name": name, **dict(options or {})},
                              where=f"{where}.{name}")
          for name, options in battery.items()}


def full_battery() -> dict[str, dict[str, Any]]:
  """Every registered metric with its default (dlib-google) options."""
  return {name: {} for name in METRICS.names()}
