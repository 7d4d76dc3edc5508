"""Expanding a sweep into jobs (`Job`, `expand`, `validate_jobs`) and the
plan file ROOT/plan.json that records them (`write_plan`, `load_jobs`).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from typing import Any, Mapping, Sequence

import ml_collections

from disentax import config as config_lib
from disentax.config import load_config, split_spec
from disentax.sweep.spec import _json_form, _plain, apply_overrides, load_sweep
from disentax.workdir import read_json, write_json

PLAN_NAME = "plan.json"
PLAN_VERSION = 1

SWEEP_FIELDS = ("configs", "datasets", "grid", "num_seeds", "seeds_per_job",
                "overrides", "config_overrides", "description")
# Keys each job sets from num_seeds / seeds_per_job.
SEED_KEYS = ("first_seed", "num_seeds")


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
          "sweep": path,
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
  write_json(path, plan)
  return [Job.from_json(j) for j in plan["jobs"]], True


def read_plan(root: str) -> dict[str, Any]:
  path = plan_path(root)
  plan = read_json(path, "make one with `python -m disentax.sweep plan "
                   f"--sweep=FILE --root={root}`")
  if plan.get("version") != PLAN_VERSION:
    raise ValueError(f"{path} has version {plan.get('version')!r}; this "
                     f"disentax reads version {PLAN_VERSION}")
  return plan


def load_jobs(root: str) -> list[Job]:
  """The jobs of ROOT/plan.json, in index order."""
  return [Job.from_json(j) for j in read_plan(root)["jobs"]]
