"""beta-TCVAE: the loss is exactly the documented combination of recon, KL
and the MI/TC/DWKL estimates; the default is dlib-google's recon + KL +
(beta - 1) TC; DEFT(TC) is a config; bad arguments fail early; a tiny run
trains."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from disentax.experiment import build
from tests.conftest import short_run
from disentax.models import VAEOutput
from disentax.objectives import OBJECTIVES, make_objective
from disentax.objectives.base import gaussian_kl, reconstruction_loss
from disentax.objectives.beta_tcvae import beta_tcvae
from disentax.objectives.beta_vae import beta_vae
from disentax.objectives.total_correlation import decompose
from experiments import beta_tcvae as beta_tcvae_experiment
from experiments import deft_tc as deft_tc_experiment

N_DSPRITES = 737_280
B, D = 6, 4


def make_output(seed=0):
  rng = np.random.default_rng(seed)
  mean = rng.normal(size=(B, D)).astype(np.float32)
  logvar = rng.uniform(-2.0, 0.5, size=(B, D)).astype(np.float32)
  z = mean + np.exp(0.5 * logvar) * rng.normal(size=(B, D)).astype(np.float32)
  logits = rng.normal(size=(B, 4, 4, 1)).astype(np.float32)
  x = (rng.uniform(size=(B, 4, 4, 1)) > 0.5).astype(np.float32)
  output = VAEOutput(jnp.asarray(mean), jnp.asarray(logvar), jnp.asarray(z),
                     jnp.asarray(logits))
  return output, jnp.asarray(x)


def hparams(alpha, beta, gamma):
  return {"alpha": jnp.float32(alpha), "beta": jnp.float32(beta),
          "gamma": jnp.float32(gamma)}


def parts(output, x, estimator="mws"):
  recon = float(reconstruction_loss(output.logits, x).mean())
  kl = float(gaussian_kl(output.mean, output.logvar).sum(1).mean())
  terms = decompose(output.z, output.mean, output.logvar, estimator,
                    N_DSPRITES)
  return recon, kl, terms


@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_decomposed_form_with_unit_weights_is_recon_plus_the_decomposition(
    estimator):
  """alpha = beta = gamma = 1: loss = recon + MI + TC + DWKL, which is
  recon + mean_i [log q(z_i|x_i) - log p(z_i)] exactly."""
  output, x = make_output()
  objective = beta_tcvae(estimator=estimator, form="decomposed",
                         dataset_size=N_DSPRITES)
  loss, metrics = objective.loss(output, x, hparams(1, 1, 1), jnp.int32(0))
  recon, _, terms = parts(output, x, estimator)
  z, mean, logvar = map(np.asarray, (output.z, output.mean, output.logvar))
  log_q = -0.5 * (np.log(2 * np.pi) + logvar + (z - mean) ** 2
                  / np.exp(logvar))
  log_p = -0.5 * (np.log(2 * np.pi) + z ** 2)
  sampled_kl = np.mean(log_q.sum(1) - log_p.sum(1))
  total = float(terms.mi + terms.tc + terms.dwkl)
  np.testing.assert_allclose(float(loss), recon + total, rtol=1e-6)
  np.testing.assert_allclose(total, sampled_kl, rtol=1e-5, atol=1e-5)
  for name, value in (("mi", terms.mi), ("tc", terms.tc),
                      ("dwkl", terms.dwkl)):
    np.testing.assert_allclose(metrics[name], value, rtol=1e-6)


@pytest.mark.parametrize("beta", [1.0, 2.0, 6.0, 10.0])
def test_default_is_dlib_google_recon_plus_kl_plus_beta_minus_one_tc(beta):
  """Default (form 'kl', MWS, alpha = gamma = 1): loss = recon + KL +
  (beta - 1) TC, and equals dlib-google's loss (TC without constants,
  computed here in numpy) + (beta - 1)(d - 1) log M."""
  output, x = make_output(1)
  objective = beta_tcvae(beta=beta)
  loss, metrics = objective.loss(output, x, hparams(1, beta, 1),
                                 jnp.int32(0))
  recon, kl, terms = parts(output, x)
  np.testing.assert_allclose(float(loss), recon + kl + (beta - 1) * terms.tc,
                             rtol=1e-6)
  z, mean, logvar = (np.asarray(a, np.float64)
                     for a in (output.z, output.mean, output.logvar))
  log_q = -0.5 * (np.log(2 * np.pi) + logvar[None] + (z[:, None] - mean[None])
                  ** 2 / np.exp(logvar[None]))
  lse = lambda a, axis: np.log(np.exp(a).sum(axis))  # noqa: E731
  dlib_tc = np.mean(lse(log_q.sum(2), 1) - lse(log_q, 1).sum(1))
  dlib_loss = recon + kl + (beta - 1) * dlib_tc
  np.testing.assert_allclose(
      float(loss), dlib_loss + (beta - 1) * (D - 1) * math.log(B), rtol=1e-5)
  assert sorted(metrics) == ["dwkl", "kl", "loss", "mi", "recon", "tc"]
  np.testing.assert_allclose(metrics["kl"], kl, rtol=1e-6)


def test_unit_weights_in_the_default_form_is_the_plain_vae():
  output, x = make_output(2)
  loss, _ = beta_tcvae().loss(output, x, hparams(1, 1, 1), jnp.int32(0))
  vae, _ = beta_vae(beta=1.0).loss(output, x, {"beta": jnp.float32(1)},
                                   jnp.int32(0))
  assert float(loss) == float(vae)


@pytest.mark.parametrize("alpha, beta, gamma", [(0.0, 6.0, 1.0),
                                                (4.0, 8.0, 1.0),
                                                (2.0, 3.0, 0.5)])
def test_general_weights_in_both_forms(alpha, beta, gamma):
  """'kl': recon + KL + (a-1) MI + (b-1) TC + (g-1) DWKL; 'decomposed':
  recon + a MI + b TC + g DWKL.  They differ by KL - (MI + TC + DWKL),
  whatever the weights."""
  output, x = make_output(3)
  recon, kl, t = parts(output, x)
  kl_form, _ = beta_tcvae().loss(output, x, hparams(alpha, beta, gamma),
                                 jnp.int32(0))
  decomposed, _ = beta_tcvae(form="decomposed").loss(
      output, x, hparams(alpha, beta, gamma), jnp.int32(0))
  np.testing.assert_allclose(
      float(kl_form), recon + kl + (alpha - 1) * t.mi + (beta - 1) * t.tc
      + (gamma - 1) * t.dwkl, rtol=1e-5)
  np.testing.assert_allclose(
      float(decomposed), recon + alpha * t.mi + beta * t.tc + gamma * t.dwkl,
      rtol=1e-5)
  np.testing.assert_allclose(float(kl_form - decomposed),
                             kl - float(t.mi + t.tc + t.dwkl), atol=1e-3)


def test_the_two_forms_agree_in_expectation():
  """Averaged over 4,000 draws of z, the 'decomposed' loss (beta 6) matches
  the 'kl' loss to 5 standard errors."""
  output, x = make_output(4)
  keys = jax.random.split(jax.random.key(0), 4000)
  kl_obj, dec_obj = beta_tcvae(), beta_tcvae(form="decomposed")
  hp = hparams(1, 6, 1)

  def difference(key):
    z = output.mean + jnp.exp(0.5 * output.logvar) * jax.random.normal(
        key, output.mean.shape)
    out = output._replace(z=z)
    return dec_obj.loss(out, x, hp, 0)[0] - kl_obj.loss(out, x, hp, 0)[0]

  diffs = np.asarray(jax.jit(jax.vmap(difference))(keys), np.float64)
  assert abs(diffs.mean()) < 5 * diffs.std() / math.sqrt(len(diffs))


def test_each_member_uses_its_own_weights():
  output, x = make_output(5)
  objective = beta_tcvae(alpha=(1.0, 2.0), beta=(1.0, 4.0))
  assert objective.hyperparameters == {"alpha": (1.0, 2.0),
                                       "beta": (1.0, 4.0), "gamma": (1.0,)}
  grid = {"alpha": jnp.array([1.0, 2.0, 1.0]),
          "beta": jnp.array([1.0, 1.0, 4.0]), "gamma": jnp.ones(3)}
  losses, _ = jax.vmap(objective.loss, in_axes=(None, None, 0, None))(
      output, x, grid, jnp.int32(0))
  recon, kl, t = parts(output, x)
  np.testing.assert_allclose(
      losses, [recon + kl, recon + kl + t.mi, recon + kl + 3 * t.tc],
      rtol=1e-5)


# ------------------------------------------------------------- the configs

@pytest.mark.parametrize("module", [beta_tcvae_experiment, deft_tc_experiment])
@pytest.mark.parametrize("preset", ["paper", "cpu", "tiny"])
def test_configs_build(module, preset):
  exp = build(module.get_config(preset))
  assert exp.method == "beta_tcvae"
  grid = exp.objective.hyperparameters
  if module is beta_tcvae_experiment:
    assert grid["alpha"] == (1.0,) and grid["gamma"] == (1.0,)
    if preset == "paper":
      assert grid["beta"] == (1.0, 2.0, 4.0, 6.0, 8.0, 10.0)
      assert len(exp.members) == 300
  else:  # DEFT(TC): alpha on MI, beta 8 on TC, 1 on DWKL
    assert grid["beta"] == (8.0,) and grid["gamma"] == (1.0,)
    assert len(grid["alpha"]) > 1


def test_deft_tc_config_is_eq_7():
  """The DEFT(TC) config's loss with (alpha, 8, 1) is, in the 'decomposed'
  form, recon + alpha MI + 8 TC + DWKL (DEFT arXiv eq. 7)."""
  section = dict(deft_tc_experiment.get_config("tiny").objective)
  section["form"] = "decomposed"
  objective = make_objective(section, dataset_size=N_DSPRITES)
  output, x = make_output(6)
  recon, _, t = parts(output, x)
  loss, _ = objective.loss(output, x, hparams(4.0, 8.0, 1.0), jnp.int32(0))
  np.testing.assert_allclose(float(loss),
                             recon + 4 * t.mi + 8 * t.tc + t.dwkl, rtol=1e-5)


def test_mss_builds_from_a_config_section_with_the_dataset_size():
  objective = make_objective({"name": "beta_tcvae", "estimator": "mss",
                              "beta": (1.0, 6.0)}, dataset_size=N_DSPRITES)
  output, x = make_output(7)
  _, metrics = objective.loss(output, x, hparams(1, 6, 1), jnp.int32(0))
  t = decompose(output.z, output.mean, output.logvar, "mss", N_DSPRITES)
  np.testing.assert_allclose(metrics["tc"], t.tc, rtol=1e-6)
  assert "dataset_size" in OBJECTIVES.allowed_keys("beta_tcvae")


# --------------------------------------------------------- bad arguments

@pytest.mark.parametrize("kwargs, message", [
    ({"estimator": "kde"}, r"estimator='kde'.*allowed.*mws.*mss"),
    ({"estimator": "mss"}, r"'mss'.*dataset size.*dataset_size=None"),
    ({"estimator": "mss", "dataset_size": 0}, r"dataset_size=0"),
    ({"alpha": -1.0}, r"alpha=\(-1.0,\).*\[-1.0\].*>= 0"),
    ({"beta": (1.0, -2.0)}, r"beta=\(1.0, -2.0\).*\[-2.0\].*>= 0"),
    ({"gamma": -0.5}, r"gamma.*\[-0.5\].*>= 0"),
    ({"beta": ()}, r"beta is empty"),
    ({"beta": math.nan}, r"beta"),
    ({"form": "elbo"}, r"form='elbo'.*kl.*decomposed"),
    ({"reconstruction": "l1"}, r"reconstruction='l1'")])
def test_rejects_bad_arguments(kwargs, message):
  with pytest.raises(ValueError, match=message):
    beta_tcvae(**kwargs)


def test_config_may_not_set_the_dataset_size_or_unknown_keys():
  with pytest.raises(ValueError, match=r"unknown key\(s\) \['dataset_size'\]"):
    make_objective({"name": "beta_tcvae", "dataset_size": 5},
                   dataset_size=N_DSPRITES)
  with pytest.raises(ValueError, match=r"unknown key\(s\) \['betta'\]"):
    make_objective({"name": "beta_tcvae", "betta": 5.0},
                   dataset_size=N_DSPRITES)


# ---------------------------------------------------------------- training

def test_tiny_run_reduces_the_loss_of_every_member(tmp_path):
  """tiny preset (16px, batch 8, beta {1, 4} x 2 seeds), 50 steps, lr 1e-3;
  every member's loss falls and every term is logged per member."""
  config = beta_tcvae_experiment.get_config("tiny")
  _, lines = short_run(config, tmp_path, 50, steps_per_chunk=10)
  assert [line["step"] for line in lines] == [10, 20, 30, 40, 50]
  for name in ("loss", "recon", "kl", "mi", "tc", "dwkl"):
    assert all(len(line[name]) == 4 for line in lines), name
  first, last = np.array(lines[0]["loss"]), np.array(lines[-1]["loss"])
  assert np.all(last < 0.5 * first), (first, last)
