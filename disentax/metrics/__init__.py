"""Disentanglement metrics, selected by name (`config.metrics[i].name`).

A metric builder takes its options as keyword arguments and returns an
evaluator `evaluate(dataset, representation_fn, rng) -> {name: np.ndarray}`
whose values have a leading `members` axis: every trained seed x
hyperparameter member of a sweep is scored in one vmapped call.
"""

from disentax.registry import Registry, import_submodules

METRICS = Registry("metric")

import_submodules(__name__, __path__)  # each module registers itself


def make_metric(section):
  """Builds the metric described by a config section `{name, **options}`."""
  return METRICS.build(section, where="config.eval.metric")
