"""The files of a run's workdir, each named here once, and the atomic writers
that produce them.

  WORKDIR/
    config.json          the run's config (written by training)
    metrics.jsonl        per-member training curves (`disentax.run_log`)
    tensorboard/<member>/  the same curves (and image panels) as TensorBoard
                         event files, one run per member
                         (`disentax.tracking`)
    wandb/               W&B's files when config.log.wandb is on
    checkpoints/<step>/  Orbax checkpoints (`disentax.checkpoint`)
    trace.npz            evaluators scored while training
                         (`disentax.evaluation.trace`)
    job.json             a sweep job's recorded state (`disentax.sweep`)
    lock                 held (flock) by the one process writing the
                         workdir, recording its host and pid (`locked`)
    unreadable_checkpoints/<step>/  checkpoints that could not be read,
                         set aside by training (never deleted)
    results/             what the evaluation job writes (`disentax.results`)
      results.json       one row per member and evaluated step
      results.csv        the same rows, flattened
      arrays.npz         per-member arrays, member axis first
      timings.json       seconds each metric took
      traversals/        latent traversal PNGs
    pictures/            `python -m disentax.visualize` (`--out` elsewhere)
      metric_correlations.png   metrics against each other over members
      member<m>_seed<s>/ one chosen member's pictures: reconstructions.png,
                         samples.png, traversals.png, traversals.gif,
                         responses.png

Every other module asks this one for a path, so the layout is read and
written in one place (old workdirs keep reading as long as these names
stay).  The writers replace a file atomically: a crash leaves the old file
or the new one, never half of one, which is what lets a preempted job be
rerun over its own workdir (files outside a workdir that must never be
half-written, such as a sweep's plan, use them too).  A write killed before
its rename leaves a temporary file (`.<name>.<random>.tmp`), which the next
writer of the workdir removes (`remove_temporaries`).

One process writes a workdir at a time: training, evaluation and a sweep
job hold `locked(workdir)` (an exclusive `flock` of WORKDIR/lock, which
records the holder's host and pid), and a second process is refused at once
with `WorkdirInUse` ("workdir in use by pid N on host H"), before it has
written anything.  The kernel releases an flock when its holder dies, so a
killed run's lock is no obstacle: the next run takes it over.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import re
import socket
import sys
import tempfile
import threading
from typing import IO, Any, Callable, Iterator, Mapping

import numpy as np

CONFIG_NAME = "config.json"
RUN_LOG_NAME = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
TRACE_NAME = "trace.npz"
JOB_NAME = "job.json"
RESULTS_DIR = "results"
RESULTS_JSON_NAME = "results.json"
RESULTS_CSV_NAME = "results.csv"
ARRAYS_NAME = "arrays.npz"
TIMINGS_NAME = "timings.json"
TRAVERSALS_DIR = "traversals"
PICTURES_DIR = "pictures"
METRIC_CORRELATIONS_NAME = "metric_correlations.png"
RECONSTRUCTIONS_NAME = "reconstructions.png"
SAMPLES_NAME = "samples.png"
TRAVERSALS_NAME = "traversals.png"
TRAVERSALS_GIF_NAME = "traversals.gif"
RESPONSES_NAME = "responses.png"
TENSORBOARD_DIR = "tensorboard"
WANDB_DIR = "wandb"
LOCK_NAME = "lock"
UNREADABLE_CHECKPOINTS_DIR = "unreadable_checkpoints"
# What the atomic writers name a file before renaming it onto `name`
# (`.name.<random>.tmp`), and what writers of earlier versions did
# (`tmp<random>.tmp`, `tmp<random>.tmp.npz`).
TEMPORARY = re.compile(r"^(\..+\.[^.]+\.tmp|tmp[^.]+\.tmp(\.npz)?)$")


def config_path(workdir: str) -> str:
  """The run's config, as training saved it (JSON)."""
  return os.path.join(workdir, CONFIG_NAME)


def run_log_path(workdir: str) -> str:
  """The per-member training curves (JSON lines)."""
  return os.path.join(workdir, RUN_LOG_NAME)


def tensorboard_dir(workdir: str) -> str:
  """The TensorBoard log directory: one subdirectory (a TensorBoard run)
  per member."""
  return os.path.join(workdir, TENSORBOARD_DIR)


def wandb_dir(workdir: str) -> str:
  """Where W&B keeps its files of the run's members."""
  return os.path.join(workdir, WANDB_DIR)


def checkpoint_dir(workdir: str) -> str:
  """The Orbax checkpoint directory, absolute (Orbax requires it)."""
  return os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)


def trace_path(workdir: str) -> str:
  """The training-time trace of NMI and MIG."""
  return os.path.join(workdir, TRACE_NAME)


def job_path(workdir: str) -> str:
  """The state a sweep job records in its workdir."""
  return os.path.join(workdir, JOB_NAME)


def lock_path(workdir: str) -> str:
  """The lock file of the process writing the workdir (`locked`)."""
  return os.path.join(workdir, LOCK_NAME)


def unreadable_checkpoints_dir(workdir: str) -> str:
  """Where training sets aside checkpoints it could not read."""
  return os.path.join(os.path.abspath(workdir), UNREADABLE_CHECKPOINTS_DIR)


def results_dir(workdir: str) -> str:
  """The directory the evaluation job writes into."""
  return os.path.join(workdir, RESULTS_DIR)


def results_json_path(workdir: str) -> str:
  """The evaluated rows (schema in `disentax.results`)."""
  return os.path.join(results_dir(workdir), RESULTS_JSON_NAME)


def results_csv_path(workdir: str) -> str:
  """The evaluated rows, flattened into CSV."""
  return os.path.join(results_dir(workdir), RESULTS_CSV_NAME)


def arrays_path(workdir: str) -> str:
  """The per-member result arrays (member axis first)."""
  return os.path.join(results_dir(workdir), ARRAYS_NAME)


def timings_path(workdir: str) -> str:
  """Seconds each metric of the last evaluation took."""
  return os.path.join(results_dir(workdir), TIMINGS_NAME)


def traversals_dir(workdir: str) -> str:
  """The latent traversal PNGs of the last evaluation."""
  return os.path.join(results_dir(workdir), TRAVERSALS_DIR)


def pictures_dir(workdir: str) -> str:
  """Where `python -m disentax.visualize` draws by default."""
  return os.path.join(workdir, PICTURES_DIR)


def member_pictures_dir(pictures: str, member: int, seed: int) -> str:
  """One member's folder of a pictures directory: member<m>_seed<s>, the
  member index zero-padded to two digits so a listing sorts."""
  return os.path.join(pictures, f"member{member:02d}_seed{seed}")


def _replace(path: str, write: Callable[[IO], None], binary: bool) -> None:
  """Calls `write` on a new temporary file beside `path` (creating the
  directory), then renames it onto `path`; removes the temporary file if
  `write` or the rename fails."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  f = tempfile.NamedTemporaryFile("wb" if binary else "w", dir=directory,
                                  newline=None if binary else "",
                                  delete=False, suffix=".tmp",
                                  prefix=f".{os.path.basename(path)}.")
  try:
    with f:
      write(f)
    os.replace(f.name, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(f.name)
    raise


def write_json(path: str, data: Any) -> None:
  """Writes `data` as indented JSON (NaN refused: JSON has none)."""
  _replace(path, lambda f: json.dump(data, f, indent=1, allow_nan=False),
           binary=False)


def write_text(path: str, text: str) -> None:
  """Writes `text` as it is (no newline translation, so CSV stays CSV)."""
  _replace(path, lambda f: f.write(text), binary=False)


def write_bytes(path: str, data: bytes) -> None:
  """Writes `data` as it is."""
  _replace(path, lambda f: f.write(data), binary=True)


def write_npz(path: str, arrays: Mapping[str, Any]) -> None:
  """Writes `arrays` (name -> array-like) as an uncompressed .npz."""
  _replace(path, lambda f: np.savez(f, **arrays), binary=True)


def remove_temporaries(workdir: str) -> list[str]:
  """Removes the temporary files that writes killed before their rename
  left in `workdir` and its results directory (call it holding the
  workdir's lock: then no write of it is under way); returns their paths."""
  removed = []
  for directory in (workdir, results_dir(workdir)):
    if not os.path.isdir(directory):
      continue
    for name in sorted(os.listdir(directory)):
      path = os.path.join(directory, name)
      if TEMPORARY.match(name) and os.path.isfile(path):
        os.remove(path)
        removed.append(path)
  return removed


def check_writable(path: str, what: str) -> None:
  """Raises PermissionError (naming `what`, `path` and the reason) unless
  files can be created in the directory `path`, or, while it does not
  exist yet, in its nearest existing parent (which is left as it was: no
  directory is created).  Entry points call it before the work whose
  output would go there."""
  existing = os.path.abspath(path)
  while not os.path.isdir(existing):
    parent = os.path.dirname(existing)
    if os.path.exists(existing) or parent == existing:
      raise PermissionError(f"{what} {path} cannot be created: {existing} "
                            "is not a directory")
    existing = parent
  try:
    with tempfile.TemporaryFile(dir=existing):
      pass
  except OSError as error:
    where = "" if existing == os.path.abspath(path) else f" (in {existing})"
    raise PermissionError(f"{what} {path} is not writable{where}: "
                          f"{error.strerror}") from error


# --------------------------------------------------------------------------
# One writer per workdir.


class WorkdirInUse(RuntimeError):
  """Another process holds the workdir's lock (its host and pid named)."""


# Locks this process holds: (real path of the lock file, thread) -> [file
# descriptor, depth].  A thread that holds a workdir may lock it again (a
# sweep job holds it while training and evaluation each lock it too);
# another thread is refused like another process.
_HELD: dict[tuple[str, int], list[Any]] = {}
# flock errors of a filesystem without locks: the run goes on, unguarded.
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def _holder_message(workdir: str, holder: Mapping[str, Any]) -> str:
  """"workdir in use by pid N on host H since T: ..." from what the lock
  file records (`holder`: empty when the holder has not written it yet)."""
  if "pid" in holder:
    who = (f"pid {holder.get('pid')} on host {holder.get('host')} since "
           f"{holder.get('since')}")
  else:
    who = "another process (which has not recorded its pid yet)"
  return (f"workdir in use by {who}: {workdir} is written by one process "
          f"at a time; wait for that one to end, or use another workdir")


def _read_holder(fd: int) -> dict[str, Any]:
  try:
    holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
  except (OSError, ValueError):
    return {}
  return holder if isinstance(holder, dict) else {}


def _acquire(workdir: str, path: str) -> int | None:
  """An open descriptor of the lock file at `path`, flocked and recording
  this process; None when the filesystem has no locks (warned)."""
  try:
    os.makedirs(workdir, exist_ok=True)
    while True:
      fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        raise WorkdirInUse(_holder_message(workdir, holder)) from None
      except OSError as error:
        os.close(fd)
        if error.errno not in _NO_LOCKS:
          raise
        print(f"warning: cannot lock {path} ({error.strerror}): nothing "
              "stops a second process from writing this workdir",
              file=sys.stderr, flush=True)
        return None
      # The previous holder removes the file as it lets go: a lock taken
      # on the removed file guards nothing, so take the one now there.
      try:
        if os.path.samestat(os.fstat(fd), os.stat(path)):
          break
      except FileNotFoundError:
        pass
      os.close(fd)
    record = {"pid": os.getpid(), "host": socket.gethostname(),
              "since": datetime.datetime.now(datetime.timezone.utc)
              .isoformat(timespec="seconds")}
    try:
      os.ftruncate(fd, 0)
      os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    except OSError:
      os.close(fd)
      raise
    return fd
  except WorkdirInUse:
    raise
  except OSError as error:
    raise PermissionError(
        f"workdir {workdir} is not writable ({path}: {error.strerror}); a "
        "run keeps its lock, checkpoints, log and results there") from error


@contextlib.contextmanager
def locked(workdir: str) -> Iterator[None]:
  """Holds the workdir's lock inside the block (creating the workdir).

  Raises:
    WorkdirInUse: another process (or thread) holds it; nothing was
      written.
    PermissionError: the workdir cannot be written.
  """
  path = os.path.realpath(lock_path(workdir))
  key = (path, threading.get_ident())
  if key in _HELD:
    _HELD[key][1] += 1
    try:
      yield
    finally:
      _HELD[key][1] -= 1
    return
  fd = _acquire(workdir, path)
  _HELD[key] = [fd, 1]
  try:
    yield
  finally:
    del _HELD[key]
    if fd is not None:
      with contextlib.suppress(OSError):
        os.remove(path)  # still ours: no one else removes it
      os.close(fd)


def read_json(path: str, missing: str) -> Any:
  """The parsed JSON file at `path`; FileNotFoundError saying `missing` (how
  to make it) when there is none, ValueError naming the file when it is not
  JSON."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no {os.path.basename(path)} at {path}; "
                            f"{missing}")
  with open(path) as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path} is not valid JSON: {e}") from e
