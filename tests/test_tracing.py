"""Training-time tracing: NMI/MIG time series that agree with the evaluator,
carry DEFT's stage, and survive a restart unchanged."""

import numpy as np
import pytest

from disentax import results
from disentax.evaluation import job
from disentax.training import trainer
from experiments import deft


def _tiny_traced_deft(num_steps=20):
  config = deft.get_config("tiny")  # 2 stages of 10 steps, chunks of 5
  config.train.num_steps = num_steps
  config.eval.trace_every = 5
  config.eval.trace = {"mig": {"num_points": 200, "batch_size": 200}}
  config.eval.metric.num_points = 200  # the traced MIG's options
  config.eval.metric.batch_size = 200
  config.eval.traversals = False
  return config


@pytest.fixture(scope="module")
def traced_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("traced"))
  trainer.train(_tiny_traced_deft(), workdir)
  return workdir


def test_trace_has_every_point_and_deft_stage(traced_run):
  trace = results.load_trace(traced_run)
  np.testing.assert_array_equal(trace["step"], [0, 5, 10, 15, 20])
  members = 2  # tiny: 2 seeds x 1 pressure sequence
  assert trace["mig"].shape == (5, members)
  assert trace["nmi_matrix"].shape == (5, members, 4, 5)  # d = 2 x 2
  # DEFT's stage 1 starts at step 10.
  np.testing.assert_array_equal(trace["stage"][:, 0], [0, 0, 1, 1, 1])
  assert list(trace["factor_names"]) == [
      "shape", "scale", "orientation", "posX", "posY"]
  # Before stage 1 the second group outputs exact zeros: it carries no
  # information about any factor.
  np.testing.assert_array_equal(trace["nmi_matrix"][:2, :, 2:], 0.0)


def test_last_trace_point_equals_the_evaluation(traced_run):
  """The traced MIG and the evaluation job's primary metric have the same
  options: the trace point at the final step is exactly what the job
  scores (one evaluator protocol, one code path, the same key)."""
  rows, _ = job.evaluate(traced_run, battery="none")
  trace = results.load_trace(traced_run)
  np.testing.assert_array_equal(trace["mig"][-1],
                                [r["metrics"]["mig"] for r in rows])
  np.testing.assert_array_equal(
      trace["nmi_matrix"][-1], results.load_arrays(traced_run)["nmi_matrix"])


def test_resumed_run_keeps_the_same_trace(traced_run, tmp_path):
  """Train 10 steps, then resume to 20: the series equals the uninterrupted
  run's, with no point duplicated."""
  trainer.train(_tiny_traced_deft(num_steps=10), str(tmp_path))
  first = results.load_trace(str(tmp_path))
  np.testing.assert_array_equal(first["step"], [0, 5, 10])
  trainer.train(_tiny_traced_deft(num_steps=20), str(tmp_path))
  resumed, whole = (results.load_trace(str(tmp_path)),
                    results.load_trace(traced_run))
  for name in ("step", "mig", "nmi_matrix", "stage"):
    np.testing.assert_allclose(resumed[name], whole[name], rtol=1e-6,
                               err_msg=name)


def test_trace_every_must_be_a_multiple_of_the_chunk():
  from disentax.experiment import build
  config = _tiny_traced_deft()
  config.eval.trace_every = 7
  with pytest.raises(ValueError, match=r"config.eval.trace_every=7 must be a "
                     r"multiple of config.train.steps_per_chunk=5"):
    build(config)
