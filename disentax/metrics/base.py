"""The evaluator protocol every metric follows.

A metric is a frozen dataclass whose fields are its options, registered by
name with `@METRICS.register(name)` on the class itself: its `__init__`
signature is the schema of its config section.  It scores a whole sweep in
one call,

  metric.score(members, rng) -> {score name: np.ndarray [members, ...]}

where `members` (`TrainedMembers`) is everything the metric may read: the
dataset, the representation of every member, the model's other functions,
the members' hyperparameters and the training-time trace.  Most metrics only
need the codes and implement `evaluate(dataset, representation_fn, rng)`,
which the base `score` calls; the others (UDR, the ELBO terms, the loss
terms, the IFP) override `score`.

The same evaluators run during training, every `config.eval.trace_every`
steps (`config.eval.trace`), and in the evaluation job (`config.eval.metric`
and `config.eval.battery`), through this one call
(`disentax/evaluation/`).  An evaluator that reads the trace (a read-out of
the whole training curve, such as the IFP) declares which arrays in
`reads_trace`; it scores in the evaluation job only.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable, ClassVar, Mapping

import jax
import numpy as np

if TYPE_CHECKING:  # only for annotations; keeps metrics free of dataset imports
  from disentax.data.base import GroundTruthDataset

# observations [b, H, W, C] -> codes [members, b, d]
RepresentationFn = Callable[[jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class TrainedMembers:
  """What an evaluator scores: the dataset and every member of a sweep.

  Every function takes observations [b, H, W, C] (always exactly the
  metric's batch size) and returns arrays with a leading members axis.
  Every field is optional, so a caller fills only what its metrics read; a
  metric raises a ValueError naming any field it needs that is None
  (`require`).

  Attributes:
    dataset: samples factor tuples and renders their observations.
    representation_fn: observations -> codes [M, b, d], the representation
      being scored (e.g. the vmapped encoder means of all members).
    posterior_fn: observations -> (mean, logvar) of q(z|x), each [M, b, d].
    reconstruction_error_fn: observations -> [M, b] reconstruction error of
      each observation decoded from its posterior mean: the objective's
      decoder negative log-likelihood summed over pixels (Bernoulli
      cross-entropy for the dlib-google models), in nats.
    decode_fn: codes [M, b, d] -> observations [M, b, H, W, C] in [0, 1]
      (the decoder's mean), for traversals.
    groups: int [M]; members with the same hyperparameter values share a
      group (UDR compares seeds within a group).
    hparams: {hyperparameter name: [M] (or [M, n]) array}, the members'
      values.
    step: the training step the members are scored at.
    loss_terms_fn: (rng, batch_size) -> {term: [M]}: the objective's loss
      and its terms (reconstruction, KL, the current beta, ...) on one batch
      drawn from each member's own training distribution with `rng`.
    trace: the training-time trace up to `step` ({array name: [T, M, ...]},
      `step` [T]; results.load_trace), for the evaluators that read it.
  """

  dataset: GroundTruthDataset | None = None
  representation_fn: RepresentationFn | None = None
  posterior_fn: Callable[[jax.Array],
                         tuple[jax.Array, jax.Array]] | None = None
  reconstruction_error_fn: Callable[[jax.Array], jax.Array] | None = None
  decode_fn: Callable[[jax.Array], jax.Array] | None = None
  groups: np.ndarray | None = None
  hparams: Mapping[str, np.ndarray] | None = None
  step: int | None = None
  loss_terms_fn: Callable[[jax.Array, int], dict[str, jax.Array]] | None = None
  trace: Mapping[str, np.ndarray] | None = None

  def require(self, metric: str, *fields: str) -> None:
    """Raises a ValueError unless every one of `fields` is set: `metric`
    cannot score without them."""
    missing = [name for name in fields if getattr(self, name) is None]
    if missing:
      raise ValueError(
          f"{metric} needs a trained model: "
          f"{', '.join(f'members.{name}' for name in missing)} "
          f"{'is' if len(missing) == 1 else 'are'} None; pass "
          f"members=TrainedMembers({', '.join(f'{n}=...' for n in fields)})")


def check_int(metric: str, name: str, value: int, minimum: int) -> None:
  """Raises a ValueError naming the metric option and what is allowed."""
  if (not isinstance(value, (int, np.integer)) or isinstance(value, bool)
      or value < minimum):
    raise ValueError(
        f"{metric}: {name} must be an integer >= {minimum}, got {value!r}")


class Metric:
  """Base of the metrics: validates their options and scores members.

  A subclass is a `@dataclasses.dataclass(frozen=True)` whose fields are its
  options (documented in its docstring, with dlib's defaults).  It sets
  `name` (its registered name, used in error messages), `int_fields`
  ({integer option: its minimum}, checked in that order when the metric is
  built, before `check`), if it scores data without ground-truth factors,
  `supervised = False`, if it reads more than the codes, `needs`, and where
  they apply `reads_trace` and `nan_is_outcome`.  It overrides `check` for any other option
  checks, and implements `evaluate` (codes only) or overrides `score` (the
  metrics that need more of the model).
  """

  name: ClassVar[str]
  supervised: ClassVar[bool] = True  # needs ground-truth factors
  int_fields: ClassVar[Mapping[str, int]] = {}
  # The `TrainedMembers` fields `score` reads: a caller holding only some of
  # the model's functions (a representation scored from outside disentax,
  # `evaluation.external`) tells from them which metrics it can score.
  needs: ClassVar[tuple[str, ...]] = ("dataset", "representation_fn")
  # The training-time trace arrays it reads (`members.trace`): such a
  # read-out of the training curve scores in the evaluation job only.
  reads_trace: ClassVar[tuple[str, ...]] = ()
  # Whether a NaN score is an outcome ("never happened", e.g. an IFP never
  # reached) rather than a broken member: such scores do not decide a
  # member's status.
  nan_is_outcome: ClassVar[bool] = False

  def __post_init__(self) -> None:
    for field, minimum in self.int_fields.items():
      check_int(self.name, field, getattr(self, field), minimum)
    self.check()

  def check(self) -> None:
    """Checks the options other than `int_fields` (raises ValueError)."""

  def score(self, members: TrainedMembers,
            rng: jax.Array) -> dict[str, np.ndarray]:
    """Scores every member: {score name: array with the members axis
    first}.  By default, the codes of `members.representation_fn` on
    `members.dataset` (`evaluate`)."""
    members.require(self.name, *self.needs)
    return self.evaluate(members.dataset, members.representation_fn, rng)

  def evaluate(self, dataset: GroundTruthDataset,
               representation_fn: RepresentationFn,
               rng: jax.Array) -> dict[str, np.ndarray]:
    """Scores every member of `representation_fn` (codes [members, b, d])."""
    raise NotImplementedError(f"{type(self).__name__}.evaluate")

  def __call__(self, dataset: GroundTruthDataset,
               representation_fn: RepresentationFn, rng: jax.Array,
               members: TrainedMembers | None = None
               ) -> dict[str, np.ndarray]:
    """`score` of `representation_fn` on `dataset`, with the model's other
    functions from `members` for the metrics that read them: scores any
    representation function."""
    members = dataclasses.replace(
        TrainedMembers() if members is None else members, dataset=dataset,
        representation_fn=representation_fn)
    return self.score(members, rng)
