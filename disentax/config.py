"""The run configuration: shared defaults, validation, identity.

Experiments in `experiments/` start from `base_config()` and fill in the
dataset, model and objective.  `validate` runs before anything is compiled or
written: unknown keys anywhere (a typo would otherwise be silently ignored)
and out-of-range values fail with a message naming the key, the value and
what is allowed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
from typing import Any

import ml_collections

from disentax.cli import UsageError

# Sections whose keys belong to the component they name (checked by its
# registered builder), not to the shared schema.
COMPONENT_SECTIONS = ("dataset", "model", "objective", "eval.metric",
                      "eval.battery", "eval.trace")

# Keys that change how a run is carried out but not what it computes; they may
# differ between a run and its resumption and are left out of the config hash
# (e.g. the execution layout, disentax/training/layouts.py, and how the final
# checkpoint is evaluated, and where the curves are shown: the `log`
# section).  The training-time trace (eval.trace_every, eval.trace) is part
# of what a run computes: its series is a result.
BOOKKEEPING_KEYS = ("train.num_steps", "train.steps_per_chunk",
                    "train.checkpoint_every", "train.keep_checkpoints",
                    "train.progress", "train.member_execution", "train.loop",
                    "train.num_devices", "eval.metric",
                    "eval.failure_threshold", "eval.seed", "eval.nmi_table",
                    "eval.battery", "eval.traversals", "eval.checkpoint",
                    "eval.representations", "model.kernels", "log")

# W&B modes `log.wandb_mode` may name (disentax.tracking.WandbWriter).
WANDB_MODES = ("online", "offline")

# Keys whose default computes what every run computed before the key
# existed: at that default they are left out of the config hash, so adding
# them changed no run's identity (a planned sweep still runs); any other
# value is part of it.
NEUTRAL_DEFAULTS = {"train.l2_regularization": 0.0,
                    "train.reset_adam_at_stage": False}

# Which checkpoint the evaluation job scores (`eval.checkpoint`): the latest,
# or per member the traced step with the best primary metric.
CHECKPOINT_SELECTIONS = ("last", "best")

# The representations config.eval.metric may score: the posterior mean
# (always; the unsuffixed score that failure is defined by) and one posterior
# sample ('sampled', dlib's other postprocessing; scores suffixed _sampled).
REPRESENTATIONS = ("mean", "sampled")

# Seeds (config.first_seed.., config.eval.seed) become uint32 keys.
SEED_LIMIT = 2**32

# Model options of saved configs that chose each layer's formulation, now all
# chosen by `model.kernels` (disentax/models/kernels): option -> the values
# that named XLA's own layers ('reference'); its other values, but 'auto',
# named faster formulations of the same function ('fast').
FORMULATION_OPTIONS = {"upsampling": ("transpose",),
                       "downsampling": ("conv",),
                       "fractional_formulation": ("vmap",)}


def base_config() -> ml_collections.ConfigDict:
  """Defaults shared by every experiment (dlib-google values where it has one)."""
  config = ml_collections.ConfigDict()
  config.dataset = ml_collections.ConfigDict({"name": "dsprites"})
  config.model = ml_collections.ConfigDict({"name": "conv_vae"})
  config.objective = ml_collections.ConfigDict({"name": "beta_vae"})
  config.num_seeds = 50
  config.first_seed = 0  # seeds are first_seed .. first_seed + num_seeds - 1

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 64
  config.train.num_steps = 300_000
  config.train.learning_rate = 1e-4
  # A learning-rate grid: when not empty it replaces learning_rate and each
  # value is its own set of members (the rate is a mapped hyperparameter,
  # like beta; decay schedules apply relative to it).
  config.train.learning_rates = ()
  config.train.adam_b1 = 0.9
  config.train.adam_b2 = 0.999
  config.train.adam_eps = 1e-8
  # Staircase decay: the learning rate is multiplied by lr_decay_factor every
  # lr_decay_every steps (0 = constant, the dlib-google setting).
  config.train.lr_decay_factor = 1.0
  config.train.lr_decay_every = 0
  # Coupled L2 weight regularisation: scale * w is added to the gradient of
  # every layer's weight matrix (Flax's `kernel`s; biases are left alone)
  # before Adam, the gradient of scale * sum(w^2) / 2 (TF's
  # l2_regularizer(scale), CascadeVAE's 4e-5).  0 = none.
  config.train.l2_regularization = 0.0
  # Start a fresh Adam state (count, moments) whenever the objective's
  # training stage changes (objectives with stages: DEFT, CascadeVAE-C),
  # as CascadeVAE's code does with one optimiser per stage.  The learning-
  # rate schedule keeps counting the global step.
  config.train.reset_adam_at_stage = False
  config.train.steps_per_chunk = 500  # steps per host round trip (lax.scan)
  # Accumulate each step's gradient over this many equal slices of the batch
  # (a loop; a slice's activations stay in a CPU's cache: ~10-15% faster at
  # 64x64 with batch 64-256, slower at 32x32; BUILD_NOTES).
  # The same gradient, noise and metrics as the whole batch up to float
  # summation order; only for objectives whose loss is a mean of
  # per-example terms (Objective.per_example_mean).
  config.train.micro_batches = 1
  config.train.checkpoint_every = 10_000
  config.train.keep_checkpoints = 3
  config.train.progress = True
  # How members share the program: 'vmap' (accelerators), 'unroll' (one
  # copy per member; several times faster on XLA:CPU) or 'sequential' (one
  # member's train step compiled once and dispatched per member; one
  # device, host loop); and how steps are looped: 'scan' (one host round
  # trip per chunk) or 'host' (one dispatch per step; XLA:CPU runs
  # convolutions inside loops ~20x slower).  Same function either way;
  # 'auto' is decided in disentax.training.layouts.resolve.
  config.train.member_execution = "auto"
  config.train.loop = "auto"
  # Devices the members are split over (disentax.sharding): 0 = all devices
  # of all processes; members are padded to a multiple of the count. Same
  # results on any count (see BUILD_NOTES for the tolerance).
  config.train.num_devices = 0

  config.eval = ml_collections.ConfigDict()
  config.eval.metric = ml_collections.ConfigDict(
      {"name": "mig", "num_points": 10_000, "num_bins": 20})
  config.eval.failure_threshold = 0.1  # DEFT papers: failure = MIG < 0.1
  config.eval.seed = 0
  config.eval.nmi_table = False  # print each group's mean NMI matrix
  # The representations eval.metric scores (REPRESENTATIONS): "mean", and
  # with "sampled" also one posterior sample per observation (noise from
  # eval.seed), under the metric's names suffixed _sampled.
  config.eval.representations = ("mean",)
  # Further metrics scored alongside eval.metric: {registered name: options}
  # (disentax.metrics; `python -m disentax.evaluate --battery=full` scores
  # every metric with dlib's defaults instead).
  config.eval.battery = ml_collections.ConfigDict()
  # Latent traversal PNGs of the best, median and worst member by eval.metric
  # (results/traversals/), DEFT journal Fig. 10.
  config.eval.traversals = True
  # Which checkpoint the evaluation job scores: 'last' (the latest), or
  # 'best' (best of run: per member, the traced step with the highest
  # eval.metric score among the steps that still have a checkpoint; needs
  # that metric in eval.trace and checkpoints at traced steps).
  config.eval.checkpoint = "last"
  # The training-time trace (disentax/evaluation/trace.py): every
  # trace_every steps (0 = off; a multiple of train.steps_per_chunk) the
  # evaluators of eval.trace, {registered name: options}, score every
  # member into WORKDIR/trace.npz (NMI and MIG over training, DEFT journal
  # Figs. 3 and 8; the annealing test's KL-vs-beta curve).
  config.eval.trace_every = 0
  config.eval.trace = ml_collections.ConfigDict(
      {"mig": {"num_points": 2_000}})

  # Where the training curves go besides WORKDIR/metrics.jsonl, the record
  # (disentax/tracking.py): TensorBoard event files in
  # WORKDIR/tensorboard/<member>/ (`tensorboard --logdir runs/`), and W&B
  # runs, one per member (`pip install 'disentax[wandb]'`), in project
  # wandb_project, mode 'online' or 'offline' (files in WORKDIR/wandb/,
  # `wandb sync` uploads them).  Every images_every steps (0 = never; a
  # multiple of train.steps_per_chunk) a few members' reconstructions and
  # latent traversals go to the same writers.
  config.log = ml_collections.ConfigDict()
  config.log.tensorboard = True
  config.log.wandb = False
  config.log.wandb_project = "disentax"
  config.log.wandb_mode = "online"
  config.log.images_every = 0
  return config


def _flat_keys(config: Any, prefix: str = "") -> set[str]:
  keys = set()
  for key, value in config.items():
    keys.add(prefix + key)
    if isinstance(value, (ml_collections.ConfigDict, dict)) and (
        prefix + key not in COMPONENT_SECTIONS):
      keys |= _flat_keys(value, f"{prefix}{key}.")
  return keys


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises UsageError (a ValueError) on unknown keys, values out of range
  and settings that would be silently ignored or mean nothing.

  Component sections (dataset, model, objective, eval.metric) are checked
  when `disentax.experiment.build` builds them, against their registered
  builder's signature and the builder's own checks.
  """
  unknown = sorted(_flat_keys(config) - _flat_keys(base_config()))
  if unknown:
    raise UsageError(f"unknown config key(s) {unknown}; allowed: "
                     f"{sorted(_flat_keys(base_config()))}")
  _require(config.num_seeds, "num_seeds", int, minimum=1)
  _require(config.first_seed, "first_seed", int, minimum=0)
  last_seed = config.first_seed + config.num_seeds - 1
  if last_seed >= SEED_LIMIT:
    raise UsageError(
        f"config.first_seed={config.first_seed} with config.num_seeds="
        f"{config.num_seeds} gives seeds up to {last_seed}; seeds must be < "
        f"2**32 = {SEED_LIMIT} (a member's key is made from its seed as a "
        f"uint32: seed {SEED_LIMIT} would train exactly what seed 0 trains)")
  train = config.train
  _require(train.batch_size, "train.batch_size", int, minimum=2)
  _require(train.num_steps, "train.num_steps", int, minimum=1)
  _require(train.steps_per_chunk, "train.steps_per_chunk", int, minimum=1)
  _require(train.micro_batches, "train.micro_batches", int, minimum=1)
  _require(train.checkpoint_every, "train.checkpoint_every", int, minimum=1)
  _require(train.keep_checkpoints, "train.keep_checkpoints", int, minimum=1)
  _require(train.learning_rate, "train.learning_rate", float, minimum=0,
           strict=True)
  for rate in train.learning_rates:
    _require(rate, "train.learning_rates", float, minimum=0, strict=True)
  _require(train.num_devices, "train.num_devices", int, minimum=0)
  _require(train.lr_decay_every, "train.lr_decay_every", int, minimum=0)
  if not 0 < train.lr_decay_factor <= 1:
    raise UsageError(f"config.train.lr_decay_factor={train.lr_decay_factor}; "
                     "must be in (0, 1]")
  _require(train.l2_regularization, "train.l2_regularization", float,
           minimum=0)
  if not isinstance(train.reset_adam_at_stage, bool):
    raise UsageError(f"config.train.reset_adam_at_stage="
                     f"{train.reset_adam_at_stage!r}; must be True or False")
  if config.eval.checkpoint not in CHECKPOINT_SELECTIONS:
    raise UsageError(f"config.eval.checkpoint={config.eval.checkpoint!r}; "
                     f"allowed: {CHECKPOINT_SELECTIONS}")
  if (train.lr_decay_factor < 1) != (train.lr_decay_every > 0):
    raise UsageError(
        f"config.train.lr_decay_factor={train.lr_decay_factor} with "
        f"config.train.lr_decay_every={train.lr_decay_every} decays nothing; "
        "a decay needs both a factor < 1 and a period > 0 (a constant rate: "
        "factor 1.0 and period 0)")
  for name in ("adam_b1", "adam_b2"):
    value = train[name]
    if not 0 <= value < 1:
      raise UsageError(f"config.train.{name}={value}; must be in [0, 1)")
  _require(train.adam_eps, "train.adam_eps", float, minimum=0, strict=True)
  _require(config.eval.seed, "eval.seed", int, minimum=0)
  if config.eval.seed >= SEED_LIMIT:
    raise UsageError(f"config.eval.seed={config.eval.seed}; must be < 2**32 "
                     f"= {SEED_LIMIT} (a uint32 key)")
  _require_between_chunks(train.checkpoint_every, "train.checkpoint_every",
                          train.steps_per_chunk, "checkpoints are taken "
                          "between chunks")
  _require(config.eval.trace_every, "eval.trace_every", int, minimum=0)
  _require_between_chunks(config.eval.trace_every, "eval.trace_every",
                          train.steps_per_chunk, "tracing runs between "
                          "chunks; 0 turns tracing off")
  trace_every = config.eval.trace_every
  if trace_every and not config.eval.trace:
    raise UsageError(
        f"config.eval.trace_every={trace_every} with an empty "
        "config.eval.trace traces nothing; name the evaluators to trace "
        "({name: options}) or set trace_every=0")
  if config.eval.checkpoint == "best":
    primary = config.eval.metric.name
    if not trace_every or primary not in config.eval.trace:
      raise UsageError(
          f"config.eval.checkpoint='best' picks each member's checkpoint by "
          f"its traced {primary!r} (config.eval.metric): set "
          f"config.eval.trace_every > 0 and config.eval.trace.{primary} (got "
          f"trace_every={trace_every}, trace {sorted(config.eval.trace)})")
    if train.checkpoint_every % trace_every:
      raise UsageError(
          f"config.eval.checkpoint='best': config.train.checkpoint_every="
          f"{train.checkpoint_every} must be a multiple of "
          f"config.eval.trace_every={trace_every}, so checkpoints fall on "
          "traced steps")
  representations = config.eval.representations
  if (not isinstance(representations, (list, tuple))
      or not all(isinstance(name, str) for name in representations)
      or "mean" not in representations
      or len(set(representations)) != len(representations)
      or not set(representations) <= set(REPRESENTATIONS)):
    raise UsageError(
        f"config.eval.representations={representations!r}; must list "
        f"'mean' and optionally 'sampled', each once (allowed: "
        f"{REPRESENTATIONS})")
  threshold = config.eval.failure_threshold
  if not 0 < threshold < 1:
    raise UsageError(f"config.eval.failure_threshold={threshold}; must be in "
                     "(0, 1)")
  _validate_log(config.log, train.steps_per_chunk)


def _validate_log(log: ml_collections.ConfigDict, steps_per_chunk: int
                  ) -> None:
  for name in ("tensorboard", "wandb"):
    if not isinstance(log[name], bool):
      raise UsageError(f"config.log.{name}={log[name]!r}; must be True or "
                       "False")
  if log.wandb_mode not in WANDB_MODES:
    raise UsageError(f"config.log.wandb_mode={log.wandb_mode!r}; allowed: "
                     f"{WANDB_MODES}")
  if not isinstance(log.wandb_project, str) or not log.wandb_project:
    raise UsageError(f"config.log.wandb_project={log.wandb_project!r}; must "
                     "be a non-empty string")
  _require(log.images_every, "log.images_every", int, minimum=0)
  _require_between_chunks(log.images_every, "log.images_every",
                          steps_per_chunk, "images are drawn between "
                          "chunks; 0 turns them off")


def _require_between_chunks(every: int, name: str, steps_per_chunk: int,
                            why: str) -> None:
  """ValueError unless config.`name` = `every` is a multiple of the chunk
  length (`why` explains, in parentheses)."""
  if every % steps_per_chunk:
    raise UsageError(
        f"config.{name}={every} must be a multiple of "
        f"config.train.steps_per_chunk={steps_per_chunk} ({why})")


def _require(value: Any, name: str, kind: type, minimum: float,
             strict: bool = False) -> None:
  ok_type = isinstance(value, (int, float) if kind is float else int)
  if not ok_type or isinstance(value, bool) or not math.isfinite(value):
    raise UsageError(f"config.{name}={value!r}; must be a finite "
                     f"{kind.__name__}")
  if value < minimum or (strict and value == minimum):
    relation = ">" if strict else ">="
    raise UsageError(f"config.{name}={value!r}; must be {relation} {minimum}")


def to_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """A JSON-ready plain dict (tuples become lists)."""
  return json.loads(config.to_json())


def config_hash(config: ml_collections.ConfigDict) -> str:
  """Short stable id of what a run computes (bookkeeping keys left out)."""
  return short_hash(identity(to_dict(config)))


def short_hash(data: Any) -> str:
  """12 hex characters identifying JSON-ready `data` (key order ignored):
  the `config_hash` of results rows."""
  return hashlib.sha256(json.dumps(data, sort_keys=True).encode()
                        ).hexdigest()[:12]


def identity(config: dict[str, Any]) -> dict[str, Any]:
  """The config with bookkeeping keys, and keys at their NEUTRAL_DEFAULTS,
  removed (what must match on resume)."""
  config = json.loads(json.dumps(config))
  for dotted in (*BOOKKEEPING_KEYS, *NEUTRAL_DEFAULTS):
    *parents, leaf = dotted.split(".")
    node = config
    for part in parents:
      node = node.get(part, {})
    if dotted not in NEUTRAL_DEFAULTS or node.get(
        leaf) == NEUTRAL_DEFAULTS[dotted]:
      node.pop(leaf, None)
  return config


def from_dict(data: dict[str, Any]) -> ml_collections.ConfigDict:
  """A saved config; schema keys added since it was written get their
  defaults (a run saved before e.g. train.num_devices existed still loads
  and resumes), and keys since renamed get their new form (`migrate`)."""
  return ml_collections.ConfigDict(with_defaults(data))


def migrate(data: dict[str, Any]) -> dict[str, Any]:
  """A saved config (plain dict) in today's schema:

  * a model section naming each layer's formulation (`upsampling`,
    `downsampling`, `fractional_formulation`) gets the one `kernels`
    setting instead (`kernels_from_formulations`);
  * `train.trace_every` / `train.trace_points` (MIG traced on that many
    points) become `eval.trace_every` and `eval.trace` = {mig: {num_points}};
  * the annealing test's `objective.threshold` is dropped: the IFP is now
    the `ifp` evaluator's read-out of a traced KL curve (its threshold an
    option there), which a run saved before has not recorded.
  """
  data = json.loads(json.dumps(data))
  if isinstance(data.get("model"), dict):
    data["model"] = kernels_from_formulations(data["model"])
  train = data.get("train", {})
  if "trace_every" in train or "trace_points" in train:
    evaluation = data.setdefault("eval", {})
    evaluation.setdefault("trace_every", train.pop("trace_every", 0))
    points = train.pop("trace_points", None)
    if points is not None:
      evaluation.setdefault("trace", {"mig": {"num_points": points}})
  objective = data.get("objective", {})
  if objective.get("name") == "annealing_test":
    objective.pop("threshold", None)
  return data


def kernels_from_formulations(model: dict[str, Any]) -> dict[str, Any]:
  """A saved model section with the FORMULATION_OPTIONS it sets replaced by
  `kernels`: 'reference' when every one it sets names XLA's own layers,
  'fast' when every one names a faster formulation, else 'auto' (all
  'auto', or a mix: a mix was never a default, and every choice computes
  the same function, so the run goes on with this backend's choice)."""
  named = {key: model[key] for key in FORMULATION_OPTIONS if key in model}
  if not named:
    return model
  model = {key: value for key, value in model.items() if key not in named}
  kinds = {"auto" if value == "auto" else
           "reference" if value in FORMULATION_OPTIONS[key] else "fast"
           for key, value in named.items()}
  model.setdefault("kernels", kinds.pop() if len(kinds) == 1 else "auto")
  return model


def with_defaults(data: dict[str, Any]) -> dict[str, Any]:
  """`data` (a plain dict), `migrate`d, with every missing schema key of
  base_config() added at its default; component sections are left as they
  are."""
  data = migrate(data)

  def fill(node: dict[str, Any], defaults: dict[str, Any],
           prefix: str = "") -> None:
    for key, default in defaults.items():
      if key not in node:
        node[key] = default
      elif (isinstance(default, dict) and isinstance(node[key], dict)
            and prefix + key not in COMPONENT_SECTIONS):
        fill(node[key], default, f"{prefix}{key}.")

  fill(data, to_dict(base_config()))
  return data


# --------------------------------------------------------------------------
# Config files: "path[:arg]", loaded as a user loads them.


def split_spec(spec: str) -> tuple[str, str | None]:
  """"path[:arg]" -> (path, arg or None)."""
  path, _, arg = spec.partition(":")
  return path, (arg or None)


_MODULES: dict[tuple[str, int, int], Any] = {}


def load_file(path: str, what: str = "config") -> Any:
  """The Python file at `path` (relative paths are read from the working
  directory) as a module, imported again only once it has changed.  Its
  own imports (e.g. `experiments.common`) resolve as Python resolves them:
  from the working directory or the installed package."""
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"{what} file {path} does not exist (relative paths are read from "
        f"the working directory, {os.getcwd()})")
  real = os.path.realpath(path)
  stat = os.stat(real)
  key = (real, stat.st_mtime_ns, stat.st_size)
  if key not in _MODULES:
    name = "_disentax_file_" + "".join(
        c if c.isalnum() else "_" for c in os.path.relpath(real, "/"))
    spec = importlib.util.spec_from_file_location(name, real)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _MODULES[key] = module
  return _MODULES[key]


def load_config(spec: str) -> ml_collections.ConfigDict:
  """The config of "path[:preset]": `get_config(preset)` of the file."""
  path, preset = split_spec(spec)
  module = load_file(path, "config")
  if not hasattr(module, "get_config"):
    raise UsageError(f"config file {path} has no get_config(preset)")
  return module.get_config(preset) if preset else module.get_config()
