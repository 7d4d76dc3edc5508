"""Disentanglement metrics, selected by name (`config.metrics[i].name`).

A metric builder takes its options as keyword arguments and returns an
evaluator `evaluate(dataset, representation_fn, rng) -> {name: np.ndarray}`
whose values have a leading `members` axis: every trained seed x
hyperparameter member of a sweep is scored in one vmapped call.  Metrics that
need more of the trained model than its mean representation (reconstruction,
posterior variances, hyperparameter groups) also take a keyword `members`
(`disentax.metrics.sampling.TrainedMembers`); `call_metric` passes it to
exactly those.

`config.eval.metric` is the primary metric (the one failure is defined by);
`config.eval.battery` maps further metric names to their options.
"""

import inspect
from typing import Any, Callable, Mapping

from disentax.registry import Registry, import_submodules

METRICS = Registry("metric")

import_submodules(__name__, __path__)  # each module registers itself


def make_metric(section):
  """Builds the metric described by a config section `{name, **options}`."""
  return METRICS.build(section, where="config.eval.metric")


def make_battery(battery: Mapping[str, Mapping[str, Any]],
                 where: str = "config.eval.battery") -> dict[str, Callable]:
  """{metric name: options} -> {metric name: built metric}; unknown names or
  options fail here, before anything is compiled."""
  return {name: METRICS.build({"name": name, **dict(options or {})},
                              where=f"{where}.{name}")
          for name, options in battery.items()}


def full_battery() -> dict[str, dict[str, Any]]:
  """Every registered metric with its default (dlib-google) options."""
  return {name: {} for name in METRICS.names()}


def is_supervised(metric: Callable) -> bool:
  """Whether the metric needs ground-truth factors (False only for metrics
  that declare `supervised = False`: they also score unlabelled data)."""
  return getattr(metric, "supervised", True)


def needs_members(metric: Callable) -> bool:
  """Whether the metric takes the trained members (keyword `members`)."""
  return "members" in inspect.signature(metric).parameters


def call_metric(metric: Callable, dataset, representation_fn, rng,
                members=None) -> dict:
  """Scores with `metric`, giving it the trained members if it takes them."""
  if needs_members(metric):
    return metric(dataset, representation_fn, rng, members=members)
  return metric(dataset, representation_fn, rng)
