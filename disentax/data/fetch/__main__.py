"""Downloads, verifies and prepares a real dataset:

  python -m disentax.data.fetch NAME [--dir=DIR] [--noprogress]

NAME: dsprites, shapes3d, mpi3d_toy, mpi3d_realistic, mpi3d_real, cars3d,
smallnorb (`disentax.data.fetch.SOURCES`). Files go to DIR/NAME/ (default
$DISENTAX_DATA, else ~/disentax_data); the command prints the config
override that trains on them. A failure is one line, `error: ...`, and
exit status 1; rerunning resumes a broken download.
"""

from __future__ import annotations

from typing import Sequence

from absl import flags

from disentax import cli
from disentax.data import fetch

_DIR = flags.DEFINE_string(
    "dir", None, "Where to keep the data (a folder per dataset); default "
    f"${fetch.DATA_ENV}, else ~/disentax_data.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show download progress.")


def main(argv: Sequence[str]) -> None:
  if len(argv) != 2:
    raise cli.UsageError(f"give one dataset name, one of "
                         f"{', '.join(fetch.SOURCES)}")
  name = argv[1]
  path = fetch.fetch(name, _DIR.value, progress=_PROGRESS.value)
  print(f"\n{name}: {path}\ntrain on it with:\n  python -m disentax.main "
        f"--config=CONFIG {fetch.config_override(name, path)}")


if __name__ == "__main__":
  cli.run(main)
