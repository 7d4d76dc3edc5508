"""The tracking writers: TensorBoard holds exactly what metrics.jsonl holds
(every scalar, member and step; read back with TensorBoard's own reader),
a resumed run's event files and run log equal an uninterrupted run's, the
image panels are the members' reconstructions and traversals, W&B gets one
run per member, the `log` config keys are checked and stay out of the
config hash, and the report's training curves are the medians and bands
of metrics.jsonl."""

import io
import json
import os
import shutil
import sys
import types

import numpy as np
import pytest
from PIL import Image

from disentax import checkpoint, run_log, tracking
from disentax import config as config_lib
from disentax.evaluation import panels as panels_lib
from disentax.evaluation.members import MemberFunctions
from disentax.experiment import build
from disentax.reporting import figures, pictures
from disentax.training import trainer
from disentax.workdir import (checkpoint_dir, run_log_path, tensorboard_dir,
                              trace_path, wandb_dir)
from tests.conftest import run_killed, tiny_config
from tests.synthetic_runs import png_size

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator")

# The tiny config (2 betas x 2 seeds, 20 steps in chunks of 5, checkpoints
# at 10 and 20), MIG traced and images drawn every 10 steps.
TRACED = dict(eval__trace_every=10, log__images_every=10,
              eval__trace={"mig": {"num_points": 200, "batch_size": 200}})
RUN_NAMES = ["m0_seed0_beta=1", "m1_seed1_beta=1", "m2_seed0_beta=4",
             "m3_seed1_beta=4"]
SHOWN = [0, 2]            # the first member of each beta
PANELS = ("reconstructions", "traversals")


def read_tensorboard(workdir):
  """{run name: ({tag: [(step, value)]}, {tag: [(step, PNG bytes)]})} of
  WORKDIR/tensorboard, as TensorBoard reads it (every event kept)."""
  ea = event_accumulator
  runs = {}
  root = tensorboard_dir(workdir)
  for name in sorted(os.listdir(root)):
    reader = ea.EventAccumulator(os.path.join(root, name),
                                 size_guidance={ea.SCALARS: 0, ea.IMAGES: 0})
    reader.Reload()
    tags = reader.Tags()
    runs[name] = (
        {tag: [(e.step, e.value) for e in reader.Scalars(tag)]
         for tag in tags["scalars"]},
        {tag: [(e.step, e.encoded_image_string) for e in reader.Images(tag)]
         for tag in tags["images"]})
  return runs


def assert_tensorboard_equals_run_log(workdir):
  """Every member's run holds, for every name of metrics.jsonl, exactly the
  (step, value) pairs of the log (values as float32, TensorBoard's type;
  null is NaN), in step order, each step once."""
  lines = run_log.read_lines(run_log_path(workdir))
  runs = read_tensorboard(workdir)
  assert list(runs) == RUN_NAMES
  names = sorted({k for line in lines for k in line} - {"step"})
  for m, (scalars, _) in enumerate(runs.values()):
    assert sorted(scalars) == names
    for name in names:
      expected = [(line["step"], np.float32(np.nan if line[name][m] is None
                                            else line[name][m]))
                  for line in lines if name in line]
      got = scalars[name]
      assert [s for s, _ in got] == [s for s, _ in expected], name
      np.testing.assert_array_equal(
          np.asarray([v for _, v in got], np.float32),
          np.asarray([v for _, v in expected], np.float32), err_msg=name)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  """(workdir, final state) of the traced tiny run, trained in one go."""
  workdir = str(tmp_path_factory.mktemp("uninterrupted"))
  return workdir, trainer.train(tiny_config(**TRACED), workdir)


def test_tensorboard_holds_the_run_log(uninterrupted):
  workdir, _ = uninterrupted
  lines = run_log.read_lines(run_log_path(workdir))
  # The trace's origin, then a line per chunk; traced steps hold MIG.
  assert [l["step"] for l in lines] == [0, 5, 10, 15, 20]
  assert sorted(lines[0]) == ["step", "trace/mig", "trace/nmi1", "trace/nmi2"]
  assert {"loss", "recon", "kl", "trace/mig"} <= set(lines[2])
  assert "trace/mig" not in lines[1]
  with np.load(trace_path(workdir)) as trace:
    np.testing.assert_array_equal(trace["step"], [0, 10, 20])
    np.testing.assert_array_equal(
        [lines[t]["trace/mig"] for t in (0, 2, 4)], trace["mig"])
  assert_tensorboard_equals_run_log(workdir)


def test_image_panels_are_the_members_reconstructions_and_traversals(
    uninterrupted):
  workdir, state = uninterrupted
  runs = read_tensorboard(workdir)
  for m, (_, images) in enumerate(runs.values()):
    if m not in SHOWN:
      assert images == {}
      continue
    assert sorted(images) == [f"images/{p}" for p in PANELS]
    for tag in images:
      assert [s for s, _ in images[tag]] == [0, 10, 20]
  # The final panels are those drawn from the final state: the fixed
  # inputs above their reconstructions, and one row per latent.
  exp = build(tiny_config(**TRACED))
  panels = panels_lib.Panels(MemberFunctions(exp))
  assert panels.members == SHOWN
  drawn = panels(state, 20)
  inputs = np.round(np.repeat(np.asarray(panels.inputs), 3, -1) * 255
                    ).astype(np.uint8)
  for m in SHOWN:
    _, images = runs[RUN_NAMES[m]]
    for name in PANELS:
      png = images[f"images/{name}"][-1][1]
      np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))),
                                    drawn[name][m])
    recon = drawn["reconstructions"][m]  # 16 px cells, 1 px gaps
    assert recon.shape == (2 * 17 - 1, panels_lib.NUM_INPUTS * 17 - 1, 3)
    for i in range(panels_lib.NUM_INPUTS):
      np.testing.assert_array_equal(recon[:16, 17 * i:17 * i + 16],
                                    inputs[i])
    assert drawn["traversals"][m].shape == (10 * 17 - 1, 10 * 17 - 1, 3)


def test_resume_drops_the_steps_computed_again(tmp_path, uninterrupted):
  """Killed while saving step 20, the run resumes from 10: its steps 15
  and 20 were logged (event files and run log) and are replaced, not
  doubled."""
  workdir = str(tmp_path / "run")
  killed = run_killed(workdir, 20, during_save=True, **TRACED)
  assert killed.returncode == -9, killed.stderr
  assert checkpoint.make_manager(workdir, 3).latest_step() == 10
  before = read_tensorboard(workdir)
  assert [s for s, _ in before[RUN_NAMES[0]][0]["loss"]] == [5, 10, 15, 20]
  trainer.train(tiny_config(**TRACED), workdir)
  assert (run_log.read_lines(run_log_path(workdir))
          == run_log.read_lines(run_log_path(uninterrupted[0])))
  assert_tensorboard_equals_run_log(workdir)
  assert read_tensorboard(workdir) == read_tensorboard(uninterrupted[0])


def test_resume_without_a_checkpoint_starts_every_record_again(
    tmp_path, uninterrupted):
  """No checkpoint: everything is computed again, the step-0 trace point
  included, and logged once."""
  workdir = str(tmp_path / "run")
  shutil.copytree(uninterrupted[0], workdir)
  shutil.rmtree(checkpoint_dir(workdir))
  trainer.train(tiny_config(**TRACED), workdir)
  assert (run_log.read_lines(run_log_path(workdir))
          == run_log.read_lines(run_log_path(uninterrupted[0])))
  with np.load(trace_path(workdir)) as trace:
    np.testing.assert_array_equal(trace["step"], [0, 10, 20])
  assert read_tensorboard(workdir) == read_tensorboard(uninterrupted[0])


def test_purge_event_file_keeps_the_header_and_earlier_steps(tmp_path):
  writer = tracking.TensorBoardWriter(str(tmp_path), ["a"], resume_step=0)
  for step in range(5):
    writer.scalars(step, {"x": np.array([float(step)])})
  writer.close()
  [path] = [os.path.join(tmp_path, "a", f)
            for f in os.listdir(tmp_path / "a")]
  with open(path, "ab") as f:
    f.write(b"\x40\x00\x00\x00\x00\x00\x00\x00cut")  # a record cut short
  tracking.purge_event_file(path, resume_step=2)
  assert read_tensorboard_run(str(tmp_path / "a")) == [(0, 0.0), (1, 1.0),
                                                       (2, 2.0)]
  tracking.purge_event_file(path, resume_step=0)
  assert not os.path.exists(path)


def read_tensorboard_run(path):
  reader = event_accumulator.EventAccumulator(path)
  reader.Reload()
  return [(e.step, e.value) for e in reader.Scalars("x")]


def test_member_names():
  rows = [{"member": 7, "seed": 3, "hparams": {"beta": 4.0}},
          {"member": 0, "seed": 0,
           "hparams": {"pressures": [70.0, 30.0, 12.0, 1.0], "gamma": 0.1}},
          {"member": 2, "seed": 5, "hparams": {}}]
  assert tracking.member_name(rows[0], 12) == "m07_seed3_beta=4"
  assert (tracking.member_name(rows[1], 3)
          == "m0_seed0_gamma=0.1_pressures=70-30-12-1")
  assert tracking.member_name(rows[2], 3) == "m2_seed5"


# --- W&B


class FakeWandb(types.ModuleType):
  """Records what a WandbWriter asks of wandb."""

  def __init__(self):
    super().__init__("wandb")
    self.runs = []

  def init(self, **kwargs):
    run = types.SimpleNamespace(kwargs=kwargs, logged=[], finished=False)
    run.log = lambda data, step: run.logged.append((step, data))
    run.finish = lambda: setattr(run, "finished", True)
    self.runs.append(run)
    return run

  def Settings(self, **kwargs):  # noqa: N802 -- wandb's name
    return kwargs

  def Image(self, array):  # noqa: N802 -- wandb's name
    return ("image", array.shape)


META = {"method": "beta_vae", "dataset": "dsprites", "config_hash": "c0ffee",
        "members": [{"member": m, "seed": s, "hparams": {"beta": b}}
                    for m, (b, s) in enumerate([(1.0, 0), (1.0, 1),
                                                (4.0, 0)])]}


def test_wandb_gets_a_run_per_member(tmp_path, monkeypatch):
  fake = FakeWandb()
  monkeypatch.setitem(sys.modules, "wandb", fake)
  config = tiny_config(log__wandb=True, log__tensorboard=False,
                       log__wandb_mode="offline")
  workdir = str(tmp_path / "run")
  writer = tracking.make_writer(config, workdir, META, resume_step=0)
  writer.scalars(5, {"loss": np.array([1.5, 2.5, np.nan]),
                     "kl": np.array([0.0, 1.0, 2.0])})
  image = np.zeros((3, 4, 3), np.uint8)
  writer.images(5, {"traversals": {2: image}})
  writer.close()
  assert [r.kwargs["name"] for r in fake.runs] == [
      "m0_seed0_beta=1", "m1_seed1_beta=1", "m2_seed0_beta=4"]
  ids = [r.kwargs["id"] for r in fake.runs]
  assert ids == [tracking.wandb_run_id(workdir, "c0ffee", m)
                 for m in range(3)]
  assert len(set(ids)) == 3 and all(i.startswith("c0ffee-") for i in ids)
  first = fake.runs[0].kwargs
  assert (first["project"], first["mode"], first["group"], first["dir"],
          first["resume"], first["reinit"]) == (
              "disentax", "offline", "run", workdir, "allow", "create_new")
  assert fake.runs[2].kwargs["config"] == {
      "method": "beta_vae", "dataset": "dsprites", "config_hash": "c0ffee",
      "workdir": workdir, "member": 2, "seed": 0, "beta": 4.0}
  assert fake.runs[0].logged == [(5, {"loss": 1.5, "kl": 0.0})]
  assert fake.runs[2].logged[0][1]["kl"] == 2.0
  assert np.isnan(fake.runs[2].logged[0][1]["loss"])
  assert fake.runs[2].logged[1] == (5, {"images/traversals":
                                        ("image", (3, 4, 3))})
  assert all(r.finished for r in fake.runs)
  # metrics.jsonl is written whatever else is selected.
  assert run_log.read_lines(run_log_path(workdir)) == [
      {"step": 5, "loss": [1.5, 2.5, None], "kl": [0.0, 1.0, 2.0]}]


def test_wandb_offline_writes_each_members_run(tmp_path, monkeypatch):
  pytest.importorskip("wandb")
  for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
    monkeypatch.setenv(name, str(tmp_path / "home"))
  monkeypatch.setenv("WANDB_SILENT", "true")
  workdir = str(tmp_path / "run")
  writer = tracking.make_writer(
      tiny_config(log__wandb=True, log__tensorboard=False,
                  log__wandb_mode="offline"), workdir, META, resume_step=0)
  writer.scalars(5, {"loss": np.array([1.0, 2.0, 3.0])})
  writer.close()
  runs = sorted(os.listdir(wandb_dir(workdir)))
  for m in range(3):
    run_id = tracking.wandb_run_id(workdir, "c0ffee", m)
    [run] = [r for r in runs if r.startswith("offline-run-")
             and r.endswith(run_id)]
    assert os.path.getsize(os.path.join(wandb_dir(workdir), run,
                                        f"run-{run_id}.wandb")) > 0


def test_missing_wandb_fails_before_anything_is_written(tmp_path,
                                                        monkeypatch):
  monkeypatch.setitem(sys.modules, "wandb", None)
  workdir = str(tmp_path / "run")
  with pytest.raises(ImportError,
                     match=r"pip install 'disentax\[wandb\]'"):
    trainer.train(tiny_config(log__wandb=True), workdir)
  assert not os.path.exists(run_log_path(workdir))
  assert not os.path.exists(tensorboard_dir(workdir))


# --- The config


@pytest.mark.parametrize("key, value, message", [
    ("log__tensorboard", 1, "config.log.tensorboard=1; must be True or False"),
    ("log__wandb", "yes", "config.log.wandb='yes'; must be True or False"),
    ("log__wandb_mode", "cloud",
     "config.log.wandb_mode='cloud'; allowed: ('online', 'offline')"),
    ("log__wandb_project", "",
     "config.log.wandb_project=''; must be a non-empty string"),
    ("log__images_every", -5, "config.log.images_every=-5; must be >= 0"),
    ("log__images_every", 7, "config.log.images_every=7 must be a multiple "
     "of config.train.steps_per_chunk=5 (images are drawn between chunks; "
     "0 turns them off)"),
])
def test_log_values_are_checked(key, value, message):
  # As a saved config (JSON) can hold them: ConfigDict's own type check
  # refuses some of these assignments.
  data = config_lib.to_dict(tiny_config())
  data["log"][key.split("__")[1]] = value
  with pytest.raises(ValueError) as error:
    config_lib.validate(config_lib.from_dict(data))
  assert str(error.value) == message


def test_unknown_log_key_is_named():
  config = tiny_config()
  config.log.tensorbord = False
  with pytest.raises(ValueError, match=r"unknown config key\(s\) "
                     r"\['log.tensorbord'\]"):
    config_lib.validate(config)


def test_log_keys_leave_the_config_hash():
  plain = tiny_config()
  changed = tiny_config(log__tensorboard=False, log__wandb=True,
                        log__wandb_mode="offline", log__images_every=10)
  assert config_lib.config_hash(changed) == config_lib.config_hash(plain)
  # A config saved before the log section existed: same run, defaults.
  saved = config_lib.to_dict(plain)
  del saved["log"]
  loaded = config_lib.from_dict(saved)
  config_lib.validate(loaded)
  assert loaded.log.tensorboard and not loaded.log.wandb
  assert config_lib.config_hash(loaded) == config_lib.config_hash(plain)
  assert "log" not in config_lib.identity(config_lib.to_dict(plain))


# --- The report's training curves


def test_read_curves_aligns_steps_and_members(tmp_path):
  path = str(tmp_path / "metrics.jsonl")
  with open(path, "w") as f:
    for line in ({"step": 0, "trace/mig": [0.1, 0.2]},
                 {"step": 5, "loss": [3.0, None]},
                 {"step": 10, "loss": [2.0, 1.0], "trace/mig": [0.3, None]}):
      f.write(json.dumps(line) + "\n")
  curves = run_log.read_curves(path)
  np.testing.assert_array_equal(curves["step"], [0, 5, 10])
  np.testing.assert_array_equal(curves["loss"],
                                [[np.nan, np.nan], [3.0, np.nan], [2.0, 1.0]])
  np.testing.assert_array_equal(curves["trace/mig"],
                                [[0.1, 0.2], [np.nan, np.nan], [0.3, np.nan]])
  assert run_log.read_curves(str(tmp_path / "none.jsonl")) is None


def test_curve_bands_known_values():
  # 3 steps x 5 members; members 0-3 form the group.
  values = np.array([[1.0, 2.0, 3.0, 4.0, 100.0],
                     [4.0, np.nan, 2.0, 0.0, 100.0],
                     [np.nan, np.nan, np.nan, np.nan, 1.0]])
  median, low, high = figures.curve_bands(values, [0, 1, 2, 3])
  # Step 0: {1, 2, 3, 4}: median 2.5, 10% 1 + 0.3 = 1.3, 90% 3 + 0.7 = 3.7.
  # Step 1: {0, 2, 4}: median 2, 10% 0 + 0.2 * 2 = 0.4, 90% 2 + 0.8 * 2.
  np.testing.assert_allclose(median[:2], [2.5, 2.0], rtol=0, atol=1e-12)
  np.testing.assert_allclose(low[:2], [1.3, 0.4], rtol=0, atol=1e-12)
  np.testing.assert_allclose(high[:2], [3.7, 3.6], rtol=0, atol=1e-12)
  assert np.isnan([median[2], low[2], high[2]]).all()


def test_training_curves_figure(tmp_path, synthetic_sweep):
  from disentax import results
  run = results.load_run(synthetic_sweep[1][1])  # deft: 3 seeds, 4 curves
  assert figures.curve_names(run.curves) == ["loss", "recon", "kl", "stage"]
  path = figures.training_curves(run.curves, run.rows,
                                 str(tmp_path / "curves.png"))
  assert png_size(path) == (1300, 700)
  pixels = np.asarray(Image.open(path).convert("RGB"), float)
  # The first panel's median line (C0 blue) is drawn: many blue pixels.
  blue = (np.abs(pixels - [31, 119, 180]).sum(-1) < 30)
  assert blue.sum() > 500
  assert pixels.std() > 10


def test_panels_layout_known_pixels():
  inputs = np.zeros((3, 16, 16, 1), np.float32)
  inputs[1] = 1.0
  recon = np.full((3, 16, 16, 1), 0.25, np.float32)
  panel = pictures.pair_grid(inputs, recon, cols=3)
  assert panel.shape == (33, 50, 3) and panel.dtype == np.uint8
  assert (panel[:16, 17:33] == 255).all() and (panel[:16, :16] == 0).all()
  assert (panel[17:, :16] == 64).all()      # round(0.25 * 255)
  assert (panel[16] == 128).all() and (panel[:, 16] == 128).all()  # gaps
  with pytest.raises(ValueError, match=r"inputs \(3, 16, 16, 3\) and "
                     r"outputs \(2, 16, 16, 3\) differ in shape"):
    pictures.pair_grid(inputs, recon[:2], cols=3)
  sweep = np.linspace(0, 1, 4)[None, :, None, None, None] * np.ones(
      (2, 4, 8, 8, 3))
  panel = pictures.traversal_panel(sweep)
  assert panel.shape == (2 * 9 - 1, 4 * 9 - 1, 3)
  np.testing.assert_array_equal(panel[9, [0, 9, 18, 27]],
                                [[0] * 3, [85] * 3, [170] * 3, [255] * 3])
  assert panels_lib.shown_members(np.array([1, 1, 0, 0, 2, 2]), 2) == [0, 2]
