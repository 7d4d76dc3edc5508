"""The trained members as evaluators see them (`metrics.base.TrainedMembers`).

`MemberFunctions(exp)` jits, once per experiment, every function an
evaluator may call for all members at once: the representations the
objective asks to score (the encoder means under its controls, and on
request one posterior sample under each), the posterior, the reconstruction
error, the decoder and the loss terms.  The training step is an argument of
each, per member (members restored from different checkpoints,
`eval.checkpoint='best'`, are scored each at its own step), so the trace
re-uses the compiled programs at every step; `at(state, step)` binds them
to one state (or to some of its members).

`open_checkpoint(workdir, step)` is the one way a stored run is brought
back for them (the evaluation job and `python -m disentax.visualize`): the
checkpoint's meta and the experiment rebuilt from its config first, so a
caller checks its own inputs against them, then `restore()` for the state.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from disentax import checkpoint
from disentax import config as config_lib
from disentax.experiment import Experiment, build, member_hparams
from disentax.metrics.base import RepresentationFn, TrainedMembers
from disentax.metrics.sampling import sampled_representation_fn
from disentax.objectives.base import reconstruction_loss
from disentax.training.layouts import over_members
from disentax.training.step import sample_member_batch
from disentax.training.train_state import (TrainState, restore_members,
                                           split_member_key)


# Suffix of a representation's sampled form (config.eval.representations).
SAMPLED_SUFFIX = "_sampled"


def finite_members(params: Any, num_members: int) -> np.ndarray:
  """[M] bool: every parameter of the member is finite."""
  finite = np.ones(num_members, bool)
  for leaf in jax.tree.leaves(params):
    finite &= np.isfinite(np.asarray(leaf)).reshape(num_members, -1).all(1)
  return finite


def hyperparameter_groups(hparams: Mapping[str, np.ndarray],
                          num_members: int) -> np.ndarray:
  """int [M]: members with equal hyperparameter values share a group."""
  values = [np.asarray(v).reshape(num_members, -1)
            for _, v in sorted(hparams.items())]
  flat = (np.concatenate(values, axis=1) if values
          else np.zeros((num_members, 0)))
  return np.unique(flat, axis=0, return_inverse=True)[1].reshape(-1)


class MemberFunctions:
  """Every member's functions of `exp`, jitted once (module docstring)."""

  def __init__(self, exp: Experiment):
    self.exp = exp
    self._hparams = member_hparams(exp)
    self._keys = exp.members.keys()
    self._noise_key = jax.random.key(exp.config.eval.seed)
    # The sampled representations' noise: a stream of its own, apart from
    # the key the metrics draw their points with.
    self._sample_key = jax.random.fold_in(self._noise_key, 1)
    model, objective = exp.model, exp.objective

    def primary_control(h, step):
      return objective.representations(h, step).get("")

    def encode(p, h, x, step):
      # {name: (mean, logvar)} of every representation's posterior.
      return {name: model.apply({"params": p}, x, control, method="encode")
              for name, control in objective.representations(h,
                                                              step).items()}

    def posterior(p, h, x, step):
      return model.apply({"params": p}, x, primary_control(h, step),
                         method="encode")

    def reconstruction_error(p, h, x, step):
      # The ELBO's reconstruction term with one posterior sample per image.
      output = model.apply({"params": p}, x, self._noise_key,
                           primary_control(h, step))
      return reconstruction_loss(output.logits, x, objective.reconstruction)

    def decode(p, h, z, step):
      return jax.nn.sigmoid(model.apply({"params": p}, z,
                                        primary_control(h, step),
                                        method="decode"))

    def over(fn: Callable, mapped_input: bool = False) -> Callable:
      return jax.jit(over_members(
          fn, exp.layout.members,
          in_axes=(0, 0, 0 if mapped_input else None, 0)))

    self._encode = over(encode)
    self._posterior = over(posterior)
    self._reconstruction_error = over(reconstruction_error)
    self._decode = over(decode, mapped_input=True)
    self._loss_terms: dict[int, Callable] = {}

  def representation_names(self, state: Any) -> list[str]:
    """The suffixes of the representations the objective scores ("" is
    the primary one)."""
    probe = jax.ShapeDtypeStruct((1, *self.exp.dataset.observation_shape),
                                 jnp.float32)
    steps = jax.ShapeDtypeStruct((len(self.exp.members),), jnp.int32)
    return sorted(jax.eval_shape(self._encode, state.params, self._hparams,
                                 probe, steps))

  def _loss_terms_program(self, batch_size: int) -> Callable:
    """Jitted (params, aux, hparams, keys, rng, step) -> {term: [M]}: the
    objective's loss metrics of each member on one batch of its own
    training distribution."""
    if batch_size not in self._loss_terms:
      exp = self.exp

      def member_terms(p, aux, h, key, rng, step):
        _, run_key = split_member_key(key)
        data_key, noise_key, control_key = jax.random.split(rng, 3)
        x = sample_member_batch(exp, h, run_key, data_key, batch_size)
        control = None
        if exp.objective.control is not None:
          control = exp.objective.control.for_step(h, step, control_key)
        output = exp.model.apply({"params": p}, x, noise_key, control)
        return exp.objective.loss(output, x, h, step, aux)[1]

      self._loss_terms[batch_size] = jax.jit(over_members(
          member_terms, exp.layout.members,
          in_axes=(0, 0, 0, 0, None, 0)))
    return self._loss_terms[batch_size]

  def at(self, state: Any, step: int | np.ndarray,
         trace: Mapping[str, np.ndarray] | None = None,
         num_members: int | None = None, ids: Sequence[int] | None = None,
         sampled: bool = False
         ) -> tuple[TrainedMembers, dict[str, RepresentationFn]]:
    """The members of `state` (a TrainState, on the host or one device) at
    `step` (one for all, or int [M]: each member's): (TrainedMembers with
    the primary representation, {suffix: every representation the
    objective scores}); with `num_members`, only the first that many
    members; with `ids`, only those members, in that order (their
    functions' member axis follows `ids`).  With `sampled`, the
    representations also hold each one's posterior sample (`metrics.
    sampling.sampled_representation_fn`, noise from config.eval.seed) under
    its suffix + SAMPLED_SUFFIX; each is fresh, so score each with one
    metric."""
    if ids is None:
      ids = range(num_members or len(self.exp.members))
    ids = np.asarray(ids, int)
    num_members = len(ids)

    def first(tree: Any) -> Any:
      return jax.tree.map(lambda leaf: leaf[ids], tree)

    steps = np.asarray(step, np.int32)
    steps = np.broadcast_to(steps, (num_members,)) if steps.ndim == 0 \
        else steps[ids]
    at_step = jnp.asarray(steps)
    params, aux, hparams = first(state.params), first(state.aux), first(
        self._hparams)
    keys, host_hparams = first(self._keys), first(self.exp.members.hparams)

    def bound(fn: Callable) -> Callable:
      return lambda x: fn(params, hparams, x, at_step)

    def posterior_of(name: str) -> Callable:
      return lambda x: self._encode(params, hparams, x, at_step)[name]

    def representation(name: str) -> RepresentationFn:
      return lambda x: posterior_of(name)(x)[0]

    def loss_terms(rng: jax.Array, batch_size: int) -> dict[str, jax.Array]:
      return self._loss_terms_program(batch_size)(
          params, aux, hparams, keys, rng, at_step)

    names = self.representation_names(state)
    representations = {name: representation(name) for name in names}
    if sampled:
      representations.update({
          name + SAMPLED_SUFFIX: sampled_representation_fn(
              posterior_of(name), self._sample_key) for name in names})
    members = TrainedMembers(
        dataset=self.exp.dataset, representation_fn=representations[""],
        posterior_fn=bound(self._posterior),
        reconstruction_error_fn=bound(self._reconstruction_error),
        decode_fn=bound(self._decode),
        groups=hyperparameter_groups(host_hparams, num_members),
        hparams=host_hparams,
        step=int(step) if np.ndim(step) == 0 else steps,
        loss_terms_fn=loss_terms, trace=trace)
    return members, representations


@dataclasses.dataclass
class StoredRun:
  """A workdir's checkpoint at one step, before its state is read: the
  checkpoint's meta (config, config hash, member table) and the experiment
  rebuilt from that config (nothing compiled yet)."""
  workdir: str
  step: int
  meta: dict[str, Any]
  exp: Experiment
  manager: ocp.CheckpointManager

  def restore(self) -> TrainState:
    """The stacked state of every member, on one device; closes the
    checkpoint."""
    state = restore_members(self.manager, self.step, self.exp)
    self.manager.close()
    return state


def open_checkpoint(workdir: str, step: int | None = None) -> StoredRun:
  """The checkpoint of `step` (None: the latest) of `workdir`, its meta
  read and its experiment built; the state is read by `restore()`.

  Raises:
    FileNotFoundError: no finished checkpoint (says how to train one).
    ValueError: `step` is not a finished checkpoint (names those there).
  """
  manager, step = checkpoint.step_or_fail(workdir, step)
  meta = checkpoint.restore_meta(manager, step)
  exp = build(config_lib.from_dict(meta["config"]))
  return StoredRun(workdir=workdir, step=step, meta=meta, exp=exp,
                   manager=manager)
