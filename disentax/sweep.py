"""Sweep plans: methods x datasets x hyperparameter grid x seed chunks as jobs.

A *sweep file* is a Python module (e.g. `experiments/sweeps/tiny.py`) whose
`get_sweep(arg=None)` returns a ConfigDict (`ConfigDict(convert_dict=False)`,
so dotted keys stay keys) with
  configs    tuple of config specs "path[:preset]" (path relative to the repo
             root), loaded as `--config=` loads them: import the file, call
             `get_config(preset)`;
  datasets   tuple of dicts of dotted overrides, one per dataset
             (default `({},)`: the config's own dataset);
  grid       dict dotted key -> tuple of values; each combination of values
             is its own job (a value may itself be a tuple, e.g.
             `objective.beta` -> `((1.0,), (4.0,))`; a grid left inside the
             config is vmapped inside each job's program);
  num_seeds, seeds_per_job   seeds 0..num_seeds-1 in chunks of seeds_per_job
             (one job each; the last chunk may be smaller);
  overrides  dict of dotted overrides applied to every job (optional);
  config_overrides  dict config spec -> dotted overrides for that config's
             jobs only (optional, e.g. a data_dir only one dataset takes);
  description  one line printed when planning (optional).

`expand` turns it into jobs in a fixed order (configs, datasets, grid
combinations in sorted-key product order, seed chunks); each job has an
index, a readable unique name (its workdir under the sweep root, e.g.
`beta_vae-dsprites-beta=4-seeds_000-009`), its config spec and every
override it applies (first_seed / num_seeds included).

Usage:
  python -m disentax.sweep plan --sweep=experiments/sweeps/tiny.py[:ARG] \\
      --root=ROOT          # writes ROOT/plan.json (every job config built)
  python -m disentax.sweep run --root=ROOT [--job=K] [--distributed] \\
      [--phase=all|train|evaluate]   # K defaults to $SLURM_ARRAY_TASK_ID
  python -m disentax.sweep status --root=ROOT [--todo]
  python -m disentax.sweep merge --root=ROOT [--out=DIR] [--metric=mig] \\
      [--threshold=0.1] [--nofigures]
  python -m disentax.sweep slurm --root=ROOT [--out=FILE] [--partition=P] \\
      [--time=24:00:00] [--gpus_per_job=1] [--nodes_per_job=1] \\
      [--max_concurrent=0] [--cpus_per_task=8] [--missing_only]
and `launch/sweep_local.sh ROOT [SWEEP]` runs the plan on this machine.

Each job trains in `ROOT/<name>/` (resuming from its checkpoint) and
evaluates there, recording its state in `ROOT/<name>/job.json`: `running`
(host, pid, start time), `done`, `failed` (the error), `preempted` (the step
checkpointed after a SIGTERM; exit code 143 so the SLURM script requeues
it), `interrupted`, or `trained` (multi-node training finished, evaluation
is the next step).  `merge` collects every done job's results into
ROOT/merged/ (results.json / results.csv with a `job` column, and the
report of `disentax.report` over the same workdirs).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import importlib.util
import io
import itertools
import json
import os
import shlex
import signal
import socket
import string
import sys
import traceback
from typing import Any, Iterable, Mapping, Sequence

import ml_collections

from disentax import config as config_lib
from disentax import report, results, run_log, sharding

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLAN_NAME, JOB_NAME = "plan.json", "job.json"
LOGS_DIR, MERGED_DIR = "logs", "merged"
SLURM_TEMPLATE = os.path.join(REPO, "launch", "slurm.sbatch")
PLAN_VERSION = 1

SWEEP_FIELDS = ("configs", "datasets", "grid", "num_seeds", "seeds_per_job",
                "overrides", "config_overrides", "description")
# Keys each job sets from num_seeds / seeds_per_job.
SEED_KEYS = ("first_seed", "num_seeds")
# Config sections whose keys are checked by their component's builder (at
# `build`), so an override may add a key there; elsewhere it must exist.
OPEN_SECTIONS = ("dataset", "model", "objective", "eval.metric",
                 "eval.battery")

# What job.json records, and how `status` counts it.
RECORDED_STATES = ("running", "done", "failed", "preempted", "interrupted",
                   "trained")
STATES = ("done", "running", "failed", "missing")
PHASES = ("all", "train", "evaluate")
EXIT_PREEMPTED, EXIT_INTERRUPTED = 143, 130  # 128 + SIGTERM (= train.PREEMPTED_EXIT) / SIGINT


# --------------------------------------------------------------------------
# Loading sweep and config files.


def split_spec(spec: str) -> tuple[str, str | None]:
  """"path[:arg]" -> (path, arg or None)."""
  path, _, arg = spec.partition(":")
  return path, (arg or None)


def _resolve(path: str, cwd_first: bool = False) -> str:
  """An absolute path: relative ones are relative to the repo root (or,
  with `cwd_first`, to the working directory when the file is there)."""
  path = os.path.expanduser(path)
  if os.path.isabs(path):
    return path
  if cwd_first and os.path.exists(path):
    return os.path.abspath(path)
  return os.path.join(REPO, path)


def _repo_relative(path: str) -> str:
  """`path` relative to the repo root when it lies inside it (what plan.json
  records, so a plan does not depend on where it was made), else absolute."""
  path = os.path.abspath(path)
  relative = os.path.relpath(path, REPO)
  return path if relative.startswith(os.pardir) else relative


_MODULES: dict[tuple[str, int, int], Any] = {}


def _load_module(path: str, what: str) -> Any:
  """Imports the Python file at absolute `path` (again only once it has
  changed)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{what} file {path} does not exist")
  real = os.path.realpath(path)
  stat = os.stat(real)
  key = (real, stat.st_mtime_ns, stat.st_size)
  if key not in _MODULES:
    if REPO not in sys.path:  # experiment files import `experiments.common`
      sys.path.insert(0, REPO)
    name = "_disentax_sweep_" + "".join(
        c if c.isalnum() else "_" for c in os.path.relpath(real, "/"))
    spec = importlib.util.spec_from_file_location(name, real)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _MODULES[key] = module
  return _MODULES[key]


def load_config(spec: str) -> ml_collections.ConfigDict:
  """The config of "path[:preset]" (path relative to the repo root)."""
  path, preset = split_spec(spec)
  module = _load_module(_resolve(path), "config")
  if not hasattr(module, "get_config"):
    raise ValueError(f"config file {path} has no get_config(preset)")
  return module.get_config(preset) if preset else module.get_config()


def load_sweep(spec: str) -> ml_collections.ConfigDict:
  """The sweep of "path[:arg]": `get_sweep(arg)` of the sweep file (a path
  relative to the working directory, or else to the repo root)."""
  path, arg = split_spec(spec)
  module = _load_module(_resolve(path, cwd_first=True), "sweep")
  if not hasattr(module, "get_sweep"):
    raise ValueError(f"sweep file {path} has no get_sweep(arg)")
  return module.get_sweep(arg)


# --------------------------------------------------------------------------
# Overrides.


def _plain(value: Any) -> Any:
  """ConfigDicts and mappings as dicts, lists as tuples, recursively (the
  form configs use; JSON turns tuples into lists, this turns them back)."""
  if isinstance(value, ml_collections.ConfigDict):
    value = value.to_dict()
  if isinstance(value, Mapping):
    return {str(k): _plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return tuple(_plain(v) for v in value)
  return value


def _json_form(value: Any) -> Any:
  """`value` as it reads back from JSON (tuples as lists)."""
  return json.loads(json.dumps(value))


def _in_open_section(dotted: str) -> bool:
  return any(dotted.startswith(section + ".") for section in OPEN_SECTIONS)


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Mapping[str, Any],
                    where: str = "config") -> ml_collections.ConfigDict:
  """Sets each dotted key of `overrides` in `config` (in place; returned).

  A key must exist, except inside the component sections (dataset, model,
  objective, eval.metric, eval.battery) whose builders check their own keys
  when the config is built.

  Raises:
    ValueError: an unknown key (naming the keys allowed there) or a value of
      the wrong type.
  """
  for dotted, value in overrides.items():
    *parents, leaf = dotted.split(".")
    node = config
    for depth, part in enumerate(parents):
      child = node.get(part) if hasattr(node, "get") else None
      if not isinstance(child, (ml_collections.ConfigDict, dict)):
        section = ".".join(parents[:depth]) or "the top level"
        sections = sorted(k for k, v in node.items() if isinstance(
            v, (ml_collections.ConfigDict, dict)))
        raise ValueError(
            f"unknown config key {dotted!r} in {where}: {part!r} is not a "
            f"section of {section}; sections there: {sections}")
      node = child
    if leaf not in node and not _in_open_section(dotted):
      section = ".".join(parents) or "the top level"
      raise ValueError(
          f"unknown config key {dotted!r} in {where}; allowed in {section}: "
          f"{sorted(node)} (new keys only inside "
          f"{', '.join(OPEN_SECTIONS)}, checked by their builders)")
    try:
      node[leaf] = _plain(value)
    except (TypeError, ValueError, AttributeError) as e:
      raise ValueError(f"override {dotted}={value!r} in {where}: {e}") from None
  return config


# --------------------------------------------------------------------------
# Expanding a sweep into jobs.


@dataclasses.dataclass(frozen=True)
class Job:
  """One array task: one config, one dataset, one grid point, one seed chunk.

  `overrides` are applied to the config of `config` (a "path[:preset]"
  spec) in order; `config_hash` is `disentax.config.config_hash` of the
  result, so a run can tell when an experiment file changed after planning.
  """
  index: int
  name: str
  config: str
  overrides: dict[str, Any]
  config_hash: str

  @property
  def first_seed(self) -> int:
    return self.overrides["first_seed"]

  @property
  def num_seeds(self) -> int:
    return self.overrides["num_seeds"]

  def to_json(self) -> dict[str, Any]:
    return _json_form(dataclasses.asdict(self))

  @classmethod
  def from_json(cls, data: Mapping[str, Any]) -> "Job":
    return cls(index=int(data["index"]), name=str(data["name"]),
               config=str(data["config"]),
               overrides={k: _plain(v) for k, v in data["overrides"].items()},
               config_hash=str(data["config_hash"]))


def job_config(job: Job) -> ml_collections.ConfigDict:
  """The job's config: its config file's, with its overrides applied."""
  return apply_overrides(load_config(job.config), job.overrides,
                         where=f"job {job.index} ({job.name})")


def seed_chunks(num_seeds: int, seeds_per_job: int) -> list[tuple[int, int]]:
  """[(first_seed, num_seeds)] covering 0..num_seeds-1 in order."""
  return [(first, min(seeds_per_job, num_seeds - first))
          for first in range(0, num_seeds, seeds_per_job)]


def _positive_int(value: Any, name: str) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ValueError(f"sweep.{name}={value!r}; must be an integer >= 1")
  return value


def _mapping(value: Any, name: str) -> dict[str, Any]:
  if isinstance(value, ml_collections.ConfigDict):
    value = value.to_dict()
  if not isinstance(value, Mapping):
    raise ValueError(f"sweep.{name}={value!r}; must be a dict of dotted "
                     f"config keys to values")
  for key in value:
    if not isinstance(key, str) or not key:
      raise ValueError(f"sweep.{name} key {key!r}; must be a dotted config "
                       f"key such as 'train.num_steps'")
  return dict(value)


def _checked_sweep(sweep: Any) -> dict[str, Any]:
  """The sweep's fields as plain values, with defaults; ValueError naming
  the field, its value and what is allowed when one is bad."""
  if isinstance(sweep, ml_collections.ConfigDict):
    fields = {k: sweep[k] for k in sweep.keys()}
  elif isinstance(sweep, Mapping):
    fields = dict(sweep)
  else:
    raise ValueError(f"get_sweep returned {type(sweep).__name__}; expected a "
                     f"ConfigDict with fields {', '.join(SWEEP_FIELDS)}")
  unknown = sorted(set(fields) - set(SWEEP_FIELDS))
  if unknown:
    raise ValueError(f"unknown sweep field(s) {unknown}; allowed: "
                     f"{list(SWEEP_FIELDS)}")
  configs = fields.get("configs")
  if (isinstance(configs, str) or not isinstance(configs, (list, tuple))
      or not configs or not all(isinstance(c, str) and c for c in configs)):
    raise ValueError(f"sweep.configs={configs!r}; must be a non-empty tuple "
                     f"of config specs 'path[:preset]' such as "
                     f"'experiments/beta_vae.py:paper'")
  if len(set(configs)) != len(configs):
    raise ValueError(f"sweep.configs={tuple(configs)!r} names a config twice")
  datasets = fields.get("datasets", ({},))
  if isinstance(datasets, (str, Mapping)) or not isinstance(
      datasets, (list, tuple)) or not datasets:
    raise ValueError(f"sweep.datasets={datasets!r}; must be a non-empty tuple "
                     f"of dicts of dotted overrides (({{}},) = the config's "
                     f"own dataset)")
  datasets = [_mapping(d, f"datasets[{i}]") for i, d in enumerate(datasets)]
  grid = _mapping(fields.get("grid", {}), "grid")
  for key, values in grid.items():
    if isinstance(values, (str, Mapping)) or not isinstance(
        values, (list, tuple)) or not values:
      raise ValueError(f"sweep.grid[{key!r}]={values!r}; must be a non-empty "
                       f"tuple of values (one job per value)")
  num_seeds = _positive_int(fields.get("num_seeds"), "num_seeds")
  seeds_per_job = _positive_int(fields.get("seeds_per_job", num_seeds),
                                "seeds_per_job")
  overrides = _mapping(fields.get("overrides", {}), "overrides")
  config_overrides = _mapping(fields.get("config_overrides", {}),
                              "config_overrides")
  for spec, values in config_overrides.items():
    if spec not in configs:
      raise ValueError(f"sweep.config_overrides names {spec!r}, which is not "
                       f"in sweep.configs {tuple(configs)!r}")
    config_overrides[spec] = _mapping(values, f"config_overrides[{spec!r}]")
  description = fields.get("description", "")
  if not isinstance(description, str):
    raise ValueError(f"sweep.description={description!r}; must be a string")

  places = [("grid", grid), ("overrides", overrides)]
  places += [(f"datasets[{i}]", d) for i, d in enumerate(datasets)]
  places += [(f"config_overrides[{s!r}]", o)
             for s, o in config_overrides.items()]
  for where, values in places:
    for key, value in values.items():
      if key in SEED_KEYS:
        raise ValueError(f"sweep.{where} sets {key!r}; seeds are set by "
                         f"sweep.num_seeds and sweep.seeds_per_job")
      try:
        json.dumps(value, allow_nan=False)
      except (TypeError, ValueError) as e:
        raise ValueError(f"sweep.{where}[{key!r}]={value!r} cannot be stored "
                         f"in plan.json: {e}") from None
  # A key set in two places a job combines would depend on their order.
  groups = {"grid": set(grid), "overrides": set(overrides),
            "datasets": set().union(*datasets),
            "config_overrides": set().union(*config_overrides.values())}
  for (a, keys_a), (b, keys_b) in itertools.combinations(groups.items(), 2):
    both = sorted(keys_a & keys_b)
    if both:
      raise ValueError(f"config key {both[0]!r} is set by both sweep.{a} and "
                       f"sweep.{b}; set it in one place")
  return {"configs": tuple(configs), "datasets": datasets, "grid": grid,
          "num_seeds": num_seeds, "seeds_per_job": seeds_per_job,
          "overrides": overrides, "config_overrides": config_overrides,
          "description": description}


def _value_label(value: Any) -> str:
  """4.0 -> "4", (70.0, 30.0) -> "70_30" (for job names)."""
  if isinstance(value, (list, tuple)):
    return "_".join(_value_label(v) for v in value)
  if isinstance(value, float):
    return f"{value:g}"
  return str(value)


def _safe(text: str) -> str:
  return "".join(c if c.isalnum() or c in "._=+-" else "_" for c in text)


def _dataset_label(overrides: Mapping[str, Any],
                   config: ml_collections.ConfigDict) -> str:
  """The dataset's name, then any other dataset override as key=value."""
  parts = [str(config.dataset.name)]
  parts += [f"{k.rpartition('.')[2]}={_value_label(v)}"
            for k, v in overrides.items() if k != "dataset.name"]
  return "-".join(parts)


def expand(sweep: Any) -> list[Job]:
  """The sweep's jobs in a fixed order: configs, then datasets, then grid
  combinations (keys sorted, values in the given order), then seed chunks.

  Every config file is loaded and every job's overrides applied (so an
  unknown key fails here); nothing is built (see `validate_jobs`).

  Raises:
    ValueError: a bad sweep field (named, with what is allowed), an unknown
      config key, or two jobs with the same name.
  """
  fields = _checked_sweep(sweep)
  grid = fields["grid"]
  keys = sorted(grid)
  leaves = [k.rpartition(".")[2] for k in keys]
  labels = [leaf if leaves.count(leaf) == 1 else k
            for k, leaf in zip(keys, leaves)]
  combos = list(itertools.product(*(grid[k] for k in keys)))
  chunks = seed_chunks(fields["num_seeds"], fields["seeds_per_job"])
  width = max(3, len(str(fields["num_seeds"] - 1)))

  drafts = []  # (config position, spec, name parts, overrides, config)
  for position, spec in enumerate(fields["configs"]):
    for dataset in fields["datasets"]:
      for combo in combos:
        for first, count in chunks:
          overrides = {**dataset,
                       **fields["config_overrides"].get(spec, {}),
                       **dict(zip(keys, combo)), **fields["overrides"],
                       "first_seed": first, "num_seeds": count}
          overrides = {k: _plain(v) for k, v in overrides.items()}
          config = apply_overrides(load_config(spec), overrides,
                                   where=f"sweep config {spec}")
          parts = [_dataset_label(dataset, config)]
          parts += [f"{label}={_value_label(v)}"
                    for label, v in zip(labels, combo)]
          parts.append(f"seeds_{first:0{width}d}-{first + count - 1:0{width}d}")
          drafts.append((position, spec, parts, overrides, config))

  # The method names the config; configs sharing a method and dataset are
  # told apart by their preset (or file) name.
  def names(long: set[int]) -> list[str]:
    out = []
    for position, spec, parts, _, config in drafts:
      label = str(config.objective.name)
      if position in long:
        path, preset = split_spec(spec)
        label += "." + (preset or os.path.splitext(os.path.basename(path))[0])
      out.append(_safe("-".join([label, *parts])))
    return out

  first_names = names(set())
  seen: dict[str, int] = {}
  clashing = set()
  for i, name in enumerate(first_names):
    if name in seen:
      clashing |= {drafts[i][0], drafts[seen[name]][0]}
    seen.setdefault(name, i)
  final = names(clashing)
  if len(set(final)) != len(final):
    duplicate = next(n for n in final if final.count(n) > 1)
    raise ValueError(f"two jobs would both be named {duplicate!r}; make the "
                     f"sweep's configs, datasets or grid differ")
  return [Job(index=i, name=name, config=spec, overrides=overrides,
              config_hash=config_lib.config_hash(config))
          for i, (name, (_, spec, _, overrides, config))
          in enumerate(zip(final, drafts))]


def validate_jobs(jobs: Sequence[Job]) -> None:
  """Builds (`disentax.experiment.build`: validates, no compilation) the
  config of every distinct job, seeds aside, so a bad sweep fails before
  anything runs; errors name the job."""
  from disentax.experiment import build  # pylint: disable=g-import-not-at-top
  done = set()
  for job in jobs:
    key = (job.config, json.dumps(
        {k: v for k, v in job.overrides.items() if k != "first_seed"},
        sort_keys=True))
    if key in done:
      continue
    done.add(key)
    try:
      build(job_config(job))
    except (ValueError, TypeError, KeyError, FileNotFoundError) as e:
      raise ValueError(f"job {job.index} ({job.name}, {job.config}) does not "
                       f"build: {e}") from e


# --------------------------------------------------------------------------
# The plan file.


def plan_path(root: str) -> str:
  return os.path.join(root, PLAN_NAME)


def job_workdir(root: str, job: Job) -> str:
  return os.path.join(root, job.name)


def make_plan(sweep_spec: str) -> dict[str, Any]:
  """The plan document of a sweep spec "path[:arg]" (jobs validated)."""
  path, arg = split_spec(sweep_spec)
  sweep = load_sweep(sweep_spec)
  jobs = expand(sweep)
  validate_jobs(jobs)
  description = _checked_sweep(sweep)["description"]
  return {"version": PLAN_VERSION,
          "sweep": _repo_relative(_resolve(path, cwd_first=True)),
          "arg": arg, "description": description,
          "jobs": [job.to_json() for job in jobs]}


def _plan_changes(old: Mapping[str, Any], new: Mapping[str, Any],
                  limit: int = 8) -> list[str]:
  """Readable differences between two plan documents."""
  changes = [f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
             for key in ("version", "sweep", "arg", "description")
             if old.get(key) != new.get(key)]
  old_jobs, new_jobs = old.get("jobs", []), new.get("jobs", [])
  if len(old_jobs) != len(new_jobs):
    changes.append(f"number of jobs: {len(old_jobs)} -> {len(new_jobs)}")
  for a, b in zip(old_jobs, new_jobs):
    for key in ("name", "config", "config_hash"):
      if a.get(key) != b.get(key):
        changes.append(f"job {a.get('index')} {key}: {a.get(key)!r} -> "
                       f"{b.get(key)!r}")
    old_o, new_o = a.get("overrides", {}), b.get("overrides", {})
    for key in sorted(set(old_o) | set(new_o)):
      if old_o.get(key) != new_o.get(key):
        changes.append(f"job {a.get('index')} ({a.get('name')}) override "
                       f"{key}: {old_o.get(key, '(unset)')!r} -> "
                       f"{new_o.get(key, '(unset)')!r}")
  if len(changes) > limit:
    changes = changes[:limit] + [f"... and {len(changes) - limit} more"]
  return changes


def write_plan(sweep_spec: str, root: str) -> tuple[list[Job], bool]:
  """Plans `sweep_spec` into ROOT/plan.json; returns (jobs, whether the file
  was written).  Replanning the same sweep is a no-op.

  Raises:
    ValueError: a bad sweep, a job config that does not build, or ROOT
      holding a different plan (the message says what changed; a running
      sweep's plan is never replaced: plan into a new root instead).
  """
  plan = _json_form(make_plan(sweep_spec))
  path = plan_path(root)
  if os.path.exists(path):
    old = read_plan(root)
    if old == plan:
      return [Job.from_json(j) for j in plan["jobs"]], False
    raise ValueError(
        f"{path} holds a different plan; refusing to replace it (its jobs "
        f"may be running). Changes:\n  " + "\n  ".join(
            _plan_changes(old, plan)) +
        "\nPlan into a new --root, or delete the old plan if nothing of it "
        "ran.")
  run_log.write_json(path, plan)
  return [Job.from_json(j) for j in plan["jobs"]], True


def read_plan(root: str) -> dict[str, Any]:
  path = plan_path(root)
  plan = run_log.read_json(path, "make one with `python -m disentax.sweep "
                           f"plan --sweep=FILE --root={root}`")
  if plan.get("version") != PLAN_VERSION:
    raise ValueError(f"{path} has version {plan.get('version')!r}; this "
                     f"disentax reads version {PLAN_VERSION}")
  return plan


def load_jobs(root: str) -> list[Job]:
  """The jobs of ROOT/plan.json, in index order."""
  return [Job.from_json(j) for j in read_plan(root)["jobs"]]


# --------------------------------------------------------------------------
# Running one job.


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec="seconds")


def job_file(workdir: str) -> str:
  return os.path.join(workdir, JOB_NAME)


def read_job_file(workdir: str) -> dict[str, Any] | None:
  """WORKDIR/job.json, or None when the job never started there."""
  path = job_file(workdir)
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return json.load(f)


def _pid_alive(pid: Any) -> bool:
  try:
    os.kill(int(pid), 0)
  except ProcessLookupError:
    return False
  except (PermissionError, OSError, TypeError, ValueError):
    return True  # someone else's process, or unknown: assume alive
  return True


def planned_config(job: Job) -> ml_collections.ConfigDict:
  """`job_config(job)`, checked against the hash recorded when planning.

  Raises:
    ValueError: the config differs from the planned one (its experiment
      file changed after planning; resuming would mix two configs).
  """
  config = job_config(job)
  found = config_lib.config_hash(config)
  if found != job.config_hash:
    raise ValueError(
        f"the config of job {job.index} ({job.config} with its overrides) has "
        f"hash {found}, but the plan was made with {job.config_hash}: its "
        f"experiment file changed after planning; restore it, or plan the "
        f"sweep into a new root")
  return config


class _Terminated(Exception):
  """SIGTERM during evaluation (a preemption or the time limit)."""


def _job_index(job: int | None, num_jobs: int) -> int:
  if job is None:
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    if task is None:
      raise ValueError("no --job given and $SLURM_ARRAY_TASK_ID is not set")
    try:
      job = int(task)
    except ValueError:
      raise ValueError(f"$SLURM_ARRAY_TASK_ID={task!r} is not an "
                       f"integer") from None
  if not 0 <= job < num_jobs:
    raise ValueError(f"job {job} is not in the plan; allowed: "
                     f"0..{num_jobs - 1}")
  return job


def run_job(root: str, job: int | None = None, *, distributed: bool = False,
            phase: str = "all") -> int:
  """Runs job `job` (default: $SLURM_ARRAY_TASK_ID) of ROOT's plan: trains
  it in ROOT/<name> (resuming from its checkpoint) and, with `phase` all
  and one process, evaluates it; records its state in job.json.  Returns
  the exit code: 0 done (or already done), 1 failed, 143 preempted (the
  state was checkpointed; rerunning resumes), 130 interrupted.

  `phase` train (several processes, `distributed`: `jax.distributed.
  initialize()` first, auto-detecting SLURM) ends in state `trained`;
  `phase` evaluate (one process) then evaluates and ends in `done`.
  Only process 0 writes job.json.
  """
  if phase not in PHASES:
    raise ValueError(f"phase={phase!r}; allowed: {PHASES}")
  jobs = load_jobs(root)
  the_job = jobs[_job_index(job, len(jobs))]
  workdir = job_workdir(root, the_job)
  previous = read_job_file(workdir) or {}
  host = socket.gethostname()
  if previous.get("state") == "done":
    print(f"job {the_job.index} ({the_job.name}) is already done", flush=True)
    return 0
  if (previous.get("state") == "running" and previous.get("host") == host
      and previous.get("pid") != os.getpid() and _pid_alive(
          previous.get("pid"))):
    raise ValueError(f"job {the_job.index} ({the_job.name}) is already "
                     f"running here as pid {previous.get('pid')}")
  if phase == "evaluate" and previous.get("state") != "trained":
    raise ValueError(f"job {the_job.index} ({the_job.name}) is "
                     f"{previous.get('state', 'not started')}, not trained; "
                     f"--phase=evaluate follows a finished --phase=train")

  import jax  # pylint: disable=g-import-not-at-top
  if distributed:  # before anything touches the devices
    sharding.initialize_distributed()  # auto-detects the SLURM job step
  writer = sharding.is_writer()
  single = sharding.is_single_process()
  if phase == "evaluate" and not single:
    raise ValueError("--phase=evaluate runs in one process; launch it with "
                     "one task (srun --ntasks=1)")
  if phase == "all" and not single:
    raise ValueError(f"{jax.process_count()} processes: run --phase=train "
                     f"here, then --phase=evaluate as one task")

  record = {"job": the_job.index, "name": the_job.name, "phase": phase,
            "host": host, "pid": os.getpid(), "processes": jax.process_count(),
            "started": _now(), "attempt": int(previous.get("attempt", 0)) + 1}

  def write_state(state: str, **extra: Any) -> None:
    if writer:
      run_log.write_json(job_file(workdir), {**record, "state": state,
                                             **extra})

  from disentax import evaluate, train  # pylint: disable=g-import-not-at-top
  write_state("running")
  last_seed = the_job.first_seed + the_job.num_seeds - 1
  print(f"job {the_job.index}/{len(jobs)}: {the_job.name} ({the_job.config}, "
        f"seeds {the_job.first_seed}..{last_seed}) in {workdir}", flush=True)
  try:
    config = planned_config(the_job)
    if phase in ("all", "train"):
      train.train(config, workdir)
    if phase == "train":
      write_state("trained", finished=_now())
      return 0

    def terminated(signum, frame):
      raise _Terminated()

    previous_handler = signal.signal(signal.SIGTERM, terminated)
    try:
      rows, evaluated_config = evaluate.evaluate(workdir)
    finally:
      signal.signal(signal.SIGTERM, previous_handler)
  except train.Preempted as e:
    write_state("preempted", step=int(e.step), finished=_now())
    print(f"job {the_job.index}: {e}", flush=True)
    return EXIT_PREEMPTED
  except _Terminated:
    write_state("interrupted", finished=_now(), error="SIGTERM during "
                "evaluation")
    return EXIT_PREEMPTED
  except KeyboardInterrupt:
    write_state("interrupted", finished=_now(), error="KeyboardInterrupt")
    return EXIT_INTERRUPTED
  except Exception as e:  # pylint: disable=broad-except
    write_state("failed", finished=_now(), error=f"{type(e).__name__}: {e}",
                traceback=traceback.format_exc())
    traceback.print_exc()
    return 1
  write_state("done", finished=_now())
  try:
    evaluate.print_summary(rows, evaluated_config, workdir)
  except Exception as e:  # pylint: disable=broad-except
    print(f"(no summary table: {type(e).__name__}: {e})", flush=True)
  return 0


# --------------------------------------------------------------------------
# Status.


def last_checkpoint_step(workdir: str) -> int | None:
  """The latest finished checkpoint step in `workdir`, or None."""
  from disentax import checkpoint  # pylint: disable=g-import-not-at-top
  if not os.path.isdir(checkpoint.checkpoint_dir(workdir)):
    return None
  manager = checkpoint.make_manager(workdir, read_only=True)
  try:
    return manager.latest_step()
  finally:
    manager.close()


def job_states(root: str) -> list[dict[str, Any]]:
  """One dict per planned job: index, name, workdir, state (done | running
  | failed | missing), recorded (job.json's state, or None), detail (a
  readable line) and step (latest checkpoint of a job not done, or None).

  missing = never started, preempted, interrupted, or trained but not yet
  evaluated: the job still has to be (re)run, and resumes from its
  checkpoint.  A `running` record whose pid is dead on this host is failed
  (the process died without recording why, e.g. killed).
  """
  host = socket.gethostname()
  states = []
  for job in load_jobs(root):
    workdir = job_workdir(root, job)
    entry = {"index": job.index, "name": job.name, "workdir": workdir,
             "recorded": None, "step": None}
    try:
      record = read_job_file(workdir)
    except (OSError, ValueError) as e:
      record = {"state": "unreadable", "error": str(e)}
    recorded = None if record is None else record.get("state")
    entry["recorded"] = recorded
    if recorded != "done" and os.path.isdir(workdir):
      entry["step"] = last_checkpoint_step(workdir)
    where = "" if record is None else (
        f"{record.get('host')}:{record.get('pid')}")
    if record is None:
      state, detail = "missing", "never started"
    elif recorded == "done":
      state, detail = "done", f"finished {record.get('finished')}"
    elif recorded == "running":
      if record.get("host") == host and not _pid_alive(record.get("pid")):
        state, detail = "failed", (f"stale: {where} died without recording "
                                   f"an end (killed?)")
      else:
        state, detail = "running", f"on {where} since {record.get('started')}"
    elif recorded == "failed":
      state, detail = "failed", str(record.get("error"))
    elif recorded == "preempted":
      state, detail = "missing", f"preempted at step {record.get('step')}"
    elif recorded == "interrupted":
      state, detail = "missing", f"interrupted ({record.get('error')})"
    elif recorded == "trained":
      state, detail = "missing", "trained, not yet evaluated"
    else:
      state, detail = "failed", (f"unknown state {recorded!r} in "
                                 f"{job_file(workdir)}: {record.get('error')}")
    if entry["step"] is not None:
      detail += f"; checkpoint at step {entry['step']}"
    entry.update(state=state, detail=detail)
    states.append(entry)
  return states


def count_states(states: Iterable[Mapping[str, Any]]) -> dict[str, int]:
  counts = dict.fromkeys(STATES, 0)
  for entry in states:
    counts[entry["state"]] += 1
  return counts


def format_status(states: Sequence[Mapping[str, Any]]) -> str:
  """One line per job (index, state, name, detail), then the counts."""
  width = len(str(max(len(states) - 1, 0)))
  lines = [f"{s['index']:>{width}} {s['state']:<8} {s['name']}  ({s['detail']})"
           for s in states]
  counts = count_states(states)
  lines.append(f"{len(states)} jobs: " + ", ".join(
      f"{counts[name]} {name}" for name in STATES))
  return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# Merging results.


def merge(root: str, out: str | None = None, *, metric: str = "mig",
          threshold: float = 0.1, figures: bool = True) -> dict[str, Any]:
  """Merges every done job's results into OUT (default ROOT/merged):
  results.json ({"schema_version", "rows" (each with its "job"), "jobs",
  "missing"}), results.csv (a `job` column, then the results.csv columns)
  and the `disentax.report` report over the done jobs' workdirs (the same
  workdirs `python -m disentax.report --sweep_root=ROOT` finds), with the
  jobs not merged listed at the end of report.md.

  Returns {"rows", "merged" (job names), "missing" (dicts with name, state,
  detail), "paths", "markdown"}.

  Raises:
    ValueError: no done job, or OUT named `results` (the report's
      workdir search would take it for a run).
  """
  out = out or os.path.join(root, MERGED_DIR)
  if os.path.basename(os.path.normpath(out)) == results.RESULTS_DIR:
    raise ValueError(f"--out={out}: a directory named {results.RESULTS_DIR!r} "
                     f"would be read as a run's results by the report; "
                     f"choose another name")
  rows, merged, missing, workdirs = [], [], [], []
  for entry in job_states(root):
    has_results = os.path.isfile(report.results_file(entry["workdir"]))
    if entry["state"] != "done" or not has_results:
      detail = entry["detail"] if has_results or entry["state"] != "done" \
          else "done but no results file"
      missing.append({"index": entry["index"], "name": entry["name"],
                      "state": entry["state"], "detail": detail})
      continue
    job_rows = report.load_rows([entry["workdir"]])
    rows += [{"job": entry["name"], **row} for row in job_rows]
    merged.append(entry["name"])
    workdirs.append(entry["workdir"])
  if not merged:
    raise ValueError(f"no job of {plan_path(root)} is done with results yet "
                     f"({len(missing)} missing); see `python -m "
                     f"disentax.sweep status --root={root}`")

  os.makedirs(out, exist_ok=True)
  json_path = os.path.join(out, results.JSON_NAME)
  run_log.write_json(json_path, {
      "schema_version": results.SCHEMA_VERSION, "rows": rows,
      "jobs": merged, "missing": missing})
  flat = [{"job": row["job"], **results.flatten(
      {k: v for k, v in row.items() if k != "job"})} for row in rows]
  columns = list(dict.fromkeys(k for row in flat for k in row))
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, columns)
  writer.writeheader()
  writer.writerows(flat)
  csv_path = os.path.join(out, results.CSV_NAME)
  with open(csv_path + ".tmp", "w", newline="") as f:
    f.write(buffer.getvalue())
  os.replace(csv_path + ".tmp", csv_path)

  markdown, paths = report.run_report(workdirs, out, metric=metric,
                                      threshold=threshold, figures=figures)
  section = f"\n## Jobs merged: {len(merged)} of {len(merged) + len(missing)}\n"
  if missing:
    section += ("\nNot merged (not done, so not in the tables above):\n\n"
                + "".join(f"- {m['index']} {m['name']}: {m['state']} "
                          f"({m['detail']})\n" for m in missing))
  markdown += section
  with open(os.path.join(out, report.MARKDOWN_NAME), "w") as f:
    f.write(markdown)
  return {"rows": rows, "merged": merged, "missing": missing,
          "paths": [json_path, csv_path, *paths], "markdown": markdown}


# --------------------------------------------------------------------------
# The SLURM script.


def array_spec(indices: Sequence[int]) -> str:
  """[0, 1, 2, 5, 7, 8] -> "0-2,5,7-8" (sbatch --array syntax)."""
  parts, start = [], None
  indices = sorted(indices)
  for i, index in enumerate(indices):
    if start is None:
      start = index
    if i + 1 == len(indices) or indices[i + 1] != index + 1:
      parts.append(f"{start}-{index}" if index > start else f"{start}")
      start = None
  return ",".join(parts)


def render_slurm(root: str, *, partition: str = "", time: str = "24:00:00",
                 gpus_per_job: int = 1, nodes_per_job: int = 1,
                 max_concurrent: int = 0, cpus_per_task: int = 8,
                 python: str = "python", missing_only: bool = False,
                 template: str = SLURM_TEMPLATE) -> str:
  """The sbatch script of ROOT's plan from `launch/slurm.sbatch`: one array
  task per job (`--array=0-{N-1}`, or with `missing_only` the jobs not done
  or running), each `srun python -m disentax.sweep run --root=ROOT`.

  With nodes_per_job > 1 the job trains as one process per node
  (`--distributed --phase=train`, `jax.distributed.initialize()` reads the
  SLURM step) and then evaluates as one task (`--phase=evaluate`).
  `gpus_per_job` is split evenly over the nodes.  Creates ROOT/logs/ (the
  array's output files; SLURM does not create directories).
  """
  jobs = load_jobs(root)
  if nodes_per_job < 1:
    raise ValueError(f"--nodes_per_job={nodes_per_job}; must be >= 1")
  if gpus_per_job < 0 or gpus_per_job % nodes_per_job:
    raise ValueError(f"--gpus_per_job={gpus_per_job}; must be >= 0 and a "
                     f"multiple of --nodes_per_job={nodes_per_job} (split "
                     f"evenly over the nodes)")
  if max_concurrent < 0:
    raise ValueError(f"--max_concurrent={max_concurrent}; must be >= 0 "
                     f"(0 = no limit)")
  if cpus_per_task < 1:
    raise ValueError(f"--cpus_per_task={cpus_per_task}; must be >= 1")
  indices = list(range(len(jobs)))
  if missing_only:
    indices = [s["index"] for s in job_states(root)
               if s["state"] in ("missing", "failed")]
    if not indices:
      raise ValueError(f"every job of {plan_path(root)} is done or running")
  array = array_spec(indices)
  if max_concurrent:
    array += f"%{max_concurrent}"
  root = os.path.abspath(root)
  if any(c.isspace() for c in root):
    raise ValueError(f"--root={root!r}: #SBATCH lines cannot hold a path "
                     f"with spaces; choose a root without")
  logs = os.path.join(root, LOGS_DIR)
  os.makedirs(logs, exist_ok=True)
  run = (f"{python} -m disentax.sweep run --root={shlex.quote(root)}")
  if nodes_per_job == 1:
    train_command = f"srun {run}"
    evaluate_command = (": # one process: the run step above also evaluated "
                        "the job")
  else:
    train_command = f"srun {run} --distributed --phase=train"
    evaluate_command = ("forward_term srun --nodes=1 --ntasks=1 "
                        f"{run} --phase=evaluate")
  gpus = gpus_per_job // nodes_per_job
  with open(template) as f:
    text = f.read()
  return string.Template(text).substitute(
      job_name=_safe(os.path.basename(root)) or "sweep",
      array=array, num_jobs=len(jobs), nodes=nodes_per_job,
      cpus_per_task=cpus_per_task, time=time,
      partition=(f"#SBATCH --partition={partition}" if partition
                 else "## --partition: the cluster's default"),
      gpus=(f"#SBATCH --gpus-per-node={gpus}" if gpus
            else "## no GPUs requested"),
      logs=logs, repo=shlex.quote(REPO),
      train_command=train_command, evaluate_command=evaluate_command)


# --------------------------------------------------------------------------
# The CLI.


COMMANDS = ("plan", "run", "status", "merge", "slurm")


def _required(name: str) -> Any:
  from absl import flags  # pylint: disable=g-import-not-at-top
  value = flags.FLAGS[name].value
  if value in (None, ""):
    raise ValueError(f"--{name} is required")
  return value


def main(argv: Sequence[str]) -> int:
  """The CLI: `python -m disentax.sweep COMMAND --flags` (module doc)."""
  from absl import flags, logging  # pylint: disable=g-import-not-at-top
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise SystemExit(f"usage: python -m disentax.sweep "
                     f"{{{','.join(COMMANDS)}}} --root=ROOT ...; got "
                     f"{list(argv[1:])}")
  command, f = argv[1], flags.FLAGS
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
  try:
    root = _required("root")
    if command == "plan":
      spec = _required("sweep")
      jobs, written = write_plan(spec, root)
      description = read_plan(root).get("description")
      if description:
        print(description)
      print(f"{'planned' if written else 'plan unchanged:'} {len(jobs)} jobs "
            f"in {plan_path(root)}")
      print(f"  SLURM: python -m disentax.sweep slurm --root={root} "
            f"--out={os.path.join(root, 'sweep.sbatch')} && sbatch "
            f"{os.path.join(root, 'sweep.sbatch')}")
      print(f"  here:  launch/sweep_local.sh {root}")
      print(f"  then:  python -m disentax.sweep status --root={root}; "
            f"python -m disentax.sweep merge --root={root}")
      return 0
    if command == "run":
      logging.set_verbosity(logging.ERROR)
      return run_job(root, f.job, distributed=f.distributed, phase=f.phase)
    if command == "status":
      logging.set_verbosity(logging.ERROR)  # read-only Orbax managers warn
      states = job_states(root)
      if f.todo:
        print("\n".join(str(s["index"]) for s in states
                        if s["state"] in ("missing", "failed")))
      else:
        print(format_status(states), end="")
      return 0
    if command == "merge":
      logging.set_verbosity(logging.ERROR)
      merged = merge(root, f.out, metric=f.metric, threshold=f.threshold,
                     figures=f.figures)
      print(merged["markdown"], end="")
      out = f.out or os.path.join(root, MERGED_DIR)
      print(f"\nmerged {len(merged['rows'])} rows of {len(merged['merged'])} "
            f"jobs into {out}; {len(merged['missing'])} jobs missing",
            file=sys.stderr)
      return 0
    script = render_slurm(
        root, partition=f.partition, time=f.time, gpus_per_job=f.gpus_per_job,
        nodes_per_job=f.nodes_per_job, max_concurrent=f.max_concurrent,
        cpus_per_task=f.cpus_per_task, python=f.python,
        missing_only=f.missing_only)
    if f.out:
      with open(f.out, "w") as handle:
        handle.write(script)
      print(f"wrote {f.out}; submit with: sbatch {f.out}", file=sys.stderr)
    else:
      print(script, end="")
    return 0
  except (OSError, ValueError, KeyError) as e:
    raise SystemExit(f"error: {e}") from None


def _define_flags() -> None:
  """CLI flags, defined only when run as a program."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("root", None, "Sweep root: plan.json and one workdir "
                      "per job.")
  flags.DEFINE_string("sweep", None, "plan: sweep file[:arg], e.g. "
                      "experiments/sweeps/tiny.py.")
  flags.DEFINE_integer("job", None, "run: job index (default "
                       "$SLURM_ARRAY_TASK_ID).")
  flags.DEFINE_bool("distributed", False, "run: call "
                    "jax.distributed.initialize() first (one process per "
                    "node; SLURM is auto-detected).")
  flags.DEFINE_enum("phase", "all", PHASES, "run: train and evaluate (all), "
                    "or only one of them (multi-node jobs).")
  flags.DEFINE_bool("todo", False, "status: print only the indices of the "
                    "jobs to (re)run (missing or failed).")
  flags.DEFINE_string("out", None, "merge: output directory (default "
                      "ROOT/merged); slurm: write the script here (default "
                      "stdout).")
  flags.DEFINE_string("metric", "mig", "merge: metric of the failure table.")
  flags.DEFINE_float("threshold", 0.1, "merge: a seed fails below this.")
  flags.DEFINE_bool("figures", True, "merge: draw the report's figures.")
  flags.DEFINE_string("partition", "", "slurm: partition (default: the "
                      "cluster's).")
  flags.DEFINE_string("time", "24:00:00", "slurm: time limit per job.")
  flags.DEFINE_integer("gpus_per_job", 1, "slurm: GPUs per job, split evenly "
                       "over its nodes (0: none).")
  flags.DEFINE_integer("nodes_per_job", 1, "slurm: nodes per job (one "
                       "process each).")
  flags.DEFINE_integer("max_concurrent", 0, "slurm: at most this many array "
                       "tasks at once (0: no limit).")
  flags.DEFINE_integer("cpus_per_task", 8, "slurm: CPUs per process.")
  flags.DEFINE_string("python", "python", "slurm: the Python interpreter "
                      "the jobs run.")
  flags.DEFINE_bool("missing_only", False, "slurm: array over the jobs not "
                    "done or running only.")


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  _define_flags()
  app.run(main)
