"""FactorVAE: the per-dimension permutation, the reference signs of the TC
term and the discriminator loss on hand-built discriminators with known
answers, a trained discriminator's TC estimate against the Gaussian closed
form, validation, and a tiny run whose discriminator is checkpointed."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from disentax import checkpoint, run_log
from disentax.experiment import build
from disentax.models import VAEOutput
from disentax.objectives import make_objective
from disentax.objectives.factor_vae import (Discriminator,
                                            discriminator_loss, factor_vae,
                                            permute_dims,
                                            update_discriminator)
from disentax.training import train_state, trainer
from disentax.workdir import run_log_path
from experiments import factor_vae as factor_vae_experiment

LN2 = math.log(2.0)


def correlated(key, b, rho):
  chol = np.linalg.cholesky(np.array([[1.0, rho], [rho, 1.0]]))
  return jax.random.normal(key, (b, 2)) @ jnp.asarray(chol.T, jnp.float32)


def corr(z):
  return float(np.corrcoef(np.asarray(z).T)[0, 1])


def output_for(z):
  """A VAE output with this z; mean/logvar give KL = 0.5 * mean(sum z^2)."""
  b = z.shape[0]
  return VAEOutput(mean=z, logvar=jnp.zeros_like(z), z=z,
                   logits=jnp.zeros((b, 2, 2, 1)))


# ----------------------------------------------------------- permutation

def test_permutation_shuffles_each_dimension_independently():
  z = correlated(jax.random.key(0), 4096, 0.95)
  permuted = permute_dims(jax.random.key(1), z)
  assert permuted.shape == z.shape
  # Each column keeps its multiset of values ...
  np.testing.assert_array_equal(np.sort(np.asarray(permuted), axis=0),
                                np.sort(np.asarray(z), axis=0))
  # ... the columns are moved (with different permutations) ...
  assert np.mean(np.asarray(permuted) == np.asarray(z)) < 0.01
  # ... and the dependence between them is gone.
  assert corr(z) > 0.9 and abs(corr(permuted)) < 0.05


def test_permutation_uses_its_key():
  z = correlated(jax.random.key(0), 64, 0.5)
  a = permute_dims(jax.random.key(1), z)
  np.testing.assert_array_equal(a, permute_dims(jax.random.key(1), z))
  assert not np.array_equal(a, permute_dims(jax.random.key(2), z))


# ----------------------------------- signs with hand-built discriminators

def product_discriminator(scale=1.0):
  """Depth 1, width 4 discriminator with logit_real - logit_permuted =
  scale * (|z1 + z2| - |z1 - z2|) = 2 scale sign(z1 z2) min(|z1|, |z2|):
  it favours "real" where z1 and z2 agree in sign, like log q(z) /
  (q(z1) q(z2)) of a positively correlated Gaussian.  Leaky ReLU (slope
  0.2): lrelu(u) + lrelu(-u) = 0.8 |u|."""
  first = jnp.array([[1.0, -1.0, 1.0, -1.0], [1.0, -1.0, -1.0, 1.0]])
  w = scale / 0.8 / 2.0
  second = jnp.array([[w, -w], [w, -w], [-w, w], [-w, w]])
  params = {"Dense_0": {"kernel": first, "bias": jnp.zeros(4)},
            "Dense_1": {"kernel": second, "bias": jnp.zeros(2)}}
  return params


def expected_product_tc(rho, scale=1.0):
  """E|z1 + z2| - E|z1 - z2| for unit-variance z with correlation rho."""
  return scale * math.sqrt(2.0 / math.pi) * (math.sqrt(2 + 2 * rho)
                                             - math.sqrt(2 - 2 * rho))


def small_objective(**kwargs):
  return factor_vae(discriminator_width=4, discriminator_depth=1, **kwargs)


@pytest.mark.parametrize("gamma", [10.0, 40.0])
def test_tc_term_is_positive_on_correlated_z(gamma):
  """rho 0.9, 20,000 samples: TC term = the closed-form mean of the logit
  difference (0.5 * (sqrt(3.8) - sqrt(0.2)) * sqrt(2/pi) * 2 = 1.20) to 0.03,
  and loss = recon + KL + gamma * TC exactly."""
  z = correlated(jax.random.key(2), 20_000, 0.9)
  objective = small_objective()
  aux = {"params": product_discriminator()}
  x = jnp.zeros((z.shape[0], 2, 2, 1))
  loss, metrics = objective.loss(output_for(z), x,
                                 {"gamma": jnp.float32(gamma)}, 0, aux)
  assert float(metrics["tc"]) > 0
  np.testing.assert_allclose(float(metrics["tc"]), expected_product_tc(0.9),
                             atol=0.03)
  recon = 4 * LN2  # logits 0 against targets 0, 4 pixels
  kl = 0.5 * float(jnp.mean(jnp.sum(z ** 2, axis=1)))
  np.testing.assert_allclose(float(metrics["recon"]), recon, rtol=1e-6)
  np.testing.assert_allclose(float(metrics["kl"]), kl, rtol=1e-5)
  np.testing.assert_allclose(float(metrics["vae_loss"]), recon + kl,
                             rtol=1e-5)
  np.testing.assert_allclose(float(loss), recon + kl + gamma * float(
      metrics["tc"]), rtol=1e-5)
  assert float(metrics["loss"]) == float(loss)


def test_tc_term_is_about_zero_on_independent_z():
  """rho 0: the same symmetric discriminator averages to 0 (|TC| < 0.03, 5
  standard errors at 20,000 samples); reversing the discriminator's sign
  reverses the TC term (it is logit_real - logit_permuted, not the other
  way round)."""
  objective = small_objective()
  x = jnp.zeros((20_000, 2, 2, 1))
  independent = correlated(jax.random.key(3), 20_000, 0.0)
  _, metrics = objective.loss(output_for(independent), x,
                              {"gamma": jnp.float32(1)}, 0,
                              {"params": product_discriminator()})
  assert abs(float(metrics["tc"])) < 0.03
  z = correlated(jax.random.key(4), 20_000, 0.9)
  _, flipped = objective.loss(output_for(z), x, {"gamma": jnp.float32(1)}, 0,
                              {"params": product_discriminator(-1.0)})
  assert float(flipped["tc"]) < -1.0


def test_tc_gradient_reaches_z_not_the_discriminator():
  """The VAE loss is differentiated through z (to the encoder); the
  discriminator's parameters get no gradient from it."""
  objective = small_objective()
  z = correlated(jax.random.key(5), 256, 0.9)
  x = jnp.zeros((256, 2, 2, 1))
  aux = {"params": product_discriminator()}

  def loss_of(z, params):
    return objective.loss(output_for(z)._replace(mean=jnp.zeros_like(z)), x,
                          {"gamma": jnp.float32(10)}, 0,
                          {"params": params})[0]

  grad_z, grad_params = jax.grad(loss_of, argnums=(0, 1))(z, aux["params"])
  assert float(jnp.abs(grad_z).sum()) > 0
  assert all(float(jnp.abs(g).sum()) == 0
             for g in jax.tree.leaves(grad_params))


def test_discriminator_loss_signs():
  """Cross-entropy with real -> class 0, permuted -> class 1."""
  b = 8
  right_real = jnp.tile(jnp.array([[10.0, -10.0]]), (b, 1))
  right_perm = jnp.tile(jnp.array([[-10.0, 10.0]]), (b, 1))
  loss, accuracy = discriminator_loss(right_real, right_perm)
  assert float(loss) < 1e-6 and float(accuracy) == 1.0
  loss, accuracy = discriminator_loss(right_perm, right_real)  # all wrong
  np.testing.assert_allclose(float(loss), 20.0, rtol=1e-4)
  assert float(accuracy) == 0.0
  zeros = jnp.zeros((b, 2))
  loss, _ = discriminator_loss(zeros, zeros)
  np.testing.assert_allclose(float(loss), LN2, rtol=1e-6)


def test_discriminator_loss_with_clipped_probabilities():
  """Clip 1e-6 (dlib-google's, the PyTorch ports'): a sample classified
  right with p = 1 - 2e-9 costs -log(1 - 1e-6), one classified wrong with
  p = 2e-9 costs -log(1e-6) = 13.82 (exact: 20), and neither has a
  gradient; uncertain logits cost ln 2 as without the clip."""
  b = 8
  right_real = jnp.tile(jnp.array([[10.0, -10.0]]), (b, 1))
  right_perm = jnp.tile(jnp.array([[-10.0, 10.0]]), (b, 1))
  loss, accuracy = discriminator_loss(right_real, right_perm, 1e-6)
  np.testing.assert_allclose(float(loss), -math.log(1 - 1e-6), rtol=0.05)
  assert float(accuracy) == 1.0
  loss, _ = discriminator_loss(right_perm, right_real, 1e-6)
  np.testing.assert_allclose(float(loss), -math.log(1e-6), rtol=1e-5)
  for real, perm in ((right_real, right_perm), (right_perm, right_real)):
    grads = jax.grad(lambda r, p: discriminator_loss(r, p, 1e-6)[0],
                     argnums=(0, 1))(real, perm)
    assert all(float(jnp.abs(g).max()) == 0 for g in grads)
  zeros = jnp.zeros((b, 2))
  np.testing.assert_allclose(float(discriminator_loss(zeros, zeros, 1e-6)[0]),
                             LN2, rtol=1e-6)


def test_update_permutes_a_second_batch_when_given():
  """permuted_from=z is the default (bitwise); permuted_from=z2 trains on
  D(z) against D(per-column shuffle of z2) with the step's key."""
  objective = factor_vae(discriminator_width=8, discriminator_depth=1)
  discriminator = Discriminator(width=8, depth=1)
  optimizer = objective.aux.update.keywords["optimizer"]
  z = correlated(jax.random.key(11), 64, 0.9)
  z2 = correlated(jax.random.key(12), 64, 0.9)
  aux = objective.aux.init(jax.random.key(0), output_for(z[:1]))
  key = jax.random.key(13)
  update = functools.partial(update_discriminator, aux, output_for(z), {}, 0,
                             key, discriminator=discriminator,
                             optimizer=optimizer)
  default, default_metrics = update()
  same, same_metrics = update(permuted_from=z)
  for a, b in zip(jax.tree.leaves(default), jax.tree.leaves(same)):
    np.testing.assert_array_equal(a, b)
  _, second = update(permuted_from=z2)
  apply = functools.partial(discriminator.apply, {"params": aux["params"]})
  expected, _ = discriminator_loss(apply(z), apply(permute_dims(key, z2)))
  np.testing.assert_allclose(float(second["discriminator_loss"]),
                             float(expected), rtol=1e-6)
  assert float(second["discriminator_loss"]) != float(
      default_metrics["discriminator_loss"])


def test_torch_initializer_is_nn_linear_default():
  """initializer="torch": every kernel and bias U(+-1/sqrt(fan_in))
  (variance 1/(3 fan_in)); "glorot": U(+-sqrt(6/(fan_in+fan_out))) kernels
  and zero biases."""
  z = jnp.zeros((1, 50))
  params = Discriminator(width=400, depth=2, initializer="torch").init(
      jax.random.key(0), z)["params"]
  for name, fan_in in (("Dense_0", 50), ("Dense_1", 400), ("Dense_2", 400)):
    bound = fan_in ** -0.5
    for leaf in ("kernel", "bias"):
      values = np.asarray(params[name][leaf])
      assert np.abs(values).max() <= bound
      if values.size > 200:
        assert np.abs(values).max() > 0.95 * bound
        np.testing.assert_allclose(values.var(), bound ** 2 / 3, rtol=0.15)
  params = Discriminator(width=400, depth=2).init(jax.random.key(0),
                                                 z)["params"]
  kernel = np.asarray(params["Dense_0"]["kernel"])
  assert np.abs(kernel).max() <= math.sqrt(6 / 450)
  np.testing.assert_allclose(kernel.var(), 2 / 450, rtol=0.1)
  assert not np.any(np.asarray(params["Dense_0"]["bias"]))
  with pytest.raises(ValueError, match="initializer='he'; must be one of"):
    Discriminator(initializer="he").init(jax.random.key(0), z)


def test_hand_built_discriminator_beats_chance_on_correlated_z():
  """rho 0.95: the discriminator above (scale 0.5) calls a real z real iff
  z1 z2 > 0 (probability 1/2 + arcsin(rho)/pi) and a permuted one permuted
  half the time: accuracy 0.70 (to 0.02 at 4,096 samples), and its loss is
  below chance, ln 2."""
  rho = 0.95
  objective = small_objective()
  z = correlated(jax.random.key(6), 4096, rho)
  aux = objective.aux.init(jax.random.key(0), output_for(z[:1]))
  aux = {**aux, "params": product_discriminator(0.5)}
  _, metrics = jax.jit(objective.aux.update)(aux, output_for(z), {}, 0,
                                             jax.random.key(7))
  expected = 0.5 * (0.5 + math.asin(rho) / math.pi) + 0.5 * 0.5
  np.testing.assert_allclose(float(metrics["discriminator_accuracy"]),
                             expected, atol=0.02)
  assert float(metrics["discriminator_loss"]) < LN2 - 0.05


# -------------------------------------------- training the discriminator

def test_one_update_on_correlated_z_lowers_the_discriminator_loss():
  """Same z, same permutation key: the loss after one Adam step (default
  lr 1e-4, b1 0.5, b2 0.9) is below the loss before it."""
  objective = factor_vae(discriminator_width=64, discriminator_depth=2)
  z = correlated(jax.random.key(8), 512, 0.95)
  aux = objective.aux.init(jax.random.key(0), output_for(z[:1]))
  key = jax.random.key(9)
  update = jax.jit(objective.aux.update)
  new_aux, before = update(aux, output_for(z), {}, 0, key)
  _, after = update(new_aux, output_for(z), {}, 1, key)
  assert float(after["discriminator_loss"]) < float(
      before["discriminator_loss"])
  changed = [not np.allclose(a, b) for a, b in zip(
      jax.tree.leaves(aux["params"]), jax.tree.leaves(new_aux["params"]))]
  assert all(changed)


def test_trained_discriminator_estimates_the_gaussian_tc():
  """400 updates (lr 1e-3, fresh batches of 256 with rho 0.9) then the TC
  term on a new batch of 20,000 is within 0.2 nats of -0.5 log(1 - 0.81) =
  0.83 (measured 0.88); an untrained one is near 0."""
  rho = 0.9
  objective = factor_vae(discriminator_width=64, discriminator_depth=2,
                         discriminator_learning_rate=1e-3)
  aux = objective.aux.init(jax.random.key(0),
                           output_for(jnp.zeros((1, 2))))
  x = jnp.zeros((20_000, 2, 2, 1))
  test_z = correlated(jax.random.key(99), 20_000, rho)
  tc_of = jax.jit(lambda aux: objective.loss(
      output_for(test_z), x, {"gamma": jnp.float32(1)}, 0, aux)[1]["tc"])
  assert abs(float(tc_of(aux))) < 0.3

  @jax.jit
  def train_steps(aux):
    def body(aux, s):
      z = correlated(jax.random.fold_in(jax.random.key(1), s), 256, rho)
      aux, metrics = objective.aux.update(
          aux, output_for(z), {}, s, jax.random.fold_in(jax.random.key(2), s))
      return aux, metrics["discriminator_accuracy"]
    return jax.lax.scan(body, aux, jnp.arange(400))

  aux, accuracy = train_steps(aux)
  truth = -0.5 * math.log(1 - rho * rho)
  assert abs(float(tc_of(aux)) - truth) < 0.2, (float(tc_of(aux)), truth)
  assert float(accuracy[-50:].mean()) > 0.65


def test_update_aux_metrics_and_state_under_vmap():
  """Members (vmapped) update their own discriminators with their own keys."""
  objective = factor_vae(discriminator_width=8, discriminator_depth=1)
  z = correlated(jax.random.key(10), 32, 0.9)
  auxes = jax.vmap(lambda k: objective.aux.init(k, output_for(z[:1])))(
      jax.random.split(jax.random.key(0), 3))
  new, metrics = jax.jit(jax.vmap(objective.aux.update,
                                  in_axes=(0, None, None, None, 0)))(
      auxes, output_for(z), {}, 0, jax.random.split(jax.random.key(1), 3))
  assert sorted(metrics) == ["discriminator_accuracy", "discriminator_loss"]
  assert metrics["discriminator_loss"].shape == (3,)
  assert int(new["opt_state"][0].count[0]) == 1
  kernels = np.asarray(new["params"]["Dense_0"]["kernel"])
  assert not np.allclose(kernels[0], kernels[1])


# --------------------------------------------------- builder and configs

def test_default_discriminator_is_dlib_google_six_by_1000():
  objective = factor_vae()
  shapes = jax.eval_shape(objective.aux.init, jax.random.key(0),
                          output_for(jnp.zeros((1, 10))))
  kernels = [shapes["params"][f"Dense_{i}"]["kernel"].shape for i in range(7)]
  assert kernels == [(10, 1000)] + [(1000, 1000)] * 5 + [(1000, 2)]
  assert len(shapes["params"]) == 7


@pytest.mark.parametrize("kwargs, message", [
    ({"gamma": -10.0}, r"gamma=\(-10.0,\).*\[-10.0\].*>= 0"),
    ({"gamma": (10.0, -1.0)}, r"\[-1.0\]"),
    ({"gamma": ()}, r"gamma is empty"),
    ({"discriminator_width": 0}, r"discriminator_width=0.*int >= 1"),
    ({"discriminator_depth": 2.5}, r"discriminator_depth=2.5.*int >= 1"),
    ({"discriminator_learning_rate": 0.0},
     r"discriminator_learning_rate=0.0.*> 0"),
    ({"discriminator_b1": 1.0}, r"discriminator_b1=1.0.*\[0, 1\)"),
    ({"discriminator_b2": -0.1}, r"discriminator_b2=-0.1.*\[0, 1\)"),
    ({"reconstruction": "l2"}, r"reconstruction='l2'")])
def test_rejects_bad_arguments(kwargs, message):
  with pytest.raises(ValueError, match=message):
    factor_vae(**kwargs)


def test_unknown_config_key_is_rejected():
  with pytest.raises(ValueError, match=r"unknown key\(s\) \['beta'\]"):
    make_objective({"name": "factor_vae", "beta": 4.0}, dataset_size=10)


@pytest.mark.parametrize("preset", ["paper", "cpu", "tiny"])
def test_configs_build(preset):
  exp = build(factor_vae_experiment.get_config(preset))
  assert exp.method == "factor_vae"
  assert exp.objective.aux is not None
  if preset == "paper":
    assert exp.objective.hyperparameters == {
        "gamma": (10.0, 20.0, 30.0, 40.0, 50.0, 100.0)}
    assert exp.config.objective.discriminator_width == 1000
    assert exp.config.objective.discriminator_depth == 6
    assert len(exp.members) == 300


# ------------------------------------------------- training + checkpoint

def tiny_config():
  """tiny preset (16px, batch 8, gamma {10, 40} x 2 seeds, 2 x 64
  discriminator), 40 steps, VAE lr 1e-3 and discriminator lr 1e-3 (the
  1:1 ratio of dlib-google's 1e-4 / 1e-4)."""
  config = factor_vae_experiment.get_config("tiny")
  config.train.num_steps = 40
  config.train.steps_per_chunk = 10
  config.train.checkpoint_every = 40
  config.train.learning_rate = 1e-3
  config.objective.discriminator_learning_rate = 1e-3
  # vmap (the accelerator layout) compiles faster than unroll on CPU; the
  # discriminator state is then batched over members inside one program.
  config.train.member_execution = "vmap"
  return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("factor_vae"))
  config = tiny_config()
  state = trainer.train(config, workdir)
  return config, workdir, state


def test_tiny_run_reduces_the_vae_loss_of_every_member(trained):
  _, workdir, _ = trained
  lines = run_log.read_lines(run_log_path(workdir))
  assert [line["step"] for line in lines] == [10, 20, 30, 40]
  for name in ("loss", "recon", "kl", "vae_loss", "tc",
               "discriminator_loss", "discriminator_accuracy"):
    assert all(len(line[name]) == 4 for line in lines), name
  first = np.array(lines[0]["vae_loss"])
  last = np.array(lines[-1]["vae_loss"])
  assert np.all(last < 0.6 * first), (first, last)


def test_discriminator_state_is_checkpointed(trained):
  """Restored into the structure of `init_state(build(config))` (what a
  resumed run restores into; its abstract shapes, so nothing compiles), the
  aux (discriminator params and Adam state of every member) equals the
  trained one, and its Adam count shows 40 discriminator updates."""
  config, workdir, state = trained
  exp = build(config)
  target = jax.eval_shape(lambda: train_state.init_state(exp))
  manager, step = checkpoint.latest_step_or_fail(workdir)
  assert step == 40
  restored = checkpoint.restore_state(manager, step, target)
  trained_leaves = jax.tree.leaves(state.aux)
  restored_leaves = jax.tree.leaves(restored.aux)
  assert len(trained_leaves) == len(restored_leaves) > 0
  for a, b in zip(trained_leaves, restored_leaves):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  np.testing.assert_array_equal(restored.aux["opt_state"][0].count, [40] * 4)
  kernel = np.asarray(restored.aux["params"]["Dense_0"]["kernel"])
  assert kernel.shape == (4, 10, 64)  # one discriminator per member
  assert not np.allclose(kernel[0], kernel[1])
