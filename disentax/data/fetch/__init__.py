"""The real datasets in one command: download, verify, prepare.

  python -m disentax.data.fetch NAME [--dir=DIR] [--noprogress]

NAME is one of `SOURCES` (`disentax/data/fetch/sources.py`): dsprites,
shapes3d, mpi3d_toy, mpi3d_realistic, mpi3d_real, cars3d, smallnorb. Each
upstream file is downloaded into DIR/NAME/ (DIR: `--dir`, else
`$DISENTAX_DATA`, else ~/disentax_data), resuming a broken transfer, and
checked against its published hash (`download.retrieve`, on pooch); a file
already there that matches is not downloaded again. Cars3D and SmallNORB
are then prepared into the npz their loader reads (`prepare`), once. The
command ends by printing the config override that trains on the result,
e.g.

  '--config.dataset={"name": "shapes3d_h5", "path": "/home/me/disentax_data/shapes3d/3dshapes.h5"}'

(the whole `dataset` section: a config's section has no `path` key to set
on its own).
"""

from __future__ import annotations

import json
import os
import shlex
from typing import Callable

from disentax.cli import UsageError
from disentax.data.fetch.download import (ChecksumError, FetchError,
                                          PartialDownloadError,
                                          UnreachableError, retrieve)
from disentax.data.fetch.sources import SOURCES, RemoteFile, Source

__all__ = ["ChecksumError", "FetchError", "PartialDownloadError",
           "RemoteFile", "SOURCES", "Source", "UnreachableError",
           "config_override", "default_data_dir", "fetch", "get_source"]

DATA_ENV = "DISENTAX_DATA"


def default_data_dir() -> str:
  """`$DISENTAX_DATA`, else ~/disentax_data: downloads are large and kept,
  so a folder the user sees rather than a cache that may be cleaned."""
  return os.environ.get(DATA_ENV) or os.path.join(os.path.expanduser("~"),
                                                  "disentax_data")


def get_source(name: str) -> Source:
  """The source called `name`; ValueError listing the allowed names."""
  if name not in SOURCES:
    raise UsageError(f"unknown dataset {name!r} to fetch; allowed: "
                     f"{', '.join(SOURCES)}")
  return SOURCES[name]


def config_override(name: str, path: str) -> str:
  """The command-line flag that makes a run load `path`, fetched as `name`,
  shell-quoted: the section as a dict literal (JSON's form of it, which is
  also Python's), which ml_collections' config flags parse."""
  section = get_source(name).dataset_section(path)
  return shlex.quote(f"--config.dataset={json.dumps(section)}")


def fetch(name: str, directory: str | None = None, *, progress: bool = True,
          log: Callable[[str], None] = print) -> str:
  """Downloads, verifies and prepares dataset `name` under
  `directory`/`name`; returns the path of the file its loader reads.

  A prepared file already there is returned as it is (its inputs are not
  fetched again); a downloaded file already there is checked against its
  hash and kept when it matches. `log` receives one line per step.

  Raises:
    ValueError: an unknown `name`.
    FetchError: a download that failed (`download` module docstring).
  """
  source = get_source(name)
  folder = os.path.join(os.path.expanduser(directory or default_data_dir()),
                        name)
  output = os.path.join(folder, source.output_name())
  if source.prepare is not None and os.path.exists(output):
    log(f"{output} is already prepared")
    return output
  os.makedirs(folder, exist_ok=True)
  paths = {f.filename: retrieve(f, folder, progress=progress, log=log)
           for f in source.files}
  if source.prepare is not None:
    log(f"preparing {output}")
    source.prepare(paths, output)
  return output
