"""DEFT: the fractional encoder, the stage gate (gradient scaling, future
groups at zero), the stage schedule as data (no recompilation), the
authors' fork's frozen sub-encoders with their learnable projection, and
its config validation."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from disentax.experiment import build, make_members
from disentax.models import make_model
from disentax.models.conv import FractionalEncoder, LiteEncoder
from disentax.objectives import make_objective
from disentax.objectives.deft import deft_gate, fork_gate, stage_boundaries
from disentax.reporting.tables import format_hparams
from disentax.training import train_state, trainer
from tests.conftest import tiny_config

SHAPE = (16, 16, 1)
GROUPS, PER_GROUP = 3, 2


def images(seed, n=4):
  return jax.random.bernoulli(jax.random.key(seed), 0.3,
                              (n, *SHAPE)).astype(jnp.float32)


@functools.lru_cache
def fractional_vae():
  model = make_model({"name": "conv_vae", "encoder": "fractional",
                      "num_groups": GROUPS,
                      "num_latents": GROUPS * PER_GROUP}, SHAPE)
  params = model.init(jax.random.key(0), images(0), jax.random.key(1))
  return model, params["params"]


def deft_objective(**options):
  section = {"name": "deft", "pressures": (50.0, 20.0, 1.0),
             "stage_steps": 10, **options}
  return make_objective(section, dataset_size=100,
                        num_latents=GROUPS * PER_GROUP)


@functools.lru_cache
def gradient_fn(scaled: bool):
  """(params, hparams, step, x) -> (grads, output) of DEFT around beta-VAE,
  with the stage gate's gradient scaling (scaled) or without it; compiled
  once, gamma and step are traced."""
  model, _ = fractional_vae()
  objective = deft_objective()

  def grads(params, hparams, step, x):
    gate = objective.control.for_step(hparams, step, None)
    if not scaled:
      gate = gate._replace(grad_scale=jnp.ones_like(gate.grad_scale))

    def loss(p):
      output = model.apply({"params": p}, x, jax.random.key(3), gate)
      return objective.loss(output, x, hparams, step)[0], output
    return jax.grad(loss, has_aux=True)(params)
  return jax.jit(grads)


def stage_1_hparams(gamma):
  return {"pressures": jnp.array([50.0, 20.0, 1.0]),
          "gamma": jnp.float32(gamma)}


def test_fractional_encoder_equals_separate_sub_encoders_in_a_loop():
  x = images(1)
  encoder = FractionalEncoder(GROUPS * PER_GROUP, GROUPS)
  params = encoder.init(jax.random.key(2), x)["params"]
  mean, logvar = encoder.apply({"params": params}, x)
  looped_means, looped_logvars = [], []
  for g in range(GROUPS):  # group g's slice of every stacked parameter
    group_params = jax.tree.map(lambda p, g=g: p[g], params["groups"])
    m, lv = LiteEncoder(PER_GROUP, (4, 4, 4, 4)).apply(
        {"params": group_params}, x)
    looped_means.append(m)
    looped_logvars.append(lv)
  np.testing.assert_allclose(mean, jnp.concatenate(looped_means, 1),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(logvar, jnp.concatenate(looped_logvars, 1),
                             rtol=1e-5, atol=1e-6)
  # The lite architecture of DEFT journal Table 1, once per group.
  kernels = [params["groups"][f"Conv_{i}"]["kernel"].shape for i in range(4)]
  assert kernels == [(GROUPS, 4, 4, 1, 8), (GROUPS, 4, 4, 8, 8),
                     (GROUPS, 4, 4, 8, 16), (GROUPS, 4, 4, 16, 16)]
  assert params["groups"]["Dense_0"]["kernel"].shape[-1] == 64


@pytest.mark.parametrize("gamma", [0.5, 0.1])
def test_old_groups_get_gamma_times_the_gradient_future_groups_none(gamma):
  _, params = fractional_vae()
  objective = deft_objective(gamma=gamma)
  hparams = stage_1_hparams(gamma)
  x, step = images(4), jnp.int32(13)  # stage 1: group 0 old, group 2 future
  grads, output = gradient_fn(True)(params, hparams, step, x)
  unscaled, _ = gradient_fn(False)(params, hparams, step, x)
  for name, g in jax.tree_util.tree_leaves_with_path(
      grads["encoder"]["groups"]):
    u = jax.tree_util.tree_leaves(
        jax.tree_util.tree_map_with_path(
            lambda p, v, path=name: v if p == path else None,
            unscaled["encoder"]["groups"]))[0]
    # gamma x for the old group: bit-exact for gamma 0.5 (a power of two),
    # to float32 rounding of the backward pass's sums for 0.1.
    if gamma == 0.5:
      np.testing.assert_array_equal(g[0], gamma * u[0])
    else:
      np.testing.assert_allclose(g[0], gamma * u[0], rtol=1e-5,
                                 atol=1e-6 * np.abs(gamma * u[0]).max())
    np.testing.assert_array_equal(g[1], u[1])       # the active group
    np.testing.assert_array_equal(g[2], 0.0)        # not reached yet
    assert np.abs(u[0]).max() > 0
  jax.tree.map(np.testing.assert_array_equal, grads["decoder"],
               unscaled["decoder"])
  # The future group outputs zeros: mean, log-variance and z.
  for value in (output.mean, output.logvar, output.z):
    np.testing.assert_array_equal(value[:, 2 * PER_GROUP:], 0.0)
    assert np.abs(value[:, :2 * PER_GROUP]).max() > 0
  # The stage's pressure is the base beta-VAE's beta.
  _, metrics = objective.loss(output, x, hparams, step)
  assert float(metrics["pressure"]) == 20.0 and float(metrics["stage"]) == 1


def test_gate_per_stage():
  for stage, keep, scale in [
      (0, [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]),
      (1, [1, 1, 1, 1, 0, 0], [.1, .1, 1, 1, 1, 1]),
      (2, [1, 1, 1, 1, 1, 1], [.1, .1, .1, .1, 1, 1])]:
    gate = deft_gate(jnp.int32(stage), 0.1, 6, 3)
    np.testing.assert_array_equal(gate.keep, keep)
    np.testing.assert_allclose(gate.grad_scale, scale)


def test_stage_boundaries():
  assert stage_boundaries(15_000, 4) == (15_000, 30_000, 45_000)
  assert stage_boundaries((5760, 5760, 11520, 43200), 4) == (5760, 11520,
                                                             23040)
  assert stage_boundaries((100, 200), 3) == (100, 300)
  with pytest.raises(ValueError, match="one length per stage"):
    stage_boundaries((1, 2, 3, 4, 5), 4)
  with pytest.raises(ValueError, match=r"length\(s\) \[0\]"):
    stage_boundaries(0, 2)


@pytest.mark.parametrize("loop", ["host", "scan"])
def test_stages_switch_inside_one_compiled_program(loop):
  """Stage = data: after the first chunk (stage 0) has compiled, the chunks
  that cross into stage 1 and run in it compile nothing, and the stage and
  pressure switch exactly at the configured step."""
  config = tiny_config()
  config.model.encoder, config.model.num_groups = "fractional", 2
  config.model.num_latents = 4
  config.objective = {"name": "deft", "pressures": ((8.0, 1.0), (4.0, 2.0)),
                      "stage_steps": 4, "gamma": (0.1,)}
  config.num_seeds = 1
  config.train.loop, config.train.member_execution = loop, "vmap"
  exp = build(config)
  chunk = trainer.make_train_chunk(exp)
  state = train_state.init_state(exp)
  hparams = {k: jnp.asarray(v) for k, v in exp.members.hparams.items()}
  compiles = []

  def on_event(event, duration, **kwargs):
    if event == "/jax/core/compile/backend_compile_duration":
      compiles.append(event)
  jax.monitoring.register_event_duration_secs_listener(on_event)
  try:
    seen = []
    for _ in range(4):  # steps 0-1, 2-3 (stage 0); 4-5, 6-7 (stage 1)
      state, metrics = chunk(state, hparams, exp.members.keys(), 2)
      seen.append((len(compiles), metrics["stage"].tolist(),
                   metrics["pressure"].tolist()))
  finally:
    jax.monitoring.unregister_event_duration_listener(on_event)
  assert [s[0] for s in seen[1:]] == [seen[0][0]] * 3  # no new compilation
  assert [s[1:] for s in seen] == [
      ([0, 0], [8, 4]), ([0, 0], [8, 4]), ([1, 1], [1, 2]), ([1, 1], [1, 2])]


def test_sequence_hyperparameters_are_members():
  objective = deft_objective(pressures=((50, 20, 1), (40, 10, 1)),
                             gamma=(0.0, 0.1))
  members = make_members(objective.hyperparameters, first_seed=0, num_seeds=2)
  assert members.hparams["pressures"].shape == (8, 3)
  table = members.table()
  assert table[0]["hparams"] == {"gamma": 0.0, "pressures": [50, 20, 1]}
  assert table[-1]["hparams"]["pressures"] == [40, 10, 1]
  assert format_hparams(table[-1]["hparams"]) == (
      "gamma=0.1, pressures=40/10/1")


@pytest.mark.parametrize("options, match", [
    ({"gamma": 1.5}, r"gamma=\(1.5,\); must be in \[0, 1\]"),
    ({"pressures": (50.0, 1.0, 1.0, 1.0)}, "4 stages .* do not divide"),
    ({"pressures": ((5.0, 1.0, 1.0), (5.0, 1.0))}, "of one length"),
    ({"pressures": (5.0, -1.0, 1.0)}, r"\[-1.0\] not allowed"),
    ({"base": "devae", "base_options": {"betas": (1.0,)}},
     "'devae': DEFT wraps a plain objective, but 'devae' has its own "
     "control"),
    ({"base": "annealing_test"},
     "but 'annealing_test' has its own batch_sampler"),
    ({"base": "deft", "staged": "gamma",
      "base_options": {"pressures": (2.0, 1.0, 1.0)}},
     "but 'deft' has its own control"),
    ({"staged": "alpha"}, "objective 'beta_vae' has no such hyperparameter"),
    ({"base_options": {"beta": 3.0}}, "sets 'beta', the staged pressure"),
    ({"base_options": {"betta": 3.0}}, r"base_options: unknown key"),
])
def test_bad_deft_settings_fail_before_anything_runs(options, match):
  with pytest.raises(ValueError, match=match):
    deft_objective(**options)


def test_fractional_model_settings_are_checked():
  config = tiny_config()
  config.model.encoder, config.model.num_groups = "fractional", 3
  config.model.num_latents = 10
  with pytest.raises(ValueError, match="num_latents=10 is not a multiple of "
                     "num_groups=3"):
    build(config)
  config.model.encoder = "standard"
  with pytest.raises(ValueError, match="num_groups=3 needs encoder="):
    build(config)


def test_gradient_scaling_refuses_sub_encoders_cut_by_stages():
  # 20 latents, 5 sub-encoders of 4, 4 stages of 5: stage 0 would keep
  # latents 0-4, a sub-encoder and a quarter.
  with pytest.raises(ValueError, match="5 sub-encoders .* do not split "
                     "into 4 stages .* a multiple of 4"):
    make_objective({"name": "deft", "pressures": (50.0, 20.0, 5.0, 1.0)},
                   dataset_size=100, num_latents=20, encoder_groups=5)
  # Whole sub-encoders per stage (8 of 2 latents, 4 stages) are fine.
  objective = make_objective({"name": "deft",
                              "pressures": (50.0, 20.0, 5.0, 1.0)},
                             dataset_size=100, num_latents=16,
                             encoder_groups=8)
  assert objective.name == "deft"


def test_deft_tc_stages_the_mutual_information_weight():
  objective = make_objective(
      {"name": "deft", "base": "beta_tcvae", "staged": "alpha",
       "pressures": (30.0, 1.0), "base_options": {"beta": 8.0}},
      dataset_size=100, num_latents=4)
  assert objective.name == "deft_beta_tcvae"
  assert set(objective.hyperparameters) == {"beta", "gamma", "pressures"}
  assert objective.hyperparameters["beta"] == (8.0,)


def test_update_scaling_gives_old_groups_gamma_times_the_adam_update():
  """scaling='update' (the journal's stages, old encoders at gamma x the
  learning rate as the arXiv paper says): one Adam step from the same state moves group 0 (old at
  stage 1) by exactly gamma x what 'gradient' scaling with gamma 1 moves
  it, the others and the decoder identically; under 'gradient' scaling the
  first Adam step of a fresh optimiser is scale-free, so gamma would not
  show at all."""
  import optax
  _, params = fractional_vae()
  x, step, gamma = images(5), jnp.int32(13), 0.25
  hparams = stage_1_hparams(gamma)
  adam = optax.adam(1e-3)

  def adam_step(grads):
    return adam.update(grads, adam.init(params), params)[0]

  by_update_objective = make_objective(
      {"name": "deft", "pressures": (50.0, 20.0, 1.0), "stage_steps": 10,
       "scaling": "update"}, dataset_size=100,
      num_latents=GROUPS * PER_GROUP, encoder_groups=GROUPS)
  # 'update' mode's gate scales no gradient: the unscaled gradients.
  assert np.all(by_update_objective.control.for_step(
      hparams, step, None).grad_scale == 1.0)
  unscaled = adam_step(gradient_fn(False)(params, hparams, step, x)[0])
  model, _ = fractional_vae()
  by_update = by_update_objective.update_transform(unscaled, hparams, step,
                                                  model)
  by_gradient = adam_step(gradient_fn(True)(params, hparams, step, x)[0])
  for u, ref, g in zip(jax.tree.leaves(by_update["encoder"]["groups"]),
                       jax.tree.leaves(unscaled["encoder"]["groups"]),
                       jax.tree.leaves(by_gradient["encoder"]["groups"])):
    np.testing.assert_array_equal(u[0], gamma * ref[0])
    np.testing.assert_array_equal(u[1:], ref[1:])
    # Adam divides gamma out again (up to eps): not 0.25 x, but ~1 x.
    ratio = np.linalg.norm(g[0]) / np.linalg.norm(ref[0])
    assert 0.95 < ratio <= 1.0, ratio
  jax.tree.map(np.testing.assert_array_equal, by_update["decoder"],
               unscaled["decoder"])


def test_arxiv_algorithm1_scales_every_inactive_sub_encoder_and_gates_none():
  """arXiv Algorithm 1 as printed: all groups feed the decoder from step 0,
  and in stage j every sub-encoder i != j (older and newer) moves by gamma
  x its update; sub-encoder j and the decoder by 1 x."""
  model, params = fractional_vae()
  objective = make_objective(
      {"name": "deft", "pressures": (50.0, 20.0, 1.0), "stage_steps": 10,
       "scaling": "arxiv_algorithm1"}, dataset_size=100,
      num_latents=GROUPS * PER_GROUP, encoder_groups=GROUPS)
  hparams, gamma = stage_1_hparams(0.25), 0.25
  for step in (0, 13, 25):
    gate = objective.control.for_step(hparams, jnp.int32(step), None)
    np.testing.assert_array_equal(gate.keep, 1.0)
    np.testing.assert_array_equal(gate.grad_scale, 1.0)
  updates = jax.tree.map(jnp.ones_like, params)
  scaled = objective.update_transform(updates, hparams, jnp.int32(13), model)
  for leaf in jax.tree.leaves(scaled["encoder"]["groups"]):
    np.testing.assert_array_equal(leaf[0], gamma)  # older
    np.testing.assert_array_equal(leaf[1], 1.0)    # active (stage 1)
    np.testing.assert_array_equal(leaf[2], gamma)  # newer
  jax.tree.map(np.testing.assert_array_equal, scaled["decoder"],
               updates["decoder"])


def test_update_scaling_needs_the_fractional_encoder():
  with pytest.raises(ValueError, match="scaling='update' scales the "
                     "fractional encoder"):
    make_objective({"name": "deft", "pressures": (5.0, 1.0),
                    "scaling": "update"}, dataset_size=10, num_latents=4,
                   encoder_groups=None)


def test_update_scaling_in_training_freezes_old_groups_at_gamma_0():
  """Through the member step (which hands the objective the model): with
  scaling='update' and gamma 0, once stage 1 begins group 0's parameters
  stop moving, while group 1 and the decoder keep learning."""
  config = tiny_config()
  config.model.encoder, config.model.num_groups = "fractional", 2
  config.model.num_latents = 4
  config.objective = {"name": "deft", "pressures": (4.0, 1.0),
                      "stage_steps": 2, "gamma": 0.0, "scaling": "update"}
  config.num_seeds = 1
  config.train.member_execution = "vmap"
  exp = build(config)
  chunk = trainer.make_train_chunk(exp)
  hparams = {k: jnp.asarray(v) for k, v in exp.members.hparams.items()}
  state = train_state.init_state(exp)
  state, _ = chunk(state, hparams, exp.members.keys(), 2)  # stage 0
  before = jax.tree.map(np.array, state.params)  # the chunk donates state
  state, metrics = chunk(state, hparams, exp.members.keys(), 2)  # stage 1
  assert metrics["stage"].tolist() == [1]
  after = jax.tree.map(np.asarray, state.params)

  def moved(group):  # per leaf: did member 0's slice of `group` change?
    return jax.tree.leaves(jax.tree.map(
        lambda a, b: bool(np.any(a[0, group] != b[0, group])),
        before["encoder"]["groups"], after["encoder"]["groups"]))
  assert not any(moved(0)) and all(moved(1))
  assert all(jax.tree.leaves(jax.tree.map(
      lambda a, b: bool(np.any(a != b)), before["decoder"], after["decoder"])))


# The DEFT authors' fork after 2022-08-17 (scaling='fork_frozen_projection').

FORK = "fork_frozen_projection"


@functools.lru_cache
def projected_vae(form):
  """The fractional VAE of `fractional_vae` with the fork's projection: the
  same encoder and decoder parameters, W1 and W2 set to known values."""
  model = make_model({"name": "conv_vae", "encoder": "fractional",
                      "num_groups": GROUPS, "num_latents": GROUPS * PER_GROUP,
                      "latent_projection": form}, SHAPE)
  _, plain = fractional_vae()
  params = model.init(jax.random.key(0), images(0), jax.random.key(1))
  params = params["params"]
  assert jax.tree.map(jnp.shape, {k: params[k] for k in plain}) == (
      jax.tree.map(jnp.shape, plain))
  w2 = "logvar_shift" if form == "logvar_shift" else "logvar_log_scale"
  assert set(params["projection"]) == {"mean_log_scale", w2}
  for leaf in params["projection"].values():  # the identity at first
    np.testing.assert_array_equal(leaf, np.zeros(GROUPS * PER_GROUP))
  known = {"mean_log_scale": jnp.linspace(-0.5, 0.75, GROUPS * PER_GROUP),
           w2: jnp.linspace(0.3, -0.6, GROUPS * PER_GROUP)}
  return model, {**plain, "projection": known}, w2


def fork_objective(**options):
  return make_objective(
      {"name": "deft", "pressures": (50.0, 20.0, 1.0), "stage_steps": 10,
       "scaling": FORK, **options}, dataset_size=100,
      num_latents=GROUPS * PER_GROUP, encoder_groups=GROUPS,
      latent_projection="logvar_shift")


def test_fork_gate_per_stage_and_the_2023_config_mapping():
  for stage, keep, project in [(0, [1, 1, 0, 0, 0, 0], [0] * 6),
                               (1, [1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]),
                               (2, [1] * 6, [1, 1, 1, 1, 0, 0])]:
    gate = fork_gate(jnp.int32(stage), 6, 3)
    np.testing.assert_array_equal(gate.keep, keep)
    np.testing.assert_array_equal(gate.project, project)
    np.testing.assert_array_equal(gate.grad_scale, 1.0)
  # The fork's 2023 dSprites config: 10 latents in 5 sub-encoders of 2, 4
  # pressures; stage = min(step // 100000, 3), so sub-encoder 4 never opens.
  objective = make_objective(
      {"name": "deft", "pressures": (70.0, 30.0, 12.0, 1.0),
       "stage_steps": 100_000, "scaling": FORK}, dataset_size=100,
      num_latents=10, encoder_groups=5, latent_projection="logvar_shift")
  assert set(objective.hyperparameters) == {"pressures"}  # no gamma
  hparams = {"pressures": jnp.array([70.0, 30.0, 12.0, 1.0])}
  for step, keep, project in [
      (99_999, [1] * 2 + [0] * 8, [0] * 10),
      (100_000, [1] * 4 + [0] * 6, [1] * 2 + [0] * 8),
      (300_000, [1] * 8 + [0] * 2, [1] * 6 + [0] * 4),
      (10_000_000, [1] * 8 + [0] * 2, [1] * 6 + [0] * 4)]:
    gate = objective.control.for_step(hparams, jnp.int32(step), None)
    np.testing.assert_array_equal(gate.keep, keep)
    np.testing.assert_array_equal(gate.project, project)
  # More pressures than sub-encoders: from stage G on all are frozen.
  objective = make_objective(
      {"name": "deft", "pressures": (5.0, 2.0, 1.0), "stage_steps": 10,
       "scaling": FORK}, dataset_size=100, num_latents=4, encoder_groups=2,
      latent_projection="logvar_scale")
  gate = objective.control.for_step({"pressures": jnp.array([5.0, 2, 1])},
                                    jnp.int32(25), None)
  np.testing.assert_array_equal(gate.keep, 1.0)
  np.testing.assert_array_equal(gate.project, 1.0)


@pytest.mark.parametrize("form", ["logvar_shift", "logvar_scale"])
def test_fork_old_groups_are_projected_frozen_outputs(form):
  """Stage 1 of 3: group 0's latents are the closed-form projection of its
  sub-encoder's outputs (mean exp(W1); log-variance + W2 or x exp(W2)) and
  send no gradient into that sub-encoder, while W1 and W2 of group 0 get
  one; group 1 is its sub-encoder's output as it is (its W1, W2 change
  nothing and get no gradient); group 2 outputs zeros."""
  model, params, w2_name = projected_vae(form)
  objective = fork_objective()
  hparams = {"pressures": jnp.array([50.0, 20.0, 1.0])}
  x, step = images(6), jnp.int32(13)
  gate = objective.control.for_step(hparams, step, None)
  raw_mean, raw_logvar = jax.jit(functools.partial(
      model.apply, method="encode"))({"params": params}, x)
  w1 = np.asarray(params["projection"]["mean_log_scale"])
  w2 = np.asarray(params["projection"][w2_name])

  def forward(p):
    return model.apply({"params": p}, x, jax.random.key(3), gate)
  output = jax.jit(forward)(params)
  old, active = slice(0, PER_GROUP), slice(PER_GROUP, 2 * PER_GROUP)
  future = slice(2 * PER_GROUP, None)
  np.testing.assert_allclose(output.mean[:, old],
                             raw_mean[:, old] * np.exp(w1[old]), rtol=1e-6)
  expected_logvar = (raw_logvar[:, old] + w2[old] if form == "logvar_shift"
                     else raw_logvar[:, old] * np.exp(w2[old]))
  np.testing.assert_allclose(output.logvar[:, old], expected_logvar,
                             rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(output.mean[:, active], raw_mean[:, active])
  np.testing.assert_array_equal(output.logvar[:, active],
                                raw_logvar[:, active])
  for value in (output.mean, output.logvar, output.z):
    np.testing.assert_array_equal(value[:, future], 0.0)
  # The active and future groups' W1, W2 do not enter the forward pass.
  moved = {**params, "projection": jax.tree.map(
      lambda w: w.at[PER_GROUP:].add(1.5), params["projection"])}
  jax.tree.map(np.testing.assert_array_equal, jax.jit(forward)(moved),
               output)

  def loss(p):
    return objective.loss(forward(p), x, hparams, step)[0]
  grads = jax.jit(jax.grad(loss))(params)
  for leaf in jax.tree.leaves(grads["encoder"]["groups"]):
    np.testing.assert_array_equal(leaf[0], 0.0)  # frozen: stop_gradient
    np.testing.assert_array_equal(leaf[2], 0.0)  # not reached yet
  assert max(np.abs(leaf[1]).max()
             for leaf in jax.tree.leaves(grads["encoder"]["groups"])) > 0
  for name in ("mean_log_scale", w2_name):
    g = np.asarray(grads["projection"][name])
    assert np.all(g[old] != 0), (name, g)
    np.testing.assert_array_equal(g[PER_GROUP:], 0.0)


def test_fork_update_transform_freezes_old_sub_encoders_only():
  """Stage 1: group 0's updates x 0, group 1 and 2's, the projection's and
  the decoder's x 1 (the projection is not an encoder group)."""
  model, params, _ = projected_vae("logvar_shift")
  objective = fork_objective()
  updates = jax.tree.map(lambda p: jnp.full(p.shape, -3.0), params)
  scaled = objective.update_transform(
      updates, {"pressures": jnp.array([50.0, 20.0, 1.0])}, jnp.int32(13),
      model)
  for leaf in jax.tree.leaves(scaled["encoder"]["groups"]):
    np.testing.assert_array_equal(leaf[0], 0.0)
    np.testing.assert_array_equal(leaf[1:], -3.0)
  for part in ("decoder", "projection"):
    jax.tree.map(np.testing.assert_array_equal, scaled[part], updates[part])


def fork_tiny_config():
  config = tiny_config()
  config.model.encoder, config.model.num_groups = "fractional", 2
  config.model.num_latents = 4
  config.model.latent_projection = "logvar_shift"
  config.objective = {"name": "deft", "pressures": (4.0, 1.0),
                      "stage_steps": 2, "scaling": FORK}
  config.num_seeds = 1
  config.train.member_execution = "vmap"
  return config


def test_fork_training_freezes_old_sub_encoders_bitwise():
  """Through the member step (Adam b1 0.9, so a zero gradient alone would
  still move them): once stage 1 begins, sub-encoder 0's parameters stay
  bitwise unchanged while sub-encoder 1, the decoder and sub-encoder 0's
  W1, W2 learn; sub-encoder 1's W1, W2 stay at 0."""
  exp = build(fork_tiny_config())
  assert exp.config.train.adam_b1 > 0
  chunk = trainer.make_train_chunk(exp)
  hparams = {k: jnp.asarray(v) for k, v in exp.members.hparams.items()}
  state = train_state.init_state(exp)
  state, metrics = chunk(state, hparams, exp.members.keys(), 2)  # stage 0
  assert metrics["stage"].tolist() == [0]
  before = jax.tree.map(np.array, state.params)  # the chunk donates state
  state, metrics = chunk(state, hparams, exp.members.keys(), 2)  # stage 1
  assert metrics["stage"].tolist() == [1]
  assert metrics["pressure"].tolist() == [1.0]
  after = jax.tree.map(np.asarray, state.params)

  def moved(tree_before, tree_after, index):
    return jax.tree.leaves(jax.tree.map(
        lambda a, b: bool(np.any(a[0, index] != b[0, index])), tree_before,
        tree_after))
  groups = before["encoder"]["groups"], after["encoder"]["groups"]
  assert not any(moved(*groups, 0)) and all(moved(*groups, 1))
  projection = before["projection"], after["projection"]
  assert all(moved(*projection, slice(0, 2)))
  for leaf in jax.tree.leaves(after["projection"]):
    np.testing.assert_array_equal(leaf[0, 2:], 0.0)
  assert all(jax.tree.leaves(jax.tree.map(
      lambda a, b: bool(np.any(a != b)), before["decoder"], after["decoder"])))


@pytest.mark.parametrize("model, options, match", [
    ({"encoder_groups": None, "latent_projection": "none"}, {},
     r"set config.model.encoder='fractional' and "
     r"config.model.latent_projection='logvar_shift'"),
    ({"encoder_groups": 3, "latent_projection": "none"}, {},
     r"freezes the fractional encoder's old sub-encoders .* set "
     r"config.model.latent_projection="),
    ({"encoder_groups": 3, "latent_projection": "logvar_shift"},
     {"gamma": 0.1}, r"gamma=0.1: scaling='fork_frozen_projection' freezes "
     "the old sub-encoders, so gamma has no role")])
def test_fork_mode_settings_are_checked(model, options, match):
  with pytest.raises(ValueError, match=match):
    make_objective({"name": "deft", "pressures": (5.0, 1.0), "scaling": FORK,
                    **options}, dataset_size=10, num_latents=6, **model)


def test_fork_presets_are_the_fork_config_and_the_journal_setting():
  from experiments import deft as deft_experiment
  exp = build(deft_experiment.get_config("reproduce_2023"))
  assert (exp.model.parameter_groups, exp.model.encoder.num_latents,
          exp.model.latent_projection) == (5, 10, "logvar_shift")
  assert exp.objective.hyperparameters == {"pressures": ((70, 30, 12, 1),)}
  assert exp.objective.stage(jnp.array(
      [99_999, 100_000, 299_999, 300_000, 399_999])).tolist() == [
          0, 1, 2, 3, 3]
  assert exp.config.train.num_steps == 400_000
  gate = exp.objective.control.for_step(
      {"pressures": jnp.array([70.0, 30.0, 12.0, 1.0])}, jnp.int32(399_999))
  np.testing.assert_array_equal(gate.keep, [1] * 8 + [0] * 2)
  journal = deft_experiment.get_config("dsprites")
  fork = deft_experiment.get_config("fork_2022")
  assert fork.objective.scaling == FORK and "gamma" not in fork.objective
  assert fork.model.latent_projection == "logvar_shift"
  del journal.objective["gamma"], fork.objective["scaling"]
  del fork.model["latent_projection"]
  assert fork.to_dict() == journal.to_dict()
