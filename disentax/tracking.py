"""Where the training curves go while a run trains: the writers.

The training loop hands one `Writer` (`make_writer`) every logged step's
per-member scalars -- the chunk's training metrics and the trace's scalar
scores, named as in metrics.jsonl (`disentax.run_log`): `loss`, `recon`,
`kl`, a controller's `beta`, DEFT's `stage`, `trace/mig`, ... -- and, every
`config.log.images_every` steps, a few members' image panels
(`disentax.evaluation.panels`).  What `config.log` selects receives them:

  JsonlWriter        WORKDIR/metrics.jsonl, the record (always)
  TensorBoardWriter  WORKDIR/tensorboard/<member>/ event files (tensorboardX,
                     no TensorFlow; `log.tensorboard`, on by default)
  WandbWriter        one W&B run per member (`log.wandb`; the `wandb` extra)

One TensorBoard run per member, named by `member_name`
(`m03_seed3_beta=4`), each with the same tags: `tensorboard --logdir runs/`
overlays every member of every workdir under runs/ in one chart per
quantity, and a run filter such as `beta=4` or `seed3` picks a group or a
seed.  Images are the tags `images/reconstructions` and
`images/traversals` of the members shown.  W&B gets the same: a run per
member (its name the same, its config the seed, the hyperparameters, the
method and dataset, so W&B can group runs by any of them), grouped by the
workdir's name.

Resuming from a checkpoint drops what the run will compute again, as the
run log does (`run_log.survives_resume`): the TensorBoard event files are
rewritten without the events of later steps (so every reader sees one
history, not only those honouring TensorBoard's purge markers), and the
resumed run writes a new file beside them.  A W&B history cannot be cut:
the member runs are continued (the same run ids, `resume="allow"`) and
are sent the steps after the checkpoint again.  Online, W&B ignores a
step below a run's latest, so the steps it had keep the values first sent
(on the same backend they are recomputed identically); offline, each
process's files hold what it sent.

Only the writer process (`sharding.is_writer`) makes a writer.
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import os
import struct
from typing import Any, Iterator, Mapping, Protocol, Sequence

import ml_collections
import numpy as np

from disentax import run_log
from disentax.reporting.tables import format_hparams
from disentax.workdir import (run_log_path, tensorboard_dir, write_bytes)

# Per-member scalars of one step: name -> [M] values.
Scalars = Mapping[str, np.ndarray]
# Image panels of one step: panel name -> {member: RGB image uint8 [H, W, 3]}.
Images = Mapping[str, Mapping[int, np.ndarray]]
IMAGE_PREFIX = "images/"
WANDB_EXTRA = "pip install 'disentax[wandb]'"


class Writer(Protocol):
  """A destination of the training curves."""

  def scalars(self, step: int, values: Scalars) -> None:
    """Records every member's value of each name at `step`."""

  def images(self, step: int, images: Images) -> None:
    """Records the members' image panels at `step`."""

  def close(self) -> None:
    """Flushes and releases what the writer holds."""


def member_name(row: Mapping[str, Any], num_members: int) -> str:
  """A member's run name: `m<index>_seed<seed>[_<hyperparameters>]`, the
  index zero-padded to the member count's width (runs sort in member
  order) and the hyperparameters as tables print them, `_` between them
  and `-` inside a sequence (`m03_seed3_beta=4`,
  `m0_seed0_gamma=0.1_pressures=70-30-12-1`)."""
  width = len(str(num_members - 1))
  name = f"m{row['member']:0{width}d}_seed{row['seed']}"
  if row["hparams"]:
    name += "_" + format_hparams(row["hparams"]).replace(", ", "_").replace(
        "/", "-")
  return name


class JsonlWriter:
  """The run log, WORKDIR/metrics.jsonl (`run_log.RunLog`); no images."""

  def __init__(self, workdir: str, resume_step: int):
    self._log = run_log.RunLog(run_log_path(workdir), resume_step)

  def scalars(self, step: int, values: Scalars) -> None:
    self._log.append(step, values)

  def images(self, step: int, images: Images) -> None:
    del step, images

  def close(self) -> None:
    pass


# TFRecord framing of an event file: length (uint64), its masked CRC32C
# (uint32), the serialised Event, its masked CRC32C.
_LENGTH, _CRC = 8, 4


def _records(data: bytes) -> Iterator[tuple[bytes, bytes]]:
  """(whole record, payload) of each complete record of an event file's
  bytes; a record cut short (a process killed mid-write) ends the file."""
  start = 0
  while start + _LENGTH + _CRC <= len(data):
    (length,) = struct.unpack("<Q", data[start:start + _LENGTH])
    payload = start + _LENGTH + _CRC
    end = payload + length + _CRC
    if end > len(data):
      return
    yield data[start:end], data[payload:payload + length]
    start = end


def purge_event_file(path: str, resume_step: int) -> None:
  """Rewrites the TensorBoard event file at `path` (atomically) without the
  events that do not `survive_resume` from `resume_step`, keeping its
  header; removes it when nothing else is left.  Records are copied as
  they are (their checksums stay valid)."""
  from tensorboardX.proto.event_pb2 import Event  # pylint: disable=g-import-not-at-top
  with open(path, "rb") as f:
    data = f.read()
  kept, events = [], 0
  for record, payload in _records(data):
    event = Event.FromString(payload)
    if event.file_version:
      kept.append(record)
    elif run_log.survives_resume(event.step, resume_step):
      kept.append(record)
      events += 1
  if events:
    write_bytes(path, b"".join(kept))
  else:
    os.remove(path)


_WRITER_NUMBERS = itertools.count()


class TensorBoardWriter:
  """One tensorboardX SummaryWriter per member, in LOGDIR/<member name>/
  (module docstring), opened at the first write (a finished run that is
  rerun adds no files); every call is flushed, so curves are live."""

  def __init__(self, logdir: str, names: Sequence[str], resume_step: int):
    for path in glob.glob(os.path.join(logdir, "*", "events.out.tfevents.*")):
      purge_event_file(path, resume_step)
    self._paths = [os.path.join(logdir, name) for name in names]
    self._writers: list[Any] = []

  def _members(self) -> list[Any]:
    if not self._writers:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      # tensorboardX names a file by the second and host only and truncates
      # one of the same name: a process and writer number keep a resumed
      # run's file beside its predecessor's.
      suffix = f".{os.getpid()}.{next(_WRITER_NUMBERS)}"
      self._writers = [SummaryWriter(path, filename_suffix=suffix)
                       for path in self._paths]
    return self._writers

  def scalars(self, step: int, values: Scalars) -> None:
    for m, writer in enumerate(self._members()):
      for name, value in values.items():
        writer.add_scalar(name, float(value[m]), step)
      writer.flush()

  def images(self, step: int, images: Images) -> None:
    writers = self._members()
    for name, panels in images.items():
      for m, image in panels.items():
        writers[m].add_image(IMAGE_PREFIX + name, image, step,
                             dataformats="HWC")
        writers[m].flush()

  def close(self) -> None:
    for writer in self._writers:
      writer.close()


def import_wandb() -> Any:
  """The wandb module; ImportError saying how to install it."""
  try:
    import wandb  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(f"config.log.wandb=True needs the wandb package: "
                      f"{WANDB_EXTRA}") from e
  return wandb


class WandbWriter:
  """One W&B run per member (module docstring), its files under
  `directory`/wandb/; the runs start at the first write."""

  def __init__(self, project: str, mode: str, directory: str, group: str,
               run_ids: Sequence[str], names: Sequence[str],
               configs: Sequence[Mapping[str, Any]]):
    self._wandb = import_wandb()
    self._init = [dict(project=project, mode=mode, dir=directory, group=group,
                       id=run_id, name=name, resume="allow",
                       config=dict(config), reinit="create_new")
                  for run_id, name, config in zip(run_ids, names, configs)]
    self._directory = directory
    self._runs: list[Any] = []

  def _members(self) -> list[Any]:
    if not self._runs:
      os.makedirs(self._directory, exist_ok=True)
      self._runs = [
          self._wandb.init(**kwargs,
                           settings=self._wandb.Settings(console="off"))
          for kwargs in self._init]
    return self._runs

  def scalars(self, step: int, values: Scalars) -> None:
    for m, run in enumerate(self._members()):
      run.log({name: float(value[m]) for name, value in values.items()},
              step=step)

  def images(self, step: int, images: Images) -> None:
    runs = self._members()
    for name, panels in images.items():
      for m, image in panels.items():
        runs[m].log({IMAGE_PREFIX + name: self._wandb.Image(image)},
                    step=step)

  def close(self) -> None:
    for run in self._runs:
      run.finish()


class MultiWriter:
  """Every call goes to each of `writers`, in order."""

  def __init__(self, writers: Sequence[Writer]):
    self.writers = list(writers)

  def scalars(self, step: int, values: Scalars) -> None:
    for writer in self.writers:
      writer.scalars(step, values)

  def images(self, step: int, images: Images) -> None:
    for writer in self.writers:
      writer.images(step, images)

  def close(self) -> None:
    for writer in self.writers:
      writer.close()


def wandb_run_id(workdir: str, config_hash: str, member: int) -> str:
  """A member's W&B run id: the same for the same workdir and config (a
  resumed run continues its W&B runs), different for another workdir."""
  place = hashlib.sha256(os.path.abspath(workdir).encode()).hexdigest()[:8]
  return f"{config_hash}-{place}-m{member}"


def make_writer(config: ml_collections.ConfigDict, workdir: str,
                meta: Mapping[str, Any], resume_step: int) -> MultiWriter:
  """The writers `config.log` selects for the run in `workdir`, resuming
  from `resume_step` (0: from the start); `meta` is the checkpoint's
  (`trainer.checkpoint_meta`: members, method, dataset, config hash).

  Raises:
    ImportError: config.log.wandb is on and wandb is not installed (before
      anything is written).
  """
  log = config.log
  if log.wandb:
    import_wandb()
  members = meta["members"]
  names = [member_name(row, len(members)) for row in members]
  writers: list[Writer] = [JsonlWriter(workdir, resume_step)]
  if log.tensorboard:
    writers.append(TensorBoardWriter(tensorboard_dir(workdir), names,
                                     resume_step))
  if log.wandb:
    common = {"method": meta["method"], "dataset": meta["dataset"],
              "config_hash": meta["config_hash"], "workdir": workdir}
    writers.append(WandbWriter(
        log.wandb_project, log.wandb_mode, workdir,
        group=os.path.basename(os.path.abspath(workdir)),
        run_ids=[wandb_run_id(workdir, meta["config_hash"], row["member"])
                 for row in members],
        names=names,
        configs=[{**common, "member": row["member"], "seed": row["seed"],
                  **row["hparams"]} for row in members]))
  return MultiWriter(writers)
