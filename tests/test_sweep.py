"""Sweep plans: expansion, plan.json, job states, status, merge, the SLURM
script and the local launcher (one end-to-end run of the tiny sweep)."""

import csv
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import ml_collections
import pytest

from disentax import results, sweep
from disentax.reporting import report
from disentax.workdir import WorkdirInUse, job_path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = "experiments/beta_vae.py:tiny"
SHORT = {"train.num_steps": 10, "train.steps_per_chunk": 5,
         "train.checkpoint_every": 10}


def make_sweep(**fields):
  config = ml_collections.ConfigDict(convert_dict=False)
  for key, value in {"configs": (TINY,), "num_seeds": 2, **fields}.items():
    config[key] = value
  return config


def write_sweep(path, **fields):
  """A sweep file whose get_sweep returns make_sweep(**fields)."""
  lines = ["import ml_collections", "", "def get_sweep(arg=None):",
           "  s = ml_collections.ConfigDict(convert_dict=False)"]
  lines += [f"  s.{key} = {value!r}" for key, value in
            {"configs": (TINY,), "num_seeds": 2, **fields}.items()]
  lines.append("  return s")
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
  return str(path)


def planned(tmp_path, name="root", **fields):
  spec = write_sweep(tmp_path / f"{name}_sweep.py", **fields)
  root = str(tmp_path / name)
  sweep.write_plan(spec, root)
  return root


def set_state(root, job, state, **extra):
  workdir = sweep.job_workdir(root, job)
  record = {"job": job.index, "name": job.name, "state": state,
            "host": socket.gethostname(), "pid": os.getpid(),
            "started": "2024-01-01T00:00:00+00:00", **extra}
  os.makedirs(workdir, exist_ok=True)
  with open(job_path(workdir), "w") as f:
    json.dump(record, f)
  return workdir


# --------------------------------------------------------------------------
# Expansion.


def test_seed_chunks():
  assert sweep.seed_chunks(5, 2) == [(0, 2), (2, 2), (4, 1)]
  assert sweep.seed_chunks(4, 2) == [(0, 2), (2, 2)]
  assert sweep.seed_chunks(3, 10) == [(0, 3)]
  assert sweep.seed_chunks(50, 10)[-1] == (40, 10)


def test_tiny_sweep_jobs():
  jobs = sweep.expand(sweep.load_sweep("experiments/sweeps/tiny.py"))
  assert [(j.index, j.name, j.config) for j in jobs] == [
      (0, "beta_vae-dsprites-beta=1-seeds_000-001", TINY),
      (1, "beta_vae-dsprites-beta=4-seeds_000-001", TINY)]
  assert jobs[1].overrides == {
      "objective.beta": (4.0,), "train.num_steps": 10,
      "train.steps_per_chunk": 5, "train.checkpoint_every": 10,
      "eval.traversals": False, "first_seed": 0, "num_seeds": 2}
  config = sweep.job_config(jobs[1])
  assert config.objective.beta == (4.0,) and config.train.num_steps == 10
  assert (config.first_seed, config.num_seeds) == (0, 2)


def test_expansion_order_names_and_count():
  fields = dict(
      datasets=({}, {"dataset.name": "color_dsprites"}),
      grid={"train.learning_rate": (1e-3, 1e-4),
            "objective.beta": ((1.0,), (4.0,))},
      num_seeds=5, seeds_per_job=2, overrides=dict(SHORT))
  configs = (TINY, "experiments/beta_tcvae.py:tiny")
  jobs = sweep.expand(make_sweep(configs=configs, **fields))
  # 2 configs x 2 datasets x 2 x 2 grid points x 3 seed chunks.
  assert len(jobs) == 2 * 2 * 4 * 3 == 48
  assert [j.index for j in jobs] == list(range(48))
  expected = list(itertools.product(
      configs, ("dsprites", "color_dsprites"), (1.0, 4.0), (1e-3, 1e-4),
      ((0, 2), (2, 2), (4, 1))))
  got = [(j.config, sweep.job_config(j).dataset.name,
          j.overrides["objective.beta"][0],
          j.overrides["train.learning_rate"],
          (j.first_seed, j.num_seeds)) for j in jobs]
  assert got == expected
  assert [j.name for j in jobs[:4]] == [
      "beta_vae-dsprites-beta=1-learning_rate=0.001-seeds_000-001",
      "beta_vae-dsprites-beta=1-learning_rate=0.001-seeds_002-003",
      "beta_vae-dsprites-beta=1-learning_rate=0.001-seeds_004-004",
      "beta_vae-dsprites-beta=1-learning_rate=0.0001-seeds_000-001"]
  assert jobs[-1].name == ("beta_tcvae-color_dsprites-beta=4-"
                           "learning_rate=0.0001-seeds_004-004")
  assert len({j.name for j in jobs}) == 48
  assert all(j.overrides["train.num_steps"] == 10 for j in jobs)
  again = sweep.expand(make_sweep(configs=configs, **fields))
  assert again == jobs


def test_same_method_configs_named_by_preset():
  jobs = sweep.expand(make_sweep(configs=(TINY, "experiments/beta_vae.py:cpu"),
                                 num_seeds=1))
  assert [j.name for j in jobs] == ["beta_vae.tiny-dsprites-seeds_000-000",
                                    "beta_vae.cpu-dsprites-seeds_000-000"]


@pytest.mark.parametrize("fields, message", [
    (dict(num_seeds=0), "sweep.num_seeds=0; must be an integer >= 1"),
    (dict(seeds_per_job=0), "sweep.seeds_per_job=0; must be an integer >= 1"),
    (dict(num_seeds=2.5), "sweep.num_seeds=2.5"),
    (dict(configs=()), "sweep.configs=(); must be a non-empty tuple"),
    (dict(configs="experiments/beta_vae.py"), "sweep.configs="),
    (dict(datasets=()), "sweep.datasets=(); must be a non-empty tuple"),
    (dict(grid={"objective.beta": ()}), "sweep.grid['objective.beta']=()"),
    (dict(grid={"objective.beta": "14"}), "must be a non-empty tuple"),
    (dict(overrides={"train.num_stepz": 1}),
     "unknown config key 'train.num_stepz'"),
    (dict(overrides={"trian.num_steps": 1}),
     "'trian' is not a section of the top level"),
    (dict(overrides={"train.num_steps": 2.5}),
     "override train.num_steps=2.5"),
    (dict(overrides={"first_seed": 3}), "seeds are set by sweep.num_seeds"),
    (dict(grid={"train.num_steps": (10, 20)},
          overrides={"train.num_steps": 10}),
     "'train.num_steps' is set by both sweep.grid and sweep.overrides"),
    (dict(seeds=3), "unknown sweep field(s) ['seeds']"),
    (dict(config_overrides={"experiments/other.py": {}}),
     "not in sweep.configs"),
    (dict(configs=("experiments/nope.py",)), "does not exist"),
])
def test_bad_sweeps_name_the_value(fields, message):
  with pytest.raises((ValueError, FileNotFoundError)) as error:
    sweep.expand(make_sweep(**fields))
  assert message in str(error.value)


def test_deft_table4_sweep():
  table4 = sweep.load_sweep("experiments/sweeps/deft_table4.py")
  jobs = sweep.expand(table4)
  # 5 methods x 3 procedural datasets (SmallNORB needs its data) x 5 chunks.
  assert len(jobs) == 5 * 3 * 5
  assert "SmallNORB left out" in table4.description
  assert jobs[0].name == "deft-color_dsprites-seeds_000-009"
  assert jobs[5].name == "deft-dsprites-seeds_000-009"
  assert jobs[-1].name == "cascade_vae_c-scream_dsprites-seeds_040-049"
  cells = {}
  for job in jobs:
    cells.setdefault(job.config, []).append((job.first_seed, job.num_seeds))
  assert all(chunks == sweep.seed_chunks(50, 10) for chunks in cells.values())
  sweep.validate_jobs(jobs)  # every cell's config builds

  full = sweep.expand(sweep.load_sweep(
      "experiments/sweeps/deft_table4.py:smallnorb_dir=/data/tfds,"
      "seeds_per_job=25"))
  assert len(full) == 5 * 4 * 2
  norb = [j for j in full if "smallnorb" in j.config]
  assert len(norb) == 10
  assert all(j.overrides["dataset.data_dir"] == "/data/tfds" for j in norb)
  with pytest.raises(ValueError, match="deft_table4 option 'seeds=3'"):
    sweep.load_sweep("experiments/sweeps/deft_table4.py:seeds=3")


# --------------------------------------------------------------------------
# plan.json.


def test_plan_written_replan_noop_change_refused(tmp_path):
  spec = write_sweep(tmp_path / "s.py", overrides=dict(SHORT), seeds_per_job=1)
  root = str(tmp_path / "root")
  jobs, written = sweep.write_plan(spec, root)
  assert written and len(jobs) == 2
  with open(sweep.plan_path(root)) as f:
    plan = json.load(f)
  assert plan["sweep"] == spec and plan["arg"] is None
  assert [j["name"] for j in plan["jobs"]] == [
      "beta_vae-dsprites-seeds_000-000", "beta_vae-dsprites-seeds_001-001"]
  assert plan["jobs"][1]["overrides"]["first_seed"] == 1
  assert sweep.load_jobs(root) == jobs
  mtime = os.path.getmtime(sweep.plan_path(root))

  assert sweep.write_plan(spec, root) == (jobs, False)  # identical: no-op
  assert os.path.getmtime(sweep.plan_path(root)) == mtime

  write_sweep(tmp_path / "s.py", overrides={**SHORT, "train.num_steps": 20},
              seeds_per_job=1)
  with pytest.raises(ValueError) as error:
    sweep.write_plan(spec, root)
  assert "holds a different plan; refusing" in str(error.value)
  assert "override train.num_steps: 10 -> 20" in str(error.value)
  with open(sweep.plan_path(root)) as f:
    assert json.load(f) == plan


def test_plan_builds_every_config_first(tmp_path):
  spec = write_sweep(tmp_path / "s.py",
                     datasets=({}, {"dataset.bogus_option": 1}))
  with pytest.raises(ValueError) as error:
    sweep.write_plan(spec, str(tmp_path / "root"))
  assert "job 1 (beta_vae-dsprites-bogus_option=1-seeds_000-001" in str(
      error.value)
  assert "bogus_option" in str(error.value)
  assert not os.path.exists(tmp_path / "root")


# --------------------------------------------------------------------------
# Running one job (training and evaluation replaced by stand-ins).


@pytest.fixture
def fake_training(monkeypatch):
  from disentax import preemption
  from disentax.evaluation import job
  from disentax.training import trainer
  calls = []

  def fake_train(config, workdir, **unused):
    calls.append(("train", config.objective.beta, workdir))
    if config.objective.beta == (4.0,):
      raise preemption.Preempted(workdir, 10)

  def fake_evaluate(workdir, battery="config"):
    assert battery == "config"  # the sweep runner scores the config's
    calls.append(("evaluate", workdir))
    return [], None

  monkeypatch.setattr(trainer, "train", fake_train)
  monkeypatch.setattr(job, "evaluate", fake_evaluate)
  monkeypatch.setattr(job, "summary", lambda *args: "")
  return calls


def test_run_job_records_done_preempted_failed(tmp_path, fake_training,
                                               monkeypatch):
  root = planned(tmp_path, grid={"objective.beta": ((1.0,), (4.0,))},
                 overrides=dict(SHORT))
  jobs = sweep.load_jobs(root)
  monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "0")
  assert sweep.run_job(root) == 0  # the index from SLURM
  record = sweep.read_job_file(sweep.job_workdir(root, jobs[0]))
  assert record["state"] == "done" and record["pid"] == os.getpid()
  assert record["attempt"] == 1 and record["phase"] == "all"
  assert fake_training == [
      ("train", (1.0,), sweep.job_workdir(root, jobs[0])),
      ("evaluate", sweep.job_workdir(root, jobs[0]))]
  assert sweep.run_job(root, 0) == 0  # already done: nothing runs
  assert len(fake_training) == 2

  assert sweep.run_job(root, 1) == 143  # SIGTERM'd train(): requeue me
  record = sweep.read_job_file(sweep.job_workdir(root, jobs[1]))
  assert (record["state"], record["step"]) == ("preempted", 10)
  assert [s["state"] for s in sweep.job_states(root)] == ["done", "missing"]

  # The experiment file changed after planning: the job fails, saying so.
  with open(sweep.plan_path(root)) as f:
    plan = json.load(f)
  plan["jobs"][1]["config_hash"] = "000000000000"
  with open(sweep.plan_path(root), "w") as f:
    json.dump(plan, f)
  assert sweep.run_job(root, 1) == 1
  record = sweep.read_job_file(sweep.job_workdir(root, jobs[1]))
  assert record["state"] == "failed" and record["attempt"] == 2
  assert "changed after planning" in record["error"]
  with pytest.raises(ValueError, match=r"job 2 is not in the plan; "
                     r"allowed: 0\.\.1"):
    sweep.run_job(root, 2)


def test_a_job_claimed_twice_at_once_runs_once(tmp_path, fake_training,
                                               monkeypatch):
  """Two runners racing for one job (threads: the claim is an flock, which
  refuses another thread as it does another process): one runs it, the
  other is refused before it writes job.json; a later runner finds it
  done."""
  from disentax.training import trainer
  root = planned(tmp_path, overrides=dict(SHORT))
  workdir = sweep.job_workdir(root, sweep.load_jobs(root)[0])
  training, refused = threading.Event(), threading.Event()

  def slow_train(config, workdir, **unused):
    fake_training.append(("train", workdir))
    training.set()
    assert refused.wait(timeout=60)  # the second runner has been refused

  monkeypatch.setattr(trainer, "train", slow_train)
  outcomes = {}

  def runner(name):
    try:
      outcomes[name] = sweep.run_job(root, 0)
    except Exception as error:  # pylint: disable=broad-except
      outcomes[name] = error
      refused.set()

  first = threading.Thread(target=runner, args=("first",))
  first.start()
  assert training.wait(timeout=60)
  record = sweep.read_job_file(workdir)
  assert (record["state"], record["attempt"]) == ("running", 1)
  runner("second")
  first.join(timeout=60)
  assert outcomes["first"] == 0
  assert isinstance(outcomes["second"], WorkdirInUse)
  assert str(outcomes["second"]).startswith(
      f"workdir in use by pid {os.getpid()} on host {socket.gethostname()}")
  assert fake_training == [("train", workdir), ("evaluate", workdir)]
  record = sweep.read_job_file(workdir)
  assert (record["state"], record["attempt"]) == ("done", 1)
  assert sweep.run_job(root, 0) == 0  # done: nothing runs
  assert len(fake_training) == 2


# --------------------------------------------------------------------------
# Status.


def test_status_of_every_state(tmp_path):
  root = planned(tmp_path, num_seeds=7, seeds_per_job=1,
                 overrides=dict(SHORT))
  jobs = sweep.load_jobs(root)
  finished = subprocess.Popen(["true"])
  finished.wait()
  set_state(root, jobs[0], "done", finished="2024-01-01T01:00:00+00:00")
  set_state(root, jobs[1], "running")                      # this process
  set_state(root, jobs[2], "running", pid=finished.pid)    # died here
  set_state(root, jobs[3], "running", host="elsewhere", pid=finished.pid)
  set_state(root, jobs[4], "failed", error="ValueError: boom")
  workdir = set_state(root, jobs[5], "preempted", step=10)
  os.makedirs(os.path.join(workdir, "checkpoints", "10"))
  # jobs[6] never started: no directory.

  states = sweep.job_states(root)
  assert [s["name"] for s in states] == [j.name for j in jobs]
  assert [s["state"] for s in states] == [
      "done", "running", "failed", "running", "failed", "missing", "missing"]
  assert [s["recorded"] for s in states] == [
      "done", "running", "running", "running", "failed", "preempted", None]
  details = [s["detail"] for s in states]
  assert details[0] == "finished 2024-01-01T01:00:00+00:00"
  assert details[2].startswith(f"stale: {socket.gethostname()}:"
                               f"{finished.pid} died")
  assert details[3].startswith(f"on elsewhere:{finished.pid} since")
  assert details[4] == "ValueError: boom"
  assert details[5] == "preempted at step 10; checkpoint at step 10"
  assert states[5]["step"] == 10
  assert details[6] == "never started"

  text = sweep.format_status(states)
  assert text.splitlines()[5] == (
      "5 missing  beta_vae-dsprites-seeds_005-005  (preempted at step 10; "
      "checkpoint at step 10)")
  assert text.splitlines()[-1] == (
      "7 jobs: 1 done, 2 running, 2 failed, 2 missing")


# --------------------------------------------------------------------------
# Merge.


def _rows(seeds, beta, migs):
  return [{"schema_version": 1, "method": "beta_vae", "dataset": "dsprites",
           "config_hash": f"hash{beta:g}", "step": 10, "member": m,
           "seed": seed, "hparams": {"beta": beta}, "status": "ok",
           "metrics": {"mig": mig}}
          for m, (seed, mig) in enumerate(zip(seeds, migs))]


def test_merge_done_jobs_and_list_missing(tmp_path):
  root = planned(tmp_path, grid={"objective.beta": ((1.0,), (4.0,), (8.0,))},
                 overrides=dict(SHORT))
  jobs = sweep.load_jobs(root)
  for job, migs in ((jobs[0], (0.05, 0.2)), (jobs[1], (0.3, 0.02))):
    workdir = set_state(root, job, "done")
    beta = job.overrides["objective.beta"][0]
    results.write(workdir, _rows((0, 1), beta, migs),
                  factor_names=["shape", "scale"])
  # jobs[2] never ran.

  merged = sweep.merge(root, figures=False)
  out = os.path.join(root, "merged")
  assert merged["merged"] == [jobs[0].name, jobs[1].name]
  assert [(r["job"], r["hparams"]["beta"], r["seed"], r["metrics"]["mig"])
          for r in merged["rows"]] == [
              (jobs[0].name, 1.0, 0, 0.05), (jobs[0].name, 1.0, 1, 0.2),
              (jobs[1].name, 4.0, 0, 0.3), (jobs[1].name, 4.0, 1, 0.02)]
  assert merged["missing"] == [{"index": 2, "name": jobs[2].name,
                                "state": "missing",
                                "detail": "never started"}]
  with open(os.path.join(out, "results.json")) as f:
    document = json.load(f)
  assert len(document["rows"]) == 4
  assert document["missing"][0]["name"] == jobs[2].name
  with open(os.path.join(out, "results.csv")) as f:
    table = list(csv.DictReader(f))
  assert [(r["job"], r["hp.beta"], float(r["metric.mig"])) for r in table] == [
      (jobs[0].name, "1.0", 0.05), (jobs[0].name, "1.0", 0.2),
      (jobs[1].name, "4.0", 0.3), (jobs[1].name, "4.0", 0.02)]
  with open(os.path.join(out, "report.md")) as f:
    markdown = f.read()
  assert "## Jobs merged: 2 of 3" in markdown
  assert f"- 2 {jobs[2].name}: missing (never started)" in markdown
  assert "| beta_vae | dsprites | beta=1 | 2 | 1/2 | 50.0 |" in markdown

  # The report over the sweep root finds the same two workdirs (nothing
  # merge wrote looks like a run) and writes the same table.
  workdirs = results.find_workdirs(root)
  assert workdirs == [sweep.job_workdir(root, j) for j in jobs[:2]]
  again = str(tmp_path / "again")
  report.run_report(workdirs, again, figures=False)
  for name in ("report.csv", "report_groups.csv"):
    with open(os.path.join(out, name)) as a, open(
        os.path.join(again, name)) as b:
      assert a.read() == b.read()

  with pytest.raises(ValueError, match="would be read as a run's results"):
    sweep.merge(root, out=os.path.join(root, "x", "results"), figures=False)


def test_merge_without_done_jobs_fails_clearly(tmp_path):
  root = planned(tmp_path, overrides=dict(SHORT))
  with pytest.raises(ValueError, match=r"no job of .* is done .*1 missing"):
    sweep.merge(root, figures=False)


# --------------------------------------------------------------------------
# The SLURM script.


@pytest.fixture
def seven_jobs(tmp_path):
  return planned(tmp_path, num_seeds=7, seeds_per_job=1, overrides=dict(SHORT))


def _directives(script):
  return [line for line in script.splitlines() if line.startswith("#SBATCH")]


def test_slurm_script_one_node(seven_jobs):
  root = os.path.abspath(seven_jobs)
  script = sweep.render_slurm(seven_jobs, partition="gpu", time="2:00:00")
  assert _directives(script) == [
      f"#SBATCH --job-name={os.path.basename(root)}", "#SBATCH --array=0-6",
      "#SBATCH --nodes=1", "#SBATCH --ntasks-per-node=1",
      "#SBATCH --cpus-per-task=8", "#SBATCH --time=2:00:00",
      "#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1",
      "#SBATCH --requeue", "#SBATCH --signal=B:TERM@120",
      "#SBATCH --open-mode=append",
      f"#SBATCH --output={root}/logs/%A_%a.out"]
  assert os.path.isdir(os.path.join(root, "logs"))
  assert (f"forward_term srun python -m disentax.sweep run --root={root}\n"
          in script)
  assert "--distributed" not in script and "--phase" not in script
  assert "$$" not in script  # every template escape was rendered
  subprocess.run(["bash", "-n"], input=script, text=True, check=True)

  limited = sweep.render_slurm(seven_jobs, max_concurrent=3, gpus_per_job=0)
  assert "#SBATCH --array=0-6%3" in _directives(limited)
  assert not any("--gpus" in d or "--partition" in d
                 for d in _directives(limited))


def test_slurm_script_multi_node(seven_jobs):
  root = os.path.abspath(seven_jobs)
  script = sweep.render_slurm(seven_jobs, nodes_per_job=2, gpus_per_job=8)
  directives = _directives(script)
  assert "#SBATCH --nodes=2" in directives
  assert "#SBATCH --ntasks-per-node=1" in directives
  assert "#SBATCH --gpus-per-node=4" in directives
  assert (f"forward_term srun python -m disentax.sweep run --root={root} "
          f"--distributed --phase=train\n" in script)
  assert (f"forward_term srun --nodes=1 --ntasks=1 python -m disentax.sweep "
          f"run --root={root} --phase=evaluate\n" in script)
  subprocess.run(["bash", "-n"], input=script, text=True, check=True)
  with pytest.raises(ValueError, match="--gpus_per_job=3; must be >= 0 and "
                     "a multiple of --nodes_per_job=2"):
    sweep.render_slurm(seven_jobs, nodes_per_job=2, gpus_per_job=3)


def test_slurm_array_of_missing_jobs(seven_jobs):
  jobs = sweep.load_jobs(seven_jobs)
  for index in (0, 1, 2, 5):
    set_state(seven_jobs, jobs[index], "done")
  script = sweep.render_slurm(seven_jobs, missing_only=True)
  assert "#SBATCH --array=3-4,6" in _directives(script)
  assert sweep.array_spec([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"


FAKE_SRUN = """#!/usr/bin/env bash
echo "srun $*" >> "$FAKE_LOG"
[ "$FAKE_MODE" = ok ] && exit 0
trap 'echo "srun got TERM" >> "$FAKE_LOG"; exit 143' TERM
while :; do sleep 0.02; done
"""


@pytest.mark.parametrize("mode", ["ok", "preempted"])
def test_slurm_script_forwards_sigterm_and_requeues(seven_jobs, tmp_path,
                                                    mode):
  """The rendered script under fake srun/scontrol: a SIGTERM to the batch
  shell reaches the step, whose exit 143 requeues the array task."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  (bin_dir / "srun").write_text(FAKE_SRUN)
  (bin_dir / "scontrol").write_text(
      '#!/usr/bin/env bash\necho "scontrol $*" >> "$FAKE_LOG"\n')
  for name in ("srun", "scontrol"):
    os.chmod(bin_dir / name, 0o755)
  log = tmp_path / "log"
  script = tmp_path / "sweep.sbatch"
  script.write_text(sweep.render_slurm(seven_jobs))
  env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}",
             FAKE_LOG=str(log), FAKE_MODE=mode, SLURM_JOB_ID="77",
             SLURM_ARRAY_TASK_ID="3")
  shell = subprocess.Popen(["bash", str(script)], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
  if mode == "preempted":
    deadline = time.time() + 20
    while not (log.exists() and "srun" in log.read_text()):
      assert time.time() < deadline and shell.poll() is None
      time.sleep(0.02)
    shell.send_signal(signal.SIGTERM)
  output, _ = shell.communicate(timeout=20)
  lines = log.read_text().splitlines()
  assert lines[0] == (f"srun python -m disentax.sweep run "
                      f"--root={os.path.abspath(seven_jobs)}")
  if mode == "ok":
    assert shell.returncode == 0, output
    assert lines == lines[:1]
    assert "array task 3 finished" in output
  else:
    assert shell.returncode == 143, output
    assert lines[1:] == ["srun got TERM", "scontrol requeue 77"]


# --------------------------------------------------------------------------
# End to end: the local launcher trains and evaluates both tiny jobs.


def test_local_launcher_runs_tiny_sweep_then_merge(tmp_path):
  root = str(tmp_path / "tiny")
  # Both jobs compile the same programs (beta is a mapped input), which the
  # suite's other tiny beta-VAE runs compiled too: the jobs read them from
  # the tests' shared persistent compilation cache (tests/conftest.py).
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             PATH=f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  launched = subprocess.run(
      ["bash", "launch/sweep_local.sh", root, "experiments/sweeps/tiny.py"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert launched.returncode == 0, launched.stdout + launched.stderr
  assert "planned 2 jobs" in launched.stdout
  assert "2 jobs: 2 done, 0 running, 0 failed, 0 missing" in launched.stdout

  jobs = sweep.load_jobs(root)
  assert [s["state"] for s in sweep.job_states(root)] == ["done", "done"]
  merged = sweep.merge(root, figures=False)
  assert merged["missing"] == []
  assert [(r["job"], r["hparams"]["beta"], r["seed"], r["step"])
          for r in merged["rows"]] == [
              (jobs[0].name, 1.0, 0, 10), (jobs[0].name, 1.0, 1, 10),
              (jobs[1].name, 4.0, 0, 10), (jobs[1].name, 4.0, 1, 10)]
  assert all(0 <= r["metrics"]["mig"] <= 1 for r in merged["rows"])
  assert "## Jobs merged: 2 of 2" in merged["markdown"]
  assert results.find_workdirs(root) == [sweep.job_workdir(root, j)
                                        for j in jobs]
