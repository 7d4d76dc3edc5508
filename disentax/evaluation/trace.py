"""Training-time evaluation: the evaluators of `config.eval.trace`, scored
every `config.eval.trace_every` steps while training.

The DEFT papers show information diffusion (journal Fig. 3, 17) as the NMI
between latents and factors over training; the annealing test reads the
IFP off the KL-vs-beta curve.  Both are evaluators run between chunks on the
members' current state, through the same protocol and the same code as the
evaluation job (`metrics.base`), so a trace point at the final step equals
the evaluation job's score with the same options.  The series lives in
WORKDIR/trace.npz:

  step          int   [T]         training step of each trace point
  stage         int   [T, M]      the objective's training stage (DEFT,
                                  CascadeVAE-C), -1 for objectives
                                  without stages
  <score name>  float [T, M, ...] every score of every traced evaluator
                                  (e.g. mig [T, M], nmi_matrix [T, M, d, F])
  factor_names  str   [F]

The file is rewritten atomically at each trace point; on resume the points
training computes again are dropped (`run_log.survives_resume`), so the
series equals that of an uninterrupted run.  `scalars` picks a point's
per-member scalar scores for the training curves (metrics.jsonl and the
tracking writers).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from disentax import results, run_log
from disentax.evaluation.members import MemberFunctions
from disentax.experiment import Experiment
from disentax.workdir import trace_path, write_npz

FACTOR_NAMES = "factor_names"
# How a trace score is named among the training curves: "trace/mig".
CURVE_PREFIX = "trace/"


def scalars(point: dict[str, np.ndarray], num_members: int
            ) -> dict[str, np.ndarray]:
  """The scores of a trace point that are one number per member, named
  `CURVE_PREFIX` + score (matrices such as nmi_matrix [M, d, F] and the
  point's step and stage are left out: the stage is a training metric of
  the objectives that have one)."""
  return {CURVE_PREFIX + name: np.asarray(value, np.float64)
          for name, value in point.items()
          if name not in ("step", "stage")
          and np.shape(value) == (num_members,)}


class Trace:
  """Scores the traced evaluators of `exp` at steps of training."""

  def __init__(self, exp: Experiment, workdir: str, resume_step: int,
               functions: MemberFunctions | None = None):
    """`functions`: the members' jitted functions, when the caller shares
    them (default: compiled for this trace)."""
    self.workdir = workdir
    self._exp = exp
    self._functions = functions or MemberFunctions(exp)
    self._rng = jax.random.key(exp.config.eval.seed)
    self._records: dict[str, list[Any]] = {}
    old = results.load_trace(workdir)
    if old is not None:
      keep = np.array([run_log.survives_resume(s, resume_step)
                       for s in old["step"]], bool)
      self._records = {name: list(values[keep])
                       for name, values in old.items() if name != FACTOR_NAMES}

  def __call__(self, state: Any, step: int) -> dict[str, np.ndarray]:
    """Scores the members of `state` at `step`, appends the point to the
    trace file and returns it."""
    members, _ = self._functions.at(state, step)
    point = {"step": np.int64(step)}
    for evaluator in self._exp.trace.values():
      point.update(evaluator.score(members, self._rng))
    stage = self._exp.objective.stage
    point["stage"] = np.full(len(self._exp.members),
                             -1 if stage is None else int(stage(
                                 jnp.int32(step))), np.int32)
    for name, value in point.items():
      self._records.setdefault(name, []).append(np.asarray(value))
    arrays = {name: np.stack(values) for name, values in self._records.items()}
    arrays[FACTOR_NAMES] = np.asarray(self._exp.dataset.factor_names)
    write_npz(trace_path(self.workdir), arrays)
    return point
