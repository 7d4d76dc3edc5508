"""Where members live: the member axis sharded over devices and hosts.

Members never talk to each other, so spreading a sweep over devices is pure
data placement: the stacked per-member state is a global `jax.Array` whose
member axis is split over a one-axis mesh of every device (of every process
under `jax.distributed`), and the train step runs under `shard_map`, each
device stepping only its own members.  No collective runs inside a step.

A member count that the device count does not divide is padded with copies
of member 0 (same seed and hyperparameters, so the padding computes what
member 0 computes); padding is dropped whenever values leave the devices
(`to_host`) and is never reported.  Checkpoints hold the padded arrays and
are restored with Orbax's padding/truncation, so a run can be resumed or
evaluated on any number of devices.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from typing import Any, Callable, Iterator

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from disentax import workdir as workdir_lib

MEMBER_AXIS = "members"
# Explicit multi-process setup; under SLURM, jax.distributed finds these
# itself (SLURM_* variables).
COORDINATOR_ENV = "DISENTAX_COORDINATOR"


@dataclasses.dataclass(frozen=True)
class MemberLayout:
  """The device mesh the members are split over and their padded count."""
  mesh: Mesh
  num_members: int   # real members
  num_padded: int    # a multiple of the device count

  @property
  def num_devices(self) -> int:
    return self.mesh.size

  @property
  def members(self) -> NamedSharding:
    """Sharding of a member-stacked array: axis 0 split over devices."""
    return NamedSharding(self.mesh, PartitionSpec(MEMBER_AXIS))

  @property
  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, PartitionSpec())

  def sharding_like(self, leaf: Any) -> NamedSharding:
    """Member sharding for member-stacked leaves, replication for the rest
    (the shared step counter)."""
    shape = getattr(leaf, "shape", ())
    if len(shape) and shape[0] == self.num_padded:
      return self.members
    return self.replicated


def member_layout(num_members: int, num_devices: int = 0) -> MemberLayout:
  """The first `num_devices` devices (0 = all, over every process), with
  `num_members` padded to a multiple of their count."""
  devices = jax.devices()
  if num_devices < 0 or num_devices > len(devices):
    raise ValueError(
        f"config.train.num_devices={num_devices}; allowed: 0 (all) to "
        f"{len(devices)} (the devices JAX sees: {devices[0].platform} x "
        f"{len(devices)})")
  if not is_single_process() and num_devices not in (0, len(devices)):
    raise ValueError(
        f"config.train.num_devices={num_devices} under {jax.process_count()} "
        "processes; every process must take part: use 0 (all devices)")
  chosen = devices[:num_devices or len(devices)]
  padded = math.ceil(num_members / len(chosen)) * len(chosen)
  return MemberLayout(Mesh(np.array(chosen), (MEMBER_AXIS,)), num_members,
                      padded)


def pad_members(array: np.ndarray, num_padded: int) -> np.ndarray:
  """`array` [M, ...] extended to [num_padded, ...] with copies of row 0."""
  array = np.asarray(array)
  extra = num_padded - array.shape[0]
  return np.concatenate([array, np.repeat(array[:1], extra, axis=0)])


def put_members(tree: Any, layout: MemberLayout) -> Any:
  """Host arrays [M, ...] -> padded global arrays split over the mesh (each
  process places only its own devices' rows)."""
  def put(array):
    padded = pad_members(array, layout.num_padded)
    return jax.make_array_from_callback(padded.shape, layout.members,
                                        lambda index: padded[index])
  return jax.tree.map(put, tree)


def to_host(tree: Any, layout: MemberLayout) -> Any:
  """Member-stacked device arrays -> numpy [M, ...] without the padding
  (gathered from every process when there are several)."""
  if not is_single_process():
    tree = multihost_utils.process_allgather(tree, tiled=True)
  return jax.tree.map(lambda leaf: np.asarray(leaf)[:layout.num_members],
                      tree)


def over_devices(fn: Callable, layout: MemberLayout,
                 in_axes: tuple) -> Callable:
  """`fn` of a block of members -> `fn` of all members, each device running
  it on its own block (in_axes 0: member-stacked; None: shared).  The
  identity on one device."""
  if layout.num_devices == 1:
    return fn
  spec = PartitionSpec(MEMBER_AXIS)
  in_specs = tuple(PartitionSpec() if axis is None else spec
                   for axis in in_axes)
  return jax.shard_map(fn, mesh=layout.mesh, in_specs=in_specs,
                       out_specs=spec)


def any_process(flag: bool) -> bool:
  """True on every process if `flag` is true on any (e.g. one of them got
  SIGTERM), so all processes stop at the same step."""
  if is_single_process():
    return flag
  flags = multihost_utils.process_allgather(np.int32(flag))
  return bool(np.any(flags))


def is_single_process() -> bool:
  return jax.process_count() == 1


def is_writer() -> bool:
  """Whether this process writes logs and results (process 0)."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits until every process has reached the barrier `name`."""
  if not is_single_process():
    multihost_utils.sync_global_devices(name)


@contextlib.contextmanager
def writer_lock(workdir: str) -> Iterator[None]:
  """The workdir's lock (`workdir.locked`) for a run of one process or
  several.  Process 0, the writer, takes it; the others never lock (so
  processes of one run never refuse each other) but learn whether process
  0 got it, so a refused run stops in every process before any of them
  writes (the others write checkpoint shards) and none waits on the other
  in a collective.

  Raises:
    WorkdirInUse: another run holds the workdir (in every process).
  """
  with contextlib.ExitStack() as stack:
    refused = None
    if is_writer():
      try:
        stack.enter_context(workdir_lib.locked(workdir))
      except Exception as error:  # pylint: disable=broad-except
        refused = error
    if any_process(refused is not None):
      raise refused or workdir_lib.WorkdirInUse(
          f"process 0 of this run could not lock workdir {workdir} (its "
          "message says why)")
    yield


def initialize_distributed(coordinator: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None) -> None:
  """Joins this process to a multi-process JAX runtime.  Under SLURM (or
  another cluster JAX detects) no argument is needed; otherwise give the
  coordinator's host:port (or $DISENTAX_COORDINATOR), the process count and
  this process's id.  Must run before anything touches a device."""
  coordinator = coordinator or os.environ.get(COORDINATOR_ENV) or None
  if coordinator is not None and (num_processes is None or process_id is None):
    raise ValueError(
        f"coordinator {coordinator!r} given without num_processes and "
        f"process_id (got {num_processes}, {process_id}); give all three, "
        "or none under SLURM")
  # CPU devices of different processes exchange data (host gathers) through
  # gloo; the setting only concerns the CPU backend.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator, num_processes, process_id)
