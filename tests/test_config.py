"""Bad input fails fast: before anything is compiled or written, with a
message naming the key or value and what is allowed.  Also: the config hash
identifies what a run computes, and the evaluator refuses empty workdirs."""

import hashlib
import json
import math
import os

import jax
import jax.numpy as jnp
import pytest

from disentax import checkpoint
from disentax import config as config_lib
from disentax.bench.compile import recorded_compiles
from disentax.evaluation.job import evaluate
from disentax.experiment import build
from disentax.training import trainer
from tests.conftest import run_module, tiny_config

# Programs loaded from the persistent compilation cache (tests/conftest.py)
# count too: they were compiled for this config once.
recorded_compilations = recorded_compiles


@pytest.fixture
def no_compilation(monkeypatch):
  """Fails the test if anything is jitted or compiled by XLA while it runs
  (jax.jit raises; any backend compilation, eager ops included, is
  recorded and reported)."""

  def forbidden_jit(*args, **kwargs):
    raise AssertionError("jax.jit called: the config was not rejected first")

  monkeypatch.setattr(jax, "jit", forbidden_jit)
  with recorded_compilations() as compiles:
    yield
  assert not compiles.programs, (f"{compiles.programs} XLA compilation(s) "
                                 "happened")


def with_key(config, dotted, value):
  """Adds a key that the schema does not have."""
  *parents, leaf = dotted.split(".")
  node = config
  for part in parents:
    node = node[part]
  node.unlock()
  node[leaf] = value
  return config


# ------------------------------------------------------------ unknown keys

@pytest.mark.parametrize("dotted", ["foo", "train.batchsize",
                                    "eval.threshold", "train.lr"])
def test_unknown_schema_key_lists_it_and_the_allowed_keys(dotted):
  with pytest.raises(ValueError) as error:
    build(with_key(tiny_config(), dotted, 1))
  message = str(error.value)
  assert f"unknown config key(s) ['{dotted}']" in message
  allowed = message.split("allowed:")[1]
  for key in ("num_seeds", "train.batch_size", "train.learning_rate",
              "eval.failure_threshold", "objective"):
    assert f"'{key}'" in allowed
  assert f"'{dotted}'" not in allowed


@pytest.mark.parametrize("section, key, allowed", [
    ("objective", "gamma", ["beta", "reconstruction"]),
    ("dataset", "size", ["image_size", "npz_path"]),
    ("model", "latents", ["num_latents", "encoder_kernel_sizes",
                          "kernels"]),
    ("eval.metric", "bins", ["num_points", "num_bins", "batch_size"])])
def test_unknown_component_key_lists_the_builders_keys(section, key, allowed):
  """Component sections are checked against their builder's signature."""
  with pytest.raises(ValueError) as error:
    build(with_key(tiny_config(), f"{section}.{key}", 1))
  message = str(error.value)
  assert message.startswith(f"config.{section}: unknown key(s) ['{key}']")
  for name in allowed:
    assert f"'{name}'" in message.split("allowed:")[1]


def test_model_allowed_keys_leave_out_what_disentax_sets():
  with pytest.raises(ValueError) as error:
    build(with_key(tiny_config(), "model.latents", 1))
  assert "observation_shape" not in str(error.value)


@pytest.mark.parametrize("section, kind, bad, registered", [
    ("objective", "objective", "no_such_vae", "beta_vae"),
    ("model", "model", "mlp_vae", "conv_vae"),
    ("dataset", "dataset", "no_such_dataset", "dsprites"),
    ("eval__metric", "metric", "not_a_metric", "mig")])
def test_unknown_component_name_lists_registered_names(section, kind, bad,
                                                       registered):
  config = tiny_config(**{f"{section}__name": bad})
  with pytest.raises(ValueError) as error:
    build(config)
  message = str(error.value)
  assert f"unknown {kind} '{bad}'; registered {kind}s: " in message
  assert registered in message.split("registered")[1]


# ------------------------------------------------------------ bad values

BAD_VALUES = [
    ("num_seeds", 0, "config.num_seeds=0; must be >= 1"),
    ("first_seed", -1, "config.first_seed=-1; must be >= 0"),
    ("first_seed", 2**32 - 1,
     "config.first_seed=4294967295 with config.num_seeds=2 gives seeds up to "
     "4294967296; seeds must be < 2**32 = 4294967296"),
    ("first_seed", 2**32,
     "config.first_seed=4294967296 with config.num_seeds=2 gives seeds up to "
     "4294967297; seeds must be < 2**32 = 4294967296"),
    ("eval__seed", 2**32,
     "config.eval.seed=4294967296; must be < 2**32 = 4294967296"),
    ("eval__seed", -3, "config.eval.seed=-3; must be >= 0"),
    ("train__adam_eps", 0.0, "config.train.adam_eps=0.0; must be > 0"),
    ("train__lr_decay_factor", 0.5,
     "config.train.lr_decay_factor=0.5 with config.train.lr_decay_every=0 "
     "decays nothing"),
    ("train__lr_decay_every", 100,
     "config.train.lr_decay_factor=1.0 with config.train.lr_decay_every=100 "
     "decays nothing"),
    ("train__learning_rates", (1e-3, 1e-3),
     "config.train.learning_rates: the 'learning_rate' grid [0.001, 0.001] "
     "repeats a value (as float32)"),
    ("train__batch_size", 1, "config.train.batch_size=1; must be >= 2"),
    ("train__num_steps", 0, "config.train.num_steps=0; must be >= 1"),
    ("train__keep_checkpoints", 0,
     "config.train.keep_checkpoints=0; must be >= 1"),
    ("train__learning_rate", 0.0,
     "config.train.learning_rate=0.0; must be > 0"),
    ("train__learning_rate", -1e-4,
     "config.train.learning_rate=-0.0001; must be > 0"),
    ("train__adam_b1", 1.0, "config.train.adam_b1=1.0; must be in [0, 1)"),
    ("train__adam_b2", -0.1, "config.train.adam_b2=-0.1; must be in [0, 1)"),
    ("train__checkpoint_every", 7,
     "config.train.checkpoint_every=7 must be a multiple of "
     "config.train.steps_per_chunk=5"),
    ("eval__failure_threshold", 1.0,
     "config.eval.failure_threshold=1.0; must be in (0, 1)"),
    ("train__l2_regularization", -4e-5,
     "config.train.l2_regularization=-4e-05; must be >= 0"),
    ("train__l2_regularization", math.inf,
     "config.train.l2_regularization=inf; must be a finite float"),
    ("train__reset_adam_at_stage", True,
     "config.train.reset_adam_at_stage=True: objective beta_vae does not "
     "train in stages; a fresh Adam state per stage needs an objective with "
     "stages (e.g. deft, cascade_vae_c)"),
    ("eval__checkpoint", "middle",
     "config.eval.checkpoint='middle'; allowed: ('last', 'best')"),
    ("eval__checkpoint", "best",
     "config.eval.checkpoint='best' picks each member's checkpoint by its "
     "traced 'mig' (config.eval.metric): set config.eval.trace_every > 0 and "
     "config.eval.trace.mig (got trace_every=0, trace ['mig'])"),
    ("model__std_parameterization", "exp",
     "std_parameterization='exp'; allowed: ('log_variance', 'softplus')"),
    ("eval__representations", ("sampled",),
     "config.eval.representations=('sampled',); must list 'mean' and "
     "optionally 'sampled', each once (allowed: ('mean', 'sampled'))"),
    ("eval__representations", ("mean", "median"),
     "config.eval.representations=('mean', 'median')"),
    ("eval__representations", ("mean", "mean"),
     "config.eval.representations=('mean', 'mean')"),
    ("dataset__image_size", 40, "multiple of 16 (e.g. 16, 32, 64), got 40"),
    ("dataset__image_size", 8, "multiple of 16 (e.g. 16, 32, 64), got 8"),
    ("model__num_latents", 0, "num_latents=0; must be an integer >= 1"),
    ("model__kernels", "paired",
     "kernels='paired'; allowed: ('auto', 'reference', 'fast')"),
    ("objective__beta", (0.0,),
     "config.objective.beta=(0.0,): value(s) [0.0] not allowed; "
     "must be finite and > 0"),
    ("objective__beta", (4.0, 4.0),
     "config.objective.beta: the 'beta' grid [4.0, 4.0] repeats a value (as "
     "float32)"),
    ("objective__beta", (1.0, -2.0),
     "config.objective.beta=(1.0, -2.0): value(s) [-2.0] not allowed; "
     "must be finite and > 0"),
    ("objective__reconstruction", "l2",
     "config.objective.reconstruction='l2'; allowed: ('bernoulli', "
     "'gaussian')"),
]
BAD_IDS = [f"{key}={value}" for key, value, _ in BAD_VALUES]


@pytest.mark.parametrize("key, value, message", BAD_VALUES, ids=BAD_IDS)
def test_build_rejects_bad_value(key, value, message, no_compilation):
  with pytest.raises(ValueError) as error:
    build(tiny_config(**{key: value}))
  assert message in str(error.value)


@pytest.mark.parametrize("key, value, message", BAD_VALUES, ids=BAD_IDS)
def test_train_rejects_bad_value_before_compiling_or_writing(
    key, value, message, tmp_path, no_compilation):
  workdir = tmp_path / "w"
  with pytest.raises(ValueError) as error:
    trainer.train(tiny_config(**{key: value}), str(workdir))
  assert message in str(error.value)
  assert not workdir.exists()
  assert os.listdir(tmp_path) == []


def test_train_rejects_unknown_key_before_compiling_or_writing(
    tmp_path, no_compilation):
  workdir = tmp_path / "w"
  with pytest.raises(ValueError, match=r"\['train.batchsize'\]"):
    trainer.train(with_key(tiny_config(), "train.batchsize", 8), str(workdir))
  assert not workdir.exists()


def test_the_compile_guard_itself_catches_compilation(no_compilation):
  """The guard is live: a jit in the guarded code raises..."""
  with pytest.raises(AssertionError, match="jax.jit called"):
    jax.jit(lambda x: x)(1.0)


def test_compilations_are_recorded():
  """...and an eager op never run before (a fresh shape) is recorded."""
  with recorded_compilations() as compiles:
    jnp.full((3, 7, 13), 2.0) * 2.5
  assert compiles.programs


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_learning_rate_is_rejected(value):
  with pytest.raises(ValueError, match="learning_rate"):
    build(tiny_config(train__learning_rate=value))


def test_tracing_nothing_is_refused(no_compilation):
  with pytest.raises(ValueError, match=r"config.eval.trace_every=10 with an "
                     r"empty config.eval.trace traces nothing"):
    build(tiny_config(eval__trace_every=10, eval__trace={}))


def test_bad_values_are_usage_errors(no_compilation):
  """A bad value of the config or of a component's section is a usage
  error (an entry point exits 2)."""
  from disentax.cli import UsageError
  for key, value in (("num_seeds", 0), ("model__num_latents", 0)):
    with pytest.raises(UsageError):
      build(tiny_config(**{key: value}))


def test_bad_metric_option_is_rejected_before_training():
  with pytest.raises(ValueError, match="num_bins"):
    build(tiny_config(eval__metric__num_bins=1))


# ------------------------------------------------------------ config hash

def test_config_hash_is_stable_across_equal_configs():
  first, second = tiny_config(), tiny_config()
  assert first is not second
  digest = config_lib.config_hash(first)
  assert digest == config_lib.config_hash(second)
  assert digest == config_lib.config_hash(config_lib.from_dict(
      config_lib.to_dict(first)))  # survives the JSON round trip of meta
  assert len(digest) == 12 and int(digest, 16) >= 0


@pytest.mark.parametrize("key, value", [
    ("objective__beta", (1.0, 8.0)), ("objective__beta", (4.0, 1.0)),
    ("num_seeds", 3), ("first_seed", 1), ("train__learning_rate", 1e-3),
    ("train__batch_size", 16), ("model__num_latents", 6),
    ("dataset__image_size", 32), ("train__l2_regularization", 4e-5),
    ("train__reset_adam_at_stage", True),
    ("model__std_parameterization", "softplus")])
def test_config_hash_changes_with_what_is_computed(key, value):
  assert (config_lib.config_hash(tiny_config(**{key: value}))
          != config_lib.config_hash(tiny_config()))


@pytest.mark.parametrize("key, value", [
    ("train__num_steps", 1000), ("train__checkpoint_every", 20),
    ("train__steps_per_chunk", 10), ("train__keep_checkpoints", 1),
    ("train__progress", True), ("eval__failure_threshold", 0.2),
    ("eval__checkpoint", "best"),
    ("eval__representations", ("mean", "sampled")),
    ("model__kernels", "reference"), ("model__kernels", "fast")])
def test_config_hash_ignores_bookkeeping(key, value):
  assert (config_lib.config_hash(tiny_config(**{key: value}))
          == config_lib.config_hash(tiny_config()))


def test_keys_at_their_neutral_default_leave_the_hash_as_before_they_existed():
  """A config saved before train.l2_regularization, train.reset_adam_at_stage
  and eval.checkpoint existed has the hash it had then: it loads with their
  defaults, which compute what it computed, and hashes the same."""
  saved = config_lib.to_dict(tiny_config())
  for section, key in [("train", "l2_regularization"),
                       ("train", "reset_adam_at_stage"),
                       ("eval", "checkpoint")]:
    del saved[section][key]
  before = hashlib.sha256(json.dumps(
      config_lib.identity(saved), sort_keys=True).encode()).hexdigest()[:12]
  loaded = config_lib.from_dict(saved)
  assert loaded.train.l2_regularization == 0.0
  assert loaded.train.reset_adam_at_stage is False
  assert loaded.eval.checkpoint == "last"
  assert config_lib.config_hash(loaded) == before
  assert config_lib.config_hash(tiny_config()) == before
  assert config_lib.config_hash(tiny_config(
      train__l2_regularization=1e-5)) != before


def test_identity_drops_model_kernels_and_keeps_the_model_section():
  """`model.kernels` is a bookkeeping key inside a component section: the
  identity drops it and keeps the section's other keys."""
  saved = config_lib.to_dict(tiny_config(model__kernels="fast"))
  identity = config_lib.identity(saved)
  assert "kernels" not in identity["model"]
  assert identity["model"] == {key: value for key, value in
                               saved["model"].items() if key != "kernels"}
  assert saved["model"]["kernels"] == "fast"  # the input is left as it was


@pytest.mark.parametrize("options, kernels", [
    (dict(upsampling="auto", downsampling="auto",
          fractional_formulation="auto"), "auto"),
    (dict(upsampling="transpose", downsampling="conv",
          fractional_formulation="vmap"), "reference"),
    (dict(upsampling="transpose"), "reference"),
    (dict(upsampling="paired", downsampling="paired",
          fractional_formulation="sequential"), "fast"),
    (dict(upsampling="subpixel", fractional_formulation="stacked"), "fast"),
    (dict(fractional_formulation="block_diagonal"), "fast"),
    (dict(upsampling="subpixel", downsampling="conv"), "auto"),
    (dict(upsampling="paired", downsampling="auto"), "auto")])
def test_saved_formulation_options_load_as_model_kernels(options, kernels):
  """A config saved with the per-layer formulation options loads with the
  one `model.kernels` setting, builds, and is the same run as today's
  config (so its workdir evaluates and resumes)."""
  saved = config_lib.to_dict(tiny_config())
  saved["model"].update(options)
  loaded = config_lib.from_dict(saved)
  assert loaded.model.kernels == kernels
  assert not set(options) & set(loaded.model)
  build(loaded)
  assert config_lib.config_hash(loaded) == config_lib.config_hash(
      tiny_config())
  # The resume check of a workdir saved so (raises on a different run).
  trainer._check_same_run({"config": saved},
                        {"config": config_lib.to_dict(tiny_config())}, "w")


# ------------------------------------------------------------ evaluator

def test_evaluate_empty_workdir_says_how_to_train(tmp_path):
  with pytest.raises(FileNotFoundError) as error:
    evaluate(str(tmp_path))
  message = str(error.value)
  assert str(tmp_path / "checkpoints") in message
  assert f"python -m disentax.main --config=... --workdir={tmp_path}" in message
  assert os.listdir(tmp_path) == []  # nothing written


def test_evaluate_ignores_an_unfinished_save(tmp_path):
  """A step orbax has not finished writing (its temporary directory) is not a
  checkpoint: the evaluator says there is none, and leaves it alone."""
  unfinished = tmp_path / "checkpoints" / "20.orbax-checkpoint-tmp-123"
  (unfinished / "state").mkdir(parents=True)
  (unfinished / "state" / "data").write_text("partial")
  assert checkpoint.make_manager(str(tmp_path),
                                 read_only=True).latest_step() is None
  with pytest.raises(FileNotFoundError) as error:
    evaluate(str(tmp_path))
  message = str(error.value)
  assert f"no finished checkpoint in {tmp_path / 'checkpoints'}" in message
  assert f"--workdir={tmp_path}" in message
  assert sorted(os.listdir(tmp_path)) == ["checkpoints"]
  assert os.listdir(tmp_path / "checkpoints") == [unfinished.name]
  assert (unfinished / "state" / "data").read_text() == "partial"


# ------------------------------------------------------------ CLI

def test_cli_rejects_unknown_override(tmp_path):
  workdir = tmp_path / "w"
  result = run_module("disentax.main", "--config=experiments/beta_vae.py:tiny",
                      f"--workdir={workdir}", "--config.train.nonsense=1",
                      check=False)
  assert result.returncode != 0
  assert "'nonsense'" in result.stderr  # ml_collections: no such field
  assert not workdir.exists()


def test_cli_rejects_unknown_preset(tmp_path):
  workdir = tmp_path / "w"
  result = run_module("disentax.main", "--config=experiments/beta_vae.py:nope",
                      f"--workdir={workdir}", check=False)
  assert result.returncode != 0
  assert "unknown preset 'nope'; allowed: paper, cpu, tiny" in result.stderr
  assert not workdir.exists()


def test_cli_rejects_bad_value_override(tmp_path):
  workdir = tmp_path / "w"
  result = run_module("disentax.main", "--config=experiments/beta_vae.py:tiny",
                      f"--workdir={workdir}", "--config.num_seeds=0",
                      check=False)
  assert result.returncode != 0
  assert "config.num_seeds=0; must be >= 1" in result.stderr
  assert not workdir.exists()
