"""train.micro_batches: a step's gradient accumulated over slices of its
batch is the whole batch's gradient (same noise, same metrics), and configs
where that would not hold are refused before anything compiles."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from disentax.experiment import build, member_hparams
from disentax.models.vae import BatchRows, reparameterisation_noise
from disentax.training import layouts, train_state
from disentax.training.step import make_member_step
from tests.conftest import tiny_config


@pytest.mark.parametrize("correlation", [0.0, 0.9])
def test_batch_rows_draw_exactly_those_rows_of_the_whole_batch(correlation):
  key = jax.random.key(3)
  whole = reparameterisation_noise(key, (8, 5), correlation=correlation)
  rows = reparameterisation_noise(BatchRows(key, jnp.int32(3), 8), (2, 5),
                                  correlation=correlation)
  np.testing.assert_array_equal(rows, whole[3:5])


def _one_member(exp):
  """(member state, hyperparameters) of the first member."""
  state = train_state.init_state(exp, train_state.single_device(exp))
  first = lambda tree: jax.tree.map(lambda leaf: leaf[0], tree)
  return first(state.members), first(member_hparams(exp))


def test_sliced_gradient_is_the_whole_batch_gradient():
  exp = build(tiny_config(objective__beta=(4.0,), num_seeds=1))
  member, hparams = _one_member(exp)
  params = member.params
  _, x = exp.dataset.sample(jax.random.key(1), 8)
  noise_key = jax.random.key(2)

  def loss_fn(p, x, noise):
    output = exp.model.apply({"params": p}, x, noise)
    loss, metrics = exp.objective.loss(output, x, hparams, jnp.int32(0))
    return loss, (metrics, output)

  whole, (whole_metrics, _) = jax.jit(jax.grad(loss_fn, has_aux=True))(
      params, x, noise_key)
  sliced, metrics, _ = jax.jit(layouts.sliced_gradient,
                               static_argnums=(0, 4))(
      loss_fn, params, x, noise_key, 4)
  for a, b in zip(jax.tree.leaves(sliced), jax.tree.leaves(whole)):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)
  assert set(metrics) == set(whole_metrics)
  for name in metrics:
    np.testing.assert_allclose(metrics[name], whole_metrics[name], rtol=1e-5)


def test_train_step_with_micro_batches_reports_the_whole_batch_loss():
  """The step's own wiring: the same data, noise keys and objective."""
  metrics = {}
  for count in (1, 2):
    exp = build(tiny_config(objective__beta=(4.0,), num_seeds=1,
                            train__micro_batches=count))
    member, hparams = _one_member(exp)
    member_step = jax.jit(make_member_step(
        exp, layouts.batch_gradient(exp.layout.micro_batches)))
    _, metrics[count] = member_step(member, hparams, jax.random.key(0),
                                    jnp.int32(7))
  for name in ("loss", "recon", "kl"):
    np.testing.assert_allclose(metrics[2][name], metrics[1][name], rtol=1e-5)


@pytest.mark.parametrize("overrides, message", [
    (dict(train__micro_batches=3), "does not divide config.train.batch_size"),
    (dict(train__micro_batches=0), "train.micro_batches=0"),
    (dict(objective__name="beta_tcvae", train__micro_batches=2),
     "'beta_tcvae' is not a mean of per-example terms"),
    (dict(objective__name="annealed_vae", train__micro_batches=2),
     "'annealed_vae' is not a mean of per-example terms"),
])
def test_micro_batches_that_would_change_the_gradient_are_refused(
    overrides, message):
  config = tiny_config(**overrides)
  if config.objective.name != "beta_vae":
    del config.objective.beta
  with pytest.raises(ValueError, match=message):
    build(config)


def test_deft_slices_as_its_base_objective_does():
  from experiments import deft
  config = deft.get_config("tiny")
  config.train.micro_batches = 2
  assert build(config).objective.per_example_mean
  config.objective.base = "beta_tcvae"
  config.objective.staged = "alpha"
  with pytest.raises(ValueError, match="'deft_beta_tcvae' is not a mean"):
    build(config)
