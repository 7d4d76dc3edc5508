"""ControlVAE / DynamicVAE: the PI controllers reproduce, step by step, plain
Python loops written from the reference implementations' update rules
(including their clamps and anti-windup freezes), C(t) follows the
references' set-point schedules, one controller per member under vmap, the
controller is checkpointed, and a tiny run trains every member."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from disentax import checkpoint
from disentax.experiment import build
from disentax.training import train_state
from tests.conftest import short_run
from disentax.models import VAEOutput
from disentax.objectives import make_objective
from disentax.objectives.control_vae import control_vae
from disentax.objectives.dynamic_vae import dynamic_vae
from experiments import control_vae as control_vae_config
from experiments import dynamic_vae as dynamic_vae_config

KEY = jax.random.key(0)


def s(e):
  return 1.0 / (1.0 + math.exp(e))


# ----------------------------------------------------------------------------
# Plain-Python references, written from the update rules of the authors' code
# (ControlVAE: P_PID.py + solver_light.py; DynamicVAE: I_PID.py +
# solver_dynamic.py).  Iterations are counted from 1 there: iteration = t + 1.


def control_c_reference(t, c_max, start=0.5, step=0.15, period=5000):
  """The reference loop: C += step whenever the iteration is a multiple of
  the period, then C = min(C, C_max)."""
  c = start
  for iteration in range(1, t + 2):
    if iteration % period == 0:
      c += step
    c = min(c, c_max)
  return c


def dynamic_c_reference(t, c_max, start=0.5, step=0.15, window=6000,
                        ramp=1000):
  """The reference loop: from the second window on, C += step / ramp on the
  first `ramp` iterations of each window; then C = min(C, C_max)."""
  c = start
  for iteration in range(1, t + 2):
    if iteration % window < ramp and iteration >= window:
      c += step / ramp
    c = min(c, c_max)
  return c


def control_reference(steps, kls, c_max, kp=0.01, ki=-0.001, **c_options):
  """Rows (C, e, I, W, beta) of the positional PI controller."""
  integral, previous_w, rows = 0.0, 1.0, []
  for t, kl in zip(steps, kls):
    c = control_c_reference(t, c_max, **c_options)
    e = c - kl
    if previous_w >= 1.0:          # frozen while W(t-1) < 1
      integral += ki * e
    w = 1.0 + kp * s(e) + integral
    previous_w = w
    rows.append(dict(c=c, e=e, integral=integral, w=w, beta=max(1.0, w)))
  return rows


def dynamic_reference(steps, kls, c_max, kp=0.01, ki=-0.005, beta_init=50.0,
                      beta_min=0.1, past=5, **c_options):
  """Rows (C, KL average, e, W, beta) of the incremental PI controller fed
  by the mean of the last `past` KL values (past - 1 zeros at the start)."""
  queue = [0.0] * (past - 1)
  previous_w, previous_e, rows = beta_init, 0.0, []
  for t, kl in zip(steps, kls):
    c = dynamic_c_reference(t, c_max, **c_options)
    queue.append(kl)
    average = sum(queue) / len(queue)
    queue.pop(0)
    e = c - average
    d_p = kp * (s(e) - s(previous_e))
    d_i = 0.0 if previous_w < beta_min else ki * e
    w = previous_w + d_p + d_i
    rows.append(dict(c=c, average=average, e=e, w=w, beta=max(beta_min, w),
                     frozen=previous_w < beta_min))
    previous_w, previous_e = w, e
  return rows


# ----------------------------------------------------------------------------
# Driving the real objectives with a hand-made KL trace.


def output_with_kl(kl):
  """A 1-example VAE output whose batch KL is `kl`: mean sqrt(2 kl) in one
  latent, log-variance 0 (KL = mean^2 / 2); logits do not depend on it."""
  mean = jnp.sqrt(2.0 * kl).reshape(1, 1)
  return VAEOutput(mean=mean, logvar=jnp.zeros((1, 1)), z=mean,
                   logits=jnp.zeros((1, 2, 2, 1)))


X = jnp.zeros((1, 2, 2, 1))


def drive(objective, steps, kls, c_max):
  """Feeds the trace through loss + update_aux (as the trainer does); returns
  per-step loss metrics, the final aux and the jit cache size."""
  hparams = {"c_max": jnp.float32(c_max)}

  @jax.jit
  def one_step(aux, kl, step):
    output = output_with_kl(kl)
    _, metrics = objective.loss(output, X, hparams, step, aux)
    aux, _ = objective.aux.update(aux, output, hparams, step, KEY)
    return aux, metrics

  aux = objective.aux.init(KEY, output_with_kl(jnp.float32(0.0)))
  history = []
  for t, kl in zip(steps, kls):
    aux, metrics = one_step(aux, jnp.float32(kl), jnp.int32(t))
    history.append(jax.tree.map(float, metrics))
  return history, aux, one_step._cache_size()


# A 10-step trace: C = 0.5 at first (KL above, at and below it), then far on
# where C = C_max = 16: KL 9 (e = 7) drives I below -P so W < 1 (clamp), the
# next step is frozen, and KL 40 then lifts W above 1 again (unfrozen).
CONTROL_STEPS = [0, 1, 2, 3, 4999, 600_000, 600_001, 600_002, 600_003,
                 600_004]
CONTROL_KLS = [0.5, 2.5, 0.0, 0.0, 0.65, 9.0, 40.0, 40.0, 16.0, 20.0]


def test_control_vae_beta_matches_the_reference_loop():
  reference = control_reference(CONTROL_STEPS, CONTROL_KLS, c_max=16.0)
  history, aux, compiles = drive(control_vae(c_max=16.0), CONTROL_STEPS,
                                 CONTROL_KLS, 16.0)
  assert compiles == 1  # the step is traced: no recompiles along the run
  np.testing.assert_allclose([h["beta"] for h in history],
                             [r["beta"] for r in reference], rtol=1e-6)
  np.testing.assert_allclose([h["c"] for h in history],
                             [r["c"] for r in reference], rtol=1e-6)
  np.testing.assert_allclose([h["pi_integral"] for h in history],
                             [r["integral"] for r in reference], atol=1e-6)
  np.testing.assert_allclose([h["kl"] for h in history], CONTROL_KLS,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(aux.output, reference[-1]["w"], rtol=1e-6)
  # The trace exercises the clamp, the freeze and the live integral.
  clamped = [r["w"] < 1.0 for r in reference]
  frozen = [i > 0 and reference[i - 1]["w"] < 1.0
            and reference[i]["integral"] == reference[i - 1]["integral"]
            for i in range(len(reference))]
  assert clamped[5] and frozen[6] and not clamped[6] and not frozen[7]
  assert history[5]["beta"] == 1.0 and history[6]["beta"] > 1.0
  # Hand check of step 0: e = 0, P = Kp / 2, I = 0: beta = 1.005.
  assert history[0]["beta"] == pytest.approx(1.005, rel=1e-6)


def test_dynamic_vae_beta_matches_the_reference_loop():
  steps = list(range(10))
  kls = [30.0, 25.0, 3.0, 0.0, 0.0, 1.0, 0.2, 40.0, 0.5, 0.5]
  reference = dynamic_reference(steps, kls, c_max=20.0)
  history, aux, compiles = drive(dynamic_vae(c_max=20.0), steps, kls, 20.0)
  assert compiles == 1
  np.testing.assert_allclose([h["beta"] for h in history],
                             [r["beta"] for r in reference], rtol=1e-6)
  np.testing.assert_allclose([h["kl_average"] for h in history],
                             [r["average"] for r in reference], rtol=1e-5)
  # Step 0 by hand: average = 30 / 5 = 6, e = -5.5,
  # beta = 50 + 0.01 (s(-5.5) - s(0)) - 0.005 * -5.5.
  assert history[0]["kl_average"] == pytest.approx(6.0, rel=1e-6)
  assert history[0]["beta"] == pytest.approx(
      50.0 + 0.01 * (s(-5.5) - 0.5) + 0.0275, rel=1e-7)
  np.testing.assert_allclose(aux.kl_history, kls[-4:], rtol=1e-5)


def test_dynamic_vae_clamp_and_freeze_match_the_reference_loop():
  """Aggressive gains so 10 steps cross beta_min: W < 0.1 clamps beta to
  0.1 and freezes the integral; the P term alone lifts W back above (the
  steps straddle the first C ramp, iteration 6000)."""
  options = dict(kp=0.5, ki=-0.1, beta_init=0.3)
  steps = list(range(5996, 6006))
  kls = [0.0, 0.0, 0.0, 0.0, 40.0, 40.0, 40.0, 0.0, 0.0, 0.0]
  reference = dynamic_reference(steps, kls, c_max=20.0, **options)
  history, _, _ = drive(dynamic_vae(c_max=20.0, **options), steps, kls, 20.0)
  np.testing.assert_allclose([h["beta"] for h in history],
                             [r["beta"] for r in reference], rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose([h["c"] for h in history],
                             [r["c"] for r in reference], rtol=1e-6)
  assert reference[2]["w"] < 0.1                         # clamped
  assert reference[3]["frozen"] and reference[4]["frozen"]  # dI = 0
  assert reference[4]["w"] > 0.1 and not reference[5]["frozen"]
  betas = [h["beta"] for h in history]
  assert min(betas) == pytest.approx(0.1)
  first_clamp = betas.index(min(betas))
  assert max(betas[first_clamp:]) > 0.1                  # and back above


@pytest.mark.parametrize("c_max", [16.0, 18.0, 10.0])
@pytest.mark.parametrize("t", [0, 4998, 4999, 5000, 9998, 9999, 500_000,
                               1_000_000])
def test_control_vae_set_point_schedule(t, c_max):
  """C(t) = min(C_max, 0.5 + 0.15 floor((t+1)/5000)): 0.5 until iteration
  5000 (our step 4999), 15.5 at step 500,000, C_max by 1e6."""
  objective = control_vae(c_max=c_max)
  _, metrics = objective.loss(
      output_with_kl(jnp.float32(1.0)), X, {"c_max": jnp.float32(c_max)},
      jnp.int32(t), objective.aux.init(KEY, None))
  expected = control_c_reference(t, c_max)
  assert float(metrics["c"]) == pytest.approx(expected, rel=1e-6)
  closed_form = min(c_max, 0.5 + 0.15 * ((t + 1) // 5000))
  assert expected == pytest.approx(closed_form, rel=1e-9)


def test_set_point_known_values():
  """A few values by hand, independent of the reference loops."""
  assert control_c_reference(4998, 16.0) == 0.5
  assert control_c_reference(4999, 16.0) == pytest.approx(0.65)
  assert control_c_reference(500_000, 16.0) == pytest.approx(15.5)
  assert control_c_reference(500_000, 10.0) == 10.0
  assert dynamic_c_reference(5998, 20.0) == 0.5
  assert dynamic_c_reference(5999, 20.0) == pytest.approx(0.50015)
  assert dynamic_c_reference(6998, 20.0) == pytest.approx(0.65)


@pytest.mark.parametrize("t", [0, 5998, 5999, 6499, 6998, 6999, 11_999,
                               12_998, 100_000, 779_999, 2_000_000])
def test_dynamic_vae_set_point_schedule(t):
  """0.5 for the first 6000 iterations, then +0.15 per window ramped over
  its first 1000 iterations (step 5999 = iteration 6000 carries 1/1000 of
  the first rise), capped at 20."""
  objective = dynamic_vae(c_max=20.0)
  _, metrics = objective.loss(
      output_with_kl(jnp.float32(1.0)), X, {"c_max": jnp.float32(20.0)},
      jnp.int32(t), objective.aux.init(KEY, None))
  assert float(metrics["c"]) == pytest.approx(dynamic_c_reference(t, 20.0),
                                              rel=2e-6)


def test_vmapped_members_run_independent_controllers():
  """Two members, different KL traces and C_max, one vmapped program: each
  follows its own reference; neither sees the other's KL."""
  objective = control_vae(c_max=(16.0, 18.0))
  steps = [0, 1, 2, 600_000, 600_001, 600_002]
  traces = np.array([[0.5, 2.5, 0.0, 9.0, 40.0, 40.0],
                     [30.0, 30.0, 1.0, 0.0, 0.0, 50.0]], np.float32)
  c_max = jnp.array([16.0, 18.0])

  @jax.jit
  def one_step(aux, kls, step):
    def member(aux, kl, c_max):
      output = output_with_kl(kl)
      _, metrics = objective.loss(output, X, {"c_max": c_max}, step, aux)
      aux, _ = objective.aux.update(aux, output, {"c_max": c_max}, step, KEY)
      return aux, metrics["beta"]
    return jax.vmap(member)(aux, kls, c_max)

  aux = jax.vmap(lambda k: objective.aux.init(k, None))(
      jax.random.split(KEY, 2))
  betas = []
  for i, t in enumerate(steps):
    aux, beta = one_step(aux, jnp.asarray(traces[:, i]), jnp.int32(t))
    betas.append(np.asarray(beta))
  betas = np.stack(betas, axis=1)
  for m, cm in enumerate((16.0, 18.0)):
    expected = [r["beta"] for r in control_reference(steps, traces[m], cm)]
    np.testing.assert_allclose(betas[m], expected, rtol=1e-6)
  assert not np.allclose(betas[0], betas[1])
  assert aux.integral.shape == (2,)


def test_the_loss_uses_beta_of_this_step_without_gradient_into_it():
  """loss = recon + beta(t) KL(t) and d loss / d mean = beta(t) * mean (the
  KL's own gradient only: beta is a constant to the optimiser)."""
  objective = dynamic_vae(c_max=20.0)
  aux = objective.aux.init(KEY, None)
  hparams = {"c_max": jnp.float32(20.0)}

  def loss_of_mean(mean):
    output = VAEOutput(mean=mean, logvar=jnp.zeros((1, 1)), z=mean,
                       logits=jnp.zeros((1, 2, 2, 1)))
    return objective.loss(output, X, hparams, jnp.int32(0), aux)

  mean = jnp.array([[3.0]])  # KL 4.5
  (loss, metrics), grad = jax.value_and_grad(loss_of_mean, has_aux=True)(mean)
  beta = dynamic_reference([0], [4.5], 20.0)[0]["beta"]
  assert float(metrics["beta"]) == pytest.approx(beta, rel=1e-6)
  assert float(loss) == pytest.approx(4 * math.log(2) + beta * 4.5, rel=1e-6)
  assert float(grad[0, 0]) == pytest.approx(beta * 3.0, rel=1e-6)


@pytest.mark.parametrize("builder, kwargs, message", [
    (control_vae, dict(ki=0.001), r"ki=0.001; must be < 0"),
    (control_vae, dict(kp=-0.01), r"kp=-0.01; must be > 0"),
    (control_vae, dict(c_max=(16.0, 0.2)), r"\[0.2\] below c_start"),
    (control_vae, dict(c_period=0), r"c_period=0"),
    (control_vae, dict(reconstruction="l1"), r"reconstruction='l1'"),
    (dynamic_vae, dict(beta_init=0.05), r"beta_init=0.05; must be >= "),
    (dynamic_vae, dict(c_ramp_steps=7000), r"c_ramp_steps=7000"),
    (dynamic_vae, dict(kl_window=0), r"kl_window=0"),
    (dynamic_vae, dict(c_max=()), r"c_max is empty")])
def test_bad_options_are_refused(builder, kwargs, message):
  with pytest.raises(ValueError, match=message):
    builder(**kwargs)


def test_objectives_build_from_config_sections():
  objective = make_objective({"name": "control_vae", "c_max": (16, 18)},
                             dataset_size=737_280)
  assert objective.hyperparameters == {"c_max": (16.0, 18.0)}
  objective = make_objective({"name": "dynamic_vae"}, dataset_size=737_280)
  assert objective.hyperparameters == {"c_max": (20.0,)}


@pytest.mark.parametrize("module", [control_vae_config, dynamic_vae_config])
@pytest.mark.parametrize("preset", ["paper", "cpu", "tiny"])
def test_experiment_configs_build(module, preset):
  exp = build(module.get_config(preset))
  grid = exp.objective.hyperparameters["c_max"]
  assert len(exp.members) == len(grid) * exp.config.num_seeds
  if preset == "paper":
    assert exp.config.num_seeds == 50
    assert exp.config.model.encoder_kernel_sizes == (4, 4, 4, 4)


# ----------------------------------------------------------------------------
# End to end: tiny runs (16x16, batch 8, 2 seeds, 40 steps, lr 1e-3).


@pytest.mark.parametrize("module", [control_vae_config, dynamic_vae_config],
                         ids=["control_vae", "dynamic_vae"])
def test_tiny_run_trains_every_member_and_checkpoints_the_controller(
    module, tmp_path):
  config = module.get_config("tiny")
  config.objective.c_max = (4.0,)
  final, lines = short_run(config, tmp_path, 40, steps_per_chunk=10)
  assert [l["step"] for l in lines] == [10, 20, 30, 40]
  first, last = np.array(lines[0]["recon"]), np.array(lines[-1]["recon"])
  assert first.shape == (2,) and np.all(last < 0.7 * first), (first, last)
  for name in ("beta", "c", "kl"):
    assert len(lines[-1][name]) == 2
  # C follows the tiny preset's schedule (+0.5 every 5 steps, cap 4).
  assert lines[-1]["c"][0] == pytest.approx(
      np.mean([min(4.0, 0.5 + 0.5 * ((t + 1) // 5)) if module is
               control_vae_config else dynamic_c_reference(
                   t, 4.0, step=0.5, window=5, ramp=2)
               for t in range(30, 40)]), rel=1e-5)

  manager, step = checkpoint.latest_step_or_fail(str(tmp_path))
  assert step == 40
  exp = build(config)
  target = jax.eval_shape(lambda: train_state.init_state(exp))
  restored = checkpoint.restore_state(manager, step, target)
  leaves = jax.tree.leaves(final.aux)
  assert leaves and all(leaf.shape[0] == 2 for leaf in leaves)
  assert jax.tree.structure(restored.aux) == jax.tree.structure(final.aux)
  for a, b in zip(jax.tree.leaves(restored.aux), leaves):
    np.testing.assert_array_equal(a, b)
  # The controller moved away from its initial state.
  initial = jax.tree.leaves(jax.vmap(
      lambda k: exp.objective.aux.init(k, None))(jax.random.split(KEY, 2)))
  assert any(not np.allclose(a, b) for a, b in zip(initial, leaves))
