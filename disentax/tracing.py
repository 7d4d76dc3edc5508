"""Training-time tracing: NMI and MIG of every member every N steps.

The DEFT papers show *information diffusion* (journal Fig. 3, Fig. 17): how
the normalised mutual information between each latent and each factor evolves
during training.  With `config.train.trace_every = N` the trainer scores
every member on a fixed set of `config.train.trace_points` uniformly drawn
factor tuples every N steps (between chunks, on the device, all members in
one call) and keeps the time series in `WORKDIR/trace.npz`:

  step         int   [T]           training step of each trace point
  mig          float [T, M]        MIG of each member
  nmi_matrix   float [T, M, d, F]  I(z_j; c_k) / H(c_k) (NMI1/NMI2 per factor
                                   are its top two entries over latents)
  stage        int   [T, M]        the objective's training stage (DEFT), -1
                                   for objectives without stages
  factor_names str   [F]

The file is rewritten atomically at each trace point; on resume the points
after the restored checkpoint are dropped, so the series equals that of an
uninterrupted run.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from disentax.experiment import Experiment, make_encode_members, member_hparams
from disentax.metrics import mig as mig_lib
from disentax.metrics.sampling import sample_factors
from disentax.results import load_trace
from disentax.workdir import trace_path, write_npz

NUM_BINS = 20  # dlib's MIG discretisation, as the evaluator's default


class Tracer:
  """Scores all members' NMI matrices and MIG at a step of training."""

  def __init__(self, exp: Experiment, workdir: str, resume_step: int):
    train = exp.config.train
    self.every = int(train.trace_every)
    self.workdir = workdir
    self._dataset = exp.dataset
    self._factor_sizes = tuple(int(s) for s in exp.dataset.factor_sizes)
    self._stage = exp.objective.stage
    self._hparams = member_hparams(exp)
    self._num_members = len(exp.members)
    self._encode = make_encode_members(exp)
    # The same points at every trace step (and across restarts): drawn from
    # the evaluation seed, rendered once.
    self._factors = sample_factors(
        exp.dataset, jax.random.key(exp.config.eval.seed), train.trace_points)
    self._observations = jax.jit(exp.dataset.observations_from_factors)(
        self._factors)
    self._records = self._kept_records(resume_step)

  def _kept_records(self, resume_step: int) -> dict[str, list[Any]]:
    records = {"step": [], "mig": [], "nmi_matrix": [], "stage": []}
    old = load_trace(self.workdir) if self.every else None
    if old is not None:
      keep = old["step"] <= resume_step
      for name in records:
        records[name] = list(old[name][keep])
    return records

  def __call__(self, params: Any, step: int) -> dict[str, np.ndarray]:
    """Scores the members at `step`, appends to the trace file, and returns
    this point's {mig [M], nmi_matrix [M, d, F]}."""
    codes = np.asarray(self._encode(params, self._hparams, self._observations,
                                    jnp.int32(step))[""])
    scores = mig_lib.score_members(codes, self._factors, self._factor_sizes,
                                   NUM_BINS)
    stage = self._stage(jnp.int32(step))
    stage = -1 if stage is None else int(stage)
    point = {"step": np.int64(step), "mig": np.asarray(scores["mig"]),
             "nmi_matrix": np.asarray(scores["nmi_matrix"]),
             "stage": np.full(self._num_members, stage, np.int32)}
    for name, value in point.items():
      self._records[name].append(value)
    self._write()
    return point

  def _write(self) -> None:
    arrays = {k: np.stack(v) for k, v in self._records.items()}
    arrays["factor_names"] = np.asarray(self._dataset.factor_names)
    write_npz(trace_path(self.workdir), arrays)
